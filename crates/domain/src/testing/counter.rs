//! The contract suite's own aggregate: the smallest one that has a payload
//! and a counter.

use serde::{Deserialize, Serialize};

use super::ContractSubject;
use crate::{Aggregate, Fingerprint, Version};

crate::aggregate_id!(
    /// Identifies a counter.
    pub struct CounterId;
);

/// A labelled counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Identity.
    pub id: CounterId,
    /// Set by repositories.
    pub version: Version,
    /// The create payload.
    pub label: String,
    /// Bumped by updates.
    pub value: u64,
}

impl Aggregate for Counter {
    crate::aggregate_basics!(id: CounterId, kind: "counter");

    fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.label)
    }
}

impl ContractSubject for Counter {
    fn sample(id: CounterId, seed: u64) -> Self {
        Self {
            id,
            version: Version::INITIAL,
            label: format!("counter {seed}"),
            value: 0,
        }
    }

    fn bump(&mut self) -> Result<(), super::Refused> {
        self.value += 1;
        Ok(())
    }

    fn count(&self) -> u64 {
        self.value
    }
}
