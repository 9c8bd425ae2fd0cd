-- Migration: {{name}}
-- Version: {{version}}
-- Description: {{description}}
-- Author: {{author}}
-- Created: {{created}}
-- Dependencies: none
-- Environment: all
-- Rollback: true

-- On a replicated cluster use ReplicatedMergeTree, e.g.
-- ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/{{name}}', '{replica}')
CREATE TABLE IF NOT EXISTS ${database}.{{name}}
(
    id UInt64,
    created_at DateTime DEFAULT now()
)
ENGINE = MergeTree()
ORDER BY id;

-- ROLLBACK: DROP TABLE IF EXISTS ${database}.{{name}};
