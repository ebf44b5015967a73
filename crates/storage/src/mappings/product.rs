//! `Product` <-> `products`.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::Aggregate;
use domain::example::{Cents, Product, ProductId, ProductName, Sku};
use uuid::Uuid;

use super::corrupt;
use crate::mapping::{Mapped, Mapping, version_from_db, version_to_db};
use crate::schema::products;

/// Maps [`Product`] to the `products` table.
#[derive(Debug, Clone, Copy)]
pub struct ProductMapping;

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = products, check_for_backend(diesel::pg::Pg))]
struct ProductRow {
    id: Uuid,
    version: i64,
    sku: String,
    name: String,
    price_cents: i64,
}

impl ProductRow {
    fn of(product: &Product) -> Self {
        Self {
            id: product.id().into(),
            version: version_to_db(product.version()),
            sku: product.sku().as_str().to_owned(),
            name: product.name().as_str().to_owned(),
            price_cents: product.price().get(),
        }
    }
}

fn restore(row: &ProductRow) -> QueryResult<Product> {
    Ok(Product::restore(
        version_from_db(row.version),
        Sku::parse(&row.sku).map_err(|e| corrupt("sku", e))?,
        ProductName::parse(&row.name).map_err(|e| corrupt("product name", e))?,
        Cents::new(row.price_cents).map_err(|e| corrupt("price", e))?,
    ))
}

impl Mapping for ProductMapping {
    type Aggregate = Product;
    const PRIMARY_KEY: &'static str = "products_pkey";

    async fn load(conn: &mut AsyncPgConnection, id: ProductId) -> QueryResult<Option<Product>> {
        let row = products::table
            .find(id.as_uuid())
            .select(ProductRow::as_select())
            .first(conn)
            .await
            .optional()?;
        row.as_ref().map(restore).transpose()
    }

    async fn load_page(
        conn: &mut AsyncPgConnection,
        after: Option<ProductId>,
        limit: i64,
    ) -> QueryResult<Vec<Product>> {
        let mut query = products::table
            .select(ProductRow::as_select())
            .order(products::id)
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            query = query.filter(products::id.gt(after.as_uuid()));
        }
        let rows: Vec<ProductRow> = query.load(conn).await?;
        rows.iter().map(restore).collect()
    }

    async fn load_many(
        conn: &mut AsyncPgConnection,
        ids: &[ProductId],
    ) -> QueryResult<Vec<Product>> {
        let ids: Vec<Uuid> = ids.iter().map(ProductId::as_uuid).collect();
        products::table
            .filter(products::id.eq_any(ids))
            .select(ProductRow::as_select())
            .load::<ProductRow>(conn)
            .await?
            .iter()
            .map(restore)
            .collect()
    }

    async fn insert(conn: &mut AsyncPgConnection, product: &Product) -> QueryResult<()> {
        diesel::insert_into(products::table)
            .values(ProductRow::of(product))
            .execute(conn)
            .await
            .map(drop)
    }

    async fn update(
        conn: &mut AsyncPgConnection,
        old: &Product,
        new: &Product,
    ) -> QueryResult<usize> {
        diesel::update(
            products::table
                .filter(products::id.eq(new.id().as_uuid()))
                .filter(products::version.eq(version_to_db(old.version()))),
        )
        .set((
            products::version.eq(version_to_db(new.version())),
            products::name.eq(new.name().as_str()),
            products::price_cents.eq(new.price().get()),
        ))
        .execute(conn)
        .await
    }

    async fn delete(conn: &mut AsyncPgConnection, id: ProductId) -> QueryResult<usize> {
        diesel::delete(products::table.find(id.as_uuid()))
            .execute(conn)
            .await
    }
}

impl Mapped for Product {
    type Mapping = ProductMapping;
}
