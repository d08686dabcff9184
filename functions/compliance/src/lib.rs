//! The compliance function: `/api/v1/compliance/*` (docs/compliance.md).
//! Evidence from live state, read-only: the GDPR/CCPA status (`gdpr`), the
//! access review (`access_review`) and the security recommendations
//! (`recommendations`).

pub mod access_review;
pub mod gdpr;
pub mod recommendations;

use axum::Router;
use axum::http::Method;
use axum::routing::get;
use shared::http::{Access, BearerAuth, Platform, Route};
use shared::identity::rbac::Permission;

#[derive(Clone)]
pub struct ComplianceState {
    pub platform: Platform,
    /// The data key's rotation status (a recommendation).
    pub kms: aws_sdk_kms::Client,
}

/// Every route of this function and who may call it: all read evidence,
/// `compliance:read`.
pub static ROUTES: &[Route] = &[
    Route::new(Method::GET, "/api/v1/compliance/gdpr", Access::Permission(Permission::ComplianceRead)),
    Route::new(Method::GET, "/api/v1/compliance/access-review", Access::Permission(Permission::ComplianceRead)),
    Route::new(Method::GET, "/api/v1/compliance/security-recommendations", Access::Permission(Permission::ComplianceRead)),
];

pub fn router(state: ComplianceState) -> Router {
    let platform = state.platform.clone();
    let routes = Router::new()
        .route("/api/v1/compliance/gdpr", get(gdpr::gdpr))
        .route("/api/v1/compliance/access-review", get(access_review::get))
        .route("/api/v1/compliance/security-recommendations", get(recommendations::get))
        .with_state(state);
    shared::http::secure(routes, &platform, ROUTES)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(gdpr::gdpr, access_review::get, recommendations::get),
    components(schemas(
        gdpr::GdprStatus,
        gdpr::OpenRequest,
        gdpr::ClosedRequests,
        gdpr::InventoryEntry,
        access_review::AccessReview,
        access_review::PrincipalReview,
        access_review::PermissionUse,
        recommendations::Recommendations,
        recommendations::Recommendation,
        recommendations::Severity,
        shared::platform::error::Problem,
        shared::platform::error::FieldError
    )),
    modifiers(&BearerAuth, &ERROR_RESPONSES)
)]
pub struct ApiDoc;

/// The errors every route can answer, from the route table (`shared::http::openapi`).
static ERROR_RESPONSES: shared::http::openapi::ErrorResponses = shared::http::openapi::ErrorResponses(ROUTES);
