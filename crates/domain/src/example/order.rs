//! The order aggregate: an order and its lines (two tables on Postgres).

use serde::{Deserialize, Serialize};

use super::order_line::OrderLine;
use super::user::UserId;
use crate::{Aggregate, DomainEvent, Events, Fingerprint, Timestamp, Version};

crate::aggregate_id!(
    /// Identifies an order.
    pub struct OrderId;
);

/// Where an order is in its life: `Draft -> Placed -> Cancelled`, and a
/// draft may be cancelled too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Lines may still be added.
    Draft,
    /// Submitted; lines are frozen.
    Placed,
    /// Final.
    Cancelled,
}

impl OrderStatus {
    /// The status as stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Placed => "placed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Draft, Self::Placed, Self::Cancelled]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

/// A broken order rule. Each maps to HTTP 409 (the order's state forbids it)
/// except `TooManyLines`, a 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Lines can only be added to a draft, and only a draft can be placed.
    #[error("the order is {}, not a draft", .0.as_str())]
    NotDraft(OrderStatus),
    /// An order needs at least one line to be placed.
    #[error("an empty order cannot be placed")]
    Empty,
    /// Cancelling is done once.
    #[error("the order is already cancelled")]
    AlreadyCancelled,
    /// An order holds at most [`Order::MAX_LINES`] lines.
    #[error("an order holds at most 100 lines")]
    TooManyLines,
}

/// An order a user is building, has placed or has cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    id: OrderId,
    version: Version,
    user_id: UserId,
    lines: Vec<OrderLine>,
    status: OrderStatus,
    created_at: Timestamp,
    updated_at: Timestamp,
    /// What the rules recorded since the order was loaded.
    #[serde(skip)]
    events: Events,
}

impl Order {
    /// The most lines one order holds.
    pub const MAX_LINES: usize = 100;

    /// A draft order with these lines (possibly none).
    pub fn open(
        id: OrderId,
        user_id: UserId,
        lines: Vec<OrderLine>,
        now: Timestamp,
    ) -> Result<Self, OrderError> {
        if lines.len() > Self::MAX_LINES {
            return Err(OrderError::TooManyLines);
        }
        Ok(Self {
            id,
            version: Version::INITIAL,
            user_id,
            lines,
            status: OrderStatus::Draft,
            created_at: now,
            updated_at: now,
            events: Events::default(),
        })
    }

    /// Rebuilds an order from storage; no rule is checked.
    pub fn restore(
        id: OrderId,
        version: Version,
        user_id: UserId,
        lines: Vec<OrderLine>,
        status: OrderStatus,
        created_at: Timestamp,
        updated_at: Timestamp,
    ) -> Self {
        Self {
            id,
            version,
            user_id,
            lines,
            status,
            created_at,
            updated_at,
            events: Events::default(),
        }
    }

    /// Adds a line to a draft.
    pub fn add_line(&mut self, line: OrderLine, now: Timestamp) -> Result<(), OrderError> {
        self.require_draft()?;
        if self.lines.len() >= Self::MAX_LINES {
            return Err(OrderError::TooManyLines);
        }
        self.lines.push(line);
        self.updated_at = now;
        Ok(())
    }

    /// Places a non-empty draft; records `order_placed` (the user and the
    /// total, which a read model of spending needs).
    pub fn place(&mut self, now: Timestamp) -> Result<(), OrderError> {
        self.require_draft()?;
        if self.lines.is_empty() {
            return Err(OrderError::Empty);
        }
        self.status = OrderStatus::Placed;
        self.updated_at = now;
        self.events.record(
            "order_placed",
            &serde_json::json!({
                "user_id": self.user_id,
                "total_cents": self.total_cents(),
                "lines": self.lines.len(),
            }),
        );
        Ok(())
    }

    /// Cancels a draft or placed order; records `order_cancelled`.
    pub fn cancel(&mut self, now: Timestamp) -> Result<(), OrderError> {
        if self.status == OrderStatus::Cancelled {
            return Err(OrderError::AlreadyCancelled);
        }
        let was = self.status;
        self.status = OrderStatus::Cancelled;
        self.updated_at = now;
        self.events.record(
            "order_cancelled",
            &serde_json::json!({ "user_id": self.user_id, "was": was.as_str() }),
        );
        Ok(())
    }

    fn require_draft(&self) -> Result<(), OrderError> {
        match self.status {
            OrderStatus::Draft => Ok(()),
            other => Err(OrderError::NotDraft(other)),
        }
    }

    /// Sum of the line totals, in cents. Cannot overflow: at most 100 lines
    /// of 10^13 cents each.
    pub fn total_cents(&self) -> i64 {
        self.lines.iter().map(OrderLine::total_cents).sum()
    }

    /// Who ordered.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The lines, in the order they were added.
    pub fn lines(&self) -> &[OrderLine] {
        &self.lines
    }

    /// The status.
    pub fn status(&self) -> OrderStatus {
        self.status
    }

    /// When the order was opened.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// When the order last changed.
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
}

impl Aggregate for Order {
    crate::aggregate_basics!(id: OrderId, kind: "order");

    /// What a client sends to open an order: the user and the lines.
    fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&(self.user_id, &self.lines))
    }

    fn take_events(&mut self) -> Vec<DomainEvent> {
        self.events.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::{Cents, Quantity, Sku};

    fn line(sku: &str, quantity: i64, cents: i64) -> OrderLine {
        OrderLine {
            sku: Sku::parse(sku).unwrap(),
            quantity: Quantity::new(quantity).unwrap(),
            unit_price: Cents::new(cents).unwrap(),
        }
    }

    fn draft(lines: Vec<OrderLine>) -> Order {
        Order::open(
            OrderId::generate(),
            UserId::generate(),
            lines,
            Timestamp::now(),
        )
        .unwrap()
    }

    #[test]
    fn a_new_order_is_a_draft() {
        assert_eq!(draft(vec![]).status(), OrderStatus::Draft);
    }

    #[test]
    fn lines_can_be_added_to_a_draft() {
        // given
        let mut order = draft(vec![line("PEN", 2, 100)]);
        // when
        order
            .add_line(line("INK", 1, 350), Timestamp::now())
            .unwrap();
        // then
        assert_eq!(order.lines().len(), 2);
        assert_eq!(order.total_cents(), 550);
    }

    #[test]
    fn no_lines_are_added_after_placing() {
        let mut order = draft(vec![line("PEN", 1, 100)]);
        order.place(Timestamp::now()).unwrap();
        let result = order.add_line(line("INK", 1, 350), Timestamp::now());
        assert_eq!(result, Err(OrderError::NotDraft(OrderStatus::Placed)));
        assert_eq!(order.lines().len(), 1);
    }

    #[test]
    fn an_empty_order_cannot_be_placed() {
        let mut order = draft(vec![]);
        assert_eq!(order.place(Timestamp::now()), Err(OrderError::Empty));
        assert_eq!(order.status(), OrderStatus::Draft);
    }

    #[test]
    fn a_placed_order_cannot_be_placed_again() {
        let mut order = draft(vec![line("PEN", 1, 100)]);
        order.place(Timestamp::now()).unwrap();
        assert_eq!(
            order.place(Timestamp::now()),
            Err(OrderError::NotDraft(OrderStatus::Placed))
        );
    }

    #[test]
    fn placed_and_draft_orders_can_be_cancelled_once() {
        let mut placed = draft(vec![line("PEN", 1, 100)]);
        placed.place(Timestamp::now()).unwrap();
        placed.cancel(Timestamp::now()).unwrap();
        assert_eq!(placed.status(), OrderStatus::Cancelled);
        assert_eq!(
            placed.cancel(Timestamp::now()),
            Err(OrderError::AlreadyCancelled)
        );

        let mut abandoned = draft(vec![]);
        abandoned.cancel(Timestamp::now()).unwrap();
        assert_eq!(abandoned.status(), OrderStatus::Cancelled);
    }

    #[test]
    fn a_cancelled_order_cannot_be_placed_or_extended() {
        let mut order = draft(vec![line("PEN", 1, 100)]);
        order.cancel(Timestamp::now()).unwrap();
        assert_eq!(
            order.place(Timestamp::now()),
            Err(OrderError::NotDraft(OrderStatus::Cancelled))
        );
        assert_eq!(
            order.add_line(line("INK", 1, 1), Timestamp::now()),
            Err(OrderError::NotDraft(OrderStatus::Cancelled))
        );
    }

    #[test]
    fn an_order_holds_at_most_100_lines() {
        let full = vec![line("PEN", 1, 1); Order::MAX_LINES];
        let mut order = draft(full.clone());
        assert_eq!(
            order.add_line(line("PEN", 1, 1), Timestamp::now()),
            Err(OrderError::TooManyLines)
        );
        let mut over = full;
        over.push(line("PEN", 1, 1));
        assert_eq!(
            Order::open(
                OrderId::generate(),
                UserId::generate(),
                over,
                Timestamp::now()
            ),
            Err(OrderError::TooManyLines)
        );
    }

    #[test]
    fn the_largest_order_total_fits() {
        let order = draft(vec![line("GOLD", 10_000, Cents::MAX); Order::MAX_LINES]);
        assert_eq!(order.total_cents(), 1_000_000_000_000_000);
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for status in [
            OrderStatus::Draft,
            OrderStatus::Placed,
            OrderStatus::Cancelled,
        ] {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(OrderStatus::parse("shipped"), None);
    }
}
