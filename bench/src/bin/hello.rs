//! The cold-start baseline: the smallest useful Rust Lambda function, a bare
//! `lambda_runtime` handler that echoes its event. It is built with the same
//! release profile as the Keel functions, so the difference between its
//! start and theirs is what Keel's own initialization costs.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move { Ok::<Value, Error>(event.payload) })).await
}
