//! The `inbox` table: a consumer's record of the events it handled,
//! written in the unit of work that handled each.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

diesel::table! {
    /// Created by `migrations/framework`.
    inbox (consumer, event_id) {
        consumer -> Text,
        event_id -> Uuid,
        handled_at -> Timestamptz,
    }
}

/// Records that `consumer` handled `event`; whether it is the first time.
/// A record another transaction holds uncommitted makes this wait for it
/// (the primary key does), so the answer is final.
pub(crate) async fn record(
    conn: &AsyncPgConnection,
    consumer: &str,
    event: Uuid,
    now: domain::Timestamp,
) -> QueryResult<bool> {
    let insert = diesel::insert_into(inbox::table)
        .values((
            inbox::consumer.eq(consumer),
            inbox::event_id.eq(event),
            inbox::handled_at.eq(now.as_datetime()),
        ))
        .on_conflict_do_nothing();
    let inserted = crate::cached(insert).execute(&mut &*conn).await?;
    Ok(inserted == 1)
}

/// Deletes at most `$2` of the records made before `$1`, as
/// [`crate::tokens::PURGE_BATCH`] does for tokens.
pub(crate) const PURGE_BATCH: &str = "DELETE FROM inbox WHERE ctid = ANY(ARRAY( \
     SELECT ctid FROM inbox WHERE handled_at < $1 LIMIT $2))";
