//! The contract suite's `Counter` on Postgres: a one-table mapping, and the
//! smallest example of one.

use crate::{Mapped, Mapping, version_from_db, version_to_db};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::Aggregate;
use domain::testing::{Counter, CounterId};
use uuid::Uuid;

/// The table; test set-ups create it (the example migrations do not).
pub const CREATE_TABLE: &str = "CREATE TABLE counters (
    id UUID PRIMARY KEY,
    version BIGINT NOT NULL,
    label TEXT NOT NULL,
    value BIGINT NOT NULL
)";

diesel::table! {
    counters (id) {
        id -> Uuid,
        version -> Int8,
        label -> Text,
        value -> Int8,
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = counters, check_for_backend(diesel::pg::Pg))]
struct Row {
    id: Uuid,
    version: i64,
    label: String,
    value: i64,
}

impl From<Row> for Counter {
    fn from(row: Row) -> Self {
        Self {
            id: CounterId::from(row.id),
            version: version_from_db(row.version),
            label: row.label,
            value: u64::try_from(row.value).unwrap_or_default(),
        }
    }
}

/// Maps [`Counter`] to `counters`.
#[derive(Debug, Clone, Copy)]
pub struct CounterMapping;

impl Mapping for CounterMapping {
    type Aggregate = Counter;
    const PRIMARY_KEY: &'static str = "counters_pkey";

    async fn load(conn: &mut AsyncPgConnection, id: CounterId) -> QueryResult<Option<Counter>> {
        let row: Option<Row> = counters::table
            .find(id.as_uuid())
            .select(Row::as_select())
            .first(conn)
            .await
            .optional()?;
        Ok(row.map(Counter::from))
    }

    async fn load_page(
        conn: &mut AsyncPgConnection,
        after: Option<CounterId>,
        limit: i64,
    ) -> QueryResult<Vec<Counter>> {
        let mut query = counters::table
            .select(Row::as_select())
            .order(counters::id)
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            query = query.filter(counters::id.gt(after.as_uuid()));
        }
        let rows: Vec<Row> = query.load(conn).await?;
        Ok(rows.into_iter().map(Counter::from).collect())
    }

    async fn insert(conn: &mut AsyncPgConnection, counter: &Counter) -> QueryResult<()> {
        diesel::insert_into(counters::table)
            .values(Row {
                id: counter.id().into(),
                version: version_to_db(counter.version()),
                label: counter.label.clone(),
                value: i64::try_from(counter.value).unwrap_or(i64::MAX),
            })
            .execute(conn)
            .await
            .map(drop)
    }

    async fn update(
        conn: &mut AsyncPgConnection,
        old: &Counter,
        new: &Counter,
    ) -> QueryResult<usize> {
        diesel::update(
            counters::table
                .filter(counters::id.eq(new.id().as_uuid()))
                .filter(counters::version.eq(version_to_db(old.version()))),
        )
        .set((
            counters::version.eq(version_to_db(new.version())),
            counters::value.eq(i64::try_from(new.value).unwrap_or(i64::MAX)),
        ))
        .execute(conn)
        .await
    }

    async fn delete(conn: &mut AsyncPgConnection, id: CounterId) -> QueryResult<usize> {
        diesel::delete(counters::table.find(id.as_uuid()))
            .execute(conn)
            .await
    }
}

impl Mapped for Counter {
    type Mapping = CounterMapping;
}
