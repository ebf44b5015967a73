//! `UserStats` <-> `user_stats`: the read model, one table.

use domain::example::UserStats;

use crate::schema::user_stats;

crate::table_mapping! {
    /// Maps [`UserStats`] to `user_stats`.
    pub struct UserStatsMapping: UserStats => user_stats;
    write |stats| {
        orders_placed: i64 = stats.orders_placed(),
        total_spent_cents: i64 = stats.total_spent_cents(),
    }
    read |row, id, version| {
        Ok(UserStats::restore(id, version, row.orders_placed, row.total_spent_cents))
    }
}
