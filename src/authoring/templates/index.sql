-- Migration: {{name}}
-- Version: {{version}}
-- Description: {{description}}
-- Author: {{author}}
-- Created: {{created}}
-- Dependencies: none
-- Environment: all
-- Rollback: true

-- Data-skipping index (ClickHouse 19.x and later; older servers need
-- allow_experimental_data_skipping_indices = 1).
ALTER TABLE ${database}.my_table
    ADD INDEX idx_my_column my_column TYPE minmax GRANULARITY 4;

-- ROLLBACK: ALTER TABLE ${database}.my_table DROP INDEX idx_my_column;
