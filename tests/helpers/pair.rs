//! A primary and a synchronous streaming standby of their own
//! (`scripts/pg-pair`, ports 5441 and 5442), for the failover and replica
//! tests: never the shared server on 5432.

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

/// The pair, migrated, with the test aggregates' tables; removed when
/// dropped, also when the test fails.
pub struct Pair;

impl Pair {
    /// The primary.
    pub const PRIMARY: &str = "postgres://postgres@127.0.0.1:5441/postgres";
    /// The standby.
    pub const STANDBY: &str = "postgres://postgres@127.0.0.1:5442/postgres";
    /// Both hosts; a connection goes to the one that accepts writes.
    pub const BOTH: &str = "postgres://postgres@127.0.0.1:5441,127.0.0.1:5442/postgres?target_session_attrs=read-write";

    /// Makes the pair, migrates the primary, creates the test tables and
    /// waits until the standby has them.
    ///
    /// # Panics
    /// When the clusters cannot be made (the script says why).
    pub async fn up() -> Self {
        script("up");
        let pair = Self;
        storage::migrate(Self::PRIMARY)
            .await
            .expect("migrate the primary");
        connect(Self::PRIMARY)
            .await
            .batch_execute(storage::testing::CREATE_TABLES)
            .await
            .expect("create the test tables");
        pair.await_standby().await;
        pair
    }

    /// Waits until the standby has replayed everything the primary wrote.
    ///
    /// # Panics
    /// When it has not within 10 s.
    pub async fn await_standby(&self) {
        use diesel::dsl::sql;
        use diesel::sql_types::Text;
        use diesel_async::RunQueryDsl;
        let mut primary = connect(Self::PRIMARY).await;
        let target: String = diesel::select(sql::<Text>("pg_current_wal_lsn()::text"))
            .get_result(&mut primary)
            .await
            .expect("the primary's position");
        let mut standby = connect(Self::STANDBY).await;
        for _ in 0..1000 {
            let caught_up: bool = diesel::select(
                sql::<diesel::sql_types::Bool>("pg_last_wal_replay_lsn() >= ")
                    .bind::<Text, _>(&target)
                    .sql("::pg_lsn"),
            )
            .get_result(&mut standby)
            .await
            .expect("the standby's position");
            if caught_up {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the standby did not replay up to {target} within 10 s");
    }

    /// Makes the standby apply what it receives `delay` late
    /// (`recovery_min_apply_delay`), as a lagging replica would.
    pub async fn delay_standby(&self, delay: std::time::Duration) {
        let mut standby = connect(Self::STANDBY).await;
        // Two statements: ALTER SYSTEM cannot run in a batch's transaction.
        let delay = format!(
            "ALTER SYSTEM SET recovery_min_apply_delay = '{}ms'",
            delay.as_millis()
        );
        for statement in [delay.as_str(), "SELECT pg_reload_conf()"] {
            standby
                .batch_execute(statement)
                .await
                .expect("delay the standby");
        }
    }

    /// Runs `pg_ctlcluster <version> <cluster> <action...>`.
    ///
    /// # Panics
    /// When it fails.
    pub fn cluster(cluster: &str, action: &[&str]) {
        let version = std::fs::read_dir("/etc/postgresql")
            .expect("/etc/postgresql")
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .max()
            .expect("a PostgreSQL version");
        let status = std::process::Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &version, cluster])
            .args(action)
            .status()
            .expect("run pg_ctlcluster");
        assert!(
            status.success(),
            "pg_ctlcluster {cluster} {action:?}: {status}"
        );
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        script("down");
    }
}

async fn connect(url: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

fn script(command: &str) {
    crate::own_cluster::run_script("pg-pair", command);
}
