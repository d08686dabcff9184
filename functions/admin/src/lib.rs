//! The admin function: `/api/v1/admin/*` — user management and the audit
//! log (listing, entries, verification against signed digests, exports). (Charts, roles, system configuration and the dashboard join later.)

pub mod audit_integrity;
pub mod audit_logs;
pub mod masking;
pub mod users;

use axum::Router;
use axum::http::Method;
use axum::routing::{get, post};
use shared::http::{Access, Platform, Route};
use shared::rbac::Permission;

#[derive(Clone, Debug)]
pub struct AdminState {
    pub platform: Platform,
    pub sqs: aws_sdk_sqs::Client,
    /// Reads the audit digest chain (verification, entries).
    pub audit: shared::audit_chain::ChainReader,
}

/// Every route of this function and the permission it needs.
pub static ROUTES: &[Route] = &[
    Route::new(Method::POST, "/api/v1/admin/users", Access::Permission(Permission::UsersWrite)),
    Route::new(Method::GET, "/api/v1/admin/users", Access::Permission(Permission::UsersRead)),
    Route::new(Method::GET, "/api/v1/admin/users/{user_id}", Access::Permission(Permission::UsersRead)),
    Route::new(Method::PUT, "/api/v1/admin/users/{user_id}", Access::Permission(Permission::UsersWrite)),
    Route::new(Method::DELETE, "/api/v1/admin/users/{user_id}", Access::Permission(Permission::UsersDelete)),
    Route::new(Method::GET, "/api/v1/admin/audit-logs", Access::Permission(Permission::AuditRead)),
    // Audit integrity: reading and verifying evidence (auditors included);
    // an export copies evidence out and is itself audited.
    Route::new(Method::GET, "/api/v1/admin/audit-logs/verify", Access::Permission(Permission::AuditRead)),
    Route::new(Method::POST, "/api/v1/admin/audit-logs/export", Access::Permission(Permission::AuditRead)),
    Route::new(Method::GET, "/api/v1/admin/audit-logs/{entry_id}", Access::Permission(Permission::AuditRead)),
];

pub fn router(state: AdminState) -> Router {
    let platform = state.platform.clone();
    let routes = Router::new()
        .route("/api/v1/admin/users", get(users::list).post(users::create))
        .route("/api/v1/admin/users/{user_id}", get(users::read).put(users::update).delete(users::delete))
        .route("/api/v1/admin/audit-logs", get(audit_logs::list))
        .route("/api/v1/admin/audit-logs/verify", get(audit_integrity::verify))
        .route("/api/v1/admin/audit-logs/export", post(audit_integrity::export))
        .route("/api/v1/admin/audit-logs/{entry_id}", get(audit_logs::read))
        .with_state(state);
    shared::http::secure(routes, &platform, ROUTES)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(users::create, users::list, users::read, users::update, users::delete, audit_logs::list,
        audit_logs::read, audit_integrity::verify, audit_integrity::export),
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

/// The audit chain reader over this function's table, the digest bucket
/// and the audit digest key.
pub fn audit_chain_reader(platform: &Platform, clients: &shared::aws::Clients) -> shared::audit_chain::ChainReader {
    let config = &platform.config;
    shared::audit_chain::ChainReader::new(platform.store.clone(), clients.s3.clone(), clients.kms.clone(), &config.audit_bucket, &config.audit_key_id)
}
