//! Accounts: opening one for a user, depositing, and moving money between
//! two accounts in one unit of work.

use domain::example::{Account, AccountError, AccountId, User, UserId};
use domain::{
    Created, DomainError, Fingerprint, Repository, RepositoryError, StoreExt, Transaction, TxExt,
    TxToken,
};

use crate::example::ExampleStore;

/// Why an account use case refused. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountRefusal {
    /// An account rule said no.
    #[error(transparent)]
    Rule(#[from] AccountError),
    /// The account would belong to a user that does not exist.
    #[error("no user {0}")]
    UnknownUser(UserId),
    /// A transfer from an account to itself.
    #[error("a transfer needs two different accounts")]
    SameAccount,
}

impl DomainError for AccountRefusal {}

/// Opens an empty account for an existing user; a retry with the same
/// token replays.
pub async fn open<S: ExampleStore>(
    store: &S,
    token: TxToken,
    owner: UserId,
) -> Result<Created<Account>, RepositoryError<AccountRefusal>> {
    store
        .run(|tx| Box::pin(open_for_user(tx, token, owner)))
        .await
}

async fn open_for_user<Tx: Transaction<User> + Transaction<Account>>(
    tx: &mut Tx,
    token: TxToken,
    owner: UserId,
) -> Result<Created<Account>, RepositoryError<AccountRefusal>> {
    if let Err(RepositoryError::NotFound { .. }) = tx.of::<User>().get(owner).await {
        return Err(RepositoryError::Domain(AccountRefusal::UnknownUser(owner)));
    }
    let account = Account::open(AccountId::generate(), owner);
    Ok(tx.of::<Account>().create(token, account).await?)
}

/// One account.
pub async fn get<S: ExampleStore>(store: &S, id: AccountId) -> Result<Account, RepositoryError> {
    store.repository::<Account>().get(id).await
}

/// Adds `amount` cents, once per `key`; returns the account as stored
/// (by the first request with that key).
pub async fn deposit<S: ExampleStore>(
    store: &S,
    key: TxToken,
    id: AccountId,
    amount: i64,
) -> Result<Account, RepositoryError<AccountRefusal>> {
    let request = Fingerprint::of(&("deposit", id, amount));
    let deposited = store
        .run_once(key, request, |tx| {
            Box::pin(async move {
                let updated = tx
                    .of::<Account>()
                    .update(id, |a| a.deposit(amount).map_err(AccountRefusal::Rule))
                    .await?;
                Ok(updated.aggregate)
            })
        })
        .await?;
    Ok(deposited.into_inner())
}

/// Moves `amount` cents from one account to another, both or neither,
/// once per `key`. Returns both accounts as stored (by the first request
/// with that key), `from` first.
pub async fn transfer<S: ExampleStore>(
    store: &S,
    key: TxToken,
    from: AccountId,
    to: AccountId,
    amount: i64,
) -> Result<(Account, Account), RepositoryError<AccountRefusal>> {
    if from == to {
        return Err(RepositoryError::Domain(AccountRefusal::SameAccount));
    }
    let request = Fingerprint::of(&("transfer", from, to, amount));
    let moved = store
        .run_once(key, request, |tx| {
            Box::pin(move_money(tx, from, to, amount))
        })
        .await?;
    Ok(moved.into_inner())
}

async fn move_money<Tx: Transaction<Account>>(
    tx: &mut Tx,
    from: AccountId,
    to: AccountId,
    amount: i64,
) -> Result<(Account, Account), RepositoryError<AccountRefusal>> {
    let mut accounts = tx.of::<Account>();
    let paid = accounts
        .update(from, |a| a.withdraw(amount).map_err(AccountRefusal::Rule))
        .await?;
    let credited = accounts
        .update(to, |a| a.deposit(amount).map_err(AccountRefusal::Rule))
        .await?;
    Ok((paid.aggregate, credited.aggregate))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use domain::{Aggregate, InMemoryStore, Simulation};

    use super::*;
    use crate::example::use_cases::fixtures::registered;

    async fn funded(store: &InMemoryStore, owner: &str, cents: i64) -> AccountId {
        let owner = registered(store, owner).await;
        let id = open(store, TxToken::generate(), owner)
            .await
            .expect("open")
            .aggregate()
            .id();
        deposit(store, TxToken::generate(), id, cents)
            .await
            .expect("deposit");
        id
    }

    #[tokio::test]
    async fn an_account_needs_an_existing_user() {
        for store in InMemoryStore::test_stores() {
            let refused = open(&store, TxToken::generate(), UserId::generate()).await;
            assert!(matches!(
                refused,
                Err(RepositoryError::Domain(AccountRefusal::UnknownUser(_)))
            ));
        }
    }

    #[tokio::test]
    async fn a_transfer_moves_money_both_ways_or_not_at_all() {
        for store in InMemoryStore::test_stores() {
            let (a, b) = (
                funded(&store, "ada", 500).await,
                funded(&store, "alan", 100).await,
            );
            let (from, to) = transfer(&store, TxToken::generate(), a, b, 200)
                .await
                .expect("transfer");
            assert_eq!((from.balance_cents(), to.balance_cents()), (300, 300));

            let refused = transfer(&store, TxToken::generate(), b, a, 301).await;
            assert!(matches!(
                refused,
                Err(RepositoryError::Domain(AccountRefusal::Rule(
                    AccountError::Insufficient { .. }
                )))
            ));
            let same = transfer(&store, TxToken::generate(), a, a, 1).await;
            assert!(matches!(
                same,
                Err(RepositoryError::Domain(AccountRefusal::SameAccount))
            ));
            let balances = (get(&store, a).await.unwrap(), get(&store, b).await.unwrap());
            assert_eq!(
                (balances.0.balance_cents(), balances.1.balance_cents()),
                (300, 300)
            );
        }
    }

    /// A deposit that sends a receipt from inside its update closure: the
    /// mistake the simulation is there to catch. Postgres runs the closure
    /// again when a concurrent write got there first, and every run sends.
    async fn deposit_sending_receipts(store: &InMemoryStore, id: AccountId, sent: &AtomicU32) {
        store
            .repository::<Account>()
            .update(id, |account| {
                sent.fetch_add(1, Ordering::Relaxed); // impure: do not copy
                account.deposit(100)
            })
            .await
            .expect("deposit");
    }

    /// What a test of that use case asserts: one deposit, one receipt.
    async fn one_receipt_per_deposit(store: InMemoryStore) -> Result<(), String> {
        let id = funded(&store, "ada", 1).await;
        let sent = AtomicU32::new(0);
        deposit_sending_receipts(&store, id, &sent).await;
        match sent.into_inner() {
            1 => Ok(()),
            n => Err(format!("{n} receipts for one deposit")),
        }
    }

    /// Kept on purpose: the impure deposit above passes on the plain store
    /// and fails under the simulation, the same way for the same seed.
    #[tokio::test]
    async fn an_impure_closure_passes_in_memory_and_fails_under_simulation() {
        assert_eq!(one_receipt_per_deposit(InMemoryStore::new()).await, Ok(()));
        let seed = Simulation::seed(Simulation::TEST_SEEDS[2]);
        let failed = one_receipt_per_deposit(InMemoryStore::simulated(seed)).await;
        assert_eq!(failed, Err("3 receipts for one deposit".to_owned()));
        let again = one_receipt_per_deposit(InMemoryStore::simulated(seed)).await;
        assert_eq!(again, failed, "a seed replays the same run");
    }
}
