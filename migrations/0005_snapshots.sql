-- The views' hot state every SNAPSHOT_EVERY events, with the chain hash at that position: as-of
-- queries start from the nearest one instead of position 0 (audit verify checks both).
CREATE TABLE snapshots (
    position INTEGER PRIMARY KEY,
    hash     BLOB    NOT NULL,
    data     BLOB    NOT NULL
);
