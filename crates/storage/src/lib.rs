//! Postgres repositories for the domain's `Repository` contract.
#![deny(missing_docs)]
