//! The streams worker: consumes the table's DynamoDB stream (new and old
//! images). It is the jobs outbox's dispatcher (`shared::domain::jobs::Outbox`:
//! a job record committed with a change is sent to the jobs queue from
//! here), and keeps the dashboard's rollup counters (`shared::domain::rollups`)
//! with atomic ADD updates, so the dashboard never counts raw items.
//!
//! Redelivery is safe: each record's counter updates are one transaction
//! together with a per-record marker (`STREAMREC#<eventID>`, conditional on
//! not existing, expiring after two days — longer than the stream's 24 h
//! retention). A record delivered twice finds its marker and changes
//! nothing. A per-shard "last sequence" marker would also work, but it makes
//! a whole batch one unit (more than the 100 items a transaction can hold)
//! and serializes on one item; the per-record marker keeps every record
//! atomic on its own and fits partial batch responses.

pub mod backfill;
pub mod effects;

use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use serde_json::Value;
use shared::domain::jobs::Outbox;
use shared::domain::rollups;
use shared::platform::error::{Error, Result, aws};
use shared::store::{Item, Store, n, s, to_item};

use crate::effects::{Effect, SecurityEvent};

/// A stream image as JSON (`None` for an absent image).
fn image(item: &serde_dynamo::Item) -> Result<Option<Value>> {
    if item.is_empty() {
        return Ok(None);
    }
    serde_dynamo::from_item(item.clone()).map(Some).map_err(|e| Error::internal(format!("stream image: {e}")))
}

/// Run `f` on a batch's records in order. On the first failure the rest of
/// the batch is left alone and that record's sequence number is reported,
/// so Lambda retries from it (records are ordered per item).
async fn each_record<'a, F, Fut>(event: &'a Event, f: F) -> DynamoDbEventResponse
where
    F: Fn(&'a EventRecord) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut response = DynamoDbEventResponse::default();
    for record in &event.records {
        if let Err(e) = f(record).await {
            tracing::warn!(event_id = %record.event_id, error = %e, "stream record failed; it will be retried");
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = record.change.sequence_number.clone();
            response.batch_item_failures.push(failure);
            break;
        }
    }
    response
}

/// How long a processed-record marker is kept (stream records live 24 h).
pub const DEDUP_TTL_SECONDS: i64 = 2 * 86_400;

#[derive(Clone, Debug)]
pub struct Worker {
    pub store: Store,
    /// Sends the jobs that stream records commit.
    pub outbox: Outbox,
}

impl Worker {
    pub async fn from_env() -> anyhow::Result<Worker> {
        let var = |name: &str| std::env::var(name).map_err(|_| anyhow::anyhow!("configuration: {name} is not set"));
        let (table, queue_url) = (var("KEEL_TABLE")?, var("KEEL_JOBS_QUEUE_URL")?);
        let sdk = shared::platform::aws::sdk_config();
        Ok(Worker { store: Store::new(aws_sdk_dynamodb::Client::new(&sdk), table), outbox: Outbox::new(aws_sdk_sqs::Client::new(&sdk), queue_url) })
    }

    /// Handle one batch of stream records in order (`each_record`).
    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        each_record(&event, |record| self.process(record)).await
    }

    /// Only the outbox's part of a batch (tests send committed jobs this way
    /// without replaying every rollup).
    pub async fn handle_outbox(&self, event: Event) -> DynamoDbEventResponse {
        each_record(&event, |record| async move {
            let (old, new) = (image(&record.change.old_image)?, image(&record.change.new_image)?);
            self.outbox.dispatch(old.as_ref(), new.as_ref()).await.map(|_| ())
        })
        .await
    }

    async fn process(&self, record: &EventRecord) -> Result<()> {
        let old = image(&record.change.old_image)?;
        let new = image(&record.change.new_image)?;
        // First the outbox: a failure leaves the record (and the rest of the
        // batch) to be retried, so a committed job is always sent.
        self.outbox.dispatch(old.as_ref(), new.as_ref()).await?;
        let effects = effects::of_change(old.as_ref(), new.as_ref());
        self.apply(&record.event_id, &effects).await
    }

    /// Apply one record's effects. Last-active moves are idempotent by
    /// themselves (a day never moves backwards) and run first; the counters
    /// and the security index go in one transaction with the record marker.
    pub async fn apply(&self, record_id: &str, effects: &[Effect]) -> Result<()> {
        for effect in effects {
            if let Effect::Active { user_id, day } = effect {
                self.mark_active(user_id, day).await?;
            }
        }
        let adds = effects::net_adds(effects);
        let security: Vec<&SecurityEvent> = effects.iter().filter_map(|e| if let Effect::Security(s) = e { Some(s) } else { None }).collect();
        if adds.is_empty() && security.is_empty() {
            return Ok(());
        }
        let table = &self.store.table;
        let marker = Put::builder()
            .table_name(table)
            .item("pk", s(format!("STREAMREC#{record_id}")))
            .item("sk", s("STREAMREC"))
            .item("ttl", n(chrono::Utc::now().timestamp() + DEDUP_TTL_SECONDS))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| Error::internal(e.to_string()))?;
        let mut items = vec![TransactWriteItem::builder().put(marker).build()];
        for ((metric, bucket), delta) in &adds {
            items.push(add(table, metric, bucket, *delta)?);
        }
        for event in &security {
            items.push(
                TransactWriteItem::builder()
                    .put(Put::builder().table_name(table).set_item(Some(security_item(event)?)).build().map_err(|e| Error::internal(e.to_string()))?)
                    .build(),
            );
        }
        match transact(&self.store, items).await? {
            Transacted::Done => {}
            Transacted::ConditionFailed(0) => tracing::info!(record_id, "stream record already applied; skipped"),
            Transacted::ConditionFailed(i) => return Err(Error::internal(format!("unexpected condition failure on item {i}"))),
        }
        // Also after a skip: a previous delivery may have failed between the
        // transaction and this step, and adding an event twice is a no-op.
        if !security.is_empty() {
            self.record_latest(security.into_iter().cloned().collect()).await?;
        }
        Ok(())
    }

    /// Add events to the latest-security-events item: read, merge, write
    /// back conditional on the version read (other shards write it too).
    async fn record_latest(&self, events: Vec<SecurityEvent>) -> Result<()> {
        for _ in 0..10 {
            let current: rollups::LatestSecurityEvents = match self.store.get_item(rollups::SECURITY_LATEST_PK, rollups::SECURITY_LATEST_SK).await? {
                Some(item) => shared::store::from_item(item)?,
                None => Default::default(),
            };
            let merged = rollups::merge_latest(&current.events, events.iter().cloned());
            if merged == current.events {
                return Ok(());
            }
            let next = rollups::LatestSecurityEvents { events: merged, version: current.version + 1 };
            let mut item = to_item(&next)?;
            item.insert("pk".into(), s(rollups::SECURITY_LATEST_PK));
            item.insert("sk".into(), s(rollups::SECURITY_LATEST_SK));
            let result = self
                .store
                .client
                .put_item()
                .table_name(&self.store.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk) OR version = :v")
                .expression_attribute_values(":v", n(current.version as i64))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => continue,
                Err(e) => return Err(aws("dynamodb PutItem")(e)),
            }
        }
        Err(Error::internal("the latest security events item kept changing"))
    }

    /// Move a user to the last-active bucket of `day` unless they are
    /// already in it or a later one: decrement the old bucket, increment the
    /// new, and update the user's marker, atomically and conditional on the
    /// marker not having moved meanwhile (then re-read and retry).
    async fn mark_active(&self, user_id: &str, day: &str) -> Result<()> {
        let table = &self.store.table;
        let pk = rollups::activity_pk(user_id);
        for _ in 0..5 {
            let current = self.store.get_item(&pk, rollups::ACTIVITY_SK).await?.and_then(|i| i.get("day").and_then(|d| d.as_s().ok()).cloned());
            if current.as_deref().is_some_and(|c| c >= day) {
                return Ok(());
            }
            let mut marker = Update::builder()
                .table_name(table)
                .key("pk", s(&pk))
                .key("sk", s(rollups::ACTIVITY_SK))
                .update_expression("SET #day = :day, user_id = :uid")
                .expression_attribute_names("#day", "day")
                .expression_attribute_values(":day", s(day))
                .expression_attribute_values(":uid", s(user_id));
            marker = match &current {
                Some(old) => marker.condition_expression("#day = :old").expression_attribute_values(":old", s(old)),
                None => marker.condition_expression("attribute_not_exists(pk)"),
            };
            let mut items = vec![TransactWriteItem::builder().update(marker.build().map_err(|e| Error::internal(e.to_string()))?).build()];
            items.push(add(table, rollups::LAST_ACTIVE, day, 1)?);
            if let Some(old) = &current {
                items.push(add(table, rollups::LAST_ACTIVE, old, -1)?);
            }
            match transact(&self.store, items).await? {
                Transacted::Done => return Ok(()),
                Transacted::ConditionFailed(_) => continue,
            }
        }
        Err(Error::internal(format!("last-active marker of {user_id} kept changing")))
    }
}

/// `ADD value :delta` on a rollup counter.
pub fn add(table: &str, metric: &str, bucket: &str, delta: i64) -> Result<TransactWriteItem> {
    let update = Update::builder()
        .table_name(table)
        .key("pk", s(rollups::pk(metric)))
        .key("sk", s(bucket))
        .update_expression("ADD #value :delta")
        .expression_attribute_names("#value", rollups::VALUE)
        .expression_attribute_values(":delta", n(delta))
        .build()
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// The security index item of an audit entry (expires after 90 days).
pub fn security_item(event: &SecurityEvent) -> Result<Item> {
    let mut item = to_item(event)?;
    item.insert("pk".into(), s(rollups::SECURITY_INDEX_PK));
    item.insert("sk".into(), s(format!("{}#{}", event.ts, event.id)));
    let expires = chrono::DateTime::parse_from_rfc3339(&event.ts).map(|t| t.timestamp()).unwrap_or_else(|_| chrono::Utc::now().timestamp());
    item.insert("ttl".into(), n(expires + rollups::SECURITY_INDEX_DAYS * 86_400));
    Ok(item)
}

enum Transacted {
    Done,
    /// The item at this index failed its condition.
    ConditionFailed(usize),
}

/// TransactWriteItems for derived data. Rollups are recomputable from the
/// audited changes they summarize, so they carry no audit entry of their
/// own. Conflicts with concurrent transactions are retried.
async fn transact(store: &Store, items: Vec<TransactWriteItem>) -> Result<Transacted> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    let mut attempt = 0u32;
    loop {
        let result = store.client.transact_write_items().set_transact_items(Some(items.clone())).send().await;
        let err = match result {
            Ok(_) => return Ok(Transacted::Done),
            Err(err) => err,
        };
        if let Some(E::TransactionCanceledException(cancel)) = err.as_service_error() {
            let reasons = cancel.cancellation_reasons();
            if let Some(i) = reasons.iter().position(|r| r.code() == Some("ConditionalCheckFailed")) {
                return Ok(Transacted::ConditionFailed(i));
            }
            // Emulators may omit reasons; the first item carries the condition.
            if reasons.is_empty() {
                return Ok(Transacted::ConditionFailed(0));
            }
            if attempt < 5 && reasons.iter().any(|r| r.code() == Some("TransactionConflict")) {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * 2u64.pow(attempt))).await;
                continue;
            }
        }
        return Err(aws("dynamodb TransactWriteItems")(err));
    }
}
