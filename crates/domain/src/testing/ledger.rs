//! The contract suite's second aggregate: a root with child rows (on
//! Postgres, two tables) and an optional unique value.

use serde::{Deserialize, Serialize};

use super::ContractSubject;
use crate::{Aggregate, DomainEvent, Events, Fingerprint, UniqueKey, Version};

crate::aggregate_id!(
    /// Identifies a ledger.
    pub struct LedgerId;
);

/// An owner's list of entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Identity.
    pub id: LedgerId,
    /// Set by repositories.
    pub version: Version,
    /// The create payload.
    pub owner: String,
    /// A value no two ledgers share, when set.
    pub handle: Option<String>,
    /// Child rows, in order.
    pub entries: Vec<i64>,
    /// What [`Ledger::open`] and [`Ledger::append`] recorded.
    #[serde(skip)]
    pub events: Events,
}

impl Ledger {
    /// The unique key on handles (on Postgres, the constraint
    /// `ledgers_handle_key`).
    pub const HANDLE_KEY: &'static str = "handle";

    /// An empty ledger of `owner`; records `ledger_opened`.
    pub fn open(id: LedgerId, owner: &str) -> Self {
        let mut events = Events::default();
        events.record("ledger_opened", &serde_json::json!({ "owner": owner }));
        Self {
            id,
            version: Version::INITIAL,
            owner: owner.to_owned(),
            handle: None,
            entries: Vec::new(),
            events,
        }
    }

    /// Appends an entry; records `entry_appended`.
    pub fn append(&mut self, amount: i64) {
        self.entries.push(amount);
        self.events
            .record("entry_appended", &serde_json::json!({ "amount": amount }));
    }
}

impl Aggregate for Ledger {
    crate::aggregate_basics!(id: LedgerId, kind: "ledger");

    fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&(&self.owner, &self.handle))
    }

    fn unique_keys(&self) -> Vec<UniqueKey> {
        self.handle
            .iter()
            .map(|handle| UniqueKey::new(Self::HANDLE_KEY, handle.clone()))
            .collect()
    }

    fn take_events(&mut self) -> Vec<DomainEvent> {
        self.events.take()
    }
}

impl ContractSubject for Ledger {
    fn sample(id: LedgerId, seed: u64) -> Self {
        Self {
            handle: Some(format!("handle {seed}")),
            ..Self::open(id, &format!("owner {seed}"))
        }
    }

    fn bump(&mut self) -> Result<(), super::Refused> {
        self.append(1);
        Ok(())
    }

    fn count(&self) -> u64 {
        self.entries.len() as u64
    }
}
