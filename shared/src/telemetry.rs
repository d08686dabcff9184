//! Structured JSON logs (with the request id and principal on every line of a
//! request) and CloudWatch Embedded Metric Format lines, which CloudWatch
//! turns into metrics without an API call on the hot path.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// JSON logs to stdout, filtered by `RUST_LOG` (default `info`). Safe to call
/// more than once (tests).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time() // Lambda timestamps every line itself
        .try_init();
}

/// Logs for tests: the same JSON lines, written through the test harness so
/// they show only for failing tests.
pub fn init_for_tests() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).with_test_writer().try_init();
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
        method = %request.method(),
        path = %request.uri().path(),
        principal = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(request).instrument(span.clone()))
        .await;
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

/// The Lambda function's name (metrics dimension), or `local`.
pub fn function_name() -> &'static str {
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

/// Print an EMF line to stdout, where the Lambda log stream picks it up.
pub fn emit_metric(dimensions: &[(&str, &str)], metrics: &[(&str, f64, &str)]) {
    println!("{}", emf_line(dimensions, metrics));
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
}
