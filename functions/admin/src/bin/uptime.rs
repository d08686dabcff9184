//! Lambda entry point of the uptime check (EventBridge schedule, every 5
//! minutes): sign in with the probe account and call every API function
//! over HTTP at `KEEL_PUBLIC_URL`, record the check and open or close
//! incidents (`admin::uptime`).

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::platform::telemetry::init();
    let clients = shared::platform::aws::Clients::from_env();
    let platform = shared::http::Platform::with_clients(clients.dynamo.clone(), clients.kms.clone()).await?;
    let check = admin::uptime::UptimeCheck::new(platform.store.clone(), platform.envelope.clone(), &platform.config.public_url)?;
    let check = &*Box::leak(Box::new(check));
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| async move {
        let record = check.run(chrono::Utc::now()).await?;
        let down: Vec<&str> = record.results.iter().filter(|r| !r.up).map(|r| r.target.as_str()).collect();
        tracing::info!(checked_at = %record.checked_at, ?down, "uptime check");
        Ok::<_, lambda_runtime::Error>(serde_json::json!({ "checked_at": record.checked_at, "down": down }))
    }))
    .await
}
