//! OAuth 2.0 / OpenID Connect sign-in: authorization code flow with PKCE
//! (S256), `state` and `nonce` kept server-side for ten minutes and usable
//! once. `POST /api/v1/auth/oauth/{provider}` starts it; the provider sends
//! the browser to `/api/v1/auth/oauth/{provider}/callback` (GET, or POST for
//! `form_post`), which redeems the code, validates the id_token (or asks
//! GitHub's API), and then signs in the linked user, offers to link an
//! existing account whose email the provider verified (confirmed at
//! `POST /api/v1/auth/oauth/link/confirm`), or creates a new user.
//!
//! Keys: attempt `OAUTHSTATE#sha256(state) / STATE`; pending link
//! `OAUTHLINK#sha256(token) / LINK`. Both expire through `ttl` and are also
//! checked explicitly (DynamoDB deletes expired items only eventually).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use oauth2::basic::BasicErrorResponse;
use oauth2::{AuthorizationCode, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RequestTokenError, Scope, TokenResponse as _};
use serde::{Deserialize, Serialize};
use shared::audit::Journal;
use shared::audit::{AuditEntry, Outcome};
use shared::http::RequestMeta;
use shared::http::extract::{ValidJson, ValidQuery};
use shared::identity::users::{self, Email, User, UserStatus, check_name};
use shared::platform::crypto::{Sealed, dummy_password_hash, random_token, sha256_hex, verify_password};
use shared::platform::error::{Error, Result};
use shared::store::{Store, UpdateSpec, Write, from_item, s, timestamp, to_item};
use utoipa::{IntoParams, ToSchema};

use crate::AuthState;
use crate::identities::{self, Identity};
use crate::login::{LoginOutcome, finish_login};
use crate::providers::{ExternalIdentity, HttpError, Provider};
use shared::identity::token::amr;

/// How long a started sign-in, and an offered link, stay usable.
pub const ATTEMPT_SECONDS: i64 = 600;

/// A sign-in in progress, stored under the digest of its `state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Attempt {
    pk: String,
    sk: String,
    provider: String,
    /// SHA-256 of the nonce sent to an OpenID provider (none for GitHub).
    nonce_sha256: Option<String>,
    /// The PKCE code verifier, sealed: with the code it redeems tokens.
    verifier: Sealed,
    /// The redirect URI sent, which the code exchange must repeat.
    redirect_uri: String,
    /// `pending` until the callback consumes it, then `used`.
    status: String,
    created_at: String,
    expires_at: i64,
    ttl: i64,
}

fn attempt_pk(state: &str) -> String {
    format!("OAUTHSTATE#{}", sha256_hex(state.as_bytes()))
}

/// A provider account whose verified email matched an existing user,
/// waiting for that user to confirm the link.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingLink {
    pk: String,
    sk: String,
    user_id: String,
    provider: String,
    subject: String,
    email: String,
    expires_at: i64,
    ttl: i64,
}

fn link_pk(token: &str) -> String {
    format!("OAUTHLINK#{}", sha256_hex(token.as_bytes()))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StartResponse {
    /// Send the browser here.
    pub authorization_url: String,
    /// The `state` in that URL: keep it (e.g. in session storage) and check
    /// that the callback carries the same one before forwarding it.
    pub state: String,
    /// Seconds the sign-in may take before it must be started again.
    pub expires_in: i64,
}

#[utoipa::path(post, path = "/api/v1/auth/oauth/{provider}", tag = "oauth",
    params(("provider" = String, Path, description = "A configured provider's name")),
    responses(
        (status = 200, description = "Where to send the browser", body = StartResponse),
        (status = 404, description = "No such provider is configured", body = shared::platform::error::Problem),
    ))]
pub async fn start(State(state): State<AuthState>, Path(name): Path<String>) -> Result<Json<StartResponse>> {
    let provider = state.providers.get(&state.platform, &name).await?;
    begin(&state, &provider).await.map(Json)
}

/// Make the authorization URL and remember what the callback must match.
async fn begin(state: &AuthState, provider: &Provider) -> Result<StartResponse> {
    let store = &state.platform.store;
    let raw_state = random_token();
    let nonce = random_token();
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let redirect_uri = provider.config.redirect_uri.clone();
    let client = provider.oauth_client(&redirect_uri)?;
    let mut request = client
        .authorize_url(|| CsrfToken::new(raw_state.clone()))
        .add_scopes(provider.config.scopes.iter().cloned().map(Scope::new))
        .set_pkce_challenge(challenge);
    if provider.oidc.is_some() {
        request = request.add_extra_param("nonce", nonce.clone());
    }
    let (url, _) = request.url();

    let pk = attempt_pk(&raw_state);
    let now = chrono::Utc::now();
    let attempt = Attempt {
        verifier: state.platform.envelope.seal(verifier.secret().as_bytes(), &pk).await?,
        pk,
        sk: "STATE".into(),
        provider: provider.name().to_string(),
        nonce_sha256: provider.oidc.as_ref().map(|_| sha256_hex(nonce.as_bytes())),
        redirect_uri,
        status: "pending".into(),
        created_at: timestamp(now),
        expires_at: now.timestamp() + ATTEMPT_SECONDS,
        ttl: now.timestamp() + ATTEMPT_SECONDS,
    };
    // Not audited: nothing changed yet, and anyone may start a sign-in.
    // The callback's outcome is audited.
    if !store.put_new(to_item(&attempt)?).await? {
        return Err(Error::internal("oauth state: a new random state's item already exists"));
    }
    Ok(StartResponse { authorization_url: url.to_string(), state: raw_state, expires_in: ATTEMPT_SECONDS })
}

/// What the provider sends back. Unknown parameters are ignored, not
/// refused: providers add their own (Google's `authuser`, `hd`, `prompt`,
/// Microsoft's `session_state`...).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackParams {
    /// The authorization code.
    pub code: Option<String>,
    /// The `state` of the authorization request.
    pub state: Option<String>,
    /// Set instead of `code` when the provider did not authorize (e.g. `access_denied`).
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// The issuer of the response (RFC 9207), checked when present.
    pub iss: Option<String>,
}

/// The link offered when the provider's verified email belongs to an
/// existing account that has not linked this provider.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LinkRequired {
    /// Always true.
    pub link_required: bool,
    /// Give this to `POST /api/v1/auth/oauth/link/confirm` with the
    /// account's password (or as the signed-in owner).
    pub link_token: String,
    pub provider: String,
    /// The account the identity would be linked to.
    pub email: String,
    pub expires_in: i64,
}

/// The callback's answer: tokens, exactly as a password login gives, or a
/// link that the account's owner must confirm.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum CallbackOutcome {
    SignedIn(LoginOutcome),
    LinkRequired(LinkRequired),
}

#[utoipa::path(get, path = "/api/v1/auth/oauth/{provider}/callback", tag = "oauth",
    params(("provider" = String, Path, description = "A configured provider's name"), CallbackParams),
    responses(
        (status = 200, description = "Signed in, or a link to confirm", body = CallbackOutcome),
        (status = 400, description = "Missing, unknown, replayed, expired or foreign state; the provider's error; issuer mismatch", body = shared::platform::error::Problem),
        (status = 401, description = "Code refused (expired, reused, PKCE mismatch); invalid or tampered id_token; nonce mismatch; account cannot sign in", body = shared::platform::error::Problem),
        (status = 404, description = "No such provider is configured", body = shared::platform::error::Problem),
        (status = 409, description = "The identity or email was taken concurrently", body = shared::platform::error::Problem),
        (status = 422, description = "The provider vouched for no email address", body = shared::platform::error::Problem),
    ))]
pub async fn callback(
    State(state): State<AuthState>,
    meta: RequestMeta,
    Path(name): Path<String>,
    ValidQuery(params): ValidQuery<CallbackParams>,
) -> Result<Json<CallbackOutcome>> {
    finish(&state, &meta, &name, params).await.map(Json)
}

/// The callback for `response_mode=form_post`: the same parameters as a
/// form body.
#[utoipa::path(post, path = "/api/v1/auth/oauth/{provider}/callback", tag = "oauth",
    params(("provider" = String, Path, description = "A configured provider's name")),
    request_body(content_type = "application/x-www-form-urlencoded", description = "code, state, error, error_description, iss"),
    responses(
        (status = 200, description = "Signed in, or a link to confirm", body = CallbackOutcome),
        (status = 400, description = "As for GET, or a body that is not a form", body = shared::platform::error::Problem),
        (status = 401, description = "As for GET", body = shared::platform::error::Problem),
        (status = 404, description = "No such provider is configured", body = shared::platform::error::Problem),
    ))]
pub async fn callback_form(
    State(state): State<AuthState>,
    meta: RequestMeta,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<CallbackOutcome>> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(Error::UnsupportedMediaType { expected: "application/x-www-form-urlencoded" });
    }
    let limit = shared::http::current_body_limit().max(1);
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| Error::PayloadTooLarge { limit })?;
    let params: CallbackParams = serde_urlencoded::from_bytes(&bytes).map_err(|e| Error::field("body", e.to_string()))?;
    finish(&state, &meta, &name, params).await.map(Json)
}

/// Record a refused sign-in (a security event) and answer `error`.
async fn refuse(store: &Journal, meta: &RequestMeta, provider: &str, outcome: Outcome, reason: &str, error: Error) -> Error {
    let audit = AuditEntry::new(&meta.actor("anonymous"), "auth.oauth_callback", "oauth_provider", provider).outcome(outcome).reason(reason);
    match store.record(&audit).await {
        Ok(()) => error,
        Err(e) => e,
    }
}

/// Text a browser or provider sent, made safe to echo and record.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// Why a callback's state yields no attempt.
enum NoAttempt {
    Unknown,
    AlreadyUsed,
}

/// Mark the attempt used, atomically: of two callbacks with the same state,
/// exactly one gets it.
async fn take_attempt(store: &Store, raw_state: &str) -> Result<std::result::Result<Attempt, NoAttempt>> {
    let pk = attempt_pk(raw_state);
    let take = UpdateSpec::new("SET #status = :used, used_at = :now")
        .condition("#status = :pending")
        .name("#status", "status")
        .value(":used", s("used"))
        .value(":pending", s("pending"))
        .value(":now", s(timestamp(chrono::Utc::now())));
    match store.update(&pk, "STATE", &take).await? {
        Some(taken) => from_item(taken).map(Ok),
        None => Ok(Err(if store.get_item(&pk, "STATE").await?.is_some() { NoAttempt::AlreadyUsed } else { NoAttempt::Unknown })),
    }
}

/// The callback: check the state, the provider's answer, redeem the code,
/// establish who signed in, and sign them in (or offer a link).
async fn finish(state: &AuthState, meta: &RequestMeta, name: &str, params: CallbackParams) -> Result<CallbackOutcome> {
    let store = &state.platform.store;
    let provider = state.providers.get(&state.platform, name).await?;
    let raw_state = params.state.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| Error::field("state", "required"))?;
    let bad_state = |why: &str| Error::BadRequest(format!("{why}: start the sign-in again"));
    let attempt = match take_attempt(store, raw_state).await? {
        Ok(attempt) => attempt,
        Err(NoAttempt::AlreadyUsed) => {
            return Err(
                refuse(store, meta, name, Outcome::Denied, "replayed state", bad_state("this OAuth state was already used (a replayed callback)")).await
            );
        }
        Err(NoAttempt::Unknown) => {
            return Err(refuse(
                store,
                meta,
                name,
                Outcome::Denied,
                "unknown state",
                bad_state("unknown OAuth state: this sign-in was not started here, or has expired"),
            )
            .await);
        }
    };
    if attempt.provider != name {
        return Err(
            refuse(store, meta, name, Outcome::Denied, "state of another provider", bad_state("this OAuth state was issued for another provider")).await
        );
    }
    if attempt.expires_at < chrono::Utc::now().timestamp() {
        return Err(refuse(store, meta, name, Outcome::Denied, "expired state", bad_state("this sign-in took longer than 10 minutes")).await);
    }
    if let Some(error) = &params.error {
        let detail = match params.error_description.as_deref() {
            Some(d) => format!("{}: {}", printable(error), printable(d)),
            None => printable(error),
        };
        let reason = format!("provider error {detail}");
        return Err(
            refuse(store, meta, name, Outcome::Failure, &reason, Error::BadRequest(format!("the provider did not authorize the sign-in ({detail})"))).await
        );
    }
    if let (Some(iss), Some(oidc)) = (&params.iss, &provider.oidc) {
        // RFC 9207: a response from another issuer is a mix-up attack.
        if *iss != oidc.issuer {
            return Err(refuse(
                store,
                meta,
                name,
                Outcome::Denied,
                "issuer mismatch",
                Error::BadRequest("the authorization response names another issuer".into()),
            )
            .await);
        }
    }
    let code = params.code.as_deref().filter(|c| !c.is_empty() && c.len() <= 4096).ok_or_else(|| Error::field("code", "required (1 to 4096 characters)"))?;

    let verifier = state.platform.envelope.open(&attempt.verifier, &attempt.pk).await?;
    let verifier = String::from_utf8(verifier).map_err(|_| Error::internal("sealed verifier is not UTF-8"))?;
    let http = state.providers.http().clone();
    let send = move |request| {
        let http = http.clone();
        async move { http.send(request).await }
    };
    let client = provider.oauth_client(&attempt.redirect_uri)?;
    let exchanged =
        client.exchange_code(AuthorizationCode::new(code.to_string())).set_pkce_verifier(PkceCodeVerifier::new(verifier)).request_async(&send).await;
    let tokens = match exchanged {
        Ok(tokens) => tokens,
        Err(err) => {
            let (reason, error) = code_refused(err);
            return Err(refuse(store, meta, name, Outcome::Denied, &reason, error).await);
        }
    };

    let http = state.providers.http();
    let access_token = tokens.access_token().secret();
    let identity = match &provider.oidc {
        Some(oidc) => {
            let Some(id_token) = tokens.extra_fields().id_token.as_deref() else {
                return Err(refuse(store, meta, name, Outcome::Denied, "no id_token", Error::Unauthorized("the provider returned no id_token".into())).await);
            };
            let nonce = attempt.nonce_sha256.as_deref().unwrap_or_default();
            let claims = match oidc.verify_id_token(http, id_token, &provider.config.client_id, nonce).await {
                Ok(claims) => claims,
                Err(e @ Error::Unauthorized(_)) => {
                    let reason = e.to_string();
                    return Err(refuse(store, meta, name, Outcome::Denied, &reason, e).await);
                }
                Err(e) => return Err(e),
            };
            let mut identity = claims.identity(provider.kind());
            // Providers that follow OpenID's default keep email out of the
            // id_token when an access token is issued: ask userinfo.
            if claims.email.is_none()
                && let Some(info) = oidc.userinfo(http, access_token, &claims.sub).await?
            {
                identity = ExternalIdentity { subject: claims.sub.clone(), ..info.identity(provider.kind()) };
            }
            identity
        }
        None => provider.github_identity(http, access_token).await?,
    };
    sign_in(state, meta, name, identity).await
}

/// A refused code exchange: the reason to record and the answer.
fn code_refused(err: RequestTokenError<HttpError, BasicErrorResponse>) -> (String, Error) {
    let refused = |detail: String| {
        let message =
            format!("the provider refused the authorization code ({detail}): it may have expired or been used already, or the PKCE verifier did not match");
        (format!("code refused: {detail}"), Error::Unauthorized(message))
    };
    match err {
        RequestTokenError::ServerResponse(e) => refused(printable(&e.to_string())),
        // GitHub answers refusals with 200 and an error body.
        RequestTokenError::Parse(_, body) => match serde_json::from_slice::<BasicErrorResponse>(&body) {
            Ok(e) => refused(printable(&e.to_string())),
            Err(_) => ("unreadable token response".into(), Error::internal("the provider's token response could not be read")),
        },
        RequestTokenError::Request(e) => ("token endpoint unreachable".into(), Error::internal(format!("token endpoint: {e}"))),
        RequestTokenError::Other(e) => ("token endpoint error".into(), Error::internal(format!("token endpoint: {e}"))),
    }
}

/// Refuse accounts that may not sign in, like a password login does.
async fn check_can_sign_in(store: &Journal, meta: &RequestMeta, user: &User, method: &str) -> Result<()> {
    let reason = match user.status {
        UserStatus::Active => return Ok(()),
        UserStatus::Suspended => "account suspended",
        UserStatus::Invited => "invitation not accepted",
        UserStatus::Deleted => "account deleted",
    };
    let audit = AuditEntry::new(&meta.actor(&user.id), "auth.login", "user", &user.id).outcome(Outcome::Failure).reason(format!("{reason} ({method})"));
    store.record(&audit).await?;
    Err(Error::Unauthorized("this account cannot sign in".into()))
}

/// Who signed in at the provider → a Keel session, a link offer, or a new
/// user. An email counts only when the provider verified it.
async fn sign_in(state: &AuthState, meta: &RequestMeta, provider: &str, identity: ExternalIdentity) -> Result<CallbackOutcome> {
    let store = &state.platform.store;
    let method = format!("oauth:{provider}");
    if let Some(user_id) = identities::linked_user(store, provider, &identity.subject).await? {
        let user = users::get(store, &user_id).await?.ok_or_else(|| Error::internal(format!("identity guard names missing user {user_id}")))?;
        check_can_sign_in(store, meta, &user, &method).await?;
        return finish_login(state, &user, meta, &[amr::FEDERATED], &method).await.map(CallbackOutcome::SignedIn);
    }
    let Some(email) = identity.verified_email.clone() else {
        let error = Error::Unprocessable("the provider did not vouch for an email address (no verified email), so no account can be matched or created".into());
        return Err(refuse(store, meta, provider, Outcome::Denied, "no verified email", error).await);
    };
    if let Some(user) = users::find_by_email(store, &email).await? {
        check_can_sign_in(store, meta, &user, &method).await?;
        return offer_link(store, meta, provider, &identity, &user, &email).await.map(CallbackOutcome::LinkRequired);
    }
    let user = sign_up(store, meta, provider, &identity, &email).await?;
    finish_login(state, &user, meta, &[amr::FEDERATED], &method).await.map(CallbackOutcome::SignedIn)
}

/// The verified email is an existing account's: linking needs its owner.
async fn offer_link(store: &Journal, meta: &RequestMeta, provider: &str, identity: &ExternalIdentity, user: &User, email: &Email) -> Result<LinkRequired> {
    let token = random_token();
    let now = chrono::Utc::now().timestamp();
    let link = PendingLink {
        pk: link_pk(&token),
        sk: "LINK".into(),
        user_id: user.id.clone(),
        provider: provider.to_string(),
        subject: identity.subject.clone(),
        email: email.to_string(),
        expires_at: now + ATTEMPT_SECONDS,
        ttl: now + ATTEMPT_SECONDS,
    };
    let write = Write::put_new(store.table(), to_item(&link)?, Error::Conflict("link token collision; retry".into()))?;
    let audit = AuditEntry::new(&meta.actor("anonymous"), "identity.link_offered", "user", &user.id)
        .reason(format!("a {provider} account with this verified email signed in; waiting for the owner to confirm"));
    store.commit(vec![write], &audit).await?;
    Ok(LinkRequired { link_required: true, link_token: token, provider: provider.to_string(), email: email.to_string(), expires_in: ATTEMPT_SECONDS })
}

/// A new user (role `user`, no password) with the identity linked, in one
/// transaction with its audit entry.
async fn sign_up(store: &Journal, meta: &RequestMeta, provider: &str, identity: &ExternalIdentity, email: &Email) -> Result<User> {
    let local_part = email.as_str().split('@').next().unwrap_or("user");
    let name = identity.name.as_deref().filter(|n| check_name("name", n).is_none()).unwrap_or(local_part);
    let user = User::new(email, name, vec!["user".to_string()], UserStatus::Active);
    let linked = Identity::new(&user.id, provider, &identity.subject, Some(email.as_str()));
    let mut writes = user.create_writes(store.table())?;
    writes.extend(linked.link_writes(store.table())?);
    let audit = AuditEntry::new(&meta.actor(&user.id), "user.create", "user", &user.id)
        .reason(format!("signed up with {provider}"))
        .changes::<User, User>(None, Some(&user));
    store.commit(writes, &audit).await?;
    Ok(user)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmLink {
    /// The `link_token` from the callback.
    pub link_token: String,
    /// The account's password; not needed when the request carries the
    /// account owner's bearer token.
    #[schema(format = "password")]
    pub password: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/auth/oauth/link/confirm", tag = "oauth", request_body = ConfirmLink,
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Linked and signed in (or a 2FA challenge when the account has 2FA)", body = LoginOutcome),
        (status = 400, description = "Invalid body", body = shared::platform::error::Problem),
        (status = 401, description = "Unknown, used or expired link token; wrong password (the token is spent); another account's token", body = shared::platform::error::Problem),
        (status = 409, description = "The account already has an identity of this provider, or the identity was linked elsewhere", body = shared::platform::error::Problem),
    ))]
pub async fn confirm_link(
    State(state): State<AuthState>,
    meta: RequestMeta,
    headers: HeaderMap,
    ValidJson(body): ValidJson<ConfirmLink>,
) -> Result<Json<LoginOutcome>> {
    let store = &state.platform.store;
    let invalid = || Error::Unauthorized("unknown, used or expired link token".into());
    if body.link_token.len() > 256 {
        return Err(invalid());
    }
    if body.password.as_ref().is_some_and(|p| p.len() > 1024) {
        return Err(Error::field("password", "too long"));
    }
    let pk = link_pk(&body.link_token);
    let link: PendingLink = store.get(&pk, "LINK").await?.ok_or_else(invalid)?;
    if link.expires_at < chrono::Utc::now().timestamp() {
        return Err(invalid());
    }
    let user = users::get(store, &link.user_id).await?.ok_or_else(invalid)?;
    let actor = meta.actor(&user.id);
    // The owner confirms: by being signed in as the account, or by its password.
    let proof = match (headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()), &body.password) {
        (Some(authorization), _) => {
            let principal = shared::http::authenticate(&state.platform.verifier, &state.platform.roles, Some(authorization)).await?;
            if principal.user_id != user.id {
                let audit = AuditEntry::new(&meta.actor(&principal.user_id), "identity.link", "user", &user.id)
                    .outcome(Outcome::Denied)
                    .reason("signed in as another account");
                store.record(&audit).await?;
                return Err(Error::Unauthorized("this link token is for another account".into()));
            }
            "the owner's session"
        }
        (None, Some(password)) => {
            let password_ok = user.password_hash.as_deref().map(|h| verify_password(password, h)).unwrap_or_else(|| {
                let _ = verify_password(password, dummy_password_hash());
                false
            });
            if !password_ok {
                // One guess per link: a wrong password spends the token.
                let spend = Write::delete_existing(store.table(), &pk, "LINK", invalid())?;
                let audit = AuditEntry::new(&actor, "identity.link", "user", &user.id).outcome(Outcome::Failure).reason("wrong password");
                store.commit(vec![spend], &audit).await?;
                return Err(Error::Unauthorized("wrong password; sign in with the provider again to retry".into()));
            }
            "the account's password"
        }
        (None, None) => return Err(Error::field("password", "required unless the request carries the account owner's bearer token")),
    };
    let method = format!("oauth:{}", link.provider);
    check_can_sign_in(store, &meta, &user, &method).await?;
    let identity = Identity::new(&user.id, &link.provider, &link.subject, Some(&link.email));
    let mut writes = identity.link_writes(store.table())?;
    writes.push(Write::delete_existing(store.table(), &pk, "LINK", invalid())?);
    let audit = AuditEntry::new(&actor, "identity.link", "user", &user.id)
        .reason(format!("confirmed with {proof}"))
        .changes::<Identity, Identity>(None, Some(&identity));
    store.commit(writes, &audit).await?;
    finish_login(&state, &user, &meta, &[amr::FEDERATED], &method).await.map(Json)
}
