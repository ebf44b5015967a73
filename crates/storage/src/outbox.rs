//! The `outbox` table: the events of a change, written in the same flight
//! and transaction as the change itself.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{StoredEvent, Timestamp};
use uuid::Uuid;

use crate::mapping::{version_from_db, version_to_db};
use crate::writes::Writes;

diesel::table! {
    /// Created by `migrations/framework`.
    outbox (seq) {
        seq -> Int8,
        id -> Uuid,
        aggregate_kind -> Text,
        aggregate_id -> Uuid,
        version -> Int8,
        name -> Text,
        payload -> Jsonb,
        occurred_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
    }
}

#[derive(Insertable)]
#[diesel(table_name = outbox, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_default_value = false)]
struct NewEvent<'a> {
    id: Uuid,
    aggregate_kind: &'a str,
    aggregate_id: Uuid,
    version: i64,
    name: &'a str,
    payload: &'a serde_json::Value,
    occurred_at: DateTime<Utc>,
}

/// Lists the insert of `events` after the change's own writes (nothing
/// when there are none). A change records one or two events, so each
/// count is a statement shape of its own, prepared once.
pub(crate) fn write<'a>(writes: &mut Writes<'a>, events: &'a [StoredEvent]) {
    if events.is_empty() {
        return;
    }
    let row = |event: &'a StoredEvent| NewEvent {
        id: event.id,
        aggregate_kind: &event.aggregate_kind,
        aggregate_id: event.aggregate_id,
        version: version_to_db(event.version),
        name: &event.name,
        payload: &event.payload,
        occurred_at: event.occurred_at.as_datetime(),
    };
    if let [event] = events {
        // One row's insert has a type of its own: its SQL is rendered once.
        writes.child(crate::cached(
            diesel::insert_into(outbox::table).values(row(event)),
        ));
        return;
    }
    let rows: Vec<NewEvent<'_>> = events.iter().map(row).collect();
    writes.child(crate::cached(
        diesel::insert_into(outbox::table).values(rows),
    ));
}

/// The events stored for one aggregate, oldest first.
pub(crate) async fn of(
    conn: &AsyncPgConnection,
    kind: &str,
    id: Uuid,
) -> QueryResult<Vec<StoredEvent>> {
    #[allow(clippy::type_complexity, reason = "one row of the outbox")]
    let rows: Vec<(
        Uuid,
        String,
        Uuid,
        i64,
        String,
        serde_json::Value,
        DateTime<Utc>,
    )> = outbox::table
        .filter(outbox::aggregate_kind.eq(kind))
        .filter(outbox::aggregate_id.eq(id))
        .order((outbox::version, outbox::seq))
        .select((
            outbox::id,
            outbox::aggregate_kind,
            outbox::aggregate_id,
            outbox::version,
            outbox::name,
            outbox::payload,
            outbox::occurred_at,
        ))
        .load(&mut &*conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, aggregate_kind, aggregate_id, version, name, payload, occurred_at)| StoredEvent {
                id,
                aggregate_kind,
                aggregate_id,
                version: version_from_db(version),
                name,
                payload,
                occurred_at: Timestamp::from(occurred_at),
            },
        )
        .collect())
}

/// The age of the oldest event not published yet, if one waits.
pub(crate) async fn lag(conn: &AsyncPgConnection) -> QueryResult<Option<std::time::Duration>> {
    use diesel::dsl::sql;
    use diesel::sql_types::{Double, Nullable};
    let seconds: Option<f64> = diesel::select(sql::<Nullable<Double>>(
        "(SELECT extract(epoch FROM now() - min(occurred_at))::float8 \
          FROM outbox WHERE published_at IS NULL)",
    ))
    .get_result(&mut &*conn)
    .await?;
    Ok(seconds.map(|s| std::time::Duration::from_secs_f64(s.max(0.0))))
}
