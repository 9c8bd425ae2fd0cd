-- Migration: partition_events
-- Version: 4
-- Description: Monthly partitioned copy of events, fed by a materialized view
-- Author: platform-team
-- Created: 2025-05-28
-- Dependencies: 3
-- Environment: all
-- Rollback: true

-- ClickHouse cannot change a table's partition key in place, so the
-- partitioned layout is a new table that new events flow into.
CREATE TABLE IF NOT EXISTS ${database}.events_monthly
(
    event_id   UInt64,
    user_id    UInt64,
    event_type String,
    event_time DateTime,
    event_date Date,
    properties String
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/events_monthly', '{replica}')
PARTITION BY toYYYYMM(event_date)
ORDER BY (event_type, event_time, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.events_monthly_mv
TO ${database}.events_monthly
AS SELECT event_id, user_id, event_type, event_time, event_date, properties
FROM ${database}.events;

-- ROLLBACK: DROP TABLE IF EXISTS ${database}.events_monthly_mv;
-- ROLLBACK: DROP TABLE IF EXISTS ${database}.events_monthly;
