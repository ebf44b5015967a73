//! The relay's side of `RabbitMQ`: one channel in confirm mode, publishing
//! persistent messages to a durable topic exchange.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use crate::outbox::Pending;
use crate::topology::{self, QueueBinding};

/// A connection to the broker with a confirming channel.
pub(crate) struct Broker {
    // Kept open for the channel's sake.
    _connection: Connection,
    channel: Channel,
    exchange: String,
}

/// Why a batch was not confirmed whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error("the broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused event {0} (nack)")]
    Refused(String),
    #[error("the broker did not confirm within {0:?}")]
    Unconfirmed(Duration),
}

impl Broker {
    /// Connects, declares the exchange (durable topic) and the consumers'
    /// `queues`, and turns confirms on.
    pub(crate) async fn connect(
        amqp_url: &str,
        exchange: &str,
        queues: &[QueueBinding],
    ) -> Result<Self, lapin::Error> {
        let connection = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        topology::declare(&channel, exchange, queues).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            _connection: connection,
            channel,
            exchange: exchange.to_owned(),
        })
    }

    /// Publishes `batch` in order, all before waiting, then reads the
    /// broker's confirms in order. Returns how many events from the start
    /// of the batch were confirmed, and why the rest were not (they are
    /// published again later: at least once).
    pub(crate) async fn publish(
        &self,
        batch: &[Pending],
        timeout: Duration,
    ) -> (usize, Option<PublishError>) {
        let mut confirms = Vec::with_capacity(batch.len());
        for event in batch {
            let properties = BasicProperties::default()
                .with_message_id(event.id.as_str().into())
                .with_type(event.name.as_str().into())
                .with_content_type("application/json".into())
                // Persistent: a durable queue keeps it across a restart.
                .with_delivery_mode(2);
            let sent = self
                .channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    event.routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    event.body.as_bytes(),
                    properties,
                )
                .await;
            match sent {
                Ok(confirm) => confirms.push(confirm),
                Err(error) => return (0, Some(error.into())),
            }
        }
        let mut confirmed = 0;
        for (event, confirm) in batch.iter().zip(confirms) {
            match tokio::time::timeout(timeout, confirm).await {
                Ok(Ok(confirmation)) if confirmation.is_ack() => confirmed += 1,
                Ok(Ok(_)) => return (confirmed, Some(PublishError::Refused(event.id.clone()))),
                Ok(Err(error)) => return (confirmed, Some(error.into())),
                Err(_) => return (confirmed, Some(PublishError::Unconfirmed(timeout))),
            }
        }
        (confirmed, None)
    }
}
