//! `cargo run --release -p bench`: what the framework costs over
//! hand-written diesel-async and raw tokio-postgres, on the local Postgres.
//! Prints a markdown table; BENCHMARKS.md holds the figures and how to read
//! them.

mod contender;
mod framework;
mod handwritten;
mod measure;
mod memory;
mod raw;
mod relay_bench;
mod replica_bench;
mod round_trips;
mod setup;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use rand::Rng;
use uuid::Uuid;

use crate::contender::Contender;
use crate::measure::{Counters, Figures};

/// Benchmark settings.
#[derive(Debug, Parser)]
struct Args {
    /// Seconds each round of a (scenario, tasks, implementation) runs.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Rounds per (scenario, tasks): the table shows the median round, and
    /// the ratio is the median of the round-by-round ratios.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    rounds: u16,
    /// Concurrent tasks to run each scenario with.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    tasks: Vec<usize>,
    /// Seeded users (the aggregates `get` and `update` pick from).
    #[arg(long, default_value_t = 100_000)]
    users: u32,
    /// Seeded orders.
    #[arg(long, default_value_t = 10_000)]
    orders: u32,
    /// Connections per implementation (pool size).
    #[arg(long, default_value_t = 10)]
    connections: u32,
    /// Scenarios to run (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Implementations to run, for profiling one alone (default: all):
    /// hand, framework, verified, raw, memory, relay, replica (with
    /// `--replica-url`), pgbouncer (with `--pgbouncer-url`).
    #[arg(long, value_delimiter = ',')]
    contenders: Vec<String>,
    /// The server to benchmark against (a database of its own is created).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// The broker the relay scenario publishes to (an exchange of its own).
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
    /// A streaming replica of `--database-url`'s server, for the replica
    /// scenario (`--contenders replica`; `scripts/bench-replica` makes a
    /// pair and passes both).
    #[arg(long)]
    replica_url: Option<String>,
    /// A PgBouncer in transaction mode in front of `--database-url`'s
    /// server, for the pgbouncer scenario (`--contenders pgbouncer`;
    /// `scripts/bench-pgbouncer` starts one and passes it).
    #[arg(long)]
    pgbouncer_url: Option<String>,
}

impl Args {
    /// Rejects settings that would measure nothing.
    fn check(&self) -> anyhow::Result<()> {
        if let Some(unknown) = self.only.iter().find(|o| !SCENARIOS.contains(&o.as_str())) {
            anyhow::bail!(
                "unknown scenario {unknown}; known: {}",
                SCENARIOS.join(", ")
            );
        }
        let known: Vec<&str> = CONTENDERS
            .iter()
            .map(|(name, _)| *name)
            .chain(["memory", "relay", "replica", "pgbouncer"])
            .collect();
        if let Some(unknown) = self
            .contenders
            .iter()
            .find(|c| !known.contains(&c.as_str()))
        {
            anyhow::bail!("unknown contender {unknown}; known: {}", known.join(", "));
        }
        anyhow::ensure!(
            self.replica_url.is_some() || !self.contenders.iter().any(|c| c == "replica"),
            "the replica scenario needs --replica-url (scripts/bench-replica sets it)"
        );
        anyhow::ensure!(
            self.pgbouncer_url.is_some() || !self.contenders.iter().any(|c| c == "pgbouncer"),
            "the pgbouncer scenario needs --pgbouncer-url (scripts/bench-pgbouncer sets it)"
        );
        anyhow::ensure!(
            self.tasks.iter().all(|&t| t > 0) && self.seconds > 0.0,
            "--tasks and --seconds must be positive"
        );
        Ok(())
    }

    /// Whether `--contenders` selects `name`.
    fn runs(&self, name: &str) -> bool {
        self.contenders.is_empty() || self.contenders.iter().any(|c| c == name)
    }
}

/// The implementations compared, by `--contenders` name and full name; the
/// first is the baseline of the ratios.
const CONTENDERS: [(&str, &str); 4] = [
    ("hand", "diesel-async by hand"),
    ("framework", "framework"),
    ("verified", "framework, Recycling::Verified"),
    ("raw", "tokio-postgres raw"),
];

/// The round with the median throughput.
fn median(rounds: &mut [Figures]) -> Option<Figures> {
    rounds.sort_by(|a, b| a.ops_per_second.total_cmp(&b.ops_per_second));
    rounds.get(rounds.len() / 2).copied()
}

/// The median over rounds of `rounds[i]`'s throughput over `baseline[i]`'s.
/// Each round runs the contenders back to back, so pairing them round by
/// round cancels the machine's drift between rounds (a VM whose speed
/// wanders by tens of percent over minutes).
fn paired_ratio(rounds: &[Figures], baseline: &[Figures]) -> Option<f64> {
    let mut ratios: Vec<f64> = rounds
        .iter()
        .zip(baseline)
        .map(|(f, b)| f.ops_per_second / b.ops_per_second)
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios.get(ratios.len() / 2).copied()
}

/// CPU and allocations per operation over all rounds.
#[derive(Debug, Clone, Copy)]
struct Cost {
    /// The bench process's.
    cpu: Duration,
    allocations: f64,
    /// The local server's processes', where they are visible.
    server_cpu: Option<Duration>,
}

/// Summed over all rounds: the process-wide CPU clock ticks in 10 ms
/// steps, so one round alone would be too coarse.
fn cost(rounds: &[Figures]) -> Cost {
    let ops: u64 = rounds.iter().map(|f| f.ops).sum();
    let cpu: Duration = rounds.iter().map(|f| f.cpu).sum();
    let allocations: u64 = rounds.iter().map(|f| f.allocations).sum();
    let server_cpu: Option<Duration> = rounds.iter().map(|f| f.server_cpu).sum();
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let per_op = |n: f64| n / ops.max(1) as f64;
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    Cost {
        cpu: Duration::from_secs_f64(per_op(cpu.as_secs_f64())),
        allocations: per_op(allocations as f64),
        server_cpu: server_cpu.map(|t| Duration::from_secs_f64(per_op(t.as_secs_f64()))),
    }
}

const SCENARIOS: [&str; 7] = [
    "get",
    "update",
    "update-hot",
    "create",
    "create-retry",
    "order-update",
    "unit-transfer",
];

/// What the operations pick from.
#[derive(Clone)]
struct Data {
    users: Arc<Vec<Uuid>>,
    orders: Arc<Vec<Uuid>>,
    /// One account per user, for `unit-transfer`.
    accounts: Arc<Vec<Uuid>>,
    /// Users created with a token before `create-retry`, per implementation.
    created: Arc<Vec<(Uuid, String)>>,
    run: u32,
    url: Arc<str>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.check()?;
    measure::count_diesel_statements()?;
    eprintln!("seeding {} users and {} orders...", args.users, args.orders);
    let db = setup::BenchDb::create(&args.database_url, args.users, args.orders).await?;
    let (users, orders) = db.ids().await?;
    let users = Arc::new(users);
    let orders = Arc::new(orders);
    let accounts = Arc::new(db.account_ids().await?);

    let counters: [Arc<Counters>; 4] = Default::default();
    let direct = Contenders::on(&db.url, args.connections, &counters).await?;
    // The same implementations again, talking through a relay that counts
    // round trips; one connection each, as a single task needs no more.
    let relay = round_trips::Relay::start(&db.url).await?;
    let relayed = Contenders::on(&relay.url, 1, &counters).await?;

    let duration = Duration::from_secs_f64(args.seconds);
    println!(
        "| scenario | tasks | implementation | ops/s | p50 ms | p99 ms | statements/op | round trips/op | retries/op | client CPU µs/op | server CPU µs/op | allocs/op | vs diesel | vs raw |"
    );
    println!(
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let mut run = 0;
    let data = |run| Data {
        users: users.clone(),
        orders: orders.clone(),
        accounts: accounts.clone(),
        created: Arc::new(Vec::new()),
        run,
        url: Arc::from(db.url.as_str()),
    };
    for scenario in SCENARIOS
        .iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == *s))
    {
        let round_trips =
            round_trips_of(&relayed, &args, &db, scenario, &mut run, &counters, &data).await?;
        for &tasks in &args.tasks {
            // Several rounds, the contenders in a rotated order each round,
            // and the median round reported: a single run in a fixed order
            // lets server-side drift (checkpoints, autovacuum, WAL flushes)
            // fall on whoever happens to run at that moment.
            let mut rounds: [Vec<Figures>; 4] = Default::default();
            for round in 0..args.rounds {
                for offset in 0..CONTENDERS.len() {
                    let which = (offset + usize::from(round)) % CONTENDERS.len();
                    if !args.runs(CONTENDERS[which].0) {
                        continue;
                    }
                    run += 1;
                    if *scenario == "order-update" {
                        db.reset_orders(args.orders).await?;
                    }
                    let figures = direct
                        .bench(
                            which,
                            scenario,
                            tasks,
                            duration,
                            &counters[which],
                            data(run),
                        )
                        .await?;
                    rounds[which].push(figures);
                }
            }
            let cost: Vec<Cost> = rounds.iter().map(|r| cost(r)).collect();
            let vs_diesel: Vec<Option<f64>> =
                rounds.iter().map(|r| paired_ratio(r, &rounds[0])).collect();
            let vs_raw: Vec<Option<f64>> =
                rounds.iter().map(|r| paired_ratio(r, &rounds[3])).collect();
            let medians: Vec<Option<Figures>> = rounds.iter_mut().map(|r| median(r)).collect();
            for (which, (_, name)) in CONTENDERS.iter().enumerate() {
                if let Some(figures) = medians[which] {
                    let row = Row {
                        scenario,
                        tasks,
                        name,
                        figures,
                        cost: cost[which],
                        round_trips: round_trips[which],
                        vs_diesel: vs_diesel[which],
                        vs_raw: vs_raw[which],
                    };
                    row.print();
                }
            }
        }
    }
    print_pgbouncer(&args, &data, &mut run).await?;
    // Close every connection before the database goes.
    drop((direct, relayed));
    tokio::time::sleep(Duration::from_millis(200)).await;
    db.drop_database().await?;

    if args.runs("memory") {
        print_memory(duration).await;
    }
    if args.runs("relay") {
        print_relay(&args).await?;
    }
    if let Some(replica) = &args.replica_url
        && args.runs("replica")
    {
        print_replica(&args, replica).await?;
    }
    Ok(())
}

/// `get` with and without the replica, on a database of its own on the
/// primary (replicated to `replica`'s server).
async fn print_replica(args: &Args, replica: &str) -> anyhow::Result<()> {
    let db = setup::BenchDb::create(&args.database_url, args.users, 0).await?;
    let replica = match (replica.rsplit_once('/'), db.url.rsplit_once('/')) {
        (Some((server, _)), Some((_, name))) => format!("{server}/{name}"),
        _ => anyhow::bail!("--replica-url must name a database: {replica}"),
    };
    setup::await_replica(&replica, args.users).await?;
    let (users, _) = db.ids().await?;
    let users = Arc::new(users);
    println!();
    println!("| get, read replica | tasks | ops/s | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let duration = Duration::from_secs_f64(args.seconds);
    for &tasks in &args.tasks {
        let mut rounds: Vec<Vec<Figures>> = vec![Vec::new(); replica_bench::MODES.len()];
        for _ in 0..args.rounds {
            let figures = replica_bench::bench(
                (&db.url, &replica),
                users.clone(),
                (tasks, args.connections),
                duration,
            )
            .await?;
            for (which, (_, figures)) in figures.into_iter().enumerate() {
                rounds[which].push(figures);
            }
        }
        for (mode, rounds) in replica_bench::MODES.iter().zip(&mut rounds) {
            if let Some(figures) = median(rounds) {
                println!(
                    "| {mode} | {tasks} | {:.0} | {:.2} | {:.2} |",
                    figures.ops_per_second,
                    figures.p50.as_secs_f64() * 1e3,
                    figures.p99.as_secs_f64() * 1e3
                );
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    db.drop_database().await
}

/// With `--pgbouncer-url`: the framework's `get`, `update` and `create` on
/// direct connections and through that transaction-pooling PgBouncer (the
/// same database, the same pool size), round by round in turn.
async fn print_pgbouncer(
    args: &Args,
    data: &dyn Fn(u32) -> Data,
    run: &mut u32,
) -> anyhow::Result<()> {
    let Some(bouncer) = args
        .pgbouncer_url
        .as_deref()
        .filter(|_| args.runs("pgbouncer"))
    else {
        return Ok(());
    };
    let url = data(0).url;
    let through = match (bouncer.rsplit_once('/'), url.rsplit_once('/')) {
        (Some((server, _)), Some((_, name))) => format!("{server}/{name}"),
        _ => anyhow::bail!("--pgbouncer-url must name a database: {bouncer}"),
    };
    let store = |url: &str, pooling| {
        storage::PgStore::new(
            url,
            storage::StoreConfig {
                max_connections: args.connections,
                deadline: Duration::from_secs(10),
                connection_timeout: Duration::from_secs(5),
                pooling,
                ..storage::StoreConfig::default()
            },
        )
    };
    let counters = Arc::new(Counters::default());
    let ways_to = |direct: &str, pooled: &str| {
        [
            framework::Framework::new(&store(direct, storage::Pooling::Session), counters.clone()),
            framework::Framework::new(
                &store(pooled, storage::Pooling::Transaction),
                counters.clone(),
            ),
        ]
    };
    let ways = ways_to(&url, &through);
    // The same two through relays that count round trips, in a pass of
    // their own.
    let relays = [
        round_trips::Relay::start(&url).await?,
        round_trips::Relay::start(&through).await?,
    ];
    let counted = ways_to(&relays[0].url, &relays[1].url);
    println!();
    println!(
        "| framework | tasks | direct ops/s | through pgbouncer ops/s | pgbouncer / direct | direct p50 ms | pgbouncer p50 ms | round trips/op direct | round trips/op pgbouncer |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let duration = Duration::from_secs_f64(args.seconds);
    for scenario in ["get", "update", "create"]
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s))
    {
        let mut round_trips = [0.0; 2];
        for (which, way) in counted.iter().enumerate() {
            *run += 1;
            let short = Duration::from_millis(300);
            let figures = bench(scenario, 1, short, &counters, way.clone(), data(*run)).await?;
            round_trips[which] = figures.round_trips_per_op;
        }
        for &tasks in &args.tasks {
            let mut rounds: [Vec<Figures>; 2] = Default::default();
            for round in 0..args.rounds {
                for offset in 0..2 {
                    let which = (offset + usize::from(round)) % 2;
                    *run += 1;
                    let way = ways[which].clone();
                    let figures = bench(scenario, tasks, duration, &counters, way, data(*run));
                    rounds[which].push(figures.await?);
                }
            }
            let ratio = paired_ratio(&rounds[1], &rounds[0]);
            let [direct, pooled] = &mut rounds;
            if let (Some(direct), Some(pooled), Some(ratio)) =
                (median(direct), median(pooled), ratio)
            {
                println!(
                    "| {scenario} | {tasks} | {:.0} | {:.0} | {ratio:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                    direct.ops_per_second,
                    pooled.ops_per_second,
                    direct.p50.as_secs_f64() * 1e3,
                    pooled.p50.as_secs_f64() * 1e3,
                    round_trips[0],
                    round_trips[1],
                );
            }
        }
    }
    Ok(())
}

/// The in-memory repository's figures, one task each.
async fn print_memory(duration: Duration) {
    println!();
    println!("| in-memory repository | tasks | ops/s | p50 µs | p99 µs |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, figures) in memory::bench(duration).await {
        println!(
            "| {name} | 1 | {:.0} | {:.1} | {:.1} |",
            figures.ops_per_second,
            figures.p50.as_secs_f64() * 1e6,
            figures.p99.as_secs_f64() * 1e6
        );
    }
}

/// The outbox relay's figures, on a database and an exchange of its own:
/// live (the relay runs while registrations store events) and a backlog
/// (10 000 events stored, then the relay started).
async fn print_relay(args: &Args) -> anyhow::Result<()> {
    println!();
    println!(
        "| relay | events | writers | events stored/s | seconds | events published/s | lag p50 ms | lag p99 ms |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, live) in [
        ("live: orders placed, one relay", true),
        ("backlog: one relay drains it", false),
    ] {
        let db = setup::BenchDb::create(&args.database_url, 0, 0).await?;
        let figures = relay_bench::bench(&db.url, &args.amqp_url, (10_000, 8), live).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        db.drop_database().await?;
        let figures = figures?;
        #[expect(clippy::cast_precision_loss, reason = "rates for a table")]
        let (rate, written) = (
            figures.events as f64 / figures.elapsed.as_secs_f64(),
            figures.events as f64 / figures.writes.as_secs_f64(),
        );
        // A backlog's events waited for the relay to start: no lag to speak of.
        let lag = |lag: Duration| {
            if live {
                format!("{:.1}", lag.as_secs_f64() * 1e3)
            } else {
                "-".to_owned()
            }
        };
        println!(
            "| {name} | {} | {} | {written:.0} | {:.1} | {rate:.0} | {} | {} |",
            figures.events,
            figures.writers,
            figures.elapsed.as_secs_f64(),
            lag(figures.lag_p50),
            lag(figures.lag_p99),
        );
    }
    Ok(())
}

/// Round trips per operation of each implementation `args` selects: one
/// task, through the relay.
async fn round_trips_of(
    relayed: &Contenders,
    args: &Args,
    db: &setup::BenchDb,
    scenario: &str,
    run: &mut u32,
    counters: &[Arc<Counters>; 4],
    data: &dyn Fn(u32) -> Data,
) -> anyhow::Result<[Option<f64>; 4]> {
    let mut round_trips = [None; 4];
    for (which, (name, _)) in CONTENDERS.iter().enumerate() {
        if !args.runs(name) {
            continue;
        }
        *run += 1;
        if scenario == "order-update" {
            db.reset_orders(args.orders).await?;
        }
        let short = Duration::from_millis(300);
        let figures = relayed
            .bench(which, scenario, 1, short, &counters[which], data(*run))
            .await?;
        round_trips[which] = Some(figures.round_trips_per_op);
    }
    Ok(round_trips)
}

/// One line of the table.
struct Row<'a> {
    scenario: &'a str,
    tasks: usize,
    name: &'a str,
    figures: Figures,
    cost: Cost,
    round_trips: Option<f64>,
    vs_diesel: Option<f64>,
    vs_raw: Option<f64>,
}

impl Row<'_> {
    fn print(&self) {
        let f = &self.figures;
        let errors = if f.errors > 0 {
            format!(" ({} errors)", f.errors)
        } else {
            String::new()
        };
        let figure = |x: Option<f64>| x.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.2}"));
        println!(
            "| {} | {} | {} | {:.0}{errors} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {:.0} | {} | {:.0} | {} | {} |",
            self.scenario,
            self.tasks,
            self.name,
            f.ops_per_second,
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3,
            f.statements_per_op,
            figure(self.round_trips),
            f.retries_per_op,
            self.cost.cpu.as_secs_f64() * 1e6,
            self.cost.server_cpu.map_or_else(
                || "n/a".to_owned(),
                |t| format!("{:.0}", t.as_secs_f64() * 1e6)
            ),
            self.cost.allocations,
            figure(self.vs_diesel),
            figure(self.vs_raw),
        );
    }
}

/// One of each implementation, on one server address.
struct Contenders {
    hand: handwritten::HandWritten,
    framework: framework::Framework,
    verified: framework::Framework,
    raw: raw::Raw,
}

impl Contenders {
    /// Each with a pool of `connections` to `url`.
    async fn on(
        url: &str,
        connections: u32,
        counters: &[Arc<Counters>; 4],
    ) -> anyhow::Result<Self> {
        let store_with = |recycling| {
            storage::PgStore::new(
                url,
                storage::StoreConfig {
                    max_connections: connections,
                    deadline: Duration::from_secs(10),
                    // The same pool wait as the hand-written pool: the bench
                    // compares costs, not fail-fast policies.
                    connection_timeout: Duration::from_secs(5),
                    recycling,
                    ..storage::StoreConfig::default()
                },
            )
        };
        Ok(Self {
            hand: handwritten::HandWritten::new(url, connections, counters[0].clone()).await?,
            framework: framework::Framework::new(
                &store_with(storage::Recycling::Fast),
                counters[1].clone(),
            ),
            verified: framework::Framework::new(
                &store_with(storage::Recycling::Verified),
                counters[2].clone(),
            ),
            raw: raw::Raw::new(url, connections as usize, counters[3].clone()).await?,
        })
    }

    /// Runs `scenario` on the implementation `CONTENDERS[which]`.
    async fn bench(
        &self,
        which: usize,
        scenario: &str,
        tasks: usize,
        duration: Duration,
        counters: &Arc<Counters>,
        data: Data,
    ) -> anyhow::Result<Figures> {
        match which {
            0 => bench(scenario, tasks, duration, counters, self.hand.clone(), data).await,
            1 => {
                bench(
                    scenario,
                    tasks,
                    duration,
                    counters,
                    self.framework.clone(),
                    data,
                )
                .await
            }
            2 => {
                bench(
                    scenario,
                    tasks,
                    duration,
                    counters,
                    self.verified.clone(),
                    data,
                )
                .await
            }
            _ => bench(scenario, tasks, duration, counters, self.raw.clone(), data).await,
        }
    }
}

/// Runs one scenario with `tasks` tasks on one implementation.
async fn bench<C: Contender>(
    scenario: &str,
    tasks: usize,
    duration: Duration,
    counters: &Arc<Counters>,
    contender: C,
    mut data: Data,
) -> anyhow::Result<Figures> {
    let pick = |ids: &Arc<Vec<Uuid>>| ids[rand::rng().random_range(0..ids.len())];
    Ok(match scenario {
        "get" => {
            measure::run(tasks, duration, counters, move |_, _| {
                let (c, id) = (contender.clone(), pick(&data.users));
                async move { c.get(id).await }
            })
            .await
        }
        "update" => {
            measure::run(tasks, duration, counters, move |_, _| {
                let (c, id) = (contender.clone(), pick(&data.users));
                async move { c.update(id).await }
            })
            .await
        }
        "update-hot" => {
            // Every successful update bumps the version by exactly one: the
            // versions gained must equal the updates that reported success.
            // A row of its own per run: hammering one row leaves a chain of
            // dead versions that would slow whoever comes next.
            let hot = data.users[data.run as usize % data.users.len()];
            let before = setup::version_of(&data.url, hot).await?;
            let figures = measure::run(tasks, duration, counters, move |_, _| {
                let c = contender.clone();
                async move { c.update(hot).await }
            })
            .await;
            let gained = setup::version_of(&data.url, hot).await? - before;
            anyhow::ensure!(
                u64::try_from(gained)? == figures.succeeded,
                "lost updates: {} reported success, the version moved by {gained}",
                figures.succeeded
            );
            figures
        }
        "create" => {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            measure::run(tasks, duration, counters, move |_, _| {
                let c = contender.clone();
                let username = format!("b{}", NEXT.fetch_add(1, Ordering::Relaxed));
                async move { c.create(Uuid::new_v4(), Uuid::now_v7(), username).await }
            })
            .await
        }
        "create-retry" => {
            // Creates first, then measures retries of those creates: same
            // token, same payload, a fresh server-assigned id.
            let mut created = Vec::new();
            for n in 0..500 {
                let (token, username) = (Uuid::new_v4(), format!("r{}_{n}", data.run));
                contender
                    .create(token, Uuid::now_v7(), username.clone())
                    .await?;
                created.push((token, username));
            }
            data.created = Arc::new(created);
            measure::run(tasks, duration, counters, move |_, _| {
                let c = contender.clone();
                let (token, username) =
                    data.created[rand::rng().random_range(0..data.created.len())].clone();
                async move { c.create(token, Uuid::now_v7(), username).await }
            })
            .await
        }
        "order-update" => {
            measure::run(tasks, duration, counters, move |_, _| {
                let (c, id) = (contender.clone(), pick(&data.orders));
                async move { c.add_line(id).await }
            })
            .await
        }
        "unit-transfer" => {
            measure::run(tasks, duration, counters, move |_, _| {
                let c = contender.clone();
                let from = rand::rng().random_range(0..data.accounts.len());
                let to =
                    (from + rand::rng().random_range(1..data.accounts.len())) % data.accounts.len();
                let (from, to) = (data.accounts[from], data.accounts[to]);
                async move { c.transfer(from, to).await }
            })
            .await
        }
        other => anyhow::bail!("unknown scenario {other}; known: {}", SCENARIOS.join(", ")),
    })
}
