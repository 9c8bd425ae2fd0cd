-- Migration: {{name}}
-- Version: {{version}}
-- Description: {{description}}
-- Author: {{author}}
-- Created: {{created}}
-- Dependencies: none
-- Environment: all
-- Rollback: false

-- Data migrations run once (not once per replica). Keep them idempotent
-- where you can: a run that is killed mid-statement is resumed only after a
-- `chmigrate repair` decision for statements that are not safe to repeat.
INSERT INTO ${database}.target_table
SELECT *
FROM ${database}.source_table;
