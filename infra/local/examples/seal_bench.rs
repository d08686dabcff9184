//! Audit sealing and verification throughput against the local stack:
//! starts the chain, seeds N audit entries (default 100,000;
//! `KEEL_BENCH_ENTRIES`) into the next period, then times one seal of all of
//! them and one live verification, and prints entries/s.
//!
//! `cargo run --release -p keel-local --example seal_bench`

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use shared::audit::{Actor, AuditEntry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("KEEL_BENCH_ENTRIES").ok().map(|v| v.parse()).transpose()?.unwrap_or(100_000);
    let moto = keel_local::moto::Moto::start(None).await?;
    let sdk = keel_local::sdk_config(&moto.endpoint).await;
    let template = keel_local::template::Template::load(&keel_local::repo_root().join("template.yaml"))?;
    let stack = keel_local::provision::provision(&sdk, &template, "seal-bench", &Default::default()).await?;
    let config = Arc::new(shared::platform::config::Config::from_map(&stack.env)?);
    let clients = shared::platform::aws::Clients::from_sdk_config(&sdk);
    let sealer = scheduler::Sealer::new(config.clone(), &clients);
    let store = sealer.store.clone();

    // Steady state: the chain exists (its genesis digest walked the year of
    // empty day partitions), and the next period holds all N entries.
    keel_local::schedule::seal_now(&sealer).await?;
    let started = Instant::now();
    let now = chrono::Utc::now();
    let actor = Actor::system("bench");
    // Chart targets: entries naming users would also time their subject keys.
    let mut items = Vec::with_capacity(n);
    for i in 0..n {
        let at = now + chrono::Duration::microseconds(10 * i as i64 + 1);
        let entry = AuditEntry::at(at, &actor, "chart.update", "chart", &format!("c{}", i % 5000))
            .changes(Some(&serde_json::json!({"title": "Before"})), Some(&serde_json::json!({"title": format!("After {i}")})));
        items.push(shared::audit::pseudonyms::seal_entry(None, &store, &entry).await?);
    }
    let chunks: Vec<Vec<_>> = items.chunks(25 * 40).map(<[_]>::to_vec).collect();
    let results: Vec<_> = futures::stream::iter(chunks).map(|c| store.batch_put(c)).buffer_unordered(4).collect().await;
    for r in results {
        r?;
    }
    println!("seeded {n} audit entries in {:.1} s", started.elapsed().as_secs_f64());

    let started = Instant::now();
    let outcome = keel_local::schedule::seal_now(&sealer).await?;
    let seal_secs = started.elapsed().as_secs_f64();
    println!("sealed: {outcome:?}");
    println!("seal: {n} entries in {seal_secs:.2} s = {:.0} entries/s (reads, hashing, KMS Sign, S3 put, commit)", n as f64 / seal_secs);

    let reader =
        shared::audit::chain::ChainReader::new(store.store().clone(), clients.s3.clone(), clients.kms.clone(), &config.audit_bucket, &config.audit_key_id);
    let started = Instant::now();
    let report = reader.verify(now, chrono::Utc::now()).await?;
    let verify_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(report.ok, "verification failed: {report:?}");
    println!(
        "verify (live): {} entries in {verify_secs:.2} s = {:.0} entries/s (reads included)",
        report.entries_checked,
        report.entries_checked as f64 / verify_secs
    );

    // The check alone (hashing and comparing), without the reads.
    let loaded = reader.load(now, chrono::Utc::now(), false).await?;
    let key = reader.key().await?.clone();
    let started = Instant::now();
    let report = shared::audit::digest::verify(&key, &loaded.evidence);
    let check_secs = started.elapsed().as_secs_f64();
    println!(
        "verify (check only, entries pre-hashed at load): {} entries in {:.3} s = {:.0} entries/s",
        report.entries_checked,
        check_secs,
        report.entries_checked as f64 / check_secs
    );

    // Hashing the canonical form, the per-entry cost on both sides.
    let typed: Vec<_> = items.iter().map(shared::audit::digest::typed_item).collect();
    let started = Instant::now();
    let hashed = typed.iter().map(shared::audit::digest::entry_hash).count();
    println!(
        "canonical form + SHA-256: {hashed} entries in {:.3} s = {:.0} entries/s",
        started.elapsed().as_secs_f64(),
        hashed as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}
