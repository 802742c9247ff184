-- Indexes for the dashboard's jobs table: every filter (user, status, competition, node) and the
-- newest-first order are answered from an index, never by reading every job row. The competition
-- and node are inside the row's JSON; CAST keeps json_extract reading it as text (a BLOB would be
-- taken for JSONB).
CREATE INDEX proj_jobs_position ON proj_jobs (position);
CREATE INDEX proj_jobs_user ON proj_jobs (user_id, position);
CREATE INDEX proj_jobs_status ON proj_jobs (status, position);
CREATE INDEX proj_jobs_competition ON proj_jobs (json_extract(CAST(data AS TEXT), '$.competition_id'), position);
CREATE INDEX proj_jobs_node ON proj_jobs (json_extract(CAST(data AS TEXT), '$.node'), position);
