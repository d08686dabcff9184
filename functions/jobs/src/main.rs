//! Lambda entry point of the jobs worker: SQS batches of job messages, and
//! the hourly EventBridge schedule of the retention sweep.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init();
    let worker = jobs::Worker::from_env().await?;
    let worker = &worker;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        if event.payload.get("source").and_then(|s| s.as_str()) == Some("aws.events") {
            let swept = jobs::retention::sweep(worker, chrono::Utc::now()).await.map_err(|e| lambda_runtime::Error::from(format!("{e:#}")))?;
            tracing::info!(?swept, "retention sweep");
            return Ok::<_, lambda_runtime::Error>(serde_json::to_value(&swept)?);
        }
        let batch: SqsEvent = serde_json::from_value(event.payload)?;
        Ok(serde_json::to_value(worker.handle(batch).await)?)
    }))
    .await
}
