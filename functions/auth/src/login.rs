//! `POST /api/v1/auth/login`: email and password (argon2id) for tokens, or,
//! when the user has 2FA, a short-lived challenge that only
//! `/auth/2fa/verify` accepts. Failures answer the same whatever the cause,
//! so the endpoint does not reveal which emails exist; each failure is
//! audited with its real reason. `finish_login` is the common end of every
//! sign-in method (password here, OAuth elsewhere).

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use shared::audit::{AuditEntry, Outcome};
use shared::http::RequestMeta;
use shared::http::extract::ValidJson;
use shared::identity::rate_limits::{self, Action, Limit};
use shared::identity::token::{SessionGrant, amr};
use shared::identity::users::{self, Email, User, UserStatus};
use shared::platform::crypto::{dummy_password_hash, sha256_hex, verify_password};
use shared::platform::error::{Error, Result};
use shared::store::{Write, s, timestamp};
use utoipa::ToSchema;

use crate::AuthState;
use crate::sessions::{self, TokenResponse};
use crate::two_factor::{self, MfaChallenge};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(value_type = String, format = "email")]
    pub email: Email,
    #[schema(format = "password")]
    pub password: String,
}

fn refused() -> Error {
    Error::Unauthorized("invalid email or password".into())
}

/// What a sign-in answers once the first factor is right.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginOutcome {
    /// Signed in: no 2FA, or limited to enrolling it (`scope`).
    Tokens(TokenResponse),
    /// 2FA is active: send the challenge and a code to /auth/2fa/verify.
    Challenge(MfaChallenge),
}

/// The end of every sign-in method, once `user` (active) has proven the
/// first factor `amr` (e.g. `[amr::PASSWORD]`): a 2FA challenge if the user
/// has 2FA; otherwise a session, limited to enrolling 2FA if the roles
/// require it. Audited in the same transaction as what it stores.
pub async fn finish_login(state: &AuthState, user: &User, meta: &RequestMeta, amr: &[&str], method: &str) -> Result<LoginOutcome> {
    let store = &state.platform.store;
    let mfa = shared::identity::two_factor::get(store, &user.id).await?;
    if mfa.as_ref().is_some_and(|m| m.is_active()) {
        return two_factor::challenge(store, user, meta, amr).await.map(LoginOutcome::Challenge);
    }
    let grant = SessionGrant::new(amr, shared::domain::two_factor_policy::session_scope(store, user, mfa.as_ref()).await?);
    let mut audit = AuditEntry::new(&meta.actor(&user.id), "auth.login", "user", &user.id).reason(format!("signed in with {method}"));
    if grant.scope.is_some() {
        audit = audit.reason(format!("signed in with {method}; roles require 2FA, which is not active: session limited to enrolment"));
    }
    sign_in(state, user, meta, grant, Vec::new(), audit).await.map(LoginOutcome::Tokens)
}

/// Start a session for a user who passed every factor: the session, its
/// first refresh token and `last_login_at`, committed with `writes` and
/// `audit` in one transaction; then the access token.
pub(crate) async fn sign_in(
    state: &AuthState,
    user: &User,
    meta: &RequestMeta,
    grant: SessionGrant,
    mut writes: Vec<Write>,
    audit: AuditEntry,
) -> Result<TokenResponse> {
    let store = &state.platform.store;
    let (family, refresh_token, session_writes) = sessions::start(store.table(), user, meta, &grant)?;
    writes.extend(session_writes);
    writes.push(touch_last_login(store.table(), user)?);
    store.commit(writes, &audit).await?;
    let access = state.signer.access_token(user, &family.id, &grant).await?;
    Ok(TokenResponse::new(access, refresh_token, &grant))
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in (tokens), or a 2FA challenge when the user has 2FA", body = LoginOutcome),
        (status = 400, description = "Invalid body", body = shared::platform::error::Problem),
        (status = 401, description = "Wrong email or password, or the account cannot sign in", body = shared::platform::error::Problem),
        (status = 429, description = "Too many failed attempts for this account or from this address; see Retry-After", body = shared::platform::error::Problem),
    ))]
pub async fn login(State(state): State<AuthState>, meta: RequestMeta, ValidJson(body): ValidJson<LoginRequest>) -> Result<Json<LoginOutcome>> {
    let store = &state.platform.store;
    if body.password.len() > 1024 {
        return Err(Error::field("password", "too long"));
    }
    // Before any password check, so a locked account costs no argon2 time;
    // unknown emails are limited like known ones (nothing is revealed).
    let attempt = rate_limits::guard(
        &state.platform.store,
        &state.platform.config.rate_limits,
        &[Limit::account(body.email.as_str()), Limit::ip(meta.source_ip.as_deref())],
        Action::Login,
        &meta.actor("anonymous"),
    )
    .await?;
    let user = users::find_by_email(store, &body.email).await?;
    let Some(user) = user else {
        let _ = verify_password(&body.password, dummy_password_hash());
        // The unknown email is recorded only as a digest (no personal data).
        let audit = AuditEntry::new(&meta.actor("anonymous"), "auth.login", "email", &sha256_hex(body.email.as_str().as_bytes()))
            .outcome(Outcome::Failure)
            .reason("unknown email");
        store.record(&audit).await?;
        return Err(refused());
    };
    let password_ok = user.password_hash.as_deref().map(|h| verify_password(&body.password, h)).unwrap_or_else(|| {
        let _ = verify_password(&body.password, dummy_password_hash());
        false
    });
    let failure = match (password_ok, user.status) {
        (false, _) => Some("wrong password"),
        (true, UserStatus::Active) => None,
        (true, UserStatus::Suspended) => Some("account suspended"),
        (true, UserStatus::Invited) => Some("invitation not accepted"),
        (true, UserStatus::Deleted) => Some("account deleted"),
    };
    let actor = meta.actor(&user.id);
    if let Some(reason) = failure {
        let audit = AuditEntry::new(&actor, "auth.login", "user", &user.id).outcome(Outcome::Failure).reason(reason);
        store.record(&audit).await?;
        return Err(refused());
    }
    // The password was right: only failures count against the limits.
    attempt.succeeded().await?;
    finish_login(&state, &user, &meta, &[amr::PASSWORD], "password").await.map(Json)
}

/// `last_login_at` is not operator-editable, so it is set without bumping the
/// version: a login must not make an admin's pending edit conflict.
fn touch_last_login(table: &str, user: &User) -> Result<Write> {
    let update = Update::builder()
        .table_name(table)
        .key("pk", s(User::pk(&user.id)))
        .key("sk", s("PROFILE"))
        .update_expression("SET last_login_at = :now")
        .condition_expression("#status = :active")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":now", s(timestamp(chrono::Utc::now())))
        .expression_attribute_values(":active", s("active"))
        .build()
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(Write::raw(TransactWriteItem::builder().update(update).build(), Some(refused())))
}
