//! Two-way sync of a user's events with their CalDAV calendar.
//!
//! A connection (`CALDAV#<user id> / CONNECTION`, listed on gsi1
//! `CALDAVCONNECTIONS`) holds the collection URL, the user name, the
//! password sealed with the data key (bound to the user), the sync token,
//! and what Keel knows of each event it put there (path, last ETag seen,
//! fingerprint of Keel's fields, SEQUENCE, dismissed, edited by the user).
//!
//! A sync first pulls (`sync-collection` from the stored token; a token the
//! server no longer knows means a full listing), then pushes:
//! - an event Keel put there and the user deleted is *dismissed*: never
//!   pushed again while its source lasts;
//! - an event the user edited (its ETag changed) keeps the user's edit
//!   until Keel's fields change at the source (a renewal moves, a schedule's
//!   next run comes): then Keel's version replaces it;
//! - new events are created with `If-None-Match: *`, changed ones replaced
//!   and gone ones deleted with `If-Match: <the last ETag seen>`. A 412
//!   means the server's copy changed after the pull: Keel reads it; gone,
//!   it is dismissed; else, the source having changed, Keel's version is
//!   written over it with the new ETag (and counted as a conflict);
//! - resources Keel did not create are never touched.
//!
//! Syncs run when the user asks, and every 15 minutes for every
//! connection (`resync_all`, as the system).
//!
//! A sync stops after `SYNC_BUDGET` (what it did is kept; the next sync
//! continues). Whatever the outcome, the state reached is committed with
//! the audit entry, and the outcome is recorded on the hub's `caldav`
//! health.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shared::audit::{Actor, AuditEntry, Outcome};
use shared::domain::integration_health;
use shared::http::Caller;
use shared::platform::crypto::Sealed;
use shared::platform::error::{Error, Result};
use shared::store::{Item, QuerySpec, Write, attr_s, from_item, s, timestamp, to_item};
use utoipa::ToSchema;

use super::caldav::{CalDavError, Client, Written};
use super::events::{self, CalendarEvent, EventSource};
use super::ics;
use crate::IntegrationsState;

pub const LIST_PK: &str = "CALDAVCONNECTIONS";
/// How long one sync may push (the function's timeout is 29 s).
pub const SYNC_BUDGET: Duration = Duration::from_secs(12);
/// The hub's health record for CalDAV.
pub const HEALTH_NAME: &str = "caldav";

fn pk(user_id: &str) -> String {
    format!("CALDAV#{user_id}")
}

fn seal_context(user_id: &str) -> String {
    format!("caldav:{user_id}")
}

/// A connection as shown and audited (no password, no per-event state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = CalDavConnection)]
pub struct Connection {
    pub user_id: String,
    pub calendar_url: String,
    pub username: String,
    pub events: Vec<EventSource>,
    #[serde(default)]
    pub sync_token: Option<String>,
    pub connected_at: String,
    #[serde(default)]
    pub last_synced_at: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
    pub version: u64,
}

/// What Keel knows of one of its events on the server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub etag: Option<String>,
    pub fingerprint: String,
    pub sequence: u32,
    #[serde(default)]
    pub dismissed: bool,
    #[serde(default)]
    pub user_edited: bool,
}

/// A stored connection with its sealed password and event states.
#[derive(Debug, Clone)]
pub struct Stored {
    pub connection: Connection,
    pub password: Sealed,
    pub entries: BTreeMap<String, Entry>,
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
#[schema(as = CalDavSyncSummary)]
pub struct Summary {
    pub ok: bool,
    pub created: u32,
    pub updated: u32,
    pub deleted: u32,
    /// Events the user deleted in their calendar, seen by this sync (not pushed again).
    pub dismissed: u32,
    /// Events the user edited, whose edit is kept (Keel's fields unchanged at the source).
    pub user_edits_kept: u32,
    /// 412s: the server's copy changed after the pull; resolved by the rule above.
    pub conflicts: u32,
    pub unchanged: u32,
    /// The budget ran out; the next sync continues.
    pub incomplete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub async fn load(state: &IntegrationsState, user_id: &str) -> Result<Option<Stored>> {
    let Some(item) = state.platform.store.get_item(&pk(user_id), "CONNECTION").await? else { return Ok(None) };
    stored_of(item).map(Some)
}

fn stored_of(item: Item) -> Result<Stored> {
    let password = serde_json::from_str(attr_s(&item, "password_sealed").unwrap_or("null")).map_err(|e| Error::internal(format!("caldav password: {e}")))?;
    let entries = serde_json::from_str(attr_s(&item, "entries").unwrap_or("{}")).map_err(|e| Error::internal(format!("caldav entries: {e}")))?;
    Ok(Stored { connection: from_item(item)?, password, entries })
}

fn item_of(stored: &Stored) -> Result<Item> {
    let mut item = to_item(&stored.connection)?;
    item.insert("pk".into(), s(pk(&stored.connection.user_id)));
    item.insert("sk".into(), s("CONNECTION"));
    item.insert("type".into(), s("caldav_connection"));
    item.insert("gsi1pk".into(), s(LIST_PK));
    item.insert("gsi1sk".into(), s(stored.connection.user_id.clone()));
    item.insert("password_sealed".into(), s(to_json(&stored.password)?));
    item.insert("entries".into(), s(to_json(&stored.entries)?));
    Ok(item)
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::internal(e.to_string()))
}

/// A calendar to connect, as the request gives it.
pub struct NewConnection {
    pub calendar_url: String,
    pub username: String,
    pub password: String,
}

/// The connection a sync request means: `new` connected (replacing any;
/// the sources default to the previous connection's, else all), or the
/// stored one, its sources changed if `sources` differ. None stored and
/// none given: a 400 naming `calendar_url`.
pub async fn connection_for(state: &IntegrationsState, caller: &Caller, new: Option<NewConnection>, sources: Option<Vec<EventSource>>) -> Result<Stored> {
    let before = load(state, &caller.principal.user_id).await?;
    match (new, before) {
        (Some(new), before) => {
            let sources = sources.or_else(|| before.as_ref().map(|b| b.connection.events.clone())).unwrap_or_else(|| EventSource::ALL.to_vec());
            connect(state, caller, before, new, sources).await
        }
        (None, Some(stored)) => match sources {
            Some(sources) if sources != stored.connection.events => set_sources(state, caller, stored, sources).await,
            _ => Ok(stored),
        },
        (None, None) => Err(Error::field("calendar_url", "no CalDAV calendar is connected: give calendar_url and credentials")),
    }
}

/// Store (or replace) the caller's connection; a new calendar URL starts
/// with no events known there.
async fn connect(state: &IntegrationsState, caller: &Caller, before: Option<Stored>, new: NewConnection, sources: Vec<EventSource>) -> Result<Stored> {
    let user_id = caller.principal.user_id.clone();
    let sealed = state.platform.envelope.seal(new.password.as_bytes(), &seal_context(&user_id)).await?;
    let same_calendar = before.as_ref().filter(|b| b.connection.calendar_url == new.calendar_url);
    let connection = Connection {
        user_id: user_id.clone(),
        calendar_url: new.calendar_url,
        username: new.username,
        events: sources,
        sync_token: same_calendar.and_then(|b| b.connection.sync_token.clone()),
        connected_at: timestamp(chrono::Utc::now()),
        last_synced_at: same_calendar.and_then(|b| b.connection.last_synced_at.clone()),
        last_error: None,
        version: before.as_ref().map_or(1, |b| b.connection.version + 1),
    };
    let stored = Stored { connection, password: sealed, entries: same_calendar.map(|b| b.entries.clone()).unwrap_or_default() };
    let store = &state.platform.store;
    let write = match &before {
        None => Write::put_new(store.table(), item_of(&stored)?, Error::Conflict("connected meanwhile; try again".into()))?,
        Some(b) => Write::put_versioned(store.table(), item_of(&stored)?, b.connection.version)?,
    };
    let audit = AuditEntry::new(&caller.actor(), "calendar.caldav_connected", "calendar_caldav", &user_id)
        .changes(before.as_ref().map(|b| &b.connection), Some(&stored.connection));
    store.commit(vec![write], &audit).await?;
    Ok(stored)
}

/// Change what a connection syncs (events of sources no longer wanted are
/// deleted from the calendar by the sync that follows).
async fn set_sources(state: &IntegrationsState, caller: &Caller, before: Stored, sources: Vec<EventSource>) -> Result<Stored> {
    let mut after = before.clone();
    after.connection.events = sources;
    after.connection.version = before.connection.version + 1;
    let store = &state.platform.store;
    let audit = AuditEntry::new(&caller.actor(), "calendar.caldav_updated", "calendar_caldav", &after.connection.user_id)
        .changes(Some(&before.connection), Some(&after.connection));
    store.commit(vec![Write::put_versioned(store.table(), item_of(&after)?, before.connection.version)?], &audit).await?;
    Ok(after)
}

/// Forget the caller's connection (and its sealed password). Keel's events
/// stay in the calendar: they are the user's copy now.
pub async fn disconnect(state: &IntegrationsState, caller: &Caller) -> Result<()> {
    let user_id = caller.principal.user_id.clone();
    let before = load(state, &user_id).await?.ok_or_else(|| Error::NotFound("no CalDAV calendar is connected".into()))?;
    let store = &state.platform.store;
    let audit = AuditEntry::new(&caller.actor(), "calendar.caldav_disconnected", "calendar_caldav", &user_id).changes::<_, ()>(Some(&before.connection), None);
    store.commit(vec![Write::delete_versioned(store.table(), &pk(&user_id), "CONNECTION", before.connection.version)?], &audit).await
}

/// How many users have connected a calendar (the hub's status).
pub async fn count(state: &IntegrationsState) -> Result<u64> {
    let spec = QuerySpec { index: Some("gsi1"), key_condition: "gsi1pk = :pk", values: vec![(":pk", s(LIST_PK))], ..Default::default() };
    state.platform.store.query_count(&spec).await
}

/// Whether a sync that changed nothing is committed and audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// A user's sync: always (they asked; the audit log shows it).
    Always,
    /// The scheduled re-sync: only when something changed or failed, so a
    /// quiet calendar does not add an audit entry every 15 minutes.
    IfChanged,
}

/// Sync a stored connection now, as `actor` (the user, or the scheduled
/// re-sync); the state reached is committed with its audit entry, the
/// outcome recorded on the health.
pub async fn run(state: &IntegrationsState, actor: &Actor, mut stored: Stored, record: Record) -> Result<(Summary, Connection)> {
    let before = stored.connection.clone();
    let entries_before = stored.entries.clone();
    let user_id = before.user_id.clone();
    let now = chrono::Utc::now();
    let store = &state.platform.store;
    let desired = events::for_user(store.store(), &user_id, &before.events, now).await?;
    let password = state.platform.envelope.open(&stored.password, &seal_context(&user_id)).await?;
    let password = String::from_utf8(password).map_err(|_| Error::internal("caldav password is not text"))?;
    let mut summary = Summary::default();
    let outcome = match Client::connect(&before.calendar_url, &before.username, &password, state.webhook_policy).await {
        Ok(client) => two_way(&client, &mut stored, &desired, now, Instant::now() + SYNC_BUDGET, &mut summary).await,
        Err(e) => Err(e),
    };
    summary.ok = outcome.is_ok();
    summary.error = outcome.as_ref().err().map(ToString::to_string);
    let health = outcome.map_err(|e| e.reason());
    let quiet = summary.ok && before.last_error.is_none() && stored.connection.sync_token == before.sync_token && stored.entries == entries_before;
    if quiet && record == Record::IfChanged {
        integration_health::record(store.store(), HEALTH_NAME, health, now).await?;
        return Ok((summary, before));
    }
    stored.connection.last_synced_at = Some(timestamp(now));
    stored.connection.last_error = summary.error.clone();
    stored.connection.version = before.version + 1;
    let mut audit = AuditEntry::new(actor, "calendar.caldav_synced", "calendar_caldav", &user_id)
        .changes(Some(&before), Some(&stored.connection))
        .outcome(if summary.ok { Outcome::Success } else { Outcome::Failure });
    // The reason names the kind of failure only: the server's own words
    // (kept on the connection for its user) may name a person.
    if let Err(reason) = &health {
        audit = audit.reason(reason.clone());
    }
    store.commit(vec![Write::put_versioned(store.table(), item_of(&stored)?, before.version)?], &audit).await?;
    integration_health::record(store.store(), HEALTH_NAME, health, now).await?;
    Ok((summary, stored.connection))
}

/// What a scheduled re-sync did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Resynced {
    pub synced: u32,
    /// Syncs whose server failed (recorded on each connection and the health).
    pub failed: u32,
    /// Left for the next run: the deadline came, or the user is not active.
    pub skipped: u32,
}

/// How many connections a re-sync syncs at once.
const RESYNC_CONCURRENCY: usize = 4;

/// Sync every connected calendar (those synced longest ago first), as the
/// system, starting none after `deadline`; the scheduled re-sync
/// (`integrations-calendar`, every 15 minutes), so that changes made on
/// either side arrive without the user asking.
pub async fn resync_all(state: &IntegrationsState, deadline: Instant) -> Result<Resynced> {
    use futures::StreamExt as _;
    let spec = QuerySpec { index: Some("gsi1"), key_condition: "gsi1pk = :pk", values: vec![(":pk", s(LIST_PK))], forward: true, ..Default::default() };
    let mut connections = state.platform.store.query_all(&spec).await?.into_iter().map(stored_of).collect::<Result<Vec<_>>>()?;
    connections.sort_by(|a, b| a.connection.last_synced_at.cmp(&b.connection.last_synced_at));
    let actor = Actor::system("calendar-resync");
    let outcomes: Vec<std::result::Result<Option<bool>, Error>> = futures::stream::iter(connections)
        .map(|stored| {
            let actor = &actor;
            async move {
                if Instant::now() > deadline {
                    return Ok(None);
                }
                let user = shared::identity::users::get(state.platform.store.store(), &stored.connection.user_id).await?;
                if user.is_none_or(|u| u.status != shared::identity::users::UserStatus::Active) {
                    return Ok(None);
                }
                run(state, actor, stored, Record::IfChanged).await.map(|(summary, _)| Some(summary.ok))
            }
        })
        .buffer_unordered(RESYNC_CONCURRENCY)
        .collect()
        .await;
    let mut resynced = Resynced::default();
    for outcome in outcomes {
        match outcome {
            Ok(Some(true)) => resynced.synced += 1,
            Ok(Some(false)) => resynced.failed += 1,
            Ok(None) => resynced.skipped += 1,
            // The user synced at the same moment (a version conflict), or
            // the table failed: the next run tries again.
            Err(e) => {
                tracing::warn!(error = %e, "calendar re-sync of one connection failed");
                resynced.failed += 1;
            }
        }
    }
    Ok(resynced)
}

/// Pull the server's changes into `stored`, then push Keel's.
async fn two_way(
    client: &Client,
    stored: &mut Stored,
    desired: &[CalendarEvent],
    now: chrono::DateTime<chrono::Utc>,
    deadline: Instant,
    summary: &mut Summary,
) -> std::result::Result<(), CalDavError> {
    pull(client, stored, summary).await?;
    let wanted: HashMap<&str, &CalendarEvent> = desired.iter().map(|e| (e.uid.as_str(), e)).collect();
    for event in desired {
        if Instant::now() > deadline {
            summary.incomplete = true;
            return Ok(());
        }
        push(client, stored, event, now, summary).await?;
    }
    let gone: Vec<String> = stored.entries.keys().filter(|uid| !wanted.contains_key(uid.as_str())).cloned().collect();
    for uid in gone {
        if Instant::now() > deadline {
            summary.incomplete = true;
            return Ok(());
        }
        let entry = stored.entries[&uid].clone();
        if !entry.dismissed {
            remove(client, &entry, summary).await?;
        }
        stored.entries.remove(&uid);
    }
    // Keel's own writes moved the collection's token: read past them now
    // (their ETags are the ones kept, so they are no edits), so that the
    // next sync of a quiet calendar finds nothing to do.
    if summary.created + summary.updated + summary.deleted + summary.conflicts > 0 {
        pull(client, stored, summary).await?;
    }
    Ok(())
}

async fn pull(client: &Client, stored: &mut Stored, summary: &mut Summary) -> std::result::Result<(), CalDavError> {
    let token = stored.connection.sync_token.clone();
    let (report, full) = match client.sync_collection(token.as_deref()).await {
        Ok(report) => (report, token.is_none()),
        Err(CalDavError::InvalidSyncToken) => (client.sync_collection(None).await?, true),
        Err(e) => return Err(e),
    };
    let by_path: HashMap<String, String> = stored.entries.iter().map(|(uid, e)| (e.path.clone(), uid.clone())).collect();
    let mut listed = std::collections::HashSet::new();
    for change in &report.changes {
        // Not Keel's: the user's own events are left alone.
        let Some(uid) = by_path.get(&change.path) else { continue };
        listed.insert(uid.clone());
        let entry = stored.entries.get_mut(uid).expect("listed by path");
        match &change.etag {
            None if !entry.dismissed => {
                entry.dismissed = true;
                summary.dismissed += 1;
            }
            None => {}
            Some(etag) if entry.etag.as_ref() != Some(etag) => {
                // Edited there (or restored after a delete): the user's copy now.
                entry.etag = Some(etag.clone());
                entry.user_edited = true;
                entry.dismissed = false;
            }
            Some(_) => {}
        }
    }
    if full {
        // A full listing names every member: Keel's events missing from it were deleted.
        for (uid, entry) in stored.entries.iter_mut() {
            if !listed.contains(uid) && !entry.dismissed && entry.etag.is_some() {
                entry.dismissed = true;
                summary.dismissed += 1;
            }
        }
    }
    stored.connection.sync_token = Some(report.token);
    Ok(())
}

fn resource(event: &CalendarEvent, sequence: u32, now: chrono::DateTime<chrono::Utc>) -> String {
    ics::calendar(ics::Purpose::Resource, &[(event, sequence)], now)
}

/// The ETag after a write: the server's answer, else read back.
async fn etag_after(client: &Client, path: &str, answered: Option<String>) -> std::result::Result<Option<String>, CalDavError> {
    match answered {
        Some(etag) => Ok(Some(etag)),
        None => Ok(client.get(path).await?.and_then(|(etag, _)| etag)),
    }
}

async fn push(
    client: &Client,
    stored: &mut Stored,
    event: &CalendarEvent,
    now: chrono::DateTime<chrono::Utc>,
    summary: &mut Summary,
) -> std::result::Result<(), CalDavError> {
    let fingerprint = event.fingerprint();
    let Some(entry) = stored.entries.get(&event.uid).cloned() else {
        let path = client.path_of(&event.file_name());
        let etag = match client.put(&path, resource(event, 0, now), None).await? {
            Written::Done(etag) => etag_after(client, &path, etag).await?,
            Written::PreconditionFailed => {
                // Already there (Keel's state was lost): take it over with Keel's version.
                summary.conflicts += 1;
                overwrite(client, &path, resource(event, 1, now)).await?
            }
        };
        stored.entries.insert(event.uid.clone(), Entry { path, etag, fingerprint, sequence: 0, dismissed: false, user_edited: false });
        summary.created += 1;
        return Ok(());
    };
    if entry.dismissed {
        return Ok(());
    }
    if entry.fingerprint == fingerprint {
        if entry.user_edited {
            summary.user_edits_kept += 1;
        } else {
            summary.unchanged += 1;
        }
        return Ok(());
    }
    let sequence = entry.sequence + 1;
    let body = resource(event, sequence, now);
    let written = match &entry.etag {
        Some(etag) => client.put(&entry.path, body.clone(), Some(etag)).await?,
        None => Written::PreconditionFailed,
    };
    let etag = match written {
        Written::Done(etag) => etag_after(client, &entry.path, etag).await?,
        Written::PreconditionFailed => {
            summary.conflicts += 1;
            match client.get(&entry.path).await? {
                // Deleted there since the pull: dismissed, as any deletion.
                None => {
                    let dismissed = stored.entries.get_mut(&event.uid).expect("present");
                    dismissed.dismissed = true;
                    summary.dismissed += 1;
                    return Ok(());
                }
                // Changed there since the pull; the source changed too: Keel's fields win.
                Some((server_etag, _)) => match server_etag {
                    Some(server_etag) => match client.put(&entry.path, body, Some(&server_etag)).await? {
                        Written::Done(etag) => etag_after(client, &entry.path, etag).await?,
                        Written::PreconditionFailed => return Err(CalDavError::Malformed("the event kept changing on the server; try again".into())),
                    },
                    None => return Err(CalDavError::Malformed("the server gives no ETag for the event".into())),
                },
            }
        }
    };
    stored.entries.insert(event.uid.clone(), Entry { path: entry.path, etag, fingerprint, sequence, dismissed: false, user_edited: false });
    summary.updated += 1;
    Ok(())
}

/// Replace whatever is at `path` with Keel's version (read its ETag first).
async fn overwrite(client: &Client, path: &str, body: String) -> std::result::Result<Option<String>, CalDavError> {
    let etag = client.get(path).await?.and_then(|(etag, _)| etag);
    let written = client.put(path, body, etag.as_deref()).await?;
    match written {
        Written::Done(etag) => etag_after(client, path, etag).await,
        Written::PreconditionFailed => Err(CalDavError::Malformed("the event kept changing on the server; try again".into())),
    }
}

/// Delete an event whose source is gone (If-Match its last ETag; on a 412,
/// the source being gone wins over the user's edit).
async fn remove(client: &Client, entry: &Entry, summary: &mut Summary) -> std::result::Result<(), CalDavError> {
    let Some(etag) = &entry.etag else { return Ok(()) };
    if client.delete(&entry.path, etag).await? == Written::PreconditionFailed {
        summary.conflicts += 1;
        if let Some((Some(server_etag), _)) = client.get(&entry.path).await?
            && client.delete(&entry.path, &server_etag).await? == Written::PreconditionFailed
        {
            return Err(CalDavError::Malformed("the event kept changing on the server; try again".into()));
        }
    }
    summary.deleted += 1;
    Ok(())
}
