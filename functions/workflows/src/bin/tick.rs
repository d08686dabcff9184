//! Lambda entry point of the workflows tick (EventBridge, every minute):
//! due schedules start runs; due step messages are sent.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::platform::telemetry::init();
    let dispatcher = &*Box::leak(Box::new(workflows::dispatcher_from_env().await?));
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        let tick = workflows::tick::Tick { engine: &dispatcher.engine, sqs: &dispatcher.sqs, queue_url: &dispatcher.queue_url };
        let ticked = tick.run(chrono::Utc::now()).await?;
        tracing::info!(schedules = ticked.schedules_fired, messages = ticked.messages_sent, "workflows tick");
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(ticked)?)
    }))
    .await
}
