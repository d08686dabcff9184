//! Analytics connectors (docs/integrations.md, "Analytics connectors"):
//! Keel's domain events (sign-ups, sign-ins, orders, chart actions, from
//! the audit log: `events`) forwarded to Segment, Mixpanel and GA4 in
//! batches within each service's limits (`formats`), by a scheduled run
//! (`ConnectorsFunction`, every minute) that keeps a cursor per connector
//! (`cursor`).
//!
//! Nothing is lost: the cursor moves only past batches the service
//! accepted (or refused for good: those are kept as dead letters and
//! audited). Nothing is doubled: a page's batches are fixed before the
//! first is sent and each sent batch is recorded, so a run that crashed
//! resumes at the batch it was sending; that one batch may reach the
//! service twice, with the same dedup ids (`messageId`, `$insert_id`,
//! GA4's `transaction_id` for purchases), which the service drops.

pub mod cursor;
pub mod events;
pub mod formats;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::audit::{Actor, AuditEntry, Outcome};
use shared::domain::integration_health;
use shared::platform::error::{Error, Result};
use shared::store::{Item, Write, n, s, timestamp, ttl_after};

use crate::delivery::Clock;
use crate::{IntegrationsState, hub, ssrf};
use cursor::Cursor;
use formats::{Batch, Skipped};

/// Entries newer than this may still be committing (an entry's time is
/// taken before its transaction commits); the audit sealer waits as long.
pub const SETTLE: chrono::Duration = chrono::Duration::seconds(60);
/// Audit entries read per page (any number of them may be domain events).
pub const PAGE_ENTRIES: usize = 5000;
/// How long one run may start new batches (the function's timeout is 300 s).
pub const RUN_BUDGET: chrono::Duration = chrono::Duration::seconds(240);
/// One request's timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// A run's hold on a cursor (longer than a run).
const LEASE: chrono::Duration = chrono::Duration::seconds(360);
/// Dead letters are kept this long.
const DEAD_LETTER_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Connector {
    Segment,
    Mixpanel,
    Ga4,
}

impl Connector {
    pub const ALL: &'static [Connector] = &[Connector::Segment, Connector::Mixpanel, Connector::Ga4];

    pub fn name(self) -> &'static str {
        match self {
            Connector::Segment => "segment",
            Connector::Mixpanel => "mixpanel",
            Connector::Ga4 => "ga4",
        }
    }

    fn batches(self, events: &[events::DomainEvent], page_at: DateTime<Utc>, now: DateTime<Utc>) -> (Vec<Batch>, Skipped) {
        match self {
            Connector::Segment => formats::segment(events, now),
            Connector::Mixpanel => formats::mixpanel(events),
            Connector::Ga4 => formats::ga4(events, page_at),
        }
    }

    /// The request's URL and authorization, from the stored configuration.
    fn target(self, value: &dyn Fn(&str) -> String) -> (String, Option<String>) {
        let encode = |v: String| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        match self {
            Connector::Segment => (format!("{}/v1/batch", hub::base(value("endpoint"), "https://api.segment.io")), Some(hub::basic(&value("write_key"), ""))),
            Connector::Mixpanel => (
                format!("{}/import?strict=1&project_id={}", hub::base(value("endpoint"), "https://api.mixpanel.com"), encode(value("project_id"))),
                Some(hub::basic(&value("api_secret"), "")),
            ),
            Connector::Ga4 => (
                format!(
                    "{}/mp/collect?measurement_id={}&api_secret={}",
                    hub::base(value("endpoint"), "https://www.google-analytics.com"),
                    encode(value("measurement_id")),
                    encode(value("api_secret"))
                ),
                None,
            ),
        }
    }
}

/// What one run did for one connector.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RunReport {
    pub connector: &'static str,
    /// `not_configured`, `waiting` (a retry time not reached), `busy`
    /// (another run holds it), `up_to_date`, `forwarded` or `failed`.
    pub status: &'static str,
    pub events: u64,
    pub batches: u64,
    pub dropped: u64,
    pub skipped: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub position: String,
}

/// How a batch went.
enum Sent {
    Accepted,
    /// Try again later (at the time the service asked for, if it did).
    Retry {
        error: String,
        at: Option<DateTime<Utc>>,
    },
    /// Refused for good: the batch is a dead letter.
    Refused {
        status: u16,
        error: String,
    },
}

#[derive(Clone)]
pub struct Forwarder {
    pub state: IntegrationsState,
    pub clock: Arc<dyn Clock>,
}

impl Forwarder {
    /// Every connector, one after another (each has its own cursor and
    /// health: one failing service does not hold up the others).
    pub async fn run(&self) -> Vec<RunReport> {
        let mut reports = Vec::new();
        for connector in Connector::ALL {
            let report = match self.forward(*connector).await {
                Ok(report) => report,
                Err(e) => {
                    tracing::warn!(connector = connector.name(), error = %e, "connector run failed");
                    RunReport { connector: connector.name(), status: "failed", error: Some(e.to_string()), ..RunReport::default() }
                }
            };
            if report.events > 0 || report.status == "failed" {
                tracing::info!(?report, "analytics connector");
            }
            reports.push(report);
        }
        reports
    }

    /// Forward what is due for one connector.
    pub async fn forward(&self, connector: Connector) -> Result<RunReport> {
        let name = connector.name();
        let mut report = RunReport { connector: name, status: "not_configured", ..RunReport::default() };
        let Some((view, sealed)) = hub::stored(&self.state, name).await? else { return Ok(report) };
        let store = self.state.platform.store.store();
        let started = self.clock.now();
        let (mut cursor, mut is_new) = match cursor::load(store, name).await? {
            Some(found) => (found, false),
            // Forwarding starts when the connector was configured.
            None => (Cursor { position: view.updated_at.clone(), ..Cursor::default() }, true),
        };
        report.position = cursor.position.clone();
        if cursor.retry_at.as_deref().is_some_and(|at| at > timestamp(started).as_str()) {
            report.status = "waiting";
            return Ok(report);
        }
        if cursor.lease_until.as_deref().is_some_and(|until| until > timestamp(started).as_str()) {
            report.status = "busy";
            return Ok(report);
        }
        cursor.lease_until = Some(timestamp(started + LEASE));
        cursor.last_run_at = Some(timestamp(started));
        if !cursor::save(store, name, &mut cursor, is_new).await? {
            report.status = "busy";
            return Ok(report);
        }
        is_new = false;
        let secrets = hub::open_secrets(&self.state, name, sealed.as_ref()).await?;
        let value = |key: &str| view.settings.get(key).or_else(|| secrets.get(key)).cloned().unwrap_or_default();
        let (url, authorization) = connector.target(&value);
        let outcome = self.forward_pages(connector, &url, authorization.as_deref(), &mut cursor, &mut report, started).await;
        cursor.lease_until = None;
        let error = match outcome {
            Ok(()) => None,
            Err(Error::Conflict(e)) => {
                // Another run took the cursor over (our lease ran out): it
                // goes on from what we recorded.
                report.status = "busy";
                report.error = Some(e);
                return Ok(report);
            }
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = &error {
            report.status = "failed";
            report.error = Some(e.clone());
        }
        if report.status != "failed" {
            cursor.retry_at = None;
        }
        cursor::save(store, name, &mut cursor, is_new).await?;
        report.position = cursor.position.clone();
        // Health: a run that could not send, or whose batches were
        // refused, is a failure; one that sent is a success.
        let outcome = match (&report.error, report.status) {
            (Some(e), _) if report.status == "failed" || report.dropped > 0 => Some(Err(e.clone())),
            _ if report.events > 0 => Some(Ok(())),
            _ => None,
        };
        if let Some(outcome) = outcome {
            integration_health::record(store, name, outcome, self.clock.now()).await?;
        }
        Ok(report)
    }

    async fn forward_pages(
        &self,
        connector: Connector,
        url: &str,
        authorization: Option<&str>,
        cursor: &mut Cursor,
        report: &mut RunReport,
        started: DateTime<Utc>,
    ) -> Result<()> {
        let name = connector.name();
        let store = self.state.platform.store.store();
        report.status = "up_to_date";
        while self.clock.now() - started < RUN_BUDGET {
            // The page in flight, or a new one of settled entries.
            let now = self.clock.now();
            let (items, page_end, page_at) = match (&cursor.page_end, &cursor.page_at) {
                (Some(end), Some(at)) => {
                    let at = DateTime::parse_from_rfc3339(at).map_err(|e| Error::internal(format!("cursor page_at: {e}")))?.with_timezone(&Utc);
                    let until = end.split_once('#').map_or(end.as_str(), |(ts, _)| ts);
                    let items = shared::audit::journal::items_after(store, &cursor.position, until, usize::MAX).await?;
                    let items: Vec<Item> = items.into_iter().filter(|i| events::position(i).is_some_and(|p| p <= end.as_str())).collect();
                    (items, end.clone(), at)
                }
                _ => {
                    let until = timestamp(now - SETTLE);
                    if cursor.position.as_str() >= until.as_str() {
                        return Ok(());
                    }
                    let items = shared::audit::journal::items_after(store, &cursor.position, &until, PAGE_ENTRIES).await?;
                    let Some(last) = items.last().and_then(events::position).map(str::to_string) else {
                        // Nothing new: move up to the settled instant.
                        cursor.position = until;
                        return Ok(());
                    };
                    cursor.page_end = Some(last.clone());
                    cursor.page_at = Some(timestamp(now));
                    cursor.batches_sent = 0;
                    if !cursor::save(store, name, cursor, false).await? {
                        return Err(Error::Conflict("the cursor was written by another run".into()));
                    }
                    (items, last, now)
                }
            };
            let orders = events::load_orders(store, &events::orders_named(&items)).await?;
            let domain: Vec<_> = items.iter().filter_map(|i| events::from_audit(i, &orders)).collect();
            let (batches, skipped) = connector.batches(&domain, page_at, now);
            report.skipped += (skipped.too_large.len() + skipped.too_old.len()) as u64;
            while cursor.batches_sent < batches.len() {
                if self.clock.now() - started >= RUN_BUDGET {
                    return Ok(());
                }
                let batch = &batches[cursor.batches_sent];
                match self.send(url, authorization, batch).await {
                    Sent::Accepted => {
                        report.events += batch.event_ids.len() as u64;
                        report.batches += 1;
                        report.status = "forwarded";
                        cursor.forwarded += batch.event_ids.len() as u64;
                        cursor.batches_sent += 1;
                        if !cursor::save(store, name, cursor, false).await? {
                            return Err(Error::Conflict("the cursor was written by another run".into()));
                        }
                    }
                    Sent::Retry { error, at } => {
                        let failures = integration_health::get(store, name).await?.map_or(0, |h| h.consecutive_failures);
                        // A minute, doubling per failure in a row, at most an hour.
                        let backoff = chrono::Duration::seconds(60 * (1i64 << failures.min(6)).min(60));
                        cursor.retry_at = Some(timestamp(at.unwrap_or(self.clock.now() + backoff)));
                        report.status = "failed";
                        report.error = Some(error);
                        return Ok(());
                    }
                    Sent::Refused { status, error } => {
                        self.drop_batch(connector, cursor, batch, status, &error).await?;
                        report.dropped += batch.event_ids.len() as u64;
                        report.error = Some(error);
                    }
                }
            }
            cursor.position = page_end;
            cursor.page_end = None;
            cursor.page_at = None;
            cursor.batches_sent = 0;
            if !cursor::save(store, name, cursor, false).await? {
                return Err(Error::Conflict("the cursor was written by another run".into()));
            }
        }
        Ok(())
    }

    /// One request; what the answer means for the batch.
    async fn send(&self, url: &str, authorization: Option<&str>, batch: &Batch) -> Sent {
        let (client, target) = match ssrf::guarded_client(url, self.state.webhook_policy, REQUEST_TIMEOUT, "keel-connectors").await {
            Ok(found) => found,
            Err(error) => return Sent::Retry { error, at: None },
        };
        let mut request = client.post(target).header("content-type", "application/json").body(batch.body.clone());
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return Sent::Retry { error: format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()), at: None },
            Err(e) => return Sent::Retry { error: format!("connection failed: {e}"), at: None },
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map(|secs| self.clock.now() + chrono::Duration::seconds(secs.clamp(1, 3600)));
        let text: String = response.text().await.unwrap_or_default().chars().take(300).collect();
        match status {
            200..=299 => Sent::Accepted,
            401 | 403 => Sent::Retry { error: format!("the service refused the credentials ({status}): {text}"), at: None },
            408 | 429 | 500..=599 => Sent::Retry { error: format!("the service answered {status}: {text}"), at: retry_after },
            // Redirects are not followed (the SSRF guard): a misconfigured endpoint.
            300..=399 => Sent::Retry { error: format!("the service redirected ({status}): check the endpoint setting"), at: None },
            _ => Sent::Refused { status, error: format!("the service refused a batch ({status}): {text}") },
        }
    }

    /// Keep a refused batch (its event ids and the answer) as a dead
    /// letter, audited, and move past it, in one transaction.
    async fn drop_batch(&self, connector: Connector, cursor: &mut Cursor, batch: &Batch, status: u16, error: &str) -> Result<()> {
        let name = connector.name();
        let store = &self.state.platform.store;
        let now = self.clock.now();
        let first = batch.event_ids.first().cloned().unwrap_or_default();
        let dead = Item::from([
            ("pk".to_string(), s(cursor::pk(name))),
            ("sk".to_string(), s(format!("DEADLETTER#{}#{first}", timestamp(now)))),
            ("type".to_string(), s("connector_dead_letter")),
            ("event_ids".to_string(), aws_sdk_dynamodb::types::AttributeValue::Ss(batch.event_ids.clone())),
            ("http_status".to_string(), n(status)),
            ("error".to_string(), s(error)),
            ("expires_at".to_string(), n(ttl_after(DEAD_LETTER_DAYS * 86_400))),
        ]);
        let read_version = cursor.version;
        cursor.batches_sent += 1;
        cursor.dropped += batch.event_ids.len() as u64;
        let writes = vec![
            Write::put_if(
                store.table(),
                cursor::item(name, cursor)?,
                &cursor::unchanged(Some(read_version)),
                Some(Error::Conflict("the cursor was written by another run".into())),
            )?,
            Write::put(store.table(), dead)?,
        ];
        let audit = AuditEntry::at(now, &Actor::system("connectors"), "integration.events_dropped", "integration", name)
            .outcome(Outcome::Failure)
            .reason(format!("{} events refused: {error}", batch.event_ids.len()));
        store.commit(writes, &audit).await?;
        cursor.version += 1;
        Ok(())
    }
}
