-- When each token was last used. Not a fact worth an event per request: the server flushes it
-- every few seconds, and `gpuledger token list` shows it.
CREATE TABLE token_usage (
    token_id  TEXT    PRIMARY KEY,
    last_used INTEGER NOT NULL       -- microseconds since the Unix epoch, UTC
);
