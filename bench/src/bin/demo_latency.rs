//! Request latency on the demo data, as `make dev` leaves the local stack:
//! moto with the seeded demo (3,000 users by default, `KEEL_DEMO_USERS`),
//! the dashboard rollups backfilled, and the bootstrapped super admin.
//!
//! 1. `POST /api/v1/data/export` (users, CSV, `delivery: auto`, and a few
//!    other datasets): median and max of a few requests each, with the
//!    answer (200 inline / 202 job). Goal: every request under 1 s.
//! 2. The first audit seal of the fresh stack (the demo's history: the
//!    genesis digest), timed as `make dev` runs it shortly after start.
//! 3. The verification `make dev` runs right after that seal (the chain
//!    and the entries from genesis), then `GET /api/v1/admin/audit-logs/verify`
//!    (since the last verified digest), again, and with `full_chain=true`.
//!    Goal: under 1 s for each API call.
//!
//! `cargo run --release -p keel-bench --bin demo-latency` (run by `make bench`).

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Requests timed per export (`KEEL_BENCH_REQUESTS`, default 5).
fn repeats() -> usize {
    std::env::var("KEEL_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(5)
}

async fn call(router: &Router, method: &str, path: &str, token: &str, body: Option<Value>) -> anyhow::Result<(u16, Value, Duration)> {
    let request =
        axum::http::Request::builder().method(method).uri(path).header("authorization", format!("Bearer {token}")).header("content-type", "application/json");
    let request = request.body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty))?;
    let started = Instant::now();
    // A stuck call fails the bench instead of hanging it.
    let response = tokio::time::timeout(Duration::from_secs(600), router.clone().oneshot(request))
        .await
        .map_err(|_| anyhow::anyhow!("{path}: no answer within 600 s"))??;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    let elapsed = started.elapsed();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    anyhow::ensure!(status < 300, "{path}: {status} {value}");
    Ok((status, value, elapsed))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let demo_users: usize = std::env::var("KEEL_DEMO_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let moto = keel_local::moto::Moto::start(None).await?;
    let sdk = keel_local::sdk_config(&moto.endpoint).await;
    let template = keel_local::template::Template::load(&keel_local::repo_root().join("template.yaml"))?;
    let stack = keel_local::provision::provision(&sdk, &template, "demo-latency", &Default::default()).await?;
    let app = keel_local::app::build(&sdk, &stack.env).await?;
    let store = &app.platform.store;

    // As `make dev` does: demo data, rollups backfilled, the super admin.
    let started = Instant::now();
    let seeded = keel_local::seed::load(store, demo_users, 2026).await?;
    streams::backfill::run(store).await.map_err(|e| anyhow::anyhow!("backfill: {e}"))?;
    let admin = shared::identity::users::bootstrap_admin(store, "admin@bench.test", "Bench Admin", "correct horse battery staple", false).await?;
    eprintln!("seeded {seeded:?} in {:.1} s", started.elapsed().as_secs_f64());
    let grant = shared::identity::token::SessionGrant::new(&[shared::identity::token::amr::PASSWORD, shared::identity::token::amr::OTP], None);
    let token = app.signer.access_token(&admin, "bench-session", &grant).await?.token;

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "Request latency on the demo data ({demo_users} users; in-process router, moto on loopback), load average {}",
        load.split_whitespace().next().unwrap_or("?")
    );
    let exports = [
        ("users, CSV", json!({"dataset": "users", "format": "csv"})),
        ("users active, JSON", json!({"dataset": "users", "format": "json", "filters": {"status": "active"}})),
        ("users invited, CSV", json!({"dataset": "users", "format": "csv", "filters": {"status": "invited"}})),
        ("charts pending, CSV", json!({"dataset": "charts", "format": "csv", "filters": {"moderation_status": "pending"}})),
        ("orders last year, CSV", json!({"dataset": "orders", "format": "csv"})),
        ("activity 30 days, CSV", json!({"dataset": "activity", "format": "csv"})),
        ("audit 7 days, CSV", json!({"dataset": "audit", "format": "csv"})),
        ("own data, JSON", json!({"format": "json"})),
    ];
    for (name, body) in exports {
        let mut times = Vec::new();
        let mut answers = std::collections::BTreeSet::new();
        for _ in 0..repeats() {
            let (status, _, elapsed) = call(&app.router, "POST", "/api/v1/data/export", &token, Some(body.clone())).await?;
            times.push(elapsed);
            answers.insert(status);
        }
        times.sort();
        println!("  export {name:<24} median {:>8.1} ms   max {:>8.1} ms   answered {answers:?}", ms(times[times.len() / 2]), ms(times[times.len() - 1]));
    }

    // The first seal of the fresh stack: the demo's history.
    let started = Instant::now();
    let outcome = keel_local::schedule::seal_now(&app.sealer).await?;
    let sealed = started.elapsed();
    let count = match &outcome {
        scheduler::SealOutcome::Sealed { count, .. } => *count,
        other => anyhow::bail!("first seal: {other:?}"),
    };
    println!("  first seal (genesis digest, {count} entries)      {:>8.1} ms", ms(sealed));
    // make dev verifies once right after that seal (from genesis), so the
    // first check through the API covers only what came after.
    let started = Instant::now();
    let report = app.admin.audit.verify_and_remember(None, false, chrono::Utc::now()).await?;
    anyhow::ensure!(report.ok, "start-up verify: {:?}", report.first_problem);
    println!(
        "  {:<44} {:>8.1} ms   digests {} entries {}",
        "start-up verify (from genesis, make dev)",
        ms(started.elapsed()),
        report.digests_checked,
        report.entries_checked
    );
    for (label, path) in [
        ("verify, first API call (since start-up)", "/api/v1/admin/audit-logs/verify"),
        ("verify, again (since last)", "/api/v1/admin/audit-logs/verify"),
        ("verify, full_chain=true", "/api/v1/admin/audit-logs/verify?full_chain=true"),
    ] {
        let (_, report, elapsed) = call(&app.router, "GET", path, &token, None).await?;
        anyhow::ensure!(report["ok"] == true, "verify: {report}");
        println!("  {label:<44} {:>8.1} ms   digests {} entries {}", ms(elapsed), report["digests_checked"], report["entries_checked"]);
    }
    // A second seal (steady state: one period) and the verify after it.
    let started = Instant::now();
    keel_local::schedule::seal_now(&app.sealer).await?;
    println!("  second seal (one period)                         {:>8.1} ms", ms(started.elapsed()));
    let (_, report, elapsed) = call(&app.router, "GET", "/api/v1/admin/audit-logs/verify", &token, None).await?;
    anyhow::ensure!(report["ok"] == true, "verify: {report}");
    println!("  {:<44} {:>8.1} ms   digests {} entries {}", "verify after the second seal", ms(elapsed), report["digests_checked"], report["entries_checked"]);
    drop(app);
    drop(moto);
    Ok(())
}
