//! Lambda entry point of the compliance function's scheduled work
//! (EventBridge, by the event's `source`): the monthly access review
//! (`keel.access-review`, 06:00 UTC on the 1st: every privileged principal
//! reviewed, the flags recorded as that month's evidence with an audit
//! entry, `compliance::access_review::record_monthly`) and the security
//! detectors (`keel.security-detectors`, every minute:
//! `compliance::security_events::run`).

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::platform::telemetry::init();
    let clients = shared::platform::aws::Clients::from_env();
    let platform = shared::http::Platform::with_clients(clients.dynamo.clone(), clients.kms.clone()).await?;
    let state = &*Box::leak(Box::new(compliance::ComplianceState { platform, clients }));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let now = chrono::Utc::now();
        match event.payload.get("source").and_then(|s| s.as_str()) {
            Some("keel.security-detectors") => {
                let report = compliance::security_events::run(state, now).await?;
                tracing::info!(entries = report.entries_read, events = report.events_recorded, high = report.high_events, "security detectors");
                Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?)
            }
            Some("keel.access-review") => {
                let (review, recorded) = compliance::access_review::record_monthly(state, now).await?;
                tracing::info!(month = %review.month, flagged = review.flagged, recorded, "monthly access review");
                Ok(serde_json::to_value(review)?)
            }
            other => Err(format!("unknown schedule source {other:?}").into()),
        }
    }))
    .await
}
