-- Jobs now carry when their declared environment's set-up began (setup_from), charged like the run:
-- the views are rebuilt from the log at the next open, so a set-up recorded before is charged too, and
-- the old snapshots, which hold the previous shape, go.
DELETE FROM projection_checkpoints WHERE name = 'views';
DELETE FROM snapshots;
