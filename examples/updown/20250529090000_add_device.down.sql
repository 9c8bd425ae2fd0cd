ALTER TABLE ${database}.sessions DROP COLUMN os;
ALTER TABLE ${database}.sessions DROP COLUMN device;
