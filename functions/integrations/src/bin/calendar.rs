//! Lambda entry point of the scheduled calendar re-sync: every 15 minutes
//! (an EventBridge schedule) every connected CalDAV calendar is synced
//! two-way (`calendar::sync::resync_all`), so changes on either side arrive
//! without the user asking.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

/// Start no sync after this long (the function's timeout is 300 s; one
/// sync takes at most about 30 s).
const RUN_FOR: std::time::Duration = std::time::Duration::from_secs(240);

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::platform::telemetry::init();
    let sdk = shared::platform::aws::sdk_config();
    let platform = shared::http::Platform::with_clients(aws_sdk_dynamodb::Client::new(&sdk), aws_sdk_kms::Client::new(&sdk)).await?;
    let webhook_policy = integrations::ssrf::Policy::from_lookup(|name| std::env::var(name).ok());
    let state =
        &*Box::leak(Box::new(integrations::IntegrationsState { platform, webhook_policy, stripe_webhook_secret: None, opened_secrets: Default::default() }));
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        let resynced = integrations::calendar::sync::resync_all(state, std::time::Instant::now() + RUN_FOR).await?;
        tracing::info!(?resynced, "calendar re-sync");
        Ok::<Value, lambda_runtime::Error>(serde_json::to_value(resynced)?)
    }))
    .await
}
