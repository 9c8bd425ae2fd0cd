-- No .down.sql: once applied, chmigrate derives the rollback (DROP … IF
-- EXISTS), since the ledger records that this statement created the view.
CREATE VIEW IF NOT EXISTS ${database}.sessions_by_day AS
SELECT toDate(started_at) AS day, count() AS sessions
FROM ${database}.sessions
GROUP BY day;
