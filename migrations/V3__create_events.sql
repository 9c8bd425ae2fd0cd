-- Migration: create_events
-- Version: 3
-- Description: Events table
-- Author: platform-team
-- Created: 2025-05-28
-- Dependencies: 1
-- Environment: all
-- Rollback: true

CREATE TABLE IF NOT EXISTS ${database}.events
(
    event_id   UInt64,
    user_id    UInt64,
    event_type String,
    event_time DateTime,
    event_date Date DEFAULT toDate(event_time),
    properties String DEFAULT '{}'
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/events', '{replica}')
ORDER BY (event_type, event_time, event_id);

-- ROLLBACK: DROP TABLE IF EXISTS ${database}.events;
