//! Each service's request format and documented limits: a page of domain
//! events becomes batches, the same batches every time for the same page
//! (so a run that stopped half-way resumes at the batch it had reached).
//!
//! - Segment, HTTP tracking API `POST /v1/batch`: at most 500 KB per
//!   batch, 32 KB per call; `messageId` dedups.
//! - Mixpanel, `POST /import`: at most 2,000 events and 10 MB (before
//!   compression) per call, 1 MB per event; `$insert_id` dedups.
//! - GA4 Measurement Protocol, `POST /mp/collect`: at most 25 events per
//!   request, all of one `client_id`, 130 KB per request, events at most
//!   72 hours old; `purchase` dedups on `transaction_id`, other events do
//!   not dedup (see docs/integrations.md, "Analytics connectors").

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};
use shared::store::timestamp;

use super::events::{DomainEvent, Kind};

pub const SEGMENT_MAX_BATCH_BYTES: usize = 500 * 1024;
pub const SEGMENT_MAX_CALL_BYTES: usize = 32 * 1024;
pub const MIXPANEL_MAX_EVENTS: usize = 2000;
pub const MIXPANEL_MAX_BATCH_BYTES: usize = 10 * 1024 * 1024;
pub const MIXPANEL_MAX_EVENT_BYTES: usize = 1024 * 1024;
pub const GA4_MAX_EVENTS: usize = 25;
pub const GA4_MAX_BATCH_BYTES: usize = 130 * 1024;
pub const GA4_MAX_AGE: Duration = Duration::hours(72);

/// One request's body and the events in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub body: Vec<u8>,
    pub event_ids: Vec<String>,
}

/// What was left out of a page and why (too big for one call, too old).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Skipped {
    pub too_large: Vec<String>,
    pub too_old: Vec<String>,
}

/// An event's id and its serialized form.
type Serialized = (String, Vec<u8>);

/// Pack serialized items into batches under `max_items` and `max_bytes`,
/// `overhead` being the envelope's bytes plus one separator per item.
fn pack(items: Vec<Serialized>, max_items: usize, max_bytes: usize, overhead: usize, wrap: impl Fn(&[Vec<u8>]) -> Vec<u8>) -> Vec<Batch> {
    let mut batches = Vec::new();
    let (mut ids, mut bodies, mut bytes) = (Vec::new(), Vec::<Vec<u8>>::new(), overhead);
    for (id, body) in items {
        if !bodies.is_empty() && (bodies.len() == max_items || bytes + body.len() + 1 > max_bytes) {
            batches.push(Batch { body: wrap(&bodies), event_ids: std::mem::take(&mut ids) });
            bodies.clear();
            bytes = overhead;
        }
        bytes += body.len() + 1;
        ids.push(id);
        bodies.push(body);
    }
    if !bodies.is_empty() {
        batches.push(Batch { body: wrap(&bodies), event_ids: ids });
    }
    batches
}

fn join(open: &[u8], parts: &[Vec<u8>], close: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(open.len() + close.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    out.extend_from_slice(open);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(part);
    }
    out.extend_from_slice(close);
    out
}

/// Segment track calls, in batches.
pub fn segment(events: &[DomainEvent], sent_at: DateTime<Utc>) -> (Vec<Batch>, Skipped) {
    let mut skipped = Skipped::default();
    let mut calls = Vec::with_capacity(events.len());
    for event in events {
        let call = json!({
            "type": "track",
            "event": event.kind.title(),
            "userId": event.person,
            "messageId": event.id,
            "timestamp": timestamp(event.at),
            "properties": event.properties,
            "context": {"library": {"name": "keel", "version": env!("CARGO_PKG_VERSION")}},
        });
        let body = serde_json::to_vec(&call).unwrap_or_default();
        if body.len() > SEGMENT_MAX_CALL_BYTES {
            skipped.too_large.push(event.id.clone());
            continue;
        }
        calls.push((event.id.clone(), body));
    }
    let open = format!(r#"{{"sentAt":"{}","batch":["#, timestamp(sent_at)).into_bytes();
    let overhead = open.len() + 2;
    (pack(calls, usize::MAX, SEGMENT_MAX_BATCH_BYTES, overhead, |parts| join(&open, parts, b"]}")), skipped)
}

/// Mixpanel import events, in batches.
pub fn mixpanel(events: &[DomainEvent]) -> (Vec<Batch>, Skipped) {
    let mut skipped = Skipped::default();
    let mut items = Vec::with_capacity(events.len());
    for event in events {
        let mut properties: Map<String, Value> = event.properties.clone();
        properties.insert("time".into(), json!(event.at.timestamp_millis()));
        properties.insert("distinct_id".into(), json!(event.person));
        properties.insert("$insert_id".into(), json!(event.id));
        properties.insert("$source".into(), json!("keel"));
        let body = serde_json::to_vec(&json!({"event": event.kind.title(), "properties": properties})).unwrap_or_default();
        if body.len() > MIXPANEL_MAX_EVENT_BYTES {
            skipped.too_large.push(event.id.clone());
            continue;
        }
        items.push((event.id.clone(), body));
    }
    (pack(items, MIXPANEL_MAX_EVENTS, MIXPANEL_MAX_BATCH_BYTES, 2, |parts| join(b"[", parts, b"]")), skipped)
}

/// GA4 requests: one person's events per request (the protocol's
/// `client_id` is per request), people in the order of their first event.
pub fn ga4(events: &[DomainEvent], now: DateTime<Utc>) -> (Vec<Batch>, Skipped) {
    let mut skipped = Skipped::default();
    let mut people: Vec<(&str, Vec<Serialized>)> = Vec::new();
    for event in events {
        if now - event.at > GA4_MAX_AGE {
            skipped.too_old.push(event.id.clone());
            continue;
        }
        let mut params: Map<String, Value> = Map::new();
        for (key, value) in &event.properties {
            let key = match (event.kind, key.as_str()) {
                (Kind::OrderCompleted, "order_id") => "transaction_id",
                (Kind::OrderCompleted, "revenue") => "value",
                (_, other) => other,
            };
            params.insert(key.to_string(), value.clone());
        }
        params.insert("keel_event_id".into(), json!(event.id));
        params.insert("engagement_time_msec".into(), json!(1));
        let body = serde_json::to_vec(&json!({
            "name": event.kind.ga4_name(),
            "timestamp_micros": event.at.timestamp_micros(),
            "params": params,
        }))
        .unwrap_or_default();
        match people.iter_mut().find(|(p, _)| *p == event.person) {
            Some((_, list)) => list.push((event.id.clone(), body)),
            None => people.push((&event.person, vec![(event.id.clone(), body)])),
        }
    }
    let mut batches = Vec::new();
    for (person, items) in people {
        let open = serde_json::to_vec(&json!({"client_id": format!("keel.{person}"), "user_id": person})).unwrap_or_default();
        // `{"client_id":…,"user_id":…` + `,"events":[` … `]}`.
        let open = [&open[..open.len() - 1], br#","events":["#].concat();
        let overhead = open.len() + 2;
        batches.extend(pack(items, GA4_MAX_EVENTS, GA4_MAX_BATCH_BYTES, overhead, |parts| join(&open, parts, b"]}")));
    }
    (batches, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize, person: &str, padding: usize) -> DomainEvent {
        let mut properties = Map::new();
        properties.insert("chart_id".into(), json!("x".repeat(padding)));
        DomainEvent { id: format!("id-{i:05}"), at: Utc::now(), kind: Kind::ChartCreated, person: person.into(), properties }
    }

    #[test]
    fn segment_batches_stay_under_500_kb_and_keep_every_event_once_in_order() {
        let events: Vec<_> = (0..3000).map(|i| event(i, "p", 300)).collect();
        let (batches, skipped) = segment(&events, Utc::now());
        assert!(batches.len() >= 2);
        assert!(skipped.too_large.is_empty());
        let mut seen = Vec::new();
        for batch in &batches {
            assert!(batch.body.len() <= SEGMENT_MAX_BATCH_BYTES, "{}", batch.body.len());
            let body: Value = serde_json::from_slice(&batch.body).unwrap();
            let calls = body["batch"].as_array().unwrap();
            assert_eq!(calls.len(), batch.event_ids.len());
            seen.extend(calls.iter().map(|c| c["messageId"].as_str().unwrap().to_string()));
        }
        assert_eq!(seen, events.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
        // A call over 32 KB is left out, not sent to be refused.
        let (_, skipped) = segment(&[event(1, "p", 40_000)], Utc::now());
        assert_eq!(skipped.too_large, vec!["id-00001".to_string()]);
    }

    #[test]
    fn mixpanel_batches_hold_at_most_2000_events() {
        let events: Vec<_> = (0..4500).map(|i| event(i, "p", 10)).collect();
        let (batches, _) = mixpanel(&events);
        assert_eq!(batches.iter().map(|b| b.event_ids.len()).collect::<Vec<_>>(), vec![2000, 2000, 500]);
        let first: Value = serde_json::from_slice(&batches[0].body).unwrap();
        assert_eq!(first[0]["properties"]["$insert_id"], "id-00000");
        assert_eq!(first[0]["properties"]["distinct_id"], "p");
    }

    #[test]
    fn ga4_requests_are_per_person_with_at_most_25_events_and_skip_old_ones() {
        let mut events: Vec<_> = (0..60).map(|i| event(i, if i % 2 == 0 { "a" } else { "b" }, 10)).collect();
        events[0].at = Utc::now() - Duration::hours(73);
        let (batches, skipped) = ga4(&events, Utc::now());
        assert_eq!(skipped.too_old, vec!["id-00000".to_string()]);
        // "b" acts first once "a"'s old event is left out: 30 of b's, 29 of a's.
        assert_eq!(batches.iter().map(|b| b.event_ids.len()).collect::<Vec<_>>(), vec![25, 5, 25, 4]);
        let first: Value = serde_json::from_slice(&batches[0].body).unwrap();
        assert_eq!(first["user_id"], "b");
        assert_eq!(first["client_id"], "keel.b");
        assert_eq!(first["events"].as_array().unwrap().len(), 25);
        assert_eq!(first["events"][0]["name"], "chart_create");
    }

    #[test]
    fn the_same_page_gives_the_same_batches() {
        let events: Vec<_> = (0..100).map(|i| event(i, "p", 10)).collect();
        let now = Utc::now();
        assert_eq!(segment(&events, now).0, segment(&events, now).0);
        assert_eq!(ga4(&events, now).0, ga4(&events, now).0);
    }
}
