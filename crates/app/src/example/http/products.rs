//! `/products`: the catalog, as the last import left it.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppStore;
use crate::example::use_cases::catalog;
use crate::problem::ApiError;

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

/// The whole catalog in SKU order, read on one snapshot: during an import
/// it is the old catalog or the new one, never a mix, and reading never
/// delays the import.
#[utoipa::path(get, path = "/products", tag = "products",
    responses((status = 200, body = Vec<ProductView>)))]
pub async fn list_products<S: AppStore>(
    State(store): State<S>,
) -> Result<Json<Vec<ProductView>>, ApiError> {
    let products = catalog::list(&store).await?;
    let views = products
        .iter()
        .map(|p| ProductView {
            sku: p.sku().as_str().to_owned(),
            name: p.name().as_str().to_owned(),
            price_cents: p.price().get(),
        })
        .collect();
    Ok(Json(views))
}
