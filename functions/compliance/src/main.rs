//! Lambda entry point of the compliance function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::platform::telemetry::init();
    // DynamoDB (reads; the report's audit entry), KMS (the signing public
    // key, audit subject keys, the data key's rotation status), and the
    // encryption settings of the table, buckets and queues.
    let clients = shared::platform::aws::Clients::from_env();
    let platform = shared::http::Platform::with_clients(clients.dynamo.clone(), clients.kms.clone()).await?;
    lambda_http::run(compliance::router(compliance::ComplianceState { platform, clients })).await
}
