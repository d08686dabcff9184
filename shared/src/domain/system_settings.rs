//! System configuration that operators change at run time (feature flags,
//! limits, moderation reasons, roles that must use 2FA, retention, allowed
//! OAuth providers): the typed schema with its defaults and validation, its
//! versioned storage, and a short-TTL cached reader every function uses so a
//! change is seen everywhere within `KEEL_SETTINGS_TTL_SECONDS` (≤ 60 s).
//!
//! Keys: `CONFIG / CURRENT` (the version in force) and `CONFIG /
//! CONFIGV#<n, zero-padded>` (every version, written in the same transaction
//! as `CURRENT` and the audit entry). Version 0 is the built-in defaults and
//! is never stored.

use crate::audit::Journal;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::identity::rbac::BuiltinRole;
use crate::platform::error::{FieldError, Result};
use crate::store::{Item, Store, from_item, s, to_item};

pub const PK: &str = "CONFIG";
pub const CURRENT_SK: &str = "CURRENT";
const VERSION_SK_PREFIX: &str = "CONFIGV#";

/// OAuth providers Keel knows how to sign in with.
pub const KNOWN_OAUTH_PROVIDERS: &[&str] = &["google", "microsoft", "github", "oidc"];

// `serde(default)`: a stored version written before a key existed reads
// with that key's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Limits {
    /// Most rows one export may contain.
    pub max_export_rows: u64,
    /// Largest accepted import file, in bytes.
    pub max_import_bytes: u64,
    /// Most items in one bulk request (bulk moderation; at most 100).
    pub bulk_cap: u32,
    /// Largest `limit` a listing accepts (at most 200).
    pub page_size_max: u32,
    /// Most items one bulk update, delete or restore job may change
    /// (`/api/v1/data/bulk/*`).
    pub bulk_operation_cap: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Retention {
    /// Days audit entries are kept (at least a year).
    pub audit_days: u32,
    /// Days finished export files are kept.
    pub exports_days: u32,
    /// Days finished job records are kept.
    pub jobs_days: u32,
    /// Days a soft-deleted user or chart can be restored.
    pub restore_window_days: u32,
}

/// A reason a moderator can give; `code` is what requests send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModerationReason {
    pub code: String,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Settings {
    /// Feature flag name → on/off.
    pub feature_flags: BTreeMap<String, bool>,
    pub limits: Limits,
    pub moderation_reasons: Vec<ModerationReason>,
    /// Holders of any of these roles must sign in with 2FA.
    pub mfa_required_roles: Vec<String>,
    pub retention: Retention,
    /// Which OAuth providers may be used to sign in.
    pub oauth_providers: Vec<String>,
    /// Who is emailed about each new high-severity security event (at most
    /// 10 addresses; none: the events are only listed and counted).
    pub security_contacts: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_export_rows: 1_000_000, max_import_bytes: 50 * 1024 * 1024, bulk_cap: 100, page_size_max: 200, bulk_operation_cap: 10_000 }
    }
}

/// Where the retention sweep records its last run (the jobs worker writes
/// it, the compliance report reads it): `RETENTION#SWEEP / LAST`.
pub const RETENTION_LAST_RUN_PK: &str = "RETENTION#SWEEP";
pub const RETENTION_LAST_RUN_SK: &str = "LAST";

impl Default for Retention {
    fn default() -> Self {
        Retention { audit_days: 2555, exports_days: 7, jobs_days: 30, restore_window_days: 30 }
    }
}

impl Default for Settings {
    fn default() -> Self {
        let reason = |code: &str, label: &str| ModerationReason { code: code.into(), label: label.into() };
        Settings {
            feature_flags: BTreeMap::new(),
            limits: Limits::default(),
            moderation_reasons: vec![
                reason("meets_guidelines", "Meets the community guidelines"),
                reason("spam", "Spam or advertising"),
                reason("abuse", "Harassment, hate or abuse"),
                reason("personal_data", "Exposes personal data"),
                reason("copyright", "Copyright or trademark infringement"),
                reason("misleading", "Misleading or fabricated data"),
                reason("other", "Other (see note)"),
            ],
            mfa_required_roles: vec![BuiltinRole::SuperAdmin.as_str().into(), BuiltinRole::Admin.as_str().into()],
            retention: Retention::default(),
            oauth_providers: KNOWN_OAUTH_PROVIDERS.iter().map(|p| p.to_string()).collect(),
            security_contacts: Vec::new(),
        }
    }
}

fn is_code(value: &str, max: usize) -> bool {
    !value.is_empty() && value.len() <= max && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn range<T: PartialOrd + std::fmt::Display + Copy>(errors: &mut Vec<FieldError>, field: &str, value: T, min: T, max: T) {
    if value < min || value > max {
        errors.push(FieldError::new(field, format!("must be between {min} and {max}")));
    }
}

/// Errors for repeated entries of a list (`field[i]`).
fn duplicates<'a>(errors: &mut Vec<FieldError>, field: &str, values: impl Iterator<Item = &'a str>) {
    let mut seen = HashSet::new();
    for (i, v) in values.enumerate() {
        if !seen.insert(v) {
            errors.push(FieldError::new(format!("{field}[{i}]"), format!("{v:?} is listed twice")));
        }
    }
}

impl Settings {
    /// Check every key against the schema; errors name the key path
    /// (`limits.max_export_rows`, `moderation_reasons[2].code`).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.feature_flags.len() > 100 {
            errors.push(FieldError::new("feature_flags", "at most 100 flags"));
        }
        for name in self.feature_flags.keys() {
            if !is_code(name, 64) {
                errors.push(FieldError::new(format!("feature_flags.{name}"), "flag names are 1 to 64 of a-z, 0-9 and _"));
            }
        }
        let l = &self.limits;
        range(&mut errors, "limits.max_export_rows", l.max_export_rows, 1, 10_000_000);
        range(&mut errors, "limits.max_import_bytes", l.max_import_bytes, 1024, 1024 * 1024 * 1024);
        range(&mut errors, "limits.bulk_cap", l.bulk_cap, 1, 100);
        range(&mut errors, "limits.page_size_max", l.page_size_max, 1, crate::store::MAX_PAGE as u32);
        range(&mut errors, "limits.bulk_operation_cap", l.bulk_operation_cap, 1, 100_000);
        if self.moderation_reasons.is_empty() || self.moderation_reasons.len() > 50 {
            errors.push(FieldError::new("moderation_reasons", "1 to 50 reasons"));
        }
        for (i, r) in self.moderation_reasons.iter().enumerate() {
            if !is_code(&r.code, 40) {
                errors.push(FieldError::new(format!("moderation_reasons[{i}].code"), "1 to 40 of a-z, 0-9 and _"));
            }
            let len = r.label.trim().chars().count();
            if len == 0 || len > 200 || r.label.chars().any(char::is_control) {
                errors.push(FieldError::new(format!("moderation_reasons[{i}].label"), "1 to 200 characters without control characters"));
            }
        }
        let codes: Vec<&str> = self.moderation_reasons.iter().map(|r| r.code.as_str()).collect();
        let mut code_errors = Vec::new();
        duplicates(&mut code_errors, "moderation_reasons", codes.into_iter());
        errors.extend(code_errors.into_iter().map(|e| FieldError::new(format!("{}.code", e.field), e.message)));
        for (i, role) in self.mfa_required_roles.iter().enumerate() {
            if BuiltinRole::parse(role).is_none() {
                errors.push(FieldError::new(format!("mfa_required_roles[{i}]"), format!("unknown role {role:?}")));
            }
        }
        duplicates(&mut errors, "mfa_required_roles", self.mfa_required_roles.iter().map(String::as_str));
        let r = &self.retention;
        range(&mut errors, "retention.audit_days", r.audit_days, 365, 3650);
        range(&mut errors, "retention.exports_days", r.exports_days, 1, 365);
        range(&mut errors, "retention.jobs_days", r.jobs_days, 1, 3650);
        range(&mut errors, "retention.restore_window_days", r.restore_window_days, 1, 365);
        for (i, p) in self.oauth_providers.iter().enumerate() {
            if !KNOWN_OAUTH_PROVIDERS.contains(&p.as_str()) {
                errors.push(FieldError::new(format!("oauth_providers[{i}]"), format!("unknown provider {p:?}; one of {}", KNOWN_OAUTH_PROVIDERS.join(", "))));
            }
        }
        duplicates(&mut errors, "oauth_providers", self.oauth_providers.iter().map(String::as_str));
        if self.security_contacts.len() > 10 {
            errors.push(FieldError::new("security_contacts", "at most 10 addresses"));
        }
        for (i, contact) in self.security_contacts.iter().enumerate() {
            match crate::identity::users::Email::parse(contact) {
                Ok(email) if email.as_str() == contact => {}
                Ok(email) => errors.push(FieldError::new(format!("security_contacts[{i}]"), format!("write it as {:?}", email.as_str()))),
                Err(why) => errors.push(FieldError::new(format!("security_contacts[{i}]"), why)),
            }
        }
        duplicates(&mut errors, "security_contacts", self.security_contacts.iter().map(String::as_str));
        errors
    }

    pub fn moderation_reason(&self, code: &str) -> Option<&ModerationReason> {
        self.moderation_reasons.iter().find(|r| r.code == code)
    }

    /// Whether a principal with these roles must sign in with 2FA.
    pub fn mfa_required_for<S: AsRef<str>>(&self, roles: &[S]) -> bool {
        roles.iter().any(|r| self.mfa_required_roles.iter().any(|m| m == r.as_ref()))
    }

    pub fn feature(&self, name: &str) -> bool {
        self.feature_flags.get(name).copied().unwrap_or(false)
    }
}

/// A version of the settings with who changed it, when and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SettingsVersion {
    /// 0 for the built-in defaults (nothing changed yet).
    pub version: u64,
    pub settings: Settings,
    pub changed_by: Option<String>,
    pub changed_at: Option<String>,
    pub reason: Option<String>,
    /// The version this one restored, for rollbacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<u64>,
}

impl SettingsVersion {
    pub fn defaults() -> SettingsVersion {
        SettingsVersion { version: 0, settings: Settings::default(), changed_by: None, changed_at: None, reason: None, rolled_back_to: None }
    }

    pub fn version_sk(version: u64) -> String {
        format!("{VERSION_SK_PREFIX}{version:010}")
    }

    /// The `CURRENT` item (carrying `version` for optimistic locking).
    pub fn current_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(PK));
        item.insert("sk".into(), s(CURRENT_SK));
        item.insert("type".into(), s("config"));
        Ok(item)
    }

    /// The history item of this version.
    pub fn history_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(PK));
        item.insert("sk".into(), s(SettingsVersion::version_sk(self.version)));
        item.insert("type".into(), s("config_version"));
        Ok(item)
    }
}

/// Store `settings` as the version after `current` (version-checked: a
/// concurrent change gets 409), with its history item and audit entry.
pub async fn commit(
    store: &Journal,
    actor: &crate::audit::Actor,
    current: &SettingsVersion,
    settings: Settings,
    reason: &str,
    rolled_back_to: Option<u64>,
) -> Result<SettingsVersion> {
    use crate::store::Write;
    let next = SettingsVersion {
        version: current.version + 1,
        settings,
        changed_by: Some(actor.id.clone()),
        changed_at: Some(crate::store::timestamp(chrono::Utc::now())),
        reason: Some(reason.trim().to_string()),
        rolled_back_to,
    };
    let stale = || crate::Error::Conflict(format!("the configuration was changed (version {} is no longer current); reload and retry", current.version));
    let current_write = if current.version == 0 {
        Write::put_new(store.table(), next.current_item()?, stale())?
    } else {
        Write::put_versioned(store.table(), next.current_item()?, current.version)?
    };
    let writes = vec![current_write, Write::put_new(store.table(), next.history_item()?, stale())?];
    let action = if rolled_back_to.is_some() { "config.rollback" } else { "config.update" };
    let audit = crate::audit::AuditEntry::new(actor, action, "config", "system")
        .changes(Some(&current.settings), Some(&next.settings))
        .reason(next.reason.clone().unwrap_or_default());
    store.commit(writes, &audit).await?;
    Ok(next)
}

/// The version in force, read from the table (defaults when never changed).
pub async fn load_current(store: &Store) -> Result<SettingsVersion> {
    Ok(store.get(PK, CURRENT_SK).await?.unwrap_or_else(SettingsVersion::defaults))
}

/// One stored version (0 is the defaults).
pub async fn load_version(store: &Store, version: u64) -> Result<Option<SettingsVersion>> {
    if version == 0 {
        return Ok(Some(SettingsVersion::defaults()));
    }
    store.get(PK, &SettingsVersion::version_sk(version)).await
}

/// The query spec of the version history, newest first.
pub fn history_spec() -> crate::store::QuerySpec<'static> {
    crate::store::QuerySpec {
        key_condition: "pk = :pk AND begins_with(sk, :prefix)",
        values: vec![(":pk", s(PK)), (":prefix", s(VERSION_SK_PREFIX))],
        forward: false,
        ..Default::default()
    }
}

pub fn from_version_item(item: Item) -> Result<SettingsVersion> {
    from_item(item)
}

/// Upper bound of the cache lifetime: a change is seen within a minute.
pub const MAX_TTL: Duration = Duration::from_secs(60);

/// The settings as a function sees them: read from the table at most once
/// per `ttl` (per warm Lambda instance), so reads stay cheap and a change
/// propagates without a restart.
#[derive(Clone, Debug)]
pub struct SettingsCache {
    store: Store,
    ttl: Duration,
    cached: Arc<tokio::sync::Mutex<Option<Cached>>>,
}

/// A version and when it was read.
type Cached = (Instant, Arc<SettingsVersion>);

impl SettingsCache {
    pub fn new(store: Store, ttl: Duration) -> SettingsCache {
        SettingsCache { store, ttl: ttl.min(MAX_TTL), cached: Arc::new(tokio::sync::Mutex::new(None)) }
    }

    /// The settings in force, at most `ttl` old.
    pub async fn current(&self) -> Result<Arc<SettingsVersion>> {
        let mut cached = self.cached.lock().await;
        if let Some((read_at, value)) = cached.as_ref()
            && read_at.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        let value = Arc::new(load_current(&self.store).await?);
        *cached = Some((Instant::now(), value.clone()));
        Ok(value)
    }

    /// Remember a version this instance just committed (its writer sees its
    /// own change at once; other instances within the TTL).
    pub async fn remember(&self, version: SettingsVersion) {
        *self.cached.lock().await = Some((Instant::now(), Arc::new(version)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(settings: &Settings) -> Vec<String> {
        settings.validate().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert!(Settings::default().validate().is_empty(), "{:?}", Settings::default().validate());
        assert!(Settings::default().mfa_required_for(&["admin"]));
        assert!(!Settings::default().mfa_required_for(&["moderator"]));
    }

    #[test]
    fn errors_name_the_key() {
        let mut s = Settings::default();
        s.limits.max_export_rows = 0;
        s.limits.bulk_cap = 101;
        s.retention.audit_days = 30;
        s.feature_flags.insert("Bad Name".into(), true);
        s.moderation_reasons.push(ModerationReason { code: "spam".into(), label: " ".into() });
        s.mfa_required_roles = vec!["admin".into(), "root".into(), "admin".into()];
        s.oauth_providers = vec!["myspace".into()];
        assert_eq!(
            fields(&s),
            vec![
                "feature_flags.Bad Name",
                "limits.max_export_rows",
                "limits.bulk_cap",
                "moderation_reasons[7].label",
                "moderation_reasons[7].code",
                "mfa_required_roles[1]",
                "mfa_required_roles[2]",
                "retention.audit_days",
                "oauth_providers[0]",
            ]
        );
    }

    #[test]
    fn versions_stored_before_a_key_existed_still_read() {
        let stored = serde_json::json!({"limits": {"bulk_cap": 5}, "oauth_providers": ["github"]});
        let settings: Settings = serde_json::from_value(stored).unwrap();
        assert_eq!(settings.limits.bulk_cap, 5);
        assert_eq!(settings.limits.page_size_max, Limits::default().page_size_max);
        assert_eq!(settings.mfa_required_roles, Settings::default().mfa_required_roles);
    }

    #[test]
    fn version_keys_sort_in_order() {
        assert!(SettingsVersion::version_sk(9) < SettingsVersion::version_sk(10));
    }
}
