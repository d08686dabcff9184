//! `data_export` jobs (docs/exports.md): read the export's plan page by page
//! from DynamoDB, encode each row (CSV, JSON, NDJSON, SQL, PDF as a byte
//! stream; XLSX into a constant-memory workbook on local disk) and stream
//! the bytes into an S3 multipart upload (5 MiB parts, SSE-KMS with the
//! data key). Memory stays flat whatever the row count.
//!
//! The job record carries progress (processed/total, rows per second, ETA),
//! and, while running, a checkpoint naming the multipart upload. A
//! redelivered message for a job that another attempt left half done
//! aborts that upload and starts again, so no completed object appears
//! before the end; a message for a finished job is acknowledged (Worker).
//! Progress saves are version-checked: a cancellation (DELETE) or a
//! takeover by a redelivery is noticed at the next page.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::domain::export::{self, Encoder, ExportParams, ExportResult, Format, Header, PAGE_SIZE, Position};
use shared::domain::jobs::{self, Job, JobStatus, Progress};
use shared::platform::error::{Error, Result};
use tokio::io::AsyncReadExt;

use crate::Worker;
use crate::multipart::{self, PART_SIZE, Upload};
use crate::pdf::PdfEncoder;
use crate::xlsx::XlsxSink;

/// What a running export records about itself (the job's checkpoint).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    bucket: String,
    key: String,
    upload_id: String,
}

/// Knobs for tests and benchmarks; `Default` is production.
#[derive(Debug, Clone)]
pub struct Hooks {
    pub page_size: i32,
    /// Save progress at most this often (each save also notices a cancellation).
    pub progress_every: Duration,
    /// Stop dead after this many pages, leaving everything as a killed
    /// worker would (the upload open, the job running).
    pub crash_after_pages: Option<usize>,
    /// Sleep between pages (to give a test time to act mid-export).
    pub page_delay: Option<Duration>,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks { page_size: PAGE_SIZE, progress_every: Duration::from_secs(1), crash_after_pages: None, page_delay: None }
    }
}

/// Why an export stopped before its end.
#[derive(Debug)]
enum Stop {
    /// The job was cancelled (its record says so).
    Cancelled,
    /// A redelivered message took the job over (attempts changed).
    Superseded,
}

/// The job record as this attempt sees it; saves are version-checked.
struct Tracker<'a> {
    worker: &'a Worker,
    job: Job,
    attempt: u32,
    last_save: Instant,
}

impl Tracker<'_> {
    /// Save the record; a concurrent change is read back and judged.
    async fn save(&mut self) -> Result<std::result::Result<(), Stop>> {
        for _ in 0..3 {
            match jobs::save(&self.worker.store, &self.job).await {
                Ok(saved) => {
                    self.job = saved;
                    self.last_save = Instant::now();
                    return Ok(Ok(()));
                }
                Err(Error::Conflict(_)) => {
                    let Some(current) = jobs::get(&self.worker.store, &self.job.id).await? else {
                        return Err(Error::internal(format!("job {} vanished", self.job.id)));
                    };
                    if current.status == JobStatus::Cancelled {
                        return Ok(Err(Stop::Cancelled));
                    }
                    if current.attempts != self.attempt || current.status.is_final() {
                        return Ok(Err(Stop::Superseded));
                    }
                    // Someone else touched it without taking it over: keep our view, their version.
                    let mut mine = self.job.clone();
                    mine.version = current.version;
                    self.job = mine;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(format!("job {} keeps changing", self.job.id)))
    }

    fn progress(&mut self, processed: u64, total: u64, started: Instant) {
        let elapsed = started.elapsed().as_secs_f64().max(1e-3);
        let rate = processed as f64 / elapsed;
        self.job.progress = Progress {
            processed,
            total: total.max(processed),
            rows_per_second: Some(rate.round() as u64),
            eta_seconds: (rate > 0.0).then(|| (total.saturating_sub(processed) as f64 / rate).ceil() as u64),
            stage: None,
        };
    }
}

/// Where encoded rows go: a byte-stream encoder, or the XLSX workbook.
enum Sink {
    Stream(Box<dyn Encoder>),
    Xlsx(Box<XlsxSink>),
}

impl Sink {
    fn new(format: Format, header: &Header) -> Result<Sink> {
        let mut encoder: Box<dyn Encoder> = match format {
            Format::Xlsx => return Ok(Sink::Xlsx(Box::new(XlsxSink::new(header)?))),
            Format::Pdf => Box::new(PdfEncoder::new()),
            other => other.text_encoder().ok_or_else(|| Error::internal("no encoder"))?,
        };
        encoder.begin(header)?;
        Ok(Sink::Stream(encoder))
    }

    fn row(&mut self, row: &[export::Cell]) -> Result<()> {
        match self {
            Sink::Stream(e) => e.row(row),
            Sink::Xlsx(x) => x.row(row),
        }
    }

    /// Move encoded bytes into the upload and send full parts.
    async fn drain(&mut self, upload: &mut Upload) -> Result<()> {
        if let Sink::Stream(e) = self {
            e.take(&mut upload.buffer)?;
            upload.flush().await?;
        }
        Ok(())
    }

    async fn finish(self, upload: &mut Upload) -> Result<()> {
        match self {
            Sink::Stream(mut e) => {
                e.finish()?;
                e.take(&mut upload.buffer)?;
                upload.flush().await
            }
            Sink::Xlsx(x) => {
                let (path, _guard) = tokio::task::spawn_blocking(move || x.finish()).await.map_err(|e| Error::internal(e.to_string()))??;
                stream_file(&path, upload).await
            }
        }
    }
}

/// Copy a file into the upload a part at a time.
pub async fn stream_file(path: &std::path::Path, upload: &mut Upload) -> Result<()> {
    let mut file = tokio::fs::File::open(path).await.map_err(|e| Error::internal(format!("opening {}: {e}", path.display())))?;
    let mut chunk = vec![0u8; 1024 * 1024];
    loop {
        let n = file.read(&mut chunk).await.map_err(|e| Error::internal(format!("reading export file: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        upload.write(&chunk[..n]);
        if upload.buffer.len() >= PART_SIZE {
            upload.flush().await?;
        }
    }
}

pub async fn run(worker: &Worker, job: &Job) -> Result<Value> {
    run_with(worker, job, &Hooks::default()).await
}

/// Run (or rerun) an export job; `Hooks` for tests.
pub async fn run_with(worker: &Worker, job: &Job, hooks: &Hooks) -> Result<Value> {
    let params: ExportParams = serde_json::from_value(job.params.clone()).map_err(|e| Error::internal(format!("data_export job params: {e}")))?;
    let columns = params.resolved_columns()?;
    // Ranges without an end are read up to the moment the job was asked for.
    let asked_at = DateTime::parse_from_rfc3339(&job.created_at).map(|t| t.with_timezone(&Utc)).unwrap_or_else(|_| Utc::now());
    let store = &worker.store;
    let plan = params.filters.stored_people(store).await?.plan(asked_at)?;
    let bucket = worker.config.exports_bucket.clone();
    let key = export::object_key(&job.owner_id, &job.id, params.format);

    let mut tracker = Tracker { worker, job: job.clone(), attempt: job.attempts, last_save: Instant::now() };
    // An earlier attempt died mid-way: discard its upload (never completed,
    // so never visible) and start again.
    if let Some(previous) = job.checkpoint.clone().and_then(|c| serde_json::from_value::<Checkpoint>(c).ok()) {
        tracing::info!(job_id = %job.id, upload_id = %previous.upload_id, "aborting the upload of an interrupted attempt");
        multipart::abort(&worker.s3, &previous.bucket, &previous.key, &previous.upload_id).await?;
        tracker.job.checkpoint = None;
    }

    let total = export::count(store, &plan).await?;
    let mut upload = Upload::start(&worker.s3, &bucket, &key, params.format.content_type(), &worker.config.data_key_id).await?;
    tracker.job.checkpoint = Some(
        serde_json::to_value(Checkpoint { bucket: bucket.clone(), key: key.clone(), upload_id: upload.upload_id().to_string() })
            .map_err(|e| Error::internal(e.to_string()))?,
    );
    tracker.job.progress = Progress { processed: 0, total, ..Default::default() };
    if let Err(stop) = tracker.save().await? {
        upload.abort().await?;
        return stopped(stop);
    }

    let header = Header::new(&params.filters, &columns, Utc::now());
    let mut sink = Sink::new(params.format, &header)?;
    let started = Instant::now();
    let mut position = Position::default();
    let mut processed = 0u64;
    let mut pages = 0usize;
    while let Some(page) = export::read_page(store, &plan, &mut position, hooks.page_size).await? {
        for (source, item) in &page {
            sink.row(&export::row_of(*source, item, &columns, params.mask))?;
        }
        processed += page.len() as u64;
        drop(page);
        sink.drain(&mut upload).await?;
        pages += 1;
        if tracker.last_save.elapsed() >= hooks.progress_every {
            tracker.progress(processed, total, started);
            if let Err(stop) = tracker.save().await? {
                if matches!(stop, Stop::Cancelled) {
                    upload.abort().await?;
                }
                return stopped(stop);
            }
        }
        if hooks.crash_after_pages == Some(pages) {
            // As if the process died here: nothing cleaned up.
            return Err(Error::internal(format!("simulated crash after {pages} pages")));
        }
        if let Some(delay) = hooks.page_delay {
            tokio::time::sleep(delay).await;
        }
    }
    sink.finish(&mut upload).await?;
    let (bytes, sha256) = upload.finish().await?;
    tracker.progress(processed, processed, started);
    tracker.job.checkpoint = None;
    // The final state (succeeded, result) is saved by the worker.
    if let Err(stop) = tracker.save().await? {
        return stopped(stop);
    }
    let what = params.filters.dataset().map(|d| d.as_str()).unwrap_or("my-data");
    let result = ExportResult {
        bucket,
        key,
        format: params.format,
        content_type: params.format.content_type().to_string(),
        file_name: format!("keel-{what}-{}.{}", asked_at.format("%Y%m%dT%H%M%SZ"), params.format.extension()),
        rows: processed,
        bytes,
        sha256,
    };
    tracing::info!(job_id = %job.id, rows = processed, bytes, "export written");
    serde_json::to_value(result).map_err(|e| Error::internal(e.to_string()))
}

fn stopped(stop: Stop) -> Result<Value> {
    match stop {
        // The worker sees the cancelled record and leaves it so.
        Stop::Cancelled => Ok(serde_json::json!({ "cancelled": true })),
        Stop::Superseded => Err(Error::Conflict("another delivery took this job over".into())),
    }
}
