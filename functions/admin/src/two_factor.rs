//! `POST /api/v1/admin/users/{user_id}/2fa/reset`: remove a user's 2FA (a
//! lost authenticator). The admin steps up: a session signed in with 2FA and
//! a fresh code from their own authenticator (accepted once, like any code).
//! The reset is audited with the step-up, and the user is told by email
//! through a `security_email` job (this function cannot send email).

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::audit::{AuditEntry, Outcome};
use shared::domain::jobs::{Job, SecurityEmail, SecurityEvent};
use shared::http::Caller;
use shared::http::extract::ValidJson;
use shared::identity::two_factor::{self, MfaRecord};
use shared::platform::error::{Error, FieldError, Result};
use shared::store::timestamp;
use utoipa::ToSchema;

use crate::AdminState;
use crate::roles;
use crate::users::load;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetTwoFactor {
    /// Your own current TOTP code (step-up).
    pub code: String,
    /// Why (kept in the audit entry).
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TwoFactorReset {
    pub user_id: String,
    /// The job that emails the user about the reset.
    pub notification_job_id: String,
}

#[utoipa::path(post, path = "/api/v1/admin/users/{user_id}/2fa/reset", tag = "users", request_body = ResetTwoFactor, security(("bearer" = [])),
    params(("user_id" = String, Path, description = "User id (UUID)")),
    responses(
        (status = 200, description = "2FA removed; the user is emailed", body = TwoFactorReset),
        (status = 400, description = "Invalid body, or a wrong step-up code", body = shared::platform::error::Problem),
        (status = 403, description = "Missing users:write, or no 2FA of your own in this session (mfa-required)", body = shared::platform::error::Problem),
        (status = 404, description = "No such user, or the user has no 2FA", body = shared::platform::error::Problem),
        (status = 409, description = "Your own account (use /auth/2fa/disable), or a concurrent change", body = shared::platform::error::Problem),
    ))]
pub async fn reset(
    State(state): State<AdminState>,
    caller: Caller,
    Path(user_id): Path<String>,
    ValidJson(body): ValidJson<ResetTwoFactor>,
) -> Result<Json<TwoFactorReset>> {
    let code = body.code.trim();
    let mut errors = Vec::new();
    if code.is_empty() || code.len() > 16 {
        errors.push(FieldError::new("code", "must be your current 6-digit code"));
    }
    if body.reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        errors.push(FieldError::new("reason", "at most 500 characters"));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let store = &state.platform.store;
    let admin_id = &caller.principal.user_id;
    // Every refused step-up is a security event: audited, then answered.
    let deny = |reason: &str, error: Error| {
        let audit = AuditEntry::new(&caller.actor(), "mfa.reset", "user", &user_id).outcome(Outcome::Denied).reason(reason);
        async move { store.record(&audit).await.and(Err(error)) }
    };
    let Some(own) = two_factor::get(store, admin_id).await?.filter(MfaRecord::is_active) else {
        return deny("no 2FA of their own", Error::MfaRequired("resetting another user's 2FA needs 2FA on your own account; enable it first".into())).await;
    };
    if !caller.principal.used_second_factor() {
        return deny("session not signed in with a second factor", Error::MfaRequired("sign in with your second factor to reset another user's 2FA".into()))
            .await;
    }
    let target = load(&state, &shared::http::extract::path_id(&user_id)?).await?;
    if target.id == *admin_id {
        return Err(Error::Conflict("this is your own account; use /api/v1/auth/2fa/disable".into()));
    }
    // Resetting the 2FA of someone holding a role you could not grant is escalation.
    let catalog = state.platform.roles.fresh_for(&target.roles).await?;
    roles::check_grant(store, &caller, &catalog, catalog.permissions_of(&target.roles), "mfa.reset", "user", &target.id).await?;
    let target_mfa = two_factor::get(store, &target.id).await?.ok_or_else(|| Error::NotFound(format!("user {} has no 2FA", target.id)))?;

    let secret = own.open_secret(&state.platform.envelope).await?;
    let now = chrono::Utc::now();
    let Some(own_next) = own.accept_totp(&secret, code, now.timestamp().max(0) as u64) else {
        return deny("wrong step-up code", Error::field("code", "wrong, expired or already used")).await;
    };
    let job = SecurityEmail { user_id: target.id.clone(), event: SecurityEvent::MfaReset, occurred_at: timestamp(now) };
    let job = Job::of(admin_id, &job)?;
    let writes = vec![
        // The step-up code is used up, in the same transaction as the reset.
        own_next.save(store.table(), Some(&own))?,
        target_mfa.delete(store.table())?,
        job.create_write(store.table())?,
    ];
    let mut audit = AuditEntry::new(&caller.actor(), "mfa.reset", "user", &target.id).changes(Some(&target_mfa.audit_view()), None::<&Value>);
    if let Some(reason) = &body.reason {
        audit = audit.reason(reason.clone());
    }
    store.commit(writes, &audit).await?;
    Ok(Json(TwoFactorReset { user_id: target.id, notification_job_id: job.id }))
}
