//! The jobs worker: consumes the jobs queue (SQS), runs each job named by a
//! message, and reports the messages that failed so only they are retried
//! (partial batch response). A message for a job that already finished is
//! acknowledged without doing the work again. Kinds today: invitation emails,
//! security notices (`security_email`), chart moderation notices, audit
//! exports, data exports (`data_export`, streamed to S3), imports
//! (`data_import`), email marketing (`marketing`: confirmations, campaigns,
//! SES contacts, and SES bounce/complaint notifications from their own
//! queue), bulk operations (`bulk_segment` messages) and GDPR/CCPA
//! subject exports (`gdpr_export`, one zip per request), and the revenue
//! rollups' recomputation (`analytics_refresh`), and reports (`report`).

pub mod analytics_refresh;
pub mod audit_export;
pub mod backup;
pub mod bulk;
pub mod data_export;
pub mod erasure;
pub mod gdpr_export;
pub mod import;
pub mod invite;
pub mod marketing;
pub mod moderation_notice;
pub mod multipart;
pub mod pdf;
pub mod report;
pub mod retention;
pub mod search_alert;
pub mod security_alert;
pub mod security_email;
pub mod webhook_disabled;
pub mod xlsx;

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::Value;
use shared::audit::Journal;
use shared::domain::jobs::{self, Claim, Job, JobKind, JobMessage, JobStatus};
use shared::platform::config::Config;
use shared::platform::error::{Error, Result};
use shared::store::Store;

/// After this many attempts a job is marked failed (the queue's redrive
/// policy moves the message to the dead-letter queue at the same count).
pub const MAX_ATTEMPTS: u32 = 5;

/// The `source` of the input the report-schedules tick is invoked with
/// (template.yaml, `JobsFunction`'s `ReportSchedules` event).
pub const REPORT_SCHEDULES_SOURCE: &str = "keel.report-schedules";

#[derive(Clone, Debug)]
pub struct Worker {
    /// The table, through the journal (changes commit with their audit entries).
    pub store: Journal,
    pub ses: aws_sdk_sesv2::Client,
    pub s3: aws_sdk_s3::Client,
    /// Signs erasure certificates with the audit key.
    pub kms: aws_sdk_kms::Client,
    /// Queues erasure jobs (the retention sweep).
    pub sqs: aws_sdk_sqs::Client,
    /// Creates, describes and deletes the tables backups are restored into
    /// (item reads and writes go through `Store`).
    pub dynamo: aws_sdk_dynamodb::Client,
    /// Reads the audit log and its digest chain (audit exports).
    pub audit: shared::audit::chain::ChainReader,
    /// Executes workflow steps (`workflow_step` messages; docs/workflows.md).
    pub workflows: workflows::engine::Engine,
    pub config: Arc<Config>,
}

impl Worker {
    pub async fn from_env() -> anyhow::Result<Worker> {
        let config = Arc::new(Config::from_env()?);
        let sdk = shared::platform::aws::sdk_config();
        Ok(Worker::new(config, &sdk))
    }

    /// The clients the worker calls (SQS only to queue the retention
    /// sweep's erasures: Lambda delivers its messages).
    pub fn new(config: Arc<Config>, sdk: &aws_config::SdkConfig) -> Worker {
        let kms = aws_sdk_kms::Client::new(sdk);
        let envelope = shared::platform::crypto::Envelope::new(kms.clone(), config.data_key_id.clone());
        let dynamo = aws_sdk_dynamodb::Client::new(sdk);
        let store = Journal::with_subject_keys(Store::new(dynamo.clone(), config.table.clone()), envelope);
        let s3 = shared::platform::aws::s3_client(sdk);
        let workflows = workflows::engine::Engine {
            store: store.clone(),
            roles: shared::identity::roles::RoleCatalog::new(store.store().clone(), config.role_cache_ttl),
            ses: aws_sdk_sesv2::Client::new(sdk),
            email_from: config.email_from.clone(),
            webhook_policy: integrations::ssrf::Policy::from_lookup(|name| std::env::var(name).ok()),
            clock: Arc::new(workflows::engine::SystemClock),
        };
        Worker {
            workflows,
            audit: shared::audit::chain::ChainReader::new(store.store().clone(), s3.clone(), kms.clone(), &config.audit_bucket, &config.audit_key_id),
            store,
            ses: aws_sdk_sesv2::Client::new(sdk),
            s3,
            kms,
            sqs: aws_sdk_sqs::Client::new(sdk),
            dynamo,
            config,
        }
    }

    /// Store a small, whole file in the exports bucket, SSE-KMS under the data
    /// key with the bucket key (large ones stream through `multipart`).
    pub async fn put_export(&self, key: &str, content_type: &str, body: Vec<u8>) -> Result<()> {
        self.put_sealed(&self.config.exports_bucket, key, content_type, body).await
    }

    /// Put a whole object, SSE-KMS under the data key with the bucket key
    /// (the exports and backups buckets).
    pub async fn put_sealed(&self, bucket: &str, key: &str, content_type: &str, body: Vec<u8>) -> Result<()> {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .ssekms_key_id(&self.config.data_key_id)
            .bucket_key_enabled(true)
            .body(body.into())
            .send()
            .await
            .map_err(shared::platform::error::aws("s3 PutObject"))?;
        Ok(())
    }

    /// The files a job wrote or received: its result's `key`, its import
    /// folder, a report's files. Returns how many objects were deleted.
    pub async fn delete_job_files(&self, job: &shared::store::Item) -> shared::platform::error::Result<u64> {
        let mut n = 0;
        if let Some(aws_sdk_dynamodb::types::AttributeValue::M(result)) = job.get("result")
            && let Some(key) = shared::store::attr_s(result, "key")
        {
            n += self.delete_object(key).await? as u64;
        }
        let id = shared::store::attr_s(job, "id").unwrap_or("");
        if !id.is_empty() && shared::store::attr_s(job, "kind").is_some_and(|k| k.starts_with("import")) {
            n += self.delete_prefix(&format!("imports/{id}/")).await?;
            n += self.delete_object(&shared::domain::data_jobs::import_report_key(id)).await? as u64;
        }
        if !id.is_empty() && shared::store::attr_s(job, "kind") == Some("report") {
            let owner = shared::store::attr_s(job, "owner_id").unwrap_or("");
            n += self.delete_prefix(&report::object_key(owner, id, "")).await?;
        }
        Ok(n)
    }

    pub async fn delete_object(&self, key: &str) -> shared::platform::error::Result<bool> {
        let bucket = &self.config.exports_bucket;
        let exists = self.s3.head_object().bucket(bucket).key(key).send().await.is_ok();
        if exists {
            self.s3.delete_object().bucket(bucket).key(key).send().await.map_err(shared::platform::error::aws("s3 DeleteObject"))?;
        }
        Ok(exists)
    }

    pub async fn delete_prefix(&self, prefix: &str) -> shared::platform::error::Result<u64> {
        let bucket = &self.config.exports_bucket;
        let mut n = 0;
        let mut token = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(shared::platform::error::aws("s3 ListObjectsV2"))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    self.s3.delete_object().bucket(bucket).key(key).send().await.map_err(shared::platform::error::aws("s3 DeleteObject"))?;
                    n += 1;
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => return Ok(n),
            }
        }
    }

    /// A whole object of the exports bucket (a report's file, to attach it).
    pub async fn get_export(&self, key: &str) -> Result<Vec<u8>> {
        let object = self
            .s3
            .get_object()
            .bucket(&self.config.exports_bucket)
            .key(key)
            .send()
            .await
            .map_err(shared::platform::error::aws("s3 GetObject (exports bucket)"))?;
        let body = object.body.collect().await.map_err(|e| Error::internal(format!("reading {key}: {e}")))?;
        Ok(body.into_bytes().to_vec())
    }

    /// Send a plain-text email with files attached (a MIME message, SES
    /// raw content) from the configured sender; the SES message id.
    pub async fn send_email_with_attachments(&self, to: &str, subject: &str, text: &str, files: &[(String, String, Vec<u8>)]) -> Result<Option<String>> {
        use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
        let mut message = mail_builder::MessageBuilder::new().from(self.config.email_from.as_str()).to(to).subject(subject).text_body(text);
        for (name, content_type, body) in files {
            message = message.attachment(content_type.clone(), name.clone(), body.as_slice());
        }
        let raw = message.write_to_vec().map_err(|e| Error::internal(format!("building the email: {e}")))?;
        let raw = RawMessage::builder().data(aws_sdk_sesv2::primitives::Blob::new(raw)).build().map_err(|e| Error::internal(e.to_string()))?;
        let sent = self
            .ses
            .send_email()
            .from_email_address(&self.config.email_from)
            .destination(Destination::builder().to_addresses(to).build())
            .content(EmailContent::builder().raw(raw).build())
            .send()
            .await
            .map_err(shared::platform::error::aws("ses SendEmail (raw)"))?;
        Ok(sent.message_id().map(str::to_string))
    }

    /// Send a plain-text email from the configured sender; the SES message id.
    pub async fn send_email(&self, to: &str, subject: &str, text: String) -> Result<Option<String>> {
        use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
        let content = |data: &str| Content::builder().data(data).build().map_err(|e| Error::internal(e.to_string()));
        let message = Message::builder().subject(content(subject)?).body(Body::builder().text(content(&text)?).build()).build();
        let sent = self
            .ses
            .send_email()
            .from_email_address(&self.config.email_from)
            .destination(Destination::builder().to_addresses(to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(shared::platform::error::aws("ses SendEmail"))?;
        Ok(sent.message_id().map(str::to_string))
    }

    /// One Lambda invocation: the hourly EventBridge schedule runs the
    /// retention sweep; anything else is an SQS batch of job messages.
    pub async fn invoke(&self, payload: Value) -> std::result::Result<Value, String> {
        // EventBridge Scheduler's every-minute tick for report schedules.
        if payload.get("source").and_then(Value::as_str) == Some(REPORT_SCHEDULES_SOURCE) {
            let fired = reports::schedules::fire_due(&self.store, chrono::Utc::now()).await.map_err(|e| format!("{e:#}"))?;
            tracing::info!(?fired, "report schedules");
            return serde_json::to_value(&fired).map_err(|e| e.to_string());
        }
        // The backups' schedules (template.yaml, `DailyBackup` and
        // `WeeklyBackupVerify`).
        if payload.get("source").and_then(Value::as_str) == Some(backup::DAILY_SOURCE) {
            let done = backup::daily(self, chrono::Utc::now()).await.map_err(|e| format!("{e:#}"))?;
            tracing::info!(?done, "daily backup");
            return Ok(done);
        }
        if payload.get("source").and_then(Value::as_str) == Some(backup::VERIFY_SOURCE) {
            let done = backup::weekly_verify(self).await.map_err(|e| format!("{e:#}"))?;
            tracing::info!(?done, "weekly backup verification");
            return Ok(done);
        }
        if payload.get("source").and_then(Value::as_str) == Some("aws.events") {
            let swept = retention::sweep(self, chrono::Utc::now()).await.map_err(|e| format!("{e:#}"))?;
            tracing::info!(?swept, "retention sweep");
            return serde_json::to_value(&swept).map_err(|e| e.to_string());
        }
        let batch: SqsEvent = serde_json::from_value(payload).map_err(|e| format!("not an SQS batch or a schedule event: {e}"))?;
        serde_json::to_value(self.handle(batch).await).map_err(|e| e.to_string())
    }

    /// Handle one SQS batch; the returned failures are redelivered.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let outcomes = futures::future::join_all(event.records.iter().map(|m| self.process(m))).await;
        let mut response = SqsBatchResponse::default();
        for (message, outcome) in event.records.iter().zip(outcomes) {
            if let Err(e) = outcome {
                tracing::warn!(message_id = ?message.message_id, error = %e, "job message failed; it will be retried");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message.message_id.clone().unwrap_or_default();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    async fn process(&self, message: &SqsMessage) -> Result<()> {
        let body = message.body.as_deref().unwrap_or("");
        // The SES events queue (SNS notifications of bounces and
        // complaints) is this worker's other event source.
        if marketing::is_sns_notification(body) {
            let suppressed = marketing::handle_ses_notification(self, body).await?;
            tracing::info!(suppressed, "SES notification");
            return Ok(());
        }
        // A workflow step (its own message: run, step, attempt).
        if body.contains(workflows::model::STEP_KIND)
            && let Ok(step) = serde_json::from_str::<workflows::model::StepMessage>(body)
            && step.kind == workflows::model::STEP_KIND
        {
            return self.workflows.execute(&step).await;
        }
        let msg: JobMessage = serde_json::from_str(body).map_err(|e| Error::internal(format!("malformed job message: {e}")))?;
        // A segment of a bulk job: many messages share one job record.
        if msg.kind == shared::domain::data_jobs::SEGMENT_KIND {
            return bulk::run_segment(self, body).await;
        }
        let Some(job) = jobs::get(&self.store, &msg.job_id).await? else {
            return Err(Error::internal(format!("job {} not found", msg.job_id)));
        };
        if job.kind.is_bulk() {
            tracing::warn!(job_id = %job.id, "a bulk job's own message (its work arrives as segment messages); acknowledged");
            return Ok(());
        }
        // The outbox may send a message twice: the first delivery claims
        // the job with a versioned write, the others see it taken.
        let message_id = message.message_id.as_deref().unwrap_or_default();
        if let Claim::Skip(why) = job.claim(message_id, chrono::Utc::now()) {
            tracing::info!(job_id = %job.id, status = job.status.as_str(), why, "duplicate delivery; acknowledged");
            return Ok(());
        }
        let mut running = job.clone();
        running.status = JobStatus::Running;
        running.attempts += 1;
        running.claimed_by = Some(message_id.to_string());
        let running = match jobs::save(&self.store, &running).await {
            Ok(running) => running,
            // Another delivery claimed it between our read and write.
            Err(Error::Conflict(_)) => {
                tracing::info!(job_id = %job.id, "claimed by another delivery meanwhile; acknowledged");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let started = std::time::Instant::now();
        let outcome = self.run(&running).await;
        shared::platform::telemetry::emit_metric(
            &[("Function", "jobs"), ("JobKind", running.kind.as_str())],
            &[("JobDuration", started.elapsed().as_secs_f64() * 1000.0, "Milliseconds"), ("JobFailed", outcome.is_err() as u8 as f64, "Count")],
        );
        // Long jobs save progress as they go, so read the record back: it
        // may also have been cancelled, or taken over by a redelivery of
        // the message (then that attempt owns it).
        let current = jobs::get(&self.store, &running.id).await?.unwrap_or_else(|| running.clone());
        if current.status.is_final() || current.attempts != running.attempts {
            tracing::info!(job_id = %running.id, status = current.status.as_str(), "job cancelled or taken over meanwhile; this attempt stops");
            return Ok(());
        }
        let mut done = current;
        match outcome {
            Ok(result) => {
                done.status = JobStatus::Succeeded;
                done.result = Some(result);
                done.error = None;
                jobs::save(&self.store, &done).await?;
                Ok(())
            }
            Err(e) => {
                let message = match &e {
                    Error::Internal(cause) => format!("{cause:#}"),
                    other => other.to_string(),
                };
                done.error = Some(message);
                // Unprocessable: the input itself is refused (an oversize
                // import file); retrying cannot help.
                if running.attempts >= MAX_ATTEMPTS || matches!(e, Error::Unprocessable(_)) {
                    done.status = JobStatus::Failed;
                    jobs::save(&self.store, &done).await?;
                    Ok(())
                } else {
                    done.status = JobStatus::Queued;
                    jobs::save(&self.store, &done).await?;
                    Err(e)
                }
            }
        }
    }

    /// Every kind has its runner here: the match is exhaustive, so a new
    /// `JobKind` does not build until the worker can run it.
    async fn run(&self, job: &Job) -> Result<Value> {
        // Every arm boxed: a job's future is as large as its largest arm
        // (a report's engine, a restore holding the erasure sweep), and an
        // unboxed match made every job's future that large, enough to
        // overflow a test thread's stack. One allocation per job instead.
        type Running<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value>> + Send + 'a>>;
        let running: Running<'_> = match job.kind {
            JobKind::InviteEmail => Box::pin(invite::send(self, job)),
            JobKind::SecurityEmail => Box::pin(security_email::send(self, job)),
            JobKind::ChartModerationEmail => Box::pin(moderation_notice::send(self, job)),
            JobKind::SavedSearchAlert => Box::pin(search_alert::send(self, job)),
            JobKind::WebhookDisabledEmail => Box::pin(webhook_disabled::send(self, job)),
            JobKind::SecurityAlertEmail => Box::pin(security_alert::send(self, job)),
            JobKind::AuditExport => Box::pin(audit_export::run(self, job)),
            JobKind::DataImport => Box::pin(import::run(self, job)),
            JobKind::DataExport => Box::pin(data_export::run(self, job)),
            JobKind::GdprExport => Box::pin(gdpr_export::run(self, job)),
            JobKind::Erasure => Box::pin(erasure::run(self, job)),
            JobKind::AnalyticsRefresh => Box::pin(analytics_refresh::run(self, job)),
            JobKind::Report => Box::pin(report::run(self, job)),
            JobKind::Backup => Box::pin(backup::run_backup(self, job)),
            JobKind::BackupVerify => Box::pin(backup::run_verify(self, job)),
            JobKind::BackupRestore => Box::pin(backup::run_restore(self, job)),
            JobKind::MarketingConfirmation => Box::pin(marketing::send_confirmation(self, job)),
            JobKind::MarketingCampaign => Box::pin(marketing::send_campaign(self, job)),
            JobKind::MarketingContact => Box::pin(marketing::sync_contact(self, job)),
            JobKind::BulkUpdate | JobKind::BulkDelete | JobKind::BulkRestore => return Err(Error::internal("bulk jobs run as segment messages")),
        };
        running.await
    }
}
