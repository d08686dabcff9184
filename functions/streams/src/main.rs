//! Lambda entry point of the streams worker (DynamoDB Streams event source
//! with partial batch responses).

// The worker's future nests every consumer's (the outbox's SQS batch send
// among them) inside lambda_runtime's service: computing its layout goes
// past rustc's default query depth of 128.
#![recursion_limit = "256"]

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::platform::telemetry::init();
    let worker = streams::Worker::from_env().await?;
    let worker = &worker;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move { Ok::<_, lambda_runtime::Error>(worker.handle(event.payload).await) })).await
}
