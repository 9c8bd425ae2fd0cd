-- No .down.sql: this migration cannot be rolled back.
CREATE VIEW IF NOT EXISTS ${database}.sessions_by_day AS
SELECT toDate(started_at) AS day, count() AS sessions
FROM ${database}.sessions
GROUP BY day;
