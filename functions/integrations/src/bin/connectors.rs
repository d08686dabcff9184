//! Lambda entry point of the analytics connectors (EventBridge schedule,
//! `rate(1 minute)`): each configured connector's settled domain events
//! since its cursor, forwarded in batches (`integrations::connectors`).

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::platform::telemetry::init();
    // DynamoDB (cursors, the audit log, orders) and KMS (the connectors'
    // credentials, sealed with the data key).
    let sdk = shared::platform::aws::sdk_config();
    let platform = shared::http::Platform::with_clients(aws_sdk_dynamodb::Client::new(&sdk), aws_sdk_kms::Client::new(&sdk)).await?;
    let webhook_policy = integrations::ssrf::Policy::from_lookup(|name| std::env::var(name).ok());
    let forwarder = &*Box::leak(Box::new(integrations::connectors::Forwarder {
        state: integrations::IntegrationsState { platform, webhook_policy, stripe_webhook_secret: None, opened_secrets: Default::default() },
        clock: std::sync::Arc::new(integrations::delivery::SystemClock),
    }));
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| async move {
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(forwarder.run().await)?)
    }))
    .await
}
