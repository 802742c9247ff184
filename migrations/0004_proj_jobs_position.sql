-- Start-up reads proj_jobs in submit order: an index, not a sort of every row.
CREATE INDEX proj_jobs_position ON proj_jobs (position);
