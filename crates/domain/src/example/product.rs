//! The product catalog: a reference set replaced whole by imports.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::order_line::{Cents, Sku};
use crate::{Aggregate, Fingerprint, UniqueKey, Version};

crate::aggregate_id!(
    /// Identifies a product; derived from its SKU, so that every import of
    /// the catalog gives a product the same id.
    pub struct ProductId;
);

impl ProductId {
    /// The id of the product with this SKU.
    pub fn for_sku(sku: &Sku) -> Self {
        const NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a7e_93d4_4b8e_a1f0_5c3e_7b92_d046);
        Self::from(Uuid::new_v5(&NAMESPACE, sku.as_str().as_bytes()))
    }
}

/// A product name: trimmed, 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProductName(String);

/// Why a string is not a [`ProductName`]. Maps to HTTP 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a product name must be 1 to 200 characters without control characters")]
pub struct InvalidProductName;

impl ProductName {
    /// Parses a name, trimming surrounding whitespace.
    pub fn parse(input: &str) -> Result<Self, InvalidProductName> {
        let name = input.trim();
        let len = name.chars().count();
        if (1..=200).contains(&len) && !name.chars().any(char::is_control) {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidProductName)
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProductName {
    type Error = InvalidProductName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ProductName> for String {
    fn from(value: ProductName) -> Self {
        value.0
    }
}

/// A product of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    id: ProductId,
    version: Version,
    sku: Sku,
    name: ProductName,
    price: Cents,
}

impl Product {
    /// The unique key on SKUs (on Postgres, the constraint
    /// `products_sku_key`).
    pub const SKU_KEY: &'static str = "sku";

    /// A product; its id follows from its SKU.
    pub fn new(sku: Sku, name: ProductName, price: Cents) -> Self {
        Self {
            id: ProductId::for_sku(&sku),
            version: Version::INITIAL,
            sku,
            name,
            price,
        }
    }

    /// Rebuilds a product from storage.
    pub fn restore(version: Version, sku: Sku, name: ProductName, price: Cents) -> Self {
        Self {
            version,
            ..Self::new(sku, name, price)
        }
    }

    /// The SKU.
    pub fn sku(&self) -> &Sku {
        &self.sku
    }

    /// The name.
    pub fn name(&self) -> &ProductName {
        &self.name
    }

    /// The unit price.
    pub fn price(&self) -> Cents {
        self.price
    }
}

impl Aggregate for Product {
    crate::aggregate_basics!(id: ProductId, kind: "product");

    /// The whole content: an import that changes any of it is a change.
    fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&(&self.sku, &self.name, self.price))
    }

    fn unique_keys(&self) -> Vec<UniqueKey> {
        vec![UniqueKey::new(Self::SKU_KEY, self.sku.as_str())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pen(price: i64) -> Product {
        Product::new(
            Sku::parse("PEN").unwrap(),
            ProductName::parse("Pen").unwrap(),
            Cents::new(price).unwrap(),
        )
    }

    #[test]
    fn a_sku_always_gives_the_same_id() {
        assert_eq!(pen(1).id(), pen(2).id());
        let ink = Sku::parse("INK").unwrap();
        assert_ne!(ProductId::for_sku(&ink), pen(1).id());
    }

    #[test]
    fn a_price_change_changes_the_fingerprint() {
        assert_ne!(pen(1).fingerprint(), pen(2).fingerprint());
        assert_eq!(pen(1).fingerprint(), pen(1).fingerprint());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(ProductName::parse(" Pen ").unwrap().as_str(), "Pen");
        assert!(ProductName::parse("").is_err());
        assert!(ProductName::parse(&"x".repeat(201)).is_err());
        assert!(ProductName::parse("a\tb").is_err());
    }
}
