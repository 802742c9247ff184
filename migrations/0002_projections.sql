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
CREATE INDEX proj_jobs_user ON proj_jobs (user_id, position);
CREATE INDEX proj_jobs_completed ON proj_jobs (completed_at);
CREATE INDEX proj_jobs_position ON proj_jobs (position);
CREATE INDEX proj_jobs_status ON proj_jobs (status, position);

CREATE TABLE proj_users (user_id TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE proj_nodes (name TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE proj_tokens (
    token_id      TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    data          BLOB NOT NULL
);
