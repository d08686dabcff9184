//! `/api/v1/data/jobs` and `/api/v1/data/jobs/{job_id}`: the caller's data
//! jobs (exports and subject exports): status and progress, a presigned
//! download link valid five minutes once done (issuing it is audited), and
//! cancellation (not of subject exports). A caller sees only their own
//! jobs; anyone else's answer 404.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::AuditEntry;
use shared::domain::export::{ExportParams, ExportResult};
use shared::domain::jobs::{self, Job, JobKind, JobStatus, Progress};
use shared::domain::subject_requests::ExportJobResult;
use shared::http::extract::{ValidQuery, page_limit};
use shared::http::{Caller, Principal};
use shared::platform::error::{Error, Result};
use shared::store::cursor::{KeyPosition, key_of, position_of};
use shared::store::ids::JobId;
use shared::store::{QuerySpec, Write, s};
use utoipa::{IntoParams, ToSchema};

use crate::DataState;

/// The job kinds this function owns (listed and shown here).
pub const DATA_JOB_KINDS: &[JobKind] = &[JobKind::DataExport, JobKind::GdprExport];

/// What a finished job produced: a dataset (or own-data) export, or a
/// subject export (a zip).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum JobResult {
    Export(ExportResult),
    SubjectExport(ExportJobResult),
}

impl JobResult {
    fn of(kind: JobKind, value: serde_json::Value) -> Option<JobResult> {
        if kind == JobKind::GdprExport {
            serde_json::from_value(value).ok().map(JobResult::SubjectExport)
        } else {
            serde_json::from_value(value).ok().map(JobResult::Export)
        }
    }

    /// The object to hand out: bucket, key, file name, content type, SHA-256.
    fn file(&self) -> (&str, &str, &str, &str, &str) {
        match self {
            JobResult::Export(r) => (&r.bucket, &r.key, &r.file_name, &r.content_type, &r.sha256),
            JobResult::SubjectExport(r) => (&r.bucket, &r.key, &r.file_name, &r.content_type, &r.sha256),
        }
    }
}

/// How long a download link works.
pub const DOWNLOAD_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub kind: JobKind,
    pub status: JobStatus,
    /// `csv`, `xlsx`... (exports); `zip` (subject exports).
    pub format: Option<String>,
    /// The dataset, or absent for an export of one's own data.
    pub dataset: Option<String>,
    pub progress: Progress,
    /// Once done: rows (or, for a subject export, files and records per
    /// category), bytes, SHA-256, file name.
    pub result: Option<JobResult>,
    pub error: Option<String>,
    pub attempts: u32,
    pub created_at: String,
    pub updated_at: String,
    /// Once succeeded (single-job read only): a presigned GET, valid 5 minutes.
    pub download_url: Option<String>,
    pub download_expires_at: Option<String>,
    /// When the retention sweep deleted the file (`retention.exports_days`):
    /// no download link any more.
    pub files_expired_at: Option<String>,
}

impl JobView {
    fn of(job: Job) -> JobView {
        let params: Option<ExportParams> = serde_json::from_value(job.params.clone()).ok();
        let subject_export = job.kind == JobKind::GdprExport;
        let files_expired_at = job.result.as_ref().and_then(|r| r.get("files_expired_at")).and_then(|v| v.as_str()).map(str::to_string);
        JobView {
            files_expired_at,
            format: if subject_export { Some("zip".into()) } else { params.as_ref().map(|p| p.format.as_str().to_string()) },
            dataset: params.as_ref().and_then(|p| p.filters.dataset()).map(|d| d.as_str().to_string()),
            result: job.result.clone().filter(|_| job.status == JobStatus::Succeeded).and_then(|r| JobResult::of(job.kind, r)),
            id: job.id,
            kind: job.kind,
            status: job.status,
            progress: job.progress,
            error: job.error,
            attempts: job.attempts,
            created_at: job.created_at,
            updated_at: job.updated_at,
            download_url: None,
            download_expires_at: None,
        }
    }
}

/// The caller's data job, or 404 (also for other people's jobs: their
/// existence is not revealed).
async fn own_job(state: &DataState, principal: &Principal, job_id: &str) -> Result<Job> {
    let not_found = || Error::NotFound(format!("no data job {job_id}"));
    let Some(job_id) = JobId::parse(job_id) else { return Err(not_found()) };
    match jobs::get(&state.platform.store, &job_id).await? {
        Some(job) if job.owner_id == principal.user_id && DATA_JOB_KINDS.contains(&job.kind) => Ok(job),
        _ => Err(not_found()),
    }
}

#[utoipa::path(get, path = "/api/v1/data/jobs/{job_id}", tag = "data", params(("job_id" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "Status and progress; once succeeded, a download link valid 5 minutes (its issue is audited)", body = JobView),
        (status = 404, description = "No such job of yours", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<DataState>, caller: Caller, Path(job_id): Path<String>) -> Result<Json<JobView>> {
    let job = own_job(&state, &caller.principal, &job_id).await?;
    let mut view = JobView::of(job);
    if let Some(result) = view.result.as_ref().filter(|_| view.files_expired_at.is_none()) {
        let (bucket, key, file_name, content_type, sha256) = result.file();
        let presigning = aws_sdk_s3::presigning::PresigningConfig::expires_in(DOWNLOAD_TTL).map_err(|e| Error::internal(e.to_string()))?;
        let request = state
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .response_content_disposition(format!("attachment; filename=\"{file_name}\""))
            .response_content_type(content_type)
            .presigned(presigning)
            .await
            .map_err(shared::platform::error::aws("s3 presign GetObject"))?;
        // Handing out the file is a read of what it holds: audited first.
        let audit = AuditEntry::new(&caller.actor(), "data.export_download", "job", &view.id)
            .changes::<(), _>(None, Some(&json!({ "key": key, "sha256": sha256, "expires_in_seconds": DOWNLOAD_TTL.as_secs() })));
        state.platform.store.record(&audit).await?;
        view.download_expires_at = Some(shared::store::timestamp(chrono::Utc::now() + chrono::Duration::seconds(DOWNLOAD_TTL.as_secs() as i64)));
        view.download_url = Some(request.uri().to_string());
    }
    Ok(Json(view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1–200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    pub items: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/data/jobs", tag = "data", params(ListQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Your data jobs, newest first (pages may be short; follow next_cursor)", body = JobPage),
        (status = 400, description = "Invalid limit or cursor", body = shared::platform::error::Problem),
    ))]
pub async fn list(State(state): State<DataState>, principal: Principal, ValidQuery(q): ValidQuery<ListQuery>) -> Result<Json<JobPage>> {
    let limit = page_limit(q.limit)?;
    let scope = format!("data-jobs|{}", principal.user_id);
    let start: Option<KeyPosition> = match &q.cursor {
        Some(c) => Some(state.platform.cursors().await?.decode(&scope, c)?),
        None => None,
    };
    let kinds: Vec<String> = (0..DATA_JOB_KINDS.len()).map(|i| format!(":k{i}")).collect();
    let filter = format!("#type = :job AND #kind IN ({})", kinds.join(", "));
    let mut values: Vec<(&str, AttributeValue)> = vec![(":owner", s(format!("OWNER#{}", principal.user_id))), (":job", s("job"))];
    values.extend(kinds.iter().zip(DATA_JOB_KINDS).map(|(k, v)| (k.as_str(), s(v.as_str()))));
    let spec = QuerySpec {
        index: Some("gsi1"),
        key_condition: "gsi1pk = :owner",
        filter: &filter,
        names: vec![("#type", "type"), ("#kind", "kind")],
        values,
        ..QuerySpec::default()
    };
    let (items, last) = state.platform.store.query_page(&spec, start.as_ref().map(key_of), limit).await?;
    let items = items.into_iter().map(|i| shared::store::from_item::<Job>(i).map(JobView::of)).collect::<Result<Vec<_>>>()?;
    let next_cursor = match last {
        Some(key) => Some(state.platform.cursors().await?.encode(&scope, &position_of(&key)?)),
        None => None,
    };
    Ok(Json(JobPage { items, next_cursor }))
}

#[utoipa::path(delete, path = "/api/v1/data/jobs/{job_id}", tag = "data", params(("job_id" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled; the worker stops at its next page and removes the partial upload", body = JobView),
        (status = 404, description = "No such job of yours", body = shared::platform::error::Problem),
        (status = 409, description = "The job already finished, or changed meanwhile (retry), or is a subject export (not cancellable)", body = shared::platform::error::Problem),
    ))]
pub async fn cancel(State(state): State<DataState>, caller: Caller, Path(job_id): Path<String>) -> Result<Json<JobView>> {
    let job = own_job(&state, &caller.principal, &job_id).await?;
    // A subject request is owed an answer: its export is not withdrawn here.
    if job.kind == JobKind::GdprExport {
        return Err(Error::Conflict("a subject export cannot be cancelled; it answers a tracked request (GET /api/v1/data/requests)".into()));
    }
    if job.status.is_final() {
        return Err(Error::Conflict(format!("the job has already {}", job.status.as_str())));
    }
    let store = &state.platform.store;
    let mut cancelled = job.clone();
    cancelled.status = JobStatus::Cancelled;
    cancelled.version = job.version + 1;
    cancelled.updated_at = shared::store::timestamp(chrono::Utc::now());
    let audit = AuditEntry::new(&caller.actor(), "data.export_cancel", "job", &job.id)
        .changes(Some(&json!({ "status": job.status })), Some(&json!({ "status": cancelled.status })));
    store.commit(vec![Write::put_versioned(store.table(), cancelled.to_item()?, job.version)?], &audit).await?;
    Ok(Json(JobView::of(cancelled)))
}
