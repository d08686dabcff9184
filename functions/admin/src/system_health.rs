//! `GET /api/v1/admin/system/health`: every dependency checked with one
//! cheap call (DescribeTable, HeadBucket, GetQueueAttributes, DescribeKey),
//! all in parallel, each with a timeout, with its latency and status.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use shared::platform::error::Result;
use utoipa::ToSchema;

use crate::AdminState;
use crate::monitoring::queues;

/// How long one check may take before it counts as down.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Degraded,
    Down,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DependencyHealth {
    /// e.g. `table`, `bucket:exports`, `queue:jobs_dlq`, `key:signing`.
    pub name: String,
    /// `ok` or `down`.
    pub status: Status,
    pub latency_ms: f64,
    /// Why it is down (the service's error, or the timeout).
    pub error: Option<String>,
    /// Whether the API cannot work without it (then the overall status is `down`).
    pub critical: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` when every dependency is, `down` when a critical one (the table,
    /// a KMS key) is not, `degraded` otherwise.
    pub status: Status,
    pub checked_at: String,
    pub dependencies: Vec<DependencyHealth>,
    /// Each integration's last recorded outcome (docs/integrations.md, "The
    /// hub"); one failing (3 failures in a row) makes the status degraded.
    pub integrations: Vec<shared::domain::integration_health::IntegrationHealth>,
}

async fn check<F, E>(name: String, critical: bool, call: F) -> DependencyHealth
where
    F: Future<Output = std::result::Result<(), E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, call).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
    };
    DependencyHealth { name, status: if error.is_some() { Status::Down } else { Status::Ok }, latency_ms, error, critical }
}

/// Check every dependency now.
pub async fn check_all(state: &AdminState) -> Health {
    let m = &state.monitoring;
    let config = &state.platform.config;
    let table = check("table".into(), true, async {
        // The table's status (control plane), not its items: not a Store call.
        let out = m.dynamo.describe_table().table_name(&config.table).send().await.map_err(|e| shared::platform::error::error_chain(&e))?;
        match out.table.and_then(|t| t.table_status) {
            Some(aws_sdk_dynamodb::types::TableStatus::Active) | Some(aws_sdk_dynamodb::types::TableStatus::Updating) => Ok(()),
            other => Err(format!("table status {other:?}")),
        }
    });
    let buckets = futures::future::join_all([("exports", &config.exports_bucket), ("audit", &config.audit_bucket)].map(|(name, bucket)| {
        check(format!("bucket:{name}"), false, async move {
            m.s3.head_bucket().bucket(bucket).send().await.map(|_| ()).map_err(|e| shared::platform::error::error_chain(&e))
        })
    }));
    let queue_checks = futures::future::join_all(queues(config).map(|(name, url)| {
        check(format!("queue:{name}"), false, async move {
            m.sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| shared::platform::error::error_chain(&e))
        })
    }));
    let keys = futures::future::join_all([("data", &config.data_key_id), ("signing", &config.signing_key_id)].map(|(name, key)| {
        check(format!("key:{name}"), true, async move {
            let out = m.kms.describe_key().key_id(key).send().await.map_err(|e| shared::platform::error::error_chain(&e))?;
            match out.key_metadata.and_then(|k| k.key_state) {
                Some(aws_sdk_kms::types::KeyState::Enabled) => Ok(()),
                other => Err(format!("key state {other:?}")),
            }
        })
    }));
    let (table, buckets, queue_checks, keys) = tokio::join!(table, buckets, queue_checks, keys);
    let mut dependencies = vec![table];
    dependencies.extend(buckets);
    dependencies.extend(queue_checks);
    dependencies.extend(keys);
    let integrations = match shared::domain::integration_health::all(state.platform.store.store()).await {
        Ok(list) => list,
        Err(e) => {
            dependencies.push(DependencyHealth {
                name: "integrations".into(),
                status: Status::Down,
                latency_ms: 0.0,
                error: Some(e.to_string()),
                critical: false,
            });
            Vec::new()
        }
    };
    let status = if dependencies.iter().any(|d| d.critical && d.status == Status::Down) {
        Status::Down
    } else if dependencies.iter().any(|d| d.status == Status::Down) || integrations.iter().any(|i| i.failing()) {
        Status::Degraded
    } else {
        Status::Ok
    };
    Health { status, checked_at: shared::store::timestamp(chrono::Utc::now()), dependencies, integrations }
}

#[utoipa::path(get, path = "/api/v1/admin/system/health", tag = "system", security(("bearer" = [])),
    responses(
        (status = 200, description = "Status of every dependency (the body says ok, degraded or down)", body = Health),
        (status = 403, description = "Missing system:read", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<AdminState>) -> Result<Json<Health>> {
    Ok(Json(check_all(&state).await))
}
