//! Lambda entry point of the monthly access review (EventBridge schedule,
//! 06:00 UTC on the 1st): every privileged principal reviewed, the flags
//! recorded as that month's evidence with an audit entry
//! (`compliance::access_review::record_monthly`).

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::platform::telemetry::init();
    let clients = shared::platform::aws::Clients::from_env();
    let platform = shared::http::Platform::with_clients(clients.dynamo.clone(), clients.kms.clone()).await?;
    let state = &*Box::leak(Box::new(compliance::ComplianceState { platform, clients }));
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| async move {
        let (review, recorded) = compliance::access_review::record_monthly(state, chrono::Utc::now()).await?;
        tracing::info!(month = %review.month, flagged = review.flagged, recorded, "monthly access review");
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(review)?)
    }))
    .await
}
