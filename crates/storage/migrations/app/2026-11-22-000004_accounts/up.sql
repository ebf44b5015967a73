-- Accounts: a user's balance in cents, one table.
CREATE TABLE accounts (
    id UUID PRIMARY KEY,
    version BIGINT NOT NULL CHECK (version >= 1),
    owner_id UUID NOT NULL,
    balance_cents BIGINT NOT NULL CHECK (balance_cents >= 0)
);

CREATE INDEX accounts_owner_id_idx ON accounts (owner_id);
