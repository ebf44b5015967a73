//! Order lines and their value objects.

use serde::{Deserialize, Serialize};

/// A stock-keeping unit: 1 to 32 characters of `A-Z`, `0-9` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(String);

/// A positive number of items, at most [`Quantity::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Quantity(u32);

/// A non-negative amount of money in integer cents, at most [`Cents::MAX`]
/// for one unit price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Cents(i64);

/// Why an order line's part is invalid. Maps to HTTP 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidLine {
    /// A malformed SKU.
    #[error("sku must be 1 to 32 characters of A-Z, 0-9 and -, got {0:?}")]
    Sku(String),
    /// Zero or too many items.
    #[error("quantity must be between 1 and 10000, got {0}")]
    Quantity(i64),
    /// A negative or absurd price.
    #[error("unit price must be between 0 and 1000000000 cents, got {0}")]
    Price(i64),
}

impl Sku {
    /// Parses a SKU.
    pub fn parse(input: &str) -> Result<Self, InvalidLine> {
        let valid = (1..=32).contains(&input.len())
            && input
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-');
        if valid {
            Ok(Self(input.to_owned()))
        } else {
            Err(InvalidLine::Sku(input.chars().take(40).collect()))
        }
    }

    /// The SKU as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sku {
    type Error = InvalidLine;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Sku> for String {
    fn from(value: Sku) -> Self {
        value.0
    }
}

impl Quantity {
    /// The most items of one SKU on one line.
    pub const MAX: u32 = 10_000;

    /// Parses a quantity.
    pub fn new(value: i64) -> Result<Self, InvalidLine> {
        u32::try_from(value)
            .ok()
            .filter(|q| (1..=Self::MAX).contains(q))
            .map(Self)
            .ok_or(InvalidLine::Quantity(value))
    }

    /// The number.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Quantity {
    type Error = InvalidLine;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Self::new(i64::from(value))
    }
}

impl From<Quantity> for u32 {
    fn from(value: Quantity) -> Self {
        value.0
    }
}

impl Cents {
    /// The highest unit price: ten million in major units.
    pub const MAX: i64 = 1_000_000_000;

    /// Parses a unit price.
    pub fn new(value: i64) -> Result<Self, InvalidLine> {
        if (0..=Self::MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(InvalidLine::Price(value))
        }
    }

    /// The amount in cents.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for Cents {
    type Error = InvalidLine;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Cents> for i64 {
    fn from(value: Cents) -> Self {
        value.0
    }
}

/// One line of an order: so many units of a SKU at a unit price.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrderLine {
    /// What is ordered.
    pub sku: Sku,
    /// How many.
    pub quantity: Quantity,
    /// Price of one unit.
    pub unit_price: Cents,
}

impl OrderLine {
    /// The line's total in cents. Cannot overflow: at most 10^4 * 10^9.
    pub fn total_cents(&self) -> i64 {
        i64::from(self.quantity.get()) * self.unit_price.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_are_uppercase_alphanumerics_and_dashes() {
        assert!(Sku::parse("BOOK-42").is_ok());
        assert!(Sku::parse("book-42").is_err());
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse(&"A".repeat(33)).is_err());
    }

    #[test]
    fn quantity_must_be_positive_and_bounded() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(-3).is_err());
        assert_eq!(Quantity::new(10_000).unwrap().get(), 10_000);
        assert!(Quantity::new(10_001).is_err());
    }

    #[test]
    fn prices_are_non_negative_cents() {
        assert!(Cents::new(-1).is_err());
        assert_eq!(Cents::new(0).unwrap().get(), 0);
        assert!(Cents::new(Cents::MAX + 1).is_err());
    }

    #[test]
    fn a_line_total_is_quantity_times_price() {
        let line = OrderLine {
            sku: Sku::parse("PEN").unwrap(),
            quantity: Quantity::new(3).unwrap(),
            unit_price: Cents::new(250).unwrap(),
        };
        assert_eq!(line.total_cents(), 750);
    }
}
