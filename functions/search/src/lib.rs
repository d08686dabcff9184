//! The search function: `/api/v1/search*` (docs/search.md). A tantivy
//! index over users, charts, orders and audit entries, kept fresh from the
//! table's stream by the indexer (`indexer`, its own Lambda with reserved
//! concurrency 1) and published to the exports bucket (`index`); each
//! search instance holds the newest published version memory-mapped.
//! Typo-tolerant ranked search and highlights (`query`, `highlight`),
//! filters, facets and sorts (`search`), suggestions, saved searches and
//! search analytics (`suggestions`, `saved`, `stats`); saved searches'
//! emailed alerts of new matches (`alerts`).

pub mod alerts;
pub mod documents;
pub mod highlight;
pub mod index;
pub mod indexer;
pub mod query;
pub mod saved;
pub mod schema;
pub mod search;
pub mod stats;
pub mod suggestions;

use std::sync::Arc;

use axum::Router;
use axum::http::Method;
use axum::routing::{delete, get, post};
use shared::http::{Access, BearerAuth, Platform, Route};
use shared::identity::rbac::Permission;

#[derive(Clone)]
pub struct SearchState {
    pub platform: Platform,
    /// The published index, as this instance holds it.
    pub searchers: Arc<index::Searchers>,
}

/// Every route of this function and who may call it. Searching is open to
/// every signed-in principal: what each finds is limited by type to what
/// they may read (`search::scope_of`), never wider than the admin API.
pub static ROUTES: &[Route] = &[
    Route::new(Method::POST, "/api/v1/search", Access::Authenticated),
    Route::new(Method::POST, "/api/v1/search/advanced", Access::Authenticated),
    Route::new(Method::GET, "/api/v1/search/suggestions", Access::Authenticated),
    // Saved searches: the caller's own.
    Route::new(Method::POST, "/api/v1/search/save", Access::Authenticated),
    Route::new(Method::GET, "/api/v1/search/saved", Access::Authenticated),
    Route::new(Method::DELETE, "/api/v1/search/saved/{id}", Access::Authenticated),
    // A click on one's own search's hit.
    Route::new(Method::POST, "/api/v1/search/click", Access::Authenticated),
    // What the team searches for (their queries' text included).
    Route::new(Method::GET, "/api/v1/search/analytics", Access::Permission(Permission::SearchRead)),
];

pub fn router(state: SearchState) -> Router {
    let platform = state.platform.clone();
    let routes = Router::new()
        .route("/api/v1/search", post(search::search))
        .route("/api/v1/search/advanced", post(search::advanced))
        .route("/api/v1/search/suggestions", get(suggestions::suggestions))
        .route("/api/v1/search/save", post(saved::save))
        .route("/api/v1/search/saved", get(saved::list))
        .route("/api/v1/search/saved/{id}", delete(saved::delete))
        .route("/api/v1/search/click", post(stats::click))
        .route("/api/v1/search/analytics", get(stats::analytics))
        .with_state(state);
    shared::http::secure(routes, &platform, ROUTES)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        search::search,
        search::advanced,
        suggestions::suggestions,
        saved::save,
        saved::list,
        saved::delete,
        stats::click,
        stats::analytics,
    ),
    components(schemas(shared::platform::error::Problem, shared::platform::error::FieldError)),
    modifiers(&BearerAuth, &ERROR_RESPONSES)
)]
pub struct ApiDoc;

/// The errors every route can answer, from the route table (`shared::http::openapi`).
static ERROR_RESPONSES: shared::http::openapi::ErrorResponses = shared::http::openapi::ErrorResponses(ROUTES);
