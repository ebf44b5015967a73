//! The per-aggregate part a template user writes: plain diesel queries for
//! one aggregate's tables. The framework calls them inside its transactions
//! and retries; a mapping never begins or commits anything.

use std::future::Future;

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use domain::Aggregate;

/// How aggregates of one type are read from and written to their tables.
///
/// Rules the framework relies on (the contract suite catches breaking them):
/// * `load` and `load_page` read a consistent state: one statement (join the
///   child tables), not one per table.
/// * `update` writes `new` over `old` and its statement on the root row
///   filters on `version = old.version()` and sets `version = new.version()`;
///   it returns how many root rows matched (0 means a concurrent writer won,
///   and the framework rolls back and retries). Write only what changed.
/// * `delete` returns how many root rows it removed; child rows go with
///   `ON DELETE CASCADE`.
/// * Unique constraints are named as in [`Aggregate::unique_keys`].
///
/// Every method takes a shared connection, so that the framework can send
/// its own statements (BEGIN, the token claim, ROLLBACK) in the same round
/// trip as the mapping's. Run each statement on `&mut &*conn`.
///
/// Pipelining: statements whose futures are polled together (`tokio::join!`)
/// share one round trip. Check their results in statement order, and when
/// the root update matched nothing return `Ok(0)` without looking further:
/// after a failed statement the later ones only say "transaction is
/// aborted", and after a root miss they may fail because of the newer state.
/// (`try_join!` reports whichever error it polls first, so it can hide the
/// real one.) Should a write still fail after a concurrent writer moved the
/// version, the framework sees the moved version and retries.
pub trait Mapping: Send + Sync + 'static {
    /// The aggregate mapped.
    type Aggregate: Aggregate;

    /// The name of the root table's primary-key constraint: a unique
    /// violation on it means the id exists (`AlreadyExists`).
    const PRIMARY_KEY: &'static str;

    /// The aggregate with this id, if stored.
    fn load(
        conn: &AsyncPgConnection,
        id: <Self::Aggregate as Aggregate>::Id,
    ) -> impl Future<Output = QueryResult<Option<Self::Aggregate>>> + Send;

    /// At most `limit` aggregates with ids above `after`, in id order.
    fn load_page(
        conn: &AsyncPgConnection,
        after: Option<<Self::Aggregate as Aggregate>::Id>,
        limit: i64,
    ) -> impl Future<Output = QueryResult<Vec<Self::Aggregate>>> + Send;

    /// Inserts a new aggregate (its root row and child rows).
    fn insert(
        conn: &AsyncPgConnection,
        aggregate: &Self::Aggregate,
    ) -> impl Future<Output = QueryResult<()>> + Send;

    /// Writes `new` over `old`; returns the root rows matched (0 or 1).
    fn update(
        conn: &AsyncPgConnection,
        old: &Self::Aggregate,
        new: &Self::Aggregate,
    ) -> impl Future<Output = QueryResult<usize>> + Send;

    /// Whether [`Mapping::update`] writes `new` over `old` with a single
    /// statement (the root row's, say, when no child row changed). A
    /// repository update then sends it alone, atomic by itself, with no
    /// BEGIN and COMMIT around it: two round trips fewer. Answer `true`
    /// only when it is so: a second statement would commit on its own.
    /// [`table_mapping!`](crate::table_mapping) answers `true`.
    fn updates_in_one_statement(old: &Self::Aggregate, new: &Self::Aggregate) -> bool {
        let _ = (old, new);
        false
    }

    /// The stored aggregates among `ids`, in any order. The default loads
    /// them one by one; override it with one statement (`eq_any`) for
    /// aggregates that batch operations touch.
    fn load_many(
        conn: &AsyncPgConnection,
        ids: &[<Self::Aggregate as Aggregate>::Id],
    ) -> impl Future<Output = QueryResult<Vec<Self::Aggregate>>> + Send {
        async move {
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                found.extend(Self::load(conn, *id).await?);
            }
            Ok(found)
        }
    }

    /// Writes each `new` over its `old`, as [`Mapping::update`] does for
    /// one; returns how many root rows matched their old version. The
    /// default runs `update` per pair; override it with one statement for
    /// aggregates that batch operations touch.
    fn update_many(
        conn: &AsyncPgConnection,
        pairs: &[(Self::Aggregate, Self::Aggregate)],
    ) -> impl Future<Output = QueryResult<usize>> + Send {
        async move {
            let mut matched = 0;
            for (old, new) in pairs {
                matched += Self::update(conn, old, new).await?;
            }
            Ok(matched)
        }
    }

    /// Deletes the aggregate; returns the root rows removed (0 or 1).
    fn delete(
        conn: &AsyncPgConnection,
        id: <Self::Aggregate as Aggregate>::Id,
    ) -> impl Future<Output = QueryResult<usize>> + Send;
}

/// Names the mapping of an aggregate type, so that a unit of work can reach
/// any mapped aggregate by its type: `tx.of::<Account>()`.
pub trait Mapped: Aggregate {
    /// The mapping that stores this aggregate.
    type Mapping: Mapping<Aggregate = Self>;
}

/// A stored version as the database keeps it.
///
/// # Panics
/// Past `i64::MAX` writes to one aggregate, which no database lives to see.
pub fn version_to_db(version: domain::Version) -> i64 {
    i64::try_from(version.get()).expect("versions stay below i64::MAX")
}

/// A version read back from the database (the schema keeps it >= 1).
pub fn version_from_db(version: i64) -> domain::Version {
    domain::Version::new(u64::try_from(version).unwrap_or(0))
}

/// A statement of a pipelined write, boxed so that writes of different
/// shapes can travel in one flight (see [`write_root_then_children`]).
pub type Pipelined<'c> = std::pin::Pin<Box<dyn Future<Output = QueryResult<usize>> + Send + 'c>>;

/// The shape of every multi-table `Mapping::update`: the root row's
/// versioned update and the child rows' writes, sent in one round trip and
/// read back in statement order. Returns 0 when the root missed (the
/// framework retries; the children's errors then only say "transaction is
/// aborted"), else the root's count or the first child write's error.
///
/// Build each statement on `&mut &*conn` (a shared reborrow) so that all of
/// them can be in flight at once:
///
/// ```ignore
/// let root = diesel::update(orders::table.filter(orders::id.eq(id)).filter(orders::version.eq(old_version)))
///     .set(..).execute(&mut &*conn);
/// let lines = diesel::insert_into(order_lines::table).values(added).execute(&mut &*conn);
/// write_root_then_children(root, vec![Box::pin(lines)]).await
/// ```
pub async fn write_root_then_children(
    root: impl Future<Output = QueryResult<usize>> + Send,
    children: Vec<Pipelined<'_>>,
) -> QueryResult<usize> {
    let (root, children) = tokio::join!(root, futures_util::future::join_all(children));
    match root? {
        0 => Ok(0),
        matched => children
            .into_iter()
            .try_for_each(|child| child.map(drop))
            .map(|()| matched),
    }
}

/// A uuid newtype's uuid, for the generated mappings.
#[doc(hidden)]
pub fn uuid<Id: Into<uuid::Uuid>>(id: Id) -> uuid::Uuid {
    id.into()
}

/// A row read back that no longer parses: the schema and the domain
/// disagree.
#[doc(hidden)]
pub fn corrupt<A>(error: &dyn std::fmt::Display) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(
        format!(
            "a stored {} is invalid: {error}",
            std::any::type_name::<A>()
        )
        .into(),
    )
}
