//! The per-aggregate part a template user writes: plain diesel queries for
//! one aggregate's tables. A mapping reads, and lists the statements of a
//! write; the framework sends them inside its transactions and retries, in
//! as few round trips as it can. A mapping never begins or commits anything.

use std::future::Future;

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use domain::Aggregate;

use crate::writes::Writes;

/// How aggregates of one type are read from and written to their tables.
///
/// Rules the framework relies on (the contract suite catches breaking them):
/// * `load` and `load_page` read a consistent state: one statement (join the
///   child tables), not one per table.
/// * The root's statement is a plain `INSERT`, `UPDATE` or `DELETE`
///   without `RETURNING` (the framework wraps it to read its count). Other
///   statements of any shape are sent as they are.
/// * `update` lists the root row's statement first: it filters on
///   `version = old.version()` and sets `version = new.version()`, so that
///   it matches no row when a concurrent writer won (the framework then
///   rolls back and retries). Write only what changed.
/// * `delete` removes the root row; child rows go with `ON DELETE CASCADE`.
/// * Each key of [`Aggregate::unique_keys`] is enforced by a unique
///   constraint named `<table>_<key>_key` (the name Postgres gives
///   `UNIQUE (<key>)`), which the store reports as `Duplicate` under the
///   key's name. The contract suite (`samples_sharing_unique_values_..`)
///   fails for a key whose constraint is missing or named otherwise.
///
/// Reads take a shared connection (run a query on `&mut &*conn`); writes
/// only list statements, which the framework sends together with its own
/// (the token claim, the events; BEGIN and COMMIT where it needs them) and
/// reads back in order. Statements on different tables may run as one
/// statement ([`Writes`]): none may read what an earlier one of the same
/// write wrote to another table (foreign keys are fine). Wrap the
/// writes in [`cached`](crate::cached): diesel prepares an `INSERT` or an
/// `UPDATE` afresh on every call otherwise, a round trip each time. Wrap
/// `load` too, and derive row structs' `Insertable` with
/// `#[diesel(treat_none_as_default_value = false)]`: such statements'
/// SQL is then rendered once per process instead of on every call.
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

    /// The aggregate holding `key`, one of the keys its
    /// [`Aggregate::unique_keys`] declares, if stored: one indexed read
    /// (the key's unique constraint is its index). Implement it for each
    /// declared key; the default finds nothing, which the contract suite
    /// (`get_by_finds_the_holder_of_each_declared_key`) refuses for a key
    /// the aggregate declares.
    fn load_by(
        conn: &AsyncPgConnection,
        key: &domain::UniqueKey,
    ) -> impl Future<Output = QueryResult<Option<Self::Aggregate>>> + Send {
        let _ = (conn, key);
        std::future::ready(Ok(None))
    }

    /// At most `limit` aggregates with ids above `after`, in id order.
    fn load_page(
        conn: &AsyncPgConnection,
        after: Option<<Self::Aggregate as Aggregate>::Id>,
        limit: i64,
    ) -> impl Future<Output = QueryResult<Vec<Self::Aggregate>>> + Send;

    /// Lists the statements that insert a new aggregate: its root row's
    /// ([`Writes::root`]), then its child rows' ([`Writes::child`]). The
    /// statements may borrow the aggregate (`'a`): the framework keeps them
    /// until it sends the whole write, grouped.
    fn insert<'a>(writes: &mut Writes<'a>, aggregate: &'a Self::Aggregate);

    /// Lists the statements that write `new` over `old`: the root row's
    /// update, which filters on `version = old.version()` and sets
    /// `version = new.version()` (so that it matches no row when a
    /// concurrent writer won), then the child rows' writes. Write only what
    /// changed: a write of the root row alone is sent alone, without a
    /// transaction around it.
    fn update<'a>(writes: &mut Writes<'a>, old: &'a Self::Aggregate, new: &'a Self::Aggregate);

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

    /// Lists the writes of each `new` over its `old`, as [`Mapping::update`]
    /// does for one; the root statements' counts add up to the pairs
    /// matched. The default lists `update` per pair; override it with one
    /// statement for aggregates that batch operations touch.
    fn update_many<'a>(writes: &mut Writes<'a>, pairs: &'a [(Self::Aggregate, Self::Aggregate)]) {
        for (old, new) in pairs {
            Self::update(writes, old, new);
        }
    }

    /// Lists the statement that deletes the aggregate's root row (child
    /// rows go with `ON DELETE CASCADE`); its count is the rows removed.
    fn delete(writes: &mut Writes<'_>, id: <Self::Aggregate as Aggregate>::Id);
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
