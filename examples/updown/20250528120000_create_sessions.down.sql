DROP TABLE IF EXISTS ${database}.sessions;
