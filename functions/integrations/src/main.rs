//! Lambda entry point of the integrations function.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::platform::telemetry::init();
    // DynamoDB (endpoints, audit entries) and KMS (webhook secrets sealed
    // with the data key, audit subject keys).
    let sdk = shared::platform::aws::sdk_config();
    let platform = shared::http::Platform::with_clients(aws_sdk_dynamodb::Client::new(&sdk), aws_sdk_kms::Client::new(&sdk)).await?;
    let webhook_policy = integrations::ssrf::Policy::from_lookup(|name| std::env::var(name).ok());
    let stripe_webhook_secret = integrations::payments::signature::StripeSecret::from_value(std::env::var("KEEL_STRIPE_WEBHOOK_SECRET").ok());
    lambda_http::run(integrations::router(integrations::IntegrationsState {
        platform,
        webhook_policy,
        stripe_webhook_secret,
        opened_secrets: Default::default(),
    }))
    .await
}
