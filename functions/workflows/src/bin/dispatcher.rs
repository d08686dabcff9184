//! Lambda entry point of the workflows dispatcher: the table's stream (its
//! own event source mapping); audit entries start runs, step messages go
//! to the jobs queue.
#![recursion_limit = "256"]

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::platform::telemetry::init();
    let dispatcher = &*Box::leak(Box::new(workflows::dispatcher_from_env().await?));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move { Ok::<_, lambda_runtime::Error>(dispatcher.handle(event.payload).await) }))
        .await
}
