//! iCalendar (RFC 5545) text of Keel's events, for the feed (every event)
//! and for CalDAV resources (one event each). Events in a time zone carry
//! `DTSTART;TZID=<IANA name>` with a VTIMEZONE for that zone, made from the
//! tz database's transitions around the events (clients that know the
//! name use their own rules; the others read ours); the rest are UTC.
//! Events are built with the `icalendar` crate; zones are written here.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName, Tz};
use icalendar::{Calendar, Component, EventLike, Property};

use super::events::CalendarEvent;

pub const PRODID: &str = "-//Keel//Calendar sync//EN";
/// How often subscribers should read the feed again.
const REFRESH: &str = "PT1H";

/// What the text is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A subscribed feed: named, published, with a refresh interval.
    Feed,
    /// A calendar object resource in a CalDAV collection, which must not
    /// carry METHOD (RFC 4791 4.1).
    Resource,
}

/// A calendar of `events`, each with its `SEQUENCE` (bumped by Keel each
/// time it changes an event a CalDAV server holds; 0 in feeds).
pub fn calendar(purpose: Purpose, events: &[(&CalendarEvent, u32)], now: DateTime<Utc>) -> String {
    let mut calendar = Calendar::new();
    calendar.properties.retain(|p| p.key() != "PRODID");
    calendar.append_property(Property::new("PRODID", PRODID));
    if purpose == Purpose::Feed {
        calendar.append_property(Property::new("METHOD", "PUBLISH"));
        calendar.name("Keel");
        calendar.append_property(Property::new("REFRESH-INTERVAL", REFRESH).add_parameter("VALUE", "DURATION").done());
        calendar.append_property(Property::new("X-PUBLISHED-TTL", REFRESH));
    }
    let mut zones: BTreeMap<&str, (Tz, DateTime<Utc>, DateTime<Utc>)> = BTreeMap::new();
    for (event, _) in events {
        if let Some(tz) = event.timezone {
            let span = zones.entry(tz.name()).or_insert((tz, event.start, event.start));
            span.1 = span.1.min(event.start);
            span.2 = span.2.max(event.start + event.duration);
        }
    }
    for (event, sequence) in events {
        calendar.push(vevent(event, *sequence, now));
    }
    let text = calendar.done().to_string();
    // The builder gives every component it writes a UID and a DTSTAMP,
    // which a VTIMEZONE must not have: zones are written as text, before
    // the events (RFC 5545 3.6.5).
    let zones: String = zones.values().map(|(tz, from, to)| vtimezone(*tz, *from, *to)).collect();
    let at = text.find("BEGIN:VEVENT").or_else(|| text.rfind("END:VCALENDAR")).unwrap_or(text.len());
    format!("{}{zones}{}", &text[..at], &text[at..])
}

fn vevent(event: &CalendarEvent, sequence: u32, now: DateTime<Utc>) -> icalendar::Event {
    let end = event.start + event.duration;
    let mut vevent = icalendar::Event::new();
    vevent.uid(&event.uid).summary(&event.summary).description(&event.description).timestamp(now).sequence(sequence);
    vevent.append_property(Property::new("CATEGORIES", event.source.as_str()));
    vevent.append_property(Property::new("TRANSP", "TRANSPARENT"));
    match event.timezone {
        Some(tz) => {
            vevent.append_property(local_time("DTSTART", tz, event.start));
            vevent.append_property(local_time("DTEND", tz, end));
        }
        None => {
            vevent.starts(event.start).ends(end);
        }
    }
    vevent.done()
}

fn local_time(key: &str, tz: Tz, at: DateTime<Utc>) -> Property {
    let local = at.with_timezone(&tz).naive_local();
    Property::new(key, local.format("%Y%m%dT%H%M%S").to_string()).add_parameter("TZID", tz.name()).done()
}

fn offset_text(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let seconds = seconds.abs();
    let (hours, minutes, rest) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if rest == 0 { format!("{sign}{hours:02}{minutes:02}") } else { format!("{sign}{hours:02}{minutes:02}{rest:02}") }
}

fn offset_at(tz: Tz, at: DateTime<Utc>) -> i32 {
    at.with_timezone(&tz).offset().fix().local_minus_utc()
}

/// The instants in `(from, to]` at which `tz`'s offset changes: scanned in
/// 6-hour steps, each change narrowed to the minute.
fn transitions(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let step = Duration::hours(6);
    let mut found = Vec::new();
    let mut at = from;
    while at < to {
        let next = (at + step).min(to);
        if offset_at(tz, at) != offset_at(tz, next) {
            let (mut low, mut high) = (at, next);
            while high - low > Duration::minutes(1) {
                let middle = low + (high - low) / 2;
                if offset_at(tz, middle) == offset_at(tz, low) { low = middle } else { high = middle }
            }
            found.push(high);
        }
        at = next;
    }
    found
}

/// `tz` as a VTIMEZONE: the observance in force a year before `from`, and
/// every change until a year after `to`.
pub fn vtimezone(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let start = from - Duration::days(366);
    let end = to + Duration::days(366);
    let mut text = format!("BEGIN:VTIMEZONE\r\nTZID:{}\r\n", tz.name());
    let mut observance = |at: DateTime<Utc>, before: i32| {
        let offset = tz.offset_from_utc_datetime(&at.naive_utc());
        let kind = if offset.dst_offset().is_zero() { "STANDARD" } else { "DAYLIGHT" };
        let onset: NaiveDateTime = at.naive_utc() + Duration::seconds(i64::from(before));
        text.push_str(&format!(
            "BEGIN:{kind}\r\nDTSTART:{}\r\nTZOFFSETFROM:{}\r\nTZOFFSETTO:{}\r\nTZNAME:{}\r\nEND:{kind}\r\n",
            onset.format("%Y%m%dT%H%M%S"),
            offset_text(before),
            offset_text(offset_at(tz, at)),
            offset.abbreviation().unwrap_or(tz.name()),
        ));
    };
    let initial = offset_at(tz, start);
    observance(start, initial);
    for change in transitions(tz, start, end) {
        observance(change, offset_at(tz, change - Duration::minutes(1)));
    }
    text.push_str("END:VTIMEZONE\r\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::events::EventSource;

    #[test]
    fn berlin_has_its_two_changes_a_year_and_events_carry_its_tzid() {
        let start: DateTime<Utc> = "2026-12-10T07:00:00Z".parse().unwrap();
        let event = CalendarEvent {
            uid: "report-schedule-1@keel".into(),
            source: EventSource::ScheduledReports,
            summary: "Scheduled report: Orders".into(),
            description: "d".into(),
            start,
            duration: Duration::minutes(15),
            timezone: Some(chrono_tz::Europe::Berlin),
        };
        let text = calendar(Purpose::Feed, &[(&event, 0)], start);
        assert!(text.contains("DTSTART;TZID=Europe/Berlin:20261210T080000"), "{text}");
        assert!(text.contains("BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin"), "{text}");
        // 2025-12 .. 2027-12: 2026 and 2027 each change twice (March, October).
        assert_eq!(text.matches("BEGIN:DAYLIGHT").count(), 2, "{text}");
        assert!(text.contains("DTSTART:20260329T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nTZNAME:CEST"), "{text}");
        assert!(text.contains("DTSTART:20261025T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET"), "{text}");
        assert!(text.contains("UID:report-schedule-1@keel"));
    }

    #[test]
    fn utc_events_end_in_z() {
        let start: DateTime<Utc> = "2027-01-01T00:00:00Z".parse().unwrap();
        let event = CalendarEvent {
            uid: "renewal-o1@keel".into(),
            source: EventSource::Renewals,
            summary: "Renewal".into(),
            description: "d".into(),
            start,
            duration: Duration::minutes(30),
            timezone: None,
        };
        let text = calendar(Purpose::Resource, &[(&event, 3)], start);
        assert!(text.contains("DTSTART:20270101T000000Z") && text.contains("SEQUENCE:3") && !text.contains("VTIMEZONE"), "{text}");
        assert!(!text.contains("METHOD:") && !text.contains("REFRESH-INTERVAL"), "a CalDAV resource has no METHOD: {text}");
    }
}
