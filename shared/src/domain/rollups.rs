//! Rollup counters: the keys the streams worker maintains from the table's
//! stream and the dashboard reads, so dashboard reads cost the same at any
//! data size. Counters are `METRIC#<name> / <bucket>[#dimension]` items with
//! a numeric `value`, changed only by atomic `ADD`.

use chrono::{DateTime, Duration, NaiveDate, Utc};

/// Users by status: `status#<status>`.
pub const USERS: &str = "users";
/// The user statuses the dashboard reads (`shared::users::UserStatus`).
pub const USER_STATUSES: &[&str] = &["active", "invited", "suspended", "deleted"];
/// Users who signed up on a day (by `created_at`): `<yyyy-mm-dd>`.
pub const SIGNUPS: &str = "signups";
/// Users whose most recent activity (login event or `last_login_at`) is on a
/// day: `<yyyy-mm-dd>`. Each user is in exactly one bucket, so the sum over
/// the last N days is the exact number of users active in those N days.
pub const LAST_ACTIVE: &str = "last_active";
/// Charts by moderation status: `status#<status>`.
pub const CHARTS: &str = "charts";
/// The moderation statuses the dashboard reads; a new status must be added
/// here to be shown.
pub const CHART_STATUSES: &[&str] = &["pending", "approved", "rejected", "flagged", "hidden"];
/// Charts created: `<yyyy-mm-dd>`, `<yyyy-mm>` and `all`.
pub const CHARTS_CREATED: &str = "charts_created";
/// Orders placed: `<yyyy-mm-dd>` and `<yyyy-mm>` (count).
pub const ORDERS: &str = "orders";
/// Gross revenue in cents by order date: `<yyyy-mm-dd>` and `<yyyy-mm>`.
pub const REVENUE: &str = "revenue";
/// Refunded cents by refund date: `<yyyy-mm-dd>` and `<yyyy-mm>`.
pub const REFUNDS: &str = "refunds";
/// Email-marketing subscribers by consent status: `status#<status>`
/// (`pending`: asked, not confirmed; `confirmed`: double opt-in given;
/// `unsubscribed`: consent withdrawn). The GDPR status's consent counts.
pub const MARKETING_CONSENT: &str = "marketing_consent";
/// The subscriber statuses (`marketing::SubscriberStatus`).
pub const CONSENT_STATUSES: &[&str] = &["pending", "confirmed", "unsubscribed"];
/// Security-relevant audit events: `<yyyy-mm-dd>`.
pub const SECURITY_EVENTS: &str = "security_events";

/// The partition of the security events index (`ts#id` sort keys, expiring
/// after [`SECURITY_INDEX_DAYS`]): the 90-day history.
pub const SECURITY_INDEX_PK: &str = "SECURITY#recent";
pub const SECURITY_INDEX_DAYS: i64 = 90;

/// The single item holding the [`LATEST_SECURITY_EVENTS`] newest security
/// events, so the dashboard reads them with its counters in one
/// BatchGetItem (a fixed cost, where a Query's cost would depend on the
/// store). Version-checked read-modify-write by the streams worker.
pub const SECURITY_LATEST_PK: &str = "SECURITY#latest";
pub const SECURITY_LATEST_SK: &str = "LIST";
pub const LATEST_SECURITY_EVENTS: usize = 20;

/// The dashboard's summary of a security-relevant audit entry (no IPs or
/// user agents: those stay in the audit log behind `pii:read`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SecurityEvent {
    pub id: String,
    pub ts: String,
    pub action: String,
    pub outcome: String,
    pub actor_id: String,
    pub target_type: String,
    pub target_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The latest-events item's content.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatestSecurityEvents {
    #[serde(default)]
    pub events: Vec<SecurityEvent>,
    /// Bumped by every write (optimistic locking between stream shards).
    #[serde(default)]
    pub version: u64,
}

/// `current` with `new` added: newest first by (ts, id), each entry once
/// (a redelivered stream record changes nothing), at most
/// [`LATEST_SECURITY_EVENTS`].
pub fn merge_latest(current: &[SecurityEvent], new: impl IntoIterator<Item = SecurityEvent>) -> Vec<SecurityEvent> {
    let mut all: Vec<SecurityEvent> = current.to_vec();
    for event in new {
        if !all.iter().any(|e| e.id == event.id) {
            all.push(event);
        }
    }
    all.sort_by(|a, b| (&b.ts, &b.id).cmp(&(&a.ts, &a.id)));
    all.truncate(LATEST_SECURITY_EVENTS);
    all
}

/// Where the streams worker keeps each user's last active day.
pub fn activity_pk(user_id: &str) -> String {
    format!("ACTIVITY#{user_id}")
}
pub const ACTIVITY_SK: &str = "LAST";

pub fn pk(metric: &str) -> String {
    format!("METRIC#{metric}")
}

/// The counter attribute of a rollup item.
pub const VALUE: &str = "value";

/// `yyyy-mm-dd` of an RFC 3339 timestamp (None if it is not one).
pub fn day_of(ts: &str) -> Option<&str> {
    let day = ts.get(..10)?;
    NaiveDate::parse_from_str(day, "%Y-%m-%d").ok().map(|_| day)
}

/// `yyyy-mm` of an RFC 3339 timestamp.
pub fn month_of(ts: &str) -> Option<&str> {
    day_of(ts).map(|d| &d[..7])
}

pub fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

pub fn month(t: DateTime<Utc>) -> String {
    t.format("%Y-%m").to_string()
}

/// The `yyyy-mm` before the month of `t`.
pub fn previous_month(t: DateTime<Utc>) -> String {
    let first = t.date_naive().with_day0(0).unwrap_or(t.date_naive());
    (first - Duration::days(1)).format("%Y-%m").to_string()
}

use chrono::Datelike as _;

/// Audit actions that matter for security whatever their outcome.
const SECURITY_ACTIONS: &[&str] = &["auth.lockout", "auth.refresh_reuse", "auth.2fa.disable", "user.suspend", "user.delete", "user.bootstrap_admin"];

/// Whether an audit entry belongs on the dashboard's security panel: failed
/// or denied sign-ins and 2FA, any denial, lockouts, refresh-token reuse,
/// role changes (of users or role definitions) and account takedowns.
pub fn is_security_event(action: &str, outcome: &str, changes_roles: bool) -> bool {
    SECURITY_ACTIONS.contains(&action)
        || outcome == "denied"
        || (action.starts_with("auth.") && outcome == "failure")
        || action.starts_with("role.")
        || changes_roles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        assert_eq!(day_of("2026-03-04T05:06:07.000000Z"), Some("2026-03-04"));
        assert_eq!(month_of("2026-03-04T05:06:07Z"), Some("2026-03"));
        assert_eq!(day_of("soon"), None);
        let t = DateTime::parse_from_rfc3339("2026-01-15T00:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(previous_month(t), "2025-12");
        assert_eq!(month(t), "2026-01");
    }

    #[test]
    fn latest_keeps_the_newest_twenty_once_each() {
        let event = |i: usize| SecurityEvent {
            id: format!("e{i:02}"),
            ts: format!("2026-01-01T00:00:{i:02}Z"),
            action: "auth.login".into(),
            outcome: "failure".into(),
            actor_id: "a".into(),
            target_type: "user".into(),
            target_id: "u".into(),
            reason: None,
        };
        let first = merge_latest(&[], (0..15).map(event));
        assert_eq!(first.len(), 15);
        assert_eq!(first[0].id, "e14");
        // Redelivery of some, and newer ones: each once, newest 20 only.
        let second = merge_latest(&first, (10..30).map(event));
        assert_eq!(second.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), (10..30).rev().map(|i| format!("e{i:02}")).collect::<Vec<_>>());
        // An older event arriving late does not displace newer ones.
        assert_eq!(merge_latest(&second, [event(1)]), second);
    }

    #[test]
    fn security_classification() {
        assert!(is_security_event("auth.login", "failure", false));
        assert!(!is_security_event("auth.login", "success", false));
        assert!(is_security_event("auth.refresh_reuse", "success", false));
        assert!(is_security_event("user.update", "success", true));
        assert!(!is_security_event("user.update", "success", false));
        assert!(is_security_event("chart.moderate", "denied", false));
    }
}
