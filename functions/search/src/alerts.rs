//! Saved-search alerts: a saved search with `notify` is run again every
//! [`CHECK_EVERY`] (the `SearchAlertsFunction`'s schedule; the local stack
//! fires it itself) over the records **created** since its last check, with
//! its owner's permissions as they are now; new matches become one email to
//! the owner (a `saved_search_alert` job through the outbox, committed and
//! audited with the check that found them).
//!
//! Each check covers `[last_checked_at, now − SETTLE)` in whole seconds (the
//! index keeps times to the second), and the next starts where it ended, so
//! no record is reported twice or skipped; SETTLE leaves the indexer time to
//! index what was written just before. Advancing the window is a
//! conditional write on its start, so two runs at once report a window once.
//!
//! Due alerts are found with one Query: a saved search with `notify` is
//! listed in gsi2 partition [`ALERT_PARTITION`], sorted by its next check.

use std::collections::HashMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use shared::audit::{Actor, AuditEntry, Journal};
use shared::domain::jobs::{AlertHit, Job, SavedSearchAlert};
use shared::http::Principal;
use shared::identity::roles::RoleCatalog;
use shared::identity::users::{self, UserStatus};
use shared::platform::error::{Error, Result};
use shared::platform::time;
use shared::store::{Item, QuerySpec, UpdateSpec, Write, from_item, s};

use crate::index::{Opened, Searchers};
use crate::query::{Filter, Scope};
use crate::saved::{SavedSearch, pk};
use crate::search::{Hit, request_of, run_on, scope_of};

/// The gsi2 partition listing saved searches with `notify`.
pub const ALERT_PARTITION: &str = "SEARCHALERT";
/// How often each alert is checked (the schedule's rate).
pub const CHECK_EVERY: Duration = Duration::minutes(15);
/// Records younger than this are left for the next check: the indexer
/// applies a change within seconds (docs/search.md, freshness), so after
/// two minutes a record created in the window is searchable.
pub const SETTLE: Duration = Duration::minutes(2);
/// New matches listed in one email (the rest are counted).
pub const HITS_IN_EMAIL: usize = 10;

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// Alerts whose window was checked.
    pub checked: usize,
    /// Of those, alerts that found new matches (one email each).
    pub notified: usize,
    /// Alerts taken off the schedule: their owner is gone or suspended.
    pub stopped: usize,
    /// Alerts another run checked first.
    pub raced: usize,
}

/// The first check's window starts when the search was saved (to the second).
pub fn window_start(saved_at: DateTime<Utc>) -> String {
    second(saved_at)
}

/// `t` without its fraction of a second: the index keeps whole seconds.
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::seconds(1)).unwrap_or(t)
}

fn second(t: DateTime<Utc>) -> String {
    whole_second(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The gsi2 attributes listing a saved search with `notify`, due at `next`.
pub fn schedule_attributes(next: DateTime<Utc>) -> Item {
    Item::from([("gsi2pk".into(), s(ALERT_PARTITION)), ("gsi2sk".into(), s(second(next)))])
}

/// Check every alert due at `now`.
pub async fn check_due(store: &Journal, searchers: &Searchers, now: DateTime<Utc>) -> Result<Checked> {
    let spec = QuerySpec {
        index: Some("gsi2"),
        key_condition: "gsi2pk = :pk AND gsi2sk <= :now",
        values: vec![(":pk", s(ALERT_PARTITION)), (":now", s(second(now)))],
        forward: true,
        ..Default::default()
    };
    let due = store.query_all(&spec).await?;
    let mut checked = Checked::default();
    if due.is_empty() {
        return Ok(checked);
    }
    // Custom roles read once a run (not per alert); each owner's scope
    // once a run too (a person may keep many alerts).
    let roles = RoleCatalog::new(store.store().clone(), std::time::Duration::from_secs(60));
    let mut scopes: HashMap<String, Option<Scope>> = HashMap::new();
    let opened = searchers.current().await?;
    for item in due {
        let Some(owner_id) = shared::store::attr_s(&item, "owner_id").map(str::to_string) else { continue };
        let saved: SavedSearch = from_item(item)?;
        if !scopes.contains_key(&owner_id) {
            let scope = scope_of_owner(store, &roles, &owner_id, now).await?;
            scopes.insert(owner_id.clone(), scope);
        }
        match check_one(store, scopes[&owner_id].as_ref(), &opened, &owner_id, &saved, now).await? {
            Outcome::Quiet => checked.checked += 1,
            Outcome::Notified => {
                checked.checked += 1;
                checked.notified += 1;
            }
            Outcome::Stopped => checked.stopped += 1,
            Outcome::Raced => checked.raced += 1,
        }
    }
    Ok(checked)
}

enum Outcome {
    Quiet,
    Notified,
    Stopped,
    Raced,
}

/// What an alert's owner may see now: none when they are gone or suspended.
async fn scope_of_owner(store: &Journal, roles: &RoleCatalog, owner_id: &str, now: DateTime<Utc>) -> Result<Option<Scope>> {
    let owner = users::get(store, owner_id).await?;
    let Some(owner) = owner.filter(|o| !matches!(o.status, UserStatus::Deleted | UserStatus::Suspended)) else { return Ok(None) };
    let permissions = roles.permissions_of_token(&owner.roles, now.timestamp()).await?;
    let principal = Principal { user_id: owner.id, roles: owner.roles, permissions, session_id: String::new(), amr: Vec::new(), scope: None };
    Ok(Some(scope_of(&principal)))
}

async fn check_one(store: &Journal, scope: Option<&Scope>, opened: &Opened, owner_id: &str, saved: &SavedSearch, now: DateTime<Utc>) -> Result<Outcome> {
    // Stored by `save` and by the previous check, both in whole seconds.
    let since_at = whole_second(saved.last_checked_at.as_deref().or(Some(&saved.created_at)).and_then(time::parse).unwrap_or(now));
    let since = window_start(since_at);
    let until_at = whole_second(now - SETTLE);
    let until = second(until_at);
    let next = now + CHECK_EVERY;
    let Some(scope) = scope else {
        // Nobody to tell: off the schedule until the owner saves it again.
        let stop = UpdateSpec {
            expression: "REMOVE gsi2pk, gsi2sk SET alert_error = :why",
            values: vec![(":why", s("the owner is no longer an active user; alerts stopped"))],
            ..UpdateSpec::default()
        };
        store.update(&pk(owner_id), &saved.id, &stop).await?;
        return Ok(Outcome::Stopped);
    };
    if until_at <= since_at {
        return Ok(Outcome::Quiet);
    }
    // The saved request as the owner may run it today; a type they may no
    // longer read is an error kept on the search (shown in its listing).
    let found = request_of(&saved.request, scope).and_then(|mut request| {
        let (gte, lte) = (since_at, until_at - Duration::seconds(1));
        request.filters.push(Filter::Dates("created_at".into(), Some(gte), Some(lte)));
        request.offset = 0;
        request.limit = HITS_IN_EMAIL;
        run_on(opened, scope, &request)
    });
    let (total, hits, error) = match found {
        Ok((found, hits)) => (found.total as u64, hits, None),
        Err(e) => (0, Vec::new(), Some(error_text(&e))),
    };
    // Advance the window from where this check started, or lose the race.
    let mut values = vec![(":until", s(&until)), (":next", s(second(next)))];
    let condition = match &saved.last_checked_at {
        Some(prev) => {
            values.push((":since", s(prev)));
            "last_checked_at = :since"
        }
        None => "attribute_not_exists(last_checked_at)",
    };
    let expression = match (&error, total) {
        (Some(why), _) => {
            values.push((":why", s(why)));
            "SET last_checked_at = :until, gsi2sk = :next, alert_error = :why"
        }
        (None, 0) => "SET last_checked_at = :until, gsi2sk = :next REMOVE alert_error",
        (None, _) => {
            values.push((":now", s(shared::store::timestamp(now))));
            "SET last_checked_at = :until, gsi2sk = :next, last_notified_at = :now REMOVE alert_error"
        }
    };
    let advance = UpdateSpec { expression, condition: Some(condition), names: Vec::new(), values };
    if total == 0 {
        return Ok(match store.update(&pk(owner_id), &saved.id, &advance).await? {
            Some(_) => Outcome::Quiet,
            None => Outcome::Raced,
        });
    }
    let alert = SavedSearchAlert {
        saved_search_id: saved.id.clone(),
        name: saved.name.clone(),
        since: since.clone(),
        until: until.clone(),
        total,
        hits: hits.iter().map(alert_hit).collect(),
    };
    let job = Job::of(owner_id, &alert)?;
    let writes = vec![
        Write::update(store.table(), &pk(owner_id), &saved.id, &advance, Some(Error::Conflict("checked by another run".into())))?,
        job.create_write(store.table())?,
    ];
    let audit = AuditEntry::at(now, &Actor::system("search-alerts"), "search.saved.alert", "saved_search", &saved.id)
        .changes::<(), _>(None, Some(&json!({ "since": since, "until": until, "new_matches": total, "job_id": job.id })));
    match store.commit(writes, &audit).await {
        Ok(()) => Ok(Outcome::Notified),
        Err(Error::Conflict(_)) => Ok(Outcome::Raced),
        Err(e) => Err(e),
    }
}

fn error_text(e: &Error) -> String {
    match e {
        Error::Validation(fields) => fields.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; "),
        other => other.to_string(),
    }
}

/// A hit as one line of the email: what the record is called, as the owner
/// may read it (masked fields stay masked), else its id.
fn alert_hit(hit: &Hit) -> AlertHit {
    let field = |k: &str| hit.fields.get(k).and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_string);
    let label = match hit.doc_type.as_str() {
        "orders" => {
            let amount = hit.fields.get("amount_cents").and_then(Value::as_i64).unwrap_or(0);
            let currency = field("currency").unwrap_or_default();
            Some(format!("{} order, {}.{:02} {currency}", field("plan").unwrap_or_else(|| "an".into()), amount / 100, (amount % 100).abs()))
        }
        "audit" => field("action").map(|a| format!("{a} on {}", field("target_type").unwrap_or_default())),
        _ => field("title").or_else(|| field("name")).or_else(|| field("email")),
    }
    .unwrap_or_else(|| hit.id.clone());
    AlertHit { doc_type: hit.doc_type.clone(), id: hit.id.clone(), label }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_whole_seconds() {
        let t = time::parse("2026-12-03T10:15:42.987654Z").unwrap();
        assert_eq!(window_start(t), "2026-12-03T10:15:42Z");
        assert_eq!(second(t - SETTLE), "2026-12-03T10:13:42Z");
    }

    #[test]
    fn hits_are_labelled_by_what_they_are_called() {
        let hit = |t: &str, fields: Value| Hit {
            doc_type: t.into(),
            id: "x1".into(),
            score: 1.0,
            fields: fields.as_object().unwrap().clone(),
            highlights: Default::default(),
        };
        assert_eq!(alert_hit(&hit("charts", json!({"title": "Tides"}))).label, "Tides");
        assert_eq!(alert_hit(&hit("orders", json!({"plan": "pro", "amount_cents": 1999, "currency": "EUR"}))).label, "pro order, 19.99 EUR");
        assert_eq!(alert_hit(&hit("audit", json!({"action": "user.update", "target_type": "user"}))).label, "user.update on user");
        assert_eq!(alert_hit(&hit("users", json!({}))).label, "x1");
    }
}
