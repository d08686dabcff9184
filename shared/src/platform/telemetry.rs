//! Structured JSON logs (with the request id and principal on every line of a
//! request) and CloudWatch Embedded Metric Format lines, which CloudWatch
//! turns into metrics without an API call on the hot path.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt as _;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// JSON logs to stdout, filtered by `RUST_LOG` (default `info`). Safe to call
/// more than once (tests).
pub fn init() {
    init_with_log_file(None);
}

/// As [`init`], and every line at `info` or above also appended, with its
/// timestamp, to `log_file` (the local stack's `.keel/logs/keel.jsonl`,
/// which the admin function's log search reads as CloudWatch Logs is read
/// deployed).
pub fn init_with_log_file(log_file: Option<std::path::PathBuf>) {
    use tracing_subscriber::Layer as _;
    let stdout = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time() // Lambda timestamps every line itself
        .with_filter(log_filter("info"));
    let file = log_file.and_then(|path| file_layer(&path));
    let subscriber = tracing_subscriber::registry().with(stdout).with(file);
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Logs for tests: the same JSON lines, written through the test harness so
/// they show only for failing tests; and every `info` line to this test
/// process's log file ([`log_file`]), which the log search tests read.
pub fn init_for_tests() {
    use tracing_subscriber::Layer as _;
    let path = std::env::temp_dir().join(format!("keel-tests-{}", std::process::id())).join("keel.jsonl");
    let test = tracing_subscriber::fmt::layer().json().with_test_writer().with_filter(log_filter("warn"));
    let subscriber = tracing_subscriber::registry().with(test).with(file_layer(&path));
    let _ = tracing::subscriber::set_global_default(subscriber);
}

static LOG_FILE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// The file this process's logs are also written to, if any (set by the
/// first [`init_with_log_file`] or [`init_for_tests`] that opened one).
pub fn log_file() -> Option<&'static std::path::Path> {
    LOG_FILE.get().map(|p| p.as_path())
}

/// The JSON lines layer appending to `path` (created with its directory),
/// or none when it cannot be opened (logging must not stop the process).
fn file_layer<S>(path: &std::path::Path) -> Option<impl tracing_subscriber::Layer<S> + use<S>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    if LOG_FILE.get().is_some_and(|p| p != path) {
        return None;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ok()?;
    }
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path).ok()?;
    let _ = LOG_FILE.set(path.to_path_buf());
    Some(
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_target(true)
            .with_writer(std::sync::Mutex::new(file))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
    )
}

/// `RUST_LOG` as a list of `target=level` directives or a bare level (e.g.
/// `info` or `warn,shared=debug`), else `default`. Span and field filters,
/// which would need a regex engine in every binary, are not supported; an
/// unparsable value falls back to `default`.
fn log_filter(default: &str) -> tracing_subscriber::filter::Targets {
    std::env::var("RUST_LOG").ok().and_then(|spec| spec.parse().ok()).unwrap_or_else(|| default.parse().unwrap_or_default())
}

/// The id of the request being served on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Middleware: take the caller's `x-request-id` (or API Gateway's, or a new
/// one), make it current for the request, log the request in a span carrying
/// it, and echo it in the response.
pub async fn request_context(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .or_else(|| request.headers().get("x-amzn-requestid"))
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        function = %function_name(),
        method = %request.method(),
        path = %request.uri().path(),
        principal = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request).instrument(span.clone())).await;
    let _enter = span.enter();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = response.status().as_u16();
    tracing::info!(status, elapsed_ms, "served");
    emit_metric(
        &[("Function", function_name())],
        &[("Latency", elapsed_ms, "Milliseconds"), ("Requests", 1.0, "Count"), ("ServerErrors", f64::from(u8::from(status >= 500)), "Count")],
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The Lambda function's name (metrics dimension), the local function the
/// request is served by (see [`as_function`]), or `local`.
pub fn function_name() -> &'static str {
    if let Ok(name) = FUNCTION.try_with(|n| *n) {
        return name;
    }
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into()))
}

/// One EMF line: `metrics` are (name, value, unit) in namespace `Keel`,
/// with the given dimensions.
pub fn emf_line(dimensions: &[(&str, &str)], metrics: &[(&str, f64, &str)]) -> String {
    let timestamp = chrono::Utc::now().timestamp_millis();
    let mut root = serde_json::Map::new();
    let dimension_names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    root.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": "Keel",
                "Dimensions": [dimension_names],
                "Metrics": metrics.iter().map(|(n, _, u)| serde_json::json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (k, v) in dimensions {
        root.insert((*k).into(), serde_json::Value::String((*v).into()));
    }
    for (n, v, _) in metrics {
        root.insert((*n).into(), serde_json::json!(v));
    }
    serde_json::Value::Object(root).to_string()
}

/// Print an EMF line to stdout, where the Lambda log stream picks it up
/// (and CloudWatch turns it into metrics), or hand it to the installed sink.
pub fn emit_metric(dimensions: &[(&str, &str)], metrics: &[(&str, f64, &str)]) {
    match METRICS_SINK.get() {
        Some(sink) => sink.record(&MetricPoint {
            timestamp_ms: chrono::Utc::now().timestamp_millis(),
            dimensions: dimensions.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            values: metrics.iter().map(|(n, v, _)| (n.to_string(), *v)).collect(),
        }),
        None => println!("{}", emf_line(dimensions, metrics)),
    }
}

/// One emitted metric line, as a sink receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    pub timestamp_ms: i64,
    pub dimensions: Vec<(String, String)>,
    pub values: Vec<(String, f64)>,
}

impl MetricPoint {
    pub fn dimension(&self, name: &str) -> Option<&str> {
        self.dimensions.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn value(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

/// Where metrics go instead of stdout. Deployed, nothing is installed and
/// CloudWatch reads the EMF lines from the log stream; the local stack,
/// which has no CloudWatch, installs a [`MetricsRing`].
pub trait MetricsSink: Send + Sync + std::fmt::Debug {
    fn record(&self, point: &MetricPoint);
}

static METRICS_SINK: std::sync::OnceLock<std::sync::Arc<dyn MetricsSink>> = std::sync::OnceLock::new();

/// Install the process-wide sink (once; later calls keep the first).
pub fn install_metrics_sink(sink: std::sync::Arc<dyn MetricsSink>) {
    let _ = METRICS_SINK.set(sink);
}

/// The most recent metric points in memory (oldest dropped first).
#[derive(Debug)]
pub struct MetricsRing {
    capacity: usize,
    points: std::sync::Mutex<std::collections::VecDeque<MetricPoint>>,
}

impl MetricsRing {
    pub fn new(capacity: usize) -> MetricsRing {
        MetricsRing { capacity: capacity.max(1), points: std::sync::Mutex::new(std::collections::VecDeque::new()) }
    }

    /// The process-wide ring, installed as the sink on first use.
    pub fn installed() -> std::sync::Arc<MetricsRing> {
        static RING: std::sync::OnceLock<std::sync::Arc<MetricsRing>> = std::sync::OnceLock::new();
        RING.get_or_init(|| {
            let ring = std::sync::Arc::new(MetricsRing::new(100_000));
            install_metrics_sink(ring.clone());
            ring
        })
        .clone()
    }

    /// Points with `from_ms <= timestamp < to_ms`.
    pub fn between(&self, from_ms: i64, to_ms: i64) -> Vec<MetricPoint> {
        let points = self.points.lock().unwrap_or_else(|p| p.into_inner());
        points.iter().filter(|p| p.timestamp_ms >= from_ms && p.timestamp_ms < to_ms).cloned().collect()
    }
}

impl MetricsSink for MetricsRing {
    fn record(&self, point: &MetricPoint) {
        let mut points = self.points.lock().unwrap_or_else(|p| p.into_inner());
        if points.len() >= self.capacity {
            points.pop_front();
        }
        points.push_back(point.clone());
    }
}

tokio::task_local! {
    static FUNCTION: &'static str;
}

/// Run `future` as the named function: locally several functions share one
/// process, so the `Function` metric dimension comes from here.
pub async fn as_function<F: std::future::Future>(name: &'static str, future: F) -> F::Output {
    FUNCTION.scope(name, future).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn emf_line_has_metadata_dimensions_and_values() {
        let line = super::emf_line(&[("Function", "admin")], &[("Latency", 1.5, "Milliseconds")]);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["Function"], "admin");
        assert_eq!(v["Latency"], 1.5);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Keel");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0], "Function");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "Latency");
    }

    #[test]
    fn ring_keeps_the_newest_points_in_range() {
        use super::{MetricPoint, MetricsRing, MetricsSink};
        let ring = MetricsRing::new(2);
        for t in [10, 20, 30] {
            ring.record(&MetricPoint { timestamp_ms: t, dimensions: vec![("Function".into(), "admin".into())], values: vec![("Latency".into(), t as f64)] });
        }
        let points = ring.between(0, 100);
        assert_eq!(points.iter().map(|p| p.timestamp_ms).collect::<Vec<_>>(), vec![20, 30]);
        assert_eq!(ring.between(25, 100)[0].value("Latency"), Some(30.0));
        assert_eq!(points[0].dimension("Function"), Some("admin"));
    }
}
