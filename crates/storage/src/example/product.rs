//! `Product` <-> `products`: one table, the mapping generated.

use domain::example::{Cents, Product, ProductName, Sku};

use crate::schema::products;

crate::table_mapping! {
    /// Maps [`Product`] to the `products` table.
    pub struct ProductMapping: Product => products;
    write |product| {
        sku: String = product.sku().as_str().to_owned(),
        name: String = product.name().as_str().to_owned(),
        price_cents: i64 = product.price().get(),
    }
    read |row, _id, version| {
        let (sku, name) = (Sku::parse(&row.sku)?, ProductName::parse(&row.name)?);
        Ok(Product::restore(version, sku, name, Cents::new(row.price_cents)?))
    }
    unique { sku }
}
