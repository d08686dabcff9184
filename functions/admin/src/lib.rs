//! The admin function: `/api/v1/admin/*` — user management (including
//! resetting a user's 2FA and unlocking rate limits), roles and role
//! assignments, chart moderation, the system configuration, the audit log
//! (listing, entries, verification against signed digests, exports), the
//! analytics dashboard, system health and metrics, log search, uptime, and the table's backups
//! (create, list, verify, restore).

pub mod audit_integrity;
pub mod audit_logs;
pub mod backups;
pub mod charts;
pub mod masking;
pub mod roles;
pub mod system_config;
pub mod two_factor;
pub mod users;
// Dashboard and monitoring (issue 4).
pub mod analytics;
pub mod logs;
pub mod monitoring;
pub mod system_health;
pub mod system_metrics;
pub mod uptime;

use axum::Router;
use axum::http::Method;
use axum::routing::{get, post, put};
use shared::http::{Access, BearerAuth, Platform, Route};
use shared::identity::rbac::Permission;

#[derive(Clone, Debug)]
pub struct AdminState {
    pub platform: Platform,
    pub sqs: aws_sdk_sqs::Client,
    pub monitoring: monitoring::Monitoring,
    /// Reads the audit digest chain (verification, entries).
    pub audit: shared::audit::chain::ChainReader,
}

/// Every route of this function and the permission it needs.
pub static ROUTES: &[Route] = &[
    Route::new(Method::POST, "/api/v1/admin/users", Access::Permission(Permission::UsersWrite)),
    Route::new(Method::GET, "/api/v1/admin/users", Access::Permission(Permission::UsersRead)),
    Route::new(Method::GET, "/api/v1/admin/users/{user_id}", Access::Permission(Permission::UsersRead)),
    Route::new(Method::PUT, "/api/v1/admin/users/{user_id}", Access::Permission(Permission::UsersWrite)),
    Route::new(Method::DELETE, "/api/v1/admin/users/{user_id}", Access::Permission(Permission::UsersDelete)),
    Route::new(Method::POST, "/api/v1/admin/users/{user_id}/unlock", Access::Permission(Permission::UsersWrite)),
    Route::new(Method::POST, "/api/v1/admin/users/{user_id}/2fa/reset", Access::Permission(Permission::UsersWrite)),
    Route::new(Method::PUT, "/api/v1/admin/users/{user_id}/roles", Access::Permission(Permission::RolesWrite)),
    Route::new(Method::GET, "/api/v1/admin/roles", Access::Permission(Permission::RolesRead)),
    Route::new(Method::POST, "/api/v1/admin/roles", Access::Permission(Permission::RolesWrite)),
    Route::new(Method::GET, "/api/v1/admin/roles/{name}", Access::Permission(Permission::RolesRead)),
    Route::new(Method::PUT, "/api/v1/admin/roles/{name}", Access::Permission(Permission::RolesWrite)),
    Route::new(Method::DELETE, "/api/v1/admin/roles/{name}", Access::Permission(Permission::RolesWrite)),
    Route::new(Method::GET, "/api/v1/admin/audit-logs", Access::Permission(Permission::AuditRead)),
    // Audit integrity: reading and verifying evidence (auditors included);
    // an export copies evidence out and is itself audited.
    Route::new(Method::GET, "/api/v1/admin/audit-logs/verify", Access::Permission(Permission::AuditRead)),
    Route::new(Method::POST, "/api/v1/admin/audit-logs/export", Access::Permission(Permission::AuditRead)),
    Route::new(Method::GET, "/api/v1/admin/audit-logs/{entry_id}", Access::Permission(Permission::AuditRead)),
    // Chart moderation (charts.rs).
    Route::new(Method::GET, "/api/v1/admin/charts", Access::Permission(Permission::ChartsRead)),
    Route::new(Method::GET, "/api/v1/admin/charts/queue", Access::Permission(Permission::ChartsRead)),
    Route::new(Method::GET, "/api/v1/admin/charts/{chart_id}", Access::Permission(Permission::ChartsRead)),
    Route::new(Method::POST, "/api/v1/admin/charts/{chart_id}/moderate", Access::Permission(Permission::ChartsModerate)),
    Route::new(Method::POST, "/api/v1/admin/charts/moderate", Access::Permission(Permission::ChartsModerate)),
    // System configuration (system_config.rs).
    Route::new(Method::GET, "/api/v1/admin/system/config", Access::Permission(Permission::ConfigRead)),
    Route::new(Method::PUT, "/api/v1/admin/system/config", Access::Permission(Permission::ConfigWrite)),
    Route::new(Method::GET, "/api/v1/admin/system/config/history", Access::Permission(Permission::ConfigRead)),
    Route::new(Method::POST, "/api/v1/admin/system/config/rollback", Access::Permission(Permission::ConfigWrite)),
    // Dashboard and monitoring.
    Route::new(Method::GET, "/api/v1/admin/analytics", Access::Permission(Permission::AnalyticsRead)),
    Route::new(Method::GET, "/api/v1/admin/system/health", Access::Permission(Permission::SystemRead)),
    Route::new(Method::GET, "/api/v1/admin/system/metrics", Access::Permission(Permission::SystemRead)),
    // Logs and uptime (logs.rs): operational reads, like health and metrics.
    Route::new(Method::GET, "/api/v1/admin/logs", Access::Permission(Permission::SystemRead)),
    Route::new(Method::GET, "/api/v1/admin/uptime", Access::Permission(Permission::SystemRead)),
    // Backups (backups.rs): every route reads or acts on copies of the
    // whole table, so one permission for all.
    Route::new(Method::POST, "/api/v1/admin/backups", Access::Permission(Permission::BackupsManage)),
    Route::new(Method::GET, "/api/v1/admin/backups", Access::Permission(Permission::BackupsManage)),
    Route::new(Method::GET, "/api/v1/admin/backups/{backup_id}", Access::Permission(Permission::BackupsManage)),
    Route::new(Method::POST, "/api/v1/admin/backups/{backup_id}/verify", Access::Permission(Permission::BackupsManage)),
    Route::new(Method::POST, "/api/v1/admin/backups/{backup_id}/restore", Access::Permission(Permission::BackupsManage)),
];

pub fn router(state: AdminState) -> Router {
    let platform = state.platform.clone();
    let routes = Router::new()
        .route("/api/v1/admin/users", get(users::list).post(users::create))
        .route("/api/v1/admin/users/{user_id}", get(users::read).put(users::update).delete(users::delete))
        .route("/api/v1/admin/users/{user_id}/unlock", post(users::unlock))
        .route("/api/v1/admin/users/{user_id}/2fa/reset", post(two_factor::reset))
        .route("/api/v1/admin/users/{user_id}/roles", put(roles::assign))
        .route("/api/v1/admin/roles", get(roles::list).post(roles::create))
        .route("/api/v1/admin/roles/{name}", get(roles::read).put(roles::update).delete(roles::delete))
        .route("/api/v1/admin/audit-logs", get(audit_logs::list))
        .route("/api/v1/admin/audit-logs/verify", get(audit_integrity::verify))
        .route("/api/v1/admin/audit-logs/export", post(audit_integrity::export))
        .route("/api/v1/admin/audit-logs/{entry_id}", get(audit_logs::read))
        // Chart moderation.
        .route("/api/v1/admin/charts", get(charts::list))
        .route("/api/v1/admin/charts/queue", get(charts::queue))
        .route("/api/v1/admin/charts/moderate", post(charts::moderate_bulk))
        .route("/api/v1/admin/charts/{chart_id}", get(charts::read))
        .route("/api/v1/admin/charts/{chart_id}/moderate", post(charts::moderate))
        // System configuration.
        .route("/api/v1/admin/system/config", get(system_config::read).put(system_config::update))
        .route("/api/v1/admin/system/config/history", get(system_config::history))
        .route("/api/v1/admin/system/config/rollback", post(system_config::rollback))
        // Dashboard and monitoring.
        .route("/api/v1/admin/analytics", get(analytics::read))
        .route("/api/v1/admin/system/health", get(system_health::read))
        .route("/api/v1/admin/system/metrics", get(system_metrics::read))
        .route("/api/v1/admin/logs", get(logs::search))
        .route("/api/v1/admin/uptime", get(uptime::read))
        // Backups.
        .route("/api/v1/admin/backups", get(backups::list).post(backups::create))
        .route("/api/v1/admin/backups/{backup_id}", get(backups::read))
        .route("/api/v1/admin/backups/{backup_id}/verify", post(backups::verify))
        .route("/api/v1/admin/backups/{backup_id}/restore", post(backups::restore))
        .with_state(state);
    shared::http::secure(routes, &platform, ROUTES)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        users::create, users::list, users::read, users::update, users::delete, users::unlock, two_factor::reset,
        roles::assign, roles::list, roles::create, roles::read, roles::update, roles::delete,
        audit_logs::list, audit_logs::read, audit_integrity::verify, audit_integrity::export,
        charts::list, charts::queue, charts::read, charts::moderate, charts::moderate_bulk,
        system_config::read, system_config::update, system_config::history, system_config::rollback,
        analytics::read, system_health::read, system_metrics::read, logs::search, uptime::read,
        backups::create, backups::list, backups::read, backups::verify, backups::restore,
    ),
    components(schemas(logs::LogSearch, logs::LogLine, uptime::UptimeReport, uptime::DayReport, uptime::Availability, uptime::Incident, uptime::ProbeResult, shared::platform::error::Problem, shared::platform::error::FieldError)),
    modifiers(&BearerAuth, &ERROR_RESPONSES)
)]
pub struct ApiDoc;

/// The errors every route can answer, from the route table (`shared::http::openapi`).
static ERROR_RESPONSES: shared::http::openapi::ErrorResponses = shared::http::openapi::ErrorResponses(ROUTES);

/// The audit chain reader over this function's table, the digest bucket
/// and the audit digest key.
pub fn audit_chain_reader(platform: &Platform, clients: &shared::platform::aws::Clients) -> shared::audit::chain::ChainReader {
    let config = &platform.config;
    shared::audit::chain::ChainReader::new(platform.store.store().clone(), clients.s3.clone(), clients.kms.clone(), &config.audit_bucket, &config.audit_key_id)
}
