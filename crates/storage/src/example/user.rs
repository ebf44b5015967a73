//! `User` <-> `users` + `user_profiles`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::Aggregate;
use domain::example::{PersonName, Profile, Score, User, UserId, Username};
use uuid::Uuid;

use super::{corrupt, ts};
use crate::cached;
use crate::mapping::{Mapped, Mapping, version_from_db, version_to_db};
use crate::schema::{user_profiles, users};
use crate::writes::Writes;

/// Maps [`User`] to the `users` and `user_profiles` tables.
#[derive(Debug, Clone, Copy)]
pub struct UserMapping;

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_default_value = false)]
struct UserRow {
    id: Uuid,
    version: i64,
    username: String,
    score: f64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = user_profiles, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_default_value = false)]
struct ProfileRow {
    user_id: Uuid,
    first_name: String,
    last_name: String,
}

impl UserRow {
    fn of(user: &User) -> Self {
        Self {
            id: user.id().into(),
            version: version_to_db(user.version()),
            username: user.username().as_str().to_owned(),
            score: user.score().get(),
            created_at: user.created_at().as_datetime(),
            updated_at: user.updated_at().as_datetime(),
        }
    }
}

impl ProfileRow {
    fn of(user: &User) -> Self {
        Self {
            user_id: user.id().into(),
            first_name: user.profile().first_name.as_str().to_owned(),
            last_name: user.profile().last_name.as_str().to_owned(),
        }
    }
}

fn restore((row, profile): (UserRow, ProfileRow)) -> QueryResult<User> {
    Ok(User::restore(
        UserId::from(row.id),
        version_from_db(row.version),
        Username::parse(&row.username).map_err(|e| corrupt("username", e))?,
        Profile {
            first_name: PersonName::parse(&profile.first_name)
                .map_err(|e| corrupt("first name", e))?,
            last_name: PersonName::parse(&profile.last_name)
                .map_err(|e| corrupt("last name", e))?,
        },
        Score::new(row.score).map_err(|e| corrupt("score", e))?,
        ts(row.created_at),
        ts(row.updated_at),
    ))
}

impl Mapping for UserMapping {
    type Aggregate = User;
    const PRIMARY_KEY: &'static str = "users_pkey";

    async fn load(conn: &AsyncPgConnection, id: UserId) -> QueryResult<Option<User>> {
        let row: Option<(UserRow, ProfileRow)> = cached(
            users::table
                .inner_join(user_profiles::table)
                .filter(users::id.eq(id.as_uuid()))
                .select((UserRow::as_select(), ProfileRow::as_select()))
                .limit(1),
        )
        .get_result(&mut &*conn)
        .await
        .optional()?;
        row.map(restore).transpose()
    }

    /// By `username`, its one unique key.
    async fn load_by(
        conn: &AsyncPgConnection,
        key: &domain::UniqueKey,
    ) -> QueryResult<Option<User>> {
        if key.name != User::USERNAME_KEY {
            return Ok(None);
        }
        let row: Option<(UserRow, ProfileRow)> = cached(
            users::table
                .inner_join(user_profiles::table)
                .filter(users::username.eq(&key.value))
                .select((UserRow::as_select(), ProfileRow::as_select()))
                .limit(1),
        )
        .get_result(&mut &*conn)
        .await
        .optional()?;
        row.map(restore).transpose()
    }

    async fn load_page(
        conn: &AsyncPgConnection,
        after: Option<UserId>,
        limit: i64,
    ) -> QueryResult<Vec<User>> {
        let mut query = users::table
            .inner_join(user_profiles::table)
            .select((UserRow::as_select(), ProfileRow::as_select()))
            .order(users::id)
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            query = query.filter(users::id.gt(after.as_uuid()));
        }
        let rows: Vec<(UserRow, ProfileRow)> = query.load(&mut &*conn).await?;
        rows.into_iter().map(restore).collect()
    }

    fn insert<'a>(writes: &mut Writes<'a>, user: &'a User) {
        writes.root(cached(
            diesel::insert_into(users::table).values(UserRow::of(user)),
        ));
        writes.child(cached(
            diesel::insert_into(user_profiles::table).values(ProfileRow::of(user)),
        ));
    }

    /// The profile changes seldom: most updates write the `users` row
    /// alone, in one statement.
    fn update<'a>(writes: &mut Writes<'a>, old: &'a User, new: &'a User) {
        let id: Uuid = new.id().into();
        writes.root(cached(
            diesel::update(
                users::table
                    .filter(users::id.eq(id))
                    .filter(users::version.eq(version_to_db(old.version()))),
            )
            .set((
                users::version.eq(version_to_db(new.version())),
                users::username.eq(new.username().as_str()),
                users::score.eq(new.score().get()),
                users::updated_at.eq(new.updated_at().as_datetime()),
            )),
        ));
        if old.profile() != new.profile() {
            writes.child(cached(diesel::update(user_profiles::table.find(id)).set((
                user_profiles::first_name.eq(new.profile().first_name.as_str()),
                user_profiles::last_name.eq(new.profile().last_name.as_str()),
            ))));
        }
    }

    async fn load_many(conn: &AsyncPgConnection, ids: &[UserId]) -> QueryResult<Vec<User>> {
        let ids: Vec<Uuid> = ids.iter().map(UserId::as_uuid).collect();
        let rows: Vec<(UserRow, ProfileRow)> = users::table
            .inner_join(user_profiles::table)
            .filter(users::id.eq_any(ids))
            .select((UserRow::as_select(), ProfileRow::as_select()))
            .load(&mut &*conn)
            .await?;
        rows.into_iter().map(restore).collect()
    }

    /// One statement for every root row (and, pipelined, one for the
    /// profiles that changed), however many users: a batch rule such as the
    /// score recompute costs one round trip.
    fn update_many<'a>(writes: &mut Writes<'a>, pairs: &'a [(User, User)]) {
        use diesel::sql_types::{Array, BigInt, Double, Text, Timestamptz};
        if pairs.is_empty() {
            return;
        }
        let news = pairs.iter().map(|(_, new)| UserRow::of(new));
        let (mut ids, mut versions, mut usernames, mut scores, mut updated) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for row in news {
            ids.push(row.id);
            versions.push(row.version);
            usernames.push(row.username);
            scores.push(row.score);
            updated.push(row.updated_at);
        }
        let old_versions: Vec<i64> = pairs
            .iter()
            .map(|(old, _)| version_to_db(old.version()))
            .collect();
        let roots = diesel::sql_query(
            "UPDATE users AS u \
             SET version = v.version, username = v.username, score = v.score, updated_at = v.updated_at \
             FROM unnest($1::uuid[], $2::int8[], $3::int8[], $4::text[], $5::float8[], $6::timestamptz[]) \
                  AS v(id, old_version, version, username, score, updated_at) \
             WHERE u.id = v.id AND u.version = v.old_version",
        )
        .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
        .bind::<Array<BigInt>, _>(old_versions)
        .bind::<Array<BigInt>, _>(versions)
        .bind::<Array<Text>, _>(usernames)
        .bind::<Array<Double>, _>(scores)
        .bind::<Array<Timestamptz>, _>(updated);
        writes.root(cached(roots));

        let changed: Vec<ProfileRow> = pairs
            .iter()
            .filter(|(old, new)| old.profile() != new.profile())
            .map(|(_, new)| ProfileRow::of(new))
            .collect();
        if changed.is_empty() {
            return;
        }
        let (user_ids, (first, last)): (Vec<Uuid>, (Vec<String>, Vec<String>)) = changed
            .into_iter()
            .map(|p| (p.user_id, (p.first_name, p.last_name)))
            .unzip();
        let profiles = diesel::sql_query(
            "UPDATE user_profiles AS p SET first_name = v.first_name, last_name = v.last_name \
             FROM unnest($1::uuid[], $2::text[], $3::text[]) AS v(user_id, first_name, last_name) \
             WHERE p.user_id = v.user_id",
        )
        .bind::<Array<diesel::sql_types::Uuid>, _>(user_ids)
        .bind::<Array<Text>, _>(first)
        .bind::<Array<Text>, _>(last);
        writes.child(cached(profiles));
    }

    fn delete(writes: &mut Writes<'_>, id: UserId) {
        writes.root(cached(diesel::delete(users::table.find(id.as_uuid()))));
    }
}

impl Mapped for User {
    type Mapping = UserMapping;
}
