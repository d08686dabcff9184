//! Lambda entry point of the data function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::platform::telemetry::init();
    let (platform, clients) = shared::http::Platform::from_env().await?;
    let exports = data::ExportSettings::from_env()?;
    let app = data::router(data::DataState { platform, sqs: clients.sqs, s3: clients.s3, exports });
    lambda_http::run(app).await
}
