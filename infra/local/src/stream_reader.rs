//! Reads the table's DynamoDB stream from the emulator (DescribeStream,
//! GetShardIterator, GetRecords) and hands the records to the streams worker
//! as real `DynamoDbEvent`s, the way Lambda's event source mapping does: a
//! record the worker reports as failed is read again (with everything after
//! it) on the next poll.

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use base64::Engine as _;
use serde_json::{Value, json};

/// Where a new reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Every record still in the stream.
    TrimHorizon,
    /// Only records written after the reader opens.
    Latest,
}

pub struct StreamReader {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    /// Next iterator per shard.
    iterators: HashMap<String, String>,
    /// Last sequence number acknowledged per shard.
    positions: HashMap<String, String>,
    start: Start,
}

/// What reads the stream: the streams worker, or only its outbox part.
pub trait Consumer {
    fn handle(&self, event: Event) -> impl std::future::Future<Output = DynamoDbEventResponse> + Send;
}

impl Consumer for streams::Worker {
    async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        streams::Worker::handle(self, event).await
    }
}

/// The search indexer: its own reader of the stream, as its own Lambda's
/// event source mapping is in AWS.
impl Consumer for search::indexer::Indexer {
    async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        search::indexer::Indexer::handle(self, event).await
    }
}

/// The workflows dispatcher: its own reader of the stream too.
impl Consumer for workflows::dispatch::Dispatcher {
    async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        workflows::dispatch::Dispatcher::handle(self, event).await
    }
}

/// The webhook dispatcher: its own reader of the stream too.
impl Consumer for integrations::dispatch::Dispatcher {
    async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        integrations::dispatch::Dispatcher::handle(self, event).await
    }
}

impl<C: Consumer + Send + Sync> Consumer for std::sync::Arc<C> {
    fn handle(&self, event: Event) -> impl std::future::Future<Output = DynamoDbEventResponse> + Send {
        C::handle(self, event)
    }
}

/// The streams worker's outbox alone: sends committed jobs without the
/// rollups (tests, where replaying every record's rollups is slow).
pub struct OutboxOnly<'a>(pub &'a streams::Worker);

impl Consumer for OutboxOnly<'_> {
    async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        self.0.handle_outbox(event).await
    }
}

/// Records per GetRecords call (Lambda's batch size for the stream).
pub const BATCH: i32 = 100;

impl StreamReader {
    pub async fn open(client: aws_sdk_dynamodbstreams::Client, stream_arn: &str, start: Start) -> anyhow::Result<StreamReader> {
        let mut reader = StreamReader { client, stream_arn: stream_arn.to_string(), iterators: HashMap::new(), positions: HashMap::new(), start };
        reader.discover_shards().await?;
        Ok(reader)
    }

    async fn discover_shards(&mut self) -> anyhow::Result<()> {
        let out = self.client.describe_stream().stream_arn(&self.stream_arn).send().await?;
        let shards = out.stream_description.map(|d| d.shards.unwrap_or_default()).unwrap_or_default();
        for shard in shards {
            let Some(id) = shard.shard_id else { continue };
            if self.iterators.contains_key(&id) {
                continue;
            }
            let kind = match self.start {
                Start::TrimHorizon => ShardIteratorType::TrimHorizon,
                Start::Latest => ShardIteratorType::Latest,
            };
            let iterator = self.client.get_shard_iterator().stream_arn(&self.stream_arn).shard_id(&id).shard_iterator_type(kind).send().await?;
            if let Some(it) = iterator.shard_iterator {
                self.iterators.insert(id, it);
            }
        }
        Ok(())
    }

    /// Read one batch from each shard and run it; returns how many records
    /// the worker acknowledged.
    pub async fn poll_once(&mut self, worker: &impl Consumer) -> anyhow::Result<usize> {
        let mut done = 0;
        let shards: Vec<(String, String)> = self.iterators.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (shard, iterator) in shards {
            let out = self.client.get_records().shard_iterator(&iterator).limit(BATCH).send().await?;
            let records = out.records.unwrap_or_default();
            let next = out.next_shard_iterator;
            if records.is_empty() {
                // Re-anchor after the last acknowledged record: the emulator
                // replaces a table's stream object when a transaction rolls
                // back, and old iterators would then never see new records.
                let next = match self.positions.get(&shard) {
                    Some(seq) => self.iterator_at(&shard, ShardIteratorType::AfterSequenceNumber, seq).await?,
                    None => next,
                };
                if let Some(next) = next {
                    self.iterators.insert(shard, next);
                }
                continue;
            }
            tracing::debug!(shard, records = records.len(), first = ?records[0].dynamodb().and_then(|d| d.sequence_number()), "stream batch");
            let event: Event = serde_json::from_value(json!({ "Records": records.iter().map(|r| record_json(r, &self.stream_arn)).collect::<Vec<_>>() }))?;
            let response = worker.handle(event).await;
            match response.batch_item_failures.first().and_then(|f| f.item_identifier.clone()) {
                None => {
                    done += records.len();
                    if let Some(last) = records.last().and_then(|r| r.dynamodb().and_then(|d| d.sequence_number())) {
                        self.positions.insert(shard.clone(), last.to_string());
                    }
                    if let Some(next) = next {
                        self.iterators.insert(shard, next);
                    }
                }
                Some(failed) => {
                    done += records.iter().take_while(|r| r.dynamodb().and_then(|d| d.sequence_number()) != Some(failed.as_str())).count();
                    if let Some(it) = self.iterator_at(&shard, ShardIteratorType::AtSequenceNumber, &failed).await? {
                        self.iterators.insert(shard, it);
                    }
                }
            }
        }
        Ok(done)
    }

    async fn iterator_at(&self, shard: &str, kind: ShardIteratorType, sequence: &str) -> anyhow::Result<Option<String>> {
        let out =
            self.client.get_shard_iterator().stream_arn(&self.stream_arn).shard_id(shard).shard_iterator_type(kind).sequence_number(sequence).send().await?;
        Ok(out.shard_iterator)
    }

    /// Poll until a poll finds nothing to do (tests).
    pub async fn drain(&mut self, worker: &impl Consumer) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let n = self.poll_once(worker).await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }
}

/// Poll forever (the `make dev` loop).
pub async fn run(reader: StreamReader, worker: impl Consumer) {
    run_until(reader, worker, tokio::sync::watch::channel(false).1).await
}

/// Poll until `stop` turns true, stopping only between polls (benches):
/// a batch is never left half applied.
pub async fn run_until(mut reader: StreamReader, worker: impl Consumer, stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        match reader.poll_once(&worker).await {
            Ok(0) => tokio::time::sleep(Duration::from_millis(500)).await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading the table stream failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// A stream record in the JSON shape Lambda delivers.
fn record_json(record: &aws_sdk_dynamodbstreams::types::Record, stream_arn: &str) -> Value {
    let change = record.dynamodb();
    let image = |m: Option<&HashMap<String, AttributeValue>>| -> Value {
        Value::Object(m.map(|m| m.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect()).unwrap_or_default())
    };
    let mut dynamodb = json!({
        "Keys": image(change.and_then(|c| c.keys.as_ref())),
        "SequenceNumber": change.and_then(|c| c.sequence_number()),
        "SizeBytes": change.and_then(|c| c.size_bytes()).unwrap_or(0),
        "StreamViewType": change.and_then(|c| c.stream_view_type()).map(|v| v.as_str()),
        "ApproximateCreationDateTime": change.and_then(|c| c.approximate_creation_date_time()).map(|t| t.as_secs_f64()).unwrap_or(0.0),
    });
    if let Some(new) = change.and_then(|c| c.new_image.as_ref()) {
        dynamodb["NewImage"] = image(Some(new));
    }
    if let Some(old) = change.and_then(|c| c.old_image.as_ref()) {
        dynamodb["OldImage"] = image(Some(old));
    }
    json!({
        "eventID": record.event_id(),
        "eventName": record.event_name().map(|e| e.as_str()),
        "eventVersion": record.event_version(),
        "eventSource": record.event_source().unwrap_or("aws:dynamodb"),
        "awsRegion": record.aws_region().unwrap_or(crate::REGION),
        "eventSourceARN": stream_arn,
        "dynamodb": dynamodb,
    })
}

/// DynamoDB JSON of one attribute value.
fn attribute_json(value: &AttributeValue) -> Value {
    let b64 = |b: &aws_sdk_dynamodbstreams::primitives::Blob| Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()));
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(_) => json!({ "NULL": true }),
        AttributeValue::B(b) => json!({ "B": b64(b) }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        AttributeValue::Bs(v) => json!({ "BS": v.iter().map(b64).collect::<Vec<_>>() }),
        AttributeValue::L(items) => json!({ "L": items.iter().map(attribute_json).collect::<Vec<_>>() }),
        AttributeValue::M(map) => json!({ "M": map.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<serde_json::Map<_, _>>() }),
        _ => json!({ "NULL": true }),
    }
}
