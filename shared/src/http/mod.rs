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
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, MatchedPath, OptionalFromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::audit::{Actor, Journal};
use crate::identity::rbac::{Permission, PermissionSet};
use crate::identity::roles::RoleCatalog;
use crate::identity::token::{TokenScope, TokenVerifier};
use crate::platform::config::Config;
use crate::platform::crypto::Envelope;
use crate::platform::error::{Error, Result};
use crate::store::Store;
use crate::store::cursor::CursorCodec;

/// What a signed-in caller must hold for one request, once the route's
/// rule has been applied to it (see `Access::need`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// No token needed (public routes; a sent token is still verified on
    /// `OptionallyAuthenticated` ones).
    Nothing,
    /// Any signed-in principal.
    SignedIn,
    /// Every one of these permissions (a denial names the first one missing).
    All(&'static [Permission]),
    /// At least one of these (a denial names them all, `a or b`).
    Any(&'static [Permission]),
}

impl Need {
    /// The `missing_permission` a principal holding `held` is refused with,
    /// or `None` when it may go on.
    pub fn missing(self, held: PermissionSet) -> Option<String> {
        match self {
            Need::Nothing | Need::SignedIn => None,
            Need::All(all) => all.iter().find(|p| !held.contains(**p)).map(|p| p.to_string()),
            Need::Any(any) if any.iter().any(|p| held.contains(*p)) => None,
            Need::Any(any) => Some(any.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(" or ")),
        }
    }

    /// Every permission this need names.
    pub fn permissions(self) -> &'static [Permission] {
        match self {
            Need::Nothing | Need::SignedIn => &[],
            Need::All(p) | Need::Any(p) => p,
        }
    }
}

/// Where `Access::SelfOrPermission` finds the user a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A path parameter, e.g. `user_id` in `/data/user/{user_id}`.
    Path(&'static str),
    /// A string field of the JSON body; absent or `null` means the caller.
    Body(&'static str),
}

/// Who may call a route: declarative data the `authorize` middleware
/// applies before the handler runs. Handlers never check permissions
/// themselves; they may only shape what they return (e.g. masking PII).
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
    /// A principal holding every one of these permissions.
    AllOf(&'static [Permission]),
    /// A principal holding at least one of these permissions.
    AnyOf(&'static [Permission]),
    /// Any signed-in principal for themself (the user `subject` names);
    /// anyone else needs `permission`, e.g. `DELETE /data/user/{user_id}`.
    SelfOrPermission { subject: Subject, permission: Permission },
    /// A need chosen by a string field of the JSON body: `absent` when the
    /// field is missing or `null`, the need of the first matching case, or
    /// `otherwise` for any other value (unknown values get the strict
    /// answer; the handler then refuses them). E.g. `POST /data/export`
    /// by its `dataset`.
    ByBodyField { field: &'static str, absent: Need, cases: &'static [(&'static str, Need)], otherwise: Need },
    /// A need chosen by string values anywhere in the JSON body: the need
    /// of the first case whose dotted path (`spec.dataset`) holds its
    /// value, else `otherwise`. E.g. `POST /reports/generate`: a report
    /// reading the audit log (by its spec's dataset or its template) also
    /// needs `audit:read`.
    ByBodyValues { cases: &'static [(&'static str, &'static str, Need)], otherwise: Need },
}

/// What the gate knows of a request when it applies a rule.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The caller's user id.
    pub caller: &'a str,
    /// The matched path parameters, by name.
    pub path: &'a [(&'a str, &'a str)],
    /// The body as JSON; `None` when it is not JSON (only read for rules
    /// that look at it: `reads_body`).
    pub body: Option<&'a serde_json::Value>,
}

impl Access {
    /// Whether the rule needs a token (for `OptionallyAuthenticated`: only
    /// one that is sent is verified).
    pub fn needs_token(self) -> bool {
        !matches!(self, Access::Public | Access::OptionallyAuthenticated)
    }

    /// Whether the rule looks at the request body.
    pub fn reads_body(self) -> bool {
        matches!(self, Access::ByBodyField { .. } | Access::ByBodyValues { .. } | Access::SelfOrPermission { subject: Subject::Body(_), .. })
    }

    /// What this request needs, or `None` when the rule depends on a body
    /// that is not a JSON object: the gate then lets the handler refuse it
    /// (400/422 from `ValidJson`) rather than answer 403 for a malformed body.
    pub fn need(self, facts: &Facts<'_>) -> Option<Need> {
        let object = || facts.body.and_then(serde_json::Value::as_object);
        Some(match self {
            Access::Public | Access::OptionallyAuthenticated => Need::Nothing,
            Access::Authenticated => Need::SignedIn,
            // `ALL` lists the permissions in declaration order, so its index is the discriminant.
            Access::Permission(p) => Need::All(std::slice::from_ref(&Permission::ALL[p as usize])),
            Access::AllOf(all) => Need::All(all),
            Access::AnyOf(any) => Need::Any(any),
            Access::SelfOrPermission { subject, permission } => {
                let named = match subject {
                    Subject::Path(name) => facts.path.iter().find(|(k, _)| *k == name).map(|(_, v)| Some(serde_json::Value::String(v.to_string()))),
                    Subject::Body(field) => Some(object()?.get(field).cloned()),
                };
                let own = match named {
                    // A path that lacks the declared parameter: no "self" to match.
                    None => false,
                    Some(None | Some(serde_json::Value::Null)) => matches!(subject, Subject::Body(_)),
                    Some(Some(serde_json::Value::String(id))) => id == facts.caller,
                    Some(Some(_)) => false,
                };
                if own { Need::SignedIn } else { Access::Permission(permission).need(facts)? }
            }
            Access::ByBodyField { field, absent, cases, otherwise } => match object()?.get(field) {
                None | Some(serde_json::Value::Null) => absent,
                Some(serde_json::Value::String(value)) => cases.iter().find(|(case, _)| case == value).map_or(otherwise, |(_, need)| *need),
                Some(_) => otherwise,
            },
            Access::ByBodyValues { cases, otherwise } => {
                let body = object()?;
                let at = |path: &str| {
                    let mut parts = path.split('.');
                    let first = body.get(parts.next()?)?;
                    parts.try_fold(first, |v, key| v.get(key))
                };
                cases.iter().find(|(path, value, _)| at(path).and_then(serde_json::Value::as_str) == Some(*value)).map_or(otherwise, |c| c.2)
            }
        })
    }

    /// Every permission the rule can ask for (for tests that walk roles).
    pub fn permissions(self) -> Vec<Permission> {
        let mut all: Vec<Permission> = match self {
            Access::Public | Access::OptionallyAuthenticated | Access::Authenticated => Vec::new(),
            Access::Permission(p) | Access::SelfOrPermission { permission: p, .. } => vec![p],
            Access::AllOf(p) | Access::AnyOf(p) => p.to_vec(),
            Access::ByBodyField { absent, cases, otherwise, .. } => {
                [absent, otherwise].iter().chain(cases.iter().map(|(_, n)| n)).flat_map(|n| n.permissions().iter().copied()).collect()
            }
            Access::ByBodyValues { cases, otherwise } => {
                std::iter::once(&otherwise).chain(cases.iter().map(|(_, _, n)| n)).flat_map(|n| n.permissions().iter().copied()).collect()
            }
        };
        all.sort();
        all.dedup();
        all
    }
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
    /// Whether the principal holds `permission`: for handlers that shape
    /// what they return (masking, scoping). Access itself is the route's
    /// rule (`Access`), never checked in a handler.
    pub fn can(&self, permission: Permission) -> bool {
        self.permissions.contains(permission)
    }

    /// Whether the session was signed in with a second factor.
    pub fn used_second_factor(&self) -> bool {
        self.amr.iter().any(|m| m == crate::identity::token::amr::MFA)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| Error::Unauthorized("authentication required".into()))
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
    pub location: Option<crate::audit::Location>,
}

/// The viewer's location from CloudFront's geolocation headers (present
/// when the API is served through a distribution that forwards them):
/// each value checked, anything malformed left out.
pub fn viewer_location(headers: &axum::http::HeaderMap) -> Option<crate::audit::Location> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let country = text("cloudfront-viewer-country").filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic())).map(str::to_ascii_uppercase);
    let degrees = |name: &str, limit: f64| text(name).and_then(|v| v.parse::<f64>().ok()).filter(|d| d.is_finite() && d.abs() <= limit);
    let (latitude, longitude) = match (degrees("cloudfront-viewer-latitude", 90.0), degrees("cloudfront-viewer-longitude", 180.0)) {
        (Some(lat), Some(lon)) => (Some(lat), Some(lon)),
        _ => (None, None),
    };
    (country.is_some() || latitude.is_some()).then_some(crate::audit::Location { country, latitude, longitude })
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
            location: self.location.clone(),
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
        let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|v| v.chars().take(256).collect());
        Ok(RequestMeta {
            source_ip: forwarded.or(connected),
            user_agent,
            request_id: crate::platform::telemetry::current_request_id(),
            location: viewer_location(&parts.headers),
        })
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
    /// Records refusals of signed-in callers (`access.denied`).
    journal: Journal,
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

async fn authorize(
    State(gate): State<Gate>,
    matched: Option<MatchedPath>,
    params: std::result::Result<RawPathParams, RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Response {
    match check(&gate, matched, params, request).await {
        Ok(request) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Apply the matched route's rule: the request (its body put back when the
/// rule read it) to pass on, or the refusal.
async fn check(
    gate: &Gate,
    matched: Option<MatchedPath>,
    params: std::result::Result<RawPathParams, RawPathParamsRejection>,
    mut request: Request,
) -> Result<Request> {
    let path = matched.as_ref().map(MatchedPath::as_str).unwrap_or("");
    let method = request.method().clone();
    // HEAD is GET without the body (axum answers it with the GET handler).
    let declared = |r: &&Route| r.method == method || (method == Method::HEAD && r.method == Method::GET);
    let Some(route) = gate.routes.iter().filter(|r| r.path == path).find(declared) else {
        // A known path asked with a method none of its routes declares: 405
        // with the declared methods (the handler never runs either way).
        let mut allowed: Vec<String> = gate.routes.iter().filter(|r| r.path == path).map(|r| r.method.to_string()).collect();
        allowed.sort();
        allowed.dedup();
        if !allowed.is_empty() {
            return Err(Error::MethodNotAllowed { method: method.to_string(), allowed });
        }
        // Deny by default: a route without a declared access rule is closed.
        tracing::error!(%method, path, "route has no access rule");
        return Err(Error::Forbidden { missing: "declared-route".into() });
    };
    let header = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let needs_token = route.access.needs_token() || (route.access == Access::OptionallyAuthenticated && header.is_some());
    if !needs_token {
        return Ok(request);
    }
    let principal = authenticate(&gate.verifier, &gate.roles, header).await?;
    tracing::Span::current().record("principal", principal.user_id.as_str());
    // A token limited to enrolment opens nothing else, whatever its roles.
    if principal.scope == Some(TokenScope::MfaEnrollment) && !route.enrolment {
        return Err(Error::MfaEnrollmentRequired);
    }
    // A rule that looks at the body reads it (within the body limit) and
    // puts it back for the handler.
    let body = if route.access.reads_body() {
        let (parts, body) = request.into_parts();
        let limit = current_body_limit().max(1);
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| Error::PayloadTooLarge { limit })?;
        request = Request::from_parts(parts, axum::body::Body::from(bytes.clone()));
        serde_json::from_slice::<serde_json::Value>(&bytes).ok()
    } else {
        None
    };
    let params = params.ok();
    let path_params: Vec<(&str, &str)> = params.iter().flat_map(|p| p.iter()).collect();
    let facts = Facts { caller: &principal.user_id, path: &path_params, body: body.as_ref() };
    // `None`: a body the rule cannot read; the handler refuses it (400).
    if let Some(missing) = route.access.need(&facts).and_then(|need| need.missing(principal.permissions)) {
        record_denial(gate, &principal, &method, path, &missing, request).await;
        return Err(Error::Forbidden { missing });
    }
    request.extensions_mut().insert(principal);
    Ok(request)
}

/// A signed-in caller refused by a route's rule is recorded
/// (`access.denied` on the route, outcome `denied`, the missing
/// permissions as the reason): evidence for access reviews, and what the
/// probing detector counts. A failure to record is logged and the caller
/// still gets the 403 (never a 500 for a refusal).
async fn record_denial(gate: &Gate, principal: &Principal, method: &Method, path: &str, missing: &str, request: Request) {
    let (mut parts, _) = request.into_parts();
    let Ok(meta) = RequestMeta::from_request_parts(&mut parts, &()).await;
    let audit = crate::audit::AuditEntry::new(&meta.actor(&principal.user_id), "access.denied", "route", &format!("{method} {path}"))
        .outcome(crate::audit::Outcome::Denied)
        .reason(format!("missing permission: {missing}"));
    if let Err(e) = gate.journal.record(&audit).await {
        tracing::warn!(error = %e, "could not record an access denial");
    }
}

/// Wrap a function's router with Keel's middleware: request id and logs,
/// body limit, authentication and authorization from the route table, and
/// `Idempotency-Key` handling for POSTs.
pub fn secure(router: Router, platform: &Platform, routes: &'static [Route]) -> Router {
    let gate = Gate { routes, verifier: platform.verifier.clone(), roles: platform.roles.clone(), journal: platform.store.clone() };
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
    let is_problem =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|ct| ct.as_bytes().eq_ignore_ascii_case(crate::http::openapi::PROBLEM_JSON.as_bytes()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;
    use serde_json::json;

    fn facts<'a>(path: &'a [(&'a str, &'a str)], body: Option<&'a serde_json::Value>) -> Facts<'a> {
        Facts { caller: "me", path, body }
    }

    const EXPORT: Access = Access::ByBodyField {
        field: "dataset",
        absent: Need::SignedIn,
        cases: &[("audit", Need::All(&[DataExport, AuditRead]))],
        otherwise: Need::All(&[DataExport]),
    };

    #[test]
    fn body_values_pick_the_first_matching_case_at_any_depth() {
        const REPORT: Access = Access::ByBodyValues {
            cases: &[
                ("spec.dataset", "audit", Need::All(&[ReportsWrite, AuditRead])),
                ("template", "security_and_audit", Need::All(&[ReportsWrite, AuditRead])),
            ],
            otherwise: Need::All(&[ReportsWrite]),
        };
        let need = |body: serde_json::Value| REPORT.need(&facts(&[], Some(&body))).map(Need::permissions);
        assert_eq!(need(json!({"spec": {"dataset": "audit"}})), Some(&[ReportsWrite, AuditRead][..]));
        assert_eq!(need(json!({"template": "security_and_audit"})), Some(&[ReportsWrite, AuditRead][..]));
        assert_eq!(need(json!({"spec": {"dataset": "orders"}})), Some(&[ReportsWrite][..]));
        assert_eq!(need(json!({"spec": "audit"})), Some(&[ReportsWrite][..]));
        assert_eq!(REPORT.need(&facts(&[], Some(&json!([1])))), None);
        assert!(REPORT.reads_body());
        assert_eq!(REPORT.permissions(), vec![AuditRead, ReportsWrite].into_iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn plain_rules() {
        let none = facts(&[], None);
        assert_eq!(Access::Public.need(&none), Some(Need::Nothing));
        assert_eq!(Access::OptionallyAuthenticated.need(&none), Some(Need::Nothing));
        assert_eq!(Access::Authenticated.need(&none), Some(Need::SignedIn));
        for p in Permission::ALL {
            assert_eq!(Access::Permission(*p).need(&none).map(Need::permissions), Some(&[*p][..]), "{p}");
            assert_eq!(Access::Permission(*p).permissions(), vec![*p]);
        }
        assert!(!Access::Public.needs_token() && !Access::OptionallyAuthenticated.needs_token());
        assert!(Access::Authenticated.needs_token() && EXPORT.needs_token());
    }

    #[test]
    fn missing_names_the_first_missing_or_the_alternatives() {
        let held = PermissionSet::of(&[DataExport]);
        assert_eq!(Need::All(&[DataExport, AuditRead]).missing(held).as_deref(), Some("audit:read"));
        assert_eq!(Need::All(&[UsersRead, AuditRead]).missing(held).as_deref(), Some("users:read"));
        assert_eq!(Need::All(&[DataExport]).missing(held), None);
        assert_eq!(Need::Any(&[AuditRead, DataExport]).missing(held), None);
        assert_eq!(Need::Any(&[AuditRead, UsersRead]).missing(held).as_deref(), Some("audit:read or users:read"));
        assert_eq!(Need::SignedIn.missing(PermissionSet::empty()), None);
        assert_eq!(Access::AnyOf(&[AuditRead, UsersRead]).need(&facts(&[], None)), Some(Need::Any(&[AuditRead, UsersRead])));
        assert_eq!(Access::AllOf(&[AuditRead, UsersRead]).need(&facts(&[], None)), Some(Need::All(&[AuditRead, UsersRead])));
    }

    #[test]
    fn self_or_permission_from_the_path_or_the_body() {
        let by_path = Access::SelfOrPermission { subject: Subject::Path("user_id"), permission: DataErase };
        assert_eq!(by_path.need(&facts(&[("user_id", "me")], None)), Some(Need::SignedIn));
        assert_eq!(by_path.need(&facts(&[("user_id", "you")], None)), Some(Need::All(&[DataErase])));
        // A route without the parameter never counts as "self".
        assert_eq!(by_path.need(&facts(&[("job_id", "me")], None)), Some(Need::All(&[DataErase])));
        assert!(!by_path.reads_body());

        let by_body = Access::SelfOrPermission { subject: Subject::Body("user_id"), permission: DataRequests };
        assert!(by_body.reads_body());
        let need = |body: serde_json::Value| by_body.need(&facts(&[], Some(&body)));
        assert_eq!(need(json!({})), Some(Need::SignedIn));
        assert_eq!(need(json!({"user_id": null})), Some(Need::SignedIn));
        assert_eq!(need(json!({"user_id": "me"})), Some(Need::SignedIn));
        assert_eq!(need(json!({"user_id": "you"})), Some(Need::All(&[DataRequests])));
        assert_eq!(need(json!({"user_id": ["me"]})), Some(Need::All(&[DataRequests])));
        // Not JSON, or not an object: the handler refuses it.
        assert_eq!(by_body.need(&facts(&[], None)), None);
        assert_eq!(need(json!(["me"])), None);
        assert_eq!(by_body.permissions(), vec![DataRequests]);
    }

    #[test]
    fn by_body_field() {
        assert!(EXPORT.reads_body());
        let need = |body: serde_json::Value| EXPORT.need(&facts(&[], Some(&body)));
        assert_eq!(need(json!({"format": "csv"})), Some(Need::SignedIn));
        assert_eq!(need(json!({"dataset": null})), Some(Need::SignedIn));
        assert_eq!(need(json!({"dataset": "users"})), Some(Need::All(&[DataExport])));
        assert_eq!(need(json!({"dataset": "audit"})), Some(Need::All(&[DataExport, AuditRead])));
        // Unknown values and other types get the strict answer.
        assert_eq!(need(json!({"dataset": "Audit"})), Some(Need::All(&[DataExport])));
        assert_eq!(need(json!({"dataset": 7})), Some(Need::All(&[DataExport])));
        assert_eq!(need(json!("audit")), None);
        assert_eq!(EXPORT.need(&facts(&[], None)), None);
        assert_eq!(EXPORT.permissions(), vec![AuditRead, DataExport]);
    }
}
