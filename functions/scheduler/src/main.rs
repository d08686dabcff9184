//! Lambda entry point of the scheduler: an EventBridge schedule (every 5
//! minutes) seals the audit entries that have settled into a signed digest.

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::platform::telemetry::init();
    let sealer = scheduler::Sealer::from_env().await?;
    let sealer = &sealer;
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<serde_json::Value>| async move {
        let outcome = sealer.seal_due().await.map_err(|e| lambda_runtime::Error::from(format!("{e:#}")))?;
        tracing::info!(?outcome, "audit seal run");
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(&outcome)?)
    }))
    .await
}
