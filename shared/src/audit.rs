//! Audit entries: who did what to which target, when, from where, with what
//! outcome and what changed (secrets redacted). They are written in the same
//! transaction as the change they describe (`Store::commit`) and are never
//! updated or deleted by the application.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Result;
use crate::store::{Item, QuerySpec, Store, from_item, s, timestamp, to_item};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

/// Who acted and from where; built from the request (see `http::Caller`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Actor {
    /// A user id, or a name such as `cli` or `system` for non-user actors.
    pub id: String,
    /// `user`, `system` or `cli`.
    pub kind: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
        }
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

    pub fn to_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        let sk = self.sort_key();
        item.insert("pk".into(), s(format!("AUDIT#{}", self.day())));
        item.insert("sk".into(), s(sk.clone()));
        item.insert("gsi1pk".into(), s(format!("ACTOR#{}", self.actor.id)));
        item.insert("gsi1sk".into(), s(sk.clone()));
        item.insert("gsi2pk".into(), s(format!("TARGET#{}#{}", self.target_type, self.target_id)));
        item.insert("gsi2sk".into(), s(sk));
        item.insert("type".into(), s("audit"));
        Ok(item)
    }
}

/// Every audit entry about a user: those where they are the actor (gsi1
/// `ACTOR#<id>`) or the target (gsi2 `TARGET#user#<id>`), each once, oldest
/// first. The one place that finds a person's entries (subject exports
/// read them through it; pseudonymized entries will be found here too).
pub async fn entries_about(store: &Store, user_id: &str) -> Result<Vec<AuditEntry>> {
    let mut entries: Vec<AuditEntry> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, key, value) in [("gsi1", "gsi1pk", format!("ACTOR#{user_id}")), ("gsi2", "gsi2pk", format!("TARGET#user#{user_id}"))] {
        let condition = format!("{key} = :pk");
        let spec = QuerySpec { index: Some(index), key_condition: &condition, values: vec![(":pk", s(value))], forward: true, ..Default::default() };
        let mut start = None;
        loop {
            let (items, next) = store.query_page(&spec, start, 1000).await?;
            for item in items {
                let entry: AuditEntry = from_item(item)?;
                if seen.insert(entry.id.clone()) {
                    entries.push(entry);
                }
            }
            match next {
                Some(key) => start = Some(key),
                None => break,
            }
        }
    }
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

    #[test]
    fn keys_place_entry_by_day_actor_and_target() {
        let e = AuditEntry::new(&Actor::system("test"), "user.create", "user", "u1");
        let item = e.to_item().unwrap();
        assert_eq!(item["pk"].as_s().unwrap(), &format!("AUDIT#{}", &e.ts[..10]));
        assert_eq!(item["gsi1pk"].as_s().unwrap(), "ACTOR#test");
        assert_eq!(item["gsi2pk"].as_s().unwrap(), "TARGET#user#u1");
    }
}
