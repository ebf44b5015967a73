//! `/products`: the catalog, as the last import left it.

use axum::Json;
use axum::extract::State;
use domain::example::Product;
use domain::{RepositoryError, TxExt, UnitOfWork};
use serde::Serialize;
use utoipa::ToSchema;

use crate::persistence::on_backend;
use crate::problem::{ApiError, ErrorBody};
use crate::routes::AppState;

/// A product.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductView {
    /// Stock-keeping unit.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Unit price.
    pub price_cents: i64,
}

/// The whole catalog, read on one snapshot: during an import it is the old
/// catalog or the new one, never a mix, and reading never delays the import.
#[utoipa::path(get, path = "/products", tag = "products",
    responses((status = 200, body = Vec<ProductView>), (status = 503, body = ErrorBody)))]
pub async fn list_products(
    State(state): State<AppState>,
) -> Result<Json<Vec<ProductView>>, ApiError> {
    let products = on_backend!(&state.backend, |store| {
        store
            .read(|tx| {
                Box::pin(async move {
                    tx.of::<Product>()
                        .all()
                        .await
                        .map_err(RepositoryError::widen::<ApiError>)
                })
            })
            .await
    })?;
    let mut views: Vec<ProductView> = products
        .iter()
        .map(|p| ProductView {
            sku: p.sku().as_str().to_owned(),
            name: p.name().as_str().to_owned(),
            price_cents: p.price().get(),
        })
        .collect();
    views.sort_by(|a, b| a.sku.cmp(&b.sku));
    Ok(Json(views))
}
