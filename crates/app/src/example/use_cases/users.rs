//! Registering users, changing their profile, removing them; each change
//! logged in the same unit of work.

use domain::example::{Action, PersonName, Profile, User, UserId, Username, register_user};
use domain::{
    Aggregate, Created, DomainError, Fingerprint, IfVersion, Page, PageRequest, Repository,
    RepositoryError, StaleVersion, StoreExt, Timestamp, Transaction, TxExt, TxToken,
};

use crate::example::ExampleStore;

/// Why a change to a user was refused. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserRefusal {
    /// The user moved past the version the caller expected.
    #[error(transparent)]
    Stale(#[from] StaleVersion),
}

impl DomainError for UserRefusal {}

/// Registers a user: stores it, rescores everyone and logs `user.created`,
/// all in one unit. A retry with the same token replays: same user, nothing
/// written twice.
pub async fn register<S: ExampleStore>(
    store: &S,
    token: TxToken,
    username: Username,
    profile: Profile,
    now: Timestamp,
) -> Result<Created<User>, RepositoryError> {
    store
        .run(|tx| {
            let newcomer =
                User::register(UserId::generate(), username.clone(), profile.clone(), now);
            Box::pin(register_user(tx, token, newcomer, now))
        })
        .await
}

/// One user.
pub async fn get<S: ExampleStore>(store: &S, id: UserId) -> Result<User, RepositoryError> {
    store.repository::<User>().get(id).await
}

/// A page of users, in id (roughly registration) order.
pub async fn list<S: ExampleStore>(
    store: &S,
    page: PageRequest<UserId>,
) -> Result<Page<User>, RepositoryError> {
    store.repository::<User>().list(page).await
}

/// Changes the given profile fields (`None` keeps one) if the user is at a
/// version `expected` accepts, and logs `user.updated`, once per `key`.
/// Returns the user as stored (by the first request with that key).
pub async fn change_profile<S: ExampleStore>(
    store: &S,
    key: TxToken,
    id: UserId,
    expected: IfVersion,
    first_name: Option<PersonName>,
    last_name: Option<PersonName>,
    now: Timestamp,
) -> Result<User, RepositoryError<UserRefusal>> {
    let request = Fingerprint::of(&("change_profile", id, &first_name, &last_name));
    let changed = store
        .run_once(key, request, |tx| {
            let change = (expected.clone(), first_name.clone(), last_name.clone());
            Box::pin(change_and_log(tx, id, change, now))
        })
        .await?;
    Ok(changed.into_inner())
}

async fn change_and_log<Tx: Transaction<User> + Transaction<Action>>(
    tx: &mut Tx,
    id: UserId,
    (expected, first, last): (IfVersion, Option<PersonName>, Option<PersonName>),
    now: Timestamp,
) -> Result<User, RepositoryError<UserRefusal>> {
    let user = tx
        .of::<User>()
        .update(id, |user| {
            expected.check(user.version())?;
            user.change_profile(first, last, now);
            Ok::<_, UserRefusal>(())
        })
        .await?
        .aggregate;
    let entry = Action::about(&user, "user.updated", now);
    tx.of::<Action>().create(TxToken::generate(), entry).await?;
    Ok(user)
}

/// Deletes the user if it is at a version `expected` accepts, and logs
/// `user.deleted`, once per `key`: a retry with that key answers as the
/// first request did, not `NotFound`.
pub async fn delete<S: ExampleStore>(
    store: &S,
    key: TxToken,
    id: UserId,
    expected: IfVersion,
    now: Timestamp,
) -> Result<(), RepositoryError<UserRefusal>> {
    let request = Fingerprint::of(&("delete_user", id));
    store
        .run_once(key, request, |tx| {
            Box::pin(delete_and_log(tx, id, expected.clone(), now))
        })
        .await?;
    Ok(())
}

async fn delete_and_log<Tx: Transaction<User> + Transaction<Action>>(
    tx: &mut Tx,
    id: UserId,
    expected: IfVersion,
    now: Timestamp,
) -> Result<(), RepositoryError<UserRefusal>> {
    let user = tx.of::<User>().get(id).await?;
    expected.check(user.version()).map_err(UserRefusal::from)?;
    tx.of::<User>().delete(id).await?;
    let entry = Action::about(&user, "user.deleted", now);
    tx.of::<Action>().create(TxToken::generate(), entry).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use domain::example::expected_score_sum;
    use domain::{Aggregate, Version};

    use super::*;
    use crate::example::use_cases::fixtures::{actions, name, profile, registered, username};
    use domain::InMemoryStore;

    #[tokio::test]
    async fn a_registration_scores_everyone_and_logs_once_even_when_retried() {
        for store in InMemoryStore::test_stores() {
            let now = Timestamp::now();
            let token = TxToken::generate();
            let ada = register(&store, token, username("ada"), profile("Ada"), now)
                .await
                .expect("register");
            assert!(ada.is_new());
            register(
                &store,
                TxToken::generate(),
                username("alan"),
                profile("Alan"),
                now,
            )
            .await
            .expect("register");

            let retried = register(&store, token, username("ada"), profile("Ada"), now)
                .await
                .expect("retry");
            assert_eq!(retried.aggregate().id(), ada.aggregate().id());
            assert!(!retried.is_new(), "a retry replays");
            let users = list(&store, PageRequest::first(10))
                .await
                .expect("list")
                .items;
            let sum: f64 = users.iter().map(|u| u.score().get()).sum();
            assert!(
                (sum - expected_score_sum(2)).abs() < 1e-9,
                "rescored once, not twice"
            );
            assert_eq!(actions(&store).await, ["user.created", "user.created"]);
        }
    }

    #[tokio::test]
    async fn a_profile_change_honours_the_expected_version_and_is_logged() {
        for store in InMemoryStore::test_stores() {
            let now = Timestamp::now();
            let id = registered(&store, "ada").await;
            let changed = change_profile(
                &store,
                TxToken::generate(),
                id,
                IfVersion::exactly(Version::INITIAL),
                Some(name("Augusta")),
                None,
                now,
            )
            .await
            .expect("change");
            assert_eq!(changed.profile().first_name.as_str(), "Augusta");
            assert_eq!(changed.version(), Version::new(2));

            let stale = change_profile(
                &store,
                TxToken::generate(),
                id,
                IfVersion::exactly(Version::INITIAL),
                Some(name("Ada")),
                None,
                now,
            )
            .await;
            assert!(
                matches!(
                    stale,
                    Err(RepositoryError::Domain(UserRefusal::Stale(StaleVersion { current })))
                        if current == Version::new(2)
                ),
                "{stale:?}"
            );
            assert_eq!(actions(&store).await, ["user.created", "user.updated"]);
        }
    }

    #[tokio::test]
    async fn a_deletion_is_logged_and_a_stale_one_changes_nothing() {
        for store in InMemoryStore::test_stores() {
            let now = Timestamp::now();
            let id = registered(&store, "ada").await;
            let stale = delete(
                &store,
                TxToken::generate(),
                id,
                IfVersion::exactly(Version::new(7)),
                now,
            )
            .await;
            assert!(matches!(
                stale,
                Err(RepositoryError::Domain(UserRefusal::Stale(_)))
            ));
            assert!(get(&store, id).await.is_ok(), "still there");

            delete(&store, TxToken::generate(), id, IfVersion::Any, now)
                .await
                .expect("delete");
            assert!(matches!(
                get(&store, id).await,
                Err(RepositoryError::NotFound { .. })
            ));
            assert_eq!(actions(&store).await, ["user.created", "user.deleted"]);
        }
    }
}
