//! An account holding money for a user: the README's walk-through
//! aggregate, stored in one table.

use serde::{Deserialize, Serialize};

use super::UserId;
use crate::{Aggregate, DomainError, Fingerprint, Version};

crate::aggregate_id!(
    /// Identifies an account.
    pub struct AccountId;
);

/// A user's balance in integer cents, never negative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    id: AccountId,
    version: Version,
    owner: UserId,
    balance_cents: i64,
}

/// Why an account refused a movement. Maps to HTTP 422 (or 409 for an
/// insufficient balance: the request was fine, the state is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Amounts are positive and at most [`Account::MAX_AMOUNT`].
    #[error("an amount must be 1 to 1000000000000 cents, got {0}")]
    InvalidAmount(i64),
    /// A withdrawal larger than the balance.
    #[error("the balance is {balance} cents, less than {amount}")]
    Insufficient {
        /// The balance now.
        balance: i64,
        /// The amount asked for.
        amount: i64,
    },
    /// A deposit would take the balance past [`Account::MAX_BALANCE`].
    #[error("the balance would exceed {} cents", Account::MAX_BALANCE)]
    Full,
}

impl DomainError for AccountError {}

impl Account {
    /// The largest amount one movement may carry.
    pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
    /// The largest balance an account may hold.
    pub const MAX_BALANCE: i64 = 1_000_000_000_000_000;

    /// A new, empty account of `owner`.
    pub fn open(id: AccountId, owner: UserId) -> Self {
        Self::restore(id, Version::INITIAL, owner, 0)
    }

    /// Rebuilds an account from storage.
    pub fn restore(id: AccountId, version: Version, owner: UserId, balance_cents: i64) -> Self {
        Self {
            id,
            version,
            owner,
            balance_cents,
        }
    }

    /// Adds `amount` cents; returns the new balance.
    pub fn deposit(&mut self, amount: i64) -> Result<i64, AccountError> {
        let amount = Self::valid(amount)?;
        self.balance_cents = self
            .balance_cents
            .checked_add(amount)
            .filter(|balance| *balance <= Self::MAX_BALANCE)
            .ok_or(AccountError::Full)?;
        Ok(self.balance_cents)
    }

    /// Takes `amount` cents out; returns the new balance.
    pub fn withdraw(&mut self, amount: i64) -> Result<i64, AccountError> {
        let amount = Self::valid(amount)?;
        if amount > self.balance_cents {
            return Err(AccountError::Insufficient {
                balance: self.balance_cents,
                amount,
            });
        }
        self.balance_cents -= amount;
        Ok(self.balance_cents)
    }

    fn valid(amount: i64) -> Result<i64, AccountError> {
        if (1..=Self::MAX_AMOUNT).contains(&amount) {
            Ok(amount)
        } else {
            Err(AccountError::InvalidAmount(amount))
        }
    }

    /// Whose money it is.
    pub fn owner(&self) -> UserId {
        self.owner
    }

    /// The balance in cents.
    pub fn balance_cents(&self) -> i64 {
        self.balance_cents
    }
}

impl Aggregate for Account {
    crate::aggregate_basics!(id: AccountId, kind: "account");

    fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.owner)
    }
}

#[cfg(feature = "testing")]
impl crate::testing::ContractSubject for Account {
    fn sample(id: AccountId, seed: u64) -> Self {
        Self::open(id, UserId::from(uuid::Uuid::from_u64_pair(0, seed)))
    }

    fn bump(&mut self) -> Result<(), crate::testing::Refused> {
        self.deposit(1)
            .map(drop)
            .map_err(|_| crate::testing::Refused)
    }

    fn count(&self) -> u64 {
        self.balance_cents.unsigned_abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account_with(cents: i64) -> Account {
        let mut account = Account::open(AccountId::generate(), UserId::generate());
        if cents > 0 {
            account.deposit(cents).expect("deposit");
        }
        account
    }

    #[test]
    fn deposits_and_withdrawals_move_the_balance() {
        let mut account = account_with(500);
        assert_eq!(account.withdraw(200), Ok(300));
        assert_eq!(account.deposit(50), Ok(350));
    }

    #[test]
    fn the_balance_never_goes_negative() {
        let mut account = account_with(100);
        assert_eq!(
            account.withdraw(101),
            Err(AccountError::Insufficient {
                balance: 100,
                amount: 101
            })
        );
        assert_eq!(account.balance_cents(), 100, "nothing moved");
    }

    #[test]
    fn amounts_are_positive_and_bounded() {
        let mut account = account_with(0);
        for bad in [0, -5, Account::MAX_AMOUNT + 1] {
            assert_eq!(account.deposit(bad), Err(AccountError::InvalidAmount(bad)));
        }
        let mut full = Account::restore(
            AccountId::generate(),
            Version::INITIAL,
            UserId::generate(),
            Account::MAX_BALANCE,
        );
        assert_eq!(full.deposit(1), Err(AccountError::Full));
    }
}
