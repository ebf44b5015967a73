//! Where a consumer parks what it gave up on (`<queue>.parked`), and how
//! it goes back: [`unpark`], once the handler that failed it is fixed.

use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ErrorKind};

use crate::consumer::{ConsumerConfig, REQUEUE};

/// The header a parked message carries its routing key in.
const ROUTING_KEY: &str = "x-parked-routing-key";
/// The header a parked message carries why it was parked in.
const BECAUSE: &str = "x-parked-because";

/// Moves `delivery` to the parked queue: published there (persistent,
/// with its properties, its routing key and `why` in headers) and
/// confirmed before the original is acknowledged, so it is never in
/// neither. If the broker does not confirm (within `max_backoff`), the
/// delivery is requeued and parked on a later attempt. Returns whether it
/// was parked.
pub(crate) async fn park(
    channel: &Channel,
    config: &ConsumerConfig,
    delivery: Delivery,
    why: String,
) -> bool {
    let parked = config.binding.parked_queue();
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(
        ROUTING_KEY.into(),
        AMQPValue::LongString(LongString::from(delivery.routing_key.as_str())),
    );
    headers.insert(BECAUSE.into(), AMQPValue::LongString(LongString::from(why)));
    let properties = delivery.properties.clone().with_headers(headers);
    let published = channel
        .basic_publish(
            "".into(),
            parked.as_str().into(),
            BasicPublishOptions::default(),
            &delivery.data,
            properties.with_delivery_mode(2),
        )
        .await;
    let confirmed = match published {
        Ok(confirm) => tokio::time::timeout(config.max_backoff, confirm).await,
        Err(error) => Ok(Err(error)),
    };
    match confirmed {
        Ok(Ok(confirmation)) if confirmation.is_ack() => {
            let _ = delivery.ack(BasicAckOptions::default()).await;
            let queue = config.binding.queue.clone();
            metrics::counter!("relay_consumer_parked_total", "queue" => queue).increment(1);
            true
        }
        refused => {
            tracing::warn!(?refused, %parked, "consumer: parking was not confirmed; requeued");
            tokio::time::sleep(config.min_backoff).await;
            let _ = delivery.nack(REQUEUE).await;
            false
        }
    }
}

/// Why [`unpark`] stopped early.
#[derive(Debug, thiserror::Error)]
pub enum UnparkError {
    /// No consumer of that queue ever ran here: there is no parked queue.
    #[error("no queue {0}: no consumer of that queue has run on this broker (is the name right?)")]
    NoParkedQueue(String),
    /// The broker failed.
    #[error("RabbitMQ")]
    Broker(#[from] lapin::Error),
    /// The broker refused to take a message back (a nack): it stays
    /// parked.
    #[error("the broker refused to take a parked message back")]
    Refused,
}

/// Moves the messages parked for the consumer queue `queue` (those in
/// `<queue>.parked` when it starts) back to it, without their parking
/// headers; each is confirmed in `queue` before it leaves the parked
/// queue, so none is lost on the way (one may be in both). Returns how
/// many moved. Run it once the handler that failed them is fixed: a
/// message that fails again is parked again.
///
/// # Errors
/// When the broker cannot be reached, has no parked queue for `queue`
/// ([`UnparkError::NoParkedQueue`]), or refuses a message back; what moved
/// before stays moved.
pub async fn unpark(amqp_url: &str, queue: &str) -> Result<u64, UnparkError> {
    let connection = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let parked = crate::QueueBinding::new(queue, &[]).parked_queue();
    let passive = QueueDeclareOptions {
        passive: true,
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let waiting = channel
        .queue_declare(parked.as_str().into(), passive, FieldTable::default())
        .await
        .map_err(|error| match error.kind() {
            ErrorKind::ProtocolError(amqp)
                if *amqp.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) =>
            {
                UnparkError::NoParkedQueue(parked.clone())
            }
            _ => error.into(),
        })?
        .message_count();
    let mut moved = 0;
    // Only what waited at the start: what fails again and comes back is
    // for the next run.
    while moved < u64::from(waiting) {
        let taken = channel
            .basic_get(parked.as_str().into(), BasicGetOptions { no_ack: false })
            .await?;
        let Some(message) = taken else { break };
        let delivery = message.delivery;
        let confirmation = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &delivery.data,
                unparked(&delivery.properties),
            )
            .await?
            .await?;
        if !confirmation.is_ack() {
            return Err(UnparkError::Refused);
        }
        delivery.ack(BasicAckOptions::default()).await?;
        moved += 1;
    }
    Ok(moved)
}

/// `properties` without the parking headers.
fn unparked(properties: &BasicProperties) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (key, value) in properties.headers().iter().flat_map(FieldTable::inner) {
        if key.as_str() != ROUTING_KEY && key.as_str() != BECAUSE {
            headers.insert(key.clone(), value.clone());
        }
    }
    properties.clone().with_headers(headers)
}
