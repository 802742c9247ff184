-- Users' rows now carry their stored artifact bytes (ARTIFACT_QUOTA_BYTES): the views are rebuilt from
-- the log at the next open, so a user who stored artifacts before is not counted as holding none, and
-- the old snapshots, which hold the previous shape, go.
DELETE FROM projection_checkpoints WHERE name = 'views';
DELETE FROM snapshots;
