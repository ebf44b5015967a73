//! A mapping that fails on purpose: before an update of a planned counter
//! it makes the server raise a planned SQLSTATE, with the message Postgres
//! itself uses for it, so the classification meets what production meets.

use std::collections::{HashMap, VecDeque};
use std::sync::{LazyLock, Mutex, PoisonError};

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use domain::Aggregate;
use domain::testing::{Counter, CounterId};
use storage::testing::CounterMapping;
use storage::{Mapping, Writes};

/// A server error to raise: SQLSTATE and message.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    /// The SQLSTATE.
    pub code: &'static str,
    /// The server's own message for it.
    pub message: &'static str,
}

/// 40001.
pub const SERIALIZATION_FAILURE: Fault = Fault {
    code: "40001",
    message: "could not serialize access due to concurrent update",
};
/// 40P01.
pub const DEADLOCK: Fault = Fault {
    code: "40P01",
    message: "deadlock detected",
};
/// 55P03.
pub const LOCK_TIMEOUT: Fault = Fault {
    code: "55P03",
    message: "canceling statement due to lock timeout",
};
/// 57014.
pub const STATEMENT_TIMEOUT: Fault = Fault {
    code: "57014",
    message: "canceling statement due to statement timeout",
};
/// 57P01.
pub const ADMIN_SHUTDOWN: Fault = Fault {
    code: "57P01",
    message: "terminating connection due to administrator command",
};
/// 25P03.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Fault = Fault {
    code: "25P03",
    message: "terminating connection due to idle-in-transaction timeout",
};
/// XX000: a bug, not a fault to retry.
pub const INTERNAL_ERROR: Fault = Fault {
    code: "XX000",
    message: "unexpected internal error",
};

static PLANS: LazyLock<Mutex<HashMap<CounterId, VecDeque<Fault>>>> = LazyLock::new(Mutex::default);

/// Makes the next `faults.len()` updates of `id` fail with these faults.
pub fn plan(id: CounterId, faults: impl IntoIterator<Item = Fault>) {
    PLANS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, faults.into_iter().collect());
}

/// How many planned faults of `id` have not fired yet.
pub fn pending(id: CounterId) -> usize {
    PLANS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
        .map_or(0, VecDeque::len)
}

fn next_fault(id: CounterId) -> Option<Fault> {
    PLANS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_mut(&id)
        .and_then(VecDeque::pop_front)
}

/// [`CounterMapping`] with planned faults before updates.
#[derive(Debug, Clone, Copy)]
pub struct FaultyCounters;

impl Mapping for FaultyCounters {
    type Aggregate = Counter;
    const PRIMARY_KEY: &'static str = CounterMapping::PRIMARY_KEY;

    async fn load(conn: &AsyncPgConnection, id: CounterId) -> QueryResult<Option<Counter>> {
        CounterMapping::load(conn, id).await
    }

    async fn load_page(
        conn: &AsyncPgConnection,
        after: Option<CounterId>,
        limit: i64,
    ) -> QueryResult<Vec<Counter>> {
        CounterMapping::load_page(conn, after, limit).await
    }

    fn insert<'a>(writes: &mut Writes<'a>, counter: &'a Counter) {
        CounterMapping::insert(writes, counter);
    }

    /// A planned fault goes first, as a statement that raises it: the
    /// update after it then fails too ("transaction is aborted"), and the
    /// framework judges the write by the first failure.
    fn update<'a>(writes: &mut Writes<'a>, old: &'a Counter, new: &'a Counter) {
        if let Some(fault) = next_fault(new.id()) {
            writes.child(diesel::sql_query(format!(
                "DO $$ BEGIN RAISE EXCEPTION '{}' USING ERRCODE = '{}'; END $$",
                fault.message, fault.code
            )));
        }
        CounterMapping::update(writes, old, new);
    }

    fn delete(writes: &mut Writes<'_>, id: CounterId) {
        CounterMapping::delete(writes, id);
    }
}
