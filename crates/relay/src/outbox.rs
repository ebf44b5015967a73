//! The relay's side of the `outbox` table: one session that holds the
//! leadership lock, listens for new events and reads and marks batches.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client};

/// The advisory lock only the active relay holds (for the session):
/// `hashtext('storage.outbox.relay')`, fixed so that every relay of every
/// version agrees.
const LEADER_LOCK: i64 = 0x6f75_7462_6f78;

/// One event, ready to publish.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) seq: i64,
    /// `<aggregate kind>.<event name>`.
    pub(crate) routing_key: String,
    /// The event id: the message id consumers deduplicate on.
    pub(crate) id: String,
    /// The event's name (the message type).
    pub(crate) name: String,
    /// The whole event as JSON.
    pub(crate) body: String,
}

/// A session on the database: its client, and the notifications it hears.
pub(crate) struct Session {
    client: Client,
    notified: mpsc::Receiver<()>,
}

impl Session {
    /// Connects and listens for `outbox` notifications.
    /// Over TLS where the URL asks for it (`storage::tls`).
    pub(crate) async fn open(database_url: &str) -> Result<Self, domain::BoxError> {
        let (tell, notified) = mpsc::channel(1);
        let client = storage::tls::client(database_url, move |message| {
            // A full channel already says "look again".
            if let AsyncMessage::Notification(_) = message {
                let _ = tell.try_send(());
            }
        })
        .await?;
        client.batch_execute("LISTEN outbox").await?;
        Ok(Self { client, notified })
    }

    /// Takes the leadership if no other relay holds it.
    pub(crate) async fn try_lead(&self) -> Result<bool, tokio_postgres::Error> {
        let row = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
            .await?;
        row.try_get(0)
    }

    /// Waits up to `poll` for a notification; whether one came. An ended
    /// session returns at once (its next query fails).
    pub(crate) async fn wait(&mut self, poll: Duration) -> bool {
        matches!(
            tokio::time::timeout(poll, self.notified.recv()).await,
            Ok(Some(()))
        )
    }

    /// The oldest `limit` events not published yet, in the order they were
    /// stored: per aggregate, the order of its versions.
    pub(crate) async fn pending(&self, limit: i64) -> Result<Vec<Pending>, tokio_postgres::Error> {
        let rows = self
            .client
            .query(
                "SELECT seq, aggregate_kind || '.' || name, id::text, name, \
                        json_build_object('id', id, 'aggregate_kind', aggregate_kind, \
                            'aggregate_id', aggregate_id, 'version', version, 'name', name, \
                            'payload', payload, 'occurred_at', occurred_at)::text \
                 FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1",
                &[&limit],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Pending {
                    seq: row.try_get(0)?,
                    routing_key: row.try_get(1)?,
                    id: row.try_get(2)?,
                    name: row.try_get(3)?,
                    body: row.try_get(4)?,
                })
            })
            .collect()
    }

    /// Marks events as published.
    pub(crate) async fn mark_published(&self, seqs: &[i64]) -> Result<(), tokio_postgres::Error> {
        self.client
            .execute(
                "UPDATE outbox SET published_at = now() WHERE seq = ANY($1)",
                &[&seqs],
            )
            .await
            .map(drop)
    }

    /// Removes events published longer than `retention` ago, at most
    /// `batch` per statement; returns how many went.
    pub(crate) async fn purge(
        &self,
        retention: Duration,
        batch: i64,
    ) -> Result<u64, tokio_postgres::Error> {
        let seconds = retention.as_secs_f64();
        let mut purged = 0;
        loop {
            let removed = self
                .client
                .execute(
                    "DELETE FROM outbox WHERE seq = ANY(ARRAY( \
                         SELECT seq FROM outbox WHERE published_at < now() - make_interval(secs => $1) \
                         LIMIT $2))",
                    &[&seconds, &batch],
                )
                .await?;
            purged += removed;
            if removed < u64::try_from(batch).unwrap_or(u64::MAX) {
                return Ok(purged);
            }
        }
    }
}

/// How far behind the relay is: the age of the oldest event not published
/// yet (`None`: none waits), read on `client`.
pub async fn lag(client: &Client) -> Result<Option<Duration>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT extract(epoch FROM now() - min(occurred_at))::float8 \
             FROM outbox WHERE published_at IS NULL",
            &[],
        )
        .await?;
    let seconds: Option<f64> = row.try_get(0)?;
    Ok(seconds.map(|s| Duration::from_secs_f64(s.max(0.0))))
}
