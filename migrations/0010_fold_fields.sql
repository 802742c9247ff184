-- Folds gained fields (job: cancelled_by, gpus_held; node: gpus, drain_reason; the day's tallies: failed):
-- the projections and snapshots are rebuilt from the log at the next start, so stored rows equal a rebuild.
DELETE FROM projection_checkpoints WHERE name = 'views';
DELETE FROM snapshots;
