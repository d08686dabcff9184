//! Long work as jobs, through an outbox: the API writes a job record
//! (`queued`) in the same transaction as the change that asks for it and its
//! audit entry, and sends nothing. The table's stream carries the new record
//! to the dispatcher (the `streams` worker), which sends the SQS message
//! naming it; a sweeper re-sends jobs still queued after a while
//! (`stale_queued`). So a job can never be committed and not queued. The
//! `jobs` worker claims a job by a versioned write before running it, so a
//! message sent twice runs it once (`Claim`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::platform::error::{Error, Result};
use crate::store::{Item, Store, Write, s, timestamp, to_item};

/// The gsi3 partition of the reports shared with the team (`JobKind::Report`
/// jobs whose parameters say `shared`).
pub const SHARED_REPORTS: &str = "REPORTS#shared";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    pub processed: u64,
    pub total: u64,
    /// Recent throughput (long jobs that report it, e.g. exports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_per_second: Option<u64>,
    /// Estimated seconds until done, from the throughput so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
    /// The step under way, for jobs of several steps (`processed` and
    /// `total` are then the step's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

/// Every kind of job: producers create them, the worker matches on them
/// (exhaustively, so a new kind cannot be created without being run). Each
/// has one payload type (`JobPayload`). Stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Email an invited user their sign-up link (`InviteEmail`).
    InviteEmail,
    /// Tell a user about a security event on their account (`SecurityEmail`).
    SecurityEmail,
    /// Tell a chart's owner why it was rejected or hidden (`ChartModerationEmail`).
    ChartModerationEmail,
    /// Tell a saved search's owner about its new matches (`SavedSearchAlert`).
    SavedSearchAlert,
    /// Tell a webhook endpoint's owner it was disabled (`WebhookDisabledEmail`).
    WebhookDisabledEmail,
    /// Tell the security contacts about a new high-severity security event
    /// (`SecurityAlertEmail`).
    SecurityAlertEmail,
    /// A verifiable export of the audit log.
    AuditExport,
    /// A dataset or own-data export (`export::ExportParams`).
    DataExport,
    /// An uploaded file validated, then applied (`data_jobs::ImportParams`).
    DataImport,
    /// Bulk update, soft delete or restore (`data_jobs::BulkParams`); run as
    /// `bulk_segment` messages, one per segment of its plan.
    BulkUpdate,
    BulkDelete,
    BulkRestore,
    /// Everything Keel holds about a person, as one zip.
    GdprExport,
    /// A person's erasure, with its signed certificate.
    Erasure,
    /// Recompute the revenue rollups from the orders (`AnalyticsRefresh`).
    AnalyticsRefresh,
    /// Generate a report (the `reports` crate's `ReportJob`): run its
    /// specs, render each format, store the files.
    Report,
    /// A full or incremental backup of the table (`backups::BackupJob`).
    Backup,
    /// Restore a backup into a scratch table and compare it with its
    /// manifest (`backups::VerifyJob`).
    BackupVerify,
    /// Restore a backup into a new table (`backups::RestoreJob`).
    BackupRestore,
    /// Email a pending marketing subscriber their confirmation link
    /// (`marketing::ConfirmationEmail`).
    MarketingConfirmation,
    /// Send a marketing email to a list (`marketing::Campaign`).
    MarketingCampaign,
    /// Add a subscriber to, or remove one from, SES's contact list
    /// (`marketing::ContactSync`).
    MarketingContact,
}

impl JobKind {
    pub const ALL: &'static [JobKind] = &[
        JobKind::InviteEmail,
        JobKind::SecurityEmail,
        JobKind::ChartModerationEmail,
        JobKind::SavedSearchAlert,
        JobKind::WebhookDisabledEmail,
        JobKind::SecurityAlertEmail,
        JobKind::AuditExport,
        JobKind::DataExport,
        JobKind::DataImport,
        JobKind::BulkUpdate,
        JobKind::BulkDelete,
        JobKind::BulkRestore,
        JobKind::GdprExport,
        JobKind::Erasure,
        JobKind::AnalyticsRefresh,
        JobKind::Report,
        JobKind::Backup,
        JobKind::BackupVerify,
        JobKind::BackupRestore,
        JobKind::MarketingConfirmation,
        JobKind::MarketingCampaign,
        JobKind::MarketingContact,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::InviteEmail => "invite_email",
            JobKind::SecurityEmail => "security_email",
            JobKind::ChartModerationEmail => "chart_moderation_email",
            JobKind::SavedSearchAlert => "saved_search_alert",
            JobKind::WebhookDisabledEmail => "webhook_disabled_email",
            JobKind::SecurityAlertEmail => "security_alert_email",
            JobKind::AuditExport => "audit_export",
            JobKind::DataExport => "data_export",
            JobKind::DataImport => "data_import",
            JobKind::BulkUpdate => "bulk_update",
            JobKind::BulkDelete => "bulk_delete",
            JobKind::BulkRestore => "bulk_restore",
            JobKind::GdprExport => "gdpr_export",
            JobKind::Erasure => "erasure",
            JobKind::AnalyticsRefresh => "analytics_refresh",
            JobKind::Report => "report",
            JobKind::Backup => "backup",
            JobKind::BackupVerify => "backup_verify",
            JobKind::BackupRestore => "backup_restore",
            JobKind::MarketingConfirmation => "marketing_confirmation",
            JobKind::MarketingCampaign => "marketing_campaign",
            JobKind::MarketingContact => "marketing_contact",
        }
    }

    /// Run as one message per segment of a plan (`data_jobs`), not one
    /// message per job.
    pub fn is_bulk(self) -> bool {
        matches!(self, JobKind::BulkUpdate | JobKind::BulkDelete | JobKind::BulkRestore)
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parameters of an `analytics_refresh` job: none (it recomputes
/// everything the orders hold up to when it runs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyticsRefresh {}

impl JobPayload for AnalyticsRefresh {
    fn kind(&self) -> JobKind {
        JobKind::AnalyticsRefresh
    }
}

/// The parameters of one kind of job: `Job::of` stores them, the worker
/// reads them back with `Job::payload`.
pub trait JobPayload: Serialize + DeserializeOwned {
    fn kind(&self) -> JobKind;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    pub id: String,
    /// What to do; the worker dispatches on it.
    pub kind: JobKind,
    pub owner_id: String,
    pub status: JobStatus,
    #[schema(value_type = Object)]
    pub params: Value,
    pub progress: Progress,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub attempts: u32,
    /// The worker's own state of a running job (e.g. the multipart upload
    /// in progress), so a redelivered message can clean up or continue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub checkpoint: Option<Value>,
    /// Bumped by each change that asks for the job to run (1 when created
    /// to run at once; an import waits for its file at 0). The outbox
    /// dispatcher sends a message when it goes up; the worker's own
    /// re-queueing of a failed attempt leaves it (SQS redelivers).
    #[serde(default)]
    pub run_requests: u32,
    /// The SQS message whose delivery runs this attempt (`Claim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub version: u64,
}

/// The SQS message body: just enough to find the job record. `kind` is the
/// job's kind, or `bulk_segment` for one segment of a bulk job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    pub job_id: String,
    pub kind: String,
}

impl Job {
    pub fn new(kind: JobKind, owner_id: &str, params: Value) -> Job {
        let now = timestamp(chrono::Utc::now());
        Job {
            id: uuid::Uuid::now_v7().to_string(),
            kind,
            owner_id: owner_id.to_string(),
            status: JobStatus::Queued,
            params,
            progress: Progress::default(),
            result: None,
            error: None,
            attempts: 0,
            checkpoint: None,
            run_requests: 1,
            claimed_by: None,
            created_at: now.clone(),
            updated_at: now,
            version: 1,
        }
    }

    pub fn pk(id: &str) -> String {
        crate::store::ids::JobId::pk_of(id)
    }

    pub fn to_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        let order = format!("{}#{}", self.created_at, self.id);
        item.insert("pk".into(), s(Job::pk(&self.id)));
        item.insert("sk".into(), s("META"));
        item.insert("gsi1pk".into(), s(format!("OWNER#{}", self.owner_id)));
        item.insert("gsi1sk".into(), s(order.clone()));
        item.insert("gsi2pk".into(), s(format!("JOBS#{}", self.status.as_str())));
        // Reports shared with the team are listed to everyone who reads reports.
        if self.kind == JobKind::Report && self.params.get("shared").and_then(Value::as_bool) == Some(true) {
            item.insert("gsi3pk".into(), s(SHARED_REPORTS));
            item.insert("gsi3sk".into(), s(order.clone()));
        }
        item.insert("gsi2sk".into(), s(order));
        item.insert("type".into(), s("job"));
        Ok(item)
    }

    /// A job carrying `payload` as its parameters.
    pub fn of<P: JobPayload>(owner_id: &str, payload: &P) -> Result<Job> {
        let params = serde_json::to_value(payload).map_err(|e| Error::internal(format!("job parameters: {e}")))?;
        Ok(Job::new(payload.kind(), owner_id, params))
    }

    /// The parameters, as the payload type of this job's kind.
    pub fn payload<P: JobPayload>(&self) -> Result<P> {
        serde_json::from_value(self.params.clone()).map_err(|e| Error::internal(format!("{} job parameters: {e}", self.kind)))
    }

    pub fn message(&self) -> JobMessage {
        JobMessage { job_id: self.id.clone(), kind: self.kind.as_str().to_string() }
    }

    /// The write that creates the record; commit it with its audit entry.
    pub fn create_write(&self, table: &str) -> Result<Write> {
        Write::put_new(table, self.to_item()?, Error::Conflict("job already exists".into()))
    }
}

pub async fn get(store: &Store, id: &str) -> Result<Option<Job>> {
    store.get(&Job::pk(id), "META").await
}

/// Send job messages (SendMessageBatch, 10 a call). Called by the outbox
/// dispatcher and the sweeper only: producers commit the job record and
/// nothing else. Fails if any message was not accepted.
pub async fn send(sqs: &aws_sdk_sqs::Client, queue_url: &str, bodies: &[String]) -> Result<()> {
    crate::platform::aws::send_batch(sqs, queue_url, bodies, "job").await
}

/// The job a changed table item asks to run, if any: a job record whose
/// `run_requests` went up (created to run, or asked to run again), queued
/// — or a bulk job, created `running` with its segments planned. The outbox
/// dispatcher asks this of every record of the table's stream.
pub fn requested_run(old: Option<&Value>, new: Option<&Value>) -> Option<Job> {
    let new = new?;
    if new.get("type").and_then(Value::as_str) != Some("job") || new.get("sk").and_then(Value::as_str) != Some("META") {
        return None;
    }
    let job: Job = serde_json::from_value(new.clone()).ok()?;
    let before = old.and_then(|o| o.get("run_requests")).and_then(Value::as_u64).unwrap_or(0);
    let runnable = job.status == JobStatus::Queued || (job.kind.is_bulk() && job.status == JobStatus::Running);
    (u64::from(job.run_requests) > before && runnable).then_some(job)
}

/// Jobs still `queued` and untouched for `older_than` (their message was
/// lost, or the dispatcher failed for good): the sweeper sends them again.
/// A job running or finished is not among them; a duplicate message for a
/// job that is still queued is harmless (`Claim`).
pub async fn stale_queued(store: &Store, older_than: chrono::Duration, limit: usize) -> Result<Vec<Job>> {
    let before = timestamp(chrono::Utc::now() - older_than);
    let spec = crate::store::QuerySpec {
        index: Some("gsi2"),
        key_condition: "gsi2pk = :pk",
        filter: "updated_at < :before AND run_requests > :zero",
        names: Vec::new(),
        values: vec![(":pk", s("JOBS#queued")), (":before", s(before)), (":zero", crate::store::n(0))],
        forward: true,
        ..Default::default()
    };
    let mut jobs = Vec::new();
    let mut pages = store.query_pages(&spec, None);
    while let Some(items) = pages.next(Some(200)).await? {
        jobs.extend(items.into_iter().filter_map(|item| crate::store::from_item::<Job>(item).ok()));
        if jobs.len() >= limit {
            break;
        }
    }
    jobs.truncate(limit);
    Ok(jobs)
}

/// The sending side of the outbox: turns committed job records into SQS
/// messages. The streams worker runs `dispatch` on every stream record; the
/// scheduler runs `resend_stale` as the sweeper.
#[derive(Clone, Debug)]
pub struct Outbox {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

/// A job still queued this long after its last change has lost its message.
pub const STALE_AFTER: chrono::Duration = chrono::Duration::minutes(5);

impl Outbox {
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Outbox {
        Outbox { sqs, queue_url: queue_url.into() }
    }

    /// The messages a job asks for: one naming it, or for a bulk job one
    /// per segment of its plan.
    pub fn messages(job: &Job) -> Result<Vec<String>> {
        fn body<T: Serialize>(message: &T) -> Result<String> {
            serde_json::to_string(message).map_err(|e| Error::internal(e.to_string()))
        }
        if job.kind.is_bulk() {
            let params: crate::domain::data_jobs::BulkParams = job.payload()?;
            crate::domain::data_jobs::SegmentMessage::all(&job.id, params.segments).iter().map(body).collect()
        } else {
            Ok(vec![body(&job.message())?])
        }
    }

    /// Send what one changed table item asks for (most ask for nothing);
    /// how many messages were sent. An error leaves the stream record to be
    /// retried, so a committed job is always sent at least once.
    pub async fn dispatch(&self, old: Option<&Value>, new: Option<&Value>) -> Result<usize> {
        let Some(job) = requested_run(old, new) else { return Ok(0) };
        let bodies = Outbox::messages(&job)?;
        send(&self.sqs, &self.queue_url, &bodies).await?;
        tracing::info!(job_id = %job.id, kind = %job.kind, messages = bodies.len(), "job sent from the outbox");
        Ok(bodies.len())
    }

    /// The sweeper: send again the jobs still queued `older_than` after their
    /// last change (at most 100 a run); how many were sent.
    pub async fn resend_stale(&self, store: &Store, older_than: chrono::Duration) -> Result<usize> {
        let stale = stale_queued(store, older_than, 100).await?;
        let mut bodies = Vec::new();
        for job in &stale {
            bodies.extend(Outbox::messages(job)?);
        }
        send(&self.sqs, &self.queue_url, &bodies).await?;
        if !stale.is_empty() {
            tracing::warn!(jobs = stale.len(), "queued jobs re-sent by the sweeper");
        }
        Ok(stale.len())
    }
}

/// How a delivery of a job's message may proceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Run it: the record is queued, or its running attempt is this same
    /// message redelivered (a crashed attempt), or it has gone quiet.
    Run,
    /// Acknowledge without running: it is finished, or another delivery of
    /// it is running now (a duplicate message).
    Skip(&'static str),
}

/// How long a running attempt owns its job without writing to it before
/// another message may take it over (jobs save progress as they go).
pub const RUNNING_LEASE: chrono::Duration = chrono::Duration::minutes(30);

impl Job {
    /// Whether the delivery of message `message_id` at `now` runs this job.
    pub fn claim(&self, message_id: &str, now: chrono::DateTime<chrono::Utc>) -> Claim {
        if self.status.is_final() {
            return Claim::Skip("finished");
        }
        if self.status == JobStatus::Running && self.claimed_by.as_deref().is_some_and(|m| m != message_id) {
            let quiet = chrono::DateTime::parse_from_rfc3339(&self.updated_at).map(|t| now - t.with_timezone(&chrono::Utc) > RUNNING_LEASE).unwrap_or(true);
            if !quiet {
                return Claim::Skip("another delivery is running it");
            }
        }
        Claim::Run
    }
}

/// Replace the job record if nobody else changed it (version check); returns
/// the stored job. Job state changes are operational, not audited one by one.
pub async fn save(store: &Store, job: &Job) -> Result<Job> {
    let mut next = job.clone();
    next.version = job.version + 1;
    next.updated_at = timestamp(chrono::Utc::now());
    let write = Write::put_versioned(store.table(), next.to_item()?, job.version)?;
    match store.transact(vec![write]).await {
        Ok(()) => Ok(next),
        Err(Error::Conflict(_)) => Err(Error::Conflict(format!("job {} changed concurrently", job.id))),
        Err(e) => Err(e),
    }
}

/// Parameters of a `security_email` job. No secrets: the email only says
/// what happened, when, and what to do if it was not expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityEmail {
    pub user_id: String,
    pub event: SecurityEvent,
    /// When it happened (RFC 3339).
    pub occurred_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityEvent {
    /// An administrator removed the user's two-factor authentication.
    MfaReset,
}

impl JobPayload for SecurityEmail {
    fn kind(&self) -> JobKind {
        JobKind::SecurityEmail
    }
}

/// Parameters of an `invite_email` job: the invited user (the link is made
/// when the email is sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteEmail {
    pub user_id: String,
}

impl JobPayload for InviteEmail {
    fn kind(&self) -> JobKind {
        JobKind::InviteEmail
    }
}

/// Parameters of a `chart_moderation_email` job: the decision as the owner
/// may see it (the configured reason's label; never the moderator's note).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartModerationEmail {
    pub chart_id: String,
    /// `reject` or `hide`.
    pub action: String,
    pub reason: String,
    pub reason_label: String,
}

impl JobPayload for ChartModerationEmail {
    fn kind(&self) -> JobKind {
        JobKind::ChartModerationEmail
    }
}

/// Parameters of a `saved_search_alert` job: what the search function's
/// alert check found, as the owner may see it (run with the owner's
/// permissions when it was checked), so the worker only writes the email.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSearchAlert {
    pub saved_search_id: String,
    pub name: String,
    /// The window checked: records created in `[since, until)`.
    pub since: String,
    pub until: String,
    /// How many new records match (the email lists the first few).
    pub total: u64,
    pub hits: Vec<AlertHit>,
}

/// One new match, as an email line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertHit {
    /// `users`, `charts`, `orders` or `audit`.
    #[serde(rename = "type")]
    pub doc_type: String,
    pub id: String,
    /// What the record is called, as the owner may read it.
    pub label: String,
}

impl JobPayload for SavedSearchAlert {
    fn kind(&self) -> JobKind {
        JobKind::SavedSearchAlert
    }
}

/// Parameters of a `webhook_disabled_email` job: which endpoint stopped
/// receiving events, why and since when, for its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDisabledEmail {
    pub endpoint_id: String,
    pub url: String,
    pub owner_id: String,
    pub reason: String,
    /// The first failed attempt with no success since (RFC 3339).
    pub failing_since: String,
    pub disabled_at: String,
}

impl JobPayload for WebhookDisabledEmail {
    fn kind(&self) -> JobKind {
        JobKind::WebhookDisabledEmail
    }
}

/// Parameters of a `security_alert_email` job: a new high-severity
/// security event, for the security contacts named when it was detected
/// (the setting at that time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityAlertEmail {
    pub event_id: String,
    pub kind: String,
    pub severity: String,
    pub summary: String,
    pub recommendation: String,
    pub occurred_at: String,
    pub contacts: Vec<String>,
}

impl JobPayload for SecurityAlertEmail {
    fn kind(&self) -> JobKind {
        JobKind::SecurityAlertEmail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_stored_by_their_names() {
        for kind in JobKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), Value::String(kind.as_str().into()));
        }
    }

    fn job(status: JobStatus, claimed_by: Option<&str>, updated_at: chrono::DateTime<chrono::Utc>) -> Job {
        let mut job = Job::new(JobKind::InviteEmail, "owner", Value::Null);
        job.status = status;
        job.claimed_by = claimed_by.map(str::to_string);
        job.updated_at = timestamp(updated_at);
        job
    }

    #[test]
    fn a_second_message_does_not_run_a_running_job() {
        let now = chrono::Utc::now();
        assert_eq!(job(JobStatus::Queued, None, now).claim("m1", now), Claim::Run);
        assert_eq!(job(JobStatus::Running, Some("m1"), now).claim("m2", now), Claim::Skip("another delivery is running it"));
        // The same message redelivered: its attempt crashed; take it over.
        assert_eq!(job(JobStatus::Running, Some("m1"), now).claim("m1", now), Claim::Run);
        // Quiet past the lease: the running attempt is gone.
        assert_eq!(job(JobStatus::Running, Some("m1"), now - RUNNING_LEASE - chrono::Duration::seconds(1)).claim("m2", now), Claim::Run);
        assert_eq!(job(JobStatus::Succeeded, Some("m1"), now).claim("m1", now), Claim::Skip("finished"));
    }

    fn image(job: &Job) -> Value {
        serde_dynamo::from_item(job.to_item().unwrap()).unwrap()
    }

    #[test]
    fn the_outbox_sends_jobs_asked_to_run_once() {
        let queued = Job::new(JobKind::DataExport, "o", Value::Null);
        assert_eq!(requested_run(None, Some(&image(&queued))).map(|j| j.id), Some(queued.id.clone()));
        // Progress or a re-queued attempt: no new request, no message.
        let mut later = queued.clone();
        later.progress.processed = 10;
        assert!(requested_run(Some(&image(&queued)), Some(&image(&later))).is_none());
        // An import waits for its file, then is asked to run.
        let mut waiting = Job::new(JobKind::DataImport, "o", Value::Null);
        waiting.run_requests = 0;
        assert!(requested_run(None, Some(&image(&waiting))).is_none());
        let mut started = waiting.clone();
        started.run_requests = 1;
        assert!(requested_run(Some(&image(&waiting)), Some(&image(&started))).is_some());
        let mut bulk = Job::new(JobKind::BulkDelete, "o", Value::Null);
        bulk.status = JobStatus::Running;
        assert!(requested_run(None, Some(&image(&bulk))).is_some());
        let mut running = queued.clone();
        running.status = JobStatus::Running;
        assert!(requested_run(None, Some(&image(&running))).is_none());
        assert!(requested_run(None, Some(&serde_json::json!({"type": "user", "sk": "META"}))).is_none());
        assert!(requested_run(Some(&image(&queued)), None).is_none());
    }
}
