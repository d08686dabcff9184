//! Lambda entry point of the jobs worker: SQS batches of job messages, and
//! the hourly EventBridge schedule of the retention sweep (`Worker::invoke`).

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::platform::telemetry::init();
    let worker = jobs::Worker::from_env().await?;
    let worker = &worker;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        worker.invoke(event.payload).await.map_err(lambda_runtime::Error::from)
    }))
    .await
}
