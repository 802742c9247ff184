-- The append-only event log: one row per fact, chained by SHA-256.
CREATE TABLE events (
    position        INTEGER PRIMARY KEY,      -- global order, gap-free, assigned by the writer
    stream          TEXT    NOT NULL,         -- job-<id>, node-<name>, token-<id>
    version         INTEGER NOT NULL,         -- 1, 2, ... within the stream
    type            TEXT    NOT NULL,         -- stable tag, e.g. job.submitted
    payload         BLOB    NOT NULL,         -- msgspec JSON of the event
    recorded_at     INTEGER NOT NULL,         -- microseconds since the Unix epoch, UTC
    actor           TEXT    NOT NULL,         -- token id, system, executor:<node>
    idempotency_key TEXT    UNIQUE,
    prev_hash       BLOB    NOT NULL,
    hash            BLOB    NOT NULL,
    UNIQUE (stream, version)
);

CREATE INDEX events_type ON events (type, position);

CREATE TRIGGER events_are_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

CREATE TRIGGER events_are_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

-- Request fingerprints behind idempotency keys (same key + other payload is a conflict).
CREATE TABLE idempotency (
    key             TEXT    PRIMARY KEY,
    fingerprint     BLOB    NOT NULL,
    first_position  INTEGER NOT NULL,
    last_position   INTEGER NOT NULL
);
