//! Lambda entry point of the auth function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let (platform, clients) = shared::http::Platform::from_env().await?;
    let signer = auth::Signer::new(clients.kms.clone(), &platform.config.signing_key_id, &platform.verifier);
    let providers = auth::Providers::new()?;
    let app = auth::router(auth::AuthState { platform, signer, providers });
    lambda_http::run(app).await
}
