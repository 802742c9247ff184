-- Read models folded from events; each row is the msgspec JSON of its view.
CREATE TABLE projection_checkpoints (
    name     TEXT    PRIMARY KEY,
    position INTEGER NOT NULL
);

CREATE TABLE proj_jobs (
    job_id       TEXT    PRIMARY KEY,
    user_id      TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    position     INTEGER NOT NULL,            -- submit position: the queue and "newest first" order
    completed_at INTEGER,                     -- microseconds, for the last-24-hours figures
    data         BLOB    NOT NULL
);
-- No secondary indexes: lists are served from the in-memory views; these rows are for start-up,
-- audit and other processes (which read them whole).

CREATE TABLE proj_users (user_id TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE proj_nodes (name TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE proj_tokens (
    token_id      TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    data          BLOB NOT NULL
);
