//! The `tx_tokens` table: claimed in the same transaction as a create.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{QueryFragment, QueryId};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{Fingerprint, Timestamp, TxToken};
use uuid::Uuid;

diesel::table! {
    /// Created by `migrations/framework`.
    tx_tokens (aggregate_kind, token) {
        aggregate_kind -> Text,
        token -> Uuid,
        aggregate_id -> Uuid,
        fingerprint -> Bytea,
        created_at -> Timestamptz,
    }
}

/// Claims `token` for the aggregate `id` being created, stamped `now` (the
/// store's clock, which the purge judges ages by). Returns false when
/// the token was already claimed; if another transaction holds an
/// uncommitted claim, waits for it to finish first (the unique index does).
pub(crate) async fn claim(
    conn: &AsyncPgConnection,
    kind: &str,
    token: TxToken,
    id: Uuid,
    fingerprint: &Fingerprint,
    now: Timestamp,
) -> QueryResult<bool> {
    let claim = claim_statement(kind, token, id, fingerprint, now);
    let inserted = claim.execute(&mut &*conn).await?;
    Ok(inserted == 1)
}

/// The statement that claims `token` for the aggregate `id` being
/// created, stamped `now`; it inserts nothing when the token was claimed
/// before (see [`claim`]).
pub(crate) fn claim_statement<'a>(
    kind: &'a str,
    token: TxToken,
    id: Uuid,
    fingerprint: &'a Fingerprint,
    now: Timestamp,
) -> impl QueryFragment<Pg> + QueryId + Send + Sync + 'a {
    crate::cached(FixedClaim(
        diesel::insert_into(tx_tokens::table)
            .values((
                tx_tokens::aggregate_kind.eq(kind),
                tx_tokens::token.eq(token.as_uuid()),
                tx_tokens::aggregate_id.eq(id),
                tx_tokens::fingerprint.eq(fingerprint.as_bytes().as_slice()),
                tx_tokens::created_at.eq(now.as_datetime()),
            ))
            .on_conflict_do_nothing(),
    ))
}

/// The claim's upsert, whose SQL never changes (fixed columns, no
/// optional value): it says so with a query id of its own, which diesel
/// cannot give an upsert, so that [`cached`](crate::cached) renders it
/// once.
struct FixedClaim<Q>(Q);

impl<Q> QueryId for FixedClaim<Q> {
    type QueryId = FixedClaim<()>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for FixedClaim<Q> {
    fn walk_ast<'b>(&'b self, pass: diesel::query_builder::AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }
}

/// What `storage_expect_claim` (the framework's migration's) raises when a
/// write's token was claimed before, with what the token made in DETAIL:
/// `<aggregate id> <fingerprint in hex>`. The text is ours, never
/// translated.
const TOKEN_CLAIMED: &str = "storage: token claimed before";

/// A write's token was claimed before.
pub(crate) struct ClaimedBefore {
    /// The aggregate id and request fingerprint the token recorded
    /// (`None` if the claim went away since: purged).
    pub(crate) made: Option<(Uuid, Fingerprint)>,
}

/// Whether `error` says that a write's token was claimed before.
pub(crate) fn claimed_before(error: &diesel::result::Error) -> Option<ClaimedBefore> {
    let diesel::result::Error::DatabaseError(_, info) = error else {
        return None;
    };
    if !info.message().starts_with(TOKEN_CLAIMED) {
        return None;
    }
    let made = info.details().and_then(|detail| {
        let (id, hex) = detail.split_once(' ')?;
        Some((id.parse().ok()?, fingerprint_from_hex(hex)?))
    });
    Some(ClaimedBefore { made })
}

fn fingerprint_from_hex(hex: &str) -> Option<Fingerprint> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = [0; 32];
    for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(Fingerprint::from_bytes(bytes))
}

/// The aggregate id and request fingerprint a claimed token recorded, if
/// it is claimed (and committed, or claimed by this transaction).
pub(crate) async fn find(
    conn: &AsyncPgConnection,
    kind: &str,
    token: TxToken,
) -> QueryResult<Option<(Uuid, Fingerprint)>> {
    let found: Option<(Uuid, Vec<u8>)> = crate::cached(
        tx_tokens::table
            .find((kind, token.as_uuid()))
            .select((tx_tokens::aggregate_id, tx_tokens::fingerprint))
            .limit(1),
    )
    .get_result(&mut &*conn)
    .await
    .optional()?;
    let Some((id, bytes)) = found else {
        return Ok(None);
    };
    Ok(Some((id, fingerprint_of(bytes)?)))
}

/// A fingerprint as the token table stores it (32 bytes).
pub(crate) fn fingerprint_of(bytes: Vec<u8>) -> QueryResult<Fingerprint> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
        diesel::result::Error::DeserializationError("fingerprint is not 32 bytes".into())
    })?;
    Ok(Fingerprint::from_bytes(bytes))
}

/// Whether `token` is claimed by a committed transaction. Claims it in a
/// transaction of its own and rolls that back: if another transaction
/// holds the claim uncommitted, the insert waits for it to end (the unique
/// index does), so the answer is final, unlike a plain `SELECT`.
pub(crate) async fn is_claimed(
    conn: &mut AsyncPgConnection,
    sessions: &crate::session::Sessions,
    kind: &str,
    token: TxToken,
) -> QueryResult<bool> {
    use diesel_async::{AnsiTransactionManager, TransactionManager};
    AnsiTransactionManager::begin_transaction_sql(conn, sessions.begin()).await?;
    let probe = claim(
        conn,
        kind,
        token,
        Uuid::nil(),
        &Fingerprint::from_bytes([0; 32]),
        Timestamp::now(),
    )
    .await;
    AnsiTransactionManager::rollback_transaction(conn).await?;
    Ok(!probe?)
}

/// Deletes at most `$2` of the tokens created before `$1`: one bounded
/// statement, run by `PgStore::purge_expired_tokens` until a backlog drains.
pub(crate) const PURGE_BATCH: &str = "DELETE FROM tx_tokens WHERE ctid = ANY(ARRAY( \
     SELECT ctid FROM tx_tokens WHERE created_at < $1 LIMIT $2))";
