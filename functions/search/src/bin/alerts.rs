//! Lambda entry point of the saved-search alert check (EventBridge
//! schedule, `rate(15 minutes)`): every due alert's new matches, emailed
//! through a job (`search::alerts`).

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::platform::telemetry::init();
    let sdk = shared::platform::aws::sdk_config();
    let var = |name: &str| std::env::var(name).map_err(|_| format!("configuration: {name} is not set"));
    let store = shared::store::Store::new(aws_sdk_dynamodb::Client::new(&sdk), var("KEEL_TABLE")?);
    let remote = search::index::Remote {
        store: store.clone(),
        s3: shared::platform::aws::s3_client(&sdk),
        bucket: var("KEEL_EXPORTS_BUCKET")?,
        kms_key_id: var("KEEL_DATA_KEY_ID")?,
    };
    let searchers = search::index::Searchers::new(remote, "/tmp/keel-search".into(), std::time::Duration::from_secs(1))?;
    // Its audit entries name no person (a system actor, a saved search).
    let journal = shared::audit::Journal::new(store);
    let state = &*Box::leak(Box::new((journal, searchers)));
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| async move {
        let checked = search::alerts::check_due(&state.0, &state.1, chrono::Utc::now()).await?;
        tracing::info!(?checked, "saved-search alerts");
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(checked)?)
    }))
    .await
}
