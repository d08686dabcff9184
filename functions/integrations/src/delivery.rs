//! Delivering webhook messages: the delivery record, the attempt (the SSRF
//! guard, then a POST to the checked address with the Standard Webhooks
//! headers), and the worker that runs one attempt per SQS message.
//!
//! At least once: a message is acknowledged only after its attempt is
//! recorded. The worker claims the delivery first (`claimed_by`, the SQS
//! message id, version-checked); a worker killed mid-attempt leaves the
//! message on the queue, and its redelivery (same message id) takes the
//! claim over and makes the attempt again. Another message for the same
//! attempt (a duplicate send) finds it claimed or already made and is
//! acknowledged without a second POST.
//!
//! Retries follow the endpoint's schedule (wait before each attempt,
//! counted from the previous one), or `Retry-After` when the receiver asks
//! for longer. A wait is kept on the record (`next_attempt_at`, indexed on
//! gsi2 `WEBHOOKDUE`) and, when SQS can hold it (≤ 900 s), also sent as a
//! delayed message; the sweeper (`dispatch::sweep_due`) sends the longer
//! ones when due, and any whose message was lost. After the last attempt
//! the message goes to the webhooks DLQ. A 410 disables the endpoint, and
//! so does failing for `DISABLE_AFTER_FAILING` (five days) with no success
//! in between (`WEBHOOK#<id> / HEALTH` keeps when the failing began), with
//! an email to its owner (a `webhook_disabled_email` job, committed with
//! the change through the outbox).
//!
//! Keys: `WHDELIVERY#<id> / META`; an endpoint's deliveries on gsi1
//! `WEBHOOKDELIVERIES#<endpoint>` / created#id.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::audit::{Actor, AuditEntry};
use shared::platform::error::{Error, Result};
use shared::store::{Item, Write, from_item, s, timestamp, to_item};
use utoipa::ToSchema;

use crate::IntegrationsState;
use crate::webhooks::{self, WebhookEndpoint};
use crate::{signing, ssrf};

/// The longest a receiver has to answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of a response body the deliveries log keeps.
pub const SNIPPET_BYTES: usize = 512;
/// The longest delay SQS holds a message for.
pub const MAX_SQS_DELAY_SECONDS: i64 = 900;
/// How long a claim holds off another message for the same attempt: more
/// than an attempt can take, less than the queue's visibility timeout.
pub const CLAIM_LEASE: chrono::Duration = chrono::Duration::seconds(60);
/// The longest `Retry-After` honoured (beyond it the endpoint's schedule's
/// own wait applies, capped like a schedule's).
pub const MAX_RETRY_AFTER_SECONDS: i64 = webhooks::MAX_RETRY_WAIT_SECONDS as i64;

pub const DUE_PK: &str = "WEBHOOKDUE";

/// An endpoint whose attempts have all failed for this long is disabled.
pub const DISABLE_AFTER_FAILING: chrono::Duration = chrono::Duration::days(5);
/// A deleted endpoint's health record goes with this TTL.
const HEALTH_TTL: chrono::Duration = chrono::Duration::days(30);
pub const HEALTH_SK: &str = "HEALTH";

/// An endpoint's delivery health (`WEBHOOK#<id> / HEALTH`), updated after
/// every attempt; its failing rule is shared with the compliance function.
pub use shared::domain::integration_health::EndpointHealth;

/// Record an attempt's outcome; the health after it.
pub async fn note_attempt(store: &shared::store::Store, endpoint_id: &str, delivered: bool, now: DateTime<Utc>) -> Result<EndpointHealth> {
    let update = if delivered {
        "SET last_success_at = :now, consecutive_failures = :zero, #type = :type, #ttl = :ttl REMOVE failing_since"
    } else {
        "SET last_failure_at = :now, failing_since = if_not_exists(failing_since, :now), #type = :type, #ttl = :ttl ADD consecutive_failures :one"
    };
    let mut spec = shared::store::UpdateSpec::new(update)
        .name("#type", "type")
        .name("#ttl", "ttl")
        .value(":now", s(timestamp(now)))
        .value(":type", s("webhook_health"))
        .value(":ttl", shared::store::n((now + HEALTH_TTL).timestamp()));
    spec = if delivered { spec.value(":zero", shared::store::n(0)) } else { spec.value(":one", shared::store::n(1)) };
    let item = store.update(&webhooks::pk(endpoint_id), HEALTH_SK, &spec).await?.unwrap_or_default();
    from_item(item)
}

/// The health of an endpoint (default when no attempt was made yet).
pub async fn health(store: &shared::store::Store, endpoint_id: &str) -> Result<EndpointHealth> {
    Ok(store.get(&webhooks::pk(endpoint_id), HEALTH_SK).await?.unwrap_or_default())
}

/// What time it is: the system clock, or one a test moves by hand so that
/// retry waits pass without waiting.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until moved (tests and the bench).
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn at(now: DateTime<Utc>) -> ManualClock {
        ManualClock(Arc::new(Mutex::new(now)))
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.0.lock().expect("clock") = now;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = WebhookDeliveryStatus)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    Succeeded,
    /// Out of attempts (sent to the DLQ), or its endpoint answered 410, was
    /// disabled or deleted.
    Failed,
}

/// One attempt, as the deliveries log shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = WebhookAttempt)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    pub at: String,
    /// The receiver's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// The start of the response body (at most 512 bytes, lossy UTF-8).
    pub response: String,
    /// Why the attempt failed when no answer says it (refused target,
    /// timeout, connection error, redirect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A webhook message to one endpoint, with its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = WebhookDelivery)]
pub struct Delivery {
    pub id: String,
    pub endpoint_id: String,
    /// The audit action delivered (the payload's `type`).
    pub event_type: String,
    /// `webhook-id`: the same for every attempt of this message.
    pub msg_id: String,
    /// The body as sent, byte for byte (signatures cover it).
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: Vec<Attempt>,
    /// The number of the attempt to make next (1-based).
    pub next_attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// The delivery this one replays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
    /// The SQS message whose attempt is under way, and since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub version: u64,
}

pub fn pk(id: &str) -> String {
    format!("WHDELIVERY#{id}")
}

pub fn list_pk(endpoint_id: &str) -> String {
    format!("WEBHOOKDELIVERIES#{endpoint_id}")
}

impl Delivery {
    /// A delivery of `payload` to an endpoint, to be attempted at `now`.
    pub fn new(id: String, endpoint_id: &str, event_type: &str, payload: String, now: DateTime<Utc>) -> Delivery {
        let at = timestamp(now);
        Delivery {
            msg_id: format!("msg_{}", id.replace('-', "")),
            id,
            endpoint_id: endpoint_id.to_string(),
            event_type: event_type.to_string(),
            payload,
            status: DeliveryStatus::Pending,
            attempts: Vec::new(),
            next_attempt: 1,
            next_attempt_at: Some(at.clone()),
            replay_of: None,
            claimed_by: None,
            claimed_at: None,
            created_at: at.clone(),
            updated_at: at,
            version: 1,
        }
    }

    pub fn to_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(pk(&self.id)));
        item.insert("sk".into(), s("META"));
        item.insert("type".into(), s("webhook_delivery"));
        item.insert("gsi1pk".into(), s(list_pk(&self.endpoint_id)));
        item.insert("gsi1sk".into(), s(format!("{}#{}", self.created_at, self.id)));
        // Only pending deliveries are on the due index (a sparse index).
        if let (DeliveryStatus::Pending, Some(at)) = (self.status, &self.next_attempt_at) {
            item.insert("gsi2pk".into(), s(DUE_PK));
            item.insert("gsi2sk".into(), s(format!("{at}#{}", self.id)));
        }
        Ok(item)
    }

    /// The message that asks for this delivery's next attempt.
    pub fn message(&self) -> DeliveryMessage {
        DeliveryMessage { delivery_id: self.id.clone(), attempt: self.next_attempt }
    }

    fn next_at(&self) -> Option<DateTime<Utc>> {
        self.next_attempt_at.as_deref().and_then(shared::platform::time::parse)
    }
}

/// The SQS message body: which delivery, and which attempt it asks for (a
/// message for an attempt already made is stale and acknowledged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryMessage {
    pub delivery_id: String,
    pub attempt: u32,
}

pub async fn get(store: &shared::store::Store, id: &str) -> Result<Option<Delivery>> {
    store.get(&pk(id), "META").await
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// 410: the receiver says the endpoint is gone for good.
    Gone,
    /// Anything else: retried on the schedule; `retry_after` is the
    /// receiver's `Retry-After`, in seconds.
    Failed { retry_after: Option<i64> },
}

/// Classify a receiver's answer. Redirects are failures: the target was
/// checked, the place it points to was not.
pub fn outcome_of(status: u16, retry_after: Option<&str>, now: DateTime<Utc>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        410 => Outcome::Gone,
        _ => Outcome::Failed { retry_after: retry_after.and_then(|v| retry_after_seconds(v, now)) },
    }
}

/// `Retry-After` as delay-seconds or an HTTP date, in seconds from `now`.
pub fn retry_after_seconds(value: &str, now: DateTime<Utc>) -> Option<i64> {
    let value = value.trim();
    let seconds = match value.parse::<i64>() {
        Ok(n) => n,
        Err(_) => (DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc) - now).num_seconds(),
    };
    Some(seconds.clamp(0, MAX_RETRY_AFTER_SECONDS))
}

/// When the attempt after attempt `made` (1-based) is due, or `None` when
/// the schedule has no more: the schedule's wait, or the receiver's
/// `Retry-After` when longer.
pub fn next_attempt_at(schedule: &[u32], made: u32, now: DateTime<Utc>, retry_after: Option<i64>) -> Option<DateTime<Utc>> {
    let wait = i64::from(*schedule.get(made as usize)?);
    Some(now + chrono::Duration::seconds(wait.max(retry_after.unwrap_or(0))))
}

/// One HTTP attempt: POST `body` to the checked, pinned address of `url`.
pub struct Sent {
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    pub response: String,
    pub error: Option<String>,
    pub latency: Duration,
}

pub async fn post(url: &str, policy: ssrf::Policy, headers: &[(&str, String)], body: &str) -> Sent {
    let started = Instant::now();
    let failed =
        |error: String, started: Instant| Sent { status: None, retry_after: None, response: String::new(), error: Some(error), latency: started.elapsed() };
    // Checked again at each attempt: the URL may have been saved under an
    // older rule, and the name's answer is whatever DNS says now. A client
    // per attempt: it is pinned to the address just checked, so the
    // connection cannot go anywhere DNS says later.
    let (client, target) = match ssrf::guarded_client(url, policy, ATTEMPT_TIMEOUT, "keel-webhooks").await {
        Ok(found) => found,
        Err(error) => return failed(error, started),
    };
    let mut request = client.post(target).header("content-type", "application/json").body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(e) if e.is_timeout() => return failed("timed out".into(), started),
        Err(e) => return failed(format!("connection failed: {e}"), started),
    };
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(String::from);
    let mut snippet = Vec::new();
    // Read only what the log keeps; the rest of a large body is dropped.
    while snippet.len() < SNIPPET_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => snippet.extend_from_slice(&chunk),
            _ => break,
        }
    }
    snippet.truncate(SNIPPET_BYTES);
    let error = (300..400).contains(&status).then(|| "redirects are not followed".to_string());
    Sent { status: Some(status), retry_after, response: String::from_utf8_lossy(&snippet).into_owned(), error, latency: started.elapsed() }
}

/// The webhooks queue's consumer.
#[derive(Clone)]
pub struct Worker {
    pub state: IntegrationsState,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub dlq_url: String,
    pub clock: Arc<dyn Clock>,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    Attempted(u32),
    /// Acknowledged without an attempt, and why.
    Skipped(&'static str),
    /// Not yet due: sent again with the remaining delay.
    Deferred,
}

impl Worker {
    /// An SQS batch: each message on its own, all at once (an attempt may
    /// take up to 15 s; one after another, ten would outlast the
    /// function's timeout). A message whose handling failed stays on the
    /// queue (`batchItemFailures`).
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let outcomes = futures::future::join_all(event.records.into_iter().map(|record| async move {
            let id = record.message_id.clone().unwrap_or_default();
            let result = match serde_json::from_str::<DeliveryMessage>(record.body.as_deref().unwrap_or("")) {
                Ok(message) => self.handle_message(&message, &id).await.map(|_| ()),
                // A body that is no delivery message will never be one.
                Err(e) => {
                    tracing::error!(message_id = %id, error = %e, "not a webhook delivery message; dropped");
                    Ok(())
                }
            };
            (id, result)
        }))
        .await;
        let mut response = SqsBatchResponse::default();
        for (id, result) in outcomes {
            if let Err(e) = result {
                tracing::warn!(message_id = %id, error = %e, "webhook delivery failed; the message stays on the queue");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    pub async fn handle_message(&self, message: &DeliveryMessage, message_id: &str) -> Result<Handled> {
        let store = self.state.platform.store.store();
        let Some(delivery) = get(store, &message.delivery_id).await? else { return Ok(Handled::Skipped("no such delivery")) };
        if delivery.status != DeliveryStatus::Pending {
            return Ok(Handled::Skipped("finished"));
        }
        if message.attempt != delivery.next_attempt {
            return Ok(Handled::Skipped("stale: that attempt was made"));
        }
        let now = self.clock.now();
        if let Some(due) = delivery.next_at()
            && due > now
        {
            // Early (a longer wait in hops of at most 900 s, or the due
            // message raced a delayed one): ask again when due.
            self.send(&delivery.message(), (due - now).num_seconds()).await?;
            return Ok(Handled::Deferred);
        }
        if let (Some(holder), Some(at)) = (&delivery.claimed_by, delivery.claimed_at.as_deref())
            && holder != message_id
            && shared::platform::time::parse(at).is_some_and(|at| now - at < CLAIM_LEASE)
        {
            return Ok(Handled::Skipped("another delivery of this attempt is under way"));
        }
        let endpoint = match webhooks::with_signing_keys(&self.state, &delivery.endpoint_id, now).await {
            Ok(found) => Some(found),
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let Some((endpoint, keys)) = endpoint.filter(|(e, _)| e.enabled) else {
            self.finish_without_attempt(delivery, now).await?;
            return Ok(Handled::Skipped("endpoint disabled or deleted"));
        };
        // Claim: from here a crash leaves the message to be redelivered,
        // and its redelivery (this message id) takes the claim over.
        let mut claimed = delivery.clone();
        claimed.claimed_by = Some(message_id.to_string());
        claimed.claimed_at = Some(timestamp(now));
        let claimed = match save(store, &claimed).await? {
            Some(saved) => saved,
            None => return Ok(Handled::Skipped("claimed by another delivery")),
        };
        let number = claimed.next_attempt;
        let sent_at = self.clock.now();
        let headers = [
            ("webhook-id", claimed.msg_id.clone()),
            ("webhook-timestamp", sent_at.timestamp().to_string()),
            ("webhook-signature", signing::signature_header(&keys, &claimed.msg_id, sent_at.timestamp(), claimed.payload.as_bytes())),
        ];
        let sent = post(&endpoint.url, self.state.webhook_policy, &headers, &claimed.payload).await;
        let finished = self.clock.now();
        self.record(claimed, &endpoint, number, sent_at, sent, finished).await?;
        Ok(Handled::Attempted(number))
    }

    async fn record(&self, claimed: Delivery, endpoint: &WebhookEndpoint, number: u32, sent_at: DateTime<Utc>, sent: Sent, now: DateTime<Utc>) -> Result<()> {
        let store = self.state.platform.store.store();
        let outcome = match (sent.status, &sent.error) {
            (Some(status), None) => outcome_of(status, sent.retry_after.as_deref(), now),
            _ => Outcome::Failed { retry_after: None },
        };
        let mut next = claimed.clone();
        next.attempts.push(Attempt {
            number,
            at: timestamp(sent_at),
            status: sent.status,
            latency_ms: u64::try_from(sent.latency.as_millis()).unwrap_or(u64::MAX),
            response: sent.response,
            error: sent.error,
        });
        next.claimed_by = None;
        next.claimed_at = None;
        next.next_attempt = number + 1;
        let mut retry_in = None;
        let delivered = matches!(outcome, Outcome::Delivered);
        match outcome {
            Outcome::Delivered => {
                next.status = DeliveryStatus::Succeeded;
                next.next_attempt_at = None;
            }
            Outcome::Gone => {
                next.status = DeliveryStatus::Failed;
                next.next_attempt_at = None;
                // The endpoint is disabled with the attempt that learned it
                // is gone, audited as the system's change.
                return self.disable_for_gone(claimed.version, next, endpoint, now).await;
            }
            Outcome::Failed { retry_after } => match next_attempt_at(&endpoint.retry_schedule_seconds, number, now, retry_after) {
                Some(due) => {
                    next.next_attempt_at = Some(timestamp(due));
                    retry_in = Some((due - now).num_seconds());
                }
                None => {
                    next.status = DeliveryStatus::Failed;
                    next.next_attempt_at = None;
                }
            },
        }
        let Some(saved) = save(store, &next).await? else {
            return Err(Error::Conflict(format!("delivery {} changed during its attempt", next.id)));
        };
        if let Some(wait) = retry_in
            && wait <= MAX_SQS_DELAY_SECONDS
        {
            self.send(&saved.message(), wait).await?;
        }
        let health = note_attempt(store, &endpoint.id, delivered, now).await?;
        if let Some(since) = health.failing_since.as_deref().and_then(shared::platform::time::parse)
            && now - since >= DISABLE_AFTER_FAILING
            && endpoint.enabled
        {
            self.disable_for_failing(endpoint, since, now).await?;
        }
        if saved.status == DeliveryStatus::Failed {
            // Out of attempts: kept on the DLQ for an operator.
            self.send_to(&self.dlq_url, &saved.message(), 0).await?;
            tracing::warn!(delivery_id = %saved.id, endpoint_id = %saved.endpoint_id, attempts = saved.attempts.len(), "webhook delivery failed for good");
        }
        Ok(())
    }

    async fn disable_for_gone(&self, expected: u64, mut next: Delivery, endpoint: &WebhookEndpoint, now: DateTime<Utc>) -> Result<()> {
        let journal = &self.state.platform.store;
        next.version = expected + 1;
        next.updated_at = timestamp(now);
        let mut writes = vec![Write::put_versioned(journal.table(), next.to_item()?, expected)?];
        let audit = if endpoint.enabled {
            let mut disabled = endpoint.clone();
            disabled.enabled = false;
            disabled.disabled_reason = Some("the receiver answered 410 Gone".into());
            disabled.version = endpoint.version + 1;
            disabled.updated_at = timestamp(now);
            writes.push(webhooks::replace_write(&self.state, endpoint, &disabled).await?);
            AuditEntry::new(&Actor::system("webhooks"), "webhook.disabled", "webhook", &endpoint.id).changes(Some(endpoint), Some(&disabled))
        } else {
            AuditEntry::new(&Actor::system("webhooks"), "webhook.delivery_gone", "webhook", &endpoint.id)
        };
        journal.commit(writes, &audit).await
    }

    /// Disable an endpoint that failed for `DISABLE_AFTER_FAILING`, and
    /// email its owner, in one transaction with the audit entry. A
    /// concurrent change of the endpoint (an admin's edit) wins: the next
    /// failure tries again.
    async fn disable_for_failing(&self, endpoint: &WebhookEndpoint, since: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
        let journal = &self.state.platform.store;
        let reason = format!("every attempt failed for {} days", DISABLE_AFTER_FAILING.num_days());
        let mut disabled = endpoint.clone();
        disabled.enabled = false;
        disabled.disabled_reason = Some(format!("{reason} (since {})", timestamp(since)));
        disabled.version = endpoint.version + 1;
        disabled.updated_at = timestamp(now);
        let notice = shared::domain::jobs::WebhookDisabledEmail {
            endpoint_id: endpoint.id.clone(),
            url: endpoint.url.clone(),
            owner_id: endpoint.owner_id.clone(),
            reason,
            failing_since: timestamp(since),
            disabled_at: timestamp(now),
        };
        let job = shared::domain::jobs::Job::of(&endpoint.owner_id, &notice)?;
        let writes = vec![webhooks::replace_write(&self.state, endpoint, &disabled).await?, job.create_write(journal.table())?];
        let audit = AuditEntry::new(&Actor::system("webhooks"), "webhook.disabled", "webhook", &endpoint.id)
            .changes(Some(endpoint), Some(&disabled))
            .reason(disabled.disabled_reason.clone().unwrap_or_default());
        match journal.commit(writes, &audit).await {
            Ok(()) => {
                tracing::warn!(endpoint_id = %endpoint.id, failing_since = %timestamp(since), "webhook endpoint disabled after failing for days");
                Ok(())
            }
            Err(Error::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A delivery whose endpoint is disabled or deleted: failed, no attempt.
    async fn finish_without_attempt(&self, delivery: Delivery, now: DateTime<Utc>) -> Result<()> {
        let mut next = delivery;
        next.status = DeliveryStatus::Failed;
        next.next_attempt_at = None;
        next.updated_at = timestamp(now);
        save(self.state.platform.store.store(), &next).await.map(|_| ())
    }

    async fn send(&self, message: &DeliveryMessage, delay_seconds: i64) -> Result<()> {
        self.send_to(&self.queue_url, message, delay_seconds).await
    }

    async fn send_to(&self, queue_url: &str, message: &DeliveryMessage, delay_seconds: i64) -> Result<()> {
        let body = serde_json::to_string(message).map_err(|e| Error::internal(e.to_string()))?;
        let delay = i32::try_from(delay_seconds.clamp(0, MAX_SQS_DELAY_SECONDS)).unwrap_or(0);
        self.sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .delay_seconds(delay)
            .send()
            .await
            .map_err(shared::platform::error::aws("sqs SendMessage (webhooks)"))?;
        Ok(())
    }
}

/// Replace a delivery if nobody changed it since it was read (its version);
/// `None` if somebody did. Delivery state is operational: not audited.
pub async fn save(store: &shared::store::Store, delivery: &Delivery) -> Result<Option<Delivery>> {
    let mut next = delivery.clone();
    next.version = delivery.version + 1;
    next.updated_at = timestamp(Utc::now());
    let write = Write::put_versioned(store.table(), next.to_item()?, delivery.version)?;
    match store.try_transact(std::slice::from_ref(&write)).await? {
        shared::store::Transacted::Done => Ok(Some(next)),
        _ => Ok(None),
    }
}

/// An endpoint's deliveries, newest first (at most `limit`).
pub async fn of_endpoint(store: &shared::store::Store, endpoint_id: &str, limit: i32) -> Result<Vec<Delivery>> {
    let spec = shared::store::QuerySpec {
        index: Some("gsi1"),
        key_condition: "gsi1pk = :pk",
        values: vec![(":pk", s(list_pk(endpoint_id)))],
        forward: false,
        ..Default::default()
    };
    let (items, _) = store.query_page(&spec, None, limit).await?;
    items.into_iter().map(from_item).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn answers_are_classified() {
        let now = at("2026-12-03T12:00:00Z");
        assert_eq!(outcome_of(204, None, now), Outcome::Delivered);
        assert_eq!(outcome_of(410, None, now), Outcome::Gone);
        assert_eq!(outcome_of(301, None, now), Outcome::Failed { retry_after: None });
        assert_eq!(outcome_of(503, Some("120"), now), Outcome::Failed { retry_after: Some(120) });
        assert_eq!(outcome_of(429, Some("Thu, 03 Dec 2026 12:10:00 GMT"), now), Outcome::Failed { retry_after: Some(600) });
        assert_eq!(outcome_of(429, Some("soon"), now), Outcome::Failed { retry_after: None });
        assert_eq!(outcome_of(429, Some("99999999"), now), Outcome::Failed { retry_after: Some(MAX_RETRY_AFTER_SECONDS) });
    }

    #[test]
    fn the_schedule_spaces_attempts_and_retry_after_only_lengthens() {
        let now = at("2026-12-03T12:00:00Z");
        let schedule = webhooks::DEFAULT_RETRY_SCHEDULE;
        assert_eq!(next_attempt_at(&schedule, 1, now, None), Some(at("2026-12-03T12:00:05Z")));
        assert_eq!(next_attempt_at(&schedule, 2, now, None), Some(at("2026-12-03T12:05:00Z")));
        assert_eq!(next_attempt_at(&schedule, 7, now, None), Some(at("2026-12-03T22:00:00Z")));
        assert_eq!(next_attempt_at(&schedule, 8, now, None), None);
        assert_eq!(next_attempt_at(&schedule, 1, now, Some(60)), Some(at("2026-12-03T12:01:00Z")));
        assert_eq!(next_attempt_at(&schedule, 2, now, Some(60)), Some(at("2026-12-03T12:05:00Z")));
    }

    #[test]
    fn only_pending_deliveries_are_due() {
        let mut delivery = Delivery::new(uuid::Uuid::now_v7().to_string(), "e1", "user.created", "{}".into(), at("2026-12-03T12:00:00Z"));
        assert_eq!(shared::store::attr_s(&delivery.to_item().unwrap(), "gsi2pk"), Some(DUE_PK));
        assert!(delivery.msg_id.starts_with("msg_") && !delivery.msg_id.contains('-'));
        delivery.status = DeliveryStatus::Succeeded;
        delivery.next_attempt_at = None;
        assert!(!delivery.to_item().unwrap().contains_key("gsi2pk"));
    }
}
