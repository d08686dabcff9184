//! `make bench`, workflows: on the local stack (moto), with the same stream
//! reader and jobs-queue poller `make dev` runs:
//!
//! - **trigger-to-first-step latency**: from the commit of an audit entry
//!   (`user.create`) to the start of the first step of the run it
//!   triggers (stream → dispatcher → run + step message → stream → jobs
//!   queue → worker), p50/p95 over `KEEL_WORKFLOW_BENCH_EVENTS` (200)
//!   events a few ms apart;
//! - **steps per second per worker**: `KEEL_WORKFLOW_BENCH_RUNS` (200)
//!   runs of a 5-step workflow started at once, executed by one worker
//!   (batches of 10, as the event source mapping sends them) with the
//!   dispatcher sending each next step from the stream.
//!
//! The local stream reader polls every 500 ms when idle and the queue is
//! long-polled, so the latency is mostly those waits and the emulator's
//! speed; reported, not asserted.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keel_local::stream_reader::{Start, StreamReader};
use serde_json::{Value, json};
use shared::audit::{Actor, AuditEntry};
use shared::identity::users::{Email, User, UserStatus};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn call(router: &axum::Router, token: &str, method: &str, path: &str, body: Value) -> anyhow::Result<Value> {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))?;
    let response = tower::ServiceExt::oneshot(router.clone(), request).await?;
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await?.to_bytes();
    anyhow::ensure!(status.is_success(), "{method} {path}: {status} {}", String::from_utf8_lossy(&bytes));
    Ok(serde_json::from_slice(&bytes)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = keel_local::repo_root();
    let moto = keel_local::moto::Moto::start(None).await?;
    let sdk = keel_local::sdk_config(&moto.endpoint).await;
    let template = keel_local::template::Template::load(&root.join("template.yaml"))?;
    let stack = keel_local::provision::provision(&sdk, &template, "workflowbench", &Default::default()).await?;
    let app = keel_local::app::build(&sdk, &stack.env).await?;
    let store = app.platform.store.clone();
    let email = Email::parse("bench-admin@bench.example").map_err(|e| anyhow::anyhow!(e))?;
    let admin = User::new(&email, "Bench admin", vec!["super_admin".into()], UserStatus::Active);
    shared::identity::users::create(&store, &admin, AuditEntry::new(&Actor::system("bench"), "user.create", "user", &admin.id)).await?;
    let grant = shared::identity::token::SessionGrant::new(&[shared::identity::token::amr::PASSWORD], None);
    let token = app.signer.access_token(&admin, "bench", &grant).await?.token;
    let router = app.router.clone();
    let stream_arn = stack.resources["Table"].attributes["StreamArn"].clone();
    let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);
    let (queue_url, queue_arn) = (stack.env["KEEL_JOBS_QUEUE_URL"].clone(), stack.resources["JobsQueue"].attributes["Arn"].clone());

    // 1. Latency: an event-triggered workflow, make dev's loops running.
    let triggered = call(
        &router,
        &token,
        "POST",
        "/api/v1/workflows",
        // The burst is the point: past the default 120 runs a minute the
        // rate limit would refuse events.
        json!({"name": "bench", "max_runs_per_minute": 1000, "trigger": {"type": "event", "event": "user.created"},
               "steps": [{"id": "mark", "type": "set", "values": {"user": "{{ event.target.id }}"}}]}),
    )
    .await?;
    let workflow_id = triggered["id"].as_str().unwrap_or_default().to_string();
    let events = setting("KEEL_WORKFLOW_BENCH_EVENTS", 200);
    let reader = StreamReader::open(streams.clone(), &stream_arn, Start::Latest).await?;
    // Stopped between polls, not aborted: see `poller::run_until`.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let dispatcher = tokio::spawn(keel_local::stream_reader::run_until(reader, app.workflows_dispatcher.clone(), stopped.clone()));
    let poller = tokio::spawn(keel_local::poller::run_until(app.clients.sqs.clone(), queue_url.clone(), queue_arn.clone(), app.worker.clone(), stopped));
    let mut committed: Vec<(String, DateTime<Utc>)> = Vec::with_capacity(events);
    for _ in 0..events {
        let email = Email::parse(&format!("{}@bench.example", uuid::Uuid::new_v4().simple())).map_err(|e| anyhow::anyhow!(e))?;
        let user = User::new(&email, "Bench", vec!["user".into()], UserStatus::Active);
        let at = Utc::now();
        shared::identity::users::create(&store, &user, AuditEntry::new(&Actor::system("bench"), "user.create", "user", &user.id)).await?;
        committed.push((user.id.clone(), at));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut runs = Vec::new();
    while Instant::now() < deadline {
        runs = workflows::model::runs_of(&store, &workflow_id, 1_000).await?;
        if runs.len() >= events && runs.iter().all(|r| !r.steps.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first_step: std::collections::HashMap<String, DateTime<Utc>> = runs
        .iter()
        .filter_map(|r| {
            let target = r.context["event"]["target"]["id"].as_str()?.to_string();
            let started = r.steps.first()?.started_at.parse().ok()?;
            Some((target, started))
        })
        .collect();
    let mut latencies: Vec<f64> =
        committed.iter().filter_map(|(id, at)| first_step.get(id).map(|s| (*s - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0)).collect();
    anyhow::ensure!(latencies.len() == events, "{} of {events} runs reached their first step", latencies.len());
    latencies.sort_by(f64::total_cmp);
    stop.send_replace(true);
    dispatcher.await?;
    poller.await?;

    // 2. Throughput: runs of a 5-step workflow started at once, one worker.
    let total_runs = setting("KEEL_WORKFLOW_BENCH_RUNS", 200);
    let steps: Vec<Value> = (0..5).map(|i| json!({"id": format!("s{i}"), "type": "set", "values": {"n": format!("{{{{ input.n }}}}-{i}")}})).collect();
    let chain = call(&router, &token, "POST", "/api/v1/workflows", json!({"name": "steps", "trigger": {"type": "manual"}, "steps": steps})).await?;
    let chain_id = chain["id"].as_str().unwrap_or_default().to_string();
    let version = workflows::model::version(&store, &chain_id, 1).await?.ok_or_else(|| anyhow::anyhow!("no version"))?;
    let mut reader = StreamReader::open(streams, &stream_arn, Start::Latest).await?;
    for chunk in (0..total_runs).collect::<Vec<_>>().chunks(25) {
        futures::future::try_join_all(chunk.iter().map(|n| {
            let origin = workflows::engine::Origin::new("manual", json!({"type": "manual"}), json!({"n": n}));
            let started = workflows::engine::start(&version, origin, Utc::now(), store.table());
            let store = store.clone();
            async move { store.store().transact(started?.1).await }
        }))
        .await?;
    }
    let started = Instant::now();
    let mut executed = 0;
    loop {
        reader.drain(&app.workflows_dispatcher).await?;
        let n = keel_local::poller::poll_once(&app.clients.sqs, &queue_url, &queue_arn, &app.worker, 0).await?;
        executed += n;
        if n == 0 {
            let runs = workflows::model::runs_of(&store, &chain_id, 1_000).await?;
            if runs.len() >= total_runs && runs.iter().all(|r| r.status.is_final()) {
                break;
            }
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(900), "the runs did not finish");
    }
    let seconds = started.elapsed().as_secs_f64();

    println!("Workflows (local stack, moto)");
    println!(
        "  trigger-to-first-step latency over {events} events: p50 {:.0} ms  p95 {:.0} ms  max {:.0} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        latencies[latencies.len() - 1],
    );
    println!("  one worker, batches of 10: {total_runs} runs × 5 steps = {executed} steps in {seconds:.1} s = {:.0} steps/s", executed as f64 / seconds);
    Ok(())
}
