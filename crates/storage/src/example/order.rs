//! `Order` <-> `orders` + `order_lines`: an aggregate spanning two tables.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::Aggregate;
use domain::example::{Cents, Order, OrderId, OrderLine, OrderStatus, Quantity, Sku, UserId};
use uuid::Uuid;

use super::{corrupt, ts};
use crate::cached;
use crate::mapping::{Mapped, Mapping, version_from_db, version_to_db};
use crate::schema::{order_lines, orders};
use crate::writes::Writes;

/// Maps [`Order`] to the `orders` and `order_lines` tables.
#[derive(Debug, Clone, Copy)]
pub struct OrderMapping;

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = orders, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_default_value = false)]
struct OrderRow {
    id: Uuid,
    version: i64,
    user_id: Uuid,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = order_lines, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_default_value = false)]
struct LineRow {
    order_id: Uuid,
    position: i32,
    sku: String,
    quantity: i32,
    unit_price_cents: i64,
}

impl OrderRow {
    fn of(order: &Order) -> Self {
        Self {
            id: order.id().into(),
            version: version_to_db(order.version()),
            user_id: order.user_id().into(),
            status: order.status().as_str().to_owned(),
            created_at: order.created_at().as_datetime(),
            updated_at: order.updated_at().as_datetime(),
        }
    }
}

/// Line rows for `lines`, numbered from `first_position`.
fn line_rows(order: &Order, lines: &[OrderLine], first_position: usize) -> Vec<LineRow> {
    lines
        .iter()
        .zip(first_position..)
        .map(|(line, position)| LineRow {
            order_id: order.id().into(),
            position: i32::try_from(position).unwrap_or(i32::MAX),
            sku: line.sku.as_str().to_owned(),
            quantity: i32::try_from(line.quantity.get()).unwrap_or(i32::MAX),
            unit_price_cents: line.unit_price.get(),
        })
        .collect()
}

fn restore_line(row: &LineRow) -> QueryResult<OrderLine> {
    Ok(OrderLine {
        sku: Sku::parse(&row.sku).map_err(|e| corrupt("sku", e))?,
        quantity: Quantity::new(row.quantity.into()).map_err(|e| corrupt("quantity", e))?,
        unit_price: Cents::new(row.unit_price_cents).map_err(|e| corrupt("price", e))?,
    })
}

/// Folds joined rows, ordered by order id then line position, into orders.
fn restore(rows: Vec<(OrderRow, Option<LineRow>)>) -> QueryResult<Vec<Order>> {
    let mut orders: Vec<(OrderRow, Vec<OrderLine>)> = Vec::new();
    for (order, line) in rows {
        if orders.last().is_none_or(|(last, _)| last.id != order.id) {
            orders.push((order, Vec::new()));
        }
        if let (Some(line), Some((_, lines))) = (line, orders.last_mut()) {
            lines.push(restore_line(&line)?);
        }
    }
    orders
        .into_iter()
        .map(|(row, lines)| {
            Ok(Order::restore(
                OrderId::from(row.id),
                version_from_db(row.version),
                UserId::from(row.user_id),
                lines,
                OrderStatus::parse(&row.status).ok_or_else(|| corrupt("status", &row.status))?,
                ts(row.created_at),
                ts(row.updated_at),
            ))
        })
        .collect()
}

impl Mapping for OrderMapping {
    type Aggregate = Order;
    const PRIMARY_KEY: &'static str = "orders_pkey";

    async fn load(conn: &AsyncPgConnection, id: OrderId) -> QueryResult<Option<Order>> {
        let rows = cached(
            orders::table
                .left_join(order_lines::table)
                .filter(orders::id.eq(id.as_uuid()))
                .order(order_lines::position)
                .select((OrderRow::as_select(), Option::<LineRow>::as_select())),
        )
        .load(&mut &*conn)
        .await?;
        Ok(restore(rows)?.pop())
    }

    async fn load_page(
        conn: &AsyncPgConnection,
        after: Option<OrderId>,
        limit: i64,
    ) -> QueryResult<Vec<Order>> {
        let mut page = orders::table
            .select(orders::id)
            .order(orders::id)
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            page = page.filter(orders::id.gt(after.as_uuid()));
        }
        // One statement: the page's ids in a subquery, joined to the lines.
        let rows = orders::table
            .left_join(order_lines::table)
            .filter(orders::id.eq_any(page))
            .order((orders::id, order_lines::position))
            .select((OrderRow::as_select(), Option::<LineRow>::as_select()))
            .load(&mut &*conn)
            .await?;
        restore(rows)
    }

    /// The order row, then its lines in one statement (at most
    /// `Order::MAX_LINES` shapes: bounded, so cached).
    fn insert<'a>(writes: &mut Writes<'a>, order: &'a Order) {
        writes.root(cached(
            diesel::insert_into(orders::table).values(OrderRow::of(order)),
        ));
        if !order.lines().is_empty() {
            let lines = line_rows(order, order.lines(), 0);
            writes.child(cached(
                diesel::insert_into(order_lines::table).values(lines),
            ));
        }
    }

    /// Rewrites only what changed: appended lines are inserted, any other
    /// change to the lines replaces them in two statements, and the root row
    /// takes the version check.
    fn update<'a>(writes: &mut Writes<'a>, old: &'a Order, new: &'a Order) {
        let id: Uuid = new.id().into();
        writes.root(cached(
            diesel::update(
                orders::table
                    .filter(orders::id.eq(id))
                    .filter(orders::version.eq(version_to_db(old.version()))),
            )
            .set((
                orders::version.eq(version_to_db(new.version())),
                orders::status.eq(new.status().as_str()),
                orders::updated_at.eq(new.updated_at().as_datetime()),
            )),
        ));
        let kept = if new.lines().starts_with(old.lines()) {
            old.lines().len()
        } else {
            writes.child(cached(diesel::delete(
                order_lines::table.filter(order_lines::order_id.eq(id)),
            )));
            0
        };
        if new.lines().len() > kept {
            let added = line_rows(new, &new.lines()[kept..], kept);
            // One appended line (the usual change) is an insert of one row:
            // a type of its own, whose SQL `cached` renders once.
            match <[LineRow; 1]>::try_from(added) {
                Ok([line]) => {
                    writes.child(cached(diesel::insert_into(order_lines::table).values(line)));
                }
                Err(added) => {
                    writes.child(cached(
                        diesel::insert_into(order_lines::table).values(added),
                    ));
                }
            }
        }
    }

    fn delete(writes: &mut Writes<'_>, id: OrderId) {
        writes.root(cached(diesel::delete(orders::table.find(id.as_uuid()))));
    }
}

impl Mapped for Order {
    type Mapping = OrderMapping;
}
