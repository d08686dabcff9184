//! HTTP plumbing shared by every API function: the route table that declares
//! each route's access in one place, authentication (JWT → `Principal`),
//! authorization (deny by default, and tokens limited to 2FA enrolment kept
//! to the enrolment routes), the caller's audit identity, and the middleware
//! stack (`secure`).


pub mod extract;
pub mod idempotency;
pub mod openapi;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, MatchedPath, OptionalFromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::audit::{Actor, Journal};
use crate::platform::config::Config;
use crate::platform::crypto::Envelope;
use crate::store::cursor::CursorCodec;
use crate::platform::error::{Error, Result};
use crate::identity::rbac::{Permission, PermissionSet};
use crate::identity::roles::RoleCatalog;
use crate::store::Store;
use crate::identity::token::{TokenScope, TokenVerifier};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed (login, JWKS, the OpenAPI document).
    Public,
    /// Any signed-in principal; the handler limits it to the caller's own data.
    Authenticated,
    /// No token needed, but one that is sent must be valid, and its
    /// principal reaches the handler (`Option<Principal>`): a route that
    /// serves both a sign-in step and signed-in callers (`/auth/2fa/verify`).
    OptionallyAuthenticated,
    /// A principal holding this permission.
    Permission(Permission),
    /// Any signed-in principal for themself (the user the path names);
    /// anyone else needs this permission. The handler checks it (it knows
    /// the path), e.g. `DELETE /data/user/{user_id}`.
    SelfOrPermission(Permission),
}

/// One row of a function's route table. The table is the single place a
/// route's access is declared; a route not in it is refused.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    /// The axum path, e.g. `/api/v1/admin/users/{user_id}`.
    pub path: &'static str,
    pub access: Access,
    /// Whether tokens limited to 2FA enrolment (`TokenScope::MfaEnrollment`)
    /// may call it; every other route refuses them.
    pub enrolment: bool,
}

impl Route {
    pub const fn new(method: Method, path: &'static str, access: Access) -> Route {
        Route { method, path, access, enrolment: false }
    }

    /// Also open to tokens limited to 2FA enrolment.
    pub const fn for_enrolment(mut self) -> Route {
        self.enrolment = true;
        self
    }
}

/// What every API function has: configuration, the table, the token
/// verifier, the role catalog, envelope encryption, the system settings
/// and the (lazily loaded) cursor key.
#[derive(Clone, Debug)]
pub struct Platform {
    pub config: Arc<Config>,
    /// The table, through the journal that commits changes with their audit entries.
    pub store: Journal,
    pub verifier: Arc<TokenVerifier>,
    /// Custom roles, cached per instance (see `roles`).
    pub roles: RoleCatalog,
    pub envelope: Envelope,
    /// The system settings, cached for `config.settings_ttl`.
    pub settings: crate::domain::system_settings::SettingsCache,
    cursors: Arc<tokio::sync::OnceCell<CursorCodec>>,
}

impl Platform {
    pub fn new(config: Arc<Config>, dynamo: aws_sdk_dynamodb::Client, kms: aws_sdk_kms::Client, verifier: TokenVerifier) -> Platform {
        let envelope = Envelope::new(kms, config.data_key_id.clone());
        let store = Journal::with_subject_keys(Store::new(dynamo, config.table.clone()), envelope.clone());
        Platform {
            roles: RoleCatalog::new(store.store().clone(), config.role_cache_ttl),
            settings: crate::domain::system_settings::SettingsCache::new(store.store().clone(), config.settings_ttl),
            store,
            envelope,
            verifier: Arc::new(verifier),
            config,
            cursors: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// Build everything from the environment: clients, config, public key.
    pub async fn from_env() -> anyhow::Result<(Platform, crate::platform::aws::Clients)> {
        Self::from_sdk_config(&crate::platform::aws::sdk_config()).await
    }

    /// Everything from the environment, with SDK clients from `sdk`.
    pub async fn from_sdk_config(sdk: &aws_config::SdkConfig) -> anyhow::Result<(Platform, crate::platform::aws::Clients)> {
        let clients = crate::platform::aws::Clients::from_sdk_config(sdk);
        let platform = Platform::with_clients(clients.dynamo.clone(), clients.kms.clone()).await?;
        Ok((platform, clients))
    }

    /// Config and public key from the environment, with just the clients
    /// the platform itself calls: for a function that needs no other AWS
    /// client (auth), so its cold start builds no S3 or SQS client.
    pub async fn with_clients(dynamo: aws_sdk_dynamodb::Client, kms: aws_sdk_kms::Client) -> anyhow::Result<Platform> {
        let config = Arc::new(Config::from_env()?);
        let verifier = TokenVerifier::for_config(&kms, &config).await?;
        Ok(Platform::new(config, dynamo, kms, verifier))
    }

    /// The cursor codec, loaded on first use (not every request paginates,
    /// so cold starts do not pay for it).
    pub async fn cursors(&self) -> Result<&CursorCodec> {
        self.cursors.get_or_try_init(|| crate::store::cursor::load_key(&self.store, &self.envelope)).await
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: String,
    pub roles: Vec<String>,
    pub permissions: PermissionSet,
    pub session_id: String,
    /// How the session was authenticated (`token::amr` values).
    pub amr: Vec<String>,
    /// A limit on the token (see `authorize`); `None` is full access.
    pub scope: Option<TokenScope>,
}

impl Principal {
    pub fn can(&self, permission: Permission) -> bool {
        self.permissions.contains(permission)
    }

    /// Whether the session was signed in with a second factor.
    pub fn used_second_factor(&self) -> bool {
        self.amr.iter().any(|m| m == crate::identity::token::amr::MFA)
    }

    pub fn require(&self, permission: Permission) -> Result<()> {
        if self.can(permission) { Ok(()) } else { Err(Error::Forbidden { missing: permission.to_string() }) }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| Error::Unauthorized("authentication required".into()))
    }
}

/// For `Access::OptionallyAuthenticated` routes: the principal if a token was sent.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

/// Where a request came from, for audit entries.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl RequestMeta {
    pub fn actor(&self, id: &str) -> Actor {
        Actor {
            id: id.to_string(),
            // Not a person Keel knows: no subject key is made for it.
            kind: if id == "anonymous" { "anonymous".into() } else { "user".into() },
            source_ip: self.source_ip.clone(),
            user_agent: self.user_agent.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> std::result::Result<Self, Self::Rejection> {
        // API Gateway appends the address it saw to X-Forwarded-For; what
        // comes before it is whatever the client sent, so take the last.
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        let connected = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect());
        Ok(RequestMeta { source_ip: forwarded.or(connected), user_agent, request_id: crate::platform::telemetry::current_request_id() })
    }
}

/// A signed-in caller with request metadata: what handlers that change
/// things take, so their audit entries name who and from where.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub meta: RequestMeta,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        self.meta.actor(&self.principal.user_id)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let principal = <Principal as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        let Ok(meta) = RequestMeta::from_request_parts(parts, state).await;
        Ok(Caller { principal, meta })
    }
}

#[derive(Clone)]
struct Gate {
    routes: &'static [Route],
    verifier: Arc<TokenVerifier>,
    roles: RoleCatalog,
}

tokio::task_local! {
    static BODY_LIMIT: usize;
}

/// The body limit in force for the current request (for 413 messages).
pub fn current_body_limit() -> usize {
    BODY_LIMIT.try_with(|l| *l).unwrap_or(0)
}

/// Verify a bearer token and build the principal it names. The token
/// carries role names; their permissions are resolved now from the role
/// catalog, so a changed custom role applies to tokens already issued.
pub async fn authenticate(verifier: &TokenVerifier, roles: &RoleCatalog, authorization: Option<&str>) -> Result<Principal> {
    let token = authorization
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .ok_or_else(|| Error::Unauthorized("a bearer access token is required".into()))?;
    let claims = verifier.verify(token.trim())?;
    Ok(Principal {
        permissions: roles.permissions_of_token(&claims.roles, claims.iat).await?,
        user_id: claims.sub,
        roles: claims.roles,
        session_id: claims.sid,
        amr: claims.amr,
        scope: claims.scope,
    })
}

async fn authorize(State(gate): State<Gate>, matched: Option<MatchedPath>, mut request: Request, next: Next) -> Response {
    let path = matched.as_ref().map(MatchedPath::as_str).unwrap_or("");
    let method = request.method().clone();
    let Some(route) = gate.routes.iter().find(|r| r.path == path && r.method == method) else {
        // Deny by default: a route without a declared access rule is closed.
        tracing::error!(%method, path, "route has no access rule");
        return Error::Forbidden { missing: "declared-route".into() }.into_response();
    };
    let header = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let needs_token = match route.access {
        Access::Public => false,
        Access::OptionallyAuthenticated => header.is_some(),
        Access::Authenticated | Access::Permission(_) | Access::SelfOrPermission(_) => true,
    };
    if needs_token {
        let principal = match authenticate(&gate.verifier, &gate.roles, header).await {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        tracing::Span::current().record("principal", principal.user_id.as_str());
        // A token limited to enrolment opens nothing else, whatever its roles.
        if principal.scope == Some(TokenScope::MfaEnrollment) && !route.enrolment {
            return Error::MfaEnrollmentRequired.into_response();
        }
        if let Access::Permission(p) = route.access {
            if let Err(e) = principal.require(p) {
                return e.into_response();
            }
        }
        request.extensions_mut().insert(principal);
    }
    next.run(request).await
}

/// Wrap a function's router with Keel's middleware: request id and logs,
/// body limit, authentication and authorization from the route table, and
/// `Idempotency-Key` handling for POSTs.
pub fn secure(router: Router, platform: &Platform, routes: &'static [Route]) -> Router {
    let gate = Gate { routes, verifier: platform.verifier.clone(), roles: platform.roles.clone() };
    let limit = platform.config.max_body_bytes;
    router
        .route_layer(middleware::from_fn_with_state(platform.store.clone(), crate::http::idempotency::middleware))
        .route_layer(middleware::from_fn_with_state(gate, authorize))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(move |req: Request, next: Next| BODY_LIMIT.scope(limit, next.run(req))))
        .layer(middleware::from_fn(problem_errors))
        .layer(middleware::from_fn(crate::platform::telemetry::request_context))
}

/// Every error as `application/problem+json`, including those axum answers
/// itself in text/plain (a path or query string its extractors could not
/// parse, a body over the limit): what the OpenAPI document promises for
/// every error.
async fn problem_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().eq_ignore_ascii_case(crate::http::openapi::PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let mut problem = crate::platform::error::problem_response(status, &text);
    // Keep what else the answer said (Allow on a 405, Retry-After, ...).
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in parts.headers.drain().filter_map(|(n, v)| n.map(|n| (n, v))) {
        problem.headers_mut().entry(name).or_insert(value);
    }
    problem
}

/// Answer for paths no function serves.
pub async fn not_found() -> Error {
    Error::NotFound("no such route".into())
}

/// Registers the `bearer` (JWT) security scheme that routes name in
/// `security(("bearer" = []))`; each function's OpenAPI document uses it as
/// a modifier.
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()));
    }
}
