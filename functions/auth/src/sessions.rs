//! Sessions and refresh tokens. A login starts a session (a token family);
//! each refresh rotates the token: the old one is marked `rotated` and a new
//! one issued. Presenting a rotated token again means it was copied: the
//! whole family is revoked. Tokens are random, stored only as SHA-256. The
//! session remembers how it was authenticated (`amr`) and whether it is
//! limited to 2FA enrolment, so refreshed tokens say the same; a session
//! whose roles now require 2FA that is not active becomes limited.
//!
//! Keys: family `USER#uid / SESSION#fid`; token `REFRESH#sha256 / REFRESH`.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use shared::audit::Journal;
use shared::audit::{AuditEntry, Outcome};
use shared::http::RequestMeta;
use shared::http::extract::ValidJson;
use shared::identity::rate_limits::{self, Action, Limit};
use shared::identity::token::{SessionGrant, TokenScope, amr};
use shared::identity::users::{self, User, UserStatus};
use shared::platform::crypto::{random_token, sha256_hex};
use shared::platform::error::{Error, Result};
use shared::store::{Write, n, s, timestamp, to_item};
use utoipa::ToSchema;

use crate::AuthState;

/// Refresh tokens (and so sessions) live 30 days from their last use.
pub const REFRESH_SECONDS: i64 = 30 * 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Family {
    pub pk: String,
    pub sk: String,
    pub id: String,
    pub user_id: String,
    pub status: String,
    pub created_at: String,
    pub last_used_at: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub ttl: i64,
    /// How the session was signed in; sessions from before this was kept
    /// were all password sign-ins.
    #[serde(default = "password_only")]
    pub amr: Vec<String>,
    /// Set when the session may only enrol 2FA; it stays set until the
    /// session ends (sign in again after enrolling).
    #[serde(default)]
    pub scope: Option<TokenScope>,
}

fn password_only() -> Vec<String> {
    vec![amr::PASSWORD.to_string()]
}

impl Family {
    pub fn grant(&self) -> SessionGrant {
        SessionGrant { amr: self.amr.clone(), scope: self.scope }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub pk: String,
    pub sk: String,
    pub user_id: String,
    pub family_id: String,
    /// `active` or `rotated`.
    pub status: String,
    pub created_at: String,
    pub expires_at: i64,
    pub ttl: i64,
    /// `PERSONAL#<user id>`: an erasure finds the person's tokens there.
    #[serde(default)]
    pub gsi2pk: String,
    #[serde(default)]
    pub gsi2sk: String,
}

impl RefreshRecord {
    fn pk(token: &str) -> String {
        format!("REFRESH#{}", sha256_hex(token.as_bytes()))
    }

    fn issue(user_id: &str, family_id: &str) -> (String, RefreshRecord) {
        let token = random_token();
        let expires_at = chrono::Utc::now().timestamp() + REFRESH_SECONDS;
        let created_at = timestamp(chrono::Utc::now());
        let record = RefreshRecord {
            pk: RefreshRecord::pk(&token),
            sk: "REFRESH".into(),
            user_id: user_id.to_string(),
            family_id: family_id.to_string(),
            status: "active".into(),
            created_at: created_at.clone(),
            expires_at,
            // Keep rotated tokens a while past expiry so reuse is still
            // recognized as reuse, not as an unknown token.
            ttl: expires_at + 24 * 3600,
            gsi2pk: shared::audit::pseudonyms::personal_pk(user_id),
            gsi2sk: created_at.clone(),
        };
        (format!("{family_id}.{token}"), record)
    }
}

/// The tokens a client gets at login and refresh.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    pub refresh_token: String,
    /// `mfa_enrollment` when the tokens may only enrol 2FA (the roles
    /// require it); absent for full access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<TokenScope>,
}

impl TokenResponse {
    pub fn new(access: crate::signer::AccessToken, refresh_token: String, grant: &SessionGrant) -> TokenResponse {
        TokenResponse { access_token: access.token, token_type: "Bearer".into(), expires_in: access.expires_in, refresh_token, scope: grant.scope }
    }
}

/// The writes that start a session for `user` with `grant`, and the
/// refresh token.
pub fn start(table: &str, user: &User, meta: &RequestMeta, grant: &SessionGrant) -> Result<(Family, String, Vec<Write>)> {
    let now = chrono::Utc::now();
    let family_id = uuid::Uuid::now_v7().to_string();
    let family = Family {
        pk: User::pk(&user.id),
        sk: format!("SESSION#{family_id}"),
        id: family_id.clone(),
        user_id: user.id.clone(),
        status: "active".into(),
        created_at: timestamp(now),
        last_used_at: timestamp(now),
        source_ip: meta.source_ip.clone(),
        user_agent: meta.user_agent.clone(),
        ttl: now.timestamp() + REFRESH_SECONDS,
        amr: grant.amr.clone(),
        scope: grant.scope,
    };
    let (token, record) = RefreshRecord::issue(&user.id, &family_id);
    let writes = vec![
        Write::put_new(table, to_item(&family)?, Error::Conflict("session exists".into()))?,
        Write::put_new(table, to_item(&record)?, Error::Conflict("token exists".into()))?,
    ];
    Ok((family, token, writes))
}

fn invalid_token() -> Error {
    Error::Unauthorized("invalid or expired refresh token".into())
}

/// Split `family.secret`; the family id lets logout and reuse detection find
/// the session without trusting anything but the stored hash.
fn parse_token(raw: &str) -> Result<(&str, &str)> {
    raw.split_once('.').filter(|(f, t)| !f.is_empty() && !t.is_empty() && raw.len() < 512).ok_or_else(invalid_token)
}

async fn revoke_family(store: &Journal, user_id: &str, family_id: &str, audit: AuditEntry) -> Result<()> {
    let update = Update::builder()
        .table_name(store.table())
        .key("pk", s(User::pk(user_id)))
        .key("sk", s(format!("SESSION#{family_id}")))
        .update_expression("SET #status = :revoked, revoked_at = :now")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":revoked", s("revoked"))
        .expression_attribute_values(":now", s(timestamp(chrono::Utc::now())))
        .build()
        .map_err(|e| Error::internal(e.to_string()))?;
    let write = Write::raw(TransactWriteItem::builder().update(update).build(), Some(invalid_token()));
    store.commit(vec![write], &audit).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Exchange a refresh token for new tokens (the old refresh token dies).
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 400, description = "Invalid body", body = shared::platform::error::Problem),
        (status = 401, description = "Invalid, expired, revoked or reused token", body = shared::platform::error::Problem),
        (status = 429, description = "Too many failed refreshes for this account or from this address; see Retry-After", body = shared::platform::error::Problem),
    ))]
pub async fn refresh(State(state): State<AuthState>, meta: RequestMeta, ValidJson(body): ValidJson<RefreshRequest>) -> Result<Json<TokenResponse>> {
    let store = &state.platform.store;
    // Failed refreshes count per address before the token is looked at, and
    // per account once the token names one.
    let mut attempt = rate_limits::guard(
        &state.platform.store,
        &state.platform.config.rate_limits,
        &[Limit::ip(meta.source_ip.as_deref())],
        Action::Refresh,
        &meta.actor("anonymous"),
    )
    .await?;
    let (family_id, secret) = parse_token(&body.refresh_token)?;
    let record: RefreshRecord = store.get(&RefreshRecord::pk(secret), "REFRESH").await?.ok_or_else(invalid_token)?;
    attempt.include(&[Limit::account(&record.user_id)]).await?;
    if record.family_id != family_id || record.expires_at < chrono::Utc::now().timestamp() {
        return Err(invalid_token());
    }
    let family: Family = store.get(&User::pk(&record.user_id), &format!("SESSION#{family_id}")).await?.ok_or_else(invalid_token)?;
    if family.status != "active" {
        return Err(invalid_token());
    }
    let actor = meta.actor(&record.user_id);
    if record.status != "active" {
        // A rotated token came back: someone holds a copy. End the session.
        let audit = AuditEntry::new(&actor, "auth.refresh_reuse", "session", family_id)
            .outcome(Outcome::Denied)
            .reason("a rotated refresh token was presented again; session revoked");
        revoke_family(store, &record.user_id, family_id, audit).await?;
        return Err(Error::Unauthorized("refresh token reuse detected; the session has been revoked".into()));
    }
    let user = users::get(store, &record.user_id).await?.filter(|u| u.status == UserStatus::Active).ok_or_else(invalid_token)?;
    // Limited stays limited; a full session is limited from now on if the
    // roles require 2FA that is not active (a role was granted, or 2FA reset).
    let mut grant = family.grant();
    if grant.scope.is_none() {
        let mfa = shared::identity::two_factor::get(store, &user.id).await?;
        grant.scope = shared::domain::two_factor_policy::session_scope(store, &user, mfa.as_ref()).await?;
    }
    let newly_limited = grant.scope.is_some() && family.scope.is_none();

    let (token, next) = RefreshRecord::issue(&user.id, family_id);
    let rotate = Update::builder()
        .table_name(store.table())
        .key("pk", s(&record.pk))
        .key("sk", s("REFRESH"))
        .update_expression("SET #status = :rotated, rotated_at = :now")
        .condition_expression("#status = :active")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":rotated", s("rotated"))
        .expression_attribute_values(":active", s("active"))
        .expression_attribute_values(":now", s(timestamp(chrono::Utc::now())))
        .build()
        .map_err(|e| Error::internal(e.to_string()))?;
    let touch = Update::builder()
        .table_name(store.table())
        .key("pk", s(&family.pk))
        .key("sk", s(&family.sk))
        .condition_expression("#status = :active")
        .expression_attribute_names("#status", "status")
        .expression_attribute_names("#ttl", "ttl")
        .expression_attribute_values(":active", s("active"))
        .expression_attribute_values(":now", s(timestamp(chrono::Utc::now())))
        .expression_attribute_values(":ttl", n(chrono::Utc::now().timestamp() + REFRESH_SECONDS));
    // A session that became limited stays limited: the scope is stored.
    let touch = match grant.scope {
        None => touch.update_expression("SET last_used_at = :now, #ttl = :ttl"),
        Some(scope) => touch
            .update_expression("SET last_used_at = :now, #ttl = :ttl, #scope = :scope")
            .expression_attribute_names("#scope", "scope")
            .expression_attribute_values(":scope", s(scope.as_str())),
    };
    let touch = touch.build().map_err(|e| Error::internal(e.to_string()))?;
    let writes = vec![
        // Lost a race with another refresh of the same token: that is reuse too.
        Write::raw(TransactWriteItem::builder().update(rotate).build(), Some(invalid_token())),
        Write::raw(TransactWriteItem::builder().update(touch).build(), Some(invalid_token())),
        Write::put_new(store.table(), to_item(&next)?, Error::Conflict("token exists".into()))?,
    ];
    let mut audit = AuditEntry::new(&actor, "auth.refresh", "session", family_id);
    if newly_limited {
        audit = audit.reason("roles require 2FA, which is not active: session limited to enrolment");
    }
    store.commit(writes, &audit).await?;
    attempt.succeeded().await?;
    let access = state.signer.access_token(&user, family_id, &grant).await?;
    Ok(Json(TokenResponse::new(access, token, &grant)))
}

/// End the session the refresh token belongs to.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 204, description = "Session ended"),
        (status = 400, description = "Invalid body", body = shared::platform::error::Problem),
        (status = 401, description = "Unknown token", body = shared::platform::error::Problem),
    ))]
pub async fn logout(State(state): State<AuthState>, meta: RequestMeta, ValidJson(body): ValidJson<RefreshRequest>) -> Result<StatusCode> {
    let store = &state.platform.store;
    let (family_id, secret) = parse_token(&body.refresh_token)?;
    let record: RefreshRecord = store.get(&RefreshRecord::pk(secret), "REFRESH").await?.ok_or_else(invalid_token)?;
    if record.family_id != family_id {
        return Err(invalid_token());
    }
    let audit = AuditEntry::new(&meta.actor(&record.user_id), "auth.logout", "session", family_id);
    revoke_family(store, &record.user_id, family_id, audit).await?;
    Ok(StatusCode::NO_CONTENT)
}
