//! `Action` <-> `actions`: the append-only action log.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::Aggregate;
use domain::example::{Action, ActionId};
use uuid::Uuid;

use super::ts;
use crate::mapping::{Mapped, Mapping, version_to_db};
use crate::schema::actions;

/// Maps [`Action`] to the `actions` table.
#[derive(Debug, Clone, Copy)]
pub struct ActionMapping;

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = actions, check_for_backend(diesel::pg::Pg))]
struct ActionRow {
    id: Uuid,
    version: i64,
    what: String,
    aggregate_kind: String,
    aggregate_id: Uuid,
    at: DateTime<Utc>,
}

fn restore(row: ActionRow) -> Action {
    let mut action = Action::restore(
        ActionId::from(row.id),
        row.what,
        row.aggregate_kind,
        row.aggregate_id,
        ts(row.at),
    );
    action.set_version(crate::mapping::version_from_db(row.version));
    action
}

impl Mapping for ActionMapping {
    type Aggregate = Action;
    const PRIMARY_KEY: &'static str = "actions_pkey";

    async fn load(conn: &mut AsyncPgConnection, id: ActionId) -> QueryResult<Option<Action>> {
        let row = actions::table
            .find(id.as_uuid())
            .select(ActionRow::as_select())
            .first(conn)
            .await
            .optional()?;
        Ok(row.map(restore))
    }

    async fn load_page(
        conn: &mut AsyncPgConnection,
        after: Option<ActionId>,
        limit: i64,
    ) -> QueryResult<Vec<Action>> {
        let mut query = actions::table
            .select(ActionRow::as_select())
            .order(actions::id)
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            query = query.filter(actions::id.gt(after.as_uuid()));
        }
        Ok(query.load(conn).await?.into_iter().map(restore).collect())
    }

    async fn insert(conn: &mut AsyncPgConnection, action: &Action) -> QueryResult<()> {
        diesel::insert_into(actions::table)
            .values(ActionRow {
                id: action.id().into(),
                version: version_to_db(action.version()),
                what: action.what().to_owned(),
                aggregate_kind: action.aggregate_kind().to_owned(),
                aggregate_id: action.aggregate_id(),
                at: action.at().as_datetime(),
            })
            .execute(conn)
            .await
            .map(drop)
    }

    /// Entries never change; an update only moves the version.
    async fn update(
        conn: &mut AsyncPgConnection,
        old: &Action,
        new: &Action,
    ) -> QueryResult<usize> {
        diesel::update(
            actions::table
                .filter(actions::id.eq(new.id().as_uuid()))
                .filter(actions::version.eq(version_to_db(old.version()))),
        )
        .set(actions::version.eq(version_to_db(new.version())))
        .execute(conn)
        .await
    }

    async fn delete(conn: &mut AsyncPgConnection, id: ActionId) -> QueryResult<usize> {
        diesel::delete(actions::table.find(id.as_uuid()))
            .execute(conn)
            .await
    }
}

impl Mapped for Action {
    type Mapping = ActionMapping;
}
