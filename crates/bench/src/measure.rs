//! Running one operation from many tasks for a fixed time, and what came of
//! it: throughput, latency percentiles, statements and attempts per op.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};

use crate::round_trips::FLIGHTS;

/// Statements sent by every diesel connection of this process.
pub static DIESEL_STATEMENTS: AtomicU64 = AtomicU64::new(0);

/// Counts the statements diesel connections send (BEGIN and COMMIT too).
struct CountStatements;

impl Instrumentation for CountStatements {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if matches!(event, InstrumentationEvent::StartQuery { .. }) {
            DIESEL_STATEMENTS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Makes every diesel connection opened from now on count its statements.
pub fn count_diesel_statements() -> anyhow::Result<()> {
    diesel::connection::set_default_instrumentation(|| Some(Box::new(CountStatements)))?;
    Ok(())
}

/// Counters an implementation keeps for the figures diesel cannot see.
#[derive(Debug, Default)]
pub struct Counters {
    /// Statements sent outside diesel (raw tokio-postgres).
    pub statements: AtomicU64,
    /// How many times a read-modify-write ran its modify step.
    pub attempts: AtomicU64,
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub ops_per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub statements_per_op: f64,
    /// Round trips per operation, when the contender talks through a
    /// counting [`Relay`](crate::round_trips::Relay); 0 otherwise.
    pub round_trips_per_op: f64,
    /// Extra modify steps per operation (conflict retries); 0 where the
    /// scenario has none.
    pub retries_per_op: f64,
    pub errors: u64,
    /// Operations that succeeded, warm-up included.
    pub succeeded: u64,
    /// Operations measured (warm-up excluded).
    pub ops: u64,
    /// CPU time this process (the client side: pool, framework, driver)
    /// spent on the measured operations.
    pub cpu: Duration,
    /// Heap allocations this process made during the measured operations.
    pub allocations: u64,
    /// CPU time the local PostgreSQL server's processes spent during the
    /// measured operations (see [`server_cpu`]); `None` when no server
    /// process is visible (a server on another machine).
    pub server_cpu: Option<Duration>,
}

/// Every allocation of the process goes through this counting wrapper of
/// the system allocator, so allocations per operation can be compared.
#[global_allocator]
static ALLOCATOR: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// Heap allocations (reallocations included) made so far.
fn allocations() -> u64 {
    let stats = ALLOCATOR.stats();
    (stats.allocations + stats.reallocations) as u64
}

/// CPU time (user and system) this process has used so far, from
/// `/proc/self/stat`, in clock ticks of 10 ms: coarse, so callers sum it
/// over seconds of work. Zero where `/proc` is missing.
fn process_cpu() -> Duration {
    const TICK: Duration = Duration::from_millis(10);
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u32 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse::<u32>().ok())
        .sum();
    TICK * ticks
}

/// Time on CPU so far of every process named `postgres` on this machine
/// (backends, WAL writer, checkpointer, autovacuum), from
/// `/proc/<pid>/schedstat` in nanoseconds, per pid. The bench's server is
/// local and otherwise idle, so the difference over a round is the
/// server's work for the round's operations: the part of a write's latency
/// that client CPU does not explain. Empty where `/proc` shows no server.
fn server_cpu() -> Vec<(u32, Duration)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            if comm.trim_end() != "postgres" {
                return None;
            }
            let schedstat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
            let nanos: u64 = schedstat.split_whitespace().next()?.parse().ok()?;
            Some((pid, Duration::from_nanos(nanos)))
        })
        .collect()
}

/// The server CPU spent between two [`server_cpu`] readings: a process
/// that started in between counts from zero, one that ended is left out.
fn server_cpu_since(before: &[(u32, Duration)]) -> Option<Duration> {
    let after = server_cpu();
    if after.is_empty() {
        return None;
    }
    Some(
        after
            .iter()
            .map(|(pid, now)| {
                let then = before
                    .iter()
                    .find(|(p, _)| p == pid)
                    .map_or(Duration::ZERO, |(_, t)| *t);
                now.saturating_sub(then)
            })
            .sum(),
    )
}

/// Runs `op(task, n)` from `tasks` tasks for `duration`, after a warm-up.
pub async fn run<F, Fut>(
    tasks: usize,
    duration: Duration,
    counters: &Arc<Counters>,
    op: F,
) -> Figures
where
    F: Fn(usize, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    // Warm-up: fill the pool and the statement caches.
    let (warm_up, _) = drive(tasks, Duration::from_millis(300), op.clone()).await;
    let statements_before =
        DIESEL_STATEMENTS.load(Ordering::Relaxed) + counters.statements.load(Ordering::Relaxed);
    let attempts_before = counters.attempts.load(Ordering::Relaxed);
    let flights_before = FLIGHTS.load(Ordering::Relaxed);
    let cpu_before = process_cpu();
    let allocations_before = allocations();
    let server_before = server_cpu();
    let started = Instant::now();
    let (mut latencies, errors) = drive(tasks, duration, op).await;
    let elapsed = started.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_before);
    let server_cpu = server_cpu_since(&server_before);
    let allocations = allocations() - allocations_before;
    let statements = DIESEL_STATEMENTS.load(Ordering::Relaxed)
        + counters.statements.load(Ordering::Relaxed)
        - statements_before;
    let attempts = counters.attempts.load(Ordering::Relaxed) - attempts_before;
    let flights = FLIGHTS.load(Ordering::Relaxed) - flights_before;

    latencies.sort_unstable();
    let ops = latencies.len().max(1);
    let at = |q: f64| {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index into the sorted latencies"
        )]
        let index = ((ops as f64 - 1.0) * q).round() as usize;
        latencies.get(index).copied().unwrap_or_default()
    };
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    Figures {
        ops_per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        statements_per_op: statements as f64 / ops as f64,
        round_trips_per_op: flights as f64 / ops as f64,
        retries_per_op: if attempts == 0 {
            0.0
        } else {
            attempts as f64 / ops as f64 - 1.0
        },
        errors,
        succeeded: (warm_up.len() + latencies.len()) as u64,
        ops: latencies.len() as u64,
        cpu,
        allocations,
        server_cpu,
    }
}

/// The latencies of the operations that succeeded, and how many failed.
async fn drive<F, Fut>(tasks: usize, duration: Duration, op: F) -> (Vec<Duration>, u64)
where
    F: Fn(usize, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..tasks)
        .map(|task| {
            let op = op.clone();
            tokio::spawn(async move {
                let (mut latencies, mut errors, mut n) = (Vec::new(), 0, 0);
                // One clock read per operation: its end is the next one's
                // start and the deadline check (a read costs as much as an
                // in-memory get).
                let mut now = Instant::now();
                while now < deadline {
                    let started = now;
                    let outcome = op(task, n).await;
                    now = Instant::now();
                    match outcome {
                        Ok(()) => latencies.push(now - started),
                        Err(error) => {
                            errors += 1;
                            if errors == 1 {
                                eprintln!("  error: {error:#}");
                            }
                        }
                    }
                    n += 1;
                }
                (latencies, errors)
            })
        })
        .collect();
    let (mut all, mut errors) = (Vec::new(), 0);
    for worker in workers {
        let (latencies, failed) = worker.await.expect("a bench task panicked");
        all.extend(latencies);
        errors += failed;
    }
    (all, errors)
}
