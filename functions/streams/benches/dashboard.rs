//! Dashboard latency at the demo data size and at ten times it: seeds a
//! fresh local stack per size (the demo seed, then the rollups of it) and
//! times `GET /api/v1/admin/analytics` through the router. The dashboard
//! reads only rollups, so the two should be about the same.
//!
//! `cargo bench --profile dev -p streams --bench dashboard` (sizes with
//! `KEEL_BENCH_USERS=3000,30000`, requests per size with `KEEL_BENCH_REQUESTS`).

use std::time::{Duration, Instant};

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use shared::audit::{Actor, AuditEntry};
use shared::identity::users::{Email, User, UserStatus};
use tower::ServiceExt;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Recreate the (empty) table with the same keys and indexes, no stream.
/// Table administration, not items: the store has no such calls, so this
/// takes its own client.
async fn without_stream(client: &aws_sdk_dynamodb::Client, name: &str) -> anyhow::Result<()> {
    use aws_sdk_dynamodb::types::{BillingMode, GlobalSecondaryIndex};
    let table = client.describe_table().table_name(name).send().await?.table.ok_or_else(|| anyhow::anyhow!("no table"))?;
    client.delete_table().table_name(name).send().await?;
    let indexes = table
        .global_secondary_indexes()
        .iter()
        .map(|g| {
            GlobalSecondaryIndex::builder()
                .index_name(g.index_name().unwrap_or_default())
                .set_key_schema(g.key_schema.clone())
                .set_projection(g.projection.clone())
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    client
        .create_table()
        .table_name(name)
        .set_attribute_definitions(table.attribute_definitions.clone())
        .set_key_schema(table.key_schema.clone())
        .set_global_secondary_indexes(Some(indexes).filter(|i| !i.is_empty()))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> =
        std::env::var("KEEL_BENCH_USERS").unwrap_or_else(|_| "3000,30000".into()).split(',').map(|s| s.trim().parse()).collect::<Result<_, _>>()?;
    let requests: usize = std::env::var("KEEL_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let root = keel_local::repo_root();
    let template = keel_local::template::Template::load(&root.join("template.yaml"))?;
    println!("| users | items in table | seed + backfill | dashboard p50 | p95 | max |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for size in sizes {
        // A fresh emulator per size, so the larger run does not carry the smaller's data.
        let moto = keel_local::moto::Moto::start(None).await?;
        let sdk = keel_local::sdk_config(&moto.endpoint).await;
        let params = std::collections::HashMap::from([
            ("PublicUrl".to_string(), "http://bench.local".to_string()),
            ("EmailFrom".to_string(), "noreply@bench.local".to_string()),
        ]);
        let stack = keel_local::provision::provision(&sdk, &template, &format!("bench{size}"), &params).await?;
        let app = keel_local::app::build(&sdk, &stack.env).await?;
        // The same table without a stream: the rollups are computed from the
        // loaded items below, and moto keeps every stream record (with both
        // images) in memory — more than this machine has at the larger
        // size. (moto cannot switch a stream off in place.)
        without_stream(&aws_sdk_dynamodb::Client::new(&sdk), app.platform.store.table()).await?;
        let started = Instant::now();
        let (items, summary) = keel_local::seed::generate(chrono::Utc::now(), size, 2026);
        keel_local::seed::put(&app.platform.store, &items).await?;
        // The rollups of exactly what was loaded (a Scan of the emulator
        // is O(table) per page: far too slow at the larger size).
        let backfilled = streams::backfill::run_over(&app.platform.store, &items).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        drop(items);
        let loading = started.elapsed();
        let email = Email::parse("bench@example.com").map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let analyst = User::new(&email, "Bench", vec!["analyst".into()], UserStatus::Active);
        shared::identity::users::create(&app.platform.store, &analyst, AuditEntry::new(&Actor::system("bench"), "user.create", "user", &analyst.id))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let grant = shared::identity::token::SessionGrant::new(&[shared::identity::token::amr::PASSWORD], None);
        let token = app.signer.access_token(&analyst, "bench", &grant).await.map_err(|e| anyhow::anyhow!("{e}"))?.token;
        let mut times = Vec::with_capacity(requests);
        for i in 0..requests + 3 {
            let request = Request::get("/api/v1/admin/analytics").header("authorization", format!("Bearer {token}")).body(Body::empty())?;
            let started = Instant::now();
            let response = app.router.clone().oneshot(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            let elapsed = started.elapsed();
            anyhow::ensure!(status == 200, "dashboard answered {status}: {}", String::from_utf8_lossy(&body));
            if i == 0 {
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                anyhow::ensure!(v["users"]["total"].as_i64().unwrap_or(0) > 0, "empty dashboard: {v}");
            }
            // The first requests warm the cursor key and connections.
            if i >= 3 {
                times.push(elapsed);
            }
        }
        times.sort();
        let items = summary.users * 2 + summary.charts + summary.orders + summary.events + backfilled.counters;
        println!(
            "| {size} | ~{items} | {:.0} s | {:.1} ms | {:.1} ms | {:.1} ms |",
            loading.as_secs_f64(),
            percentile(&times, 50.0).as_secs_f64() * 1000.0,
            percentile(&times, 95.0).as_secs_f64() * 1000.0,
            times.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
        );
        drop(moto);
    }
    Ok(())
}
