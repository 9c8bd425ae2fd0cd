-- Migration: create_users
-- Version: 1
-- Description: Users table, replicated within each shard
-- Author: platform-team
-- Created: 2025-05-28
-- Dependencies: none
-- Environment: all
-- Rollback: true

-- ON CLUSTER is added by chmigrate when a cluster is configured.
CREATE TABLE IF NOT EXISTS ${database}.users
(
    user_id    UInt64,
    email      String,
    name       String,
    country    FixedString(2),
    created_at DateTime DEFAULT now(),
    updated_at DateTime DEFAULT now()
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/${database}/users', '{replica}', updated_at)
ORDER BY user_id;

-- ROLLBACK: DROP TABLE IF EXISTS ${database}.users;
