//! `GET /api/v1/admin/logs`: search the functions' structured logs, so the
//! `request_id` of a problem+json body leads to that request's lines in one
//! call. A `LogSource` chosen at start answers: CloudWatch Logs deployed
//! (FilterLogEvents over the functions' log groups), or the JSON lines file
//! the local stack's functions all append to (`.keel/logs/keel.jsonl`).
//! Both hold the same lines (`shared::platform::telemetry`), so one parser
//! reads them.

use std::io::BufRead as _;
use std::path::PathBuf;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shared::http::extract::ValidQuery;
use shared::platform::error::{Error, Result, aws};
use shared::platform::time;
use utoipa::{IntoParams, ToSchema};

use crate::AdminState;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// Longest range one search may cover.
pub const MAX_RANGE_DAYS: i64 = 15;
/// FilterLogEvents pages read per log group before the answer is cut short
/// (`truncated`): a search stays one bounded call.
const MAX_PAGES_PER_GROUP: usize = 10;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only this function's lines (`auth`, `admin`, `data`, ...).
    pub function: Option<String>,
    /// Lowest level shown: `trace`, `debug`, `info` (default), `warn` or `error`.
    pub level: Option<String>,
    /// Only the lines of this request (the `request_id` of a problem+json body, or the `x-request-id` header).
    pub request_id: Option<String>,
    /// Case-insensitive text the message or a field contains.
    pub q: Option<String>,
    /// Start (RFC 3339); default one hour before `to`.
    pub from: Option<String>,
    /// End (RFC 3339); default now.
    pub to: Option<String>,
    /// Most lines returned (1 to 1000, default 100).
    pub limit: Option<u32>,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = AdminLogLine)]
pub struct LogLine {
    /// When it was written (RFC 3339 UTC, microseconds).
    pub ts: String,
    /// `TRACE`, `DEBUG`, `INFO`, `WARN` or `ERROR`.
    pub level: String,
    /// The function that wrote it, when known.
    pub function: Option<String>,
    /// The request it belongs to, if written while serving one.
    pub request_id: Option<String>,
    pub message: String,
    /// The line's other fields (and its request's method, path, principal).
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = AdminLogSearch)]
pub struct LogSearch {
    /// Oldest first.
    pub lines: Vec<LogLine>,
    /// `cloudwatch` or `file`.
    pub source: String,
    /// More lines matched than were returned (narrow the range or filters).
    pub truncated: bool,
}

/// Where the logs are read from.
#[derive(Debug)]
pub enum LogSource {
    /// Deployed: the log groups named `/aws/lambda/<stack>-<LogicalId>-<suffix>`
    /// (SAM's generated function names), found at each search.
    CloudWatch { client: aws_sdk_cloudwatchlogs::Client, stack: String },
    /// The local stack: the JSON lines file every function appends to.
    File(PathBuf),
}

impl LogSource {
    /// The deployed source, for the stack named in `KEEL_STACK_NAME`
    /// (template.yaml; the log groups' names cannot be passed in: they
    /// derive from the functions', and this function's own would be a cycle).
    pub fn cloudwatch_from_env(sdk: &aws_config::SdkConfig) -> LogSource {
        let stack = std::env::var("KEEL_STACK_NAME").unwrap_or_default();
        LogSource::CloudWatch { client: aws_sdk_cloudwatchlogs::Client::new(sdk), stack }
    }

    pub fn name(&self) -> &'static str {
        match self {
            LogSource::CloudWatch { .. } => "cloudwatch",
            LogSource::File(_) => "file",
        }
    }

    /// The lines matching `filter`, oldest first, and whether more matched.
    pub async fn search(&self, filter: &LogFilter) -> Result<(Vec<LogLine>, bool)> {
        match self {
            LogSource::File(path) => {
                let (path, filter) = (path.clone(), filter.clone());
                tokio::task::spawn_blocking(move || search_file(&path, &filter)).await.map_err(|e| Error::internal(format!("log search: {e}")))?
            }
            LogSource::CloudWatch { client, stack } => {
                let groups = function_log_groups(client, stack).await?;
                if let Some(function) = &filter.function
                    && !groups.iter().any(|(f, _)| f == function)
                {
                    let known: Vec<&str> = groups.iter().map(|(f, _)| f.as_str()).collect();
                    return Err(Error::field("function", format!("no such function; one of: {}", known.join(", "))));
                }
                search_cloudwatch(client, &groups, filter).await
            }
        }
    }
}

/// (function, log group) for each of the stack's functions: `auth` for
/// `/aws/lambda/<stack>-AuthFunction-1A2B3C`, `compliance-review` for
/// `ComplianceReviewFunction` (the binary names).
async fn function_log_groups(client: &aws_sdk_cloudwatchlogs::Client, stack: &str) -> Result<Vec<(String, String)>> {
    let prefix = format!("/aws/lambda/{stack}-");
    let mut groups = Vec::new();
    let mut pages = client.describe_log_groups().log_group_name_prefix(&prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("logs DescribeLogGroups"))?;
        for group in page.log_groups.unwrap_or_default() {
            if let Some(name) = group.log_group_name
                && let Some(function) = function_of_group(&name, &prefix)
            {
                groups.push((function, name));
            }
        }
    }
    Ok(groups)
}

/// `admin` from `<prefix>AdminFunction-XYZ`.
pub fn function_of_group(group: &str, prefix: &str) -> Option<String> {
    let logical = group.strip_prefix(prefix)?.rsplit_once('-')?.0.strip_suffix("Function")?;
    let mut name = String::new();
    for c in logical.chars() {
        if c.is_ascii_uppercase() && !name.is_empty() {
            name.push('-');
        }
        name.push(c.to_ascii_lowercase());
    }
    (!name.is_empty()).then_some(name)
}

/// A validated search.
#[derive(Debug, Clone)]
pub struct LogFilter {
    pub function: Option<String>,
    pub min_level: Level,
    pub request_id: Option<String>,
    /// Lower-cased.
    pub q: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn parse(value: &str) -> Option<Level> {
        Some(match value.to_ascii_lowercase().as_str() {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warn" | "warning" => Level::Warn,
            "error" => Level::Error,
            _ => return None,
        })
    }
}

impl LogFilter {
    pub fn parse(q: LogsQuery, now: DateTime<Utc>) -> Result<LogFilter> {
        let mut errors = Vec::new();
        let mut field = |name: &str, message: &str| errors.push(shared::platform::error::FieldError::new(name, message));
        let function = q.function.filter(|f| !f.is_empty());
        if function.as_ref().is_some_and(|f| f.len() > 64 || !f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')) {
            field("function", "must be a function name (letters, digits, - and _; at most 64)");
        }
        let min_level = match q.level.as_deref() {
            None | Some("") => Level::Info,
            Some(v) => Level::parse(v).unwrap_or_else(|| {
                field("level", "must be one of trace, debug, info, warn, error");
                Level::Info
            }),
        };
        let request_id = q.request_id.filter(|r| !r.is_empty());
        if request_id.as_ref().is_some_and(|r| r.len() > 128 || !r.bytes().all(|b| b.is_ascii_graphic())) {
            field("request_id", "must be a request id (printable ASCII, at most 128)");
        }
        let text = q.q.filter(|t| !t.is_empty());
        if text.as_ref().is_some_and(|t| t.chars().count() > 200) {
            field("q", "at most 200 characters");
        }
        let limit = q.limit.map(|l| l as usize).unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            field("limit", &format!("must be from 1 to {MAX_LIMIT}"));
        }
        let to = time::field("to", q.to.as_deref());
        let from = time::field("from", q.from.as_deref());
        let (from, to) = match (from, to) {
            (Ok(from), Ok(to)) => {
                let to = to.unwrap_or(now);
                let from = from.unwrap_or(to - Duration::hours(1));
                if from >= to {
                    field("from", "must be before to");
                } else if to - from > Duration::days(MAX_RANGE_DAYS) {
                    field("from", &format!("the range is at most {MAX_RANGE_DAYS} days"));
                }
                (from, to)
            }
            (from, to) => {
                for e in [from.err(), to.err()].into_iter().flatten() {
                    if let Error::Validation(fields) = e {
                        errors.extend(fields);
                    }
                }
                (now, now)
            }
        };
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        Ok(LogFilter { function, min_level, request_id, q: text.map(|t| t.to_lowercase()), from, to, limit })
    }

    fn matches(&self, line: &LogLine, at: DateTime<Utc>) -> bool {
        at >= self.from
            && at < self.to
            && Level::parse(&line.level).is_some_and(|l| l >= self.min_level)
            && self.request_id.as_ref().is_none_or(|id| line.request_id.as_ref() == Some(id))
            && self.function.as_ref().is_none_or(|f| line.function.as_ref() == Some(f))
            && self
                .q
                .as_ref()
                .is_none_or(|q| line.message.to_lowercase().contains(q) || Value::Object(line.fields.clone()).to_string().to_lowercase().contains(q))
    }
}

/// One line as `tracing_subscriber`'s JSON format writes it (`timestamp`,
/// `level`, `fields.message`, `target`, and the request span's fields under
/// `span`); `ts` and `function` when the line has none (CloudWatch's event
/// time, the log group's function). EMF metric lines and text lines (the
/// Lambda runtime's START/END/REPORT) are not log lines here.
pub fn parse_line(text: &str, ts: Option<DateTime<Utc>>, function: Option<&str>) -> Option<(LogLine, DateTime<Utc>)> {
    let Value::Object(mut line) = serde_json::from_str::<Value>(text.trim()).ok()? else { return None };
    if line.contains_key("_aws") {
        return None;
    }
    let at = line.get("timestamp").and_then(Value::as_str).and_then(time::parse).or(ts)?;
    let level = line.get("level").and_then(Value::as_str)?.to_ascii_uppercase();
    let mut fields = match line.remove("fields") {
        Some(Value::Object(fields)) => fields,
        _ => Map::new(),
    };
    let message = match fields.remove("message") {
        Some(Value::String(m)) => m,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let mut span = match line.remove("span") {
        Some(Value::Object(span)) => span,
        _ => Map::new(),
    };
    span.remove("name");
    let request_id = span.remove("request_id").and_then(|v| v.as_str().map(String::from));
    let span_function = span.remove("function").and_then(|v| v.as_str().map(String::from));
    for (k, v) in span {
        fields.entry(k).or_insert(v);
    }
    if let Some(target) = line.remove("target") {
        fields.entry("target").or_insert(target);
    }
    let function = function.map(String::from).or(span_function);
    Some((LogLine { ts: time::timestamp(at), level, function, request_id, message, fields }, at))
}

fn search_file(path: &std::path::Path, filter: &LogFilter) -> Result<(Vec<LogLine>, bool)> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
        Err(e) => return Err(Error::internal(format!("opening the log file: {e}"))),
    };
    let mut lines = Vec::new();
    // A line being appended while this reads is cut short and fails to
    // parse: skipped, as are lines that are not JSON.
    for text in std::io::BufReader::new(file).lines() {
        let Ok(text) = text else { continue };
        // Most searches are for one request: skip other lines unparsed.
        if filter.request_id.as_ref().is_some_and(|id| !text.contains(id.as_str())) {
            continue;
        }
        let Some((line, at)) = parse_line(&text, None, None) else { continue };
        if filter.matches(&line, at) {
            lines.push((at, line));
        }
    }
    // Appends from several threads may be a little out of order.
    lines.sort_by_key(|(at, _)| *at);
    let truncated = lines.len() > filter.limit;
    Ok((lines.into_iter().take(filter.limit).map(|(_, l)| l).collect(), truncated))
}

async fn search_cloudwatch(client: &aws_sdk_cloudwatchlogs::Client, groups: &[(String, String)], filter: &LogFilter) -> Result<(Vec<LogLine>, bool)> {
    let wanted = groups.iter().filter(|(f, _)| filter.function.as_ref().is_none_or(|w| w == f));
    let searches = wanted.map(|(function, group)| async move {
        let mut found = Vec::new();
        let mut truncated = false;
        let mut next = None;
        for page in 0.. {
            if page == MAX_PAGES_PER_GROUP {
                truncated = true;
                break;
            }
            let mut call = client
                .filter_log_events()
                .log_group_name(group)
                .start_time(filter.from.timestamp_millis())
                .end_time(filter.to.timestamp_millis())
                .set_next_token(next.take());
            // The request id as a quoted term: CloudWatch returns only the
            // events containing it, the exact match is checked here.
            if let Some(id) = &filter.request_id {
                call = call.filter_pattern(format!("\"{}\"", id.replace('"', "")));
            }
            let out = match call.send().await {
                Ok(out) => out,
                // A function that has not run yet has no log group.
                Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => break,
                Err(e) => return Err(aws("logs FilterLogEvents")(e)),
            };
            for event in out.events.unwrap_or_default() {
                let ts = event.timestamp.and_then(DateTime::from_timestamp_millis);
                let Some((line, at)) = event.message.as_deref().and_then(|m| parse_line(m, ts, Some(function))) else { continue };
                if filter.matches(&line, at) {
                    found.push((at, line));
                }
            }
            if found.len() > filter.limit {
                truncated = true;
                break;
            }
            match out.next_token {
                Some(token) => next = Some(token),
                None => break,
            }
        }
        Ok::<_, Error>((found, truncated))
    });
    let mut lines = Vec::new();
    let mut truncated = false;
    for (found, cut) in futures::future::try_join_all(searches).await? {
        lines.extend(found);
        truncated |= cut;
    }
    lines.sort_by_key(|(at, _)| *at);
    truncated |= lines.len() > filter.limit;
    Ok((lines.into_iter().take(filter.limit).map(|(_, l)| l).collect(), truncated))
}

#[utoipa::path(get, path = "/api/v1/admin/logs", tag = "system", params(LogsQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "The matching log lines, oldest first", body = LogSearch),
        (status = 400, description = "An invalid filter (the field is named)", body = shared::platform::error::Problem),
        (status = 403, description = "Missing system:read", body = shared::platform::error::Problem),
    ))]
pub async fn search(State(state): State<AdminState>, ValidQuery(q): ValidQuery<LogsQuery>) -> Result<Json<LogSearch>> {
    let filter = LogFilter::parse(q, Utc::now())?;
    let source = &state.monitoring.logs;
    let (lines, truncated) = source.search(&filter).await?;
    Ok(Json(LogSearch { lines, source: source.name().into(), truncated }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> LogsQuery {
        LogsQuery { function: None, level: None, request_id: None, q: None, from: None, to: None, limit: None }
    }

    #[test]
    fn reads_a_request_line_as_telemetry_writes_it() {
        let text = r#"{"timestamp":"2026-12-04T10:00:00.123456Z","level":"INFO","fields":{"message":"request refused","status":404,"problem":"not-found"},"target":"shared::platform::error","span":{"request_id":"r-1","function":"admin","method":"GET","path":"/x","name":"request"}}"#;
        let (line, at) = parse_line(text, None, None).unwrap();
        assert_eq!(time::timestamp(at), "2026-12-04T10:00:00.123456Z");
        assert_eq!(line.level, "INFO");
        assert_eq!(line.function.as_deref(), Some("admin"));
        assert_eq!(line.request_id.as_deref(), Some("r-1"));
        assert_eq!(line.message, "request refused");
        assert_eq!(line.fields["status"], 404);
        assert_eq!(line.fields["path"], "/x");
        assert!(!line.fields.contains_key("name"));
    }

    #[test]
    fn cloudwatch_lines_take_the_event_time_and_the_group_function() {
        let ts = DateTime::from_timestamp_millis(1_780_000_000_000);
        let (line, at) = parse_line(r#"{"level":"WARN","fields":{"message":"slow"},"span":{"function":"keel-AdminFunction-x"}}"#, ts, Some("admin")).unwrap();
        assert_eq!(Some(at), ts);
        assert_eq!(line.function.as_deref(), Some("admin"));
        assert!(parse_line(r#"{"_aws":{},"Latency":1}"#, ts, Some("admin")).is_none());
        assert!(parse_line("START RequestId: 1 Version: $LATEST", ts, Some("admin")).is_none());
    }

    #[test]
    fn filters_are_validated_and_named() {
        let now = Utc::now();
        let bad = LogsQuery { level: Some("loud".into()), from: Some("yesterday".into()), limit: Some(5000), ..query() };
        let Err(Error::Validation(errors)) = LogFilter::parse(bad, now) else { panic!("expected a validation error") };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["level", "limit", "from"]);
        let filter = LogFilter::parse(query(), now).unwrap();
        assert_eq!((filter.to - filter.from, filter.limit, filter.min_level), (Duration::hours(1), DEFAULT_LIMIT, Level::Info));
    }

    #[test]
    fn matches_level_request_function_and_text() {
        let now = Utc::now();
        let filter = LogFilter::parse(LogsQuery { level: Some("warn".into()), q: Some("DISK".into()), request_id: Some("r".into()), ..query() }, now).unwrap();
        let line = |level: &str, message: &str| LogLine {
            ts: String::new(),
            level: level.into(),
            function: Some("admin".into()),
            request_id: Some("r".into()),
            message: message.into(),
            fields: Map::new(),
        };
        let at = now - Duration::minutes(1);
        assert!(filter.matches(&line("ERROR", "disk full"), at));
        assert!(!filter.matches(&line("INFO", "disk full"), at));
        assert!(!filter.matches(&line("ERROR", "cpu hot"), at));
        assert!(!filter.matches(&line("ERROR", "disk full"), now - Duration::hours(2)));
        let prefix = "/aws/lambda/keel-";
        assert_eq!(function_of_group("/aws/lambda/keel-AdminFunction-1AB2", prefix).as_deref(), Some("admin"));
        assert_eq!(function_of_group("/aws/lambda/keel-ComplianceReviewFunction-9Z", prefix).as_deref(), Some("compliance-review"));
        assert_eq!(function_of_group("/aws/lambda/other-AdminFunction-1AB2", prefix), None);
    }
}
