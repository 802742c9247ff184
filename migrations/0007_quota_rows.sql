-- Users' rows now carry their daily quota use and jobs' rows their attempts: the views are rebuilt
-- from the log at the next open (no checkpoint: the tables are replayed and rewritten), and the old
-- snapshots, which hold the previous shape, go (the as-of queries replay from position 0 meanwhile).
DELETE FROM projection_checkpoints WHERE name = 'views';
DELETE FROM snapshots;
