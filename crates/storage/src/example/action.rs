//! `Action` <-> `actions`: the append-only action log, one table.

use chrono::{DateTime, Utc};
use domain::example::Action;
use domain::{Aggregate, Timestamp};
use uuid::Uuid;

use crate::schema::actions;

crate::table_mapping! {
    /// Maps [`Action`] to the `actions` table.
    pub struct ActionMapping: Action => actions;
    write |action| {
        what: String = action.what().to_owned(),
        aggregate_kind: String = action.aggregate_kind().to_owned(),
        aggregate_id: Uuid = action.aggregate_id(),
        at: DateTime<Utc> = action.at().as_datetime(),
    }
    read |row, id, version| {
        let at = Timestamp::from(row.at);
        let mut action = Action::restore(id, row.what, row.aggregate_kind, row.aggregate_id, at);
        action.set_version(version);
        Ok(action)
    }
}
