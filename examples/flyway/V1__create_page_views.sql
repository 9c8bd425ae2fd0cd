-- Migration: create_page_views
-- Version: 1
-- Description: Page views
-- Author: web-analytics
-- Created: 2025-05-28
-- Environment: all
-- Rollback: true

CREATE TABLE IF NOT EXISTS ${database}.page_views
(
    view_time DateTime,
    url       String,
    user_id   UInt64
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(view_time)
ORDER BY (url, view_time);

-- ROLLBACK: DROP TABLE IF EXISTS ${database}.page_views;
