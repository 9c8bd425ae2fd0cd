-- Dependencies: 20250528120000
ALTER TABLE ${database}.sessions ADD COLUMN device String DEFAULT 'unknown';
ALTER TABLE ${database}.sessions ADD COLUMN os String DEFAULT 'unknown';
