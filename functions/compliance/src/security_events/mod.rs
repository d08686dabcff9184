//! Security event detection (docs/compliance.md, "Security events").
//!
//! Every minute the detectors (`detectors`) read the audit log from where
//! the last run stopped — the audit entries are the record of every
//! sign-in, refusal, role grant, export and 2FA change, committed with the
//! change itself (the table stream carries the same entries; reading the
//! log by a cursor gives the detectors their lookback windows in the same
//! read). Each finding becomes a security event (`SECEVENT#<id>`), recorded
//! once (its id is derived from what it found) with its audit entry and,
//! when high, the email to the security contacts, in one transaction; a
//! new high event also raises the `SecurityEventsHigh` metric (an alarm in
//! the template). What the detectors learn of each principal (countries,
//! last sign-in, working hours, daily exports) is kept in
//! `SECPROFILE#<user id>` and moved on with the cursor in one transaction,
//! so each entry teaches once even when a run dies half-way.

pub mod detectors;
pub mod routes;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use shared::audit::{Actor, AuditEntry};
use shared::identity::users;
use shared::platform::error::{Error, Result};
use shared::store::{Item, Write, attr_s, from_item, s, timestamp, to_item};
use utoipa::ToSchema;

use crate::ComplianceState;
use crate::access_review::{permission_of_action, privileged};
use detectors::{Finding, Kind, Known, Person, Profile, Severity};

/// Entries younger than this are not read yet: an entry's time is taken
/// before its transaction commits, so a slower writer can still add one
/// just behind the newest (as the audit sealer allows for).
pub const SETTLE_SECONDS: i64 = 60;
/// How far back the counting rules look (their longest window).
pub const LOOKBACK_MINUTES: i64 = 15;
/// Fresh entries read per pass; a run makes passes until it catches up.
const PASS_ENTRIES: usize = 2_000;
/// Principals whose profiles one pass may change (one transaction holds
/// them and the cursor).
const PASS_PROFILES: usize = 90;
const MAX_PASSES: usize = 20;
const CURSOR_PK: &str = "SECDETECT#CURSOR";
const CURSOR_SK: &str = "CURSOR";
const PROFILE_SK: &str = "PROFILE";

pub use shared::domain::security_events::{EVENT_SK, EVENTS_LIST_PK, SecurityEvent, event_pk};

pub fn profile_pk(user_id: &str) -> String {
    format!("SECPROFILE#{user_id}")
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    /// The sort key (`ts#id`) of the last entry read.
    after: String,
    #[serde(default)]
    version: u64,
}

/// What a run did.
#[derive(Debug, Default, Serialize, ToSchema)]
#[schema(as = SecurityDetectionRun)]
pub struct RunReport {
    pub entries_read: u64,
    pub events_recorded: u64,
    pub high_events: u64,
    pub position: String,
}

use shared::platform::time::parse as at;

/// Whether a detector reads entries of this action (before decrypting).
fn relevant(action: &str) -> bool {
    action == "auth.login"
        || action == "access.denied"
        || action == "auth.refresh_reuse"
        || action.starts_with("mfa.")
        || detectors::is_export(action)
        || permission_of_action(action).is_some()
}

/// Only the counting rules need the lookback: failed sign-ins and refusals.
fn counted(item: &Item) -> bool {
    matches!((attr_s(item, "action"), attr_s(item, "outcome")), (Some("auth.login"), Some("failure")) | (Some("access.denied"), _))
}

/// Run the detectors over every entry not read yet (up to `now` less the
/// settling time), recording what they find.
pub async fn run(state: &ComplianceState, now: DateTime<Utc>) -> Result<RunReport> {
    let mut report = RunReport::default();
    for _ in 0..MAX_PASSES {
        let (more, position) = pass(state, now, &mut report).await?;
        report.position = position;
        if !more {
            break;
        }
    }
    Ok(report)
}

/// One pass: at most `PASS_ENTRIES` fresh entries and `PASS_PROFILES`
/// principals. Answers whether more entries wait, and the new position.
async fn pass(state: &ComplianceState, now: DateTime<Utc>, report: &mut RunReport) -> Result<(bool, String)> {
    let journal = &state.platform.store;
    let store = journal.store();
    let stored: Option<Cursor> = store.get_item(CURSOR_PK, CURSOR_SK).await?.map(from_item).transpose()?;
    let is_new = stored.is_none();
    // A first run starts one lookback ago: the detectors judge what
    // happens from their deployment on, not the whole history.
    let cursor = stored.unwrap_or_else(|| Cursor { after: timestamp(now - Duration::minutes(LOOKBACK_MINUTES)), version: 0 });
    let until = timestamp(now - Duration::seconds(SETTLE_SECONDS));
    let fresh = if until.as_str() <= cursor.after.as_str() {
        Vec::new()
    } else {
        shared::audit::journal::items_after(store, &cursor.after, &until, PASS_ENTRIES).await?
    };
    if fresh.is_empty() {
        // A first run keeps its starting point: later runs go on from it.
        if is_new {
            store
                .transact(vec![cursor_write(store, &cursor.after, &cursor, true)?])
                .await
                .or_else(|e| if matches!(e, Error::Conflict(_)) { Ok(()) } else { Err(e) })?;
        }
        return Ok((false, cursor.after));
    }
    let more = fresh.len() == PASS_ENTRIES;
    // Cut the pass where it would touch too many principals' profiles.
    let mut principals = HashSet::new();
    let mut taken = 0;
    for item in &fresh {
        let names = [
            item.get("actor").and_then(|a| a.as_m().ok()).and_then(|m| m.get("id")).and_then(|v| v.as_s().ok()).map(String::as_str),
            attr_s(item, "target_id"),
        ];
        let new_names: Vec<&str> = names.into_iter().flatten().filter(|id| !principals.contains(*id)).collect();
        if principals.len() + new_names.len() > PASS_PROFILES && taken > 0 {
            break;
        }
        principals.extend(new_names.into_iter().map(String::from));
        taken += 1;
    }
    let more = more || taken < fresh.len();
    let fresh: Vec<Item> = fresh.into_iter().take(taken).collect();
    let position = fresh.last().and_then(|i| attr_s(i, "sk")).map(String::from).unwrap_or_else(|| cursor.after.clone());
    report.entries_read += fresh.len() as u64;
    let lookback_from = at(cursor.after.get(..cursor.after.find('#').unwrap_or(cursor.after.len())).unwrap_or(""))
        .map(|t| timestamp(t - Duration::minutes(LOOKBACK_MINUTES)))
        .ok_or_else(|| Error::internal(format!("detector cursor is not a position: {}", cursor.after)))?;
    let lookback: Vec<Item> =
        shared::audit::journal::items_after(store, &lookback_from, &cursor.after, usize::MAX).await?.into_iter().filter(counted).collect();
    let keys = journal.subject_keys()?;
    let fresh_relevant: Vec<Item> = fresh.into_iter().filter(|i| attr_s(i, "action").is_some_and(relevant)).collect();
    let mut window = keys.reveal(store, lookback).await?;
    let fresh_from = window.len();
    window.extend(keys.reveal(store, fresh_relevant).await?);

    let mut known = know(state, &window[fresh_from..]).await?;
    let oldest = window.get(fresh_from).and_then(|e| at(&e.ts)).unwrap_or(now);
    known.recent = recent_subjects(store, oldest - Duration::minutes(detectors::REPEAT_AFTER_MINUTES), now).await?;
    let findings = detectors::detect(&window, fresh_from, &mut known);
    let contacts = state.platform.settings.current().await?.settings.security_contacts.clone();
    for finding in &findings {
        if record(state, finding, &contacts, now).await? {
            report.events_recorded += 1;
            if finding.severity == Severity::High {
                report.high_events += 1;
                shared::domain::security_events::emit_high_metric(finding.kind);
            }
        }
    }
    // Profiles and the cursor move together: a pass that dies before this
    // is read again, its events already recorded (same ids), its lessons
    // not yet learned.
    let mut writes = Vec::new();
    for (user_id, profile) in &known.profiles {
        let mut item = to_item(profile)?;
        item.insert("pk".into(), s(profile_pk(user_id)));
        item.insert("sk".into(), s(PROFILE_SK));
        item.insert("type".into(), s("security_profile"));
        writes.push(Write::put(store.table(), item)?);
    }
    writes.push(cursor_write(store, &position, &cursor, is_new)?);
    match store.transact(writes).await {
        Ok(()) => Ok((more, position)),
        // Another run moved the cursor first: it learned the same lessons.
        Err(Error::Conflict(_)) => Ok((false, position)),
        Err(e) => Err(e),
    }
}

/// Events as answered: principals by user id while the person is known.
pub(crate) async fn reveal(store: &shared::store::Store, items: Vec<Item>) -> Result<Vec<SecurityEvent>> {
    let mut events: Vec<SecurityEvent> = items.into_iter().map(from_item).collect::<Result<_>>()?;
    let pseudonyms: HashSet<String> = events.iter().filter_map(|e| e.principal.clone()).filter(|p| shared::audit::pseudonyms::is_pseudonym(p)).collect();
    let ids = shared::audit::pseudonyms::SubjectKeys::user_ids(store, &pseudonyms).await?;
    for event in &mut events {
        event.principal = event.principal.take().and_then(|p| ids.get(&p).cloned());
    }
    Ok(events)
}

/// The events that happened between `from` and `to` (timestamps), newest
/// first, at most `limit`, as answered.
pub async fn between(store: &shared::store::Store, from: &str, to: &str, limit: i32) -> Result<Vec<SecurityEvent>> {
    let spec = shared::store::QuerySpec {
        index: Some("gsi1"),
        key_condition: "gsi1pk = :pk AND gsi1sk BETWEEN :from AND :to",
        values: vec![(":pk", s(EVENTS_LIST_PK)), (":from", s(from)), (":to", s(format!("{to}~")))],
        forward: false,
        ..shared::store::QuerySpec::default()
    };
    let (items, _) = store.query_filled(&spec, None, limit, 20).await?;
    reveal(store, items).await
}

/// (kind, subject) of the counting rules' events from `since` to `now`.
async fn recent_subjects(store: &shared::store::Store, since: DateTime<Utc>, now: DateTime<Utc>) -> Result<HashSet<(Kind, String)>> {
    let events = between(store, &timestamp(since), &timestamp(now), 1_000).await?;
    Ok(events.into_iter().filter(|e| e.kind.counts()).filter_map(|e| Some((e.kind, e.principal.or(e.source_ip)?))).collect())
}

/// The cursor moved to `position`, conditioned on nobody having moved it
/// since `read` (or, new, on its absence).
fn cursor_write(store: &shared::store::Store, position: &str, read: &Cursor, is_new: bool) -> Result<Write> {
    let mut item = to_item(&Cursor { after: position.to_string(), version: read.version + 1 })?;
    item.insert("pk".into(), s(CURSOR_PK));
    item.insert("sk".into(), s(CURSOR_SK));
    item.insert("type".into(), s("security_detector_cursor"));
    if is_new {
        Write::put_new(store.table(), item, Error::Conflict("another detector run started meanwhile".into()))
    } else {
        Write::put_versioned(store.table(), item, read.version)
    }
}

/// The people the fresh entries name and their profiles.
async fn know(state: &ComplianceState, fresh: &[AuditEntry]) -> Result<Known> {
    let store = state.platform.store.store();
    let mut ids: HashSet<String> = HashSet::new();
    for e in fresh {
        if e.actor.kind == "user" && e.erased.iter().all(|p| p != "actor") {
            ids.insert(e.actor.id.clone());
        }
        if e.target_type == "user" && e.erased.iter().all(|p| p != "target") {
            ids.insert(e.target_id.clone());
        }
    }
    let ids: Vec<String> = ids.into_iter().filter(|id| !shared::audit::pseudonyms::is_pseudonym(id)).collect();
    let catalog = state.platform.roles.current().await?;
    let people: HashMap<String, Person> = futures::stream::iter(ids.clone())
        .map(|id| {
            let catalog = catalog.clone();
            async move {
                let user = users::get(store, &id).await?;
                let person = user
                    .map(|u| Person { privileged: !privileged(catalog.permissions_of(&u.roles)).is_empty(), created_at: Some(u.created_at), roles: u.roles })
                    .unwrap_or_default();
                Ok::<_, Error>((id, person))
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    let keys: Vec<(String, String)> = ids.iter().map(|id| (profile_pk(id), PROFILE_SK.to_string())).collect();
    let mut profiles = HashMap::new();
    for item in store.batch_get(&keys).await? {
        let Some(user_id) = attr_s(&item, "pk").and_then(|pk| pk.strip_prefix("SECPROFILE#")).map(String::from) else { continue };
        profiles.insert(user_id, from_item::<Profile>(item)?);
    }
    Ok(Known { people, profiles, recent: HashSet::new() })
}

/// Record a finding once, with its audit entry and (high, with contacts)
/// the email job, in one transaction. False when it was recorded before.
async fn record(state: &ComplianceState, finding: &Finding, contacts: &[String], now: DateTime<Utc>) -> Result<bool> {
    let journal = &state.platform.store;
    let actor = Actor::system("security-detectors");
    let (_, writes, audit) = shared::domain::security_events::record(journal, finding, contacts, &actor, now).await?;
    match journal.commit(writes, &audit).await {
        Ok(()) => Ok(true),
        Err(Error::Conflict(_)) => Ok(false),
        Err(e) => Err(e),
    }
}
