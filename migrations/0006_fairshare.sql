-- Each user's fair-share account (policy from user.policy_set, usage folded from their jobs).
-- Rows and snapshots written before the fold existed lack it: the views' checkpoint and the
-- snapshots are dropped so that the next open rebuilds them from the log (once).
CREATE TABLE proj_shares (user_id TEXT PRIMARY KEY, data BLOB NOT NULL);
DELETE FROM projection_checkpoints WHERE name = 'views';
DELETE FROM snapshots;
