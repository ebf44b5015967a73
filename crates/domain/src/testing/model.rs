//! One model for every store: random programs run on a fresh
//! [`InMemoryStore`] and on the store under test must give the same results
//! and leave the same state.
//!
//! A program mixes repository calls (with reused ids and tokens, and
//! closures that refuse), units of work (read-write and read-only, with
//! nested parts that fail or succeed, and `replace_all`), unique keys,
//! idempotency keys, and token expiry on a manual [`Clock`]. Ids, tokens and
//! keys are drawn from a few slots, so programs collide on them.
//!
//! [`check_against_model`] runs the programs. A failure panics with the
//! seed (rerun with `MODEL_SEED=<seed>`) and the shrunk program.

use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use super::{Counter, CounterId, Ledger, LedgerId, Refused};
use crate::{
    Aggregate, BoxFuture, Clock, Fingerprint, InMemoryStore, Nested, PageRequest, Repository,
    RepositoryError, Store, StoreExt, Stores, Timestamp, Transaction, TxExt, TxToken,
};

/// How many ids of each kind, tokens and keys a program draws from.
const SLOTS: usize = 3;

/// The aggregate type a step works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One table.
    Counter,
    /// A root and a child table, with a unique `handle`.
    Ledger,
}

/// One operation on one aggregate type: as a repository call, or inside a
/// unit of work.
#[derive(Debug, Clone)]
pub enum Step {
    /// Create the aggregate in `slot` with token `token`; `seed` picks the
    /// payload (for ledgers, also the unique handle).
    Create {
        /// Which type.
        kind: Kind,
        /// Which id.
        slot: usize,
        /// Which token (shared by both types).
        token: usize,
        /// Which payload.
        seed: u8,
    },
    /// Read it.
    Get(Kind, usize),
    /// Update it with a closure that succeeds.
    Bump(Kind, usize),
    /// Update it with a closure that changes it, then refuses.
    Refuse(Kind, usize),
    /// Delete it.
    Delete(Kind, usize),
    /// Give a ledger a handle (or none): may be a `Duplicate`.
    Handle(usize, Option<u8>),
    /// Read every aggregate of the type (a page through the repository,
    /// `all` in a unit).
    All(Kind),
}

/// A part of a unit of work.
#[derive(Debug, Clone)]
pub enum Part {
    /// A step: a failed write fails the unit (`?`); a read reports.
    Step(Step),
    /// A nested unit whose failure the outer unit recovers from; `fail`
    /// makes it fail after its steps.
    Nested {
        /// Its steps.
        steps: Vec<Step>,
        /// Whether it fails at the end.
        fail: bool,
    },
    /// Make the set of ledgers exactly these `(slot, seed)`s.
    ReplaceLedgers {
        /// Which token the creates derive theirs from.
        token: usize,
        /// The desired set.
        desired: Vec<(usize, u8)>,
    },
}

/// One instruction of a program.
#[derive(Debug, Clone)]
pub enum Op {
    /// A repository call, outside any unit.
    Call(Step),
    /// A unit of work.
    Unit {
        /// Run through `read` instead of `run`.
        read_only: bool,
        /// What it does.
        parts: Vec<Part>,
        /// Whether it fails after its parts (rolling everything back).
        fail: bool,
    },
    /// Bind idempotency key `key` to request `request`.
    BindKey {
        /// Which key.
        key: usize,
        /// Which request.
        request: u8,
    },
    /// Move both clocks forward.
    Advance {
        /// By how many hours (retention is 24).
        hours: u8,
    },
    /// Purge expired tokens and keys.
    Purge,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Counter), Just(Kind::Ledger)]
}

fn step() -> impl Strategy<Value = Step> {
    let slot = 0..SLOTS;
    prop_oneof![
        4 => (kind(), slot.clone(), 0..SLOTS, 0..6_u8)
            .prop_map(|(kind, slot, token, seed)| Step::Create { kind, slot, token, seed }),
        2 => (kind(), slot.clone()).prop_map(|(k, s)| Step::Get(k, s)),
        3 => (kind(), slot.clone()).prop_map(|(k, s)| Step::Bump(k, s)),
        1 => (kind(), slot.clone()).prop_map(|(k, s)| Step::Refuse(k, s)),
        1 => (kind(), slot.clone()).prop_map(|(k, s)| Step::Delete(k, s)),
        2 => (slot, proptest::option::of(0..3_u8)).prop_map(|(s, h)| Step::Handle(s, h)),
        1 => kind().prop_map(Step::All),
    ]
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        6 => step().prop_map(Part::Step),
        2 => (proptest::collection::vec(step(), 1..4), any::<bool>())
            .prop_map(|(steps, fail)| Part::Nested { steps, fail }),
        1 => (0..SLOTS, proptest::collection::vec((0..SLOTS, 0..6_u8), 0..4))
            .prop_map(|(token, desired)| Part::ReplaceLedgers { token, desired }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => step().prop_map(Op::Call),
        5 => (
            proptest::bool::weighted(0.2),
            proptest::collection::vec(part(), 1..5),
            proptest::bool::weighted(0.2),
        )
            .prop_map(|(read_only, parts, fail)| Op::Unit { read_only, parts, fail }),
        1 => (0..SLOTS, 0..2_u8).prop_map(|(key, request)| Op::BindKey { key, request }),
        1 => prop_oneof![Just(1_u8), Just(12), Just(25)].prop_map(|hours| Op::Advance { hours }),
        1 => Just(Op::Purge),
    ]
}

/// A random program.
pub fn program() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..20)
}

/// The ids, tokens and keys behind a program's slots, fresh per run.
#[derive(Debug, Clone)]
struct Slots {
    counters: Vec<CounterId>,
    ledgers: Vec<LedgerId>,
    tokens: Vec<TxToken>,
    keys: Vec<TxToken>,
}

impl Slots {
    fn new() -> Self {
        Self {
            counters: (0..SLOTS).map(|_| CounterId::generate()).collect(),
            ledgers: (0..SLOTS).map(|_| LedgerId::generate()).collect(),
            tokens: (0..SLOTS).map(|_| TxToken::generate()).collect(),
            keys: (0..SLOTS).map(|_| TxToken::generate()).collect(),
        }
    }

    fn counter(&self, slot: usize, seed: u8) -> Counter {
        let mut counter =
            <Counter as super::ContractSubject>::sample(self.counters[slot], u64::from(seed % 2));
        counter.value = u64::from(seed);
        counter
    }

    fn ledger(&self, slot: usize, seed: u8) -> Ledger {
        let mut ledger = Ledger::open(self.ledgers[slot], &format!("owner {}", seed % 2));
        ledger.handle = match seed / 2 {
            0 => None,
            n => Some(format!("h{n}")),
        };
        ledger
    }

    fn show_counter(&self, c: &Counter) -> String {
        let slot = self.counters.iter().position(|id| *id == c.id);
        format!(
            "counter#{slot:?} {:?} v{} value {}",
            c.label,
            c.version().get(),
            c.value
        )
    }

    fn show_ledger(&self, l: &Ledger) -> String {
        let slot = self.ledgers.iter().position(|id| *id == l.id);
        format!(
            "ledger#{slot:?} {:?} {:?} v{} {:?}",
            l.owner,
            l.handle,
            l.version().get(),
            l.entries
        )
    }
}

/// An error with everything store-specific left out.
fn show_error<E: std::fmt::Debug>(error: &RepositoryError<E>) -> String {
    match error {
        RepositoryError::NotFound { kind, .. } => format!("NotFound({kind})"),
        RepositoryError::AlreadyExists { kind, .. } => format!("AlreadyExists({kind})"),
        RepositoryError::TokenMismatch { kind, .. } => format!("TokenMismatch({kind})"),
        RepositoryError::Duplicate { kind, key } => format!("Duplicate({kind}, {key})"),
        RepositoryError::Domain(e) => format!("Domain({e:?})"),
        RepositoryError::Storage(_) => "Storage".into(),
        other => format!("unexpected: {other:?}"),
    }
}

fn show<T, E: std::fmt::Debug>(
    result: &Result<T, RepositoryError<E>>,
    ok: impl FnOnce(&T) -> String,
) -> String {
    match result {
        Ok(value) => ok(value),
        Err(error) => show_error(error),
    }
}

#[expect(clippy::unnecessary_wraps, reason = "an update closure")]
fn bump_counter(c: &mut Counter) -> Result<(), Refused> {
    c.value += 1;
    Ok(())
}

#[expect(clippy::unnecessary_wraps, reason = "an update closure")]
fn bump_ledger(l: &mut Ledger) -> Result<(), Refused> {
    l.entries.push(i64::try_from(l.entries.len()).unwrap_or(0));
    Ok(())
}

/// Every store a model program runs on.
pub trait ModelStore: Store + Stores<Counter> + Stores<Ledger> {}

impl<S: Store + Stores<Counter> + Stores<Ledger>> ModelStore for S {}

/// A repository call.
async fn call<S: ModelStore>(store: &S, slots: &Slots, step: &Step) -> String {
    let counters = store.repository::<Counter>();
    let ledgers = store.repository::<Ledger>();
    let (c, l) = (&slots.counters, &slots.ledgers);
    match *step {
        Step::Create {
            kind,
            slot,
            token,
            seed,
        } => {
            let token = slots.tokens[token];
            match kind {
                Kind::Counter => show(
                    &counters.create(token, slots.counter(slot, seed)).await,
                    |made| format!("{} {}", made.is_new(), slots.show_counter(made.aggregate())),
                ),
                Kind::Ledger => show(
                    &ledgers.create(token, slots.ledger(slot, seed)).await,
                    |made| format!("{} {}", made.is_new(), slots.show_ledger(made.aggregate())),
                ),
            }
        }
        Step::Get(Kind::Counter, s) => show(&counters.get(c[s]).await, |a| slots.show_counter(a)),
        Step::Get(Kind::Ledger, s) => show(&ledgers.get(l[s]).await, |a| slots.show_ledger(a)),
        Step::Bump(Kind::Counter, s) => show(&counters.update(c[s], bump_counter).await, |u| {
            slots.show_counter(&u.aggregate)
        }),
        Step::Bump(Kind::Ledger, s) => show(&ledgers.update(l[s], bump_ledger).await, |u| {
            slots.show_ledger(&u.aggregate)
        }),
        Step::Refuse(Kind::Counter, s) => {
            show(&counters.update(c[s], refuse_counter).await, |_| {
                "written".into()
            })
        }
        Step::Refuse(Kind::Ledger, s) => show(&ledgers.update(l[s], refuse_ledger).await, |_| {
            "written".into()
        }),
        Step::Delete(Kind::Counter, s) => show(&counters.delete(c[s]).await, |()| "gone".into()),
        Step::Delete(Kind::Ledger, s) => show(&ledgers.delete(l[s]).await, |()| "gone".into()),
        Step::Handle(s, handle) => show(
            &ledgers
                .update(l[s], |ledger| set_handle(ledger, handle))
                .await,
            |u| slots.show_ledger(&u.aggregate),
        ),
        Step::All(Kind::Counter) => {
            let all = every(&counters).await;
            show(&all, |all| join(all.iter().map(|a| slots.show_counter(a))))
        }
        Step::All(Kind::Ledger) => {
            let all = every(&ledgers).await;
            show(&all, |all| join(all.iter().map(|a| slots.show_ledger(a))))
        }
    }
}

fn refuse_counter(c: &mut Counter) -> Result<(), Refused> {
    c.value += 100;
    Err(Refused)
}

fn refuse_ledger(l: &mut Ledger) -> Result<(), Refused> {
    l.entries.push(-1);
    Err(Refused)
}

#[expect(clippy::unnecessary_wraps, reason = "an update closure")]
fn set_handle(ledger: &mut Ledger, handle: Option<u8>) -> Result<(), Refused> {
    ledger.handle = handle.map(|h| format!("h{h}"));
    Ok(())
}

fn join(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(", "))
}

/// Every aggregate of a repository, through its pages.
async fn every<A: Aggregate, R: Repository<A>>(repo: &R) -> Result<Vec<A>, RepositoryError> {
    let mut all = Vec::new();
    let mut request = Some(PageRequest::first(2));
    while let Some(page) = request {
        let page = repo.list(page).await?;
        all.extend(page.items);
        request = page.next;
    }
    Ok(all)
}

/// A step inside a unit: reads report what they saw, writes fail the unit
/// (or the nested part) with their error.
async fn unit_step<Tx>(
    tx: &mut Tx,
    slots: &Slots,
    step: &Step,
) -> Result<String, RepositoryError<Refused>>
where
    Tx: Transaction<Counter> + Transaction<Ledger>,
{
    let (c, l) = (&slots.counters, &slots.ledgers);
    Ok(match *step {
        Step::Create {
            kind,
            slot,
            token,
            seed,
        } => {
            let token = slots.tokens[token];
            match kind {
                Kind::Counter => {
                    let made = Transaction::<Counter>::create(tx, token, slots.counter(slot, seed))
                        .await?;
                    format!("{} {}", made.is_new(), slots.show_counter(made.aggregate()))
                }
                Kind::Ledger => {
                    let made =
                        Transaction::<Ledger>::create(tx, token, slots.ledger(slot, seed)).await?;
                    format!("{} {}", made.is_new(), slots.show_ledger(made.aggregate()))
                }
            }
        }
        Step::Get(Kind::Counter, s) => show(&tx.of::<Counter>().get(c[s]).await, |a| {
            slots.show_counter(a)
        }),
        Step::Get(Kind::Ledger, s) => {
            show(&tx.of::<Ledger>().get(l[s]).await, |a| slots.show_ledger(a))
        }
        Step::Bump(Kind::Counter, s) => slots.show_counter(
            &tx.of::<Counter>()
                .update(c[s], bump_counter)
                .await?
                .aggregate,
        ),
        Step::Bump(Kind::Ledger, s) => {
            slots.show_ledger(&tx.of::<Ledger>().update(l[s], bump_ledger).await?.aggregate)
        }
        Step::Refuse(Kind::Counter, s) => {
            tx.of::<Counter>().update(c[s], refuse_counter).await?;
            "written".into()
        }
        Step::Refuse(Kind::Ledger, s) => {
            tx.of::<Ledger>().update(l[s], refuse_ledger).await?;
            "written".into()
        }
        Step::Delete(Kind::Counter, s) => {
            tx.of::<Counter>().delete(c[s]).await?;
            "gone".into()
        }
        Step::Delete(Kind::Ledger, s) => {
            tx.of::<Ledger>().delete(l[s]).await?;
            "gone".into()
        }
        Step::Handle(s, handle) => {
            let set = |ledger: &mut Ledger| set_handle(ledger, handle);
            slots.show_ledger(&tx.of::<Ledger>().update(l[s], set).await?.aggregate)
        }
        Step::All(Kind::Counter) => show(&tx.of::<Counter>().all().await, |all| {
            join(all.iter().map(|a| slots.show_counter(a)))
        }),
        Step::All(Kind::Ledger) => show(&tx.of::<Ledger>().all().await, |all| {
            join(all.iter().map(|a| slots.show_ledger(a)))
        }),
    })
}

/// A unit's parts, in order; what each did.
async fn unit_parts<Tx>(
    tx: &mut Tx,
    slots: Slots,
    parts: Vec<Part>,
    fail: bool,
) -> Result<Vec<String>, RepositoryError<Refused>>
where
    Tx: Transaction<Counter> + Transaction<Ledger> + Nested,
{
    let mut seen = Vec::new();
    for part in parts {
        match part {
            Part::Step(step) => seen.push(unit_step(tx, &slots, &step).await?),
            Part::Nested { steps, fail } => {
                let slots = slots.clone();
                let nested = tx
                    .nested(|tx| {
                        Box::pin(async move {
                            let mut seen = Vec::new();
                            for step in &steps {
                                seen.push(unit_step(tx, &slots, step).await?);
                            }
                            if fail {
                                return Err(RepositoryError::Domain(Refused));
                            }
                            Ok(seen)
                        })
                    })
                    .await;
                seen.push(format!(
                    "nested {}",
                    show(&nested, |steps| format!("{steps:?}"))
                ));
            }
            Part::ReplaceLedgers { token, desired } => {
                let desired = desired
                    .iter()
                    .map(|&(slot, seed)| slots.ledger(slot, seed))
                    .collect();
                let token = slots.tokens[token];
                let replaced = tx.of::<Ledger>().replace_all(token, desired).await?;
                seen.push(format!("{replaced:?}"));
            }
        }
    }
    if fail {
        return Err(RepositoryError::Domain(Refused));
    }
    Ok(seen)
}

/// A unit's closure: runs `parts` afresh on every call.
fn unit_work<Tx>(
    slots: &Slots,
    parts: &[Part],
    fail: bool,
) -> impl for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<Vec<String>, RepositoryError<Refused>>>
+ Send
+ use<Tx>
where
    Tx: Transaction<Counter> + Transaction<Ledger> + Nested,
{
    let (slots, parts) = (slots.clone(), parts.to_vec());
    move |tx| Box::pin(unit_parts(tx, slots.clone(), parts.clone(), fail))
}

/// Runs `program` on `store`, whose clock is `clock`; returns what every
/// instruction did, then the final state.
pub async fn play<S: ModelStore>(store: &S, clock: &Clock, program: &[Op]) -> Vec<String> {
    let slots = Slots::new();
    let mut seen = Vec::new();
    for op in program {
        seen.push(match op {
            Op::Call(step) => call(store, &slots, step).await,
            Op::Unit {
                read_only,
                parts,
                fail,
            } => {
                let work = unit_work::<S::Tx>(&slots, parts, *fail);
                let result = if *read_only {
                    store.read(work).await
                } else {
                    store.run(work).await
                };
                format!("unit {}", show(&result, |seen| format!("{seen:?}")))
            }
            Op::BindKey { key, request } => {
                let bound = store
                    .bind_key(slots.keys[*key], Fingerprint::of(request))
                    .await;
                show(&bound, |()| "bound".into())
            }
            Op::Advance { hours } => {
                clock.advance(Duration::from_secs(u64::from(*hours) * 3600));
                format!("+{hours} h")
            }
            Op::Purge => show(&store.purge_expired_tokens().await, |n| {
                format!("purged {n}")
            }),
        });
    }
    seen.push(call(store, &slots, &Step::All(Kind::Counter)).await);
    seen.push(call(store, &slots, &Step::All(Kind::Ledger)).await);
    // Every token and key left, counted by expiring them all.
    clock.advance(Duration::from_secs(1000 * 3600));
    seen.push(show(&store.purge_expired_tokens().await, |n| {
        format!("{n} tokens and keys were left")
    }));
    seen
}

/// Where every program starts: the same instant on both clocks.
pub fn start_of_time() -> Timestamp {
    Timestamp::from(chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("a valid instant"))
}

/// Runs `cases` random programs on an [`InMemoryStore`] and on the store
/// `fresh` returns (empty, with 24 h token retention, on a manual clock at
/// [`start_of_time`]), and asserts the same results and final states.
///
/// The seed comes from `MODEL_SEED` when set, else from the time; a failure
/// panics with it and with the shrunk program.
///
/// # Panics
/// When the stores disagree.
pub fn check_against_model<S, F, Fut>(runtime: &tokio::runtime::Runtime, cases: u32, fresh: F)
where
    S: ModelStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = (S, Clock)>,
{
    let seed: u64 = std::env::var("MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| {
                    u64::try_from(d.as_nanos() % u128::from(u64::MAX)).unwrap_or(0)
                })
        });
    let mut rng_seed = [0_u8; 32];
    rng_seed[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &rng_seed),
    );
    let fresh = std::cell::RefCell::new(fresh);
    let result = runner.run(&program(), |program| {
        let clock = Clock::manual(start_of_time());
        let model = InMemoryStore::new().with_clock(clock.clone());
        let expected = runtime.block_on(play(&model, &clock, &program));
        let actual = runtime.block_on(async {
            let made = (fresh.borrow_mut())();
            let (store, clock) = made.await;
            play(&store, &clock, &program).await
        });
        if actual != expected {
            let mut diff = String::new();
            for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
                if a != e {
                    let _ = writeln!(diff, "  #{i} model: {e}\n  #{i} store: {a}");
                }
            }
            return Err(TestCaseError::fail(diff));
        }
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, program)) => panic!(
            "the store disagrees with the in-memory model (seed {seed}; rerun with \
             MODEL_SEED={seed})\n{why}\nshrunk program:\n{program:#?}"
        ),
        Err(TestError::Abort(why)) => panic!("model check aborted (seed {seed}): {why}"),
    }
}
