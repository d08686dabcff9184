//! `POST /api/v1/auth/login`: email and password (argon2id) for tokens.
//! Failures answer the same whatever the cause, so the endpoint does not
//! reveal which emails exist; each failure is audited with its real reason.

use axum::Json;
use axum::extract::State;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use serde::Deserialize;
use shared::audit::{AuditEntry, Outcome};
use shared::crypto::{dummy_password_hash, sha256_hex, verify_password};
use shared::error::{Error, Result};
use shared::extract::ValidJson;
use shared::http::RequestMeta;
use shared::store::{Write, s, timestamp};
use shared::users::{self, Email, User, UserStatus};
use utoipa::ToSchema;

use crate::AuthState;
use crate::sessions::{self, TokenResponse};

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

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 400, description = "Invalid body", body = shared::error::Problem),
        (status = 401, description = "Wrong email or password, or the account cannot sign in", body = shared::error::Problem),
    ))]
pub async fn login(State(state): State<AuthState>, meta: RequestMeta, ValidJson(body): ValidJson<LoginRequest>) -> Result<Json<TokenResponse>> {
    let store = &state.platform.store;
    if body.password.len() > 1024 {
        return Err(Error::field("password", "too long"));
    }
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
    complete_login(&state, &user, &meta, "password").await.map(Json)
}

/// The end of every successful authentication, whatever proved who the user
/// is (`method`: `password`, `oauth:<provider>`...): start a session, record
/// the login, and issue the tokens.
pub async fn complete_login(state: &AuthState, user: &User, meta: &RequestMeta, method: &str) -> Result<TokenResponse> {
    let store = &state.platform.store;
    let (family, refresh_token, mut writes) = sessions::start(&store.table, user, meta)?;
    writes.push(touch_last_login(&store.table, user)?);
    let audit = AuditEntry::new(&meta.actor(&user.id), "auth.login", "user", &user.id).reason(format!("signed in with {method}"));
    store.commit(writes, &audit).await?;
    let access = state.signer.access_token(user, &family.id).await?;
    Ok(TokenResponse { access_token: access.token, token_type: "Bearer".into(), expires_in: access.expires_in, refresh_token })
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
