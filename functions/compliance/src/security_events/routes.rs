//! `GET /api/v1/compliance/security-events`, `GET …/{id}` and
//! `POST …/{id}/acknowledge`: what the detectors found, newest first, and
//! an operator's acknowledgement (with a note; audited with the change).

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use shared::audit::AuditEntry;
use shared::http::Caller;
use shared::http::extract::ValidJson;
use shared::platform::error::{Error, Result};
use shared::store::{Item, Store, Write, n, s, timestamp};
use utoipa::{IntoParams, ToSchema};

use super::detectors::{Kind, Severity};
use super::{EVENT_SK, SecurityEvent, event_pk, reveal};
use crate::ComplianceState;

const LIST_MAX: i32 = 500;
const NOTE_MAX: usize = 2_000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// `low`, `medium` or `high`: that severity and above.
    pub severity: Option<String>,
    /// `brute_force`, `password_spraying`, … (see the schema's `kind`).
    pub kind: Option<String>,
    /// RFC 3339; default 30 days before `to`.
    pub from: Option<String>,
    /// RFC 3339; default now.
    pub to: Option<String>,
    /// `true`: only acknowledged, `false`: only open.
    pub acknowledged: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SecurityEventList)]
pub struct EventList {
    pub from: String,
    pub to: String,
    /// Newest first, at most 500.
    pub events: Vec<SecurityEvent>,
    pub open: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SecurityEventAcknowledgement)]
pub struct AcknowledgeRequest {
    /// What was found and done (1 to 2,000 characters).
    pub note: String,
}

/// Security events in a period, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/compliance/security-events",
    tag = "compliance",
    params(EventsQuery),
    responses(
        (status = 200, body = EventList),
        (status = 400, description = "A filter is not valid (named)", body = shared::platform::error::Problem),
    )
)]
pub async fn list(State(state): State<ComplianceState>, Query(query): Query<EventsQuery>) -> Result<Json<EventList>> {
    let severity = match query.severity.as_deref() {
        None => None,
        Some(v) => Some(Severity::parse(v).ok_or_else(|| Error::field("severity", "one of low, medium, high"))?),
    };
    let kind = match query.kind.as_deref() {
        None => None,
        Some(v) => Some(
            *Kind::ALL
                .iter()
                .find(|k| k.as_str() == v)
                .ok_or_else(|| Error::field("kind", format!("one of {}", Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "))))?,
        ),
    };
    // The compliance function's one period rule (default 30 days to now).
    let (from, to) = crate::gdpr::period(&crate::gdpr::PeriodQuery { from: query.from, to: query.to }, Utc::now())?;
    let (from, to) = (timestamp(from), timestamp(to));
    let mut events = super::between(state.platform.store.store(), &from, &to, LIST_MAX).await?;
    events.retain(|e| {
        severity.is_none_or(|s| e.severity >= s) && kind.is_none_or(|k| e.kind == k) && query.acknowledged.is_none_or(|a| e.acknowledged_at.is_some() == a)
    });
    let open = events.iter().filter(|e| e.acknowledged_at.is_none()).count() as u64;
    Ok(Json(EventList { from, to, events, open }))
}

async fn load(store: &Store, id: &str) -> Result<(SecurityEvent, Item)> {
    let item = store.get_item(&event_pk(id), EVENT_SK).await?.ok_or_else(|| Error::NotFound(format!("no security event {id}")))?;
    let event = reveal(store, vec![item.clone()]).await?.pop().ok_or_else(|| Error::internal("security event vanished"))?;
    Ok((event, item))
}

/// One security event.
#[utoipa::path(
    get,
    path = "/api/v1/compliance/security-events/{id}",
    tag = "compliance",
    params(("id" = String, Path, description = "A security event's id")),
    responses((status = 200, body = SecurityEvent), (status = 404, description = "No such event", body = shared::platform::error::Problem))
)]
pub async fn get(State(state): State<ComplianceState>, Path(id): Path<String>) -> Result<Json<SecurityEvent>> {
    Ok(Json(load(state.platform.store.store(), &id).await?.0))
}

/// Acknowledge an event: who, when and the note, audited with the change.
#[utoipa::path(
    post,
    path = "/api/v1/compliance/security-events/{id}/acknowledge",
    tag = "compliance",
    params(("id" = String, Path, description = "A security event's id")),
    request_body = AcknowledgeRequest,
    responses(
        (status = 200, body = SecurityEvent),
        (status = 400, description = "The note is missing or too long", body = shared::platform::error::Problem),
        (status = 404, description = "No such event", body = shared::platform::error::Problem),
        (status = 409, description = "Already acknowledged", body = shared::platform::error::Problem),
    )
)]
pub async fn acknowledge(
    State(state): State<ComplianceState>,
    caller: Caller,
    Path(id): Path<String>,
    ValidJson(body): ValidJson<AcknowledgeRequest>,
) -> Result<Json<SecurityEvent>> {
    let note = body.note.trim();
    if note.is_empty() || note.chars().count() > NOTE_MAX || note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::field("note", format!("1 to {NOTE_MAX} characters without control characters")));
    }
    let journal = &state.platform.store;
    let (event, mut item) = load(journal.store(), &id).await?;
    if let Some(when) = &event.acknowledged_at {
        return Err(Error::Conflict(format!("security event {id} was acknowledged at {when}")));
    }
    let now = timestamp(Utc::now());
    let user_id = caller.principal.user_id.clone();
    let stored_version = event.version;
    for (name, value) in [("acknowledged_at", s(now.clone())), ("acknowledged_by", s(user_id.clone())), ("acknowledgement_note", s(note))] {
        item.insert(name.into(), value);
    }
    item.insert("version".into(), n(stored_version + 1));
    let write = Write::put_versioned(journal.table(), item, stored_version)?;
    let audit = AuditEntry::new(&caller.actor(), "security_event.acknowledge", "security_event", &id)
        .reason(format!("{} ({}) acknowledged", event.kind.as_str(), event.severity.as_str()))
        .changes(Some(&serde_json::json!({"acknowledged_at": null})), Some(&serde_json::json!({"acknowledged_at": now, "acknowledgement_note": note})));
    journal.commit(vec![write], &audit).await?;
    Ok(Json(SecurityEvent {
        acknowledged_at: Some(now),
        acknowledged_by: Some(user_id),
        acknowledgement_note: Some(note.to_string()),
        version: stored_version + 1,
        ..event
    }))
}
