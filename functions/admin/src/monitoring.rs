//! What the dashboard and system routes need beyond the platform: clients
//! for the health checks and queue depths, and the metrics source chosen at
//! start (CloudWatch deployed, the in-memory ring locally), and the log
//! source (CloudWatch Logs deployed, the local stack's JSON lines file).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shared::platform::config::Config;
use shared::platform::error::{Result, aws};
use utoipa::ToSchema;

use crate::system_metrics::MetricsSource;

#[derive(Clone, Debug)]
pub struct Monitoring {
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub kms: aws_sdk_kms::Client,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub metrics: Arc<dyn MetricsSource>,
    /// Where the log search reads (CloudWatch Logs deployed, the local file).
    pub logs: Arc<crate::logs::LogSource>,
}

/// Messages waiting in a queue right now (SQS's approximate counts).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueDepth {
    /// `jobs`, `jobs_dlq`, `webhooks` or `webhooks_dlq`.
    pub name: String,
    /// ApproximateNumberOfMessages: visible, waiting to be received.
    pub visible: i64,
    /// ApproximateNumberOfMessagesNotVisible: received, being worked on.
    pub in_flight: i64,
}

/// The queues the dashboard watches, by name.
pub fn queues(config: &Config) -> [(&'static str, &str); 4] {
    [
        ("jobs", config.jobs_queue_url.as_str()),
        ("jobs_dlq", config.jobs_dlq_url.as_str()),
        ("webhooks", config.webhooks_queue_url.as_str()),
        ("webhooks_dlq", config.webhooks_dlq_url.as_str()),
    ]
}

impl Monitoring {
    /// Current depth of every watched queue (one GetQueueAttributes each, in parallel).
    pub async fn queue_depths(&self, config: &Config) -> Result<Vec<QueueDepth>> {
        let checks = queues(config).map(|(name, url)| async move {
            use aws_sdk_sqs::types::QueueAttributeName as A;
            let out = self
                .sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(A::ApproximateNumberOfMessages)
                .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
                .map_err(aws("sqs GetQueueAttributes"))?;
            let attrs = out.attributes.unwrap_or_default();
            let get = |a: A| attrs.get(&a).and_then(|v| v.parse().ok()).unwrap_or(0);
            Ok::<_, shared::Error>(QueueDepth {
                name: name.to_string(),
                visible: get(A::ApproximateNumberOfMessages),
                in_flight: get(A::ApproximateNumberOfMessagesNotVisible),
            })
        });
        futures::future::try_join_all(checks).await
    }
}
