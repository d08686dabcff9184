//! The retention sweep (an EventBridge schedule, hourly): what bulk delete
//! soft-deleted is removed for good once `retention.restore_window_days`
//! has passed (docs/imports-and-bulk.md, "Restore window").
//! - A chart is deleted with its moderation history, audited (`chart.purge`,
//!   about its owner) in the transaction that deletes it.
//! - A user becomes an erasure request made by the system
//!   (`system:retention`): the same sweep, crypto-shredding and signed
//!   certificate as one a person asks for (docs/subject-requests.md).
//!
//! It also enforces the other retention settings:
//! - `retention.exports_days`: the files of finished exports and imports
//!   older than that are deleted, their job marked `files_expired_at` (no
//!   more download links);
//! - `retention.jobs_days`: finished job records older than that are
//!   deleted with any file left (erasure jobs are kept: they carry the
//!   receipt that fetches a certificate).
//!
//! Idempotent: a purged chart is gone, a user already being erased is
//! skipped (the erasure guard), so overlapping runs do no harm.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;
use shared::audit::{Actor, AuditEntry};
use shared::domain::jobs::{Job, JobStatus};
use shared::domain::subject_requests::{self, Regime, RequestKind, SubjectRequest};
use shared::platform::crypto::{random_token, sha256_hex};
use shared::platform::error::{Error, Result};
use shared::store::{Item, QuerySpec, UpdateSpec, Write, attr_s, s, timestamp};

use crate::Worker;

/// Who asks for the erasure of users past their restore window.
pub const REQUESTER: &str = "system:retention";

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Swept {
    pub charts_purged: u64,
    pub users_queued_for_erasure: u64,
    pub export_files_expired: u64,
    pub jobs_removed: u64,
}

/// Items of a soft-delete partition deleted before `cutoff`.
async fn expired(worker: &Worker, partition: &str, cutoff: &str) -> Result<Vec<Item>> {
    let spec = QuerySpec {
        index: Some("gsi2"),
        key_condition: "gsi2pk = :pk",
        filter: "deleted_at < :cutoff",
        values: vec![(":pk", s(partition)), (":cutoff", s(cutoff))],
        forward: true,
        ..QuerySpec::default()
    };
    worker.store.query_all(&spec).await
}

pub async fn sweep(worker: &Worker, now: DateTime<Utc>) -> Result<Swept> {
    let settings = shared::domain::system_settings::load_current(&worker.store).await?.settings;
    let cutoff = timestamp(now - Duration::days(i64::from(settings.retention.restore_window_days)));
    let mut swept = Swept::default();
    let actor = Actor::system("retention");

    for chart in expired(worker, shared::domain::charts::DELETED_PARTITION, &cutoff).await? {
        let (Some(pk), Some(id)) = (attr_s(&chart, "pk"), attr_s(&chart, "id")) else { continue };
        let spec = QuerySpec { key_condition: "pk = :pk", values: vec![(":pk", s(pk))], forward: true, ..QuerySpec::default() };
        let (items, _) = worker.store.query_page(&spec, None, 1000).await?;
        // Moderation history first (any length), then the chart with its audit entry.
        let history: Vec<(String, String)> =
            items.iter().filter_map(|i| attr_s(i, "sk").filter(|sk| *sk != "META").map(|sk| (pk.to_string(), sk.to_string()))).collect();
        worker.store.batch_delete(&history).await?;
        let mut audit = AuditEntry::new(&actor, "chart.purge", "chart", id)
            .reason(format!("soft-deleted before {cutoff} (retention.restore_window_days = {})", settings.retention.restore_window_days));
        if let Some(owner) = attr_s(&chart, "owner_id") {
            audit = audit.about(owner);
        }
        let version = chart.get("version").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
        let audit = audit.changes::<serde_json::Value, serde_json::Value>(
            Some(&json!({ "deleted_at": attr_s(&chart, "deleted_at"), "moderation_history": history.len() })),
            None,
        );
        match worker.store.commit(vec![Write::delete_versioned(worker.store.table(), pk, "META", version)?], &audit).await {
            Ok(()) => swept.charts_purged += 1,
            // Restored or changed meanwhile: it is no longer expired.
            Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }

    for user in expired(worker, "USERS#deleted", &cutoff).await? {
        let Some(user_id) = attr_s(&user, "id") else { continue };
        let mut request = SubjectRequest::new(RequestKind::Erasure, Regime::Gdpr, user_id, REQUESTER);
        // Nobody holds a receipt: operators read the certificate (data:requests).
        let params = json!({ "request_id": request.id, "receipt_sha256": sha256_hex(random_token().as_bytes()) });
        let job = Job::new(shared::domain::jobs::JobKind::Erasure, subject_requests::ERASURE_JOB_OWNER, params);
        request.job_id = Some(job.id.clone());
        let guard = subject_requests::erasure_guard(worker.store.table(), user_id, &request.id)?;
        let audit = request.audit(&actor, "data.subject_request.create").reason("past the restore window of a soft delete");
        match subject_requests::create_with(&worker.store, &request, vec![job.create_write(worker.store.table())?, guard], audit).await {
            Ok(()) => {
                swept.users_queued_for_erasure += 1;
            }
            // Already being erased.
            Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    sweep_jobs(worker, now, &settings.retention, &mut swept).await?;
    // The evidence that retention is enforced (the compliance report).
    let mut last = shared::store::to_item(&serde_json::json!({"ran_at": timestamp(now), "swept": swept, "retention": settings.retention}))?;
    last.insert("pk".into(), s(shared::domain::system_settings::RETENTION_LAST_RUN_PK));
    last.insert("sk".into(), s(shared::domain::system_settings::RETENTION_LAST_RUN_SK));
    last.insert("type".into(), s("retention_run"));
    worker.store.put_item_unchecked(last).await?;
    Ok(swept)
}

/// Finished jobs created before `cutoff` in one status partition.
async fn finished_before(worker: &Worker, status: JobStatus, cutoff: &str) -> Result<Vec<Item>> {
    let spec = QuerySpec {
        index: Some("gsi2"),
        key_condition: "gsi2pk = :pk AND gsi2sk < :cutoff",
        values: vec![(":pk", s(format!("JOBS#{}", status.as_str()))), (":cutoff", s(cutoff))],
        forward: true,
        ..QuerySpec::default()
    };
    worker.store.query_all(&spec).await
}

async fn sweep_jobs(worker: &Worker, now: DateTime<Utc>, retention: &shared::domain::system_settings::Retention, swept: &mut Swept) -> Result<()> {
    let jobs_cutoff = timestamp(now - Duration::days(i64::from(retention.jobs_days)));
    let files_cutoff = timestamp(now - Duration::days(i64::from(retention.exports_days)));
    for status in [JobStatus::Succeeded, JobStatus::Failed, JobStatus::Cancelled] {
        for job in finished_before(worker, status, &jobs_cutoff).await? {
            if attr_s(&job, "kind") == Some(shared::domain::jobs::JobKind::Erasure.as_str()) {
                continue;
            }
            worker.delete_job_files(&job).await?;
            let Some(pk) = attr_s(&job, "pk") else { continue };
            let spec = QuerySpec { key_condition: "pk = :pk", values: vec![(":pk", s(pk))], forward: true, ..QuerySpec::default() };
            let (items, _) = worker.store.query_page(&spec, None, 1000).await?;
            let keys: Vec<(String, String)> = items.iter().map(|i| (pk.to_string(), attr_s(i, "sk").unwrap_or("").to_string())).collect();
            worker.store.batch_delete(&keys).await?;
            swept.jobs_removed += 1;
        }
    }
    for job in finished_before(worker, JobStatus::Succeeded, &files_cutoff).await? {
        let expired = matches!(job.get("result"), Some(aws_sdk_dynamodb::types::AttributeValue::M(r)) if r.contains_key("files_expired_at"));
        if expired || attr_s(&job, "kind") == Some(shared::domain::jobs::JobKind::Erasure.as_str()) {
            continue;
        }
        if worker.delete_job_files(&job).await? == 0 {
            continue;
        }
        let Some(pk) = attr_s(&job, "pk") else { continue };
        let expired = UpdateSpec::new("SET #result.files_expired_at = :now")
            .condition("attribute_type(#result, :map)")
            .name("#result", "result")
            .value(":now", s(timestamp(now)))
            .value(":map", s("M"));
        if worker.store.update(pk, "META", &expired).await?.is_none() {
            return Err(Error::internal("expire export files: the job has no result map"));
        }
        swept.export_files_expired += 1;
    }
    Ok(())
}
