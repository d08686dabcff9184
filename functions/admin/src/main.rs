//! Lambda entry point of the admin function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let (platform, clients) = shared::http::Platform::from_env().await?;
    let sqs = clients.sqs.clone();
    let audit = admin::audit_chain_reader(&platform, &clients);
    let app = admin::router(admin::AdminState { platform, sqs, audit });
    lambda_http::run(app).await
}
