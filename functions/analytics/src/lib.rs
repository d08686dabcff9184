//! The analytics function: `/api/v1/analytics/*` — subscription revenue
//! metrics (MRR and its movements, churn, NRR/GRR, quick ratio, ARPA, LTV,
//! gross and net revenue) by month, country and plan, read from the
//! revenue rollups (`shared::domain::revenue`), and their recomputation on
//! demand as a job; business metrics (signups, activation, funnel, active
//! users) and segments (cohort retention, RFM) from the same refresh;
//! rule-based custom segments evaluated against the refresh's per-user
//! profiles (docs/analytics.md).

pub mod business;
pub mod custom_segments;
pub mod insights;
pub mod periods;
pub mod predictions;
pub mod refresh;
pub mod revenue;
pub mod segments;

use axum::Router;
use axum::http::Method;
use axum::routing::{get, post};
use shared::http::{Access, BearerAuth, Platform, Route};
use shared::identity::rbac::Permission;

#[derive(Clone, Debug)]
pub struct AnalyticsState {
    pub platform: Platform,
}

/// Every route of this function and the permission it needs.
pub static ROUTES: &[Route] = &[
    Route::new(Method::GET, "/api/v1/analytics/revenue", Access::Permission(Permission::AnalyticsRead)),
    Route::new(Method::GET, "/api/v1/analytics/business", Access::Permission(Permission::AnalyticsRead)),
    Route::new(Method::GET, "/api/v1/analytics/segments", Access::Permission(Permission::AnalyticsRead)),
    Route::new(Method::POST, "/api/v1/analytics/refresh", Access::Permission(Permission::AnalyticsRefresh)),
    Route::new(Method::GET, "/api/v1/analytics/predictions", Access::Permission(Permission::AnalyticsRead)),
    Route::new(Method::GET, "/api/v1/analytics/insights", Access::Permission(Permission::AnalyticsRead)),
    Route::new(Method::GET, "/api/v1/analytics/insights/{insight_id}", Access::Permission(Permission::AnalyticsRead)),
    Route::new(Method::PATCH, "/api/v1/analytics/insights/{insight_id}", Access::Permission(Permission::AnalyticsInsightsWrite)),
    // Custom segments (custom_segments.rs).
    Route::new(Method::POST, "/api/v1/analytics/segments/custom/preview", Access::Permission(Permission::AnalyticsRead)),
    Route::new(Method::GET, "/api/v1/analytics/segments/custom", Access::Permission(Permission::AnalyticsRead)),
    Route::new(Method::POST, "/api/v1/analytics/segments/custom", Access::Permission(Permission::AnalyticsSegmentsWrite)),
    Route::new(Method::GET, "/api/v1/analytics/segments/custom/{segment_id}", Access::Permission(Permission::AnalyticsRead)),
    Route::new(Method::PUT, "/api/v1/analytics/segments/custom/{segment_id}", Access::Permission(Permission::AnalyticsSegmentsWrite)),
    Route::new(Method::DELETE, "/api/v1/analytics/segments/custom/{segment_id}", Access::Permission(Permission::AnalyticsSegmentsWrite)),
];

pub fn router(state: AnalyticsState) -> Router {
    let platform = state.platform.clone();
    let routes = Router::new()
        .route("/api/v1/analytics/revenue", get(revenue::read))
        .route("/api/v1/analytics/business", get(business::read))
        .route("/api/v1/analytics/segments", get(segments::read))
        .route("/api/v1/analytics/refresh", post(refresh::create))
        .route("/api/v1/analytics/predictions", get(predictions::read))
        .route("/api/v1/analytics/insights", get(insights::list))
        .route("/api/v1/analytics/insights/{insight_id}", get(insights::read).patch(insights::update))
        // Custom segments (custom_segments.rs).
        .route("/api/v1/analytics/segments/custom/preview", post(custom_segments::preview))
        .route("/api/v1/analytics/segments/custom", get(custom_segments::list).post(custom_segments::create))
        .route("/api/v1/analytics/segments/custom/{segment_id}", get(custom_segments::read).put(custom_segments::replace).delete(custom_segments::delete))
        .with_state(state);
    shared::http::secure(routes, &platform, ROUTES)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        revenue::read,
        business::read,
        segments::read,
        refresh::create,
        // Custom segments (custom_segments.rs).
        custom_segments::preview,
        custom_segments::list,
        custom_segments::create,
        custom_segments::read,
        custom_segments::replace,
        custom_segments::delete,
        predictions::read,
        insights::list,
        insights::read,
        insights::update,
    ),
    components(schemas(shared::platform::error::Problem, shared::platform::error::FieldError)),
    modifiers(&BearerAuth, &ERROR_RESPONSES)
)]
pub struct ApiDoc;

/// The errors every route can answer, from the route table (`shared::http::openapi`).
static ERROR_RESPONSES: shared::http::openapi::ErrorResponses = shared::http::openapi::ErrorResponses(ROUTES);
