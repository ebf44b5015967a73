//! `Repository` on Postgres, for any aggregate with a [`Mapping`].

use std::marker::PhantomData;

use diesel_async::AsyncConnection;
use domain::{
    Aggregate, Fingerprint, Page, PageOf, PageRequest, Repository, RepositoryError, TxToken,
    Version,
};
use uuid::Uuid;

use crate::classify::is_connection_fault;
use crate::mapping::Mapping;
use crate::retry::{Fail, Retry, within_deadline};
use crate::store::Store;
use crate::tokens;

/// The Postgres repository of the aggregate `M` maps. Cheap to clone.
pub struct PgRepository<M> {
    store: Store,
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
type IdOf<M> = <Agg<M> as Aggregate>::Id;

impl<M: Mapping> PgRepository<M> {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            store,
            mapping: PhantomData,
        }
    }

    fn retry(&self, id: impl std::fmt::Display) -> Retry<'_> {
        Retry {
            kind: Agg::<M>::KIND,
            id: id.to_string(),
            primary_key: M::PRIMARY_KEY,
            config: self.store.config(),
            attempts: 1,
        }
    }

    fn span(op: &'static str, id: impl std::fmt::Display) -> tracing::Span {
        tracing::debug_span!("repository", op, kind = Agg::<M>::KIND, id = %id)
    }

    async fn try_get(&self, id: IdOf<M>) -> Result<Agg<M>, Fail<std::convert::Infallible>> {
        let mut conn = self.store.connection().await.map_err(Fail::Done)?;
        M::load(&mut conn, id)
            .await?
            .ok_or_else(|| Fail::Done(RepositoryError::not_found(Agg::<M>::KIND, id)))
    }

    async fn try_delete(&self, id: IdOf<M>) -> Result<(), Fail<std::convert::Infallible>> {
        let mut conn = self.store.connection().await.map_err(Fail::Done)?;
        match M::delete(&mut conn, id).await? {
            0 => Err(Fail::Done(RepositoryError::not_found(Agg::<M>::KIND, id))),
            _ => Ok(()),
        }
    }

    async fn try_list(
        &self,
        page: PageRequest<IdOf<M>>,
    ) -> Result<Vec<Agg<M>>, Fail<std::convert::Infallible>> {
        let limit = i64::try_from(page.limit()).unwrap_or(i64::MAX);
        let mut conn = self.store.connection().await.map_err(Fail::Done)?;
        Ok(M::load_page(&mut conn, page.cursor(), limit).await?)
    }

    /// One attempt of `create`: claim the token and insert, in one
    /// transaction; or, if the token was claimed before, answer from it.
    async fn try_create(
        &self,
        token: TxToken,
        aggregate: &Agg<M>,
    ) -> Result<Agg<M>, Fail<std::convert::Infallible>> {
        let mut conn = self.store.connection().await.map_err(Fail::Done)?;
        let fingerprint = aggregate.fingerprint();
        let id: Uuid = aggregate.id().into();
        let claimed_before = conn
            .transaction(
                async |conn| -> Result<Option<(Uuid, Fingerprint)>, Fail<_>> {
                    if tokens::claim(conn, Agg::<M>::KIND, token, id, &fingerprint).await? {
                        M::insert(conn, aggregate).await?;
                        Ok(None)
                    } else {
                        Ok(Some(tokens::find(conn, Agg::<M>::KIND, token).await?))
                    }
                },
            )
            .await?;
        let Some((stored_id, stored_fingerprint)) = claimed_before else {
            return Ok(aggregate.clone());
        };
        if stored_fingerprint != fingerprint {
            return Err(Fail::Done(RepositoryError::TokenMismatch {
                kind: Agg::<M>::KIND,
                token,
            }));
        }
        M::load(&mut conn, stored_id.into())
            .await?
            .ok_or_else(|| Fail::Done(RepositoryError::not_found(Agg::<M>::KIND, stored_id)))
    }

    /// One attempt of `update`: load, run the closure with no transaction
    /// open, then write under the optimistic lock.
    async fn try_update<R, E>(
        &self,
        id: IdOf<M>,
        f: &mut (impl FnMut(&mut Agg<M>) -> Result<R, E> + Send),
    ) -> Result<R, Fail<E>>
    where
        R: Send,
        E: Send,
    {
        let mut conn = self.store.connection().await.map_err(Fail::Done)?;
        let old = M::load(&mut conn, id)
            .await?
            .ok_or_else(|| Fail::Done(RepositoryError::not_found(Agg::<M>::KIND, id)))?;
        let mut new = old.clone();
        let output = f(&mut new).map_err(|e| Fail::Done(RepositoryError::Domain(e)))?;
        if new.id() != id {
            return Err(Fail::Done(RepositoryError::Storage(
                format!(
                    "an update closure changed the id of {} {id}",
                    Agg::<M>::KIND
                )
                .into(),
            )));
        }
        new.set_version(old.version().next());
        let written = conn
            .transaction(async |conn| -> Result<(), Fail<E>> {
                // Checked before COMMIT: a miss rolls back whatever else the
                // mapping wrote in this transaction.
                match M::update(conn, &old, &new).await? {
                    1 => Ok(()),
                    _ => Err(Fail::VersionMiss),
                }
            })
            .await;
        match written {
            Ok(()) => Ok(output),
            Err(Fail::Db(error)) if !is_connection_fault(&error) => {
                // A write can fail because a concurrent writer changed the
                // rows it touches (say, took the line position it appends).
                // If the version moved, that is a conflict to retry.
                match M::load(&mut conn, id).await? {
                    Some(now) if now.version() == old.version() => Err(Fail::Db(error)),
                    _ => Err(Fail::VersionMiss),
                }
            }
            Err(failure) => Err(failure),
        }
    }
}

impl<M: Mapping> Repository<Agg<M>> for PgRepository<M> {
    async fn create(&self, token: TxToken, aggregate: Agg<M>) -> Result<Agg<M>, RepositoryError> {
        let mut aggregate = aggregate;
        aggregate.set_version(Version::INITIAL);
        let id = aggregate.id();
        within_deadline(self.store.config(), Self::span("create", id), async {
            let mut retry = self.retry(id);
            loop {
                match self.try_create(token, &aggregate).await {
                    Ok(stored) => return Ok(stored),
                    Err(failure) => retry.after(failure).await?,
                }
            }
        })
        .await
    }

    async fn get(&self, id: IdOf<M>) -> Result<Agg<M>, RepositoryError> {
        within_deadline(self.store.config(), Self::span("get", id), async {
            let mut retry = self.retry(id);
            loop {
                match self.try_get(id).await {
                    Ok(found) => return Ok(found),
                    Err(failure) => retry.after(failure).await?,
                }
            }
        })
        .await
    }

    async fn update<R, E, F>(&self, id: IdOf<M>, f: F) -> Result<R, RepositoryError<E>>
    where
        F: FnMut(&mut Agg<M>) -> Result<R, E> + Send,
        R: Send,
        E: Send,
    {
        let mut f = f;
        within_deadline(self.store.config(), Self::span("update", id), async {
            let mut retry = self.retry(id);
            loop {
                match self.try_update(id, &mut f).await {
                    Ok(output) => return Ok(output),
                    Err(failure) => retry.after(failure).await?,
                }
            }
        })
        .await
    }

    async fn delete(&self, id: IdOf<M>) -> Result<(), RepositoryError> {
        within_deadline(self.store.config(), Self::span("delete", id), async {
            let mut retry = self.retry(id);
            loop {
                match self.try_delete(id).await {
                    Ok(()) => return Ok(()),
                    Err(failure) => retry.after(failure).await?,
                }
            }
        })
        .await
    }

    async fn list(&self, page: PageRequest<IdOf<M>>) -> Result<PageOf<Agg<M>>, RepositoryError> {
        let cursor = page.cursor().map_or_else(String::new, |id| id.to_string());
        let items = within_deadline(self.store.config(), Self::span("list", &cursor), async {
            let mut retry = self.retry(&cursor);
            loop {
                match self.try_list(page).await {
                    Ok(items) => return Ok(items),
                    Err(failure) => retry.after(failure).await?,
                }
            }
        })
        .await?;
        Ok(Page::from_items(items, page, Aggregate::id))
    }
}
