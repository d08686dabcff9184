//! Lambda entry point of the workflows function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::platform::telemetry::init();
    let (platform, _, engine) = workflows::from_env().await?;
    lambda_http::run(workflows::router(workflows::WorkflowsState { platform, engine })).await
}
