//! The security detectors: pure functions over audit entries (as readers
//! see them: people by id, their address and location decrypted) and each
//! principal's learned habits (`Profile`). `detect` is given the entries of
//! a lookback window (for the rules that count within one) and the fresh
//! ones (those not seen by an earlier run), and answers the findings the
//! fresh entries complete, each with a deterministic key so a finding is
//! recorded once however often its entries are read.
//!
//! The thresholds are constants here (docs/compliance.md explains each):
//! they are set so an account's owner mistyping a password, an admin's
//! usual day, or a handful of exports never fires.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{Duration, Timelike};
use serde::{Deserialize, Serialize};
use shared::audit::{AuditEntry, Outcome};

use crate::access_review::permission_of_action;

/// Failed sign-ins to one account within `FAILURE_WINDOW`: brute force.
pub const BRUTE_FORCE_FAILURES: usize = 10;
/// Accounts failed from one address within `FAILURE_WINDOW`: spraying.
pub const SPRAYING_ACCOUNTS: usize = 5;
pub const FAILURE_WINDOW_MINUTES: i64 = 15;
/// Faster than an airliner between two sign-ins (and further apart than a
/// city-level geolocation can err): impossible travel.
pub const IMPOSSIBLE_SPEED_KMH: f64 = 1_000.0;
pub const IMPOSSIBLE_MIN_KM: f64 = 500.0;
/// An admin account younger than this granting roles: escalation.
pub const NEW_ADMIN_DAYS: i64 = 7;
/// Exports in one day above `max(MASS_EXPORT_FLOOR, MASS_EXPORT_FACTOR ×
/// the principal's daily mean over the previous 14 days)` (over the days
/// since its first export, when that is fewer).
pub const MASS_EXPORT_FLOOR: u32 = 20;
pub const MASS_EXPORT_FACTOR: f64 = 5.0;
pub const EXPORT_BASELINE_DAYS: i64 = 14;
/// Off-hours: a privileged action in an hour (± 1) that held under 1 % of
/// the principal's privileged actions, once at least this many are known.
pub const HABIT_MIN_ACTIONS: u32 = 50;
pub const HABIT_RARE_SHARE: f64 = 0.01;
/// Refusals (403) of one principal within `PROBING_WINDOW`: probing.
pub const PROBING_DENIALS: usize = 20;
pub const PROBING_WINDOW_MINUTES: i64 = 10;
/// At most this many entry ids are kept as a finding's evidence.
const EVIDENCE_MAX: usize = 50;

pub use shared::domain::security_events::{Finding, Kind, Severity};

/// A sign-in's place and time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SignIn {
    pub ts: String,
    pub country: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

/// What the detectors learned of one principal (`SECPROFILE#<user id>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub last_sign_in: Option<SignIn>,
    /// Countries signed in from (at most 50).
    #[serde(default)]
    pub countries: BTreeSet<String>,
    /// Privileged actions per UTC hour of day.
    #[serde(default)]
    pub hours: Vec<u32>,
    /// Exports per day (`yyyy-mm-dd`), the last `EXPORT_BASELINE_DAYS` + 1.
    #[serde(default)]
    pub exports: BTreeMap<String, u32>,
}

/// What the detectors need to know of a user.
#[derive(Debug, Clone, Default)]
pub struct Person {
    /// Holds permissions beyond the built-in `user` role.
    pub privileged: bool,
    pub created_at: Option<String>,
    pub roles: Vec<String>,
}

/// The facts `detect` reads besides the entries.
#[derive(Debug, Default)]
pub struct Known {
    pub people: HashMap<String, Person>,
    pub profiles: HashMap<String, Profile>,
    /// (kind, subject) of the events recorded in the last `REPEAT_AFTER_MINUTES`:
    /// a counting rule still over its threshold is the same attack going
    /// on, not a new event.
    pub recent: HashSet<(Kind, String)>,
}

/// A counting rule fires again for the same subject only this long after
/// its last event.
pub const REPEAT_AFTER_MINUTES: i64 = 60;

use shared::platform::time::parse as at;

fn failed_sign_in(e: &AuditEntry) -> bool {
    e.action == "auth.login" && e.outcome == Outcome::Failure
}

/// Audited actions that take data out: exports, their downloads, audit
/// exports, report files.
pub fn is_export(action: &str) -> bool {
    action.starts_with("data.export")
        || action.starts_with("export.")
        || action == "audit.export"
        || action == "report.generate"
        || action.ends_with("_download")
}

/// Great-circle distance in km (haversine, mean Earth radius).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (a.0.to_radians(), a.1.to_radians(), b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2) + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6_371.0 * h.sqrt().asin()
}

/// The values of `field` an entry's change added (in `after`, not in `before`).
fn added(e: &AuditEntry, field: &str) -> BTreeSet<String> {
    let values = |side: &str| -> BTreeSet<String> {
        e.changes
            .as_ref()
            .and_then(|c| c.get(side))
            .and_then(|s| s.get(field))
            .and_then(|r| r.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    };
    let (before, after) = (values("before"), values("after"));
    after.difference(&before).cloned().collect()
}

/// Roles a role-changing entry granted (in `after`, not in `before`),
/// less the baseline role every sign-up gets, which is no privilege.
fn granted_roles(e: &AuditEntry) -> Vec<String> {
    added(e, "roles").into_iter().filter(|r| r != "user").collect()
}

/// The entries of `window` within `minutes` before `e` (inclusive) that `pick` keeps.
fn within<'a>(window: &'a [AuditEntry], e: &AuditEntry, minutes: i64, pick: impl Fn(&AuditEntry) -> bool) -> Vec<&'a AuditEntry> {
    let Some(end) = at(&e.ts) else { return Vec::new() };
    let start = end - Duration::minutes(minutes);
    window.iter().filter(|w| w.ts <= e.ts && at(&w.ts).is_some_and(|t| t >= start) && pick(w)).collect()
}

fn evidence(entries: &[&AuditEntry]) -> Vec<String> {
    let mut ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
    if ids.len() > EVIDENCE_MAX {
        ids.drain(..ids.len() - EVIDENCE_MAX);
    }
    ids
}

/// Run every detector. `window` is every entry read (lookback and fresh,
/// in log order); the entries from index `fresh_from` on are new. The
/// profiles in `known` are updated with what the fresh entries teach.
pub fn detect(window: &[AuditEntry], fresh_from: usize, known: &mut Known) -> Vec<Finding> {
    let mut found: BTreeMap<String, Finding> = BTreeMap::new();
    let mut ongoing = std::mem::take(&mut known.recent);
    let mut add = |f: Finding| {
        if f.kind.counts() && !ongoing.insert((f.kind, f.subject())) {
            return;
        }
        found.entry(f.key.clone()).or_insert(f);
    };
    for e in &window[fresh_from.min(window.len())..] {
        let user = (e.actor.kind == "user").then_some(e.actor.id.as_str());
        if failed_sign_in(e) {
            brute_force(window, e, &mut add);
            spraying(window, e, &mut add);
        }
        if e.action == "auth.login" && e.outcome == Outcome::Success && e.target_type == "user" {
            sign_in(e, known, &mut add);
        }
        if e.action == "access.denied" {
            probing(window, e, &mut add);
        }
        // Keel refuses the reused token (outcome `denied`): the reuse is the event.
        if e.action == "auth.refresh_reuse" {
            add(Finding {
                kind: Kind::RefreshTokenReuse,
                severity: Severity::High,
                key: format!("refresh_token_reuse|{}", e.id),
                principal: user.map(String::from),
                source_ip: e.actor.source_ip.clone(),
                occurred_at: e.ts.clone(),
                summary: "A refresh token already exchanged was presented again: a copy of the token is in someone else's hands. Keel revoked the whole session family.".into(),
                recommendation: "Ask the account's owner to sign in again and check their devices; if the reuse came from an unknown address, reset their password and suspend the account until it is secured (PUT /api/v1/admin/users/{id} with \"status\": \"suspended\").".into(),
                evidence: vec![e.id.clone()],
            });
        }
        if e.outcome != Outcome::Success {
            continue;
        }
        match e.action.as_str() {
            "user.assign_roles" | "user.update" | "user.create" if !granted_roles(e).is_empty() => escalation(e, known, &mut add),
            "mfa.disable" | "mfa.reset" => mfa_removed(e, known, &mut add),
            "role.update" => widened_own_role(e, known, &mut add),
            _ => {}
        }
        if let Some(user) = user {
            if is_export(&e.action) {
                mass_export(e, user, known, &mut add);
            }
            if permission_of_action(&e.action).is_some() {
                off_hours(e, user, known, &mut add);
            }
        }
    }
    found.into_values().collect()
}

fn brute_force(window: &[AuditEntry], e: &AuditEntry, add: &mut impl FnMut(Finding)) {
    if e.target_type != "user" {
        return;
    }
    let failures = within(window, e, FAILURE_WINDOW_MINUTES, |w| failed_sign_in(w) && w.target_type == "user" && w.target_id == e.target_id);
    if failures.len() < BRUTE_FORCE_FAILURES {
        return;
    }
    let sources: BTreeSet<&str> = failures.iter().filter_map(|f| f.actor.source_ip.as_deref()).collect();
    add(Finding {
        kind: Kind::BruteForce,
        severity: Severity::High,
        key: format!("brute_force|{}|{}", e.target_id, e.id),
        principal: Some(e.target_id.clone()),
        source_ip: (sources.len() == 1).then(|| sources.iter().next().map(|s| s.to_string())).flatten(),
        occurred_at: e.ts.clone(),
        summary: format!("{} failed sign-ins to one account within {FAILURE_WINDOW_MINUTES} minutes, from {} address(es).", failures.len(), sources.len()),
        recommendation: format!(
            "Confirm with the account's owner; if it was not them, reset the password and require 2FA for the account (POST /api/v1/admin/users/{{id}}/unlock only once it is safe), and block {} at the WAF.",
            if sources.is_empty() { "the source".to_string() } else { sources.iter().copied().collect::<Vec<_>>().join(", ") }
        ),
        evidence: evidence(&failures),
    });
}

fn spraying(window: &[AuditEntry], e: &AuditEntry, add: &mut impl FnMut(Finding)) {
    let Some(ip) = e.actor.source_ip.as_deref() else { return };
    let failures = within(window, e, FAILURE_WINDOW_MINUTES, |w| failed_sign_in(w) && w.actor.source_ip.as_deref() == Some(ip));
    let accounts: BTreeSet<(&str, &str)> = failures.iter().map(|f| (f.target_type.as_str(), f.target_id.as_str())).collect();
    if accounts.len() < SPRAYING_ACCOUNTS {
        return;
    }
    add(Finding {
        kind: Kind::PasswordSpraying,
        severity: Severity::High,
        key: format!("password_spraying|{ip}|{}", e.id),
        principal: None,
        source_ip: Some(ip.to_string()),
        occurred_at: e.ts.clone(),
        summary: format!("Failed sign-ins to {} different accounts from one address within {FAILURE_WINDOW_MINUTES} minutes.", accounts.len()),
        recommendation: format!(
            "Block {ip} at the WAF (an AWS WAF IP set rule on the API), check the targeted accounts for a later successful sign-in from it, and require 2FA for every privileged role (settings: mfa_required_roles)."
        ),
        evidence: evidence(&failures),
    });
}

fn sign_in(e: &AuditEntry, known: &mut Known, add: &mut impl FnMut(Finding)) {
    let user = e.target_id.clone();
    let location = e.actor.location.clone().unwrap_or_default();
    let profile = known.profiles.entry(user.clone()).or_default();
    let here = SignIn { ts: e.ts.clone(), country: location.country.clone(), latitude: location.latitude, longitude: location.longitude };
    if let Some(country) = &location.country
        && !profile.countries.is_empty()
        && !profile.countries.contains(country)
    {
        add(Finding {
            kind: Kind::NewCountry,
            severity: Severity::Medium,
            key: format!("new_country|{}", e.id),
            principal: Some(user.clone()),
            source_ip: e.actor.source_ip.clone(),
            occurred_at: e.ts.clone(),
            summary: format!("A sign-in from {country}, a country this account never signed in from (before: {}).", profile.countries.iter().cloned().collect::<Vec<_>>().join(", ")),
            recommendation: "Confirm the trip with the account's owner; if it was not them, revoke their sessions, reset the password and review what the session did (GET /api/v1/admin/audit-logs?actor_id=…).".into(),
            evidence: vec![e.id.clone()],
        });
    }
    if let (Some(previous), Some(point)) = (&profile.last_sign_in, location.point())
        && let (Some(before), Some(then), Some(now)) = (previous.latitude.zip(previous.longitude), at(&previous.ts), at(&e.ts))
    {
        let km = distance_km(before, point);
        let hours = ((now - then).num_seconds().max(1) as f64) / 3600.0;
        let speed = km / hours;
        if km >= IMPOSSIBLE_MIN_KM && speed > IMPOSSIBLE_SPEED_KMH {
            add(Finding {
                kind: Kind::ImpossibleTravel,
                severity: Severity::High,
                key: format!("impossible_travel|{}", e.id),
                principal: Some(user.clone()),
                source_ip: e.actor.source_ip.clone(),
                occurred_at: e.ts.clone(),
                summary: format!(
                    "Two sign-ins {km:.0} km apart within {:.1} hours ({speed:.0} km/h){}.",
                    hours,
                    match (&previous.country, &location.country) {
                        (Some(a), Some(b)) => format!(", from {a} then {b}"),
                        _ => String::new(),
                    }
                ),
                recommendation: "One of the two sessions is not the owner's (or the owner uses a VPN): revoke all the account's sessions, reset its password, and review the actions of both sessions in the audit log.".into(),
                evidence: vec![e.id.clone()],
            });
        }
    }
    if let Some(country) = &location.country
        && profile.countries.len() < 50
    {
        profile.countries.insert(country.clone());
    }
    // The last sign-in with coordinates is what travel is measured from.
    if location.point().is_some() || profile.last_sign_in.is_none() {
        profile.last_sign_in = Some(here);
    }
}

fn escalation(e: &AuditEntry, known: &Known, add: &mut impl FnMut(Finding)) {
    if e.actor.kind != "user" {
        return;
    }
    let granted = granted_roles(e);
    let to_self = e.target_type == "user" && e.target_id == e.actor.id;
    let actor_created = known.people.get(&e.actor.id).and_then(|p| p.created_at.as_deref()).and_then(at);
    let new_admin = actor_created.zip(at(&e.ts)).is_some_and(|(created, now)| now - created < Duration::days(NEW_ADMIN_DAYS));
    if !(to_self || new_admin) {
        return;
    }
    add(Finding {
        kind: Kind::PrivilegeEscalation,
        severity: Severity::High,
        key: format!("privilege_escalation|{}", e.id),
        principal: Some(e.actor.id.clone()),
        source_ip: e.actor.source_ip.clone(),
        occurred_at: e.ts.clone(),
        summary: if to_self {
            format!("An account granted itself the role(s) {}.", granted.join(", "))
        } else {
            format!("An account created less than {NEW_ADMIN_DAYS} days before granted the role(s) {} to another account.", granted.join(", "))
        },
        recommendation: "Check who approved the grant; if nobody did, remove the granted roles (PUT /api/v1/admin/users/{id}/roles), suspend the granting account and review its audit entries.".into(),
        evidence: vec![e.id.clone()],
    });
}

/// A custom role given more permissions by someone who holds it: a grant
/// to oneself by another road (granting oneself a role is refused).
fn widened_own_role(e: &AuditEntry, known: &Known, add: &mut impl FnMut(Finding)) {
    let gained = added(e, "permissions");
    if e.actor.kind != "user" || gained.is_empty() || !known.people.get(&e.actor.id).is_some_and(|p| p.roles.contains(&e.target_id)) {
        return;
    }
    add(Finding {
        kind: Kind::PrivilegeEscalation,
        severity: Severity::High,
        key: format!("privilege_escalation|{}", e.id),
        principal: Some(e.actor.id.clone()),
        source_ip: e.actor.source_ip.clone(),
        occurred_at: e.ts.clone(),
        summary: format!("An account added {} to the role {}, which it holds itself.", gained.into_iter().collect::<Vec<_>>().join(", "), e.target_id),
        recommendation: "Check who approved the change; if nobody did, restore the role's permissions (PUT /api/v1/admin/roles/{name}), and review what the account did with them.".into(),
        evidence: vec![e.id.clone()],
    });
}

fn mfa_removed(e: &AuditEntry, known: &Known, add: &mut impl FnMut(Finding)) {
    if e.target_type != "user" || !known.people.get(&e.target_id).is_some_and(|p| p.privileged) {
        return;
    }
    let how = if e.action == "mfa.reset" { "was reset by another account" } else { "was turned off" };
    add(Finding {
        kind: Kind::MfaDisabled,
        severity: Severity::High,
        key: format!("mfa_disabled|{}", e.id),
        principal: Some(e.target_id.clone()),
        source_ip: e.actor.source_ip.clone(),
        occurred_at: e.ts.clone(),
        summary: format!("Two-factor authentication of a privileged account {how}."),
        recommendation: "Confirm with the account's owner and have them enrol again (POST /api/v1/auth/2fa/enable); until then the settings' mfa_required_roles keep the account from signing in without it.".into(),
        evidence: vec![e.id.clone()],
    });
}

fn mass_export(e: &AuditEntry, user: &str, known: &mut Known, add: &mut impl FnMut(Finding)) {
    let Some(now) = at(&e.ts) else { return };
    let day = e.ts[..10].to_string();
    let profile = known.profiles.entry(user.to_string()).or_default();
    let count = profile.exports.entry(day.clone()).or_insert(0);
    *count += 1;
    let today = *count;
    let first = (now - Duration::days(EXPORT_BASELINE_DAYS)).format("%Y-%m-%d").to_string();
    let before: u32 = profile.exports.range(first.clone()..day.clone()).map(|(_, n)| n).sum();
    // The mean over the days known (a principal seen for three days is not
    // measured as if idle for the other eleven).
    let since = profile.exports.range(first..day.clone()).next().and_then(|(d, _)| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let days_known = since.map(|d| (now.date_naive() - d).num_days().clamp(1, EXPORT_BASELINE_DAYS)).unwrap_or(EXPORT_BASELINE_DAYS);
    let threshold = f64::from(MASS_EXPORT_FLOOR).max(MASS_EXPORT_FACTOR * f64::from(before) / days_known as f64);
    // Days older than the baseline are forgotten.
    let oldest = (now - Duration::days(EXPORT_BASELINE_DAYS + 1)).format("%Y-%m-%d").to_string();
    profile.exports.retain(|d, _| *d >= oldest);
    if f64::from(today) > threshold {
        add(Finding {
            kind: Kind::MassExport,
            severity: Severity::High,
            key: format!("mass_export|{user}|{day}"),
            principal: Some(user.to_string()),
            source_ip: e.actor.source_ip.clone(),
            occurred_at: e.ts.clone(),
            summary: format!("{today} exports or downloads by one account on {day}, over its usual volume (threshold {threshold:.0}; {before} in the previous {EXPORT_BASELINE_DAYS} days)."),
            recommendation: "Ask the account's owner what the exports were for; if unexplained, suspend the account, revoke its sessions, and list what it took (GET /api/v1/admin/audit-logs?actor_id=… and the export jobs).".into(),
            evidence: vec![e.id.clone()],
        });
    }
}

fn off_hours(e: &AuditEntry, user: &str, known: &mut Known, add: &mut impl FnMut(Finding)) {
    let Some(now) = at(&e.ts) else { return };
    let profile = known.profiles.entry(user.to_string()).or_default();
    profile.hours.resize(24, 0);
    let hour = now.hour() as usize;
    let total: u32 = profile.hours.iter().sum();
    let near = profile.hours[(hour + 23) % 24] + profile.hours[hour] + profile.hours[(hour + 1) % 24];
    if total >= HABIT_MIN_ACTIONS && f64::from(near) < HABIT_RARE_SHARE * f64::from(total) {
        add(Finding {
            kind: Kind::OffHours,
            severity: Severity::Medium,
            key: format!("off_hours|{user}|{}", &e.ts[..10]),
            principal: Some(user.to_string()),
            source_ip: e.actor.source_ip.clone(),
            occurred_at: e.ts.clone(),
            summary: format!(
                "A privileged action ({}) at {hour:02}:00 UTC, an hour this account almost never works in ({near} of its {total} privileged actions).",
                e.action
            ),
            recommendation:
                "Confirm with the account's owner that they were working then; if not, revoke the account's sessions and review its actions that day.".into(),
            evidence: vec![e.id.clone()],
        });
    }
    profile.hours[hour] += 1;
}

fn probing(window: &[AuditEntry], e: &AuditEntry, add: &mut impl FnMut(Finding)) {
    if e.actor.kind != "user" {
        return;
    }
    let denials = within(window, e, PROBING_WINDOW_MINUTES, |w| w.action == "access.denied" && w.actor.id == e.actor.id);
    if denials.len() < PROBING_DENIALS {
        return;
    }
    let routes: BTreeSet<&str> = denials.iter().map(|d| d.target_id.as_str()).collect();
    add(Finding {
        kind: Kind::Probing,
        severity: Severity::Medium,
        key: format!("probing|{}|{}", e.actor.id, e.id),
        principal: Some(e.actor.id.clone()),
        source_ip: e.actor.source_ip.clone(),
        occurred_at: e.ts.clone(),
        summary: format!("{} refused requests (403) by one account within {PROBING_WINDOW_MINUTES} minutes, on {} different routes.", denials.len(), routes.len()),
        recommendation: "An account trying what it may not do: check with its owner (a misconfigured client or script?), and if unexplained suspend it and revoke its sessions.".into(),
        evidence: evidence(&denials),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::audit::Actor;

    fn entry(id: &str, ts: &str, actor: &str, action: &str, outcome: Outcome, target: &str, ip: &str) -> AuditEntry {
        let actor = Actor { id: actor.into(), kind: "user".into(), source_ip: Some(ip.into()), ..Actor::default() };
        let mut e = AuditEntry::at(at(ts).unwrap(), &actor, action, "user", target).outcome(outcome);
        e.id = id.into();
        e
    }

    fn failures(n: usize, account: &str, ip: &str, from_minute: usize) -> Vec<AuditEntry> {
        (0..n)
            .map(|i| {
                entry(&format!("f{account}{i}"), &format!("2026-12-01T10:{:02}:00Z", from_minute + i), account, "auth.login", Outcome::Failure, account, ip)
            })
            .collect()
    }

    #[test]
    fn distances_are_great_circle_kilometres() {
        let km = distance_km((40.71, -74.01), (35.68, 139.69));
        assert!((10_800.0..10_900.0).contains(&km), "{km}");
        assert!(distance_km((48.86, 2.35), (48.86, 2.35)) < 1e-6);
    }

    #[test]
    fn brute_force_needs_its_count_within_the_window_and_fires_once_per_attack() {
        let mut known = Known::default();
        // Nine in a window, the tenth twenty minutes later: nothing.
        let mut spread = failures(9, "a", "192.0.2.1", 0);
        spread.extend(failures(1, "a", "192.0.2.1", 30));
        assert!(detect(&spread, 0, &mut known).is_empty());
        // Twelve in twelve minutes: one event (the attack goes on, it is not twelve).
        let burst = failures(12, "a", "192.0.2.1", 0);
        let found = detect(&burst, 0, &mut known);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].kind, found[0].evidence.len()), (Kind::BruteForce, 10));
        // Already recorded within the hour: still one.
        known.recent.insert((Kind::BruteForce, "a".into()));
        assert!(detect(&burst, 0, &mut known).is_empty());
    }

    #[test]
    fn spraying_counts_accounts_from_one_address() {
        let mut window = Vec::new();
        for (i, account) in ["a", "b", "c", "d"].iter().enumerate() {
            window.extend(failures(1, account, "203.0.113.9", i));
        }
        assert!(detect(&window, 0, &mut Known::default()).is_empty(), "four accounts is not five");
        window.extend(failures(1, "e", "203.0.113.9", 5));
        let found = detect(&window, 4, &mut Known::default());
        assert_eq!(found.iter().map(|f| f.kind).collect::<Vec<_>>(), [Kind::PasswordSpraying]);
        assert_eq!(found[0].source_ip.as_deref(), Some("203.0.113.9"));
    }

    #[test]
    fn off_hours_needs_an_established_habit() {
        let mut known = Known::default();
        let action = |i: usize, hour: u32| {
            entry(&format!("p{i}"), &format!("2026-11-{:02}T{hour:02}:15:00Z", 1 + i % 28), "admin", "user.update", Outcome::Success, "x", "198.51.100.1")
        };
        // Forty at 09:00-11:00, then one at 03:00: too little habit to judge.
        let history: Vec<AuditEntry> = (0..40).map(|i| action(i, 9 + (i % 3) as u32)).collect();
        assert!(detect(&history, 0, &mut known).is_empty());
        assert!(detect(&[action(100, 3)], 0, &mut known).is_empty());
        // Twenty more: now 03:00 is an hour this admin almost never works.
        let more: Vec<AuditEntry> = (40..60).map(|i| action(i, 9 + (i % 3) as u32)).collect();
        detect(&more, 0, &mut known);
        let found = detect(&[action(101, 4)], 0, &mut known);
        assert!(found.is_empty(), "04:00 neighbours the 03:00 action seen before: {found:?}");
        let found = detect(&[action(102, 20)], 0, &mut known);
        assert_eq!(found.iter().map(|f| f.kind).collect::<Vec<_>>(), [Kind::OffHours]);
        assert_eq!(known.profiles["admin"].hours.iter().sum::<u32>(), 63);
    }

    #[test]
    fn mass_export_is_measured_against_the_principals_own_baseline() {
        let mut known = Known::default();
        let export = |i: usize, day: u32| {
            entry(&format!("x{day}-{i}"), &format!("2026-11-{day:02}T12:00:{:02}Z", i % 60), "analyst", "data.export", Outcome::Success, "x", "198.51.100.1")
        };
        // A heavy exporter: 30 a day for two weeks is their normal.
        for day in 1..15 {
            let batch: Vec<AuditEntry> = (0..30).map(|i| export(i, day)).collect();
            let found = detect(&batch, 0, &mut known);
            if day > 1 {
                assert!(found.is_empty(), "day {day}: {found:?}");
            }
        }
        // 140 in one day (over 5 x 30) is not.
        let batch: Vec<AuditEntry> = (0..160).map(|i| export(i, 15)).collect();
        let found = detect(&batch, 0, &mut known);
        assert_eq!(found.iter().map(|f| f.kind).collect::<Vec<_>>(), [Kind::MassExport]);
        assert!(known.profiles["analyst"].exports.len() <= EXPORT_BASELINE_DAYS as usize + 1);
    }
}
