//! Lambda entry point of the webhooks worker: the webhooks queue, one
//! attempt per message (partial batch failures), and every minute (an
//! EventBridge schedule) the sweep of deliveries whose next attempt is due.
// The handler future nests the SDK's (SQS, DynamoDB) deeply enough to
// pass rustc's default query depth when its layout is computed.
#![recursion_limit = "256"]

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::platform::telemetry::init();
    let sdk = shared::platform::aws::sdk_config();
    let platform = shared::http::Platform::with_clients(aws_sdk_dynamodb::Client::new(&sdk), aws_sdk_kms::Client::new(&sdk)).await?;
    let webhook_policy = integrations::ssrf::Policy::from_lookup(|name| std::env::var(name).ok());
    let config = platform.config.clone();
    let worker = &*Box::leak(Box::new(integrations::delivery::Worker {
        // The delivery worker receives no Stripe events.
        state: integrations::IntegrationsState { platform, webhook_policy, stripe_webhook_secret: None, opened_secrets: Default::default() },
        sqs: aws_sdk_sqs::Client::new(&sdk),
        queue_url: config.webhooks_queue_url.clone(),
        dlq_url: config.webhooks_dlq_url.clone(),
        clock: std::sync::Arc::new(integrations::delivery::SystemClock),
    }));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // An SQS batch has `Records`; the schedule's event does not.
        if event.payload.get("Records").is_some() {
            let batch = serde_json::from_value(event.payload)?;
            return Ok::<Value, lambda_runtime::Error>(serde_json::to_value(worker.handle(batch).await)?);
        }
        let store = worker.state.platform.store.store();
        let sent = integrations::dispatch::sweep_due(store, &worker.sqs, &worker.queue_url, chrono::Utc::now(), 500).await?;
        Ok(serde_json::json!({ "sent": sent }))
    }))
    .await
}
