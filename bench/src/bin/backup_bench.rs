//! `make bench`, backups: a table of 1,000,000 generated items (the local
//! stack, moto) backed up in full, verified and restored into a new table
//! by the jobs worker's own code, reporting items per second, the verify
//! time and the peak resident memory of each step.
//!
//! Each step runs in a child process of its own, so each peak RSS (VmHWM)
//! is that step's alone. `KEEL_BACKUP_BENCH_ITEMS` sets another size.
//! The figures include the emulator's own speed (moto serves the Scan and
//! takes the BatchWriteItem calls); reported, not asserted.

use std::time::Instant;

use anyhow::Context as _;
use futures::StreamExt as _;
use shared::domain::backups::{self, BackupKind, RestoreJob, VerifyJob};
use shared::store::{Item, Store, s};

#[path = "../rss.rs"]
mod rss;
use rss::peak_rss_mb;

const CHILD: &str = "KEEL_BACKUP_BENCH_CHILD";

/// Items per writer task of the load (BatchWriteItem calls of 25).
const LOAD_CHUNK: usize = 2_000;

fn items() -> usize {
    std::env::var("KEEL_BACKUP_BENCH_ITEMS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match std::env::var(CHILD) {
        // Boxed: the restore's future (with the erasure sweep) is deep.
        Ok(step) => Box::pin(child(&step)).await,
        Err(_) => parent().await,
    }
}

/// An item shaped like an activity event (a few strings and numbers).
fn generated(n: usize) -> Item {
    let user = n % 10_000;
    [
        ("pk", s(format!("USER#bench-{user:05}"))),
        ("sk", s(format!("EVENT#2026-01-01T00:00:00.{n:06}Z#{n}"))),
        ("type", s("event")),
        ("kind", s(["sign_in", "chart_view", "export", "search"][n % 4])),
        ("amount_cents", shared::store::n(n as u64 * 7 % 100_000)),
        ("country", s(["DE", "FR", "US", "JP", "BR"][n % 5])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

async fn parent() -> anyhow::Result<()> {
    let root = keel_local::repo_root();
    let moto = keel_local::moto::Moto::start(None).await?;
    let sdk = keel_local::sdk_config(&moto.endpoint).await;
    let template = keel_local::template::Template::load(&root.join("template.yaml"))?;
    let stack = keel_local::provision::provision(&sdk, &template, "backupbench", &Default::default()).await?;
    let total = items();
    eprintln!("backup bench: loading {total} items into the local table");
    let store = Store::new(aws_sdk_dynamodb::Client::new(&sdk), stack.env["KEEL_TABLE"].clone());
    // Eight writers at a time: moto serves each connection on a thread of
    // one Python process, and hundreds at once (one per chunk) slowed the
    // load of a million items to a crawl.
    let started = Instant::now();
    let mut loaded = futures::stream::iter((0..total).step_by(LOAD_CHUNK).map(|first| {
        let chunk: Vec<Item> = (first..(first + LOAD_CHUNK).min(total)).map(generated).collect();
        let store = store.clone();
        async move { store.batch_put(chunk).await }
    }))
    .buffer_unordered(8);
    let mut done = 0usize;
    while let Some(result) = loaded.next().await {
        result?;
        done += LOAD_CHUNK;
        if done.is_multiple_of(100_000) {
            eprintln!("backup bench: {done} items loaded in {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    let env_file = std::env::temp_dir().join(format!("keel-backup-bench-{}.env", std::process::id()));
    keel_local::write_env_file(&env_file, &moto.endpoint, &stack)?;
    let mut report = format!("Backups: {total} items in the local table (moto), the jobs worker's code\n");
    let mut backup_id = String::new();
    for step in ["backup", "verify", "restore"] {
        let out = std::process::Command::new(std::env::current_exe()?)
            .env(CHILD, step)
            .env("KEEL_BENCH_ENV_FILE", &env_file)
            .env("KEEL_BENCH_BACKUP", &backup_id)
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("running the backup bench child")?;
        anyhow::ensure!(out.status.success(), "{step} failed");
        let line: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        if step == "backup" {
            backup_id = line["backup_id"].as_str().unwrap_or_default().to_string();
        }
        report += &format!(
            "  {step:<8} {:>9} items in {:>7.1} s  {:>9.0} items/s  peak RSS {:>6.1} MB{}\n",
            line["items"],
            line["seconds"].as_f64().unwrap_or(0.0),
            line["items"].as_f64().unwrap_or(0.0) / line["seconds"].as_f64().unwrap_or(1.0).max(1e-9),
            line["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
            line.get("bytes").map(|b| format!("  {:.1} MB of files", b.as_f64().unwrap_or(0.0) / 1e6)).unwrap_or_default(),
        );
    }
    let _ = std::fs::remove_file(env_file);
    println!("{report}");
    Ok(())
}

async fn child(step: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(std::env::var("KEEL_BENCH_ENV_FILE")?)?;
    let vars: std::collections::HashMap<String, String> =
        text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let endpoint = vars.get("AWS_ENDPOINT_URL").context("the env file names no AWS_ENDPOINT_URL")?;
    let sdk = keel_local::sdk_config(endpoint).await;
    let config = shared::platform::config::Config::from_lookup(|k| vars.get(k).cloned()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let worker = jobs::Worker::new(std::sync::Arc::new(config), &sdk);
    let actor = shared::audit::Actor::system("bench");
    let backup_id = std::env::var("KEEL_BENCH_BACKUP").unwrap_or_default();
    let started = Instant::now();
    let quiet = jobs::backup::quiet;
    let line = match step {
        "backup" => {
            let (_, job) = backups::start_backup_here(&worker.store, BackupKind::Full, &actor.id, &actor, "bench").await?;
            let done = Box::pin(jobs::backup::run_backup_with(&worker, &job, &quiet)).await?;
            serde_json::json!({ "backup_id": job.id, "items": done["item_count"], "bytes": done["bytes"] })
        }
        "verify" => {
            let job = backups::request_job(
                &worker.store,
                &actor.id,
                &VerifyJob { backup_id: backup_id.clone() },
                &actor,
                ("backup.verify", &backup_id),
                Some("bench"),
            )
            .await?;
            let done = Box::pin(jobs::backup::run_verify_with(&worker, &job, &quiet)).await?;
            anyhow::ensure!(done["ok"] == true, "verification failed: {done}");
            serde_json::json!({ "items": done["items_checked"] })
        }
        _ => {
            let target_table = format!("{}{}bench", worker.config.table, backups::RESTORE_INFIX);
            let payload = RestoreJob { backup_id: backup_id.clone(), target_table, point_in_time: None };
            let job = backups::request_job(&worker.store, &actor.id, &payload, &actor, ("backup.restore", &backup_id), Some("bench")).await?;
            let done = Box::pin(jobs::backup::run_restore_with(&worker, &job, &quiet)).await?;
            serde_json::json!({ "items": done["items_written"] })
        }
    };
    let mut line = line;
    line["seconds"] = serde_json::json!(started.elapsed().as_secs_f64());
    line["peak_rss_mb"] = serde_json::json!(peak_rss_mb());
    println!("{line}");
    Ok(())
}
