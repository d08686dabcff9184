//! Audit entries: who did what to which target, when, from where, with what
//! outcome and what changed (secrets redacted). They are written in the same
//! transaction as the change they describe (`Journal::commit`) and are never
//! updated or deleted by the application. People in them are stored by
//! pseudonym with their fields sealed under per-person keys (`subjects`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::store::timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

/// Where a request came from on the map, as the CDN in front of the API
/// geolocated its address (CloudFront's `CloudFront-Viewer-Country`,
/// `-Latitude` and `-Longitude` headers): city-level, personal data, sealed
/// with the address. Read by the sign-in detectors (new country,
/// impossible travel).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = AuditActorLocation)]
pub struct Location {
    /// ISO 3166-1 alpha-2, upper case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
}

impl Location {
    /// Both coordinates, when the CDN sent them.
    pub fn point(&self) -> Option<(f64, f64)> {
        Some((self.latitude?, self.longitude?))
    }
}

/// Who acted and from where; built from the request (see `http::Caller`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Actor {
    /// A user id, or a name such as `cli` or `system` for non-user actors.
    pub id: String,
    /// `user`, `system` or `cli`.
    pub kind: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

impl Actor {
    pub fn system(name: &str) -> Actor {
        Actor { id: name.to_string(), kind: "system".into(), ..Actor::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: String,
    /// RFC 3339 UTC with microseconds.
    pub ts: String,
    pub actor: Actor,
    /// `resource.verb`, e.g. `user.update`, `auth.login`.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub outcome: Outcome,
    /// `{"before": {...}, "after": {...}}` of the changed fields only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub changes: Option<Value>,
    /// Why the action failed or was denied, or the operator's reason.
    /// Stored in the clear: it must not name a person (say "the owner").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The person the changed values describe when that is neither the
    /// target nor the actor (e.g. a chart's owner when a moderator acts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    /// The names of the changed fields (kept when the values are erased).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_fields: Vec<String>,
    /// On reading: which parts of the entry belonged to an erased person
    /// (`actor`, `target`, `about`, `personal_data`) and are gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erased: Vec<String>,
}

/// Attribute names whose values never enter an audit entry (nor an export
/// of a person's data).
pub const SECRET_KEYS: &[&str] = &["password", "password_hash", "token", "secret", "refresh_token", "totp_secret", "recovery_codes"];

impl AuditEntry {
    pub fn new(actor: &Actor, action: &str, target_type: &str, target_id: &str) -> AuditEntry {
        Self::at(Utc::now(), actor, action, target_type, target_id)
    }

    pub fn at(now: DateTime<Utc>, actor: &Actor, action: &str, target_type: &str, target_id: &str) -> AuditEntry {
        AuditEntry {
            id: uuid::Uuid::now_v7().to_string(),
            ts: timestamp(now),
            actor: actor.clone(),
            action: action.to_string(),
            target_type: target_type.to_string(),
            target_id: target_id.to_string(),
            outcome: Outcome::Success,
            changes: None,
            reason: None,
            about: None,
            changed_fields: Vec::new(),
            erased: Vec::new(),
        }
    }

    /// Name the person the changed values describe (see `about`).
    pub fn about(mut self, user_id: impl Into<String>) -> Self {
        self.about = Some(user_id.into());
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Record the difference between two serializable states.
    pub fn changes<B: Serialize, A: Serialize>(mut self, before: Option<&B>, after: Option<&A>) -> Self {
        let before = before.and_then(|b| serde_json::to_value(b).ok());
        let after = after.and_then(|a| serde_json::to_value(a).ok());
        self.changes = Some(diff(before.as_ref(), after.as_ref()));
        self
    }

    pub fn day(&self) -> &str {
        &self.ts[..10]
    }

    pub fn sort_key(&self) -> String {
        format!("{}#{}", self.ts, self.id)
    }
}

/// Every audit entry about a user: those where they are the actor or the
/// target (looked up by their pseudonym, see `subjects`), each once, oldest
/// first, as readers see them. The one place that finds a person's entries.
pub async fn entries_about(store: &crate::audit::Journal, user_id: &str) -> crate::platform::error::Result<Vec<AuditEntry>> {
    let mut entries = crate::audit::pseudonyms::entries_by_actor(store, user_id).await?;
    entries.extend(crate::audit::pseudonyms::entries_for_target(store, "user", user_id).await?);
    let mut seen = std::collections::HashSet::new();
    entries.retain(|e| seen.insert(e.id.clone()));
    entries.sort_by(|a, b| (&a.ts, &a.id).cmp(&(&b.ts, &b.id)));
    Ok(entries)
}

/// The changed top-level fields of two JSON objects, with secrets redacted.
pub fn diff(before: Option<&Value>, after: Option<&Value>) -> Value {
    let empty = Map::new();
    let b = before.and_then(Value::as_object).unwrap_or(&empty);
    let a = after.and_then(Value::as_object).unwrap_or(&empty);
    let mut out_before = Map::new();
    let mut out_after = Map::new();
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        if matches!(key.as_str(), "version" | "updated_at") {
            continue;
        }
        let (bv, av) = (b.get(key), a.get(key));
        if bv == av {
            continue;
        }
        let redact = |v: Option<&Value>| -> Value {
            match v {
                None => Value::Null,
                Some(_) if SECRET_KEYS.contains(&key.as_str()) => Value::String("[redacted]".into()),
                Some(v) => v.clone(),
            }
        };
        if bv.is_some() {
            out_before.insert(key.clone(), redact(bv));
        }
        if av.is_some() {
            out_after.insert(key.clone(), redact(av));
        }
    }
    serde_json::json!({ "before": out_before, "after": out_after })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_keeps_only_changes_and_redacts_secrets() {
        let before = json!({"name": "A", "email": "a@x.io", "password_hash": "h1", "version": 1});
        let after = json!({"name": "B", "email": "a@x.io", "password_hash": "h2", "version": 2});
        let d = diff(Some(&before), Some(&after));
        assert_eq!(d["before"], json!({"name": "A", "password_hash": "[redacted]"}));
        assert_eq!(d["after"], json!({"name": "B", "password_hash": "[redacted]"}));
    }
}
