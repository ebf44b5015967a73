//! Read-your-writes with a read replica: causality tokens.
//!
//! A store given a replica ([`crate::PgStore::with_replica`]) serves
//! `get`, `list` and `events` from it; the replica replays the primary's
//! log a little behind, so a read there may miss a write that just
//! committed. A [`Causality`] is a position in the primary's write-ahead
//! log at or after a write's commit. Code that runs inside a [`scope`]
//! (the service runs each request in one) records the position of every
//! write the store makes there, and its reads are served by the replica
//! only once the replica has replayed past the highest position in the
//! scope, waiting up to `StoreConfig::replica_wait`, else by the primary.
//! A client carries the position from one request to the next (the
//! service's `Causality-Token` header) and never reads its own writes stale;
//! reads outside any scope, or in one with no position, may be stale.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

/// A position in the primary's write-ahead log (a `pg_lsn`). Written as a
/// token of 16 hexadecimal digits (`00000016B374D848`, which Postgres
/// writes `16/B374D848`): opaque to clients, who only send back what they
/// were given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Causality(u64);

impl Causality {
    /// Reads Postgres' form of a `pg_lsn`.
    fn from_pg_lsn(text: &str) -> Result<Self, NotAPosition> {
        let (high, low) = text.split_once('/').ok_or(NotAPosition)?;
        let high = u32::from_str_radix(high, 16).map_err(|_| NotAPosition)?;
        let low = u32::from_str_radix(low, 16).map_err(|_| NotAPosition)?;
        Ok(Self((u64::from(high) << 32) | u64::from(low)))
    }
}

impl fmt::Display for Causality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", self.0)
    }
}

/// A string that is no causality token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a causality token is 1 to 16 hexadecimal digits, as an earlier answer gave it")]
pub struct NotAPosition;

impl FromStr for Causality {
    type Err = NotAPosition;

    fn from_str(text: &str) -> Result<Self, NotAPosition> {
        if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NotAPosition);
        }
        u64::from_str_radix(text, 16)
            .map(Self)
            .map_err(|_| NotAPosition)
    }
}

tokio::task_local! {
    static SCOPE: Cell<Option<Causality>>;
}

/// Runs `work` in a causality scope starting at `floor` (what the caller
/// has seen); returns its output and the highest position of the scope
/// afterwards: `floor`, or the last write's if it wrote.
pub async fn scope<T>(
    floor: Option<Causality>,
    work: impl Future<Output = T>,
) -> (T, Option<Causality>) {
    SCOPE
        .scope(Cell::new(floor), async move {
            let output = work.await;
            (output, SCOPE.with(Cell::get))
        })
        .await
}

/// Whether the running code is inside a scope (and writes are worth a
/// position).
pub(crate) fn in_scope() -> bool {
    SCOPE.try_with(|_| ()).is_ok()
}

/// The highest position of the running scope.
pub(crate) fn floor() -> Option<Causality> {
    SCOPE.try_with(Cell::get).ok().flatten()
}

/// Raises the running scope's position to `at`.
pub(crate) fn wrote(at: Causality) {
    let _ = SCOPE.try_with(|scope| scope.set(scope.get().max(Some(at))));
}

/// The primary's current log position, read on `conn`: at or after the
/// commit of every transaction that committed before.
pub(crate) async fn position(
    conn: &diesel_async::AsyncPgConnection,
) -> diesel::QueryResult<Causality> {
    read_position(conn, "pg_current_wal_lsn()::text")
        .await?
        .ok_or_else(|| diesel::result::Error::NotFound)
}

/// How far the replica `conn` is on has replayed (`None` on a server
/// that is no replica).
pub(crate) async fn replayed(
    conn: &diesel_async::AsyncPgConnection,
) -> diesel::QueryResult<Option<Causality>> {
    read_position(conn, "pg_last_wal_replay_lsn()::text").await
}

async fn read_position(
    conn: &diesel_async::AsyncPgConnection,
    expression: &str,
) -> diesel::QueryResult<Option<Causality>> {
    use diesel::dsl::sql;
    use diesel::sql_types::{Nullable, Text};
    use diesel_async::RunQueryDsl;
    let text: Option<String> = diesel::select(sql::<Nullable<Text>>(expression))
        .get_result(&mut &*conn)
        .await?;
    text.map(|text| Causality::from_pg_lsn(&text))
        .transpose()
        .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))
}

/// The highest replay position the replica was seen at: its position only
/// grows, so a read whose position is behind it needs no look at the
/// replica. (A replica replaced by one further behind would break that:
/// restart the service when the replica is rebuilt.)
#[derive(Debug, Default)]
pub(crate) struct SeenReplayed(std::sync::atomic::AtomicU64);

impl SeenReplayed {
    /// Whether the replica was seen past `at`.
    pub(crate) fn covers(&self, at: Causality) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire) >= at.0
    }

    /// Remembers that the replica was seen at `at`.
    pub(crate) fn saw(&self, at: Causality) {
        self.0.fetch_max(at.0, std::sync::atomic::Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hex_digits_and_positions_are_postgres_lsns() {
        let at = Causality::from_pg_lsn("16/B374D848").expect("a pg_lsn");
        assert_eq!(at.to_string(), "00000016B374D848");
        assert_eq!("16B374D848".parse(), Ok(at));
        assert_eq!("0".parse(), Ok(Causality(0)));
        assert!(at < Causality::from_pg_lsn("17/0").expect("a pg_lsn"));
        for bad in [
            "",
            "16/B374D848",
            "G",
            "00000000000000001",
            "-1",
            "+1",
            " 1",
        ] {
            assert_eq!(bad.parse::<Causality>(), Err(NotAPosition), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_scope_keeps_the_highest_position_written() {
        let (low, high) = (Causality(0x10), Causality(0x20));
        let ((), seen) = scope(Some(high), async { wrote(low) }).await;
        assert_eq!(seen, Some(high));
        let ((), seen) = scope(None, async { wrote(low) }).await;
        assert_eq!(seen, Some(low));
        assert!(!in_scope());
        wrote(high); // outside a scope: nothing to raise, no panic
    }
}
