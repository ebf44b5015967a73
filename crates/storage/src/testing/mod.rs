//! Test support for stores' own test suites: the contract suite's
//! aggregates mapped to Postgres, so the same suites run on both stores.

mod counter_mapping;
mod ledger_mapping;

pub use counter_mapping::CounterMapping;
pub use ledger_mapping::LedgerMapping;

/// The tables of the test aggregates; test set-ups create them (no
/// migration does: they are not part of any application).
pub const CREATE_TABLES: &str = "
CREATE TABLE counters (
    id UUID PRIMARY KEY,
    version BIGINT NOT NULL,
    label TEXT NOT NULL,
    value BIGINT NOT NULL
);
CREATE TABLE ledgers (
    id UUID PRIMARY KEY,
    version BIGINT NOT NULL,
    owner TEXT NOT NULL,
    handle TEXT,
    CONSTRAINT ledgers_handle_key UNIQUE (handle)
);
CREATE TABLE ledger_entries (
    ledger_id UUID NOT NULL REFERENCES ledgers (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    amount BIGINT NOT NULL,
    PRIMARY KEY (ledger_id, position)
);
";
