//! The contract suite's `Ledger` on Postgres: a root table and a child
//! table, the shape of most real aggregates, mapped by hand.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::Aggregate;
use domain::testing::{Ledger, LedgerId};
use uuid::Uuid;

use crate::{Mapped, Mapping, Writes, version_from_db, version_to_db};

diesel::table! {
    /// Created by [`CREATE_TABLES`](super::CREATE_TABLES).
    ledgers (id) {
        id -> Uuid,
        version -> Int8,
        owner -> Text,
        handle -> Nullable<Text>,
    }
}

diesel::table! {
    /// Created by [`CREATE_TABLES`](super::CREATE_TABLES).
    ledger_entries (ledger_id, position) {
        ledger_id -> Uuid,
        position -> Int4,
        amount -> Int8,
    }
}

diesel::joinable!(ledger_entries -> ledgers (ledger_id));
diesel::allow_tables_to_appear_in_same_query!(ledgers, ledger_entries);

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = ledgers, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_default_value = false)]
struct LedgerRow {
    id: Uuid,
    version: i64,
    owner: String,
    handle: Option<String>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = ledger_entries, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_default_value = false)]
struct EntryRow {
    ledger_id: Uuid,
    position: i32,
    amount: i64,
}

fn entry_rows(id: LedgerId, entries: &[i64], first_position: usize) -> Vec<EntryRow> {
    entries
        .iter()
        .zip(first_position..)
        .map(|(amount, position)| EntryRow {
            ledger_id: id.into(),
            position: i32::try_from(position).unwrap_or(i32::MAX),
            amount: *amount,
        })
        .collect()
}

/// Folds joined rows, ordered by ledger id then position, into ledgers.
fn restore(rows: Vec<(LedgerRow, Option<EntryRow>)>) -> Vec<Ledger> {
    let mut ledgers: Vec<Ledger> = Vec::new();
    for (root, entry) in rows {
        if ledgers
            .last()
            .is_none_or(|last| last.id.as_uuid() != root.id)
        {
            ledgers.push(Ledger {
                id: LedgerId::from(root.id),
                version: version_from_db(root.version),
                owner: root.owner,
                handle: root.handle,
                entries: Vec::new(),
                events: domain::Events::default(),
            });
        }
        if let (Some(entry), Some(last)) = (entry, ledgers.last_mut()) {
            last.entries.push(entry.amount);
        }
    }
    ledgers
}

/// Maps [`Ledger`] to `ledgers` and `ledger_entries`.
#[derive(Debug, Clone, Copy)]
pub struct LedgerMapping;

impl Mapping for LedgerMapping {
    type Aggregate = Ledger;
    const PRIMARY_KEY: &'static str = "ledgers_pkey";

    async fn load(conn: &AsyncPgConnection, id: LedgerId) -> QueryResult<Option<Ledger>> {
        // Cached: its SQL is rendered once per process, not on every call.
        let rows = crate::cached(
            ledgers::table
                .left_join(ledger_entries::table)
                .filter(ledgers::id.eq(id.as_uuid()))
                .order(ledger_entries::position)
                .select((LedgerRow::as_select(), Option::<EntryRow>::as_select())),
        )
        .load(&mut &*conn)
        .await?;
        Ok(restore(rows).pop())
    }

    /// By `handle`, its one unique key.
    async fn load_by(
        conn: &AsyncPgConnection,
        key: &domain::UniqueKey,
    ) -> QueryResult<Option<Ledger>> {
        if key.name != Ledger::HANDLE_KEY {
            return Ok(None);
        }
        let rows = crate::cached(
            ledgers::table
                .left_join(ledger_entries::table)
                .filter(ledgers::handle.eq(&key.value))
                .order(ledger_entries::position)
                .select((LedgerRow::as_select(), Option::<EntryRow>::as_select())),
        )
        .load(&mut &*conn)
        .await?;
        Ok(restore(rows).pop())
    }

    async fn load_page(
        conn: &AsyncPgConnection,
        after: Option<LedgerId>,
        limit: i64,
    ) -> QueryResult<Vec<Ledger>> {
        let mut page = ledgers::table
            .select(ledgers::id)
            .order(ledgers::id)
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            page = page.filter(ledgers::id.gt(after.as_uuid()));
        }
        let rows = ledgers::table
            .left_join(ledger_entries::table)
            .filter(ledgers::id.eq_any(page))
            .order((ledgers::id, ledger_entries::position))
            .select((LedgerRow::as_select(), Option::<EntryRow>::as_select()))
            .load(&mut &*conn)
            .await?;
        Ok(restore(rows))
    }

    /// The ledger row, then its entries in one statement. That one is
    /// left uncached on purpose (a shape per number of entries): each is
    /// prepared first, a round trip the flight must keep in order.
    fn insert<'a>(writes: &mut Writes<'a>, ledger: &'a Ledger) {
        writes.root(crate::cached(diesel::insert_into(ledgers::table).values(
            LedgerRow {
                id: ledger.id.into(),
                version: version_to_db(ledger.version),
                owner: ledger.owner.clone(),
                handle: ledger.handle.clone(),
            },
        )));
        if !ledger.entries.is_empty() {
            let entries = entry_rows(ledger.id, &ledger.entries, 0);
            writes.child(diesel::insert_into(ledger_entries::table).values(entries));
        }
    }

    /// Appended entries are inserted; any other change to them replaces
    /// them.
    fn update<'a>(writes: &mut Writes<'a>, old: &'a Ledger, new: &'a Ledger) {
        let id = new.id().as_uuid();
        writes.root(crate::cached(
            diesel::update(
                ledgers::table
                    .filter(ledgers::id.eq(id))
                    .filter(ledgers::version.eq(version_to_db(old.version))),
            )
            .set((
                ledgers::version.eq(version_to_db(new.version)),
                ledgers::owner.eq(new.owner.clone()),
                ledgers::handle.eq(new.handle.clone()),
            )),
        ));
        let kept = if new.entries.starts_with(&old.entries) {
            old.entries.len()
        } else {
            writes.child(diesel::delete(
                ledger_entries::table.filter(ledger_entries::ledger_id.eq(id)),
            ));
            0
        };
        if new.entries.len() > kept {
            let added = entry_rows(new.id, &new.entries[kept..], kept);
            writes.child(diesel::insert_into(ledger_entries::table).values(added));
        }
    }

    fn delete(writes: &mut Writes<'_>, id: LedgerId) {
        writes.root(diesel::delete(ledgers::table.find(id.as_uuid())));
    }
}

impl Mapped for Ledger {
    type Mapping = LedgerMapping;
}
