//! The user aggregate.

use serde::{Deserialize, Serialize};

use super::profile::{PersonName, Profile};
use super::score::Score;
use super::username::Username;
use crate::{Aggregate, DomainEvent, Events, Fingerprint, Timestamp, UniqueKey, Version};

crate::aggregate_id!(
    /// Identifies a user.
    pub struct UserId;
);

/// A registered user: a unique username, a profile and a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    id: UserId,
    version: Version,
    username: Username,
    profile: Profile,
    score: Score,
    created_at: Timestamp,
    updated_at: Timestamp,
    /// What the rules recorded since the user was loaded.
    #[serde(skip)]
    events: Events,
}

impl User {
    /// The unique key on usernames (on Postgres, the constraint
    /// `users_username_key`).
    pub const USERNAME_KEY: &'static str = "username";

    /// A new user with a zero score; records `user_registered`.
    pub fn register(id: UserId, username: Username, profile: Profile, now: Timestamp) -> Self {
        let mut events = Events::default();
        events.record(
            "user_registered",
            &serde_json::json!({ "username": username.as_str() }),
        );
        Self {
            id,
            version: Version::INITIAL,
            username,
            profile,
            score: Score::ZERO,
            created_at: now,
            updated_at: now,
            events,
        }
    }

    /// Rebuilds a user from storage; no rule is checked, the parts already are.
    pub fn restore(
        id: UserId,
        version: Version,
        username: Username,
        profile: Profile,
        score: Score,
        created_at: Timestamp,
        updated_at: Timestamp,
    ) -> Self {
        Self {
            id,
            version,
            username,
            profile,
            score,
            created_at,
            updated_at,
            events: Events::default(),
        }
    }

    /// Changes the given profile fields; `None` keeps a field as it is.
    /// Returns whether anything changed (an unchanged profile still counts as
    /// a write: the version moves, so conditional clients see it).
    pub fn change_profile(
        &mut self,
        first_name: Option<PersonName>,
        last_name: Option<PersonName>,
        now: Timestamp,
    ) -> bool {
        let before = self.profile.clone();
        if let Some(first) = first_name {
            self.profile.first_name = first;
        }
        if let Some(last) = last_name {
            self.profile.last_name = last;
        }
        self.updated_at = now;
        before != self.profile
    }

    /// Applies the community rule when a newcomer joins `users_before`
    /// existing users: see [`Score::after_newcomer`].
    pub fn welcome_newcomer(&mut self, users_before: u64, now: Timestamp) {
        self.score = self.score.after_newcomer(users_before);
        self.updated_at = now;
    }

    /// The username.
    pub fn username(&self) -> &Username {
        &self.username
    }

    /// The profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The score.
    pub fn score(&self) -> Score {
        self.score
    }

    /// When the user registered.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// When the user last changed.
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
}

impl Aggregate for User {
    crate::aggregate_basics!(id: UserId, kind: "user");

    /// What a client sends to register: the username and profile.
    fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&(&self.username, &self.profile))
    }

    fn unique_keys(&self) -> Vec<UniqueKey> {
        vec![UniqueKey::new(Self::USERNAME_KEY, self.username.as_str())]
    }

    fn take_events(&mut self) -> Vec<DomainEvent> {
        self.events.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> PersonName {
        PersonName::parse(s).unwrap()
    }

    fn ada(now: Timestamp) -> User {
        let profile = Profile {
            first_name: name("Ada"),
            last_name: name("Lovelace"),
        };
        User::register(
            UserId::generate(),
            Username::parse("ada").unwrap(),
            profile,
            now,
        )
    }

    #[test]
    fn a_new_user_starts_at_zero_and_version_one() {
        let now = Timestamp::now();
        let user = ada(now);
        assert_eq!(user.score(), Score::ZERO);
        assert_eq!(user.version(), Version::INITIAL);
        assert_eq!(user.created_at(), now);
    }

    #[test]
    fn changing_one_profile_field_keeps_the_other() {
        // given
        let mut user = ada(Timestamp::now());
        // when
        let changed = user.change_profile(Some(name("Augusta")), None, Timestamp::now());
        // then
        assert!(changed);
        assert_eq!(user.profile().first_name.as_str(), "Augusta");
        assert_eq!(user.profile().last_name.as_str(), "Lovelace");
    }

    #[test]
    fn an_identical_profile_change_reports_no_change_but_touches_updated_at() {
        let created = Timestamp::from(chrono::DateTime::from_timestamp(1, 0).unwrap());
        let mut user = ada(created);
        let later = Timestamp::now();
        assert!(!user.change_profile(Some(name("Ada")), None, later));
        assert_eq!(user.updated_at(), later);
    }

    #[test]
    fn a_newcomer_recomputes_the_score() {
        // given a user with score 1 among 1 user
        let mut user = ada(Timestamp::now());
        user.welcome_newcomer(0, Timestamp::now());
        // when a second user joins
        user.welcome_newcomer(1, Timestamp::now());
        // then 1 * 1/2 + 1
        assert!((user.score().get() - 1.5).abs() < 1e-12);
    }

    #[test]
    fn the_fingerprint_ignores_server_assigned_fields() {
        let a = ada(Timestamp::now());
        let b = ada(Timestamp::now());
        assert_ne!(a.id(), b.id());
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn the_username_is_a_unique_key() {
        let user = ada(Timestamp::now());
        assert_eq!(
            user.unique_keys(),
            vec![UniqueKey::new(User::USERNAME_KEY, "ada")]
        );
    }
}
