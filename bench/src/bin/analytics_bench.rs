//! Analytics at 1x and 10x the demo data (issue 12): every
//! `/api/v1/analytics/*` read answers from rollups, so its p95 should not
//! grow with the data (goal: p95 <= 50 ms in-process, 10x/1x ratio <= 1.5);
//! and the rate of a full backfill (events/s).
//!
//! For each scale, in a fresh emulator of its own, the demo data is
//! generated in memory (3,000 users x scale, seed 2026) and handed to the
//! refresh job's own
//! `store_generation` (rollups, models, insights; written to the emulator),
//! timed: that is the backfill's computation and writes, without reading
//! the table. Then each read is timed `KEEL_BENCH_REQUESTS` times (default
//! 100) through the in-process router against the emulator. Then, for each
//! scale, the data is seeded into another emulator and the full backfill
//! (one parallel Scan of the table, then the same computation and writes,
//! as `keel analytics backfill` does) is timed, the read and the rest
//! apart.
//!
//! `cargo run --release -p keel-bench --bin analytics-bench` (run by `make bench`).
//! `KEEL_BENCH_SCALES=10` runs one scale; `KEEL_BENCH_SKIP_BACKFILL=1`
//! leaves out the backfills from the table.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The scales to run (`KEEL_BENCH_SCALES`, e.g. `10`; default `1,10`).
fn scales() -> Vec<usize> {
    std::env::var("KEEL_BENCH_SCALES").ok().map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect()).unwrap_or_else(|| vec![1, 10])
}

fn repeats() -> usize {
    std::env::var("KEEL_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100)
}

async fn call(router: &Router, path: &str, token: &str) -> anyhow::Result<Duration> {
    let request = axum::http::Request::builder().method("GET").uri(path).header("authorization", format!("Bearer {token}")).body(Body::empty())?;
    let started = Instant::now();
    let response = router.clone().oneshot(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    let elapsed = started.elapsed();
    anyhow::ensure!(status == 200, "{path}: {status} {}", String::from_utf8_lossy(&bytes));
    let _: Value = serde_json::from_slice(&bytes)?;
    Ok(elapsed)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

const READS: &[&str] = &[
    "/api/v1/analytics/revenue",
    "/api/v1/analytics/revenue?country=US",
    "/api/v1/analytics/revenue?plan=pro",
    "/api/v1/analytics/revenue?granularity=day",
    "/api/v1/analytics/revenue?granularity=week&country=US",
    "/api/v1/analytics/revenue?granularity=quarter",
    "/api/v1/analytics/business",
    "/api/v1/analytics/business?granularity=day",
    "/api/v1/analytics/segments",
    "/api/v1/analytics/predictions",
    "/api/v1/analytics/insights",
];

/// A fresh emulator with the stack provisioned, the app and an admin's token.
struct Emulator {
    app: keel_local::app::LocalApp,
    token: String,
    _moto: keel_local::moto::Moto,
}

/// Each scale gets an emulator of its own: moto answers every request more
/// slowly the more it has held (its heap only grows), so reads at 10x
/// after a 1x run would also time the 1x run's leftovers.
async fn emulator() -> anyhow::Result<Emulator> {
    let moto = keel_local::moto::Moto::start(None).await?;
    let sdk = keel_local::sdk_config(&moto.endpoint).await;
    let template = keel_local::template::Template::load(&keel_local::repo_root().join("template.yaml"))?;
    let stack = keel_local::provision::provision(&sdk, &template, "analytics-bench", &Default::default()).await?;
    let app = keel_local::app::build(&sdk, &stack.env).await?;
    let admin = shared::identity::users::bootstrap_admin(&app.platform.store, "admin@bench.test", "Bench Admin", "correct horse battery staple", false).await?;
    let grant = shared::identity::token::SessionGrant::new(&[shared::identity::token::amr::PASSWORD, shared::identity::token::amr::OTP], None);
    let token = app.signer.access_token(&admin, "bench-session", &grant).await?.token;
    Ok(Emulator { app, token, _moto: moto })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("Analytics at 1x and 10x the demo data (in-process router, moto on loopback), load average {}", load.split_whitespace().next().unwrap_or("?"));

    let now = chrono::Utc::now();
    let mut p95s: Vec<Vec<Duration>> = Vec::new();
    let scales = scales();
    for &scale in &scales {
        let Emulator { app, token, _moto } = emulator().await?;
        let store = &app.platform.store;
        let (items, summary) = keel_local::seed::generate(now, 3000 * scale, 2026);
        let source = jobs::analytics_refresh::source_of(items, now).map_err(|e| anyhow::anyhow!("{e}"))?;
        let folded = (source.orders.len() + source.events.len()) as f64;
        let started = Instant::now();
        let done = jobs::analytics_refresh::store_generation(store, source, now, &|_| {}).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let took = started.elapsed();
        println!(
            "  {scale:>2}x ({} users, {} orders, {} events): rollups + models + insights stored in {:.1} s = {:.0} events/s; {} forecasts, {} anomalies, {} insights, churn AUC {:.3}",
            summary.users,
            done.orders,
            done.events,
            took.as_secs_f64(),
            folded / took.as_secs_f64(),
            done.forecasts,
            done.anomalies,
            done.insights.found,
            done.churn_auc
        );
        let mut row = Vec::new();
        for path in READS {
            call(&app.router, path, &token).await?;
            let mut times = Vec::with_capacity(repeats());
            for _ in 0..repeats() {
                times.push(call(&app.router, path, &token).await?);
            }
            times.sort();
            let p95 = percentile(&times, 95.0);
            println!("     GET {path:<44} p50 {:>7.2} ms   p95 {:>7.2} ms", ms(percentile(&times, 50.0)), ms(p95));
            row.push(p95);
        }
        p95s.push(row);
    }
    if let [one, ten] = &p95s[..] {
        println!("  p95 ratio 10x / 1x (goal <= 1.5, p95 <= 50 ms):");
        for (i, path) in READS.iter().enumerate() {
            let (one, ten) = (one[i], ten[i]);
            println!(
                "     {path:<48} {:>5.2}   {}",
                ten.as_secs_f64() / one.as_secs_f64(),
                if ms(ten) <= 50.0 && ms(one) <= 50.0 { "p95 ok" } else { "p95 OVER 50 ms" }
            );
        }
    }
    if std::env::var_os("KEEL_BENCH_SKIP_BACKFILL").is_some() {
        return Ok(());
    }

    // The full backfill at each scale, reading the table as `keel analytics
    // backfill` does.
    for &scale in &scales {
        let Emulator { app, _moto, .. } = emulator().await?;
        let store = &app.platform.store;
        let started = Instant::now();
        let seeded = keel_local::seed::load(store, 3000 * scale, 2026).await?;
        println!("  {scale:>2}x seeded into the emulator in {:.1} s ({} users)", started.elapsed().as_secs_f64(), seeded.users);
        let as_of = chrono::Utc::now();
        let started = Instant::now();
        let source = jobs::analytics_refresh::read_source(store, as_of, &|_| {}).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let read = started.elapsed().as_secs_f64();
        let done = jobs::analytics_refresh::store_generation(store, source, as_of, &|_| {}).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let took = started.elapsed().as_secs_f64();
        println!(
            "  {scale:>2}x full backfill reading the emulator: {} orders + {} events in {took:.1} s = {:.0} events/s (the table read {read:.1} s, the rest {:.1} s)",
            done.orders,
            done.events,
            (done.orders + done.events) as f64 / took,
            took - read
        );
    }
    Ok(())
}
