//! `/api/v1/data/import`: create an import (a job and a presigned PUT URL
//! for its file), `/{job_id}/start` (check the uploaded file's size with a
//! HEAD, record its ETag, queue the job), and `/{job_id}` (status,
//! progress, and a short-lived link to the rejected-rows report). The jobs
//! worker validates and applies (functions/jobs/src/import.rs).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use shared::audit::AuditEntry;
use shared::domain::data_jobs::{self, Compression, Dataset, ImportFormat, ImportParams};
use shared::domain::jobs::{Job, JobStatus, Progress};
use shared::http::extract::{PathId, ValidJson};
use shared::http::{Caller, Principal};
use shared::platform::error::{Error, Result};
use shared::store::Write;
use shared::store::ids::JobId;
use utoipa::ToSchema;

use crate::DataState;

/// How long the upload URL works.
const UPLOAD_SECONDS: u64 = 15 * 60;
/// How long a report download link works.
const DOWNLOAD_SECONDS: u64 = 5 * 60;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// `users` or `charts`.
    pub dataset: Dataset,
    /// `csv` (header row, RFC 4180) or `ndjson`.
    pub format: ImportFormat,
    /// `none` (default) or `gzip`.
    #[serde(default)]
    pub compression: Compression,
    /// Validate every row and report, but write nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Upload {
    pub method: String,
    pub url: String,
    /// Headers the PUT must carry (part of the signature), if any.
    pub headers: BTreeMap<String, String>,
    pub expires_in: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportCreated {
    /// The import id: start it, read it, re-run it by this id.
    pub job_id: String,
    pub status: JobStatus,
    pub dataset: Dataset,
    pub dry_run: bool,
    /// PUT the file here, then POST `start`.
    pub upload: Upload,
    /// Largest accepted file (`limits.max_import_bytes`; for gzip, also the
    /// largest decompressed size).
    pub max_bytes: u64,
    pub start: String,
}

async fn presign(state: &DataState, put: bool, key: &str, seconds: u64) -> Result<(String, BTreeMap<String, String>)> {
    use aws_sdk_s3::presigning::PresigningConfig;
    let config = PresigningConfig::expires_in(Duration::from_secs(seconds)).map_err(|e| Error::internal(format!("presigning config: {e}")))?;
    let bucket = &state.platform.config.exports_bucket;
    let request = if put {
        state.s3.put_object().bucket(bucket).key(key).presigned(config).await.map_err(shared::platform::error::aws("s3 presign PutObject"))?
    } else {
        state.s3.get_object().bucket(bucket).key(key).presigned(config).await.map_err(shared::platform::error::aws("s3 presign GetObject"))?
    };
    let headers = request.headers().filter(|(k, _)| !k.eq_ignore_ascii_case("host")).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Ok((request.uri().to_string(), headers))
}

#[utoipa::path(post, path = "/api/v1/data/import", tag = "data", request_body = ImportRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "A retried create answers the same import")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The import job (waiting for its file) and where to upload the file", body = ImportCreated),
        (status = 400, description = "Invalid fields", body = shared::platform::error::Problem),
        (status = 403, description = "Missing data:import", body = shared::platform::error::Problem),
    ))]
pub async fn create(State(state): State<DataState>, caller: Caller, ValidJson(body): ValidJson<ImportRequest>) -> Result<(StatusCode, Json<ImportCreated>)> {
    let settings = state.platform.settings.current().await?;
    let mut job = Job::new(shared::domain::jobs::JobKind::DataImport, &caller.principal.user_id, serde_json::Value::Null);
    // Not run until its file is uploaded and `start` asks for it.
    job.run_requests = 0;
    let params = ImportParams {
        dataset: body.dataset,
        format: body.format,
        compression: body.compression,
        dry_run: body.dry_run,
        object_key: data_jobs::import_object_key(&job.id),
        granter_permissions: caller.principal.permissions.names(),
        started_by: None,
        etag: None,
    };
    job.params = serde_json::to_value(&params).map_err(|e| Error::internal(e.to_string()))?;
    let store = &state.platform.store;
    let audit = AuditEntry::new(&caller.actor(), "data.import.create", "job", &job.id).changes::<(), _>(
        None,
        Some(&serde_json::json!({ "dataset": params.dataset, "format": params.format, "compression": params.compression, "dry_run": params.dry_run })),
    );
    store.commit(vec![job.create_write(store.table())?], &audit).await?;
    let (url, headers) = presign(&state, true, &params.object_key, UPLOAD_SECONDS).await?;
    Ok((
        StatusCode::CREATED,
        Json(ImportCreated {
            start: format!("/api/v1/data/import/{}/start", job.id),
            job_id: job.id,
            status: job.status,
            dataset: params.dataset,
            dry_run: params.dry_run,
            upload: Upload { method: "PUT".into(), url, headers, expires_in: UPLOAD_SECONDS },
            max_bytes: settings.settings.limits.max_import_bytes,
        }),
    ))
}

pub(crate) fn import_params(job: &Job) -> Result<ImportParams> {
    serde_json::from_value(job.params.clone()).map_err(|e| Error::internal(format!("import job params: {e}")))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportStarted {
    pub job_id: String,
    pub status: JobStatus,
    /// Size of the uploaded file.
    pub bytes: u64,
}

#[utoipa::path(post, path = "/api/v1/data/import/{job_id}/start", tag = "data", security(("bearer" = [])),
    params(("job_id" = String, Path, description = "The import id")),
    responses(
        (status = 202, description = "Queued: the worker validates (and unless dry_run, applies). Starting again before it finishes re-runs it; nothing is applied twice", body = ImportStarted),
        (status = 400, description = "The file is over limits.max_import_bytes (field `file`)", body = shared::platform::error::Problem),
        (status = 403, description = "Missing data:import", body = shared::platform::error::Problem),
        (status = 404, description = "No such import of yours", body = shared::platform::error::Problem),
        (status = 409, description = "No file uploaded yet, the file changed after the import started, or the import already finished", body = shared::platform::error::Problem),
    ))]
pub async fn start(State(state): State<DataState>, caller: Caller, PathId(job_id): PathId<JobId>) -> Result<(StatusCode, Json<ImportStarted>)> {
    let job = crate::owned_job(&state, &caller.principal, &job_id, &[shared::domain::jobs::JobKind::DataImport]).await?;
    if job.status.is_final() {
        return Err(Error::Conflict(format!("the import already finished ({}); create a new import to import again", job.status.as_str())));
    }
    let mut params = import_params(&job)?;
    let bucket = &state.platform.config.exports_bucket;
    let Some((bytes, etag)) = data_jobs::head_upload(&state.s3, bucket, &params.object_key).await? else {
        return Err(Error::Conflict("no file was uploaded yet: PUT it to the upload URL first".into()));
    };
    let limit = state.platform.settings.current().await?.settings.limits.max_import_bytes;
    if bytes > limit {
        return Err(Error::field("file", format!("is {bytes} bytes; the limit is {limit} (limits.max_import_bytes)")));
    }
    if params.etag.is_some() && params.etag != etag {
        return Err(Error::Conflict("the file changed after the import started; create a new import for a new file".into()));
    }
    let rerun = params.started_by.is_some();
    params.started_by = Some(caller.actor());
    params.etag = etag;
    let mut next = job.clone();
    next.params = serde_json::to_value(&params).map_err(|e| Error::internal(e.to_string()))?;
    next.version = job.version + 1;
    // Asks the outbox to run it (again, for a re-run after a crashed
    // attempt: queued afresh, no earlier delivery owns it any more).
    next.run_requests = job.run_requests + 1;
    next.status = JobStatus::Queued;
    next.claimed_by = None;
    next.updated_at = shared::store::timestamp(chrono::Utc::now());
    let store = &state.platform.store;
    let mut audit = AuditEntry::new(&caller.actor(), "data.import.start", "job", &job.id)
        .changes::<(), _>(None, Some(&serde_json::json!({ "bytes": bytes, "etag": params.etag, "dry_run": params.dry_run })));
    if rerun {
        audit = audit.reason("re-run");
    }
    store.commit(vec![Write::put_versioned(store.table(), next.to_item()?, job.version)?], &audit).await?;
    Ok((StatusCode::ACCEPTED, Json(ImportStarted { job_id: next.id, status: next.status, bytes })))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportStatus {
    pub job_id: String,
    pub status: JobStatus,
    pub dataset: Dataset,
    pub dry_run: bool,
    /// Rows checked (validation) or written (apply) of all rows.
    pub progress: Progress,
    /// `outcome` (`validated`, `rejected`, `applied`), row counts, and per-row
    /// failures found while applying.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    /// The rejected-rows CSV (row, errors, the row's values), valid 5 minutes;
    /// issuing it is audited.
    pub report_url: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[utoipa::path(get, path = "/api/v1/data/import/{job_id}", tag = "data", security(("bearer" = [])),
    params(("job_id" = String, Path, description = "The import id")),
    responses(
        (status = 200, description = "Status, progress and result; a report link when rows were rejected", body = ImportStatus),
        (status = 403, description = "Missing data:import", body = shared::platform::error::Problem),
        (status = 404, description = "No such import of yours", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<DataState>, caller: Caller, PathId(job_id): PathId<JobId>) -> Result<Json<ImportStatus>> {
    let principal: &Principal = &caller.principal;
    let job = crate::owned_job(&state, principal, &job_id, &[shared::domain::jobs::JobKind::DataImport]).await?;
    let params = import_params(&job)?;
    let report_key = job.result.as_ref().and_then(|r| r["report_key"].as_str()).map(str::to_string);
    let report_url = match report_key {
        Some(key) => {
            // Issuing a download link is audited (it hands out the rows' data).
            let audit = AuditEntry::new(&caller.actor(), "data.import.report_download", "job", &job.id)
                .changes::<(), _>(None, Some(&serde_json::json!({ "key": key })));
            state.platform.store.record(&audit).await?;
            Some(presign(&state, false, &key, DOWNLOAD_SECONDS).await?.0)
        }
        None => None,
    };
    Ok(Json(ImportStatus {
        job_id: job.id,
        status: job.status,
        dataset: params.dataset,
        dry_run: params.dry_run,
        progress: job.progress,
        result: job.result,
        error: job.error,
        report_url,
        created_at: job.created_at,
        updated_at: job.updated_at,
    }))
}
