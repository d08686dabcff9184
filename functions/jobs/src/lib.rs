//! The jobs worker: consumes the jobs queue (SQS), runs each job named by a
//! message, and reports the messages that failed so only they are retried
//! (partial batch response). A message for a job that already finished is
//! acknowledged without doing the work again. Kinds today: invitation emails,
//! security notices (`security_email`), chart moderation notices, audit
//! exports, data exports (`data_export`, streamed to S3), imports
//! (`data_import`) and bulk operations (`bulk_segment` messages).

pub mod audit_export;
pub mod bulk;
pub mod data_export;
pub mod import;
pub mod multipart;
pub mod pdf;
pub mod xlsx;
pub mod invite;
pub mod security_email;
pub mod moderation_notice;

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::Value;
use shared::config::Config;
use shared::error::{Error, Result};
use shared::jobs::{self, Job, JobMessage, JobStatus};
use shared::store::Store;

/// After this many attempts a job is marked failed (the queue's redrive
/// policy moves the message to the dead-letter queue at the same count).
pub const MAX_ATTEMPTS: u32 = 5;

#[derive(Clone, Debug)]
pub struct Worker {
    pub store: Store,
    pub ses: aws_sdk_sesv2::Client,
    pub s3: aws_sdk_s3::Client,
    /// Reads the audit log and its digest chain (audit exports).
    pub audit: shared::audit_chain::ChainReader,
    pub config: Arc<Config>,
}

impl Worker {
    pub async fn from_env() -> anyhow::Result<Worker> {
        let config = Arc::new(Config::from_env()?);
        let sdk = shared::aws::sdk_config().await;
        Ok(Worker::new(config, &sdk))
    }

    /// The clients the worker calls (no SQS: Lambda delivers its messages).
    pub fn new(config: Arc<Config>, sdk: &aws_config::SdkConfig) -> Worker {
        let store = Store::new(aws_sdk_dynamodb::Client::new(sdk), config.table.clone());
        let s3 = shared::aws::s3_client(sdk);
        Worker {
            audit: shared::audit_chain::ChainReader::new(store.clone(), s3.clone(), aws_sdk_kms::Client::new(sdk), &config.audit_bucket, &config.audit_key_id),
            store,
            ses: aws_sdk_sesv2::Client::new(sdk),
            s3,
            config,
        }
    }

    /// Store a small, whole file in the exports bucket, SSE-KMS under the data
    /// key with the bucket key (large ones stream through `multipart`).
    pub async fn put_export(&self, key: &str, content_type: &str, body: Vec<u8>) -> Result<()> {
        self.s3
            .put_object()
            .bucket(&self.config.exports_bucket)
            .key(key)
            .content_type(content_type)
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .ssekms_key_id(&self.config.data_key_id)
            .bucket_key_enabled(true)
            .body(body.into())
            .send()
            .await
            .map_err(shared::error::aws("s3 PutObject (exports bucket)"))?;
        Ok(())
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
            .map_err(shared::error::aws("ses SendEmail"))?;
        Ok(sent.message_id().map(str::to_string))
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
        let msg: JobMessage = serde_json::from_str(body).map_err(|e| Error::internal(format!("malformed job message: {e}")))?;
        // A segment of a bulk job: many messages share one job record.
        if msg.kind == shared::data_jobs::SEGMENT_KIND {
            return bulk::run_segment(self, body).await;
        }
        let Some(job) = jobs::get(&self.store, &msg.job_id).await? else {
            return Err(Error::internal(format!("job {} not found", msg.job_id)));
        };
        if job.status.is_final() {
            tracing::info!(job_id = %job.id, status = job.status.as_str(), "duplicate delivery of a finished job; acknowledged");
            return Ok(());
        }
        let mut running = job.clone();
        running.status = JobStatus::Running;
        running.attempts += 1;
        let running = jobs::save(&self.store, &running).await?;
        let started = std::time::Instant::now();
        let outcome = self.run(&running).await;
        shared::telemetry::emit_metric(
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

    async fn run(&self, job: &Job) -> Result<Value> {
        match job.kind.as_str() {
            "invite_email" => invite::send(self, job).await,
            shared::jobs::SECURITY_EMAIL => security_email::send(self, job).await,
            moderation_notice::KIND => moderation_notice::send(self, job).await,
            "audit_export" => audit_export::run(self, job).await,
            shared::data_jobs::IMPORT_KIND => import::run(self, job).await,
            shared::export::KIND => data_export::run(self, job).await,
            other => Err(Error::internal(format!("unknown job kind {other:?}"))),
        }
    }
}
