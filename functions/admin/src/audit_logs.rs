//! `GET /api/v1/admin/audit-logs`: the audit trail, newest first, filtered by
//! actor, target, action, outcome and time. Actor and target filters use
//! their indexes; otherwise the day partitions are walked backwards.
//! `GET /api/v1/admin/audit-logs/{entry_id}`: one entry. Personal data inside
//! entries is masked for principals without `pii:read`.

use aws_sdk_dynamodb::types::AttributeValue;
use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use shared::audit::{AuditEntry, Outcome};
use shared::http::Principal;
use shared::http::extract::{ValidQuery, page_limit};
use shared::identity::rbac::Permission;
use shared::platform::error::{Error, Result};
use shared::platform::time;
use shared::store::cursor::{KeyPosition, key_of, position_of};
use shared::store::{QuerySpec, s, timestamp};
use utoipa::{IntoParams, ToSchema};

use crate::{AdminState, masking};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries by this actor (user id, or `cli`/`system`).
    pub actor_id: Option<String>,
    /// With `target_id`: entries about this target, e.g. `user`.
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// Exact action (`user.update`), or a prefix ending in `.` (`user.`).
    pub action: Option<String>,
    pub outcome: Option<Outcome>,
    /// From this time (RFC 3339); default 30 days before `to` when no actor
    /// or target is given.
    pub from: Option<String>,
    /// Up to this time (RFC 3339); default now.
    pub to: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

/// Where a listing stopped.
#[derive(Debug, Serialize, Deserialize)]
enum Position {
    Index(KeyPosition),
    Day { day: String, key: Option<KeyPosition> },
}

const MAX_READS_PER_PAGE: usize = 40;
const MAX_DAYS: i64 = 366;

#[utoipa::path(get, path = "/api/v1/admin/audit-logs", tag = "audit", params(AuditQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of audit entries, newest first", body = AuditPage),
        (status = 400, description = "Invalid filter or cursor", body = shared::platform::error::Problem),
        (status = 403, description = "Missing audit:read", body = shared::platform::error::Problem),
    ))]
pub async fn list(State(state): State<AdminState>, principal: Principal, ValidQuery(q): ValidQuery<AuditQuery>) -> Result<Json<AuditPage>> {
    let limit = page_limit(q.limit)?;
    let to = time::field("to", q.to.as_deref())?.unwrap_or_else(Utc::now);
    let from = time::field("from", q.from.as_deref())?;
    if from.is_some_and(|f| f > to) {
        return Err(Error::field("from", "must not be after to"));
    }
    if q.target_type.is_some() != q.target_id.is_some() {
        return Err(Error::field(if q.target_type.is_some() { "target_id" } else { "target_type" }, "target_type and target_id go together"));
    }
    for (field, value) in [("actor_id", &q.actor_id), ("target_type", &q.target_type), ("target_id", &q.target_id), ("action", &q.action)] {
        if value.as_ref().is_some_and(|v| v.is_empty() || v.len() > 200) {
            return Err(Error::field(field, "must be 1 to 200 characters"));
        }
    }
    let scope = format!("audit|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}", q.actor_id, q.target_type, q.target_id, q.action, q.outcome, q.from, q.to);
    let cursors = state.platform.cursors().await?;
    let position: Option<Position> = q.cursor.as_deref().map(|c| cursors.decode(&scope, c)).transpose()?;

    // Filters applied after the key condition.
    let mut filters = Vec::new();
    let mut values: Vec<(&str, AttributeValue)> = Vec::new();
    let mut names: Vec<(&str, &str)> = Vec::new();
    if let Some(action) = &q.action {
        if action.ends_with('.') {
            filters.push("begins_with(#action, :action)");
        } else {
            filters.push("#action = :action");
        }
        names.push(("#action", "action"));
        values.push((":action", s(action.clone())));
    }
    if let Some(outcome) = q.outcome {
        filters.push("outcome = :outcome");
        values.push((":outcome", s(serde_json::to_value(outcome).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default())));
    }
    // People are stored by pseudonym (shared::audit::pseudonyms).
    let actor_id = match &q.actor_id {
        Some(id) => Some(stored_person(&state, id).await?),
        None => None,
    };
    let target_id = match (&q.target_type, &q.target_id) {
        (Some(t), Some(id)) if t == "user" => Some(stored_person(&state, id).await?),
        (_, id) => id.clone(),
    };
    let mut index_partition = None;
    if let Some(actor) = &actor_id {
        index_partition = Some(("gsi1", "gsi1pk", "gsi1sk", format!("ACTOR#{actor}")));
        if let (Some(t), Some(id)) = (&q.target_type, &target_id) {
            filters.push("target_type = :tt AND target_id = :tid");
            values.push((":tt", s(t.clone())));
            values.push((":tid", s(id.clone())));
        }
    } else if let (Some(t), Some(id)) = (&q.target_type, &target_id) {
        index_partition = Some(("gsi2", "gsi2pk", "gsi2sk", format!("TARGET#{t}#{id}")));
    }
    let filter = filters.join(" AND ");
    // Sort keys are `ts#id`; `~` sorts after every id.
    let lower = from.map(timestamp).unwrap_or_else(|| "0".into());
    let upper = format!("{}~", timestamp(to));

    let mut items = Vec::new();
    let mut reads = 0;
    let next: Option<Position> = if let Some((index, pk_name, sk_name, pk)) = index_partition {
        let start = match position {
            Some(Position::Index(k)) => Some(k),
            None => None,
            Some(_) => return Err(Error::field("cursor", "invalid or expired cursor; start again without one")),
        };
        let condition = format!("{pk_name} = :pk AND {sk_name} BETWEEN :lower AND :upper");
        let spec = spec_for(Some(index), &condition, &filter, &names, &values, &pk, &lower, &upper);
        let (page, last) = state.platform.store.query_filled(&spec, start.as_ref().map(key_of), limit, MAX_READS_PER_PAGE).await?;
        items.extend(page);
        last.as_ref().map(position_of).transpose()?.map(Position::Index)
    } else {
        let from = from.unwrap_or(to - Duration::days(30));
        if (to - from).num_days() > MAX_DAYS {
            return Err(Error::field("from", format!("without an actor or target filter the range is at most {MAX_DAYS} days")));
        }
        let first_day = from.date_naive();
        let (mut day, mut start) = match position {
            Some(Position::Day { day, key }) => (NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|_| Error::field("cursor", "invalid cursor"))?, key),
            None => (to.date_naive(), None),
            Some(_) => return Err(Error::field("cursor", "invalid or expired cursor; start again without one")),
        };
        loop {
            if day < first_day {
                break None;
            }
            let pk = format!("AUDIT#{}", day.format("%Y-%m-%d"));
            let spec = spec_for(None, "pk = :pk AND sk BETWEEN :lower AND :upper", &filter, &names, &values, &pk, &lower, &upper);
            let (page, last) = state.platform.store.query_page(&spec, start.as_ref().map(key_of), limit - items.len() as i32).await?;
            reads += 1;
            for item in page {
                items.push(item);
            }
            start = last.as_ref().map(position_of).transpose()?;
            if start.is_none() {
                day = match day.pred_opt() {
                    Some(d) => d,
                    None => break None,
                };
            }
            let full = items.len() >= limit as usize;
            if full || reads >= MAX_READS_PER_PAGE {
                break if day < first_day { None } else { Some(Position::Day { day: day.format("%Y-%m-%d").to_string(), key: start }) };
            }
        }
    };
    let mut items = state.platform.store.reveal_audit(items).await?;
    // Data shaping, not access: personal fields are masked without pii:read.
    if !principal.can(Permission::PiiRead) {
        items.iter_mut().for_each(mask);
    }
    let next_cursor = next.map(|p| cursors.encode(&scope, &p));
    Ok(Json(AuditPage { items, next_cursor }))
}

/// How a person filtered on is stored: their pseudonym when they have one;
/// anything else (a system actor, a pseudonym, an id never audited) as is.
async fn stored_person(state: &AdminState, id: &str) -> Result<String> {
    let keys = state.platform.store.subject_keys()?;
    Ok(keys.pseudonym_of(&state.platform.store, id).await?.unwrap_or_else(|| id.to_string()))
}

/// Newest first within `lower..=upper` of a partition, with the filters.
#[allow(clippy::too_many_arguments)]
fn spec_for<'a>(
    index: Option<&'a str>,
    key_condition: &'a str,
    filter: &'a str,
    names: &[(&'a str, &'a str)],
    values: &[(&'a str, AttributeValue)],
    pk: &str,
    lower: &str,
    upper: &str,
) -> QuerySpec<'a> {
    let mut values = values.to_vec();
    values.extend([(":pk", s(pk)), (":lower", s(lower)), (":upper", s(upper))]);
    QuerySpec { index, key_condition, filter, names: names.to_vec(), values, ..QuerySpec::default() }
}

/// How far an entry's timestamp may be from the time in its UUIDv7 id: both
/// are taken from the clock when the entry is built (`AuditEntry::new`).
const ID_CLOCK_WINDOW_SECONDS: i64 = 5;

#[utoipa::path(get, path = "/api/v1/admin/audit-logs/{entry_id}", tag = "audit", security(("bearer" = [])),
    params(("entry_id" = String, Path, description = "The entry's id (a UUIDv7)")),
    responses(
        (status = 200, description = "The audit entry", body = AuditEntry),
        (status = 400, description = "Not a UUIDv7", body = shared::platform::error::Problem),
        (status = 403, description = "Missing audit:read", body = shared::platform::error::Problem),
        (status = 404, description = "No such entry", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<AdminState>, principal: Principal, Path(entry_id): Path<String>) -> Result<Json<AuditEntry>> {
    // Entry ids are UUIDv7: their millisecond timestamp names the day
    // partition and a narrow sort-key window inside it, so no lookup item
    // is needed (one Query of a few seconds of entries per day touched).
    let id = uuid::Uuid::parse_str(&entry_id)
        .ok()
        .filter(|u| u.get_version_num() == 7)
        .ok_or_else(|| Error::field("entry_id", "must be a UUIDv7 audit entry id"))?;
    let (secs, nanos) = id.get_timestamp().ok_or_else(|| Error::field("entry_id", "must be a UUIDv7 audit entry id"))?.to_unix();
    let at = DateTime::from_timestamp(secs as i64, nanos).ok_or_else(|| Error::field("entry_id", "timestamp out of range"))?;
    let window = Duration::seconds(ID_CLOCK_WINDOW_SECONDS);
    let (lower, upper) = (timestamp(at - window), format!("{}~", timestamp(at + window)));
    let mut days = vec![(at - window).date_naive(), (at + window).date_naive()];
    days.dedup();
    for day in days {
        let spec = QuerySpec {
            key_condition: "pk = :pk AND sk BETWEEN :lower AND :upper",
            filter: "id = :id",
            values: vec![
                (":pk", s(format!("AUDIT#{}", day.format("%Y-%m-%d")))),
                (":lower", s(lower.clone())),
                (":upper", s(upper.clone())),
                (":id", s(entry_id.clone())),
            ],
            forward: true,
            ..QuerySpec::default()
        };
        let mut pages = state.platform.store.query_pages(&spec, None);
        while let Some(items) = pages.next(Some(1000)).await? {
            if let Some(item) = items.into_iter().next() {
                let mut entry = state.platform.store.reveal_audit(vec![item]).await?.remove(0);
                // Data shaping, not access: personal fields are masked without pii:read.
                if !principal.can(Permission::PiiRead) {
                    mask(&mut entry);
                }
                return Ok(Json(entry));
            }
        }
    }
    Err(Error::NotFound(format!("no audit entry {entry_id}")))
}

/// Hide personal data in an entry: the actor's address and agent, and
/// personal fields inside the recorded changes.
fn mask(entry: &mut AuditEntry) {
    entry.actor.source_ip = entry.actor.source_ip.as_deref().map(masking::ip);
    entry.actor.user_agent = entry.actor.user_agent.as_ref().map(|_| "[masked]".to_string());
    // The country stays (no more precise than a masked address); the
    // coordinates go.
    if let Some(location) = entry.actor.location.as_mut() {
        (location.latitude, location.longitude) = (None, None);
    }
    if let Some(changes) = entry.changes.as_mut() {
        for side in ["before", "after"] {
            if let Some(obj) = changes.get_mut(side).and_then(|v| v.as_object_mut()) {
                if let Some(v) = obj.get_mut("email") {
                    *v = serde_json::Value::String(v.as_str().map(masking::email).unwrap_or_default());
                }
                if let Some(v) = obj.get_mut("name") {
                    *v = serde_json::Value::String(v.as_str().map(masking::name).unwrap_or_default());
                }
            }
        }
    }
}
