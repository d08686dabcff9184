//! `audit_export` jobs: write a range of the audit log as NDJSON (header
//! with the audit public key, the covering signed digests, the stored
//! entries) to the exports bucket (SSE-KMS), so an auditor can verify it
//! offline with `keel audit verify --file`.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::domain::jobs::Job;
use shared::platform::crypto::sha256_hex;
use shared::platform::error::{Error, Result};

use crate::Worker;

#[derive(Debug, Deserialize)]
struct Params {
    from: String,
    to: String,
    action: Option<String>,
    actor_id: Option<String>,
}

fn time(value: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value).map(|t| t.with_timezone(&Utc)).map_err(|_| Error::internal(format!("audit_export job has a bad time {value:?}")))
}

/// Whether a stored entry (DynamoDB JSON) passes the export's filters.
fn matches(item: &Value, action: Option<&str>, actor_id: Option<&str>) -> bool {
    let entry_action = item["action"]["S"].as_str().unwrap_or("");
    let action_ok = match action {
        Some(a) if a.ends_with('.') => entry_action.starts_with(a),
        Some(a) => entry_action == a,
        None => true,
    };
    let actor_ok = actor_id.is_none_or(|id| item["actor"]["M"]["id"]["S"].as_str() == Some(id));
    action_ok && actor_ok
}

pub async fn run(worker: &Worker, job: &Job) -> Result<Value> {
    let params: Params = serde_json::from_value(job.params.clone()).map_err(|e| Error::internal(format!("audit_export job params: {e}")))?;
    let (from, to) = (time(&params.from)?, time(&params.to)?);
    // The verifiable export holds entries as stored: a user is matched by
    // their pseudonym (shared::audit::pseudonyms), the header keeps what was asked.
    let stored_actor = match &params.actor_id {
        Some(id) => Some(worker.store.subject_keys()?.pseudonym_of(&worker.store, id).await?.unwrap_or_else(|| id.clone())),
        None => None,
    };
    let (action, actor_id) = (params.action.as_deref(), params.actor_id.as_deref());
    let stored_actor = stored_actor.as_deref();
    let filtered = action.is_some() || actor_id.is_some();
    let keep = move |item: &Value| matches(item, action, stored_actor);
    let filters = json!({ "action": action, "actor_id": actor_id });
    let (body, digests, entries) = worker.audit.export(from, to, filters, filtered.then_some(&keep as &(dyn Fn(&Value) -> bool + Sync))).await?;
    let sha256 = sha256_hex(&body);
    let bytes = body.len();
    let key = format!("audit-exports/{}.ndjson", job.id);
    worker.put_export(&key, "application/x-ndjson", body).await?;
    Ok(
        json!({ "bucket": worker.config.exports_bucket, "key": key, "sha256": sha256, "bytes": bytes, "digests": digests, "entries": entries, "complete": !filtered }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_action_prefix_and_actor() {
        let item = json!({ "action": { "S": "user.update" }, "actor": { "M": { "id": { "S": "u1" } } } });
        assert!(matches(&item, Some("user."), None));
        assert!(matches(&item, Some("user.update"), Some("u1")));
        assert!(!matches(&item, Some("user.create"), None));
        assert!(!matches(&item, None, Some("u2")));
        assert!(matches(&item, None, None));
    }
}
