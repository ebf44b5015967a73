//! The statements of one write, as a mapping lists them: the framework
//! decides how they travel (alone, in one flight with BEGIN and the token
//! claim, inside a unit's savepoint) and reads their replies in order.
//!
//! Statements on different tables travel as one: `WITH storage_w0 AS
//! (<first> RETURNING 1), storage_w1 AS (<second> RETURNING 1) SELECT
//! ARRAY[(SELECT count(*) FROM storage_w0), (SELECT count(*) FROM
//! storage_w1)]`. The server runs them in that order (it evaluates the
//! array's elements in order, each running its statement), as one
//! statement: atomic without a transaction around it, and one reply to
//! wait for instead of one per statement. A statement on a table the
//! current group already writes starts the next group: parts of one
//! statement read the rows as they were when it began, so a second write
//! to a row an earlier part changed would not see that change (Postgres
//! then keeps only one of the two). So does a statement this shape cannot
//! hold (a `RETURNING`, a statement that is no plain `INSERT`, `UPDATE` or
//! `DELETE`).

use std::any::TypeId;
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use diesel::QueryResult;
use diesel::pg::{Pg, PgMetadataLookup, PgQueryBuilder, PgTypeMetadata};
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::{AstPass, Query, QueryBuilder as _, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// One statement (or group) on its way, boxed so that statements of any
/// shape share a flight.
type Sent<'c> = Pin<Box<dyn Future<Output = QueryResult<Counts>> + Send + 'c>>;

/// What a statement, or a group sent as one, reports.
enum Counts {
    /// A lone statement's rows.
    One(usize),
    /// Each grouped statement's rows, in order.
    Each(Vec<i64>),
}

/// A listed statement, kept until the framework sends the list.
type Statement<'c> = Box<dyn QueryFragment<Pg> + Send + Sync + 'c>;

/// The statements a [`Mapping`](crate::Mapping) writes an aggregate with,
/// in order: the root row's first ([`Writes::root`]), then the child rows'
/// ([`Writes::child`]). A mapping only lists them; nothing is sent until
/// the framework sends the whole list, in one round trip where it can, and
/// statements on different tables as one statement (see the module's
/// documentation): a statement must not read what an earlier statement of
/// the same write wrote to another table. Foreign keys are fine; they are
/// checked once the statement ends.
///
/// ```ignore
/// writes.root(storage::cached(
///     diesel::update(orders::table.filter(orders::id.eq(id)).filter(orders::version.eq(old_version)))
///         .set(orders::version.eq(new_version)),
/// ));
/// writes.child(storage::cached(diesel::insert_into(order_lines::table).values(added)));
/// ```
pub struct Writes<'c> {
    statements: Vec<(Part<'c>, Statement<'c>)>,
    /// Each statement's query id, where its type fixes its SQL: the table
    /// of a shape [`cached`](crate::cached) has rendered is known without
    /// rendering it again.
    shapes: Vec<Option<TypeId>>,
    /// Whether a root statement that has company is sent guarded (see
    /// [`Writes::guarded`]), so that a miss fails the whole write.
    guard_roots: bool,
    /// Whether a lone root statement is guarded too
    /// ([`Writes::all_guarded`]).
    guard_lone: bool,
    /// How many statements each group sent as one holds, in order; made
    /// when first needed.
    groups: Option<Vec<usize>>,
}

/// Whether a statement writes the root row, a child row, or claims a
/// create's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'c> {
    Root,
    Child,
    /// An `INSERT .. ON CONFLICT DO NOTHING` of the token: always sent in
    /// a group, so that a token claimed before fails the write
    /// (`storage_expect_claim`, the framework's migration's).
    Claim {
        kind: &'c str,
        token: uuid::Uuid,
    },
}

/// What a list of writes came to, read in statement order.
#[derive(Debug)]
pub(crate) struct Written {
    /// The rows the root statements matched.
    matched: usize,
    /// Whether a statement (or group) failed that holds a root or the
    /// claim: its failure is the write's own, not a consequence of a miss.
    root_failed: bool,
    /// The first failure, in statement order.
    first_error: Option<diesel::result::Error>,
}

impl Written {
    /// `Ok(true)` when every statement succeeded and the roots matched
    /// `expected` rows; `Ok(false)` on a root miss (the children's errors
    /// then only say the transaction is aborted, or stem from the newer
    /// state); else the first failure in statement order.
    pub(crate) fn matched(self, expected: usize) -> QueryResult<bool> {
        match self.first_error {
            Some(_) if !self.root_failed && self.matched < expected => Ok(false),
            Some(error) => Err(error),
            None => Ok(self.matched >= expected),
        }
    }

    /// Takes the failure out if it is the connection's: the write's
    /// outcome is then unknown, and the caller settles it.
    pub(crate) fn take_connection_fault(&mut self) -> Option<diesel::result::Error> {
        if self
            .first_error
            .as_ref()
            .is_some_and(crate::classify::is_connection_fault)
        {
            return self.first_error.take();
        }
        None
    }
}

impl<'c> Writes<'c> {
    pub(crate) fn new() -> Self {
        Self {
            statements: Vec::new(),
            shapes: Vec::new(),
            guard_roots: false,
            guard_lone: false,
            groups: None,
        }
    }

    /// Writes of one aggregate's update, sent as one statement or in one
    /// flight with their COMMIT: the root statement is guarded when other
    /// statements go with it (a miss then fails the statement, and the
    /// transaction, so that nothing after it lands), and sent as it is
    /// when alone (it commits by itself, and its count tells a miss
    /// without an error in the server's log).
    pub(crate) fn guarded() -> Self {
        Self {
            guard_roots: true,
            ..Self::new()
        }
    }

    /// Writes that a COMMIT follows in their flight, in a transaction that
    /// holds other writes (a unit's): every root is guarded, a lone one
    /// too, so that a miss fails the transaction and COMMIT rolls it back.
    pub(crate) fn all_guarded() -> Self {
        Self {
            guard_roots: true,
            guard_lone: true,
            ..Self::new()
        }
    }

    /// The root row's statement. For an update it filters on the old
    /// version and sets the new one, so that it matches no row when a
    /// concurrent writer won; its count is the rows the write matched.
    ///
    /// A root is a plain `INSERT`, `UPDATE` or `DELETE` (no `RETURNING`):
    /// when child writes follow an update's, the framework sends it as
    /// `WITH storage_w0 AS (<update> RETURNING 1) SELECT
    /// ARRAY[storage_expect_one((SELECT count(*) FROM storage_w0)), ..]`,
    /// which fails on a miss before any child write runs.
    pub fn root<Q>(&mut self, statement: Q)
    where
        Q: QueryFragment<Pg> + QueryId + Send + Sync + 'c,
    {
        self.push(Part::Root, statement);
    }

    /// A child row's statement (or several rows'), sent after the root's.
    pub fn child<Q>(&mut self, statement: Q)
    where
        Q: QueryFragment<Pg> + QueryId + Send + Sync + 'c,
    {
        self.push(Part::Child, statement);
    }

    /// The statement that claims a create's `token` for `kind`, first of
    /// the write: an insert of the token that does nothing on a conflict.
    /// A token claimed before then fails the write before anything after
    /// it runs (see `tokens::claimed_before`).
    pub(crate) fn claim<Q>(&mut self, kind: &'c str, token: uuid::Uuid, statement: Q)
    where
        Q: QueryFragment<Pg> + QueryId + Send + Sync + 'c,
    {
        self.push(Part::Claim { kind, token }, statement);
    }

    fn push<Q>(&mut self, part: Part<'c>, statement: Q)
    where
        Q: QueryFragment<Pg> + QueryId + Send + Sync + 'c,
    {
        self.groups = None;
        self.statements.push((part, Box::new(statement)));
        self.shapes.push(Q::query_id());
    }

    /// How many statements the mapping listed.
    pub(crate) fn len(&self) -> usize {
        self.statements.len()
    }

    /// How many statements go to the server: groups count as one.
    pub(crate) fn sends(&mut self) -> usize {
        self.groups().len()
    }

    /// Whether a root statement goes guarded: a miss then fails the
    /// transaction on the server, and a COMMIT may follow in the flight.
    pub(crate) fn roots_guarded(&self) -> bool {
        self.guard_roots && (self.guard_lone || self.statements.len() > 1)
    }

    /// Whether every statement goes out as soon as it is polled, so that a
    /// COMMIT queued after them cannot overtake them. A bind of a custom
    /// SQL type (a Postgres enum, say) may first wait for a type lookup
    /// the connection has not made yet, and with it a COMMIT would not be
    /// ordered: such writes commit once their replies are in.
    pub(crate) fn in_order(&self) -> bool {
        !self
            .statements
            .iter()
            .any(|(_, statement)| uses_custom_types(statement.as_ref()))
    }

    fn groups(&mut self) -> &[usize] {
        let (statements, shapes) = (&self.statements, &self.shapes);
        self.groups.get_or_insert_with(|| group(statements, shapes))
    }

    /// Sends every statement, in order (grouped), and reads their replies.
    pub(crate) async fn send(mut self, conn: &AsyncPgConnection) -> Written {
        let guard = self.roots_guarded();
        let sizes = self
            .groups
            .take()
            .unwrap_or_else(|| group(&self.statements, &self.shapes));
        let groups = || {
            let mut listed = self.statements.as_slice();
            sizes.iter().map(move |&size| {
                let (group, rest) = listed.split_at(size);
                listed = rest;
                group
            })
        };
        let mut on = conn;
        let sent: Vec<Sent<'_>> = groups()
            .map(|group| -> Sent<'_> {
                match group {
                    [(part @ (Part::Root | Part::Child), statement)]
                        if !(guard && *part == Part::Root) =>
                    {
                        let count = Dyn(statement.as_ref()).execute(&mut on);
                        Box::pin(async move { count.await.map(Counts::One) })
                    }
                    _ => {
                        // `load`, not `get_result`: it reads up to the
                        // server's ReadyForQuery, which a statement outside
                        // a transaction only sends once it committed (and a
                        // synchronous standby confirmed). `get_result`
                        // returns at the row, before: a crash then would
                        // lose a write reported done.
                        let rows = Grouped { group, guard }.load::<Vec<i64>>(&mut on);
                        Box::pin(async move {
                            let mut rows = rows.await?;
                            Ok(Counts::Each(rows.pop().unwrap_or_default()))
                        })
                    }
                }
            })
            .collect();
        let replies = futures_util::future::join_all(sent).await;
        let mut written = Written {
            matched: 0,
            root_failed: false,
            first_error: None,
        };
        for (group, reply) in groups().zip(replies) {
            match reply {
                Ok(Counts::One(count)) => {
                    if group[0].0 == Part::Root {
                        written.matched += count;
                    }
                }
                Ok(Counts::Each(counts)) => {
                    for ((part, _), count) in group.iter().zip(counts) {
                        if *part == Part::Root {
                            written.matched += usize::try_from(count).unwrap_or(0);
                        }
                    }
                }
                Err(error) => {
                    let decisive = group
                        .iter()
                        .any(|(part, _)| matches!(part, Part::Root | Part::Claim { .. }));
                    written.root_failed |= decisive && !is_version_miss(&error);
                    written.first_error.get_or_insert(error);
                }
            }
        }
        written
    }
}

/// Splits `statements` into groups sent as one statement each: a group
/// grows while the next statement can join it (see [`target`]) and writes
/// a table no statement of the group writes.
fn group(statements: &[(Part<'_>, Statement<'_>)], shapes: &[Option<TypeId>]) -> Vec<usize> {
    if statements.len() < 2 {
        return vec![1; statements.len()];
    }
    let mut groups = Vec::new();
    let mut tables: Vec<Cow<'static, str>> = Vec::new();
    let mut size = 0;
    for ((_, statement), shape) in statements.iter().zip(shapes) {
        let table = if let Some(rendered) = shape.and_then(crate::cached::rendered_shape) {
            rendered.target().map(Cow::Borrowed)
        } else {
            let mut sql = PgQueryBuilder::default();
            // Through the statement itself (diesel's `Box` would walk it,
            // and render a cached statement afresh).
            (statement.as_ref() as &dyn QueryFragment<Pg>)
                .to_sql(&mut sql, &Pg)
                .ok()
                .and_then(|()| target(&sql.finish()).map(|t| Cow::Owned(t.to_owned())))
        };
        let joins = table
            .as_ref()
            .is_some_and(|t| size > 0 && !tables.contains(t))
            && tables.len() == size;
        if !joins && size > 0 {
            groups.push(size);
            size = 0;
            tables.clear();
        }
        size += 1;
        tables.extend(table);
    }
    groups.push(size);
    groups
}

/// The table a statement writes, if it is a plain `INSERT`, `UPDATE` or
/// `DELETE` that can be one part of a group (no `RETURNING` of its own, no
/// second statement).
pub(crate) fn target(sql: &str) -> Option<&str> {
    if sql.contains(';') || sql.contains(" RETURNING ") {
        return None;
    }
    let rest = sql
        .strip_prefix("INSERT INTO ")
        .or_else(|| sql.strip_prefix("UPDATE "))
        .or_else(|| sql.strip_prefix("DELETE FROM "))?;
    let end = rest.find([' ', '(']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// What `storage_expect_one` raises when its root matched no row; the text
/// is the framework's own, never translated.
const VERSION_MISS: &str = "storage: version miss";

fn is_version_miss(error: &diesel::result::Error) -> bool {
    matches!(error, diesel::result::Error::DatabaseError(_, info) if info.message().starts_with(VERSION_MISS))
}

/// A listed statement, run as it is. Cached as the statement is.
struct Dyn<'s>(&'s (dyn QueryFragment<Pg> + Send + Sync));

impl QueryId for Dyn<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for Dyn<'_> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    /// The statement's own SQL (a [`cached`](crate::cached) one's is
    /// rendered once).
    fn to_sql(&self, out: &mut PgQueryBuilder, backend: &Pg) -> QueryResult<()> {
        self.0.to_sql(out, backend)
    }

    /// The statement's own answer (diesel's `Box` and `&` would walk it
    /// and lose a [`cached`](crate::cached) statement's).
    fn is_safe_to_cache_prepared(&self, backend: &Pg) -> QueryResult<bool> {
        self.0.is_safe_to_cache_prepared(backend)
    }
}

/// A group of statements sent as one (see the module's documentation),
/// answering each one's count. With `guard`, a root's count goes through
/// `storage_expect_one` (the framework's migration's), which fails the
/// statement when it is not 1, before the statements after it run.
struct Grouped<'s, 'c> {
    group: &'s [(Part<'c>, Statement<'c>)],
    guard: bool,
}

impl QueryId for Grouped<'_, '_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Grouped<'_, '_> {
    type SqlType = Array<BigInt>;
}

impl Grouped<'_, '_> {
    /// The group's SQL around its statements, into `out`. Pieces of
    /// static text, not formatted: a pass that collects binds renders the
    /// group too, and throws the text away.
    fn render<'b>(&'b self, out: &mut impl Sink<'b>) -> QueryResult<()> {
        for (i, (_, statement)) in self.group.iter().enumerate() {
            out.sql(if i == 0 { "WITH" } else { "," });
            out.name(i);
            out.sql(" AS (");
            out.statement(statement.as_ref())?;
            out.sql(" RETURNING 1)");
        }
        out.sql(" SELECT ARRAY[");
        for (i, (part, _)) in self.group.iter().enumerate() {
            if i > 0 {
                out.sql(", ");
            }
            let check = match part {
                Part::Root if self.guard => "storage_expect_one(",
                Part::Claim { .. } => "storage_expect_claim(",
                _ => "",
            };
            out.sql(check);
            out.sql("(SELECT count(*) FROM");
            out.name(i);
            out.sql(")");
            if let Part::Claim { kind, token } = part {
                out.sql(", ");
                out.claim(kind, token)?;
            }
            if !check.is_empty() {
                out.sql(")");
            }
        }
        out.sql("]");
        Ok(())
    }
}

/// The names of a group's first statements, written without formatting.
const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// Where a group renders to: a pass of diesel's (binds, flags, SQL), or
/// straight into SQL text, where each statement writes its own
/// ([`cached`](crate::cached) ones rendered once).
trait Sink<'b> {
    fn sql(&mut self, sql: &str);
    /// ` storage_w<i>`, the name of the group's `i`th statement.
    fn name(&mut self, i: usize) {
        self.sql(" storage_w");
        match DIGITS.get(i) {
            Some(digit) => self.sql(digit),
            None => self.sql(&i.to_string()),
        }
    }
    fn statement(
        &mut self,
        statement: &'b (dyn QueryFragment<Pg> + Send + Sync),
    ) -> QueryResult<()>;
    /// `kind, token`, as binds.
    fn claim(&mut self, kind: &'b str, token: &'b uuid::Uuid) -> QueryResult<()>;
}

impl<'b> Sink<'b> for AstPass<'_, 'b, Pg> {
    fn sql(&mut self, sql: &str) {
        self.push_sql(sql);
    }

    fn statement(
        &mut self,
        statement: &'b (dyn QueryFragment<Pg> + Send + Sync),
    ) -> QueryResult<()> {
        statement.walk_ast(self.reborrow())
    }

    fn claim(&mut self, kind: &'b str, token: &'b uuid::Uuid) -> QueryResult<()> {
        self.push_bind_param::<Text, str>(kind)?;
        self.push_sql(", ");
        self.push_bind_param::<diesel::sql_types::Uuid, uuid::Uuid>(token)
    }
}

impl<'b> Sink<'b> for PgQueryBuilder {
    fn sql(&mut self, sql: &str) {
        self.push_sql(sql);
    }

    fn statement(
        &mut self,
        statement: &'b (dyn QueryFragment<Pg> + Send + Sync),
    ) -> QueryResult<()> {
        statement.to_sql(self, &Pg)
    }

    fn claim(&mut self, _kind: &'b str, _token: &'b uuid::Uuid) -> QueryResult<()> {
        self.push_bind_param();
        self.push_sql(", ");
        self.push_bind_param();
        Ok(())
    }
}

impl QueryFragment<Pg> for Grouped<'_, '_> {
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.render(&mut pass)
    }

    /// Each statement writes its own SQL, so that a cached one is copied,
    /// not rendered again.
    fn to_sql(&self, out: &mut PgQueryBuilder, _backend: &Pg) -> QueryResult<()> {
        self.render(out)
    }

    fn is_safe_to_cache_prepared(&self, backend: &Pg) -> QueryResult<bool> {
        for (_, statement) in self.group {
            if !statement.as_ref().is_safe_to_cache_prepared(backend)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Whether `statement` binds a value of a type whose OID diesel looks up
/// by name on each connection (user-defined types), which delays sending
/// it the first time.
fn uses_custom_types(statement: &dyn QueryFragment<Pg>) -> bool {
    struct Spy(bool);
    impl PgMetadataLookup for Spy {
        fn lookup_type(&mut self, _name: &str, _schema: Option<&str>) -> PgTypeMetadata {
            self.0 = true;
            PgTypeMetadata::new(0, 0)
        }
    }
    let mut binds = RawBytesBindCollector::<Pg>::new();
    let mut spy = Spy(false);
    // A statement whose binds fail to serialize fails when sent, in order.
    let _ = statement.collect_binds(&mut binds, &mut spy, &Pg);
    spy.0
}

#[cfg(test)]
mod tests {
    use super::{Grouped, Writes, target};
    use diesel::pg::{Pg, PgQueryBuilder};
    use diesel::query_builder::{QueryBuilder as _, QueryFragment as _};

    #[test]
    fn a_table_the_group_writes_or_an_odd_statement_starts_the_next_group() {
        use crate::outbox::outbox;
        use crate::tokens::tx_tokens;
        use diesel::prelude::*;
        let mut writes = Writes::new();
        writes.root(diesel::delete(
            tx_tokens::table.filter(tx_tokens::token.eq(uuid::Uuid::nil())),
        ));
        writes.child(diesel::delete(outbox::table.filter(outbox::seq.eq(1))));
        writes.child(diesel::delete(
            tx_tokens::table.filter(tx_tokens::token.eq(uuid::Uuid::max())),
        ));
        writes.child(diesel::sql_query(
            "DELETE FROM outbox WHERE seq = 2 RETURNING seq",
        ));
        writes.child(diesel::delete(outbox::table.filter(outbox::seq.eq(3))));
        writes.child(diesel::delete(
            tx_tokens::table.filter(tx_tokens::token.eq(uuid::Uuid::nil())),
        ));
        assert_eq!(writes.len(), 6);
        assert_eq!(writes.groups(), [2, 1, 1, 2]);
        assert_eq!(writes.sends(), 4);
    }

    #[test]
    fn a_group_of_cached_statements_is_written_as_diesel_writes_it() {
        use crate::outbox::outbox;
        use crate::tokens::tx_tokens;
        use diesel::prelude::*;
        let token = (
            tx_tokens::token.eq(uuid::Uuid::nil()),
            tx_tokens::aggregate_kind.eq("ada"),
        );
        let event = (
            outbox::id.eq(uuid::Uuid::nil()),
            outbox::aggregate_kind.eq("Ada"),
        );
        let claimed = uuid::Uuid::max();
        let sql = |writes: &Writes<'_>| {
            let group = Grouped {
                group: &writes.statements,
                guard: true,
            };
            let mut out = PgQueryBuilder::default();
            group.to_sql(&mut out, &Pg).unwrap();
            out.finish()
        };
        let gone = || diesel::delete(tx_tokens::table.filter(tx_tokens::token.eq(claimed)));
        let mut cached = Writes::new();
        cached.claim("user", claimed, crate::cached(gone()));
        cached.root(crate::cached(
            diesel::insert_into(tx_tokens::table).values(token),
        ));
        cached.child(crate::cached(
            diesel::insert_into(outbox::table).values(event),
        ));
        let mut plain = Writes::new();
        plain.claim("user", claimed, gone());
        plain.root(diesel::insert_into(tx_tokens::table).values(token));
        plain.child(diesel::insert_into(outbox::table).values(event));
        let written = sql(&cached);
        assert_eq!(written, sql(&plain));
        assert!(
            written.contains("storage_expect_claim((SELECT count(*) FROM storage_w0), $6, $7)"),
            "{written}"
        );
        assert!(
            written.contains(r#"INSERT INTO "outbox" ("id", "aggregate_kind") VALUES ($4, $5)"#),
            "{written}"
        );
    }

    #[test]
    fn a_shape_rendered_once_groups_by_the_table_it_named() {
        fn shape<Q: QueryId>(_: &Q) -> Option<std::any::TypeId> {
            Q::query_id()
        }
        use crate::outbox::outbox;
        use crate::tokens::tx_tokens;
        use diesel::prelude::*;
        use diesel::query_builder::QueryId;
        let token = || {
            crate::cached(
                diesel::insert_into(tx_tokens::table)
                    .values(tx_tokens::token.eq(uuid::Uuid::nil())),
            )
        };
        let event = || {
            crate::cached(
                diesel::insert_into(outbox::table).values(outbox::id.eq(uuid::Uuid::nil())),
            )
        };
        let listed = || {
            let mut writes = Writes::new();
            writes.root(token());
            writes.child(event());
            writes.child(token());
            writes
        };
        let mut first = listed();
        assert_eq!(first.groups(), [2, 1]);
        let known = crate::cached::rendered_shape(shape(&token()).expect("a static shape"));
        assert_eq!(known.and_then(|r| r.target()), Some(r#""tx_tokens""#));
        assert_eq!(listed().groups(), [2, 1]);
    }

    #[test]
    fn plain_writes_name_their_table() {
        assert_eq!(
            target(r#"INSERT INTO "users" ("id") VALUES ($1)"#),
            Some(r#""users""#)
        );
        assert_eq!(
            target(r#"UPDATE "users" SET "version" = $1"#),
            Some(r#""users""#)
        );
        assert_eq!(
            target(r#"DELETE FROM "public"."lines" WHERE "id" = $1"#),
            Some(r#""public"."lines""#)
        );
    }

    #[test]
    fn writes_that_cannot_join_a_group_name_none() {
        assert_eq!(
            target(r#"INSERT INTO "t" ("a") VALUES ($1) RETURNING "a""#),
            None
        );
        assert_eq!(target("SELECT 1"), None);
        assert_eq!(target("UPDATE t SET a = 1; DELETE FROM t"), None);
        assert_eq!(
            target(r#"WITH x AS (SELECT 1) INSERT INTO "t" SELECT * FROM x"#),
            None
        );
    }
}
