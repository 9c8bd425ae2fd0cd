-- Migration: {{name}}
-- Version: {{version}}
-- Description: {{description}}
-- Author: {{author}}
-- Created: {{created}}
-- Dependencies: none
-- Environment: all
-- Rollback: true

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.{{name}}
ENGINE = SummingMergeTree()
ORDER BY (day)
AS SELECT
    toDate(created_at) AS day,
    count() AS events
FROM ${database}.source_table
GROUP BY day;

-- ROLLBACK: DROP TABLE IF EXISTS ${database}.{{name}};
