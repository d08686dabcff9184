//! What goes on a user's calendar: their subscription renewals (the end of
//! each running paid term of their orders, `shared::domain::revenue`) and
//! the next run of each of their enabled report schedules. Only the
//! caller's own orders (gsi1 `USER#<id>`) and schedules (gsi1
//! `SCHEDULES#<id>`) are read. Each event has a UID that stays the same for
//! its source (the order, the schedule), so calendars update it in place,
//! and a fingerprint of the fields Keel owns, to tell when the source moved.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::domain::revenue::{Billing, Order};
use shared::platform::error::{Error, Result};
use shared::store::{QuerySpec, Store, attr_s, from_item, s};
use utoipa::ToSchema;

/// The most events one feed or one sync carries (the soonest first).
pub const MAX_EVENTS: usize = 200;
/// How far back a renewal or run is still shown.
const PAST_DAYS: i64 = 7;

/// A source of calendar events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = CalendarEventSource)]
pub enum EventSource {
    /// The user's subscription renewals (from their orders).
    Renewals,
    /// The next run of each of the user's enabled report schedules.
    ScheduledReports,
}

impl EventSource {
    pub const ALL: [EventSource; 2] = [EventSource::Renewals, EventSource::ScheduledReports];

    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Renewals => "renewals",
            EventSource::ScheduledReports => "scheduled_reports",
        }
    }

    pub fn parse(value: &str) -> Option<EventSource> {
        EventSource::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// One event as Keel publishes it.
#[derive(Debug, Clone, PartialEq)]
pub struct CalendarEvent {
    /// Stable for its source: `renewal-<order id>@keel`, `report-schedule-<id>@keel`.
    pub uid: String,
    pub source: EventSource,
    pub summary: String,
    pub description: String,
    pub start: DateTime<Utc>,
    pub duration: Duration,
    /// The zone it is shown in (`DTSTART;TZID=…` with its VTIMEZONE);
    /// none: UTC (`…Z`).
    pub timezone: Option<chrono_tz::Tz>,
}

impl CalendarEvent {
    /// A digest of the fields Keel owns: it changes when the source moves
    /// the event (a later renewal, a schedule's new next run), not when the
    /// user edits their copy.
    pub fn fingerprint(&self) -> String {
        let tz = self.timezone.map(|tz| tz.name().to_string()).unwrap_or_default();
        let text = format!("{}\n{}\n{}\n{}\n{}", self.summary, self.description, self.start.to_rfc3339(), self.duration.num_seconds(), tz);
        let digest = Sha256::digest(text.as_bytes());
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }

    /// The resource name of the event in a CalDAV collection.
    pub fn file_name(&self) -> String {
        format!("{}.ics", self.uid.trim_end_matches("@keel"))
    }
}

/// The events of `sources` for `user_id`, soonest first, at most `MAX_EVENTS`.
pub async fn for_user(store: &Store, user_id: &str, sources: &[EventSource], now: DateTime<Utc>) -> Result<Vec<CalendarEvent>> {
    let mut events = Vec::new();
    for source in sources {
        match source {
            EventSource::Renewals => events.extend(renewals(store, user_id, now).await?),
            EventSource::ScheduledReports => events.extend(scheduled_reports(store, user_id, now).await?),
        }
    }
    events.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.uid.cmp(&b.uid)));
    events.truncate(MAX_EVENTS);
    Ok(events)
}

async fn renewals(store: &Store, user_id: &str, now: DateTime<Utc>) -> Result<Vec<CalendarEvent>> {
    let pk = format!("USER#{user_id}");
    let spec = QuerySpec { index: Some("gsi1"), key_condition: "gsi1pk = :pk", values: vec![(":pk", s(pk))], forward: true, ..Default::default() };
    let mut events = Vec::new();
    for item in store.query_all(&spec).await? {
        // The partition also holds a Stripe customer's link to the user.
        if attr_s(&item, "type") != Some("order") {
            continue;
        }
        let order: Order = from_item(item)?;
        if let Some(event) = renewal(&order, now) {
            events.push(event);
        }
    }
    Ok(events)
}

/// The renewal of a subscription order: at the end of its paid term, unless
/// it was stopped early (cancelled, switched), refunded, lost in a dispute
/// or is long past.
pub fn renewal(order: &Order, now: DateTime<Utc>) -> Option<CalendarEvent> {
    let billing = order.billing?;
    if order.ended_at.is_some()
        || order.refund().is_some()
        || order.chargeback().is_some()
        || matches!(order.status.as_deref(), Some("cancelled" | "canceled" | "failed"))
    {
        return None;
    }
    let (_, end, _) = order.term()?;
    if end < now - Duration::days(PAST_DAYS) {
        return None;
    }
    let plan = order.plan.as_deref().filter(|p| !p.is_empty()).unwrap_or("subscription");
    let interval = match billing {
        Billing::Monthly => "monthly",
        Billing::Annual => "annual",
    };
    let amount = format!("{}.{:02}", order.amount_cents / 100, (order.amount_cents % 100).abs());
    Some(CalendarEvent {
        uid: format!("renewal-{}@keel", order.id),
        source: EventSource::Renewals,
        summary: format!("Renewal: {plan} ({interval})"),
        description: format!("Your {interval} {plan} subscription renews (last term: {amount}). Order {}.", order.id),
        start: end,
        duration: Duration::minutes(30),
        timezone: None,
    })
}

/// The fields of a report schedule (`REPORTSCHEDULE#<id> / META`, written
/// by the reports function) that its calendar event shows.
#[derive(Debug, Clone, Deserialize)]
pub struct ScheduleView {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub enabled: bool,
    #[serde(default)]
    pub next_run_at: Option<String>,
}

async fn scheduled_reports(store: &Store, user_id: &str, now: DateTime<Utc>) -> Result<Vec<CalendarEvent>> {
    let pk = format!("SCHEDULES#{user_id}");
    let spec = QuerySpec { index: Some("gsi1"), key_condition: "gsi1pk = :pk", values: vec![(":pk", s(pk))], forward: true, ..Default::default() };
    let mut events = Vec::new();
    for item in store.query_all(&spec).await? {
        let schedule: ScheduleView = from_item(item).map_err(|e| Error::internal(format!("report schedule: {e}")))?;
        if let Some(event) = next_run(&schedule, user_id, now) {
            events.push(event);
        }
    }
    Ok(events)
}

/// A schedule's next run, shown in the schedule's own time zone.
pub fn next_run(schedule: &ScheduleView, user_id: &str, now: DateTime<Utc>) -> Option<CalendarEvent> {
    if !schedule.enabled || schedule.owner_id != user_id {
        return None;
    }
    let start = shared::platform::time::parse(schedule.next_run_at.as_deref()?)?;
    if start < now - Duration::days(PAST_DAYS) {
        return None;
    }
    let timezone = schedule.timezone.parse::<chrono_tz::Tz>().ok().filter(|tz| *tz != chrono_tz::UTC);
    Some(CalendarEvent {
        uid: format!("report-schedule-{}@keel", schedule.id),
        source: EventSource::ScheduledReports,
        summary: format!("Scheduled report: {}", schedule.name),
        description: format!("Keel runs the report \"{}\" ({} in {}) and emails it to its recipients.", schedule.name, schedule.cron, schedule.timezone),
        start,
        duration: Duration::minutes(15),
        timezone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(billing: Option<Billing>, start: &str) -> Order {
        Order {
            id: "o1".into(),
            user_id: "u1".into(),
            plan: Some("pro".into()),
            billing,
            amount_cents: 4900,
            created_at: start.into(),
            period_start: Some(start.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_running_term_renews_at_its_end_and_a_stopped_one_does_not() {
        let now = "2026-12-04T12:00:00Z".parse().unwrap();
        let event = renewal(&order(Some(Billing::Monthly), "2026-12-01T00:00:00Z"), now).unwrap();
        assert_eq!(event.uid, "renewal-o1@keel");
        assert_eq!(event.start, "2027-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert!(renewal(&order(None, "2026-12-01T00:00:00Z"), now).is_none(), "a one-off payment");
        let mut ended = order(Some(Billing::Annual), "2026-12-01T00:00:00Z");
        ended.ended_at = Some("2026-12-02T00:00:00Z".into());
        assert!(renewal(&ended, now).is_none());
        assert!(renewal(&order(Some(Billing::Monthly), "2025-01-01T00:00:00Z"), now).is_none(), "long past");
    }

    #[test]
    fn fingerprints_change_with_the_source_only() {
        let now = "2026-12-04T12:00:00Z".parse().unwrap();
        let a = renewal(&order(Some(Billing::Monthly), "2026-12-01T00:00:00Z"), now).unwrap();
        let b = renewal(&order(Some(Billing::Monthly), "2026-12-01T00:00:00Z"), now).unwrap();
        let c = renewal(&order(Some(Billing::Monthly), "2026-12-02T00:00:00Z"), now).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
