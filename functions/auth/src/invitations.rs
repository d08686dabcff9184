//! `POST /api/v1/auth/invitations/accept`: an invited user sets a password
//! with the single-use token from their invitation email, which activates
//! the account. Tokens are stored only as SHA-256 and expire after 7 days.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use shared::audit::AuditEntry;
use shared::http::RequestMeta;
use shared::http::extract::ValidJson;
use shared::identity::users::{self, UserStatus, check_password};
use shared::platform::crypto::{hash_password, sha256_hex};
use shared::platform::error::{Error, Result};
use shared::store::Write;
use utoipa::ToSchema;

use crate::AuthState;

/// Key of an invitation: `INVITE#sha256(token) / INVITE`.
pub fn invitation_pk(token: &str) -> String {
    format!("INVITE#{}", sha256_hex(token.as_bytes()))
}

#[derive(Debug, Deserialize, Serialize)]
pub struct Invitation {
    pub pk: String,
    pub sk: String,
    pub user_id: String,
    pub expires_at: i64,
    pub ttl: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    pub token: String,
    #[schema(format = "password", min_length = 12, max_length = 128)]
    pub password: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AcceptResponse {
    pub user_id: String,
    pub status: UserStatus,
}

#[utoipa::path(post, path = "/api/v1/auth/invitations/accept", tag = "auth", request_body = AcceptRequest,
    responses(
        (status = 200, description = "Account activated; sign in with the new password", body = AcceptResponse),
        (status = 400, description = "Invalid body or password", body = shared::platform::error::Problem),
        (status = 401, description = "Unknown, used or expired invitation", body = shared::platform::error::Problem),
    ))]
pub async fn accept(State(state): State<AuthState>, meta: RequestMeta, ValidJson(body): ValidJson<AcceptRequest>) -> Result<Json<AcceptResponse>> {
    if let Some(e) = check_password("password", &body.password) {
        return Err(Error::Validation(vec![e]));
    }
    let store = &state.platform.store;
    let invalid = || Error::Unauthorized("unknown, used or expired invitation".into());
    if body.token.len() > 256 {
        return Err(invalid());
    }
    let pk = invitation_pk(&body.token);
    let invitation: Invitation = store.get(&pk, "INVITE").await?.ok_or_else(invalid)?;
    if invitation.expires_at < chrono::Utc::now().timestamp() {
        return Err(invalid());
    }
    let user = users::get(store, &invitation.user_id).await?.filter(|u| u.status == UserStatus::Invited).ok_or_else(invalid)?;
    let mut activated = user.next_version();
    activated.status = UserStatus::Active;
    activated.password_hash = Some(hash_password(&body.password)?);
    let writes = vec![
        Write::put_versioned(store.table(), activated.to_item()?, user.version)?,
        // Single use: the invitation must still exist when the change lands.
        Write::delete_existing(store.table(), &pk, "INVITE", invalid())?,
    ];
    let audit = AuditEntry::new(&meta.actor(&user.id), "user.activate", "user", &user.id).changes(Some(&user), Some(&activated));
    store.commit(writes, &audit).await?;
    Ok(Json(AcceptResponse { user_id: user.id, status: UserStatus::Active }))
}
