-- Description: Daily views per URL
-- Dependencies: 1
-- Rollback: true

CREATE TABLE IF NOT EXISTS ${database}.daily_views
(
    day   Date,
    url   String,
    views UInt64
)
ENGINE = SummingMergeTree()
ORDER BY (day, url);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.daily_views_mv
TO ${database}.daily_views
AS SELECT toDate(view_time) AS day, url, count() AS views
FROM ${database}.page_views
GROUP BY day, url;

-- ROLLBACK: DROP TABLE IF EXISTS ${database}.daily_views_mv;
-- ROLLBACK: DROP TABLE IF EXISTS ${database}.daily_views;
