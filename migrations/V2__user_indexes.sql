-- Migration: user_indexes
-- Version: 2
-- Description: Look up users by email: a lookup table kept current by a materialized view
-- Author: platform-team
-- Created: 2025-05-28
-- Dependencies: 1
-- Environment: all
-- Rollback: true

-- A second sort order is ClickHouse's index for another key: this table is
-- ordered by email and filled from users by the view below.
CREATE TABLE IF NOT EXISTS ${database}.users_by_email
(
    email      String,
    user_id    UInt64,
    updated_at DateTime
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/${database}/users_by_email', '{replica}', updated_at)
ORDER BY email;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.users_by_email_mv
TO ${database}.users_by_email
AS SELECT email, user_id, updated_at
FROM ${database}.users;

-- ROLLBACK: DROP TABLE IF EXISTS ${database}.users_by_email_mv;
-- ROLLBACK: DROP TABLE IF EXISTS ${database}.users_by_email;
