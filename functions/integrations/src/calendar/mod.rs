//! Calendar sync (docs/integrations.md, "Calendar sync"): a signed-in user
//! puts their own events — subscription renewals, scheduled reports' next
//! runs (`events`) — on a calendar, as a private ICS feed (`feeds`, the
//! text from `ics`) or two-way with a CalDAV server (`sync`, through the
//! `caldav` client). `POST /api/v1/integrations/calendar/sync` issues the
//! feed or connects and syncs; `DELETE …/calendar/feeds` and
//! `DELETE …/calendar/caldav` revoke them.

pub mod caldav;
pub mod events;
pub mod feeds;
pub mod ics;
pub mod sync;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::http::Caller;
use shared::http::extract::ValidJson;
use shared::platform::error::{Error, FieldError, Result};
use utoipa::ToSchema;

use crate::{IntegrationsState, ssrf};
use events::EventSource;

const MAX_URL_CHARS: usize = 2048;
const MAX_USERNAME_CHARS: usize = 256;
const MAX_PASSWORD_CHARS: usize = 1024;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CalendarSyncRequest)]
pub struct SyncRequest {
    /// `ics` (issue, or re-issue, your private feed URL) or `caldav`
    /// (connect a CalDAV calendar and sync with it now).
    #[schema(example = "caldav")]
    pub target: Option<String>,
    /// `caldav`: the calendar collection's URL. Needed to connect (with
    /// `credentials`); omitted, the connected calendar syncs again.
    pub calendar_url: Option<String>,
    /// `caldav`: the account's user name and (app) password, sealed and never shown.
    pub credentials: Option<Credentials>,
    /// `renewals`, `scheduled_reports`, or a list of them; default: the
    /// connection's (or feed's) sources, else both.
    #[schema(value_type = Option<Object>, example = json!(["renewals", "scheduled_reports"]))]
    pub events: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CalDavCredentials)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CalendarSyncResult)]
pub struct SyncResult {
    pub target: &'static str,
    /// `ics`: the feed just issued (its URL is shown this once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed: Option<feeds::Issued>,
    /// `caldav`: the connection as stored (no password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<sync::Connection>,
    /// `caldav`: what this sync did (`ok: false` and `error` when the server failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<sync::Summary>,
}

/// `events`: one source or a list; none given: `None`.
fn parse_sources(value: Option<&Value>, errors: &mut Vec<FieldError>) -> Option<Vec<EventSource>> {
    let message = "renewals, scheduled_reports, or a list of them";
    let names: Vec<&Value> = match value {
        None | Some(Value::Null) => return None,
        Some(Value::Array(list)) if !list.is_empty() && list.len() <= EventSource::ALL.len() * 2 => list.iter().collect(),
        Some(Value::String(_)) => vec![value.expect("some")],
        Some(_) => {
            errors.push(FieldError::new("events", message));
            return None;
        }
    };
    let mut sources = Vec::new();
    for name in names {
        match name.as_str().and_then(EventSource::parse) {
            Some(source) => sources.push(source),
            None => {
                errors.push(FieldError::new("events", format!("{message}; not {name}")));
                return None;
            }
        }
    }
    sources.sort();
    sources.dedup();
    Some(sources)
}

/// Sync the caller's own events to a calendar: issue their ICS feed, or
/// connect a CalDAV calendar (URL and credentials) and sync two-way.
#[utoipa::path(
    post,
    path = "/api/v1/integrations/calendar/sync",
    tag = "integrations",
    request_body = SyncRequest,
    responses(
        (status = 200, description = "The feed issued (`ics`: a new URL, the old one dead), or the sync's outcome (`caldav`: see `sync.ok`)", body = SyncResult),
        (status = 400, description = "A field is missing or invalid (named)", body = shared::platform::error::Problem)
    )
)]
pub async fn sync_now(State(state): State<IntegrationsState>, caller: Caller, ValidJson(body): ValidJson<SyncRequest>) -> Result<Response> {
    let mut errors = Vec::new();
    let sources = parse_sources(body.events.as_ref(), &mut errors);
    let target = match body.target.as_deref() {
        Some(target @ ("ics" | "caldav")) => target,
        Some(_) | None => {
            errors.push(FieldError::new("target", "ics or caldav"));
            ""
        }
    };
    if target == "ics" {
        for (present, field) in [(body.calendar_url.is_some(), "calendar_url"), (body.credentials.is_some(), "credentials")] {
            if present {
                errors.push(FieldError::new(field, "only for target caldav"));
            }
        }
    }
    if target == "caldav" {
        check_caldav_fields(&state, &body, &mut errors);
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    if target == "ics" {
        let issued = feeds::issue(&state, &caller, sources.unwrap_or_else(|| EventSource::ALL.to_vec())).await?;
        let result = SyncResult { target: "ics", feed: Some(issued), connection: None, sync: None };
        // The URL is the credential: neither caches nor the idempotency store keep it.
        return Ok((StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], Json(result)).into_response());
    }
    let connect = body.calendar_url.zip(body.credentials).map(|(url, c)| sync::NewConnection { calendar_url: url, username: c.username, password: c.password });
    let stored = sync::connection_for(&state, &caller, connect, sources).await?;
    let (summary, connection) = sync::run(&state, &caller.actor(), stored, sync::Record::Always).await?;
    Ok(Json(SyncResult { target: "caldav", feed: None, connection: Some(connection), sync: Some(summary) }).into_response())
}

fn check_caldav_fields(state: &IntegrationsState, body: &SyncRequest, errors: &mut Vec<FieldError>) {
    match (&body.calendar_url, &body.credentials) {
        (Some(_), None) => errors.push(FieldError::new("credentials", "required with calendar_url: {username, password}")),
        (None, Some(_)) => errors.push(FieldError::new("calendar_url", "required with credentials")),
        _ => {}
    }
    if let Some(url) = &body.calendar_url {
        if url.chars().count() > MAX_URL_CHARS {
            errors.push(FieldError::new("calendar_url", format!("at most {MAX_URL_CHARS} characters")));
        } else if let Err(refusal) = ssrf::check_url(url, state.webhook_policy) {
            errors.push(FieldError::new("calendar_url", refusal.to_string()));
        }
    }
    if let Some(credentials) = &body.credentials {
        let username = credentials.username.trim();
        if username.is_empty() || username.chars().count() > MAX_USERNAME_CHARS || username.contains(':') || username.chars().any(char::is_control) {
            errors.push(FieldError::new("credentials.username", format!("1 to {MAX_USERNAME_CHARS} characters, no colon")));
        }
        if credentials.password.is_empty() || credentials.password.chars().count() > MAX_PASSWORD_CHARS {
            errors.push(FieldError::new("credentials.password", format!("1 to {MAX_PASSWORD_CHARS} characters")));
        }
    }
}

/// Disconnect the caller's CalDAV calendar (its sealed password is deleted;
/// Keel's events stay in the calendar as the user's).
#[utoipa::path(
    delete,
    path = "/api/v1/integrations/calendar/caldav",
    tag = "integrations",
    responses(
        (status = 204, description = "Disconnected"),
        (status = 404, description = "No calendar is connected", body = shared::platform::error::Problem)
    )
)]
pub async fn disconnect(State(state): State<IntegrationsState>, caller: Caller) -> Result<StatusCode> {
    sync::disconnect(&state, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}
