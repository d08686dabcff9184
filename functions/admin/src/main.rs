//! Lambda entry point of the admin function.

use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::platform::telemetry::init();
    let sdk = shared::platform::aws::sdk_config();
    let (platform, clients) = shared::http::Platform::from_sdk_config(&sdk).await?;
    let monitoring = admin::monitoring::Monitoring {
        sqs: clients.sqs.clone(),
        s3: clients.s3.clone(),
        kms: clients.kms.clone(),
        dynamo: clients.dynamo.clone(),
        metrics: Arc::new(admin::system_metrics::CloudWatchMetrics::new(&sdk)),
        logs: Arc::new(admin::logs::LogSource::cloudwatch_from_env(&sdk)),
    };
    let audit = admin::audit_chain_reader(&platform, &clients);
    let app = admin::router(admin::AdminState { platform, sqs: clients.sqs, monitoring, audit });
    lambda_http::run(app).await
}
