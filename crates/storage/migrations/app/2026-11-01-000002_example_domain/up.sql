-- The example domain: users (two tables), orders (two tables), the action log.
-- Aggregates refer to each other by id only: an order's user_id has no foreign
-- key, because consistency across aggregates is the use-case's job.

CREATE TABLE users (
    id UUID PRIMARY KEY,
    version BIGINT NOT NULL CHECK (version >= 1),
    username TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL CHECK (score >= 0 AND score < 'Infinity'),
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT users_username_key UNIQUE (username)
);

CREATE TABLE user_profiles (
    user_id UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL
);

CREATE TABLE orders (
    id UUID PRIMARY KEY,
    version BIGINT NOT NULL CHECK (version >= 1),
    user_id UUID NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'placed', 'cancelled')),
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX orders_user_id_idx ON orders (user_id);

CREATE TABLE order_lines (
    order_id UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position INTEGER NOT NULL CHECK (position >= 0),
    sku TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents BIGINT NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, position)
);

CREATE TABLE actions (
    id UUID PRIMARY KEY,
    version BIGINT NOT NULL CHECK (version >= 1),
    what TEXT NOT NULL,
    aggregate_kind TEXT NOT NULL,
    aggregate_id UUID NOT NULL,
    at TIMESTAMPTZ NOT NULL
);
