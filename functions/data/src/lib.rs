//! The data function: `/api/v1/data/*` — exports of datasets (users,
//! charts, orders, activity, audit) or of one's own data, in CSV, JSON,
//! NDJSON, XLSX, PDF or SQL (small ones answered at once, the rest as jobs
//! the `jobs` worker streams to S3), and the caller's data jobs: status,
//! progress, download link, cancellation (docs/exports.md); imports (an
//! uploaded file validated row by row, then applied by the jobs worker) and
//! bulk operations (update, soft delete and restore of users or charts,
//! fanned out over SQS) (docs/imports-and-bulk.md); GDPR/CCPA subject
//! exports and the tracked subject requests (docs/subject-requests.md).

pub mod bulk;
pub mod data_jobs;
pub mod erasure;
pub mod export;
pub mod gdpr;
pub mod import;
pub mod requests;

use axum::Router;
use axum::http::Method;
use axum::routing::{get, post};
use shared::http::{Access, BearerAuth, Need, Platform, Route, Subject};
use shared::identity::rbac::Permission;

#[derive(Clone, Debug)]
pub struct DataState {
    pub platform: Platform,
    pub sqs: aws_sdk_sqs::Client,
    /// Presigns export downloads, import uploads and report downloads;
    /// checks uploaded files (HEAD).
    pub s3: aws_sdk_s3::Client,
    pub exports: ExportSettings,
}

/// This function's own settings (from template.yaml's environment).
#[derive(Clone, Debug)]
pub struct ExportSettings {
    /// Exports of at most this many rows (CSV, JSON, NDJSON, SQL) are
    /// answered in the response; larger ones, and XLSX and PDF, are jobs.
    pub inline_rows: usize,
}

pub const DEFAULT_INLINE_ROWS: usize = 1000;
/// The inline threshold cannot exceed one DynamoDB page of reads per request.
pub const MAX_INLINE_ROWS: usize = 5000;

impl ExportSettings {
    pub fn from_env() -> anyhow::Result<ExportSettings> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<ExportSettings> {
        let inline_rows = match get("KEEL_EXPORT_INLINE_ROWS").filter(|v| !v.trim().is_empty()) {
            None => DEFAULT_INLINE_ROWS,
            Some(v) => v
                .trim()
                .parse()
                .ok()
                .filter(|n| *n <= MAX_INLINE_ROWS)
                .ok_or_else(|| anyhow::anyhow!("configuration: KEEL_EXPORT_INLINE_ROWS must be 0 to {MAX_INLINE_ROWS}: {v:?}"))?,
        };
        Ok(ExportSettings { inline_rows })
    }
}

/// Every route of this function and who may call it. Exports of datasets
/// need `data:export` (checked in the handler: without a dataset the
/// route exports the caller's own data, open to every signed-in user).
/// `POST /api/v1/data/export`, by the body's `dataset`.
pub const EXPORT_ACCESS: Access = Access::ByBodyField {
    field: "dataset",
    absent: Need::SignedIn,
    cases: &[("audit", Need::All(&[Permission::DataExport, Permission::AuditRead]))],
    otherwise: Need::All(&[Permission::DataExport]),
};

pub static ROUTES: &[Route] = &[
    // Exports and data jobs (export.rs, data_jobs.rs): without a dataset,
    // one's own data; a dataset needs data:export, the audit log also
    // audit:read. Jobs are the caller's own (others' read as missing).
    Route::new(Method::POST, "/api/v1/data/export", EXPORT_ACCESS),
    Route::new(Method::GET, "/api/v1/data/jobs", Access::Authenticated),
    Route::new(Method::GET, "/api/v1/data/jobs/{job_id}", Access::Authenticated),
    Route::new(Method::DELETE, "/api/v1/data/jobs/{job_id}", Access::Authenticated),
    // Imports (import.rs).
    Route::new(Method::POST, "/api/v1/data/import", Access::Permission(Permission::DataImport)),
    Route::new(Method::GET, "/api/v1/data/import/{job_id}", Access::Permission(Permission::DataImport)),
    Route::new(Method::POST, "/api/v1/data/import/{job_id}/start", Access::Permission(Permission::DataImport)),
    // Bulk operations (bulk.rs).
    Route::new(Method::POST, "/api/v1/data/bulk/update", Access::Permission(Permission::DataBulk)),
    Route::new(Method::POST, "/api/v1/data/bulk/delete", Access::Permission(Permission::DataBulk)),
    Route::new(Method::POST, "/api/v1/data/bulk/restore", Access::Permission(Permission::DataBulk)),
    Route::new(Method::GET, "/api/v1/data/bulk/{job_id}", Access::Permission(Permission::DataBulk)),
    // Subject requests (gdpr.rs, requests.rs): an export of one's own data
    // (no `user_id`, or one's own), or anyone's with data:requests. The lists
    // show one's own requests, everyone's with data:requests.
    Route::new(Method::POST, "/api/v1/data/export/gdpr", Access::SelfOrPermission { subject: Subject::Body("user_id"), permission: Permission::DataRequests }),
    Route::new(Method::GET, "/api/v1/data/requests", Access::Authenticated),
    Route::new(Method::GET, "/api/v1/data/requests/{request_id}", Access::Authenticated),
    // Erasure (erasure.rs): oneself, or anyone with data:erase; the
    // certificate also by receipt, without a token.
    Route::new(
        Method::DELETE,
        "/api/v1/data/user/{user_id}",
        Access::SelfOrPermission { subject: Subject::Path("user_id"), permission: Permission::DataErase },
    ),
    Route::new(Method::GET, "/api/v1/data/requests/{request_id}/certificate", Access::OptionallyAuthenticated),
];

pub fn router(state: DataState) -> Router {
    let platform = state.platform.clone();
    let routes = Router::new()
        .route("/api/v1/data/export", post(export::create))
        .route("/api/v1/data/jobs", get(data_jobs::list))
        .route("/api/v1/data/jobs/{job_id}", get(data_jobs::read).delete(data_jobs::cancel))
        .route("/api/v1/data/import", post(import::create))
        .route("/api/v1/data/import/{job_id}", get(import::read))
        .route("/api/v1/data/import/{job_id}/start", post(import::start))
        .route("/api/v1/data/bulk/update", post(bulk::update))
        .route("/api/v1/data/bulk/delete", post(bulk::delete))
        .route("/api/v1/data/bulk/restore", post(bulk::restore))
        .route("/api/v1/data/bulk/{job_id}", get(bulk::read))
        .route("/api/v1/data/export/gdpr", post(gdpr::create))
        .route("/api/v1/data/requests", get(requests::list))
        .route("/api/v1/data/requests/{request_id}", get(requests::read))
        .route("/api/v1/data/user/{user_id}", axum::routing::delete(erasure::create))
        .route("/api/v1/data/requests/{request_id}/certificate", get(erasure::certificate))
        .with_state(state);
    shared::http::secure(routes, &platform, ROUTES)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(export::create, data_jobs::list, data_jobs::read, data_jobs::cancel, import::create, import::read, import::start, bulk::update, bulk::delete, bulk::restore, bulk::read, gdpr::create, requests::list, requests::read, erasure::create, erasure::certificate),
    components(schemas(shared::platform::error::Problem, shared::platform::error::FieldError)),
    modifiers(&BearerAuth, &ERROR_RESPONSES)
)]
pub struct ApiDoc;

/// The errors every route can answer, from the route table (`shared::http::openapi`).
static ERROR_RESPONSES: shared::http::openapi::ErrorResponses = shared::http::openapi::ErrorResponses(ROUTES);

/// The job `job_id` if it is of one of `kinds` and the caller created it
/// (anyone else's job reads as missing).
pub(crate) async fn owned_job(
    state: &DataState,
    caller: &shared::http::Principal,
    job_id: &shared::store::ids::JobId,
    kinds: &[shared::domain::jobs::JobKind],
) -> shared::Result<shared::domain::jobs::Job> {
    let missing = || shared::Error::NotFound(format!("no job {job_id}"));
    let job = shared::domain::jobs::get(&state.platform.store, job_id).await?.ok_or_else(missing)?;
    if !kinds.contains(&job.kind) || job.owner_id != caller.user_id {
        return Err(missing());
    }
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_access_follows_the_dataset_names() {
        use shared::domain::export::Dataset;
        use shared::http::Facts;
        let need = |body: serde_json::Value| EXPORT_ACCESS.need(&Facts { caller: "me", path: &[], body: Some(&body) });
        assert_eq!(need(serde_json::json!({"format": "csv"})), Some(Need::SignedIn));
        for dataset in [Dataset::Users, Dataset::Charts, Dataset::Orders, Dataset::Activity, Dataset::Audit] {
            // The rule's case names are the wire names the handler parses.
            let wire = serde_json::to_value(dataset).unwrap();
            assert_eq!(wire, dataset.as_str());
            let expected: &[Permission] = if dataset == Dataset::Audit { &[Permission::DataExport, Permission::AuditRead] } else { &[Permission::DataExport] };
            assert_eq!(need(serde_json::json!({"dataset": wire})).map(Need::permissions), Some(expected), "{dataset:?}");
        }
    }

    #[test]
    fn inline_rows_default_and_bad_values_are_named() {
        let with = |v: Option<&'static str>| ExportSettings::from_lookup(move |_| v.map(String::from));
        assert_eq!(with(None).unwrap().inline_rows, DEFAULT_INLINE_ROWS);
        assert_eq!(with(Some("")).unwrap().inline_rows, DEFAULT_INLINE_ROWS);
        assert_eq!(with(Some("0")).unwrap().inline_rows, 0);
        for bad in ["many", "-1", "5001"] {
            assert!(with(Some(bad)).unwrap_err().to_string().contains("KEEL_EXPORT_INLINE_ROWS"), "{bad}");
        }
    }
}
