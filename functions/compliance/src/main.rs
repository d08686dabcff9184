//! Lambda entry point of the compliance function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::platform::telemetry::init();
    // Reads only: DynamoDB (requests, users, roles, audit entries, health
    // records) and KMS (the signing public key, audit subject keys, the
    // data key's rotation status).
    let sdk = shared::platform::aws::sdk_config();
    let kms = aws_sdk_kms::Client::new(&sdk);
    let platform = shared::http::Platform::with_clients(aws_sdk_dynamodb::Client::new(&sdk), kms.clone()).await?;
    lambda_http::run(compliance::router(compliance::ComplianceState { platform, kms })).await
}
