//! Lambda entry point of the webhook dispatcher: the table's stream (its
//! own event source mapping), audit entries to deliveries, deliveries to
//! the webhooks queue.
// The handler future nests the SDK's (SQS, DynamoDB) deeply enough to
// pass rustc's default query depth when its layout is computed.
#![recursion_limit = "256"]

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::platform::telemetry::init();
    let sdk = shared::platform::aws::sdk_config();
    let var = |name: &str| std::env::var(name).map_err(|_| format!("configuration: {name} is not set"));
    let dispatcher = &*Box::leak(Box::new(integrations::dispatch::Dispatcher {
        store: shared::store::Store::new(aws_sdk_dynamodb::Client::new(&sdk), var("KEEL_TABLE")?),
        sqs: aws_sdk_sqs::Client::new(&sdk),
        queue_url: var("KEEL_WEBHOOKS_QUEUE_URL")?,
        clock: std::sync::Arc::new(integrations::delivery::SystemClock),
    }));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move { Ok::<_, lambda_runtime::Error>(dispatcher.handle(event.payload).await) }))
        .await
}
