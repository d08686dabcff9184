//! `/api/v1/auth/2fa/*`: TOTP two-factor authentication. `enable` issues a
//! secret (otpauth URI, QR code) that stays pending until `verify` confirms
//! it with a first code and hands out ten single-use recovery codes. At
//! sign-in, `verify` exchanges the login challenge and a code (TOTP or
//! recovery) for tokens. `disable` needs a current code or the password;
//! `recovery-codes` (new ones, the old die) a current code. Each TOTP step is
//! accepted once; a challenge locks after five wrong codes.
//!
//! Keys: 2FA `USER#uid / MFA` (`shared::identity::two_factor`); challenge
//! `MFACHALLENGE#sha256(token) / CHALLENGE`, 5 minutes.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use shared::audit::Journal;
use shared::audit::{Actor, AuditEntry, Outcome};
use shared::http::extract::ValidJson;
use shared::http::{Caller, Principal, RequestMeta};
use shared::identity::rate_limits::{self, Action, Limit};
use shared::identity::token::{SessionGrant, amr};
use shared::identity::two_factor::{self, MfaRecord, MfaStatus};
use shared::identity::users::{self, User, UserStatus};
use shared::platform::crypto::{random_token, sha256_hex, verify_password};
use shared::platform::error::{Error, FieldError, Result};
use shared::store::{Store, Write, timestamp, to_item};
use utoipa::ToSchema;

use crate::AuthState;
use crate::login::sign_in;
use crate::sessions::TokenResponse;

/// How long a sign-in challenge waits for its code.
pub const CHALLENGE_SECONDS: i64 = 300;
/// Wrong codes a challenge takes; the next attempt is refused even when right.
pub const MAX_CHALLENGE_FAILURES: u32 = 5;
const CHALLENGE_SK: &str = "CHALLENGE";

/// A sign-in waiting for its second factor. Only `/auth/2fa/verify` reads
/// these; the token is stored as its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Challenge {
    pk: String,
    sk: String,
    user_id: String,
    /// The factors already proven (`amr`), e.g. `["pwd"]`.
    amr: Vec<String>,
    failures: u32,
    created_at: String,
    expires_at: i64,
    ttl: i64,
    version: u64,
}

fn challenge_pk(token: &str) -> String {
    format!("MFACHALLENGE#{}", sha256_hex(token.as_bytes()))
}

/// What login answers when the user has 2FA.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MfaChallenge {
    /// Always true: finish signing in at /auth/2fa/verify.
    pub mfa_required: bool,
    /// Send it with a code to /auth/2fa/verify; single use.
    pub challenge_token: String,
    /// Seconds the challenge stays valid.
    pub expires_in: i64,
}

/// Create the challenge for `user`, who has proven `amr` and has 2FA;
/// audited with it.
pub async fn challenge(store: &Journal, user: &User, meta: &RequestMeta, amr: &[&str]) -> Result<MfaChallenge> {
    let token = random_token();
    let now = chrono::Utc::now();
    let expires_at = now.timestamp() + CHALLENGE_SECONDS;
    let record = Challenge {
        pk: challenge_pk(&token),
        sk: CHALLENGE_SK.into(),
        user_id: user.id.clone(),
        amr: amr.iter().map(|m| m.to_string()).collect(),
        failures: 0,
        created_at: timestamp(now),
        expires_at,
        ttl: expires_at,
        version: 1,
    };
    let audit = AuditEntry::new(&meta.actor(&user.id), "auth.login_challenge", "user", &user.id)
        .reason(format!("first factor accepted ({}); waiting for the second", amr.join("+")));
    let write = Write::put_new(store.table(), to_item(&record)?, Error::Conflict("challenge exists".into()))?;
    store.commit(vec![write], &audit).await?;
    Ok(MfaChallenge { mfa_required: true, challenge_token: token, expires_in: CHALLENGE_SECONDS })
}

/// A newly issued authenticator secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Enrolment {
    /// `pending` until confirmed at /auth/2fa/verify.
    pub status: MfaStatus,
    /// The secret in base32, for typing into an authenticator by hand.
    pub secret: String,
    /// `otpauth://totp/Keel:<email>?secret=...&issuer=Keel` (SHA-1, 6 digits, 30 s).
    pub otpauth_uri: String,
    /// The URI as a QR code (SVG markup).
    pub qr_svg: String,
    /// The URI as a QR code (PNG, base64).
    pub qr_png_base64: String,
}

/// Recovery codes, shown this once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecoveryCodes {
    pub status: MfaStatus,
    /// Ten single-use codes; each signs in once in place of a TOTP code.
    /// Only their hashes are kept.
    pub recovery_codes: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// A TOTP code (6 digits); at sign-in, a recovery code works too.
    pub code: String,
    /// From the login answer, to finish signing in. Omit it to confirm an
    /// enrolment (then send your access token).
    pub challenge_token: Option<String>,
}

/// What `/auth/2fa/verify` answers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum VerifyOutcome {
    /// Sign-in finished (with `challenge_token`).
    Tokens(TokenResponse),
    /// Enrolment confirmed (with an access token): 2FA is active.
    Enrolled(RecoveryCodes),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableRequest {
    /// A current TOTP code; or give `password`.
    pub code: Option<String>,
    #[schema(format = "password")]
    pub password: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// A current TOTP code.
    pub code: String,
}

/// Secrets and recovery codes must not be kept by caches or by the
/// idempotency store (which skips `no-store` responses).
fn no_store(body: impl IntoResponse) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], body).into_response()
}

fn now_seconds() -> u64 {
    chrono::Utc::now().timestamp().max(0) as u64
}

/// The code as sent, trimmed; a 400 naming `field` if it cannot be one.
fn checked_code<'a>(field: &str, code: &'a str) -> Result<&'a str> {
    let code = code.trim();
    if code.is_empty() || code.len() > 64 {
        return Err(Error::field(field, "must be a 6-digit code or a recovery code"));
    }
    Ok(code)
}

fn wrong_code(field: &str) -> Error {
    Error::field(field, "wrong, expired or already used")
}

/// Audit a refused proof (a wrong code or password) and answer 400 on `field`.
async fn refuse<T>(store: &Journal, actor: &Actor, action: &str, user_id: &str, field: &str) -> Result<T> {
    let audit = AuditEntry::new(actor, action, "user", user_id).outcome(Outcome::Failure).reason(format!("wrong {field}"));
    store.record(&audit).await?;
    Err(wrong_code(field))
}

async fn active_user(store: &Store, user_id: &str) -> Result<User> {
    users::get(store, user_id).await?.filter(|u| u.status == UserStatus::Active).ok_or_else(|| Error::Unauthorized("the account is not active".into()))
}

fn audit_change(entry: AuditEntry, before: Option<&MfaRecord>, after: Option<&MfaRecord>) -> AuditEntry {
    entry.changes(before.map(MfaRecord::audit_view).as_ref(), after.map(MfaRecord::audit_view).as_ref())
}

/// Start enrolling an authenticator: a new secret, pending until confirmed.
#[utoipa::path(post, path = "/api/v1/auth/2fa/enable", tag = "2fa", security(("bearer" = [])),
    responses(
        (status = 200, description = "A new secret (pending until confirmed at /auth/2fa/verify); shown once", body = Enrolment),
        (status = 401, description = "No valid access token", body = shared::platform::error::Problem),
        (status = 409, description = "2FA is already active", body = shared::platform::error::Problem),
    ))]
pub async fn enable(State(state): State<AuthState>, caller: Caller) -> Result<Response> {
    let store = &state.platform.store;
    let user = active_user(store, &caller.principal.user_id).await?;
    let current = two_factor::get(store, &user.id).await?;
    if current.as_ref().is_some_and(MfaRecord::is_active) {
        return Err(Error::Conflict("2FA is already active; disable it first to enrol another authenticator".into()));
    }
    let secret = two_factor::new_secret();
    let record = MfaRecord::pending(&state.platform.envelope, &user.id, &secret, current.as_ref()).await?;
    let otpauth_uri = two_factor::provisioning_uri(&secret, &user.email)?;
    let (qr_svg, qr_png) = crate::qr::render(&otpauth_uri)?;
    let audit = audit_change(AuditEntry::new(&caller.actor(), "mfa.enable", "user", &user.id), current.as_ref(), Some(&record));
    store.commit(vec![record.save(store.table(), current.as_ref())?], &audit).await?;
    Ok(no_store(Json(Enrolment {
        status: MfaStatus::Pending,
        secret: two_factor::secret_base32(&secret)?,
        otpauth_uri,
        qr_svg,
        qr_png_base64: B64.encode(qr_png),
    })))
}

/// Confirm an enrolment, or finish a sign-in.
#[utoipa::path(post, path = "/api/v1/auth/2fa/verify", tag = "2fa", request_body = VerifyRequest, security((), ("bearer" = [])),
    responses(
        (status = 200, description = "With challenge_token: tokens. With an access token: 2FA active, and ten recovery codes (shown once)", body = VerifyOutcome),
        (status = 400, description = "Invalid body, or (enrolment) a wrong code", body = shared::platform::error::Problem),
        (status = 401, description = "Unknown, expired or locked challenge, or a wrong code at sign-in", body = shared::platform::error::Problem),
        (status = 409, description = "No enrolment waiting for confirmation", body = shared::platform::error::Problem),
        (status = 429, description = "Too many wrong codes for this account or from this address; see Retry-After", body = shared::platform::error::Problem),
    ))]
pub async fn verify(
    State(state): State<AuthState>,
    meta: RequestMeta,
    principal: Option<Principal>,
    ValidJson(body): ValidJson<VerifyRequest>,
) -> Result<Response> {
    let code = checked_code("code", &body.code)?;
    match (body.challenge_token.as_deref(), principal) {
        (Some(token), _) => complete_sign_in(&state, &meta, token, code).await.map(|t| no_store(Json(VerifyOutcome::Tokens(t)))),
        (None, Some(principal)) => confirm_enrolment(&state, &Caller { principal, meta }, code).await.map(|c| no_store(Json(VerifyOutcome::Enrolled(c)))),
        (None, None) => Err(Error::Unauthorized("send the challenge_token from login, or an access token to confirm an enrolment".into())),
    }
}

async fn confirm_enrolment(state: &AuthState, caller: &Caller, code: &str) -> Result<RecoveryCodes> {
    let store = &state.platform.store;
    let user_id = &caller.principal.user_id;
    let current = two_factor::get(store, user_id)
        .await?
        .filter(|m| m.status == MfaStatus::Pending)
        .ok_or_else(|| Error::Conflict("no 2FA enrolment is waiting for confirmation; start one at /api/v1/auth/2fa/enable".into()))?;
    let secret = current.open_secret(&state.platform.envelope).await?;
    let Some(mut next) = current.accept_totp(&secret, code, now_seconds()) else {
        return refuse(store, &caller.actor(), "mfa.activate", user_id, "code").await;
    };
    let codes = two_factor::new_recovery_codes();
    next.status = MfaStatus::Active;
    next.recovery_codes = two_factor::recovery_code_hashes(user_id, &codes);
    next.activated_at = Some(next.updated_at.clone());
    let audit = audit_change(AuditEntry::new(&caller.actor(), "mfa.activate", "user", user_id), Some(&current), Some(&next));
    store.commit(vec![next.save(store.table(), Some(&current))?], &audit).await?;
    Ok(RecoveryCodes { status: MfaStatus::Active, recovery_codes: codes })
}

async fn complete_sign_in(state: &AuthState, meta: &RequestMeta, token: &str, code: &str) -> Result<TokenResponse> {
    let store = &state.platform.store;
    let invalid = || Error::Unauthorized("unknown or expired sign-in challenge; sign in again".into());
    if token.is_empty() || token.len() > 256 {
        return Err(invalid());
    }
    let challenge: Challenge = store.get(&challenge_pk(token), CHALLENGE_SK).await?.ok_or_else(invalid)?;
    let now = chrono::Utc::now().timestamp();
    if challenge.expires_at <= now {
        return Err(invalid());
    }
    let actor = meta.actor(&challenge.user_id);
    // Beyond the per-challenge lock: wrong codes across many challenges (each
    // login makes a new one) are limited per account and per address.
    let attempt = rate_limits::guard(
        &state.platform.store,
        &state.platform.config.rate_limits,
        &[Limit::account(&challenge.user_id), Limit::ip(meta.source_ip.as_deref())],
        Action::TwoFactor,
        &actor,
    )
    .await?;
    if challenge.failures >= MAX_CHALLENGE_FAILURES {
        let audit = AuditEntry::new(&actor, "auth.mfa_verify", "user", &challenge.user_id)
            .outcome(Outcome::Denied)
            .reason("challenge locked after too many wrong codes");
        store.record(&audit).await?;
        return Err(locked());
    }
    // The user or their 2FA may have changed since the password step.
    let user = users::get(store, &challenge.user_id).await?.filter(|u| u.status == UserStatus::Active).ok_or_else(invalid)?;
    let current = two_factor::get(store, &user.id).await?.filter(MfaRecord::is_active).ok_or_else(invalid)?;
    let secret = current.open_secret(&state.platform.envelope).await?;
    let Some((next, factor)) = current.accept_code(&secret, code, now.max(0) as u64) else {
        return count_failure(store, &actor, &challenge).await;
    };
    let mut grant = SessionGrant { amr: challenge.amr.clone(), scope: None };
    grant.amr.extend([factor.amr().to_string(), amr::MFA.to_string()]);
    let writes = vec![
        // Single use: the challenge must be exactly as read when this lands.
        Write::delete_versioned(store.table(), &challenge.pk, CHALLENGE_SK, challenge.version)?,
        next.save(store.table(), Some(&current))?,
    ];
    let reason = match factor {
        two_factor::SecondFactor::Totp => "second factor: TOTP code".to_string(),
        two_factor::SecondFactor::RecoveryCode => format!("second factor: recovery code ({} left)", next.recovery_codes.len()),
    };
    let audit = AuditEntry::new(&actor, "auth.login", "user", &user.id).reason(reason);
    let tokens = sign_in(state, &user, meta, grant, writes, audit).await?;
    attempt.succeeded().await?;
    Ok(tokens)
}

fn locked() -> Error {
    Error::Unauthorized("too many wrong codes; sign in again".into())
}

/// Count a wrong code on the challenge; the last allowed one locks it.
/// Audited with the change.
async fn count_failure<T>(store: &Journal, actor: &Actor, challenge: &Challenge) -> Result<T> {
    let failures = challenge.failures + 1;
    let next = Challenge { failures, version: challenge.version + 1, ..challenge.clone() };
    let write = Write::put_versioned(store.table(), to_item(&next)?, challenge.version)?;
    let is_locked = failures >= MAX_CHALLENGE_FAILURES;
    let audit = if is_locked {
        AuditEntry::new(actor, "auth.mfa_lockout", "user", &challenge.user_id)
            .outcome(Outcome::Denied)
            .reason(format!("{failures} wrong codes: sign-in challenge locked"))
    } else {
        AuditEntry::new(actor, "auth.mfa_verify", "user", &challenge.user_id)
            .outcome(Outcome::Failure)
            .reason(format!("wrong code ({failures} of {MAX_CHALLENGE_FAILURES})"))
    };
    store.commit(vec![write], &audit).await?;
    Err(if is_locked { locked() } else { Error::Unauthorized("wrong, expired or already used code".into()) })
}

/// Turn 2FA off (or drop a pending enrolment).
#[utoipa::path(post, path = "/api/v1/auth/2fa/disable", tag = "2fa", request_body = DisableRequest, security(("bearer" = [])),
    responses(
        (status = 204, description = "2FA removed"),
        (status = 400, description = "Neither or both of code and password, or a wrong one", body = shared::platform::error::Problem),
        (status = 404, description = "2FA is not enabled", body = shared::platform::error::Problem),
        (status = 409, description = "Your roles require 2FA", body = shared::platform::error::Problem),
    ))]
pub async fn disable(State(state): State<AuthState>, caller: Caller, ValidJson(body): ValidJson<DisableRequest>) -> Result<StatusCode> {
    let (code, password) = match (&body.code, &body.password) {
        (Some(code), None) => (Some(checked_code("code", code)?), None),
        (None, Some(password)) if password.len() <= 1024 => (None, Some(password.as_str())),
        (None, Some(_)) => return Err(Error::field("password", "too long")),
        (Some(_), Some(_)) => return Err(Error::field("password", "give either code or password, not both")),
        (None, None) => {
            return Err(Error::Validation(vec![
                FieldError::new("code", "give a current code or your password"),
                FieldError::new("password", "give a current code or your password"),
            ]));
        }
    };
    let store = &state.platform.store;
    let user = active_user(store, &caller.principal.user_id).await?;
    let current = two_factor::get(store, &user.id).await?.ok_or_else(|| Error::NotFound("2FA is not enabled".into()))?;
    if current.is_active() && shared::domain::two_factor_policy::requires_2fa(store, &user.roles).await? {
        return Err(Error::Conflict("your roles require 2FA, so it cannot be turned off; an administrator can reset it".into()));
    }
    let proven = match (code, password) {
        (Some(code), _) => current.accept_totp(&current.open_secret(&state.platform.envelope).await?, code, now_seconds()).is_some(),
        (_, Some(password)) => user.password_hash.as_deref().is_some_and(|h| verify_password(password, h)),
        (None, None) => false,
    };
    if !proven {
        return refuse(store, &caller.actor(), "mfa.disable", &user.id, if code.is_some() { "code" } else { "password" }).await;
    }
    let audit = audit_change(AuditEntry::new(&caller.actor(), "mfa.disable", "user", &user.id), Some(&current), None);
    store.commit(vec![current.delete(store.table())?], &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// New recovery codes; the old ones stop working.
#[utoipa::path(post, path = "/api/v1/auth/2fa/recovery-codes", tag = "2fa", request_body = CodeRequest, security(("bearer" = [])),
    responses(
        (status = 200, description = "Ten new recovery codes (shown once); the previous ones no longer work", body = RecoveryCodes),
        (status = 400, description = "Invalid body, or a wrong code", body = shared::platform::error::Problem),
        (status = 409, description = "2FA is not active", body = shared::platform::error::Problem),
    ))]
pub async fn regenerate_recovery_codes(State(state): State<AuthState>, caller: Caller, ValidJson(body): ValidJson<CodeRequest>) -> Result<Response> {
    let code = checked_code("code", &body.code)?;
    let store = &state.platform.store;
    let user_id = &caller.principal.user_id;
    let current = two_factor::get(store, user_id).await?.filter(MfaRecord::is_active).ok_or_else(|| Error::Conflict("2FA is not active".into()))?;
    let secret = current.open_secret(&state.platform.envelope).await?;
    let Some(mut next) = current.accept_totp(&secret, code, now_seconds()) else {
        return refuse(store, &caller.actor(), "mfa.recovery_codes_regenerate", user_id, "code").await;
    };
    let codes = two_factor::new_recovery_codes();
    next.recovery_codes = two_factor::recovery_code_hashes(user_id, &codes);
    let audit = audit_change(AuditEntry::new(&caller.actor(), "mfa.recovery_codes_regenerate", "user", user_id), Some(&current), Some(&next));
    store.commit(vec![next.save(store.table(), Some(&current))?], &audit).await?;
    Ok(no_store(Json(RecoveryCodes { status: MfaStatus::Active, recovery_codes: codes })))
}
