-- Description: Orders
-- migrate:up
CREATE TABLE IF NOT EXISTS ${database}.orders
(
    order_id   UInt64,
    user_id    UInt64,
    amount     Decimal(18, 2),
    created_at DateTime
)
ENGINE = MergeTree()
ORDER BY order_id;

-- migrate:down
DROP TABLE IF EXISTS ${database}.orders;
