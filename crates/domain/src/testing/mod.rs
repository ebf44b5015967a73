//! The repository contract suite, for every [`Repository`](crate::Repository)
//! implementation's tests (enable the `testing` feature as a dev-dependency).
//!
//! [`contract`] holds one async function per rule of the contract, generic
//! over the repository and over any [`ContractSubject`] aggregate;
//! [`contract_suite!`](crate::contract_suite) turns them into one
//! `#[tokio::test]` each for a given repository.

#![expect(
    clippy::missing_panics_doc,
    reason = "contract checks are tests: they panic on a broken rule"
)]

mod contract_create;
mod contract_events;
mod contract_keyed;
mod contract_lock;
mod contract_rw;
mod contract_unit;
mod counter;
mod ledger;
pub mod model;
mod subject;

/// Every contract check, one async function per rule.
pub mod contract {
    pub use super::contract_create::*;
    pub use super::contract_events::*;
    pub use super::contract_keyed::*;
    pub use super::contract_lock::*;
    pub use super::contract_rw::*;
    pub use super::contract_unit::*;
}
pub use contract_unit::TestStore;
pub use counter::{Counter, CounterId};
pub use ledger::{Ledger, LedgerId};
pub use subject::{ContractSubject, Refused};

/// Generates one `#[tokio::test]` per contract rule in a module `$name`, each
/// on the repository that `$make` builds (it may `.await`). The repository
/// must be `Clone + 'static` (clones share data) and may already hold
/// aggregates: the checks only look at the ones they create.
///
/// ```ignore
/// domain::contract_suite!(counters_in_memory, Counter, InMemoryRepository::<Counter>::new());
/// ```
#[macro_export]
macro_rules! contract_suite {
    ($name:ident, $aggregate:ty, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $crate::contract_suite!(@cases $aggregate, $make;
                create_then_get_returns_it,
                create_stores_the_initial_version,
                retried_create_returns_the_stored_aggregate,
                retry_with_a_new_server_assigned_id_returns_the_first,
                other_token_on_an_existing_id_is_already_exists,
                token_reused_for_another_payload_is_a_mismatch,
                retry_after_delete_is_not_found,
                racing_creates_with_one_token_store_one,
                samples_sharing_unique_values_are_refused_under_the_declared_key,
                unknown_ids_are_not_found,
                get_by_finds_the_holder_of_each_declared_key,
                update_by_changes_the_holder_of_each_declared_key,
                update_returns_the_closure_output_and_bumps_the_version,
                closure_error_writes_nothing,
                closure_panic_writes_nothing_and_propagates,
                retried_closure_sees_fresh_state,
                delete_removes,
                list_pages_through_everything_in_id_order,
                concurrent_updates_lose_nothing,
            );
        }
    };
    (@cases $aggregate:ty, $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let repo = $make;
                $crate::testing::contract::$case::<$aggregate, _>(repo).await;
            }
        )+
    };
}

/// Generates one `#[tokio::test]` per unit-of-work rule in a module `$name`,
/// each on the store that `$make` builds (it may `.await`): a
/// [`TestStore`], holding no counters or ledgers yet.
#[macro_export]
macro_rules! unit_of_work_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $crate::unit_of_work_suite!(@cases $make;
                a_unit_commits_all_of_its_writes,
                a_unit_builds_on_its_own_updates,
                a_taken_unique_value_fails_its_update_inside_a_unit,
                a_failing_unit_writes_nothing,
                concurrent_units_are_serializable,
                a_retried_unit_writes_nothing_twice,
                a_recovered_nested_failure_keeps_the_rest,
                an_unrecovered_nested_failure_rolls_back_everything,
                replacing_a_set_shows_readers_old_or_new_never_a_mix,
                a_read_unit_refuses_writes,
                writes_after_a_recovered_nested_failure_roll_back_with_the_unit,
                a_repository_call_inside_a_unit_is_refused,
                young_tokens_survive_a_purge,
                events_are_stored_with_their_change_once,
                refused_and_rerun_closures_record_nothing_extra,
                a_units_events_commit_and_roll_back_with_it,
                a_consumer_handles_each_event_once,
                a_unit_finds_an_aggregate_by_its_key,
                a_keyed_unit_applies_once_and_replays_its_first_answer,
                a_failed_keyed_unit_leaves_its_key_unused,
                concurrent_units_under_one_key_apply_once,
            );
        }
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $make;
                $crate::testing::contract::$case(store).await;
            }
        )+
    };
}

/// Generates one `#[tokio::test]` per keyed-lock rule in a module `$name`;
/// `$make` builds (and may `.await`) a `(locks, counter repository)` pair
/// on the same store, whose holds expire after 300 ms.
#[macro_export]
macro_rules! exclusive_access_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_key_admits_one_holder_at_a_time() {
                $crate::testing::contract::a_key_admits_one_holder_at_a_time($make).await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_expired_hold_is_lost_and_its_holder_told() {
                $crate::testing::contract::an_expired_hold_is_lost_and_its_holder_told($make).await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_holder_that_polls_still_loses_the_key_at_the_bound() {
                $crate::testing::contract::a_holder_that_polls_still_loses_the_key_at_the_bound($make)
                    .await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn shared_holders_coexist_and_queue_behind_a_waiting_writer() {
                $crate::testing::contract::shared_holders_coexist_and_queue_behind_a_waiting_writer($make)
                    .await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_held_key_times_out_others_and_a_dropped_guard_frees_it() {
                $crate::testing::contract::a_held_key_times_out_others_and_a_dropped_guard_frees_it($make)
                    .await;
            }
        }
    };
}
