//! Search at 1,000,000 documents (issue 14): generated users, charts,
//! orders and audit entries (a vocabulary of synthetic names and words, so
//! the term dictionaries are as large as a real deployment's), indexed as
//! `keel search reindex` does and published to the emulator's S3. Reports
//! the index build rate (documents/s), the index size, warm query
//! p50/p95/p99 for plain, fuzzy and faceted queries (each with its top 20
//! documents read, as the API returns them), the suggestion p95 (the index
//! part; past queries are one DynamoDB Query more), how long a fresh
//! instance takes to fetch and open the published index, and the process's
//! peak memory.
//!
//! `cargo run --release -p keel-bench --bin search-bench` (run by `make
//! bench`). `KEEL_BENCH_DOCS` sets the count (default 1,000,000),
//! `KEEL_BENCH_REQUESTS` the queries per kind (default 300).

#[path = "../rss.rs"]
mod rss;

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use search::documents::{SearchDoc, document_of};
use search::query::{self, Request, Scope};
use search::schema::DocType;
use serde_json::json;

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ren", "sa", "to", "vel", "an", "dor", "is", "ber", "ga", "lin", "mar", "no", "qui", "ros", "ta", "ul", "wen", "zi", "fal", "hey", "jor",
    "pe", "son", "tri", "val", "der", "mo",
];

const PLANS: [&str; 3] = ["basic", "pro", "team"];

fn word(rng: &mut StdRng, syllables: usize) -> String {
    let mut w: String = (0..syllables).map(|_| SYLLABLES[rng.gen_range(0..SYLLABLES.len())]).collect();
    if let Some(first) = w.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    w
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// An inner-letter swap (a typo the rules forgive in words of 5+ letters).
fn typo(w: &str) -> String {
    let mut c: Vec<char> = w.chars().collect();
    let i = c.len() / 2;
    c.swap(i - 1, i);
    c.into_iter().collect()
}

struct Corpus {
    docs: Vec<SearchDoc>,
    names: Vec<String>,
    titles: Vec<String>,
}

fn generate(n: usize) -> Corpus {
    let mut rng = StdRng::seed_from_u64(14);
    let firsts: Vec<String> = (0..400).map(|_| word(&mut rng, 2)).collect();
    let lasts: Vec<String> = (0..20_000).map(|_| word(&mut rng, 3)).collect();
    let vocabulary: Vec<String> = (0..5_000).map(|_| word(&mut rng, 3)).collect();
    let countries = ["US", "GB", "DE", "FR", "JP", "BR", "IN", "CA"];
    let statuses = ["approved", "pending", "rejected", "flagged", "hidden"];
    let kinds = ["line", "bar", "area", "pie", "scatter", "heatmap"];
    let actions = ["user.created", "user.updated", "chart.moderated", "export.completed", "auth.login", "role.assigned"];
    let (mut docs, mut names, mut titles) = (Vec::with_capacity(n), Vec::new(), Vec::new());
    let base = chrono::Utc::now() - chrono::Duration::days(730);
    for i in 0..n {
        let at = shared::store::timestamp(base + chrono::Duration::seconds(rng.gen_range(0..730 * 86_400)));
        let id = uuid::Uuid::from_u128(rng.r#gen()).to_string();
        let owner = uuid::Uuid::from_u128(rng.r#gen()).to_string();
        let value = match i % 20 {
            0..=4 => {
                let (f, l) = (&firsts[rng.gen_range(0..firsts.len())], &lasts[rng.gen_range(0..lasts.len())]);
                let name = format!("{f} {l}");
                if names.len() < 5_000 {
                    names.push(name.clone());
                }
                json!({"type": "user", "id": id, "name": name, "email": format!("{}.{}{i}@example.com", f.to_lowercase(), l.to_lowercase()),
                    "status": "active", "roles": ["user"], "country": countries[i % 8], "created_at": at, "updated_at": at})
            }
            5..=11 => {
                let title: Vec<&str> = (0..3).map(|_| vocabulary[rng.gen_range(0..vocabulary.len())].as_str()).collect();
                let title = title.join(" ");
                if titles.len() < 5_000 {
                    titles.push(title.clone());
                }
                json!({"type": "chart", "id": id, "owner_id": owner, "title": title, "kind": kinds[i % 6], "moderation_status": statuses[i % 5],
                    "created_at": at, "updated_at": at})
            }
            12..=15 => json!({"type": "order", "id": id, "user_id": owner, "plan": PLANS[i % 3], "billing": "monthly",
                "amount_cents": 900 + (i % 9000) as i64, "currency": "USD", "country": countries[i % 8], "status": "paid", "created_at": at}),
            _ => json!({"type": "audit", "id": id, "ts": at, "action": actions[i % 6], "target_type": "user", "target_id": owner,
                "outcome": "success", "actor": {"id": format!("psn_{owner}"), "kind": "user"}}),
        };
        docs.extend(document_of(&value));
    }
    Corpus { docs, names, titles }
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("KEEL_BENCH_DOCS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let repeats: usize = std::env::var("KEEL_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("Search at {n} documents (release build, moto's S3 on loopback), load average {}", load.split_whitespace().next().unwrap_or("?"));
    let moto = keel_local::moto::Moto::start(None).await?;
    let sdk = keel_local::sdk_config(&moto.endpoint).await;
    let template = keel_local::template::Template::load(&keel_local::repo_root().join("template.yaml"))?;
    let stack = keel_local::provision::provision(&sdk, &template, "search-bench", &Default::default()).await?;
    let remote = search::index::Remote {
        store: shared::store::Store::new(aws_sdk_dynamodb::Client::new(&sdk), stack.env["KEEL_TABLE"].clone()),
        s3: keel_local::s3_client(&sdk),
        bucket: stack.env["KEEL_EXPORTS_BUCKET"].clone(),
        kms_key_id: stack.env["KEEL_DATA_KEY_ID"].clone(),
    };

    let started = Instant::now();
    let corpus = generate(n);
    println!("  generated {} documents in {:.1} s", corpus.docs.len(), started.elapsed().as_secs_f64());
    let build_dir = std::env::temp_dir().join(format!("keel-search-bench-{}", std::process::id()));
    let Corpus { docs, names, titles } = corpus;
    let built = search::indexer::rebuild(&remote, &build_dir, docs.into_iter(), &|_| {}).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let size = dir_size(&build_dir);
    println!(
        "  index build: {} documents in {:.1} s = {:.0} documents/s (one writer thread, merged to one segment); published in {:.1} s",
        built.documents,
        built.indexed.as_secs_f64(),
        built.documents as f64 / built.indexed.as_secs_f64(),
        built.published.as_secs_f64()
    );
    println!("  index size: {:.1} MB ({:.0} bytes a document)", size as f64 / 1e6, size as f64 / built.documents as f64);

    // A fresh instance: fetch the published files into an empty /tmp and open them.
    let fresh_dir = std::env::temp_dir().join(format!("keel-search-bench-fresh-{}", std::process::id()));
    let searchers = search::index::Searchers::new(remote.clone(), fresh_dir.clone(), Duration::from_secs(60)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let loaded = searchers.load().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("  fresh instance: fetched {:.1} MB from S3 and opened the index in {:.2} s", loaded.bytes_fetched as f64 / 1e6, loaded.took.as_secs_f64());
    let opened = searchers.current().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let searcher = opened.reader.searcher();
    let admin = Scope { caller: "bench".into(), full: DocType::ALL.into_iter().collect(), own_and_public_charts: true, pii: true };

    let mut rng = StdRng::seed_from_u64(7);
    let mut pick = |list: &Vec<String>| list[rng.gen_range(0..list.len())].clone();
    let plain: Vec<Request> = (0..repeats)
        .map(|i| Request { query: if i % 2 == 0 { pick(&names) } else { pick(&titles) }, types: DocType::ALL.to_vec(), limit: 20, ..Default::default() })
        .collect();
    let fuzzy: Vec<Request> = (0..repeats)
        .map(|i| {
            let text = if i % 2 == 0 { pick(&names) } else { pick(&titles) };
            let words: Vec<String> = text.split(' ').map(|w| if w.len() >= 5 { typo(w) } else { w.to_string() }).collect();
            Request { query: words.join(" "), types: DocType::ALL.to_vec(), limit: 20, ..Default::default() }
        })
        .collect();
    let faceted: Vec<Request> = (0..repeats)
        .map(|_| {
            let title = pick(&titles);
            let first = title.split(' ').next().unwrap_or_default().to_string();
            let filters = query::parse_filters(json!({"moderation_status": ["approved", "pending"]}).as_object().unwrap()).unwrap();
            Request {
                query: first,
                types: vec![DocType::Charts],
                filters,
                facets: vec!["kind".into(), "moderation_status".into()],
                limit: 20,
                ..Default::default()
            }
        })
        .collect();
    let mut hits = 0;
    for (label, requests) in [("plain", &plain), ("fuzzy (a swap in every 5+ letter word)", &fuzzy), ("faceted (filter + 2 facets)", &faceted)] {
        // Warm: the pages these queries touch are in the page cache.
        for r in requests.iter().take(20) {
            query::run(&searcher, &opened.fields, &admin, r).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let mut times = Vec::with_capacity(requests.len());
        for r in requests {
            let t = Instant::now();
            let found = query::run(&searcher, &opened.fields, &admin, r).map_err(|e| anyhow::anyhow!("{e}"))?;
            for (_, address) in &found.hits {
                let _: tantivy::TantivyDocument = searcher.doc(*address)?;
            }
            times.push(t.elapsed());
            hits += usize::from(!found.hits.is_empty());
        }
        times.sort();
        println!(
            "  {label:<40} p50 {:>6.2} ms  p95 {:>6.2} ms  p99 {:>6.2} ms",
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 95.0)),
            ms(percentile(&times, 99.0))
        );
    }
    println!("  queries with hits: {hits} of {}", 3 * repeats);
    // Suggestions as an administrator (every type in full) and as a plain
    // user (only their own and approved charts: every completion checked).
    let plain_user = Scope { caller: "nobody-in-particular".into(), full: Default::default(), own_and_public_charts: true, pii: false };
    for (label, scope, types) in [("admin, every type", &admin, DocType::ALL.to_vec()), ("plain user, charts", &plain_user, vec![DocType::Charts])] {
        let mut times = Vec::with_capacity(repeats);
        for i in 0..repeats {
            let source = if i % 2 == 0 && scope.pii { pick(&names) } else { pick(&titles) };
            let prefix: String = source.chars().take(3 + i % 3).collect();
            let t = Instant::now();
            let out = search::suggestions::complete(&searcher, &opened.fields, scope, &prefix, &types).map_err(|e| anyhow::anyhow!("{e}"))?;
            times.push(t.elapsed());
            std::hint::black_box(out);
        }
        times.sort();
        println!(
            "  suggestions ({label}; index part)  p50 {:>6.2} ms  p95 {:>6.2} ms  p99 {:>6.2} ms",
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 95.0)),
            ms(percentile(&times, 99.0))
        );
    }
    println!("  peak memory (RSS): {:.0} MB", rss::peak_rss_mb());
    let _ = std::fs::remove_dir_all(&build_dir);
    let _ = std::fs::remove_dir_all(&fresh_dir);
    Ok(())
}
