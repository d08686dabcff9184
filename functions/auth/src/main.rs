//! Lambda entry point of the auth function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::platform::telemetry::init();
    // auth calls DynamoDB and KMS only: no other SDK client is built.
    let sdk = shared::platform::aws::sdk_config();
    let kms = aws_sdk_kms::Client::new(&sdk);
    let platform = shared::http::Platform::with_clients(aws_sdk_dynamodb::Client::new(&sdk), kms.clone()).await?;
    let signer = auth::Signer::new(kms, &platform.config.signing_key_id, &platform.verifier);
    let providers = auth::Providers::new();
    let app = auth::router(auth::AuthState { platform, signer, providers });
    lambda_http::run(app).await
}
