//! The data function: `/api/v1/data/*` — imports (an uploaded file
//! validated row by row, then applied by the jobs worker) and bulk
//! operations (update, soft delete and restore of users or charts, fanned
//! out over SQS). See docs/imports-and-bulk.md.

pub mod bulk;
pub mod import;

use axum::Router;
use axum::http::Method;
use axum::routing::{get, post};
use shared::http::{Access, Platform, Route};
use shared::rbac::Permission;

#[derive(Clone, Debug)]
pub struct DataState {
    pub platform: Platform,
    pub sqs: aws_sdk_sqs::Client,
    /// Presigns uploads and report downloads; checks uploaded files (HEAD).
    pub s3: aws_sdk_s3::Client,
}

/// Every route of this function and the permission it needs.
pub static ROUTES: &[Route] = &[
    // Imports (import.rs).
    Route::new(Method::POST, "/api/v1/data/import", Access::Permission(Permission::DataImport)),
    Route::new(Method::GET, "/api/v1/data/import/{job_id}", Access::Permission(Permission::DataImport)),
    Route::new(Method::POST, "/api/v1/data/import/{job_id}/start", Access::Permission(Permission::DataImport)),
    // Bulk operations (bulk.rs).
    Route::new(Method::POST, "/api/v1/data/bulk/update", Access::Permission(Permission::DataBulk)),
    Route::new(Method::POST, "/api/v1/data/bulk/delete", Access::Permission(Permission::DataBulk)),
    Route::new(Method::POST, "/api/v1/data/bulk/restore", Access::Permission(Permission::DataBulk)),
    Route::new(Method::GET, "/api/v1/data/bulk/{job_id}", Access::Permission(Permission::DataBulk)),
];

pub fn router(state: DataState) -> Router {
    let platform = state.platform.clone();
    let routes = Router::new()
        .route("/api/v1/data/import", post(import::create))
        .route("/api/v1/data/import/{job_id}", get(import::read))
        .route("/api/v1/data/import/{job_id}/start", post(import::start))
        .route("/api/v1/data/bulk/update", post(bulk::update))
        .route("/api/v1/data/bulk/delete", post(bulk::delete))
        .route("/api/v1/data/bulk/restore", post(bulk::restore))
        .route("/api/v1/data/bulk/{job_id}", get(bulk::read))
        .with_state(state);
    shared::http::secure(routes, &platform, ROUTES)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(import::create, import::read, import::start, bulk::update, bulk::delete, bulk::restore, bulk::read),
    components(schemas(shared::error::Problem, shared::error::FieldError)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The job `job_id` if it is of one of `kinds` and the caller created it
/// (anyone else's job reads as missing).
pub(crate) async fn owned_job(state: &DataState, caller: &shared::http::Principal, job_id: &str, kinds: &[&str]) -> shared::Result<shared::jobs::Job> {
    let missing = || shared::Error::NotFound(format!("no job {job_id}"));
    if uuid::Uuid::parse_str(job_id).is_err() {
        return Err(missing());
    }
    let job = shared::jobs::get(&state.platform.store, job_id).await?.ok_or_else(missing)?;
    if !kinds.contains(&job.kind.as_str()) || job.owner_id != caller.user_id {
        return Err(missing());
    }
    Ok(job)
}
