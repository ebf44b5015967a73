//! `Product` <-> `products`: one table, the mapping generated.

use diesel::prelude::*;
use domain::example::{Cents, Product, ProductName, Sku};
use domain::{Aggregate, BoxError};
use uuid::Uuid;

use crate::mapping::{version_from_db, version_to_db};
use crate::schema::products;

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = products, check_for_backend(diesel::pg::Pg))]
struct ProductRow {
    id: Uuid,
    version: i64,
    sku: String,
    name: String,
    price_cents: i64,
}

impl From<&Product> for ProductRow {
    fn from(product: &Product) -> Self {
        Self {
            id: product.id().into(),
            version: version_to_db(product.version()),
            sku: product.sku().as_str().to_owned(),
            name: product.name().as_str().to_owned(),
            price_cents: product.price().get(),
        }
    }
}

impl TryFrom<ProductRow> for Product {
    type Error = BoxError;

    fn try_from(row: ProductRow) -> Result<Self, BoxError> {
        Ok(Product::restore(
            version_from_db(row.version),
            Sku::parse(&row.sku)?,
            ProductName::parse(&row.name)?,
            Cents::new(row.price_cents)?,
        ))
    }
}

crate::table_mapping!(
    /// Maps [`Product`] to the `products` table.
    pub struct ProductMapping: Product => products as ProductRow
);
