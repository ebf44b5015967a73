//! The `unit_answers` table: what a unit of work run with a caller's key
//! answered, inserted with its COMMIT (`UnitOfWork::run_once`). The key's
//! claim is a token of kind [`UNIT_KIND`] in `tx_tokens`.

use diesel::prelude::*;
use diesel::query_builder::{QueryFragment, QueryId};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{Fingerprint, Timestamp, TxToken};

use crate::tokens::tx_tokens;

diesel::table! {
    /// Created by `migrations/framework`.
    unit_answers (token) {
        token -> Uuid,
        answer -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(tx_tokens, unit_answers);

/// The kind under which units' keys share the token table with creates'
/// tokens; no aggregate kind may be named so.
pub(crate) const UNIT_KIND: &str = "$unit";

/// A unit's answer, kept until its COMMIT carries it.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) key: TxToken,
    pub(crate) json: serde_json::Value,
    pub(crate) at: Timestamp,
}

impl Answer {
    /// Its insert, to send with the unit's COMMIT. It overwrites an
    /// answer whose claim was purged before it (the purge takes one table
    /// at a time): the key was free again, and this unit claimed it.
    pub(crate) fn insert(&self) -> impl QueryFragment<diesel::pg::Pg> + QueryId + Send + Sync + '_ {
        use diesel::upsert::excluded;
        crate::cached(
            diesel::insert_into(unit_answers::table)
                .values((
                    unit_answers::token.eq(self.key.as_uuid()),
                    unit_answers::answer.eq(&self.json),
                    unit_answers::created_at.eq(self.at.as_datetime()),
                ))
                .on_conflict(unit_answers::token)
                .do_update()
                .set((
                    unit_answers::answer.eq(excluded(unit_answers::answer)),
                    unit_answers::created_at.eq(excluded(unit_answers::created_at)),
                )),
        )
    }
}

/// What the unit that committed with `key` was asked and answered, if
/// one did (and neither record was purged since).
pub(crate) async fn find(
    conn: &AsyncPgConnection,
    key: TxToken,
) -> QueryResult<Option<(Fingerprint, serde_json::Value)>> {
    let found: Option<(Vec<u8>, serde_json::Value)> = crate::cached(
        tx_tokens::table
            .inner_join(unit_answers::table.on(unit_answers::token.eq(tx_tokens::token)))
            .filter(tx_tokens::aggregate_kind.eq(UNIT_KIND))
            .filter(tx_tokens::token.eq(key.as_uuid()))
            .select((tx_tokens::fingerprint, unit_answers::answer))
            .limit(1),
    )
    .get_result(&mut &*conn)
    .await
    .optional()?;
    let Some((bytes, answer)) = found else {
        return Ok(None);
    };
    Ok(Some((crate::tokens::fingerprint_of(bytes)?, answer)))
}

/// The claim of `key` for a unit asked `request`, as a create claims its
/// token; the claim's id column holds the key itself.
pub(crate) async fn claim(
    conn: &AsyncPgConnection,
    key: TxToken,
    request: &Fingerprint,
    now: Timestamp,
) -> QueryResult<bool> {
    crate::tokens::claim(conn, UNIT_KIND, key, key.as_uuid(), request, now).await
}

/// Deletes at most `$2` of the answers kept before `$1`, as
/// [`crate::tokens::PURGE_BATCH`] does for tokens.
pub(crate) const PURGE_BATCH: &str = "DELETE FROM unit_answers WHERE ctid = ANY(ARRAY( \
     SELECT ctid FROM unit_answers WHERE created_at < $1 LIMIT $2))";
