//! Embedded migrations, run by the app at start and by tests.

use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::StoreError;

/// The framework's tables (transaction tokens and keys' answers, the
/// outbox, the inbox). Never edit these.
const FRAMEWORK: EmbeddedMigrations = embed_migrations!("migrations/framework");

/// The application's tables: add yours with `scripts/new-migration NAME`
/// (see `migrations/app/README.md`). `build.rs` makes cargo re-embed them
/// when they change.
const APPLICATION: EmbeddedMigrations = embed_migrations!("migrations/app");

/// The advisory lock migrations run under, in the two-key space (which
/// keyed access's one-key locks never reach): `storage`'s class, key 1.
pub const MIGRATION_LOCK: (i32, i32) = (0x7374_6f72, 1);

/// Applies every pending migration, the framework's then the
/// application's, to the database at `database_url`. Both sets share
/// diesel's bookkeeping table, so their versions must not collide: the
/// framework's are dated 2026-11-01, numbered 000001 and from 000101 on.
///
/// Under a session advisory lock ([`MIGRATION_LOCK`]): instances of a
/// service started together on an empty database take turns, the first
/// migrates and the others find nothing pending. The lock is the
/// session's, so give this a URL that reaches Postgres directly (or a
/// session-pooling PgBouncer), never a transaction pooler; a process that
/// dies while migrating frees it with its session.
///
/// diesel's harness is synchronous; it runs on a blocking thread over an
/// async connection wrapped for it, so this works on any tokio runtime
/// (`AsyncMigrationHarness` panics on a current-thread one).
pub async fn migrate(database_url: &str) -> Result<(), StoreError> {
    // A server whose messages the store cannot read refuses the service
    // at start, saying why (`messages`), not request by request.
    let mut conn = crate::tls::connect(database_url)
        .await
        .map_err(|e| StoreError::Connect(e.to_string()))?;
    crate::messages::ensure_english(&mut conn, true)
        .await
        .map_err(StoreError::Messages)?;
    tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        use diesel::connection::SimpleConnection;
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        let (class, id) = MIGRATION_LOCK;
        conn.batch_execute(&format!("SELECT pg_advisory_lock({class}, {id})"))
            .map_err(|e| StoreError::Migrate(format!("taking the migration lock: {e}")))?;
        let mut applied = 0;
        for set in [FRAMEWORK, APPLICATION] {
            applied += conn
                .run_pending_migrations(set)
                .map_err(|e| StoreError::Migrate(e.to_string()))?
                .len();
        }
        // Ending the session would free it too; this frees it at once.
        conn.batch_execute(&format!("SELECT pg_advisory_unlock({class}, {id})"))
            .map_err(|e| StoreError::Migrate(format!("releasing the migration lock: {e}")))?;
        tracing::info!(applied, "database migrated");
        Ok(())
    })
    .await
    .map_err(|e| StoreError::Migrate(format!("migration task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use diesel::migration::MigrationSource;
    use diesel::pg::Pg;

    use super::*;

    /// Cargo rebuilds this crate when a migration folder appears
    /// (`build.rs`), so the embedded sets always match the folders: without
    /// it, a new folder was silently left out until something else changed.
    #[test]
    fn every_migration_folder_is_embedded() {
        for (set, folder) in [(FRAMEWORK, "framework"), (APPLICATION, "app")] {
            let embedded = MigrationSource::<Pg>::migrations(&set)
                .expect("embedded migrations")
                .len();
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(folder);
            let on_disk = std::fs::read_dir(&dir)
                .expect("the migrations folder")
                .filter(|entry| entry.as_ref().is_ok_and(|e| e.path().is_dir()))
                .count();
            assert_eq!(embedded, on_disk, "{} is not embedded whole", dir.display());
        }
    }
}
