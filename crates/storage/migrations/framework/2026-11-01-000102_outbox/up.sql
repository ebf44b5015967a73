-- The outbox: events an aggregate's rules recorded, written in the same
-- transaction as the change, for a relay to publish. `seq` orders them as
-- they were written; events of one aggregate are ordered by `version`, then
-- `seq` (within one change).
CREATE TABLE outbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    aggregate_kind TEXT NOT NULL,
    aggregate_id UUID NOT NULL,
    version BIGINT NOT NULL CHECK (version >= 1),
    name TEXT NOT NULL,
    payload JSONB NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    published_at TIMESTAMPTZ
);

-- An aggregate's events, in order.
CREATE INDEX outbox_aggregate_idx ON outbox (aggregate_kind, aggregate_id, version, seq);

-- What is left to publish, oldest first.
CREATE INDEX outbox_unpublished_idx ON outbox (seq) WHERE published_at IS NULL;

-- Wakes the relay (LISTEN outbox) when a transaction that stored events
-- commits: once per statement, and Postgres folds a transaction's equal
-- notifications into one.
CREATE FUNCTION outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
