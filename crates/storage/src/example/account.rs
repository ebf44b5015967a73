//! `Account` <-> `accounts`: the README's walk-through, one table.

use domain::example::Account;
use uuid::Uuid;

use crate::schema::accounts;

crate::table_mapping! {
    /// Maps [`Account`] to `accounts`.
    pub struct AccountMapping: Account => accounts;
    write |account| {
        owner_id: Uuid = account.owner().into(),
        balance_cents: i64 = account.balance_cents(),
    }
    read |row, id, version| {
        Ok(Account::restore(id, version, row.owner_id.into(), row.balance_cents))
    }
}
