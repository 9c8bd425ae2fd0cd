-- Version: 1.1
-- Description: Referrer column (version 1.1 sorts after 1 and before 2)
-- Dependencies: 1
-- Rollback: true

ALTER TABLE ${database}.page_views ADD COLUMN referrer String DEFAULT '';

-- ROLLBACK: ALTER TABLE ${database}.page_views
-- ROLLBACK:     DROP COLUMN referrer;
