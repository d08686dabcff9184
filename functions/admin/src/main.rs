//! Lambda entry point of the admin function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let (platform, clients) = shared::http::Platform::from_env().await?;
    let sqs = clients.sqs.clone();
    let app = admin::router(admin::AdminState { platform, sqs });
    lambda_http::run(app).await
}
