//! `Repository` on Postgres, for any aggregate with a [`Mapping`].

use std::marker::PhantomData;

use std::convert::Infallible;

use domain::{
    Aggregate, Created, Page, PageRequest, Repository, RepositoryError, StoredEvent, TxToken,
    Updated, Version,
};

use crate::mapping::Mapping;
use crate::metrics::Op;
use crate::ops;
use crate::retry::{Fail, Retry, Target, within_deadline};
use crate::store::PgStore;

/// The Postgres repository of the aggregate `M` maps. Cheap to clone.
pub struct PgRepository<M> {
    store: PgStore,
    mapping: PhantomData<fn() -> M>,
}

impl<M> Clone for PgRepository<M> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            mapping: PhantomData,
        }
    }
}

impl<M> std::fmt::Debug for PgRepository<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRepository")
            .field("store", &self.store)
            .finish()
    }
}

type Agg<M> = <M as Mapping>::Aggregate;

/// What an operation on `M`'s aggregate `id` works on.
pub(crate) fn target<M: Mapping>(id: impl std::fmt::Display) -> Target {
    Target {
        kind: Agg::<M>::KIND,
        id: id.to_string(),
        primary_key: M::PRIMARY_KEY,
    }
}
type IdOf<M> = <Agg<M> as Aggregate>::Id;

impl<M: Mapping> PgRepository<M> {
    /// The repository of `M`'s aggregate on `store`, through mapping `M`.
    /// [`PgStore::repository`] is the usual way, by aggregate type; this
    /// one picks the mapping (a test may wrap one to inject faults, say).
    pub fn new(store: PgStore) -> Self {
        Self {
            store,
            mapping: PhantomData,
        }
    }

    fn retry(&self, id: impl std::fmt::Display) -> Retry<'_> {
        Retry {
            target: target::<M>(id),
            config: self.store.config(),
            attempts: 1,
        }
    }

    /// What an operation is measured and traced as.
    fn span(op: &'static str, id: impl std::fmt::Display) -> (Op, tracing::Span) {
        let kind = Agg::<M>::KIND;
        (
            Op { kind, op },
            tracing::debug_span!("repository", op, kind, id = %id),
        )
    }

    /// Passes `done` through, after noting a write's log position when it
    /// succeeded (`causality`: only with a replica, inside a scope).
    async fn noted<T, E>(
        &self,
        done: Result<T, RepositoryError<E>>,
    ) -> Result<T, RepositoryError<E>> {
        if done.is_ok() {
            self.store.note_write().await;
        }
        done
    }

    async fn try_get(&self, id: IdOf<M>) -> Result<Agg<M>, Fail<Infallible>> {
        let mut conn = self.store.read_connection().await.map_err(Fail::Done)?;
        ops::load::<M, _>(&mut conn, self.store.sessions(), id).await
    }

    /// One attempt. `commit_lost` remembers an earlier attempt of the same
    /// call whose COMMIT reply was lost: if that commit landed, this attempt
    /// finds the token it claimed, and the aggregate is new to the caller,
    /// not a replay of another request.
    async fn try_create(
        &self,
        token: TxToken,
        aggregate: &Agg<M>,
        events: &[StoredEvent],
        commit_lost: &mut bool,
    ) -> Result<Created<Agg<M>>, Fail<Infallible>> {
        let mut conn = self.store.connection().await.map_err(Fail::Done)?;
        let now = self.store.config().clock.now();
        match ops::create::<M, _>(
            &mut conn,
            self.store.sessions(),
            token,
            aggregate,
            events,
            now,
        )
        .await
        {
            Err(Fail::ReplyLost(error)) => {
                *commit_lost = true;
                Err(Fail::ReplyLost(error))
            }
            Ok(Created::Replayed(stored)) if *commit_lost && stored.id() == aggregate.id() => {
                Ok(Created::New(stored))
            }
            other => other,
        }
    }

    /// One attempt. `unsettled` remembers the version an earlier attempt
    /// of the same call wrote over when its reply was lost.
    async fn try_update<R, E>(
        &self,
        id: IdOf<M>,
        f: &mut (impl FnMut(&mut Agg<M>) -> Result<R, E> + Send),
        unsettled: &mut Option<Version>,
    ) -> Result<Updated<Agg<M>, R>, Fail<E>> {
        let mut conn = self.store.connection().await.map_err(Fail::Done)?;
        let now = self.store.config().clock.now();
        ops::update::<M, R, E>(&mut conn, self.store.sessions(), id, f, unsettled, now).await
    }

    /// One attempt of an update by a unique key: the read by key is the
    /// update's load (one round trip), then the row's turn, then the write.
    async fn try_update_by<R, E>(
        &self,
        key: &domain::UniqueKey,
        f: &mut (impl FnMut(&mut Agg<M>) -> Result<R, E> + Send),
        unsettled: &mut Option<Version>,
    ) -> Result<Updated<Agg<M>, R>, Fail<E>> {
        let sessions = self.store.sessions();
        let old = {
            let mut conn = self.store.connection().await.map_err(Fail::Done)?;
            ops::load_by::<M, E>(&mut conn, sessions, key).await?
        };
        // Without a connection while it waits, as `update` does.
        let row = crate::write_order::row_key(Agg::<M>::KIND, old.id());
        let _turn = self.store.inner.write_claims.take(&row).await;
        let mut conn = self.store.connection().await.map_err(Fail::Done)?;
        let now = self.store.config().clock.now();
        ops::update_loaded::<M, R, E>(&mut conn, sessions, old, f, unsettled, now).await
    }

    async fn try_delete(&self, id: IdOf<M>) -> Result<(), Fail<Infallible>> {
        let mut conn = self.store.connection().await.map_err(Fail::Done)?;
        ops::delete::<M, _>(&mut conn, self.store.sessions(), id).await
    }

    async fn try_events(&self, id: IdOf<M>) -> Result<Vec<StoredEvent>, Fail<Infallible>> {
        let mut conn = self.store.read_connection().await.map_err(Fail::Done)?;
        let kind = Agg::<M>::KIND;
        Ok(self
            .store
            .sessions()
            .alone(&mut conn, move |c| {
                Box::pin(crate::outbox::of(c, kind, id.into()))
            })
            .await?)
    }

    async fn try_list(&self, page: PageRequest<IdOf<M>>) -> Result<Vec<Agg<M>>, Fail<Infallible>> {
        let limit = i64::try_from(page.limit()).unwrap_or(i64::MAX);
        let mut conn = self.store.read_connection().await.map_err(Fail::Done)?;
        let after = page.cursor();
        Ok(self
            .store
            .sessions()
            .alone(&mut conn, move |c| Box::pin(M::load_page(c, after, limit)))
            .await?)
    }
}

/// Runs `$attempt` (evaluated afresh for every attempt) in the operation's
/// retry loop, under its deadline. A macro, not a function taking a
/// closure: a generic async closure inside these `Send` futures does not
/// compile on stable Rust (E0477).
macro_rules! retrying {
    ($repo:ident, $op:literal, $id:expr, $attempt:expr) => {
        within_deadline($repo.store.config(), Self::span($op, &$id), async {
            domain::__private::refuse_inside_unit(Agg::<M>::KIND)?;
            // Made at the first failure: its target names the id as text.
            let mut retry = None;
            loop {
                match $attempt.await {
                    Ok(value) => return Ok(value),
                    Err(failure) => {
                        let retry = retry.get_or_insert_with(|| $repo.retry(&$id));
                        retry.after(failure).await?
                    }
                }
            }
        })
        .await
    };
}

impl<M: Mapping> Repository<Agg<M>> for PgRepository<M> {
    async fn create(
        &self,
        token: TxToken,
        aggregate: Agg<M>,
    ) -> Result<Created<Agg<M>>, RepositoryError> {
        let mut aggregate = aggregate;
        aggregate.set_version(Version::INITIAL);
        let id = aggregate.id();
        let now = self.store.config().clock.now();
        let events =
            StoredEvent::stamp::<Agg<M>>(id, Version::INITIAL, aggregate.take_events(), now);
        let mut commit_lost = false;
        let created = retrying!(
            self,
            "create",
            id,
            self.try_create(token, &aggregate, &events, &mut commit_lost)
        );
        // A replay too: the earlier create is behind the position read now.
        self.noted(created).await
    }

    async fn get(&self, id: IdOf<M>) -> Result<Agg<M>, RepositoryError> {
        retrying!(self, "get", id, self.try_get(id))
    }

    async fn get_by(&self, key: domain::UniqueKey) -> Result<Agg<M>, RepositoryError> {
        retrying!(self, "get_by", key, async {
            let mut conn = self.store.read_connection().await.map_err(Fail::Done)?;
            ops::load_by::<M, Infallible>(&mut conn, self.store.sessions(), &key).await
        })
    }

    async fn update<R, E, F>(
        &self,
        id: IdOf<M>,
        f: F,
    ) -> Result<Updated<Agg<M>, R>, RepositoryError<E>>
    where
        F: FnMut(&mut Agg<M>) -> Result<R, E> + Send,
        R: Send,
        E: Send,
    {
        let (mut f, mut unsettled) = (f, None);
        let row = crate::write_order::row_key(Agg::<M>::KIND, id);
        let updated = retrying!(self, "update", id, async {
            // Writers of one row in this process take turns, each attempt
            // from its load to its write (`write_order`): racing, they would
            // only make each other miss versions and retry, and on a hot row
            // some would run out of attempts. Taken before the connection,
            // so a waiting update holds none.
            let _turn = self.store.inner.write_claims.take(&row).await;
            self.try_update(id, &mut f, &mut unsettled).await
        });
        self.noted(updated).await
    }

    /// Two round trips, as an update by id: the read by key, then the
    /// write.
    async fn update_by<R, E, F>(
        &self,
        key: domain::UniqueKey,
        f: F,
    ) -> Result<Updated<Agg<M>, R>, RepositoryError<E>>
    where
        F: FnMut(&mut Agg<M>) -> Result<R, E> + Send,
        R: Send,
        E: Send,
    {
        let (mut f, mut unsettled) = (f, None);
        let updated = retrying!(
            self,
            "update_by",
            key,
            self.try_update_by(&key, &mut f, &mut unsettled)
        );
        self.noted(updated).await
    }

    async fn delete(&self, id: IdOf<M>) -> Result<(), RepositoryError> {
        let deleted = retrying!(self, "delete", id, self.try_delete(id));
        self.noted(deleted).await
    }

    async fn list(&self, page: PageRequest<IdOf<M>>) -> Result<Page<Agg<M>>, RepositoryError> {
        let cursor = page.cursor().map_or_else(String::new, |id| id.to_string());
        let items = retrying!(self, "list", cursor, self.try_list(page))?;
        Ok(Page::from_items(items, page))
    }

    async fn events(&self, id: IdOf<M>) -> Result<Vec<StoredEvent>, RepositoryError> {
        retrying!(self, "events", id, self.try_events(id))
    }
}
