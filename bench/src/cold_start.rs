//! Cold start: how long a function binary takes from process spawn until it
//! asks the Lambda Runtime API for its first event (`GET
//! /2018-06-01/runtime/invocation/next`). That is the part of a cold start
//! the function's own code decides; Lambda's sandbox setup and code download
//! come on top and are the same for every binary of a similar size.
//!
//! A small fake Runtime API on loopback records when the first `/next`
//! arrives, answers it with a sample event and records the response (so
//! every measured start is also proof that the binary serves), then the
//! process is killed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::mpsc;

/// Longest a start (plus its first event) may take before the run fails.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A binary to start, the event to give it, and the answer it must give.
pub struct Function {
    pub name: &'static str,
    pub path: PathBuf,
    /// Variables of the stack's environment this start goes without.
    pub unset: &'static [&'static str],
    pub event: Value,
    pub expect: Expect,
}

pub enum Expect {
    /// The response payload, exactly.
    Payload(Value),
    /// An API Gateway (payload v2) response with this status code.
    Status(u16),
}

impl Expect {
    fn check(&self, body: &[u8]) -> anyhow::Result<()> {
        let got: Value = serde_json::from_slice(body).context("the response is not JSON")?;
        let ok = match self {
            Expect::Payload(want) => &got == want,
            Expect::Status(want) => got["statusCode"].as_u64() == Some(u64::from(*want)),
        };
        if ok { Ok(()) } else { bail!("unexpected response to the sample event: {got}") }
    }
}

/// One measured start.
pub struct Start {
    /// Spawn until the first `/next` request arrived.
    pub init: Duration,
    /// First `/next` answered until the response to that event arrived.
    pub first_event: Duration,
}

/// What the fake Runtime API saw.
enum Seen {
    Next(Instant),
    Response(Instant, Bytes),
    Error(String, Bytes),
    Unexpected(String),
}

#[derive(Clone)]
struct RuntimeApi {
    /// The event for the first `/next`; later ones are held open.
    event: Arc<Mutex<Option<Value>>>,
    function_arn: String,
    seen: mpsc::UnboundedSender<Seen>,
}

async fn next(State(api): State<RuntimeApi>) -> Response {
    let _ = api.seen.send(Seen::Next(Instant::now()));
    let event = api.event.lock().expect("event lock").take();
    let Some(event) = event else {
        // The process is killed before it could get a second event.
        return std::future::pending().await;
    };
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + Duration::from_secs(30);
    let headers = [
        ("lambda-runtime-aws-request-id", "keel-bench-request-1".to_string()),
        ("lambda-runtime-deadline-ms", deadline.as_millis().to_string()),
        ("lambda-runtime-invoked-function-arn", api.function_arn.clone()),
        (header::CONTENT_TYPE.as_str(), "application/json".to_string()),
    ];
    (headers, event.to_string()).into_response()
}

async fn response(State(api): State<RuntimeApi>, body: Bytes) -> StatusCode {
    let _ = api.seen.send(Seen::Response(Instant::now(), body));
    StatusCode::ACCEPTED
}

async fn error(State(api): State<RuntimeApi>, uri: Uri, body: Bytes) -> StatusCode {
    let _ = api.seen.send(Seen::Error(uri.path().to_string(), body));
    StatusCode::ACCEPTED
}

async fn unexpected(State(api): State<RuntimeApi>, request: axum::extract::Request) -> StatusCode {
    let _ = api.seen.send(Seen::Unexpected(format!("{} {}", request.method(), request.uri())));
    StatusCode::NOT_FOUND
}

fn runtime_api(api: RuntimeApi) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{request_id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{request_id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .fallback(unexpected)
        .with_state(api)
}

/// Stops the fake Runtime API however the run ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The variables Lambda itself sets for a function (the ones
/// `lambda_runtime` reads, and the basics of the execution environment).
fn lambda_environment(function: &str, runtime_api: SocketAddr) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", format!("keel-bench-{function}")),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/keel-bench-{function}")),
        ("LANG", "en_US.UTF-8".into()),
        ("TZ", ":UTC".into()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
    ]
}

/// Start `function` once with `environment` (nothing is inherited from this
/// process) plus Lambda's own variables; its output goes to `log`.
pub async fn start_once(function: &Function, environment: &HashMap<String, String>, log: &Path) -> anyhow::Result<Start> {
    let (seen, mut events) = mpsc::unbounded_channel();
    let api = RuntimeApi {
        event: Arc::new(Mutex::new(Some(function.event.clone()))),
        function_arn: format!("arn:aws:lambda:{}:{}:function:keel-bench-{}", keel_local::REGION, keel_local::provision::ACCOUNT, function.name),
        seen,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.context("binding the fake Runtime API")?;
    let address = listener.local_addr()?;
    let app = runtime_api(api);
    let _server = AbortOnDrop(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }));

    let output = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut command = tokio::process::Command::new(&function.path);
    command
        .env_clear()
        .envs(environment.iter().filter(|(name, _)| !function.unset.contains(&name.as_str())))
        .envs(lambda_environment(function.name, address))
        .stdin(Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output)
        .kill_on_drop(true);

    let spawned = Instant::now();
    let mut child = command.spawn().with_context(|| format!("starting {}", function.path.display()))?;
    let outcome = tokio::time::timeout(TIMEOUT, watch(&mut child, &mut events, spawned, &function.expect))
        .await
        .unwrap_or_else(|_| Err(anyhow!("no first event served within {TIMEOUT:?}")));
    let _ = child.start_kill();
    let _ = child.wait().await;
    outcome.with_context(|| format!("{} ({}); its output:\n{}", function.name, function.path.display(), tail(log, 20)))
}

/// Follow one start until the response to its first event (or a failure).
async fn watch(child: &mut tokio::process::Child, events: &mut mpsc::UnboundedReceiver<Seen>, spawned: Instant, expect: &Expect) -> anyhow::Result<Start> {
    let mut ready = None;
    loop {
        tokio::select! {
            seen = events.recv() => match seen.ok_or_else(|| anyhow!("the fake Runtime API stopped"))? {
                Seen::Next(at) => {
                    ready.get_or_insert(at);
                }
                Seen::Response(at, body) => {
                    let ready = ready.ok_or_else(|| anyhow!("a response arrived before any /next"))?;
                    expect.check(&body)?;
                    return Ok(Start { init: ready - spawned, first_event: at - ready });
                }
                Seen::Error(path, body) => bail!("the function reported an error ({path}): {}", String::from_utf8_lossy(&body)),
                Seen::Unexpected(request) => bail!("unexpected Runtime API request: {request}"),
            },
            status = child.wait() => {
                let status = status?;
                bail!("the process exited ({status}) before serving its first event");
            }
        }
    }
}

/// The last `lines` lines of a log file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
