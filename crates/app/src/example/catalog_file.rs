//! Catalog files: read, checked whole, then imported in one transaction.

use std::path::Path;

use domain::Replaced;
use domain::example::{Cents, Product, ProductName, Sku};
use serde::Deserialize;

/// One product as a file states it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    sku: String,
    name: String,
    price_cents: i64,
}

/// Why a catalog file cannot be imported. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Neither `.json` nor `.csv`.
    #[error("{0}: a catalog is a .json array or a .csv file with the header sku,name,price_cents")]
    Format(String),
    /// A line or record is malformed or breaks a rule.
    #[error("{path}, {at}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// `line N` or `record N` (1-based).
        at: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads and checks a whole catalog file: every product valid, no SKU
/// twice. Only a file that passes is worth a transaction.
pub fn read(path: &Path) -> Result<Vec<Product>, CatalogError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
        path: shown.clone(),
        source,
    })?;
    let invalid = |at: String, message: String| CatalogError::Invalid {
        path: shown.clone(),
        at,
        message,
    };
    let records: Vec<(String, Record)> = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str::<Vec<Record>>(&text)
            .map_err(|e| invalid(format!("line {}", e.line()), e.to_string()))?
            .into_iter()
            .enumerate()
            .map(|(i, record)| (format!("record {}", i + 1), record))
            .collect(),
        Some("csv") => {
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            reader
                .deserialize::<Record>()
                .map(|row| {
                    row.map_err(|e| {
                        let line = e.position().map_or(0, csv::Position::line);
                        invalid(format!("line {line}"), e.to_string())
                    })
                })
                .zip(2..)
                .map(|(row, line)| row.map(|record| (format!("line {line}"), record)))
                .collect::<Result<_, _>>()?
        }
        _ => return Err(CatalogError::Format(shown)),
    };
    let mut seen = std::collections::HashSet::new();
    records
        .into_iter()
        .map(|(at, record)| {
            let product = parse(&record).map_err(|message| invalid(at.clone(), message))?;
            if !seen.insert(product.sku().clone()) {
                return Err(invalid(at, format!("SKU {} appears twice", record.sku)));
            }
            Ok(product)
        })
        .collect()
}

fn parse(record: &Record) -> Result<Product, String> {
    Ok(Product::new(
        Sku::parse(&record.sku).map_err(|e| e.to_string())?,
        ProductName::parse(&record.name).map_err(|e| e.to_string())?,
        Cents::new(record.price_cents).map_err(|e| e.to_string())?,
    ))
}

/// `app catalog import FILE`: checks the whole file, then replaces the
/// catalog of the database at `config.database_url` with it.
pub async fn import_file(config: &crate::Config, path: &Path) -> anyhow::Result<Replaced> {
    use anyhow::Context;
    let url = config
        .database_url
        .as_deref()
        .context("catalog import writes to Postgres: set DATABASE_URL or pass --database-url")?;
    let products = read(path)?;
    storage::migrate(url)
        .await
        .context("migrating the database")?;
    let store = storage::PgStore::new(url, config.store_config());
    Ok(crate::example::use_cases::catalog::replace(&store, products).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, content: &str) -> (tempdir::Dir, std::path::PathBuf) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join(name);
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    mod tempdir {
        /// A directory removed when dropped.
        pub struct Dir(pub std::path::PathBuf);

        impl Dir {
            pub fn new() -> Self {
                let path = std::env::temp_dir().join(format!("catalog-{}", uuid::Uuid::new_v4()));
                std::fs::create_dir(&path).unwrap();
                Self(path)
            }
        }

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn reads_json_and_csv_alike() {
        let (_a, json) = file(
            "c.json",
            r#"[{"sku":"PEN","name":"Pen","price_cents":150},{"sku":"INK","name":"Ink, blue","price_cents":500}]"#,
        );
        let (_b, csv) = file(
            "c.csv",
            "sku,name,price_cents\nPEN,Pen,150\nINK,\"Ink, blue\",500\n",
        );
        let from_json = read(&json).unwrap();
        assert_eq!(from_json.len(), 2);
        assert_eq!(from_json, read(&csv).unwrap());
    }

    #[test]
    fn names_the_csv_line_at_fault() {
        let (_d, path) = file("c.csv", "sku,name,price_cents\nPEN,Pen,150\npen,Pen,150\n");
        let error = read(&path).unwrap_err().to_string();
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("sku must be"), "{error}");

        let (_d, path) = file("c.csv", "sku,name,price_cents\nPEN,Pen,lots\n");
        let error = read(&path).unwrap_err().to_string();
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn names_the_json_record_or_line_at_fault() {
        let (_d, path) = file("c.json", r#"[{"sku":"PEN","name":"Pen","price_cents":-1}]"#);
        let error = read(&path).unwrap_err().to_string();
        assert!(error.contains("record 1"), "{error}");
        let (_d, path) = file("c.json", "[\n{\"sku\": \"PEN\",\n oops}]");
        let error = read(&path).unwrap_err().to_string();
        assert!(error.contains("line 3"), "{error}");
    }

    #[test]
    fn refuses_a_sku_twice_and_unknown_formats() {
        let (_d, path) = file("c.csv", "sku,name,price_cents\nPEN,Pen,1\nPEN,Pen,2\n");
        assert!(
            read(&path)
                .unwrap_err()
                .to_string()
                .contains("appears twice")
        );
        let (_d, path) = file("c.xml", "<catalog/>");
        assert!(matches!(read(&path), Err(CatalogError::Format(_))));
    }
}
