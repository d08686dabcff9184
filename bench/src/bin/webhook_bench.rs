//! `make bench`, webhooks: on the local stack (moto), with the same stream
//! reader and queue poller `make dev` runs, and a receiver on 127.0.0.1
//! answering 204 at once:
//!
//! - **first-attempt latency**: from the commit of an audit entry to its
//!   delivery's arrival at the receiver (stream → dispatcher → delivery
//!   record → stream → webhooks queue → worker → POST), p50/p95/p99 over
//!   `KEEL_WEBHOOK_BENCH_EVENTS` (200) events a few ms apart;
//! - **throughput per worker**: `KEEL_WEBHOOK_BENCH_BACKLOG` (1,000)
//!   deliveries queued, then drained by one worker (batches of 10, as the
//!   event source mapping sends them), deliveries per second.
//!
//! The local stream reader polls every 500 ms when idle and the queue is
//! long-polled, so the latency is mostly those waits and the emulator's
//! speed; reported, not asserted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keel_local::stream_reader::{Start, StreamReader};
use shared::audit::{Actor, AuditEntry};
use shared::identity::users::{Email, User, UserStatus};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Arrival instants by audit entry id.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn receiver() -> anyhow::Result<(String, Arrivals)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://127.0.0.1:{}/hook", listener.local_addr()?.port());
    let arrivals: Arrivals = Default::default();
    let seen = arrivals.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let seen = seen.clone();
            async move {
                let at = Instant::now();
                if let Some(id) = serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["data"]["audit_entry_id"].as_str().map(str::to_string)) {
                    seen.lock().expect("arrivals").entry(id).or_insert(at);
                }
                http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, arrivals))
}

/// A user created as the system: one `user.create` audit entry, whose id
/// is returned.
async fn event(store: &shared::audit::Journal) -> anyhow::Result<String> {
    let email = Email::parse(&format!("{}@bench.example", uuid::Uuid::new_v4().simple())).map_err(|e| anyhow::anyhow!(e))?;
    let user = User::new(&email, "Bench", vec!["user".into()], UserStatus::Active);
    let audit = AuditEntry::new(&Actor::system("bench"), "user.create", "user", &user.id);
    let id = audit.id.clone();
    shared::identity::users::create(store, &user, audit).await?;
    Ok(id)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = keel_local::repo_root();
    let moto = keel_local::moto::Moto::start(None).await?;
    let sdk = keel_local::sdk_config(&moto.endpoint).await;
    let template = keel_local::template::Template::load(&root.join("template.yaml"))?;
    let stack = keel_local::provision::provision(&sdk, &template, "webhookbench", &Default::default()).await?;
    let mut app = keel_local::app::build(&sdk, &stack.env).await?;
    // The receiver is on this machine (KEEL_WEBHOOKS_ALLOW_LOOPBACK=1).
    app.integrations.webhook_policy = integrations::ssrf::Policy { allow_loopback: true };
    app.webhooks.state = app.integrations.clone();
    let store = app.platform.store.clone();

    let (url, arrivals) = receiver().await?;
    let email = Email::parse("bench-admin@bench.example").map_err(|e| anyhow::anyhow!(e))?;
    let admin = User::new(&email, "Bench admin", vec!["super_admin".into()], UserStatus::Active);
    shared::identity::users::create(&store, &admin, AuditEntry::new(&Actor::system("bench"), "user.create", "user", &admin.id)).await?;
    let grant = shared::identity::token::SessionGrant::new(&[shared::identity::token::amr::PASSWORD], None);
    let token = app.signer.access_token(&admin, "bench", &grant).await?.token;
    let router = integrations::router(app.integrations.clone());
    let request = http::Request::post("/api/v1/integrations/webhooks")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(serde_json::json!({"url": url, "event_types": ["user.create"]}).to_string()))?;
    let created = tower::ServiceExt::oneshot(router, request).await?;
    anyhow::ensure!(created.status() == http::StatusCode::CREATED, "creating the endpoint: {}", created.status());

    let stream_arn = stack.resources["Table"].attributes["StreamArn"].clone();
    let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);
    let (queue_url, queue_arn) = (stack.env["KEEL_WEBHOOKS_QUEUE_URL"].clone(), stack.resources["WebhooksQueue"].attributes["Arn"].clone());

    // 1. Latency, with make dev's own loops running.
    let events = setting("KEEL_WEBHOOK_BENCH_EVENTS", 200);
    let reader = StreamReader::open(streams.clone(), &stream_arn, Start::Latest).await?;
    // Stopped between polls, not aborted: see `poller::run_until`.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let dispatcher = tokio::spawn(keel_local::stream_reader::run_until(reader, app.webhook_dispatcher.clone(), stopped.clone()));
    let poller = tokio::spawn(keel_local::poller::run_until(app.clients.sqs.clone(), queue_url.clone(), queue_arn.clone(), app.webhooks.clone(), stopped));
    let mut committed = Vec::with_capacity(events);
    for _ in 0..events {
        let id = event(&store).await?;
        committed.push((id, Instant::now()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrivals.lock().expect("arrivals").len() < events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send_replace(true);
    dispatcher.await?;
    poller.await?;
    let seen = arrivals.lock().expect("arrivals").clone();
    let mut latencies: Vec<f64> = committed.iter().filter_map(|(id, at)| seen.get(id).map(|arrived| (*arrived - *at).as_secs_f64() * 1000.0)).collect();
    anyhow::ensure!(latencies.len() == events, "{} of {events} deliveries arrived", latencies.len());
    latencies.sort_by(f64::total_cmp);

    // 2. Throughput: a backlog queued with no worker running, then one worker.
    let backlog = setting("KEEL_WEBHOOK_BENCH_BACKLOG", 1000);
    let mut reader = StreamReader::open(streams, &stream_arn, Start::Latest).await?;
    let mut ids = Vec::with_capacity(backlog);
    for chunk in (0..backlog).collect::<Vec<_>>().chunks(50) {
        let made = futures::future::try_join_all(chunk.iter().map(|_| event(&store))).await?;
        ids.extend(made);
    }
    // Entries → deliveries, then deliveries → queue (the dispatcher's two steps).
    while reader.drain(&app.webhook_dispatcher).await.context("draining the stream")? > 0 {}
    let started = Instant::now();
    let mut handled = 0;
    while ids.iter().any(|id| !arrivals.lock().expect("arrivals").contains_key(id)) {
        let n = keel_local::poller::poll_once(&app.clients.sqs, &queue_url, &queue_arn, &app.webhooks, 1).await?;
        handled += n;
        anyhow::ensure!(started.elapsed() < Duration::from_secs(900), "the backlog did not drain");
    }
    let seconds = started.elapsed().as_secs_f64();

    println!("Webhooks (local stack, moto; receiver on 127.0.0.1 answering 204)");
    println!(
        "  first-attempt latency over {events} events: p50 {:.0} ms  p95 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
    println!("  one worker, batches of 10: {backlog} deliveries ({handled} messages) in {seconds:.1} s = {:.0} deliveries/s", backlog as f64 / seconds);
    Ok(())
}
