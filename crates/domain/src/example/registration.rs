//! Registering a user: the use-case that touches every user at once.

use super::{Action, User};
use crate::{Created, RepositoryError, Timestamp, Transaction, TxExt, TxToken};

/// Registers `newcomer` inside a unit of work: stores it, rescores every
/// existing user by the community rule ([`User::welcome_newcomer`], with
/// `n` = users before the newcomer) in one batched write, gives the newcomer
/// its starting score, and appends a `user.created` action. Run it in one
/// unit so that all of it happens or none.
///
/// A retry of a request (same `token`, same username and profile, even with
/// another fresh id) returns the user the first request registered as
/// [`Created::Replayed`], and writes nothing: the token says the work is
/// done.
pub async fn register_user<Tx>(
    tx: &mut Tx,
    token: TxToken,
    newcomer: User,
    now: Timestamp,
) -> Result<Created<User>, RepositoryError>
where
    Tx: Transaction<User> + Transaction<Action>,
{
    let existing = tx.of::<User>().all().await?;
    let users_before = existing.len() as u64;
    let mut newcomer = newcomer;
    newcomer.welcome_newcomer(users_before, now);
    let created = tx.of::<User>().create(token, newcomer).await?;
    let Created::New(stored) = &created else {
        return Ok(created);
    };
    let rescored = existing
        .into_iter()
        .map(|mut user| {
            user.welcome_newcomer(users_before, now);
            user
        })
        .collect();
    tx.of::<User>().save_all(rescored).await?;
    tx.of::<Action>()
        .create(
            token.derive("user.created"),
            Action::about(stored, "user.created", now),
        )
        .await?;
    Ok(created)
}

/// The sum of all scores after `users` registrations, whatever their
/// order: what [`register_user`] must keep true under concurrency.
pub fn expected_score_sum(users: u64) -> f64 {
    (1..=users).fold(0.0, |sum, k| {
        #[expect(
            clippy::cast_precision_loss,
            reason = "user counts stay far below 2^52"
        )]
        let (before, k) = ((k - 1) as f64, k as f64);
        sum * before / k + k
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_user_scores_one_and_two_users_score_two_and_a_half() {
        assert!((expected_score_sum(1) - 1.0).abs() < 1e-12);
        // the first is rescored 1 * 1/2 + 1 = 1.5, the second starts at 1
        assert!((expected_score_sum(2) - 2.5).abs() < 1e-12);
    }
}
