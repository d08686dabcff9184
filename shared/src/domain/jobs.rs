//! Long work as jobs: the API writes a job record (`queued`) in the same
//! transaction as its audit entry, then sends an SQS message naming it; the
//! `jobs` worker picks the message up, moves the record through `running` to
//! a final state, and treats a redelivered message for a finished job as done.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::platform::error::{Error, Result};
use crate::store::{Item, Store, Write, s, timestamp, to_item};

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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    pub id: String,
    /// What to do, e.g. `invite_email`; the worker dispatches on it.
    pub kind: String,
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
    pub created_at: String,
    pub updated_at: String,
    pub version: u64,
}

/// The SQS message body: just enough to find the job record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    pub job_id: String,
    pub kind: String,
}

impl Job {
    pub fn new(kind: &str, owner_id: &str, params: Value) -> Job {
        let now = timestamp(chrono::Utc::now());
        Job {
            id: uuid::Uuid::now_v7().to_string(),
            kind: kind.to_string(),
            owner_id: owner_id.to_string(),
            status: JobStatus::Queued,
            params,
            progress: Progress::default(),
            result: None,
            error: None,
            attempts: 0,
            checkpoint: None,
            created_at: now.clone(),
            updated_at: now,
            version: 1,
        }
    }

    pub fn pk(id: &str) -> String {
        format!("JOB#{id}")
    }

    pub fn to_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        let order = format!("{}#{}", self.created_at, self.id);
        item.insert("pk".into(), s(Job::pk(&self.id)));
        item.insert("sk".into(), s("META"));
        item.insert("gsi1pk".into(), s(format!("OWNER#{}", self.owner_id)));
        item.insert("gsi1sk".into(), s(order.clone()));
        item.insert("gsi2pk".into(), s(format!("JOBS#{}", self.status.as_str())));
        item.insert("gsi2sk".into(), s(order));
        item.insert("type".into(), s("job"));
        Ok(item)
    }

    pub fn message(&self) -> JobMessage {
        JobMessage { job_id: self.id.clone(), kind: self.kind.clone() }
    }

    /// The write that creates the record; commit it with its audit entry.
    pub fn create_write(&self, table: &str) -> Result<Write> {
        Write::put_new(table, self.to_item()?, Error::Conflict("job already exists".into()))
    }
}

pub async fn get(store: &Store, id: &str) -> Result<Option<Job>> {
    store.get(&Job::pk(id), "META").await
}

/// Send the message that starts a committed job.
pub async fn dispatch(sqs: &aws_sdk_sqs::Client, queue_url: &str, job: &Job) -> Result<()> {
    let body = serde_json::to_string(&job.message()).map_err(|e| Error::internal(e.to_string()))?;
    sqs.send_message()
        .queue_url(queue_url)
        .message_body(body)
        .send()
        .await
        .map_err(crate::platform::error::aws("sqs SendMessage"))?;
    Ok(())
}

/// Replace the job record if nobody else changed it (version check); returns
/// the stored job. Job state changes are operational, not audited one by one.
pub async fn save(store: &Store, job: &Job) -> Result<Job> {
    let mut next = job.clone();
    next.version = job.version + 1;
    next.updated_at = timestamp(chrono::Utc::now());
    let result = store
        .client
        .put_item()
        .table_name(&store.table)
        .set_item(Some(next.to_item()?))
        .condition_expression("#v = :v")
        .expression_attribute_names("#v", "version")
        .expression_attribute_values(":v", crate::store::n(job.version))
        .send()
        .await;
    match result {
        Ok(_) => Ok(next),
        Err(e) if e.as_service_error().map(|s| s.is_conditional_check_failed_exception()).unwrap_or(false) => {
            Err(Error::Conflict(format!("job {} changed concurrently", job.id)))
        }
        Err(e) => Err(crate::platform::error::aws("dynamodb PutItem (job)")(e)),
    }
}

/// The job kind that emails a user about a security event on their account.
pub const SECURITY_EMAIL: &str = "security_email";

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

impl SecurityEmail {
    /// The job that sends this email, owned by whoever caused it.
    pub fn job(&self, owner_id: &str) -> Result<Job> {
        let params = serde_json::to_value(self).map_err(|e| Error::internal(e.to_string()))?;
        Ok(Job::new(SECURITY_EMAIL, owner_id, params))
    }
}
