//! `embed_migrations!` reads `migrations/` at compile time, but cargo only
//! rebuilds a crate when its sources change: without this, a new migration
//! folder would silently not be embedded until something else changed.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
