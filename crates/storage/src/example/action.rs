//! `Action` <-> `actions`: the append-only action log, one table.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use domain::example::{Action, ActionId};
use domain::{Aggregate, Timestamp};
use uuid::Uuid;

use crate::mapping::{version_from_db, version_to_db};
use crate::schema::actions;

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = actions, check_for_backend(diesel::pg::Pg))]
struct ActionRow {
    id: Uuid,
    version: i64,
    what: String,
    aggregate_kind: String,
    aggregate_id: Uuid,
    at: DateTime<Utc>,
}

impl From<&Action> for ActionRow {
    fn from(action: &Action) -> Self {
        Self {
            id: action.id().into(),
            version: version_to_db(action.version()),
            what: action.what().to_owned(),
            aggregate_kind: action.aggregate_kind().to_owned(),
            aggregate_id: action.aggregate_id(),
            at: action.at().as_datetime(),
        }
    }
}

impl From<ActionRow> for Action {
    fn from(row: ActionRow) -> Self {
        let id = ActionId::from(row.id);
        let at = Timestamp::from(row.at);
        let mut action = Action::restore(id, row.what, row.aggregate_kind, row.aggregate_id, at);
        action.set_version(version_from_db(row.version));
        action
    }
}

crate::table_mapping!(
    /// Maps [`Action`] to the `actions` table.
    pub struct ActionMapping: Action => actions as ActionRow
);
