//! Lambda entry point of the scheduler: an EventBridge schedule (every 5
//! minutes) seals the audit entries that have settled into a signed digest
//! and re-sends jobs whose outbox message was lost.

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::platform::telemetry::init();
    let sealer = scheduler::Sealer::from_env().await?;
    let sweeper = scheduler::outbox_sweep::Sweeper::from_sealer(&sealer);
    let (sealer, sweeper) = (&sealer, &sweeper);
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<serde_json::Value>| async move {
        let resent = sweeper.run().await.map_err(|e| lambda_runtime::Error::from(format!("{e:#}")))?;
        let outcome = sealer.seal_due().await.map_err(|e| lambda_runtime::Error::from(format!("{e:#}")))?;
        tracing::info!(?outcome, resent, "audit seal and outbox sweep run");
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(&outcome)?)
    }))
    .await
}
