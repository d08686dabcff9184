//! `GET /api/v1/auth/jwks`: the public signing key, for anyone verifying
//! Keel's tokens; and `GET /api/v1/openapi.json`, the API description.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::AuthState;

/// The OpenAPI document of every function, generated from the code by
/// `make openapi` (a test fails when it is stale or misses a route).
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

#[utoipa::path(get, path = "/api/v1/auth/jwks", tag = "auth",
    responses((status = 200, description = "JSON Web Key Set with the ES256 signing key", body = Object)))]
pub async fn jwks(State(state): State<AuthState>) -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(state.platform.verifier.jwks()))
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This API's OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}
