//! Lambda entry point of the analytics function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::platform::telemetry::init();
    // analytics calls DynamoDB and KMS (audit subject keys) only.
    let sdk = shared::platform::aws::sdk_config();
    let platform = shared::http::Platform::with_clients(aws_sdk_dynamodb::Client::new(&sdk), aws_sdk_kms::Client::new(&sdk)).await?;
    let app = analytics::router(analytics::AnalyticsState { platform });
    lambda_http::run(app).await
}
