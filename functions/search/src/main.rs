//! Lambda entry point of the search function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::platform::telemetry::init();
    // search calls DynamoDB (the index version, analytics, saved searches),
    // KMS (audit subject keys) and S3 (the published index files).
    let sdk = shared::platform::aws::sdk_config();
    let platform = shared::http::Platform::with_clients(aws_sdk_dynamodb::Client::new(&sdk), aws_sdk_kms::Client::new(&sdk)).await?;
    let remote = search::index::Remote {
        store: platform.store.store().clone(),
        s3: shared::platform::aws::s3_client(&sdk),
        bucket: platform.config.exports_bucket.clone(),
        kms_key_id: platform.config.data_key_id.clone(),
    };
    let searchers = search::index::Searchers::new(remote, "/tmp/keel-search".into(), std::time::Duration::from_secs(1))?;
    let app = search::router(search::SearchState { platform, searchers: std::sync::Arc::new(searchers) });
    lambda_http::run(app).await
}
