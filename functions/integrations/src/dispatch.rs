//! From the table's stream to the webhooks queue (the outbox of webhook
//! deliveries): its own consumer of the stream, as the search indexer is.
//!
//! - A new audit entry (committed with the change it records) becomes one
//!   delivery record per enabled endpoint that wants its action. The
//!   delivery id is derived from the entry's and the endpoint's ids and
//!   written only if absent, so a stream record read twice makes no second
//!   delivery.
//! - A new delivery record (from the above, or a replay) is sent to the
//!   webhooks queue. A send that fails fails the stream record, which is
//!   read again: every delivery is sent at least once.
//!
//! `sweep_due` sends the deliveries whose next attempt is due: waits SQS
//! cannot hold (over 900 s) and messages lost on the way.

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::Digest;
use shared::platform::error::{Error, Result};
use shared::store::{QuerySpec, Store, from_item, s};

use crate::delivery::{DUE_PK, Delivery, DeliveryMessage, DeliveryStatus};
use crate::webhooks::{self, WebhookEndpoint};

#[derive(Clone)]
pub struct Dispatcher {
    pub store: Store,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    /// When new deliveries are first due (the worker's clock).
    pub clock: std::sync::Arc<dyn crate::delivery::Clock>,
}

/// The delivery of one audit entry to one endpoint: a UUIDv8 of both ids,
/// the same however often the entry is read from the stream.
pub fn delivery_id(entry_id: &str, endpoint_id: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{entry_id}/{endpoint_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string()
}

/// The body receivers get: Standard Webhooks' `{type, timestamp, data}`,
/// with what the audit entry holds in the clear (people in audit entries
/// are pseudonyms and their personal fields stay sealed; see
/// docs/integrations.md, "Payload").
pub fn payload_of(entry: &Value) -> Option<(String, String)> {
    let action = entry.get("action")?.as_str()?.to_string();
    let body = json!({
        "type": action,
        "timestamp": entry.get("ts").cloned().unwrap_or(Value::Null),
        "data": {
            "audit_entry_id": entry.get("id").cloned().unwrap_or(Value::Null),
            "target_type": entry.get("target_type").cloned().unwrap_or(Value::Null),
            "target_id": entry.get("target_id").cloned().unwrap_or(Value::Null),
            "outcome": entry.get("outcome").cloned().unwrap_or(Value::Null),
            "changed_fields": entry.get("changed_fields").cloned().unwrap_or(json!([])),
        },
    });
    Some((action, body.to_string()))
}

impl Dispatcher {
    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        let mut endpoints: Option<Vec<WebhookEndpoint>> = None;
        for record in &event.records {
            let image = |item: &serde_dynamo::Item| -> Option<Value> { if item.is_empty() { None } else { serde_dynamo::from_item(item.clone()).ok() } };
            let (old, new) = (image(&record.change.old_image), image(&record.change.new_image));
            if let Err(e) = self.apply(old.as_ref(), new.as_ref(), &mut endpoints).await {
                // This record and all after it are read again (Lambda's
                // bisect-free retry from the failed sequence number).
                tracing::warn!(error = %e, "webhook dispatch failed; the stream record will be retried");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = record.change.sequence_number.clone();
                response.batch_item_failures.push(failure);
                break;
            }
        }
        response
    }

    /// One changed item: an audit entry to fan out, a delivery to send.
    pub async fn apply(&self, old: Option<&Value>, new: Option<&Value>, endpoints: &mut Option<Vec<WebhookEndpoint>>) -> Result<usize> {
        let (None, Some(new)) = (old, new) else { return Ok(0) };
        match new.get("type").and_then(Value::as_str) {
            Some("audit") => {
                let Some((action, payload)) = payload_of(new) else { return Ok(0) };
                let entry_id = new.get("id").and_then(Value::as_str).unwrap_or_default();
                if endpoints.is_none() {
                    *endpoints = Some(self.endpoints().await?);
                }
                let mut made = 0;
                for endpoint in endpoints.iter().flatten().filter(|e| e.wants(&action)) {
                    let delivery = Delivery::new(delivery_id(entry_id, &endpoint.id), &endpoint.id, &action, payload.clone(), self.clock.now());
                    // Absent only: a record read again makes nothing new.
                    if self.store.put_new(delivery.to_item()?).await? {
                        made += 1;
                    }
                }
                Ok(made)
            }
            Some("webhook_delivery") => {
                let delivery: Delivery = serde_json::from_value(new.clone()).map_err(|e| Error::internal(format!("delivery record: {e}")))?;
                if delivery.status != DeliveryStatus::Pending {
                    return Ok(0);
                }
                send(&self.sqs, &self.queue_url, &[delivery.message()]).await?;
                Ok(1)
            }
            _ => Ok(0),
        }
    }

    async fn endpoints(&self) -> Result<Vec<WebhookEndpoint>> {
        let spec = QuerySpec { index: Some("gsi1"), key_condition: "gsi1pk = :pk", values: vec![(":pk", s(webhooks::LIST_PK))], ..Default::default() };
        self.store.query_all(&spec).await?.into_iter().map(from_item).collect()
    }
}

/// Send delivery messages, 10 a call.
pub async fn send(sqs: &aws_sdk_sqs::Client, queue_url: &str, messages: &[DeliveryMessage]) -> Result<()> {
    let bodies = messages.iter().map(|m| serde_json::to_string(m).map_err(|e| Error::internal(e.to_string()))).collect::<Result<Vec<_>>>()?;
    shared::platform::aws::send_batch(sqs, queue_url, &bodies, "webhook").await
}

/// Send every pending delivery due by `now` (at most `limit`); how many.
/// Run every minute; a duplicate of a message already on its way is
/// acknowledged by the worker without a second attempt.
pub async fn sweep_due(store: &Store, sqs: &aws_sdk_sqs::Client, queue_url: &str, now: DateTime<Utc>, limit: usize) -> Result<usize> {
    // `~` sorts after the `#<id>` of every delivery due at `now` exactly.
    let until = format!("{}~", shared::store::timestamp(now));
    let spec = QuerySpec {
        index: Some("gsi2"),
        key_condition: "gsi2pk = :pk AND gsi2sk <= :until",
        values: vec![(":pk", s(DUE_PK)), (":until", s(until))],
        forward: true,
        ..Default::default()
    };
    let (items, _) = store.query_page(&spec, None, i32::try_from(limit).unwrap_or(100)).await?;
    let due: Vec<Delivery> = items.into_iter().map(from_item).collect::<Result<_>>()?;
    let messages: Vec<DeliveryMessage> = due.iter().filter(|d| d.status == DeliveryStatus::Pending).map(Delivery::message).collect();
    send(sqs, queue_url, &messages).await?;
    Ok(messages.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_stable_per_entry_and_endpoint() {
        assert_eq!(delivery_id("a", "b"), delivery_id("a", "b"));
        assert_ne!(delivery_id("a", "b"), delivery_id("a", "c"));
        assert!(uuid::Uuid::try_parse(&delivery_id("a", "b")).is_ok());
    }

    #[test]
    fn payloads_carry_the_clear_fields_only() {
        let entry = json!({"id": "e1", "ts": "2026-12-03T12:00:00.000000Z", "action": "user.created", "target_type": "user",
            "target_id": "psn_1", "outcome": "success", "changed_fields": ["email"], "sealed": "xyz"});
        let (action, body) = payload_of(&entry).unwrap();
        assert_eq!(action, "user.created");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["type"], "user.created");
        assert_eq!(body["data"]["changed_fields"], json!(["email"]));
        assert!(!body.to_string().contains("xyz"));
        assert!(payload_of(&json!({"id": "e2"})).is_none());
    }
}
