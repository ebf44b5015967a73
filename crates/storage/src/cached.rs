//! Prepared once per connection: statements diesel would prepare afresh on
//! every call.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};

/// Keeps `statement` in the connection's prepared-statement cache, so that
/// after its first use on a connection it costs one round trip, not two.
///
/// Diesel never caches an `UPDATE`, an upsert or a `sql_query`: their SQL
/// can change from call to call (an `AsChangeset` skips `None` fields), and
/// its cache would key them by type. Each of them then costs a `Parse` round
/// trip before its `Execute` one. Wrapped, the statement is cached under its
/// SQL text and bind types instead, which is safe whatever shape it takes:
/// each shape is prepared once and reused.
///
/// Wrap statements whose SQL takes a few shapes (an update of fixed
/// columns, the writes of a mapping); not a batch insert of any number of
/// rows, whose every length would stay prepared on the server.
///
/// ```ignore
/// let root = storage::cached(diesel::update(orders::table.find(id)).set(..)).execute(conn);
/// ```
pub fn cached<Q>(statement: Q) -> Cached<Q> {
    Cached(statement)
}

/// A statement [`cached`] under its SQL text.
#[derive(Debug, Clone, Copy)]
pub struct Cached<Q>(Q);

impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    /// Not static: the cache then keys the statement by its SQL text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Cached<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}
