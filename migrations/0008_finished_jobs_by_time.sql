-- Finished jobs leave memory: the lists of jobs finished in a window (the dashboard's lanes,
-- utilisation and usage, and past views' finished jobs) are read by this index.
CREATE INDEX proj_jobs_completed ON proj_jobs (completed_at);
