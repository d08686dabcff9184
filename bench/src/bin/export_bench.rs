//! `make bench`, exports: 1,000,000 generated rows to CSV and to XLSX
//! through the jobs worker's encoders and its S3 multipart upload (5 MiB
//! parts, SSE-KMS) into the local S3 (moto), reporting rows per second and
//! the peak resident memory of the process doing it.
//!
//! The rows are generated in-process (`shared::domain::export::sample_rows`, eight
//! columns shaped like the users dataset) rather than read from DynamoDB:
//! moto would take far longer to serve a million items than the encoders
//! take to write them, so reading them would measure the emulator. The
//! worker's read path is the same `Store::query_page` loop the tests cover.
//!
//! Each format runs in its own child process, so each peak RSS (VmHWM) is
//! that format's alone. Two figures per format:
//! - encode: rows generated and encoded, bytes discarded (CSV), or rows
//!   written into the constant-memory workbook and the file saved (XLSX);
//! - end to end: the same plus every byte uploaded to the local S3.
//!
//! Goals: CSV >= 300,000 rows/s encode, XLSX >= 100,000 rows/s, peak RSS
//! under 128 MB for both. Reported, not asserted.

use std::time::Instant;

use anyhow::Context as _;
use jobs::multipart::Upload;
use jobs::xlsx::XlsxSink;
use shared::domain::export::{CsvEncoder, Encoder, sample_header, sample_rows};

#[path = "../rss.rs"]
mod rss;
use rss::peak_rss_mb;

const ROWS: usize = 1_000_000;
const CHILD: &str = "KEEL_EXPORT_BENCH_CHILD";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match std::env::var(CHILD) {
        Ok(format) => child(&format).await,
        Err(_) => parent().await,
    }
}

async fn parent() -> anyhow::Result<()> {
    let root = keel_local::repo_root();
    let moto = keel_local::moto::Moto::start(None).await?;
    let sdk = keel_local::sdk_config(&moto.endpoint).await;
    let template = keel_local::template::Template::load(&root.join("template.yaml"))?;
    let stack = keel_local::provision::provision(&sdk, &template, "exportbench", &Default::default()).await?;
    eprintln!("export bench: {ROWS} generated rows per format, local S3 at {}", moto.endpoint);
    let mut report = String::from("Exports: 1,000,000 generated rows through the worker's encoder and S3 multipart upload (local S3, moto)\n");
    for (format, goal) in [("csv", 300_000.0), ("xlsx", 100_000.0)] {
        let out = std::process::Command::new(std::env::current_exe()?)
            .env(CHILD, format)
            .env("KEEL_BENCH_ENDPOINT", &moto.endpoint)
            .env("KEEL_BENCH_BUCKET", &stack.env["KEEL_EXPORTS_BUCKET"])
            .env("KEEL_BENCH_KEY_ID", &stack.env["KEEL_DATA_KEY_ID"])
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("running the export bench child")?;
        anyhow::ensure!(out.status.success(), "{format} bench failed");
        let line: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let encode = line["encode_rows_per_s"].as_f64().unwrap_or(0.0);
        let rss = line["peak_rss_mb"].as_f64().unwrap_or(f64::NAN);
        report += &format!(
            "  {format:<4}  encode {:>9.0} rows/s (goal >= {goal:.0}: {})  end to end {:>9.0} rows/s  {:>6.1} MB in {} parts  peak RSS {:>5.1} MB (goal < 128: {})\n",
            encode,
            if encode >= goal { "met" } else { "NOT met" },
            line["end_to_end_rows_per_s"].as_f64().unwrap_or(0.0),
            line["bytes"].as_f64().unwrap_or(0.0) / 1e6,
            line["parts"],
            rss,
            if rss < 128.0 { "met" } else { "NOT met" },
        );
    }
    println!("{report}");
    Ok(())
}

async fn child(format: &str) -> anyhow::Result<()> {
    let endpoint = std::env::var("KEEL_BENCH_ENDPOINT")?;
    let bucket = std::env::var("KEEL_BENCH_BUCKET")?;
    let key_id = std::env::var("KEEL_BENCH_KEY_ID")?;
    let sdk = keel_local::sdk_config(&endpoint).await;
    let s3 = keel_local::s3_client(&sdk);
    let header = sample_header();

    // Encode only (what the encode goal is about).
    let started = Instant::now();
    match format {
        "csv" => {
            let mut encoder = CsvEncoder::new();
            encoder.begin(&header)?;
            let mut sink = Vec::new();
            for (i, row) in sample_rows(ROWS).enumerate() {
                encoder.row(&row)?;
                if i % 1000 == 999 {
                    encoder.take(&mut sink)?;
                    sink.clear();
                }
            }
            encoder.finish()?;
        }
        _ => {
            let mut workbook = XlsxSink::new(&header)?;
            for row in sample_rows(ROWS) {
                workbook.row(&row)?;
            }
            let _saved = workbook.finish()?;
        }
    }
    let encode = ROWS as f64 / started.elapsed().as_secs_f64();
    eprintln!("  {format}: encode {encode:.0} rows/s");

    // End to end: encode and upload, as the worker does.
    let key = format!("data-exports/bench/{}.{format}", uuid::Uuid::now_v7());
    let started = Instant::now();
    let content_type = if format == "csv" { "text/csv" } else { "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" };
    let mut upload = Upload::start(&s3, &bucket, &key, content_type, &key_id).await?;
    match format {
        "csv" => {
            let mut encoder = CsvEncoder::new();
            encoder.begin(&header)?;
            for (i, row) in sample_rows(ROWS).enumerate() {
                encoder.row(&row)?;
                if i % 1000 == 999 {
                    encoder.take(&mut upload.buffer)?;
                    upload.flush().await?;
                }
            }
            encoder.finish()?;
            encoder.take(&mut upload.buffer)?;
        }
        _ => {
            let mut workbook = XlsxSink::new(&header)?;
            for row in sample_rows(ROWS) {
                workbook.row(&row)?;
            }
            let (path, _guard) = workbook.finish()?;
            jobs::data_export::stream_file(&path, &mut upload).await?;
        }
    }
    let bytes = upload.len();
    let parts = bytes.div_ceil(jobs::multipart::PART_SIZE as u64);
    let (_, sha256) = upload.finish().await?;
    let end_to_end = ROWS as f64 / started.elapsed().as_secs_f64();
    let head = s3.head_object().bucket(&bucket).key(&key).send().await?;
    anyhow::ensure!(head.content_length() == Some(bytes as i64), "uploaded size differs");
    eprintln!("  {format}: end to end {end_to_end:.0} rows/s, {bytes} bytes, sha256 {sha256}");
    println!(
        "{}",
        serde_json::json!({ "encode_rows_per_s": encode, "end_to_end_rows_per_s": end_to_end, "bytes": bytes, "parts": parts, "peak_rss_mb": peak_rss_mb() })
    );
    Ok(())
}
