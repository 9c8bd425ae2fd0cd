CREATE TABLE IF NOT EXISTS ${database}.sessions
(
    session_id String,
    user_id    UInt64,
    started_at DateTime
)
ENGINE = MergeTree()
ORDER BY (user_id, started_at);
