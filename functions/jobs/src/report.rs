//! `report` jobs (docs/reports.md): check the report again (the API did;
//! a template may have changed since), run its specs into a document
//! (`reports::generate`), render every format asked for, and store each
//! file in the exports bucket (SSE-KMS under the data key). The files'
//! SHA-256 go into the job's result and into an audit entry
//! (`report.generated`), so a downloaded report can be checked against
//! the log. A scheduled run (`delivery`) is then emailed to its recipient
//! (attached up to 7 MB, else as a share link) unless `send_if` holds it
//! back, and its run record says what happened.

use chrono::Utc;
use reports::generate::{self, ReportFile, ReportJob, ReportResult};
use reports::schedules::{self, Delivery, Run, RunState, Schedule, SendIf};
use serde_json::{Value, json};
use shared::audit::{Actor, AuditEntry};
use shared::domain::jobs::Job;
use shared::platform::error::{Error, Result};
use shared::store::Write;

use crate::Worker;
use crate::analytics_refresh::{Step, save_progress};

/// The object key of a report's file.
pub fn object_key(owner_id: &str, job_id: &str, file_name: &str) -> String {
    format!("reports/{owner_id}/{job_id}/{file_name}")
}

pub async fn run(worker: &Worker, job: &Job) -> Result<Value> {
    let mut report: ReportJob = job.payload()?;
    // A scheduled run that could not start: its log says why; tell the owner.
    if let Some(delivery) = report.delivery.as_ref().filter(|d| d.refused.is_some()) {
        let why = delivery.refused.clone().unwrap_or_default();
        notify_owner(worker, delivery, &why, 0).await?;
        return Ok(json!({ "refused": why }));
    }
    let now = Utc::now();
    let checked = generate::check(&report, now).map_err(|errors| {
        let named: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
        Error::Unprocessable(format!("the report is no longer valid: {}", named.join("; ")))
    })?;
    // The title page names who asked: their email, masked like any other.
    if let Some(user) = shared::identity::users::get(&worker.store, &report.requested_by).await? {
        let email = user.email.clone();
        report.requested_by = if report.mask { shared::domain::masking::email(&email) } else { email };
    }
    // The stages, on the job record as they begin (GET /reports/{id} shows them).
    let stage = |stage: &'static str, total: usize| Step { stage, done: 0, total: total as u64 };
    let record = save_progress(&worker.store, job.clone(), stage("reading", checked.sections.len())).await?;
    let generated = generate::document(&worker.store, &report, &checked, now, |_| {}).await?;
    let record = save_progress(&worker.store, record, stage("rendering", report.formats.len())).await?;
    // Rendering is CPU work (charts, PDF layout): off the async threads.
    let document = generated.document.clone();
    let job_report = report.clone();
    let rendered = tokio::task::spawn_blocking(move || generate::render_all(&document, &job_report))
        .await
        .map_err(|e| Error::internal(format!("rendering task: {e}")))??;
    save_progress(&worker.store, record, stage("storing", rendered.len())).await?;
    let mut files = Vec::new();
    for file in rendered {
        let key = object_key(&job.owner_id, &job.id, &file.file_name);
        let sha256 = generate::sha256(&file.body);
        let bytes = file.body.len() as u64;
        worker.put_export(&key, &file.content_type, file.body).await?;
        files.push(ReportFile { format: file.format, key, file_name: file.file_name, content_type: file.content_type, bytes, sha256 });
    }
    let rows = generated.document.sections.iter().map(|s| s.table.rows.len() as u64).sum();
    let result = ReportResult {
        title: generated.document.title.clone(),
        files,
        rows,
        rows_read: generated.rows_read,
        data_range: generated.document.data_range.clone(),
        generated_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        truncated: generated.truncated,
    };
    let digest = json!({
        "title": result.title,
        "rows": result.rows,
        "data_range": result.data_range,
        "files": result.files.iter().map(|f| json!({"format": f.format, "bytes": f.bytes, "sha256": f.sha256})).collect::<Vec<_>>(),
    });
    worker.store.record(&AuditEntry::new(&Actor::system("jobs"), "report.generated", "report", &job.id).changes::<(), _>(None, Some(&digest))).await?;
    if let Some(delivery) = &report.delivery {
        let data_digest = data_digest(&generated.document);
        if let Err(e) = deliver(worker, job, delivery, &result, &generated.document, &data_digest).await {
            fail_run(worker, job, delivery, &e).await?;
            return Err(e);
        }
    }
    serde_json::to_value(&result).map_err(|e| Error::internal(e.to_string()))
}

/// SHA-256 of a report's data (its tables), not of its files: two runs
/// over the same data have the same digest whatever their time stamps.
fn data_digest(doc: &keel_render::Document) -> String {
    let tables: Vec<&keel_render::Table> = doc.sections.iter().map(|s| &s.table).collect();
    generate::sha256(&serde_json::to_vec(&tables).unwrap_or_default())
}

/// The run record of a delivery, as stored.
async fn run_record(worker: &Worker, delivery: &Delivery) -> Result<Run> {
    worker
        .store
        .get(&Schedule::pk(&delivery.schedule_id), &Run::sk(&delivery.run_at, &delivery.recipient))
        .await?
        .ok_or_else(|| Error::internal(format!("no run record of schedule {} at {} for a recipient", delivery.schedule_id, delivery.run_at)))
}

async fn save_run(worker: &Worker, run: &Run, action: &str, details: Value) -> Result<()> {
    let store = &worker.store;
    let audit = AuditEntry::new(&Actor::system("jobs"), action, "report_schedule", &run.schedule_id)
        .changes::<(), _>(None, Some(&json!({ "run_at": run.run_at, "state": run.state, "details": details })));
    store.commit(vec![Write::put(store.table(), run.to_item()?)?], &audit).await
}

/// Whether `send_if` lets this run send.
async fn triggered(worker: &Worker, delivery: &Delivery, result: &ReportResult, doc: &keel_render::Document, digest: &str) -> Result<bool> {
    Ok(match delivery.send_if {
        SendIf::Always => true,
        SendIf::HasResults => result.rows > 0,
        SendIf::DataChanged => {
            // The last earlier run for this recipient that got as far as a digest.
            let earlier = schedules::runs_of(&worker.store, &delivery.schedule_id, 200).await?;
            let previous = earlier.iter().find(|r| r.recipient == delivery.recipient && r.run_at < delivery.run_at && r.data_digest.is_some());
            previous.is_none_or(|r| r.data_digest.as_deref() != Some(digest))
        }
        SendIf::Threshold => {
            let Some(t) = &delivery.threshold else { return Ok(true) };
            let table = doc.sections.first().map(|s| &s.table);
            let column = table.and_then(|t2| t2.columns.iter().position(|c| c.name == t.column));
            match (table, column) {
                (Some(table), Some(i)) => table.rows.iter().filter_map(|r| r.get(i).and_then(keel_render::format::number)).any(|v| t.op.holds(v, t.value)),
                _ => false,
            }
        }
        SendIf::Anomaly => {
            // Anomalies the analytics refresh found on days since the last run (a week on the first).
            let earlier = schedules::runs_of(&worker.store, &delivery.schedule_id, 200).await?;
            let since = earlier
                .iter()
                .filter(|r| r.run_at < delivery.run_at)
                .map(|r| r.run_at.clone())
                .max()
                .unwrap_or_else(|| (Utc::now() - chrono::Duration::days(7)).to_rfc3339());
            let query: analytics::predictions::PredictionsQuery =
                serde_json::from_value(json!({ "from": &since[..10], "customers": 0 })).map_err(|e| Error::internal(e.to_string()))?;
            !analytics::predictions::compute(&worker.store, &query).await?.anomalies.is_empty()
        }
    })
}

/// Send a finished scheduled report to its recipient (or log that
/// `send_if` held it back), and record the run.
async fn deliver(worker: &Worker, job: &Job, delivery: &Delivery, result: &ReportResult, doc: &keel_render::Document, digest: &str) -> Result<()> {
    let mut run = run_record(worker, delivery).await?;
    // A redelivered message for a run already sent does not send again.
    if matches!(run.state, RunState::Success | RunState::NotTriggered) {
        return Ok(());
    }
    run.attempts = job.attempts;
    run.report_id = Some(job.id.clone());
    run.data_digest = Some(digest.to_string());
    run.updated_at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if !triggered(worker, delivery, result, doc, digest).await? {
        run.state = RunState::NotTriggered;
        run.error = None;
        return save_run(worker, &run, "report.schedule.skipped", json!({ "send_if": delivery.send_if })).await;
    }
    let total: u64 = result.files.iter().map(|f| f.bytes).sum();
    let summary = format!(
        "{}\n\nGenerated {} ({} rows{}).\n",
        result.title,
        result.generated_at,
        result.rows,
        result.data_range.as_ref().map(|(a, b)| format!(", data from {a} to {b}")).unwrap_or_default()
    );
    let (message_id, how) = if total <= schedules::ATTACHMENT_LIMIT {
        let mut files = Vec::new();
        for f in &result.files {
            files.push((f.file_name.clone(), f.content_type.clone(), worker.get_export(&f.key).await?));
        }
        let body = format!("{summary}The report is attached.\n");
        (worker.send_email_with_attachments(&delivery.recipient, &delivery.subject, &body, &files).await?, "attachment")
    } else {
        // Too large to attach: a share link that expires in 7 days.
        let link = reports::shares::create_for(&worker.store, &job.id, &delivery.owner_id, chrono::Duration::days(7), &worker.config.public_url).await?;
        let body = format!("{summary}The report is too large to attach ({total} bytes). Download it until {} at:\n{}\n", link.1, link.0);
        (worker.send_email(&delivery.recipient, &delivery.subject, body).await?, "link")
    };
    run.state = RunState::Success;
    run.error = None;
    run.delivered = Some(how.to_string());
    run.message_id = message_id;
    save_run(worker, &run, "report.schedule.delivered", json!({ "delivered": how, "bytes": total })).await
}

/// A failed try: `retrying` while the queue will try again, else `error`
/// with an email to the schedule's owner.
async fn fail_run(worker: &Worker, job: &Job, delivery: &Delivery, error: &Error) -> Result<()> {
    let Ok(mut run) = run_record(worker, delivery).await else { return Ok(()) };
    run.attempts = job.attempts;
    run.report_id = Some(job.id.clone());
    run.error = Some(error.to_string());
    run.updated_at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let last = job.attempts >= crate::MAX_ATTEMPTS;
    run.state = if last { RunState::Error } else { RunState::Retrying };
    save_run(worker, &run, "report.schedule.failed", json!({ "attempt": job.attempts, "final": last })).await?;
    if last {
        notify_owner(worker, delivery, &error.to_string(), job.attempts).await?;
    }
    Ok(())
}

/// Tell the schedule's owner that a run failed for good.
async fn notify_owner(worker: &Worker, delivery: &Delivery, why: &str, attempts: u32) -> Result<()> {
    let Some(owner) = shared::identity::users::get(&worker.store, &delivery.owner_id).await? else { return Ok(()) };
    let tries = if attempts == 0 { "it could not start".to_string() } else { format!("after {attempts} attempts") };
    let text = format!(
        "Your scheduled report \"{}\" was not sent to {} for the run of {}: {tries}.\n\nThe error: {why}\n",
        delivery.subject, delivery.recipient, delivery.run_at
    );
    worker.send_email(&owner.email, &format!("Scheduled report failed: {}", delivery.subject), text).await?;
    Ok(())
}
