//! `/api/v1/admin/system/config`: read the system settings, change typed
//! keys (validated against the schema in `shared::domain::system_settings`, with a reason
//! and the version read), list the version history and roll back to an
//! earlier version. Every change is a new version, written with its history
//! item and audit entry in one transaction.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use shared::domain::system_settings::{self, ModerationReason, Settings, SettingsVersion};
use shared::http::Caller;
use shared::http::extract::{ValidJson, ValidQuery, page_limit};
use shared::platform::error::{Error, FieldError, Result};
use shared::store::cursor::{KeyPosition, key_of, position_of};
use utoipa::{IntoParams, ToSchema};

use crate::AdminState;

#[utoipa::path(get, path = "/api/v1/admin/system/config", tag = "system", security(("bearer" = [])),
    responses(
        (status = 200, description = "The settings in force, with their version and who changed them last", body = SettingsVersion),
        (status = 403, description = "Missing config:read", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<AdminState>) -> Result<Json<SettingsVersion>> {
    // Straight from the table: an operator sees the truth, not a cache.
    Ok(Json(system_settings::load_current(&state.platform.store).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsChange {
    pub max_export_rows: Option<u64>,
    pub max_import_bytes: Option<u64>,
    pub bulk_cap: Option<u32>,
    pub page_size_max: Option<u32>,
    pub bulk_operation_cap: Option<u32>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionChange {
    pub audit_days: Option<u32>,
    pub exports_days: Option<u32>,
    pub jobs_days: Option<u32>,
    pub restore_window_days: Option<u32>,
}

/// A partial update: absent keys keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// The version you read; a stale one gets 409.
    pub version: u64,
    /// Why (kept with the version and in the audit entry), 1–500 characters.
    pub reason: String,
    /// Flags to set; `null` removes a flag. Flags not named are kept.
    #[schema(value_type = Option<Object>)]
    pub feature_flags: Option<BTreeMap<String, Option<bool>>>,
    pub limits: Option<LimitsChange>,
    /// Replaces the whole list.
    pub moderation_reasons: Option<Vec<ModerationReason>>,
    /// Replaces the whole list.
    pub mfa_required_roles: Option<Vec<String>>,
    pub retention: Option<RetentionChange>,
    /// Replaces the whole list.
    pub oauth_providers: Option<Vec<String>>,
    /// Who is emailed about new high-severity security events; replaces
    /// the whole list (at most 10 addresses).
    pub security_contacts: Option<Vec<String>>,
}

impl UpdateConfig {
    fn apply_to(self, current: &Settings) -> Settings {
        let mut next = current.clone();
        for (name, value) in self.feature_flags.unwrap_or_default() {
            match value {
                Some(on) => next.feature_flags.insert(name, on),
                None => next.feature_flags.remove(&name),
            };
        }
        if let Some(l) = self.limits {
            let limits = &mut next.limits;
            limits.max_export_rows = l.max_export_rows.unwrap_or(limits.max_export_rows);
            limits.max_import_bytes = l.max_import_bytes.unwrap_or(limits.max_import_bytes);
            limits.bulk_cap = l.bulk_cap.unwrap_or(limits.bulk_cap);
            limits.page_size_max = l.page_size_max.unwrap_or(limits.page_size_max);
            limits.bulk_operation_cap = l.bulk_operation_cap.unwrap_or(limits.bulk_operation_cap);
        }
        if let Some(r) = self.retention {
            let retention = &mut next.retention;
            retention.audit_days = r.audit_days.unwrap_or(retention.audit_days);
            retention.exports_days = r.exports_days.unwrap_or(retention.exports_days);
            retention.jobs_days = r.jobs_days.unwrap_or(retention.jobs_days);
            retention.restore_window_days = r.restore_window_days.unwrap_or(retention.restore_window_days);
        }
        next.moderation_reasons = self.moderation_reasons.unwrap_or(next.moderation_reasons);
        next.mfa_required_roles = self.mfa_required_roles.unwrap_or(next.mfa_required_roles);
        next.oauth_providers = self.oauth_providers.unwrap_or(next.oauth_providers);
        next.security_contacts = self.security_contacts.unwrap_or(next.security_contacts);
        next
    }
}

fn check_reason(reason: &str) -> Option<FieldError> {
    let len = reason.trim().chars().count();
    (len == 0 || len > 500).then(|| FieldError::new("reason", "1 to 500 characters"))
}

/// Store `settings` as the version after `current` (refused with 409 if
/// someone else got there first), with its history item and audit entry.
async fn commit_version(
    state: &AdminState,
    caller: &Caller,
    current: &SettingsVersion,
    settings: Settings,
    reason: &str,
    rolled_back_to: Option<u64>,
) -> Result<SettingsVersion> {
    let next = system_settings::commit(&state.platform.store, &caller.actor(), current, settings, reason, rolled_back_to).await?;
    state.platform.settings.remember(next.clone()).await;
    Ok(next)
}

#[utoipa::path(put, path = "/api/v1/admin/system/config", tag = "system", request_body = UpdateConfig, security(("bearer" = [])),
    responses(
        (status = 200, description = "The new version", body = SettingsVersion),
        (status = 400, description = "Invalid keys (each named, e.g. limits.max_export_rows), or nothing changed", body = shared::platform::error::Problem),
        (status = 403, description = "Missing config:write", body = shared::platform::error::Problem),
        (status = 409, description = "Stale version", body = shared::platform::error::Problem),
    ))]
pub async fn update(State(state): State<AdminState>, caller: Caller, ValidJson(body): ValidJson<UpdateConfig>) -> Result<Json<SettingsVersion>> {
    let current = system_settings::load_current(&state.platform.store).await?;
    let reason = body.reason.clone();
    let sent_version = body.version;
    let next = body.apply_to(&current.settings);
    let mut errors = next.validate();
    errors.extend(check_reason(&reason));
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    if current.version != sent_version {
        return Err(Error::Conflict(format!("the configuration was changed (version {} now, {sent_version} sent); reload and retry", current.version)));
    }
    if next == current.settings {
        return Err(Error::field("body", "changes nothing"));
    }
    Ok(Json(commit_version(&state, &caller, &current, next, &reason, None).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// 1–200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfigHistoryPage {
    /// Versions, newest first.
    pub items: Vec<SettingsVersion>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/admin/system/config/history", tag = "system", params(HistoryQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Stored versions, newest first (version 0, the defaults, is implicit)", body = ConfigHistoryPage),
        (status = 400, description = "Invalid limit or cursor", body = shared::platform::error::Problem),
        (status = 403, description = "Missing config:read", body = shared::platform::error::Problem),
    ))]
pub async fn history(State(state): State<AdminState>, ValidQuery(q): ValidQuery<HistoryQuery>) -> Result<Json<ConfigHistoryPage>> {
    let limit = page_limit(q.limit)?;
    let scope = "config-history";
    let cursors = state.platform.cursors().await?;
    let start: Option<KeyPosition> = q.cursor.as_deref().map(|c| cursors.decode(scope, c)).transpose()?;
    let (page, last) = state.platform.store.query_page(&system_settings::history_spec(), start.as_ref().map(key_of), limit).await?;
    let items = page.into_iter().map(system_settings::from_version_item).collect::<Result<_>>()?;
    let next_cursor = last.as_ref().map(position_of).transpose()?.map(|p| cursors.encode(scope, &p));
    Ok(Json(ConfigHistoryPage { items, next_cursor }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackConfig {
    /// The earlier version to restore (0 restores the built-in defaults).
    pub version: u64,
    pub reason: String,
}

#[utoipa::path(post, path = "/api/v1/admin/system/config/rollback", tag = "system", request_body = RollbackConfig, security(("bearer" = [])),
    responses(
        (status = 200, description = "The new version, equal to the restored one", body = SettingsVersion),
        (status = 400, description = "Invalid fields, or not an earlier version", body = shared::platform::error::Problem),
        (status = 403, description = "Missing config:write", body = shared::platform::error::Problem),
        (status = 404, description = "No such version", body = shared::platform::error::Problem),
        (status = 409, description = "A concurrent change", body = shared::platform::error::Problem),
    ))]
pub async fn rollback(State(state): State<AdminState>, caller: Caller, ValidJson(body): ValidJson<RollbackConfig>) -> Result<Json<SettingsVersion>> {
    if let Some(e) = check_reason(&body.reason) {
        return Err(Error::Validation(vec![e]));
    }
    let store = &state.platform.store;
    let current = system_settings::load_current(store).await?;
    if body.version >= current.version {
        return Err(Error::field("version", format!("must be an earlier version than the current {}", current.version)));
    }
    let target =
        system_settings::load_version(store, body.version).await?.ok_or_else(|| Error::NotFound(format!("no configuration version {}", body.version)))?;
    Ok(Json(commit_version(&state, &caller, &current, target.settings, &body.reason, Some(body.version)).await?))
}
