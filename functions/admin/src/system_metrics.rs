//! `GET /api/v1/admin/system/metrics?from&to`: request counts, error rates
//! and latency percentiles per function, and queue depths, over a time
//! range. A `MetricsSource` chosen at start answers: CloudWatch deployed
//! (the functions' EMF lines become metrics in namespace `Keel`), or the
//! in-memory ring the local stack installs as the telemetry sink.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Duration, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use shared::http::extract::ValidQuery;
use shared::platform::error::{Error, Result, aws};
use shared::platform::telemetry::MetricsRing;
use shared::platform::time;
use utoipa::{IntoParams, ToSchema};

use crate::AdminState;
use crate::monitoring::queues;

/// Longest range one request may ask for.
pub const MAX_RANGE_DAYS: i64 = 15;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// Start (RFC 3339); default one hour before `to`.
    pub from: Option<String>,
    /// End (RFC 3339); default now.
    pub to: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FunctionMetrics {
    pub function: String,
    pub requests: u64,
    /// Responses with a 5xx status.
    pub server_errors: u64,
    /// server_errors / requests (0 without requests).
    pub error_rate: f64,
    /// Request latency in milliseconds; absent without requests.
    pub latency_ms: Option<Percentiles>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueMetrics {
    pub name: String,
    /// Most messages visible at once in the range (CloudWatch), or now (local: the emulator keeps no history).
    pub max_visible: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SystemMetrics {
    pub from: String,
    pub to: String,
    /// `cloudwatch` or `local`.
    pub source: String,
    pub functions: Vec<FunctionMetrics>,
    pub queues: Vec<QueueMetrics>,
}

/// Where metrics come from. Queue names are (name, queue URL).
pub trait MetricsSource: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;
    fn functions(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> BoxFuture<'_, Result<Vec<FunctionMetrics>>>;
    fn queues<'a>(&'a self, from: DateTime<Utc>, to: DateTime<Utc>, queues: Vec<(&'static str, String)>) -> BoxFuture<'a, Result<Vec<QueueMetrics>>>;
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn function_metrics(function: String, requests: u64, server_errors: u64, latency_ms: Option<Percentiles>) -> FunctionMetrics {
    let error_rate = if requests == 0 { 0.0 } else { server_errors as f64 / requests as f64 };
    FunctionMetrics { function, requests, server_errors, error_rate, latency_ms }
}

/// The local stack's source: the EMF points the ring captured, and the
/// queues' current depths.
#[derive(Debug)]
pub struct LocalMetrics {
    pub ring: Arc<MetricsRing>,
    pub sqs: aws_sdk_sqs::Client,
}

impl MetricsSource for LocalMetrics {
    fn name(&self) -> &'static str {
        "local"
    }

    fn functions(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> BoxFuture<'_, Result<Vec<FunctionMetrics>>> {
        Box::pin(async move {
            let mut by_function: BTreeMap<String, (u64, u64, Vec<f64>)> = BTreeMap::new();
            for point in self.ring.between(from.timestamp_millis(), to.timestamp_millis()) {
                let (Some(function), Some(requests)) = (point.dimension("Function"), point.value("Requests")) else { continue };
                let entry = by_function.entry(function.to_string()).or_default();
                entry.0 += requests as u64;
                entry.1 += point.value("ServerErrors").unwrap_or(0.0) as u64;
                if let Some(latency) = point.value("Latency") {
                    entry.2.push(latency);
                }
            }
            Ok(by_function
                .into_iter()
                .map(|(function, (requests, errors, mut latencies))| {
                    latencies.sort_by(f64::total_cmp);
                    let latency = (!latencies.is_empty()).then(|| Percentiles {
                        p50: percentile(&latencies, 50.0),
                        p95: percentile(&latencies, 95.0),
                        p99: percentile(&latencies, 99.0),
                    });
                    function_metrics(function, requests, errors, latency)
                })
                .collect())
        })
    }

    fn queues<'a>(&'a self, _from: DateTime<Utc>, _to: DateTime<Utc>, queues: Vec<(&'static str, String)>) -> BoxFuture<'a, Result<Vec<QueueMetrics>>> {
        Box::pin(async move {
            let depths = queues.into_iter().map(|(name, url)| async move {
                let out = self
                    .sqs
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                    .send()
                    .await
                    .map_err(aws("sqs GetQueueAttributes"))?;
                let visible = out
                    .attributes
                    .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages).and_then(|v| v.parse().ok()))
                    .unwrap_or(0);
                Ok::<_, Error>(QueueMetrics { name: name.to_string(), max_visible: visible })
            });
            futures::future::try_join_all(depths).await
        })
    }
}

/// The deployed source: one GetMetricData call for the functions (SEARCH
/// expressions over namespace `Keel` by `Function`, one period covering the
/// whole range) and one for the queues (AWS/SQS). The CloudWatch client is
/// built on the first read, not at init: only this route calls it.
#[derive(Debug)]
pub struct CloudWatchMetrics {
    sdk: aws_config::SdkConfig,
    client: OnceLock<aws_sdk_cloudwatch::Client>,
}

/// One period spanning the range, in whole minutes (CloudWatch's unit).
fn whole_range_period(from: DateTime<Utc>, to: DateTime<Utc>) -> i32 {
    let seconds = (to - from).num_seconds().max(60);
    (((seconds + 59) / 60) * 60).min(i32::MAX as i64) as i32
}

impl CloudWatchMetrics {
    pub fn new(sdk: &aws_config::SdkConfig) -> CloudWatchMetrics {
        CloudWatchMetrics { sdk: sdk.clone(), client: OnceLock::new() }
    }

    fn client(&self) -> &aws_sdk_cloudwatch::Client {
        self.client.get_or_init(|| aws_sdk_cloudwatch::Client::new(&self.sdk))
    }

    async fn metric_data(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        queries: Vec<aws_sdk_cloudwatch::types::MetricDataQuery>,
    ) -> Result<Vec<aws_sdk_cloudwatch::types::MetricDataResult>> {
        use aws_sdk_cloudwatch::primitives::DateTime as AwsTime;
        let mut results = Vec::new();
        let mut next = None;
        loop {
            let out = self
                .client()
                .get_metric_data()
                .start_time(AwsTime::from_millis(from.timestamp_millis()))
                .end_time(AwsTime::from_millis(to.timestamp_millis()))
                .set_metric_data_queries(Some(queries.clone()))
                .set_next_token(next)
                .send()
                .await
                .map_err(aws("cloudwatch GetMetricData"))?;
            results.extend(out.metric_data_results.unwrap_or_default());
            next = out.next_token;
            if next.is_none() {
                return Ok(results);
            }
        }
    }
}

impl MetricsSource for CloudWatchMetrics {
    fn name(&self) -> &'static str {
        "cloudwatch"
    }

    fn functions(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> BoxFuture<'_, Result<Vec<FunctionMetrics>>> {
        Box::pin(async move {
            use aws_sdk_cloudwatch::types::MetricDataQuery;
            let period = whole_range_period(from, to);
            let stats = [
                ("requests", "Requests", "Sum"),
                ("errors", "ServerErrors", "Sum"),
                ("p50", "Latency", "p50"),
                ("p95", "Latency", "p95"),
                ("p99", "Latency", "p99"),
            ];
            let queries = stats
                .iter()
                .map(|(id, metric, stat)| {
                    MetricDataQuery::builder()
                        .id(*id)
                        .expression(format!("SEARCH('{{Keel,Function}} MetricName=\"{metric}\"', '{stat}', {period})"))
                        // Dynamic label: each series is named by its function.
                        .label("${PROP('Dim.Function')}")
                        .return_data(true)
                        .build()
                })
                .collect();
            let results = self.metric_data(from, to, queries).await?;
            let mut by_function: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
            for r in results {
                let (Some(id), Some(label)) = (r.id(), r.label()) else { continue };
                let value = r.values().iter().sum::<f64>();
                by_function.entry(label.to_string()).or_default().insert(id.to_string(), value);
            }
            Ok(by_function
                .into_iter()
                .map(|(function, v)| {
                    let get = |k: &str| v.get(k).copied().unwrap_or(0.0);
                    let requests = get("requests") as u64;
                    let latency = (requests > 0).then(|| Percentiles { p50: get("p50"), p95: get("p95"), p99: get("p99") });
                    function_metrics(function, requests, get("errors") as u64, latency)
                })
                .collect())
        })
    }

    fn queues<'a>(&'a self, from: DateTime<Utc>, to: DateTime<Utc>, queues: Vec<(&'static str, String)>) -> BoxFuture<'a, Result<Vec<QueueMetrics>>> {
        Box::pin(async move {
            use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
            let period = whole_range_period(from, to);
            let queries = queues
                .iter()
                .enumerate()
                .map(|(i, (_, url))| {
                    let queue_name = url.rsplit('/').next().unwrap_or(url);
                    let metric = Metric::builder()
                        .namespace("AWS/SQS")
                        .metric_name("ApproximateNumberOfMessagesVisible")
                        .dimensions(Dimension::builder().name("QueueName").value(queue_name).build())
                        .build();
                    MetricDataQuery::builder()
                        .id(format!("q{i}"))
                        .metric_stat(MetricStat::builder().metric(metric).period(period).stat("Maximum").build())
                        .return_data(true)
                        .build()
                })
                .collect();
            let results = self.metric_data(from, to, queries).await?;
            Ok(queues
                .iter()
                .enumerate()
                .map(|(i, (name, _))| {
                    let id = format!("q{i}");
                    let max = results.iter().filter(|r| r.id() == Some(id.as_str())).flat_map(|r| r.values().iter().copied()).fold(0.0, f64::max);
                    QueueMetrics { name: name.to_string(), max_visible: max as i64 }
                })
                .collect())
        })
    }
}

#[utoipa::path(get, path = "/api/v1/admin/system/metrics", tag = "system", params(MetricsQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Requests, error rates and latency percentiles per function, and queue depths", body = SystemMetrics),
        (status = 400, description = "Invalid range", body = shared::platform::error::Problem),
        (status = 403, description = "Missing system:read", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<AdminState>, ValidQuery(q): ValidQuery<MetricsQuery>) -> Result<Json<SystemMetrics>> {
    let to = time::field("to", q.to.as_deref())?.unwrap_or_else(Utc::now);
    let from = time::field("from", q.from.as_deref())?.unwrap_or(to - Duration::hours(1));
    if from >= to {
        return Err(Error::field("from", "must be before to"));
    }
    if to - from > Duration::days(MAX_RANGE_DAYS) {
        return Err(Error::field("from", format!("the range is at most {MAX_RANGE_DAYS} days")));
    }
    let source = &state.monitoring.metrics;
    let watched: Vec<(&'static str, String)> = queues(&state.platform.config).into_iter().map(|(n, u)| (n, u.to_string())).collect();
    let (functions, queues) = tokio::try_join!(source.functions(from, to), source.queues(from, to, watched))?;
    Ok(Json(SystemMetrics { from: shared::store::timestamp(from), to: shared::store::timestamp(to), source: source.name().into(), functions, queues }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 95.0), 95.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn period_covers_the_range_in_minutes() {
        let t = Utc::now();
        assert_eq!(whole_range_period(t, t + Duration::seconds(61)), 120);
        assert_eq!(whole_range_period(t, t + Duration::seconds(5)), 60);
    }
}
