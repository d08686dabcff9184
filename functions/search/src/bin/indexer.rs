//! Lambda entry point of the search indexer: the table's stream, applied
//! to the index and published (reserved concurrency 1: one writer).

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::platform::telemetry::init();
    let sdk = shared::platform::aws::sdk_config();
    let var = |name: &str| std::env::var(name).map_err(|_| format!("configuration: {name} is not set"));
    let remote = search::index::Remote {
        store: shared::store::Store::new(aws_sdk_dynamodb::Client::new(&sdk), var("KEEL_TABLE")?),
        s3: shared::platform::aws::s3_client(&sdk),
        bucket: var("KEEL_EXPORTS_BUCKET")?,
        kms_key_id: var("KEEL_DATA_KEY_ID")?,
    };
    let indexer = &*Box::leak(Box::new(search::indexer::Indexer::new(remote, "/tmp/keel-search-writer".into())));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move { Ok::<_, lambda_runtime::Error>(indexer.handle(event.payload).await) })).await
}
