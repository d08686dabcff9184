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
use serde_json::Value;
use shared::domain::jobs::Outbox;
use shared::domain::rollups;
use shared::platform::error::{Error, Result};
use shared::store::{Condition, Item, Store, Transacted, UpdateSpec, Write, n, s, to_item};

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
        let table = self.store.table();
        let marker = Item::from([
            ("pk".to_string(), s(format!("STREAMREC#{record_id}"))),
            ("sk".to_string(), s("STREAMREC")),
            ("ttl".to_string(), n(chrono::Utc::now().timestamp() + DEDUP_TTL_SECONDS)),
        ]);
        let mut writes = vec![Write::put_if(table, marker, &Condition::new("attribute_not_exists(pk)"), None)?];
        for ((metric, bucket), delta) in &adds {
            writes.push(add(table, metric, bucket, *delta)?);
        }
        for event in &security {
            writes.push(Write::put(table, security_item(event)?)?);
        }
        match transact(&self.store, &writes).await? {
            None => {}
            Some(0) => tracing::info!(record_id, "stream record already applied; skipped"),
            Some(i) => return Err(Error::internal(format!("unexpected condition failure on item {i}"))),
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
            let unchanged = Condition::new("attribute_not_exists(pk) OR version = :v").value(":v", n(current.version as i64));
            if self.store.put_if(item, &unchanged).await? {
                return Ok(());
            }
        }
        Err(Error::internal("the latest security events item kept changing"))
    }

    /// Move a user to the last-active bucket of `day` unless they are
    /// already in it or a later one: decrement the old bucket, increment the
    /// new, and update the user's marker, atomically and conditional on the
    /// marker not having moved meanwhile (then re-read and retry).
    async fn mark_active(&self, user_id: &str, day: &str) -> Result<()> {
        let table = self.store.table();
        let pk = rollups::activity_pk(user_id);
        for _ in 0..5 {
            let current = self.store.get_item(&pk, rollups::ACTIVITY_SK).await?.and_then(|i| i.get("day").and_then(|d| d.as_s().ok()).cloned());
            if current.as_deref().is_some_and(|c| c >= day) {
                return Ok(());
            }
            let marker = UpdateSpec::new("SET #day = :day, user_id = :uid").name("#day", "day").value(":day", s(day)).value(":uid", s(user_id));
            let marker = match &current {
                Some(old) => marker.condition("#day = :old").value(":old", s(old)),
                None => marker.condition("attribute_not_exists(pk)"),
            };
            let mut writes = vec![Write::update(table, &pk, rollups::ACTIVITY_SK, &marker, None)?];
            writes.push(add(table, rollups::LAST_ACTIVE, day, 1)?);
            if let Some(old) = &current {
                writes.push(add(table, rollups::LAST_ACTIVE, old, -1)?);
            }
            match transact(&self.store, &writes).await? {
                None => return Ok(()),
                Some(_) => continue,
            }
        }
        Err(Error::internal(format!("last-active marker of {user_id} kept changing")))
    }
}

/// `ADD value :delta` on a rollup counter.
pub fn add(table: &str, metric: &str, bucket: &str, delta: i64) -> Result<Write> {
    Write::update(table, &rollups::pk(metric), bucket, &UpdateSpec::new("ADD #value :delta").name("#value", rollups::VALUE).value(":delta", n(delta)), None)
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

/// TransactWriteItems for derived data. Rollups are recomputable from the
/// audited changes they summarize, so they carry no audit entry of their
/// own. Conflicts with concurrent transactions are retried. Answers the
/// index of the write whose condition failed, if one did.
async fn transact(store: &Store, writes: &[Write]) -> Result<Option<usize>> {
    let mut attempt = 0u32;
    loop {
        match store.try_transact(writes).await? {
            Transacted::Done => return Ok(None),
            // Emulators may omit reasons; the first write carries the condition.
            Transacted::ConditionFailed(index) => return Ok(Some(index.unwrap_or(0))),
            Transacted::Contended if attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * 2u64.pow(attempt))).await;
            }
            Transacted::Contended => return Err(Error::internal("dynamodb TransactWriteItems: still contended after retries")),
        }
    }
}
