-- Migration: {{name}}
-- Version: {{version}}
-- Description: {{description}}
-- Author: {{author}}
-- Created: {{created}}
-- Dependencies: none
-- Environment: all
-- Rollback: true

ALTER TABLE ${database}.my_table
    ADD COLUMN new_column String DEFAULT '';

-- ROLLBACK: ALTER TABLE ${database}.my_table DROP COLUMN new_column;
