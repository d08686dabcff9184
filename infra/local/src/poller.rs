//! Polls an SQS queue and hands batches to a worker the way Lambda's event
//! source mapping does: the records arrive as a real `SqsEvent`, messages
//! the worker reports as failed stay on the queue, the rest are deleted.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

/// How soon a failed message is retried locally. Deployed, the queue's
/// visibility timeout decides (minutes); locally we want to see retries.
pub const LOCAL_RETRY_SECONDS: i32 = 5;

/// A queue's consumer, as its Lambda would be: an SQS batch in, the
/// messages that failed out.
pub trait QueueWorker {
    fn handle(&self, event: SqsEvent) -> impl std::future::Future<Output = SqsBatchResponse> + Send;
}

impl QueueWorker for jobs::Worker {
    async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        jobs::Worker::handle(self, event).await
    }
}

/// The webhooks queue's worker.
impl QueueWorker for integrations::delivery::Worker {
    async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        integrations::delivery::Worker::handle(self, event).await
    }
}

/// Receive one batch (waiting up to `wait` seconds), run it, and return how
/// many messages were received.
pub async fn poll_once(sqs: &aws_sdk_sqs::Client, queue_url: &str, queue_arn: &str, worker: &impl QueueWorker, wait: i32) -> anyhow::Result<usize> {
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await?;
    let messages = out.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(0);
    }
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, serde_json::Value> =
                m.attributes().map(|a| a.iter().map(|(k, v)| (k.as_str().to_string(), serde_json::Value::String(v.clone()))).collect()).unwrap_or_default();
            serde_json::json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": crate::REGION,
            })
        })
        .collect();
    let event: SqsEvent = serde_json::from_value(serde_json::json!({ "Records": records }))?;
    let response = worker.handle(event).await;
    let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    for m in &messages {
        let Some(handle) = m.receipt_handle() else { continue };
        if failed.contains(&m.message_id().unwrap_or_default()) {
            sqs.change_message_visibility().queue_url(queue_url).receipt_handle(handle).visibility_timeout(LOCAL_RETRY_SECONDS).send().await?;
        } else {
            sqs.delete_message().queue_url(queue_url).receipt_handle(handle).send().await?;
        }
    }
    Ok(messages.len())
}

/// Poll forever (the `make dev` loop).
pub async fn run(sqs: aws_sdk_sqs::Client, queue_url: String, queue_arn: String, worker: impl QueueWorker) {
    run_until(sqs, queue_url, queue_arn, worker, tokio::sync::watch::channel(false).1).await
}

/// Poll until `stop` turns true, stopping only between polls (benches).
/// Not by aborting the task: the emulator goes on with an abandoned long
/// poll, and the messages it then receives stay invisible for the queue's
/// visibility timeout (90 minutes for the jobs queue), lost to the next
/// poller.
pub async fn run_until(sqs: aws_sdk_sqs::Client, queue_url: String, queue_arn: String, worker: impl QueueWorker, stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        if let Err(e) = poll_once(&sqs, &queue_url, &queue_arn, &worker, 1).await {
            tracing::warn!(error = %e, queue = %queue_url, "polling a queue failed");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
