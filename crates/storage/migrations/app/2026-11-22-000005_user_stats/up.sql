-- A read model kept from `order_placed` events: one row per user who
-- placed an order, keyed by the user's id.
CREATE TABLE user_stats (
    id UUID PRIMARY KEY,
    version BIGINT NOT NULL CHECK (version >= 1),
    orders_placed BIGINT NOT NULL CHECK (orders_placed >= 0),
    total_spent_cents BIGINT NOT NULL CHECK (total_spent_cents >= 0)
);
