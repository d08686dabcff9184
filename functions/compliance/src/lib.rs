//! The compliance function: `/api/v1/compliance/*` (docs/compliance.md).
//! Evidence from live state, read-only: the GDPR/CCPA status (`gdpr`), the
//! access review (`access_review`), the security recommendations
//! (`recommendations`), and the report over every control (`report`, JSON
//! or PDF, recorded in the audit log by its SHA-256: the only write).

pub mod access_review;
pub mod encryption;
pub mod gdpr;
pub mod recommendations;
pub mod report;
pub mod security_events;

use axum::Router;
use axum::http::Method;
use axum::routing::{get, post};
use shared::http::{Access, BearerAuth, Platform, Route};
use shared::identity::rbac::Permission;

#[derive(Clone)]
pub struct ComplianceState {
    pub platform: Platform,
    /// The stores' encryption settings (DescribeTable, GetBucketEncryption,
    /// GetQueueAttributes) and the data key's rotation status.
    pub clients: shared::platform::aws::Clients,
}

/// Every route of this function and who may call it: reading evidence
/// needs `compliance:read`; acknowledging a security event
/// `security:respond`.
pub static ROUTES: &[Route] = &[
    Route::new(Method::GET, "/api/v1/compliance/gdpr", Access::Permission(Permission::ComplianceRead)),
    Route::new(Method::GET, "/api/v1/compliance/access-review", Access::Permission(Permission::ComplianceRead)),
    Route::new(Method::GET, "/api/v1/compliance/access-reviews", Access::Permission(Permission::ComplianceRead)),
    Route::new(Method::GET, "/api/v1/compliance/security-recommendations", Access::Permission(Permission::ComplianceRead)),
    Route::new(Method::GET, "/api/v1/compliance/report", Access::Permission(Permission::ComplianceRead)),
    Route::new(Method::GET, "/api/v1/compliance/security-events", Access::Permission(Permission::ComplianceRead)),
    Route::new(Method::GET, "/api/v1/compliance/security-events/{id}", Access::Permission(Permission::ComplianceRead)),
    Route::new(Method::POST, "/api/v1/compliance/security-events/{id}/acknowledge", Access::Permission(Permission::SecurityRespond)),
];

pub fn router(state: ComplianceState) -> Router {
    let platform = state.platform.clone();
    let routes = Router::new()
        .route("/api/v1/compliance/gdpr", get(gdpr::gdpr))
        .route("/api/v1/compliance/access-review", get(access_review::get))
        .route("/api/v1/compliance/access-reviews", get(access_review::history))
        .route("/api/v1/compliance/security-recommendations", get(recommendations::get))
        .route("/api/v1/compliance/report", get(report::get))
        .route("/api/v1/compliance/security-events", get(security_events::routes::list))
        .route("/api/v1/compliance/security-events/{id}", get(security_events::routes::get))
        .route("/api/v1/compliance/security-events/{id}/acknowledge", post(security_events::routes::acknowledge))
        .with_state(state);
    shared::http::secure(routes, &platform, ROUTES)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        gdpr::gdpr,
        access_review::get,
        access_review::history,
        recommendations::get,
        report::get,
        security_events::routes::list,
        security_events::routes::get,
        security_events::routes::acknowledge
    ),
    components(schemas(
        gdpr::GdprStatus,
        gdpr::OpenRequest,
        gdpr::ClosedRequests,
        gdpr::InventoryEntry,
        gdpr::Consent,
        access_review::AccessReview,
        access_review::PrincipalReview,
        access_review::PermissionUse,
        access_review::RecordedReview,
        access_review::ReviewHistory,
        recommendations::Recommendations,
        recommendations::Recommendation,
        recommendations::Severity,
        report::Report,
        report::Control,
        report::ControlStatus,
        report::Framework,
        report::CompliancePdf,
        security_events::SecurityEvent,
        security_events::detectors::Kind,
        security_events::detectors::Severity,
        security_events::routes::EventList,
        security_events::routes::AcknowledgeRequest,
        shared::platform::error::Problem,
        shared::platform::error::FieldError
    )),
    modifiers(&BearerAuth, &ERROR_RESPONSES)
)]
pub struct ApiDoc;

/// The errors every route can answer, from the route table (`shared::http::openapi`).
static ERROR_RESPONSES: shared::http::openapi::ErrorResponses = shared::http::openapi::ErrorResponses(ROUTES);
