-- Read-only SQL for admins (docs/admin-guide.md "SQL for admins"): plain columns over the projection
-- rows (msgspec JSON, read as text: a BLOB would be taken for JSONB) and the event log. Views only:
-- nothing here is written, and the log stays the truth. Times are ISO-8601 UTC; a field a row omits
-- (its default) reads as that default.
CREATE VIEW jobs AS
SELECT
    job_id,
    user_id,
    status,
    coalesce(json_extract(CAST(data AS TEXT), '$.phase'), 'submitted') AS phase,
    json_extract(CAST(data AS TEXT), '$.competition_id') AS competition_id,
    json_extract(CAST(data AS TEXT), '$.project_id') AS project_id,
    json_extract(CAST(data AS TEXT), '$.node') AS node,
    coalesce(json_extract(CAST(data AS TEXT), '$.gpus'), 1) AS gpus,
    json_extract(CAST(data AS TEXT), '$.expected_time_s') AS expected_time_s,
    json_extract(CAST(data AS TEXT), '$.reason') AS reason,
    json_extract(CAST(data AS TEXT), '$.exit_code') AS exit_code,
    coalesce(json_extract(CAST(data AS TEXT), '$.attempt'), 0) AS attempt,
    strftime('%Y-%m-%dT%H:%M:%fZ', json_extract(CAST(data AS TEXT), '$.created_at') / 1e6, 'unixepoch') AS created_at,
    strftime('%Y-%m-%dT%H:%M:%fZ', json_extract(CAST(data AS TEXT), '$.started_at') / 1e6, 'unixepoch') AS started_at,
    strftime('%Y-%m-%dT%H:%M:%fZ', completed_at / 1e6, 'unixepoch') AS completed_at,
    json_extract(CAST(data AS TEXT), '$.results_file') AS results_file,
    position AS submit_position
FROM proj_jobs;

CREATE VIEW tokens AS
SELECT
    token_id,
    user_id,
    coalesce(json_extract(CAST(data AS TEXT), '$.is_admin'), 0) AS is_admin,
    strftime('%Y-%m-%dT%H:%M:%fZ', json_extract(CAST(data AS TEXT), '$.created_at') / 1e6, 'unixepoch') AS created_at,
    json_extract(CAST(data AS TEXT), '$.expires_at') AS expires_at,
    coalesce(json_extract(CAST(data AS TEXT), '$.revoked'), 0) AS revoked
FROM proj_tokens;

CREATE VIEW users AS
SELECT
    u.user_id,
    coalesce(json_extract(CAST(u.data AS TEXT), '$.total'), 0) AS total,
    coalesce(json_extract(CAST(u.data AS TEXT), '$.pending'), 0) AS pending,
    coalesce(json_extract(CAST(u.data AS TEXT), '$.running'), 0) AS running,
    coalesce(json_extract(CAST(u.data AS TEXT), '$.completed'), 0) AS completed,
    coalesce(json_extract(CAST(u.data AS TEXT), '$.failed'), 0) AS failed,
    coalesce(json_extract(CAST(u.data AS TEXT), '$.cancelled'), 0) AS cancelled,
    coalesce(json_extract(CAST(s.data AS TEXT), '$.share'), 1.0) AS share,
    coalesce(json_extract(CAST(s.data AS TEXT), '$.priority'), 0) AS priority
FROM proj_users AS u LEFT JOIN proj_shares AS s ON s.user_id = u.user_id;

CREATE VIEW nodes AS
SELECT
    name,
    json_extract(CAST(data AS TEXT), '$.host') AS host,
    json_extract(CAST(data AS TEXT), '$.slots') AS slots,
    json_extract(CAST(data AS TEXT), '$.kind') AS kind,
    coalesce(json_extract(CAST(data AS TEXT), '$.up'), 1) AS up,
    coalesce(json_extract(CAST(data AS TEXT), '$.drained'), 0) AS drained,
    json_extract(CAST(data AS TEXT), '$.down_reason') AS down_reason
FROM proj_nodes;

CREATE VIEW events_readable AS
SELECT
    position,
    strftime('%Y-%m-%dT%H:%M:%fZ', recorded_at / 1e6, 'unixepoch') AS recorded_at,
    stream,
    version,
    type,
    actor,
    CAST(payload AS TEXT) AS payload
FROM events;
