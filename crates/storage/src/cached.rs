//! Prepared once per connection, rendered once per process: statements
//! diesel would prepare afresh on every call, or render afresh on every
//! call.

use std::any::TypeId;
use std::collections::BTreeMap;
use std::sync::{LazyLock, RwLock};

use diesel::QueryResult;
use diesel::pg::{Pg, PgMetadataLookup, PgQueryBuilder, PgTypeMetadata};
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::{AstPass, Query, QueryBuilder, QueryFragment, QueryId};

/// Keeps `statement` in the connection's prepared-statement cache, so that
/// after its first use on a connection it costs one round trip, not two;
/// and, where its type fixes its SQL, renders that SQL once per process.
///
/// Diesel never caches an `UPDATE`, an upsert or a `sql_query`: their SQL
/// can change from call to call (an `AsChangeset` skips `None` fields), and
/// its cache would key them by type. Each of them then costs a `Parse` round
/// trip before its `Execute` one. Wrapped, the statement is cached under its
/// SQL text and bind types instead, which is safe whatever shape it takes:
/// each shape is prepared once and reused.
///
/// diesel-async also rebuilds a statement's SQL text on every call, cached
/// or not (quoting every identifier anew: a third of the client's work on
/// a `get`). A wrapped statement whose type fixes its SQL (a static query
/// id: what diesel's own cache keys by type) is rendered on its first use
/// and copied from then on. Wrap loads too. An insert of a struct has one
/// only with `#[diesel(treat_none_as_default_value = false)]` (else diesel
/// may write `DEFAULT` for a `None`, and its SQL changes with the values):
///
/// ```ignore
/// storage::cached(users::table.find(id).select(UserRow::as_select()).limit(1))
///     .get_result(conn).await.optional()
/// ```
///
/// Wrap statements whose SQL takes a few shapes (an update of fixed
/// columns, the writes of a mapping, a load); not a batch insert of any
/// number of rows, whose every length would stay prepared on the server.
///
/// ```ignore
/// let root = storage::cached(diesel::update(orders::table.find(id)).set(..)).execute(conn);
/// ```
pub fn cached<Q>(statement: Q) -> Cached<Q> {
    Cached(statement)
}

/// A statement [`cached`]: prepared once per connection, under its type
/// where that fixes its SQL, else under its SQL text.
#[derive(Debug, Clone, Copy)]
pub struct Cached<Q>(Q);

/// The statement's own id where its type fixes its SQL (the cache keys it
/// by type, as diesel would); else none, and the cache keys it by its SQL
/// text.
impl<Q: QueryId> QueryId for Cached<Q> {
    type QueryId = Q::QueryId;
    const HAS_STATIC_QUERY_ID: bool = Q::HAS_STATIC_QUERY_ID;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}

impl<Q: QueryFragment<Pg> + QueryId> QueryFragment<Pg> for Cached<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    /// The SQL rendered the first time, where the statement's type fixes it.
    fn to_sql(&self, out: &mut PgQueryBuilder, backend: &Pg) -> QueryResult<()> {
        match rendered(&self.0) {
            Some(rendered) => {
                rendered.write(out);
                Ok(())
            }
            None => self.0.to_sql(out, backend),
        }
    }

    /// Keyed by its SQL text, any statement is safe to cache; keyed by its
    /// type, only one whose type fixes its SQL (diesel's own answer).
    fn is_safe_to_cache_prepared(&self, backend: &Pg) -> QueryResult<bool> {
        if Q::HAS_STATIC_QUERY_ID {
            self.0.is_safe_to_cache_prepared(backend)
        } else {
            Ok(true)
        }
    }
}

/// A statement's SQL split at its bind parameters: `pieces[0] $1
/// pieces[1] $2 .. pieces[n]`. Written again at any bind offset (a
/// statement inside a group numbers its binds after the group's earlier
/// ones).
#[derive(Debug, PartialEq)]
pub(crate) struct Rendered {
    pieces: Vec<Box<str>>,
    /// The table it writes, as [`Writes`](crate::Writes) groups by.
    target: Option<Box<str>>,
}

impl Rendered {
    /// The table it writes, if it can join a group (see
    /// [`Writes`](crate::Writes)).
    pub(crate) fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    fn write(&self, out: &mut PgQueryBuilder) {
        let (last, binds) = self.pieces.split_last().expect("one piece at least");
        for piece in binds {
            out.push_sql(piece);
            out.push_bind_param();
        }
        out.push_sql(last);
    }

    /// Splits `sql` at `$1` .. `$binds`, or `None` unless those are exactly
    /// the placeholders it holds, in order (a `$` in a literal or a quoted
    /// identifier then keeps the statement rendered on every call).
    fn split(sql: &str, binds: usize) -> Option<Self> {
        let mut pieces = Vec::with_capacity(binds + 1);
        let mut rest = sql;
        let mut piece = String::new();
        while let Some(at) = rest.find('$') {
            let digits = rest[at + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len() - at - 1);
            piece.push_str(&rest[..at]);
            if digits == 0 {
                return None;
            }
            let number: usize = rest[at + 1..at + 1 + digits].parse().ok()?;
            if number != pieces.len() + 1 {
                return None;
            }
            pieces.push(std::mem::take(&mut piece).into_boxed_str());
            rest = &rest[at + 1 + digits..];
        }
        piece.push_str(rest);
        pieces.push(piece.into_boxed_str());
        let target = crate::writes::target(sql).map(Box::from);
        (pieces.len() == binds + 1).then_some(Self { pieces, target })
    }
}

/// The SQL of each statement type rendered so far (`None`: its type does
/// not fix it). Types are few and live as long as the program: entries are
/// leaked, so that a hit costs a read lock and a few comparisons.
static RENDERED: LazyLock<RwLock<BTreeMap<TypeId, Option<&'static Rendered>>>> =
    LazyLock::new(Default::default);

/// `statement`'s SQL, rendered once for its type, if its type fixes it.
fn rendered<Q: QueryFragment<Pg> + QueryId>(statement: &Q) -> Option<&'static Rendered> {
    // Diesel's contract for a static query id: the type alone identifies
    // the SQL (a list of varying length, an `IN` of a `Vec`, has none).
    let id = Q::query_id()?;
    if let Some(known) = RENDERED.read().ok()?.get(&id) {
        return *known;
    }
    let made = render(statement).map(|r| &*Box::leak(Box::new(r)));
    *RENDERED.write().ok()?.entry(id).or_insert(made)
}

/// The rendering of statements of `shape`, if one was rendered (and its
/// type fixes its SQL).
pub(crate) fn rendered_shape(shape: TypeId) -> Option<&'static Rendered> {
    *RENDERED.read().ok()?.get(&shape)?
}

fn render(statement: &impl QueryFragment<Pg>) -> Option<Rendered> {
    struct NoLookup;
    impl PgMetadataLookup for NoLookup {
        fn lookup_type(&mut self, _name: &str, _schema: Option<&str>) -> PgTypeMetadata {
            PgTypeMetadata::new(0, 0)
        }
    }
    let mut sql = PgQueryBuilder::default();
    statement.to_sql(&mut sql, &Pg).ok()?;
    let mut binds = RawBytesBindCollector::<Pg>::new();
    statement
        .collect_binds(&mut binds, &mut NoLookup, &Pg)
        .ok()?;
    Rendered::split(&sql.finish(), binds.metadata.len())
}

#[cfg(test)]
mod tests {
    use super::{Rendered, cached, rendered};
    use crate::outbox::outbox;
    use crate::tokens::tx_tokens;
    use diesel::pg::{Pg, PgQueryBuilder};
    use diesel::prelude::*;
    use diesel::query_builder::{QueryBuilder, QueryFragment};

    fn sql(statement: &impl QueryFragment<Pg>) -> String {
        let mut out = PgQueryBuilder::default();
        statement.to_sql(&mut out, &Pg).unwrap();
        out.finish()
    }

    #[test]
    fn a_load_is_rendered_once_and_written_as_diesel_writes_it() {
        let load = |id| {
            tx_tokens::table
                .filter(tx_tokens::token.eq(id))
                .filter(tx_tokens::aggregate_kind.eq("user"))
                .select((tx_tokens::aggregate_id, tx_tokens::fingerprint))
                .limit(1)
        };
        let wrapped = cached(load(uuid::Uuid::nil()));
        assert!(rendered(&load(uuid::Uuid::nil())).is_some());
        assert_eq!(sql(&wrapped), sql(&load(uuid::Uuid::max())));
        assert!(sql(&wrapped).contains("$3"), "{}", sql(&wrapped));
    }

    #[test]
    fn a_rendered_statement_numbers_its_binds_after_those_before_it() {
        let insert = || {
            diesel::insert_into(outbox::table).values((
                outbox::id.eq(uuid::Uuid::nil()),
                outbox::aggregate_kind.eq("user"),
            ))
        };
        let mut out = PgQueryBuilder::default();
        out.push_sql("SELECT ");
        out.push_bind_param();
        out.push_sql("; ");
        cached(insert()).to_sql(&mut out, &Pg).unwrap();
        assert_eq!(
            out.finish(),
            format!(
                "SELECT $1; {}",
                sql(&insert()).replace("$2", "$3").replace("$1", "$2")
            )
        );
    }

    #[test]
    fn a_statement_whose_sql_changes_with_its_values_is_rendered_each_time() {
        let some = |ids: Vec<uuid::Uuid>| {
            tx_tokens::table
                .filter(tx_tokens::token.eq_any(ids))
                .select(tx_tokens::token)
        };
        assert!(rendered(&some(vec![uuid::Uuid::nil()])).is_none());
        assert_eq!(
            sql(&cached(some(vec![uuid::Uuid::nil(), uuid::Uuid::max()]))),
            sql(&some(vec![uuid::Uuid::nil(), uuid::Uuid::max()]))
        );
        let update = diesel::update(tx_tokens::table).set(tx_tokens::aggregate_kind.eq("x"));
        assert!(rendered(&update).is_none());
    }

    #[test]
    fn sql_splits_only_at_its_own_binds_in_order() {
        let split = |sql, binds| Rendered::split(sql, binds).map(|r| r.pieces.len());
        assert_eq!(split("SELECT a FROM t WHERE b = $1 AND c = $2", 2), Some(3));
        assert_eq!(split("SELECT 1", 0), Some(1));
        assert_eq!(split("SELECT '$1' WHERE b = $1", 1), None);
        assert_eq!(split("SELECT a WHERE b = $1 OR c = '$2'", 1), None);
        assert_eq!(split("SELECT $2, $1", 2), None);
        assert_eq!(split("SELECT '$'", 0), None);
    }
}
