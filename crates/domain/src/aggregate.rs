//! What the framework needs to know about an aggregate: its identity, its
//! version (owned by the repository), what a create request "was" (the
//! fingerprint that tells a retry from a token reuse) and which values it
//! holds that must be unique across all aggregates of its kind.

use std::fmt::{Debug, Display};
use std::hash::Hash;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fingerprint::Fingerprint;

/// A consistency boundary loaded, changed and stored as one unit.
///
/// The repository owns [`Aggregate::version`]: it sets it to
/// [`Version::INITIAL`] on create and bumps it by exactly one on every
/// successful update, whatever the update closure did to it.
pub trait Aggregate: Clone + Debug + Send + Sync + 'static {
    /// The typed identity; see [`aggregate_id!`](crate::aggregate_id).
    type Id: AggregateId;

    /// A stable name for this kind of aggregate, used in errors, logs and to
    /// scope transaction tokens (a token is unique per kind).
    const KIND: &'static str;

    /// This aggregate's identity. Never changes.
    fn id(&self) -> Self::Id;

    /// The version last stored (or being stored) by a repository.
    fn version(&self) -> Version;

    /// Called by repositories only, to record the version they stored.
    fn set_version(&mut self, version: Version);

    /// What the create request that made this aggregate asked for.
    ///
    /// A create retried with the same token must produce the same fingerprint;
    /// a different request must not. Include everything the caller chose and
    /// nothing the server assigned (a generated id, timestamps, the version):
    /// a retry of `POST /users` generates a new id and a new clock reading, yet
    /// it is the same request.
    fn fingerprint(&self) -> Fingerprint;

    /// Values that no two aggregates of this kind may share, such as a
    /// username, each under its key's name (`username`). Repositories
    /// reject a write that would duplicate one with
    /// [`RepositoryError::Duplicate`](crate::RepositoryError::Duplicate)
    /// naming the key.
    ///
    /// On Postgres a unique constraint named `<table>_<key>_key` enforces
    /// it: the name Postgres gives `UNIQUE (<key>)` on a column of that
    /// name. The store reports its violation under the key's name, as the
    /// in-memory store does; a constraint named otherwise is reported
    /// under its own name, which the contract suite refuses.
    fn unique_keys(&self) -> Vec<UniqueKey> {
        Vec::new()
    }

    /// The events this aggregate's rules recorded since it was loaded or
    /// created, leaving none: the repository stores them with the change
    /// (see [`Events`](crate::Events)). An aggregate that records none
    /// keeps this default.
    fn take_events(&mut self) -> Vec<crate::DomainEvent> {
        Vec::new()
    }
}

/// A uuid newtype that identifies one aggregate. Implemented by
/// [`aggregate_id!`](crate::aggregate_id).
pub trait AggregateId:
    Copy + Eq + Ord + Hash + Debug + Display + From<Uuid> + Into<Uuid> + Send + Sync + 'static
{
}

/// A unique value held by an aggregate: the key's name and the value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UniqueKey {
    /// The key's name (`username`); on Postgres, the constraint
    /// `<table>_<name>_key` enforces it.
    pub name: &'static str,
    /// The value, rendered as text.
    pub value: String,
}

/// `username "ada"`: how errors, logs and spans name a key's value.
impl Display for UniqueKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.name, self.value)
    }
}

impl UniqueKey {
    /// A unique value under the key `name`.
    pub fn new(name: &'static str, value: impl Into<String>) -> Self {
        Self {
            name,
            value: value.into(),
        }
    }
}

/// How many successful writes an aggregate has had. Exposed over HTTP as an
/// ETag so clients can make conditional writes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Version(u64);

impl Version {
    /// The version of a freshly created aggregate.
    pub const INITIAL: Self = Self(1);

    /// A version read back from storage or from a client's `If-Match`.
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The number itself.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The version the next successful write will store.
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Display::fmt(&self.0, f)
    }
}

/// The part of an [`Aggregate`] impl that is the same for every aggregate
/// whose identity and version are fields named `id` and `version`: the
/// `Id` type, `KIND`, `id()`, `version()` and `set_version()`. What is left
/// to write is what differs: the fingerprint, and unique keys if any.
///
/// ```
/// use domain::{Aggregate, Fingerprint, Version};
///
/// domain::aggregate_id!(pub struct AccountId;);
///
/// #[derive(Debug, Clone)]
/// pub struct Account { id: AccountId, version: Version, owner: String, cents: i64 }
///
/// impl Aggregate for Account {
///     domain::aggregate_basics!(id: AccountId, kind: "account");
///
///     fn fingerprint(&self) -> Fingerprint {
///         Fingerprint::of(&self.owner)
///     }
/// }
/// ```
#[macro_export]
macro_rules! aggregate_basics {
    (id: $id:ty, kind: $kind:literal $(,)?) => {
        type Id = $id;
        const KIND: &'static str = $kind;

        fn id(&self) -> $id {
            self.id
        }

        fn version(&self) -> $crate::Version {
            self.version
        }

        fn set_version(&mut self, version: $crate::Version) {
            self.version = version;
        }
    };
}

/// Declares a uuid newtype implementing [`AggregateId`], `FromStr` (with a
/// typed [`InvalidId`](crate::InvalidId) error), `Display` and serde.
///
/// ```
/// domain::aggregate_id!(
///     /// Identifies an invoice.
///     pub struct InvoiceId;
/// );
/// let id = InvoiceId::generate();
/// assert_eq!(id, id.to_string().parse().unwrap());
/// ```
#[macro_export]
macro_rules! aggregate_id {
    ($(#[$meta:meta])* $vis:vis struct $name:ident;) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis struct $name($crate::__private::Uuid);

        impl $name {
            /// A new, time-ordered (v7) id: keyset pagination by id lists
            /// aggregates roughly in creation order.
            #[must_use]
            pub fn generate() -> Self {
                Self($crate::__private::Uuid::now_v7())
            }

            /// The underlying uuid.
            pub const fn as_uuid(&self) -> $crate::__private::Uuid {
                self.0
            }
        }

        impl $crate::AggregateId for $name {}

        impl $crate::__private::serde::Serialize for $name {
            fn serialize<S>(&self, serializer: S) -> ::core::result::Result<S::Ok, S::Error>
            where
                S: $crate::__private::serde::Serializer,
            {
                $crate::__private::serde::Serialize::serialize(&self.0, serializer)
            }
        }

        impl<'de> $crate::__private::serde::Deserialize<'de> for $name {
            fn deserialize<D>(deserializer: D) -> ::core::result::Result<Self, D::Error>
            where
                D: $crate::__private::serde::Deserializer<'de>,
            {
                <$crate::__private::Uuid as $crate::__private::serde::Deserialize>::deserialize(
                    deserializer,
                )
                .map(Self)
            }
        }

        impl ::core::convert::From<$crate::__private::Uuid> for $name {
            fn from(uuid: $crate::__private::Uuid) -> Self {
                Self(uuid)
            }
        }

        impl ::core::convert::From<$name> for $crate::__private::Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Display::fmt(&self.0, f)
            }
        }

        impl ::core::str::FromStr for $name {
            type Err = $crate::InvalidId;

            fn from_str(s: &str) -> ::core::result::Result<Self, Self::Err> {
                $crate::__private::Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| $crate::InvalidId::new(stringify!($name), s))
            }
        }
    };
}

/// A string that is not a valid id. Maps to HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} must be a uuid, got {input:?}")]
pub struct InvalidId {
    kind: &'static str,
    input: String,
}

impl InvalidId {
    #[doc(hidden)]
    pub fn new(kind: &'static str, input: &str) -> Self {
        // Bound what we echo back: the input comes from a client.
        let input = input.chars().take(64).collect();
        Self { kind, input }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::aggregate_id!(
        /// Test id.
        pub(super) struct ThingId;
    );

    #[test]
    fn ids_round_trip_through_text() {
        let id = ThingId::generate();
        assert_eq!(id.to_string().parse::<ThingId>(), Ok(id));
        assert_eq!(ThingId::from(id.as_uuid()), id);
    }

    #[test]
    fn a_malformed_id_names_its_kind() {
        let err = "nope".parse::<ThingId>().unwrap_err();
        assert_eq!(err.to_string(), "ThingId must be a uuid, got \"nope\"");
    }

    #[test]
    fn generated_ids_sort_in_creation_order() {
        let first = ThingId::generate();
        let second = ThingId::generate();
        assert!(first < second);
    }

    #[test]
    fn versions_count_up_from_one() {
        assert_eq!(Version::INITIAL.get(), 1);
        assert_eq!(Version::INITIAL.next(), Version::new(2));
    }
}
