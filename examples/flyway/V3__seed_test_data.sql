-- Description: Sample rows for development only
-- Dependencies: 1.1
-- Environment: development
-- Rollback: true

INSERT INTO ${database}.page_views (view_time, url, user_id, referrer) VALUES
    ('2025-05-28 10:00:00', '/home', 1, ''),
    ('2025-05-28 10:05:00', '/pricing', 2, 'https://example.com/?a=1;b=2');

-- ROLLBACK: ALTER TABLE ${database}.page_views DELETE WHERE user_id IN (1, 2);
