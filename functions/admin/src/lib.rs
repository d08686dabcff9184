//! The admin function: `/api/v1/admin/*` — user management and the audit
//! log, the analytics dashboard and system health and metrics. (Charts,
//! roles and system configuration join later.)

pub mod audit_logs;
pub mod masking;
pub mod users;
// Dashboard and monitoring (issue 4).
pub mod analytics;
pub mod monitoring;
pub mod system_health;
pub mod system_metrics;

use axum::Router;
use axum::http::Method;
use axum::routing::get;
use shared::http::{Access, Platform, Route};
use shared::rbac::Permission;

#[derive(Clone, Debug)]
pub struct AdminState {
    pub platform: Platform,
    pub sqs: aws_sdk_sqs::Client,
    pub monitoring: monitoring::Monitoring,
}

/// Every route of this function and the permission it needs.
pub static ROUTES: &[Route] = &[
    Route::new(Method::POST, "/api/v1/admin/users", Access::Permission(Permission::UsersWrite)),
    Route::new(Method::GET, "/api/v1/admin/users", Access::Permission(Permission::UsersRead)),
    Route::new(Method::GET, "/api/v1/admin/users/{user_id}", Access::Permission(Permission::UsersRead)),
    Route::new(Method::PUT, "/api/v1/admin/users/{user_id}", Access::Permission(Permission::UsersWrite)),
    Route::new(Method::DELETE, "/api/v1/admin/users/{user_id}", Access::Permission(Permission::UsersDelete)),
    Route::new(Method::GET, "/api/v1/admin/audit-logs", Access::Permission(Permission::AuditRead)),
    // Dashboard and monitoring.
    Route::new(Method::GET, "/api/v1/admin/analytics", Access::Permission(Permission::AnalyticsRead)),
    Route::new(Method::GET, "/api/v1/admin/system/health", Access::Permission(Permission::SystemRead)),
    Route::new(Method::GET, "/api/v1/admin/system/metrics", Access::Permission(Permission::SystemRead)),
];

pub fn router(state: AdminState) -> Router {
    let platform = state.platform.clone();
    let routes = Router::new()
        .route("/api/v1/admin/users", get(users::list).post(users::create))
        .route("/api/v1/admin/users/{user_id}", get(users::read).put(users::update).delete(users::delete))
        .route("/api/v1/admin/audit-logs", get(audit_logs::list))
        .route("/api/v1/admin/analytics", get(analytics::read))
        .route("/api/v1/admin/system/health", get(system_health::read))
        .route("/api/v1/admin/system/metrics", get(system_metrics::read))
        .with_state(state);
    shared::http::secure(routes, &platform, ROUTES)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(users::create, users::list, users::read, users::update, users::delete, audit_logs::list,
        analytics::read, system_health::read, system_metrics::read),
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
