//! Clusters of the tests' own, made and removed by the project's scripts
//! (`scripts/pg-pair`, `scripts/pg-german`): never the shared server on
//! 5432.

/// A cluster made by `scripts/<script> up`, removed by `scripts/<script>
/// down` when dropped, also when the test fails.
pub struct OwnCluster {
    script: &'static str,
}

impl OwnCluster {
    /// Runs `scripts/<script> up`.
    ///
    /// # Panics
    /// When the script fails (it says why).
    pub fn up(script: &'static str) -> Self {
        run_script(script, "up");
        Self { script }
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        run_script(self.script, "down");
    }
}

/// Runs `scripts/<script> <command>`.
///
/// # Panics
/// When it fails: these tests need Debian's PostgreSQL server packages
/// (`pg_createcluster`) and root, as `scripts/test` has.
pub fn run_script(script: &str, command: &str) {
    let path = format!("{}/../scripts/{script}", env!("CARGO_MANIFEST_DIR"));
    let status = std::process::Command::new(&path)
        .arg(command)
        .status()
        .unwrap_or_else(|e| panic!("{path} {command}: {e}"));
    assert!(
        status.success(),
        "{path} {command} failed: {status}; these tests need Debian's PostgreSQL \
         server packages (pg_createcluster) and root, as `scripts/test` has"
    );
}
