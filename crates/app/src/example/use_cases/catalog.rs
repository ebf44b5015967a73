//! The product catalog: a reference set replaced whole by an import.

use domain::example::{Action, Product};
use domain::{Replaced, RepositoryError, Timestamp, Transaction, TxExt, TxToken, UnitOfWork};

use crate::example::ExampleStore;

/// Replaces the stored catalog with `products` in one unit of work:
/// readers see the old catalog or the new one, never a mix. The same unit
/// logs `catalog.replaced`, which tells the domain event
/// `catalog_replaced` with the counts.
pub async fn replace<S>(store: &S, products: Vec<Product>) -> Result<Replaced, RepositoryError>
where
    S: UnitOfWork<Tx: Transaction<Product> + Transaction<Action>>,
{
    let (token, now) = (TxToken::generate(), Timestamp::now());
    store
        .run(|tx| Box::pin(replace_and_log(tx, token, products.clone(), now)))
        .await
}

async fn replace_and_log<Tx: Transaction<Product> + Transaction<Action>>(
    tx: &mut Tx,
    token: TxToken,
    products: Vec<Product>,
    now: Timestamp,
) -> Result<Replaced, RepositoryError> {
    let report = tx.of::<Product>().replace_all(token, products).await?;
    let entry = Action::catalog_replaced(&report, now);
    tx.of::<Action>()
        .create(token.derive("catalog.replaced"), entry)
        .await?;
    Ok(report)
}

/// The whole catalog in SKU order, read on one snapshot.
pub async fn list<S: ExampleStore>(store: &S) -> Result<Vec<Product>, RepositoryError> {
    let mut products = store
        .read(|tx| Box::pin(async move { tx.of::<Product>().all().await }))
        .await?;
    products.sort_by(|a, b| a.sku().as_str().cmp(b.sku().as_str()));
    Ok(products)
}

#[cfg(test)]
mod tests {
    use domain::example::{Cents, ProductName, Sku};

    use super::*;
    use domain::InMemoryStore;

    fn product(sku: &str, price: i64) -> Product {
        Product::new(
            Sku::parse(sku).expect("valid"),
            ProductName::parse(sku).expect("valid"),
            Cents::new(price).expect("valid"),
        )
    }

    #[tokio::test]
    async fn an_import_inserts_rewrites_and_removes_and_lists_by_sku() {
        for store in InMemoryStore::test_stores() {
            replace(&store, vec![product("PEN", 150), product("INK", 500)])
                .await
                .expect("first import");
            let report = replace(&store, vec![product("INK", 550), product("CAP", 90)])
                .await
                .expect("second import");
            assert_eq!(
                report,
                Replaced {
                    created: 1,
                    updated: 1,
                    unchanged: 0,
                    deleted: 1
                }
            );
            let listed: Vec<(String, i64)> = list(&store)
                .await
                .expect("list")
                .iter()
                .map(|p| (p.sku().as_str().to_owned(), p.price().get()))
                .collect();
            assert_eq!(listed, [("CAP".to_owned(), 90), ("INK".to_owned(), 550)]);
            let told: Vec<serde_json::Value> = store
                .outbox()
                .events()
                .into_iter()
                .filter(|e| e.name == "catalog_replaced")
                .map(|e| e.payload)
                .collect();
            assert_eq!(
                told,
                [
                    serde_json::json!({"created": 2, "updated": 0, "deleted": 0, "unchanged": 0}),
                    serde_json::json!({"created": 1, "updated": 1, "deleted": 1, "unchanged": 0}),
                ]
            );
        }
    }
}
