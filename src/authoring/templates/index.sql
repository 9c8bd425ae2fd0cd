-- Migration: {{name}}
-- Version: {{version}}
-- Description: {{description}}
-- Author: {{author}}
-- Created: {{created}}
-- Dependencies: none
-- Environment: all
-- Rollback: true

-- Data-skipping index. ClickHouse 18.16 has none (ADD INDEX is a syntax
-- error there, and allow_experimental_data_skipping_indices an unknown
-- setting); on 18.16 a second sort order is a table ordered by the column,
-- filled by a materialized view (see migrations/V2__user_indexes.sql).
-- Servers of the 19.x and 20.x series that have these indices as an
-- experiment need SET allow_experimental_data_skipping_indices = 1 first.
ALTER TABLE ${database}.my_table
    ADD INDEX idx_my_column my_column TYPE minmax GRANULARITY 4;

-- ROLLBACK: ALTER TABLE ${database}.my_table DROP INDEX idx_my_column;
