//! Lambda entry point of the reports function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::platform::telemetry::init();
    // reports calls DynamoDB, KMS (audit subject keys) and S3 (presigning downloads).
    let sdk = shared::platform::aws::sdk_config();
    let platform = shared::http::Platform::with_clients(aws_sdk_dynamodb::Client::new(&sdk), aws_sdk_kms::Client::new(&sdk)).await?;
    let s3 = shared::platform::aws::s3_client(&sdk);
    let app = reports::router(reports::ReportsState { platform, s3 });
    lambda_http::run(app).await
}
