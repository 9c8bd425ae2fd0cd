-- Dependencies: 20250601000000
-- migrate:up
ALTER TABLE ${database}.orders ADD COLUMN status String DEFAULT 'new';

-- migrate:down
ALTER TABLE ${database}.orders DROP COLUMN status;
