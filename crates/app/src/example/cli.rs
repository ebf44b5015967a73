//! The example's one-off commands: `app catalog import FILE`.

use std::path::PathBuf;

use clap::Subcommand;

/// One-off commands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Manage the product catalog.
    Catalog {
        /// What to do with it.
        #[command(subcommand)]
        action: CatalogCommand,
    },
}

/// Catalog commands.
#[derive(Debug, Clone, Subcommand)]
pub enum CatalogCommand {
    /// Replace the whole catalog with a file's products, in one
    /// transaction: a .json array of `{sku, name, price_cents}`, or a .csv
    /// file with the header `sku,name,price_cents`. A file with any error
    /// changes nothing.
    Import {
        /// The catalog file.
        file: PathBuf,
    },
}

/// Runs a one-off command instead of serving.
pub async fn run(config: &crate::Config, command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Catalog {
            action: CatalogCommand::Import { file },
        } => {
            let report = super::catalog_file::import_file(config, file).await?;
            println!(
                "catalog replaced: {} new, {} changed, {} removed, {} unchanged",
                report.created, report.updated, report.deleted, report.unchanged
            );
        }
    }
    Ok(())
}
