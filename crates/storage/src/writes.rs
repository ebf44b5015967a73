//! The statements of one write, as a mapping lists them: the framework
//! decides how they travel (alone, in one flight with BEGIN and the token
//! claim, inside a unit's savepoint) and reads their replies in order.

use std::future::Future;
use std::pin::Pin;

use diesel::QueryResult;
use diesel::pg::{Pg, PgMetadataLookup, PgTypeMetadata};
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// One statement on its way, boxed so that statements of any shape share
/// a flight.
type Sent<'c> = Pin<Box<dyn Future<Output = QueryResult<usize>> + Send + 'c>>;

/// The statements a [`Mapping`](crate::Mapping) writes an aggregate with,
/// in order: the root row's first ([`Writes::root`]), then the child rows'
/// ([`Writes::child`]). A mapping only lists them; nothing is sent until
/// the framework sends the whole list, in one round trip where it can.
///
/// ```ignore
/// writes.root(
///     storage::cached(diesel::update(orders::table.filter(orders::id.eq(id)).filter(orders::version.eq(old_version))))
///         .set(..)),
/// );
/// writes.child(storage::cached(diesel::insert_into(order_lines::table).values(added)));
/// ```
pub struct Writes<'c> {
    conn: &'c AsyncPgConnection,
    statements: Vec<(Part, Sent<'c>)>,
    custom_types: bool,
    /// Whether a root statement that has company is sent guarded
    /// ([`ExpectOne`]), so that a miss fails the transaction.
    guard_roots: bool,
    /// The first root statement, in guard mode, while it is still alone:
    /// as it is, and guarded. Which one is sent depends on whether any
    /// statement follows.
    held_root: Option<(Sent<'c>, Sent<'c>)>,
}

/// Whether a statement writes the root row or a child row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Root,
    Child,
}

/// What a list of writes came to, read in statement order.
#[derive(Debug)]
pub(crate) struct Written {
    /// The rows the root statements matched.
    matched: usize,
    /// Whether a root statement failed.
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
}

impl<'c> Writes<'c> {
    pub(crate) fn on(conn: &'c AsyncPgConnection) -> Self {
        Self {
            conn,
            statements: Vec::new(),
            custom_types: false,
            guard_roots: false,
            held_root: None,
        }
    }

    /// Writes of one aggregate's update, sent in one flight with their
    /// COMMIT: the root statement is guarded when other statements go with
    /// it (a miss then fails the transaction, and the COMMIT rolls back),
    /// and sent as it is when alone (it commits by itself, and its count
    /// tells a miss without an error in the server's log).
    pub(crate) fn guarded(conn: &'c AsyncPgConnection) -> Self {
        Self {
            guard_roots: true,
            ..Self::on(conn)
        }
    }

    /// The root row's statement. For an update it filters on the old
    /// version and sets the new one, so that it matches no row when a
    /// concurrent writer won; its count is the rows the write matched.
    ///
    /// An update's root is a plain `UPDATE` (no `RETURNING`): when child
    /// writes follow it, the framework sends it as `WITH storage_root AS
    /// (<update> RETURNING 1) SELECT storage_expect_one(count(*)) FROM
    /// storage_root`, which fails the transaction on a miss.
    pub fn root<Q>(&mut self, statement: Q)
    where
        Q: QueryFragment<Pg> + QueryId + Send + Sync,
    {
        self.push(Part::Root, statement);
    }

    /// A child row's statement (or several rows'), sent after the root's.
    pub fn child<Q>(&mut self, statement: Q)
    where
        Q: QueryFragment<Pg> + QueryId + Send + Sync,
    {
        self.push(Part::Child, statement);
    }

    fn push<Q>(&mut self, part: Part, statement: Q)
    where
        Q: QueryFragment<Pg> + QueryId + Send + Sync,
    {
        self.custom_types |= uses_custom_types(&statement);
        let mut conn = self.conn;
        if let Some((_alone, guarded)) = self.held_root.take() {
            self.statements.push((Part::Root, guarded));
        }
        if part == Part::Root && self.guard_roots {
            // Built both ways now (the statement is not kept), sent one way.
            let guarded = ExpectOne(&statement).execute(&mut conn);
            if self.statements.is_empty() {
                self.held_root = Some((statement.execute(&mut conn), guarded));
            } else {
                self.statements.push((part, guarded));
            }
            return;
        }
        self.statements.push((part, statement.execute(&mut conn)));
    }

    /// How many statements the write takes.
    pub(crate) fn len(&self) -> usize {
        self.statements.len() + usize::from(self.held_root.is_some())
    }

    /// Whether a root statement goes guarded: a miss then fails the
    /// transaction on the server, and a COMMIT may follow in the flight.
    pub(crate) fn roots_guarded(&self) -> bool {
        self.guard_roots && self.held_root.is_none()
    }

    /// Whether every statement goes out as soon as it is polled, so that a
    /// COMMIT queued after them cannot overtake them. A bind of a custom
    /// SQL type (a Postgres enum, say) may first wait for a type lookup
    /// the connection has not made yet, and with it a COMMIT would not be
    /// ordered: such writes commit once their replies are in.
    pub(crate) fn in_order(&self) -> bool {
        !self.custom_types
    }

    /// Sends every statement, in order, and reads their replies.
    pub(crate) async fn send(mut self) -> Written {
        if let Some((alone, _guarded)) = self.held_root.take() {
            self.statements.push((Part::Root, alone));
        }
        let (parts, sent): (Vec<Part>, Vec<Sent<'c>>) = self.statements.into_iter().unzip();
        let replies = futures_util::future::join_all(sent).await;
        let mut written = Written {
            matched: 0,
            root_failed: false,
            first_error: None,
        };
        for (part, reply) in parts.into_iter().zip(replies) {
            match reply {
                Ok(count) if part == Part::Root => written.matched += count,
                Ok(_) => {}
                Err(error) => {
                    written.root_failed |= part == Part::Root && !is_version_miss(&error);
                    written.first_error.get_or_insert(error);
                }
            }
        }
        written
    }
}

/// What [`ExpectOne`] raises when its root matched no row; the text is
/// the framework's own (`storage_expect_one`), never translated.
const VERSION_MISS: &str = "storage: version miss";

fn is_version_miss(error: &diesel::result::Error) -> bool {
    matches!(error, diesel::result::Error::DatabaseError(_, info) if info.message().starts_with(VERSION_MISS))
}

/// A root update that fails its transaction when it matches no row:
/// `WITH root AS (<update> RETURNING 1) SELECT storage_expect_one(count(*))
/// FROM root`, whose count is 1. The function is the framework's
/// migration's. Cached as the update it wraps is.
struct ExpectOne<'q, Q>(&'q Q);

impl<Q> QueryId for ExpectOne<'_, Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for ExpectOne<'_, Q> {
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        pass.push_sql("WITH storage_root AS (");
        self.0.walk_ast(pass.reborrow())?;
        pass.push_sql(" RETURNING 1) SELECT storage_expect_one(count(*)) FROM storage_root");
        Ok(())
    }

    /// The wrapped statement's own answer (diesel's `&Q` would walk it
    /// and lose a [`cached`](crate::cached) statement's).
    fn is_safe_to_cache_prepared(&self, backend: &Pg) -> QueryResult<bool> {
        Q::is_safe_to_cache_prepared(self.0, backend)
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
