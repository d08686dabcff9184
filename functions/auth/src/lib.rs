//! The auth function: `/api/v1/auth/*` — login, token refresh with rotation,
//! logout, TOTP two-factor authentication, invitation acceptance, OAuth/OIDC
//! sign-in and linked identities, and the public key set (JWKS). It is the
//! only function allowed to sign with the KMS signing key. It also serves the
//! OpenAPI document of the whole API.

pub mod identities;
pub mod invitations;
pub mod jwks;
pub mod login;
pub mod oauth;
pub mod providers;
pub mod qr;
pub mod sessions;
pub mod signer;
pub mod two_factor;

use axum::Router;
use axum::http::Method;
use axum::routing::{delete, get, post};
use shared::http::{Access, Platform, Route};

pub use providers::Providers;
pub use signer::Signer;

#[derive(Clone, Debug)]
pub struct AuthState {
    pub platform: Platform,
    pub signer: Signer,
    /// OAuth/OIDC providers (configuration, discovery, keys), cached.
    pub providers: Providers,
}

/// Every route of this function and who may call it.
pub static ROUTES: &[Route] = &[
    Route::new(Method::POST, "/api/v1/auth/login", Access::Public),
    Route::new(Method::POST, "/api/v1/auth/refresh", Access::Public),
    Route::new(Method::POST, "/api/v1/auth/logout", Access::Public),
    Route::new(Method::POST, "/api/v1/auth/invitations/accept", Access::Public),
    // The two routes a token limited to 2FA enrolment may call.
    Route::new(Method::POST, "/api/v1/auth/2fa/enable", Access::Authenticated).for_enrolment(),
    Route::new(Method::POST, "/api/v1/auth/2fa/verify", Access::OptionallyAuthenticated).for_enrolment(),
    Route::new(Method::POST, "/api/v1/auth/2fa/disable", Access::Authenticated),
    Route::new(Method::POST, "/api/v1/auth/2fa/recovery-codes", Access::Authenticated),
    Route::new(Method::POST, "/api/v1/auth/oauth/{provider}", Access::Public),
    Route::new(Method::GET, "/api/v1/auth/oauth/{provider}/callback", Access::Public),
    Route::new(Method::POST, "/api/v1/auth/oauth/{provider}/callback", Access::Public),
    // Public: the owner proves it with the password, or with a bearer token
    // the handler verifies itself.
    Route::new(Method::POST, "/api/v1/auth/oauth/link/confirm", Access::Public),
    Route::new(Method::GET, "/api/v1/auth/identities", Access::Authenticated),
    Route::new(Method::DELETE, "/api/v1/auth/identities/{provider}", Access::Authenticated),
    Route::new(Method::GET, "/api/v1/auth/jwks", Access::Public),
    Route::new(Method::GET, "/api/v1/openapi.json", Access::Public),
];

pub fn router(state: AuthState) -> Router {
    let platform = state.platform.clone();
    let routes = Router::new()
        .route("/api/v1/auth/login", post(login::login))
        .route("/api/v1/auth/refresh", post(sessions::refresh))
        .route("/api/v1/auth/logout", post(sessions::logout))
        .route("/api/v1/auth/invitations/accept", post(invitations::accept))
        .route("/api/v1/auth/2fa/enable", post(two_factor::enable))
        .route("/api/v1/auth/2fa/verify", post(two_factor::verify))
        .route("/api/v1/auth/2fa/disable", post(two_factor::disable))
        .route("/api/v1/auth/2fa/recovery-codes", post(two_factor::regenerate_recovery_codes))
        .route("/api/v1/auth/oauth/{provider}", post(oauth::start))
        .route("/api/v1/auth/oauth/{provider}/callback", get(oauth::callback).post(oauth::callback_form))
        .route("/api/v1/auth/oauth/link/confirm", post(oauth::confirm_link))
        .route("/api/v1/auth/identities", get(identities::list))
        .route("/api/v1/auth/identities/{provider}", delete(identities::unlink))
        .route("/api/v1/auth/jwks", get(jwks::jwks))
        .route("/api/v1/openapi.json", get(jwks::openapi_document))
        .with_state(state);
    shared::http::secure(routes, &platform, ROUTES)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        login::login, sessions::refresh, sessions::logout, invitations::accept, jwks::jwks, jwks::openapi_document,
        two_factor::enable, two_factor::verify, two_factor::disable, two_factor::regenerate_recovery_codes,
        oauth::start, oauth::callback, oauth::callback_form, oauth::confirm_link, identities::list, identities::unlink,
    ),
    components(schemas(shared::platform::error::Problem, shared::platform::error::FieldError)),
    modifiers(&ERROR_RESPONSES)
)]
pub struct ApiDoc;

/// The errors every route can answer, from the route table (`shared::http::openapi`).
static ERROR_RESPONSES: shared::http::openapi::ErrorResponses = shared::http::openapi::ErrorResponses(ROUTES);
