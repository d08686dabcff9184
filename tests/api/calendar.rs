//! Calendar sync: the private ICS feed, read back with Python's
//! `icalendar` (UIDs, DTSTART in UTC or with a TZID and its VTIMEZONE),
//! revoked and re-issued; and two-way CalDAV sync with Radicale: Keel
//! creates, moves and deletes its events there, and the user's deletions
//! and edits there come back through sync-collection.

use chrono::{DateTime, Duration, Utc};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use shared::domain::revenue::{Billing, Order};
use shared::identity::users::User;
use shared::store::{s, timestamp, to_item};

use crate::helpers::{Response, TestApp, request, send_to};
use crate::radicale::radicale;

/// The integrations router with loopback targets allowed (Radicale on
/// 127.0.0.1), as `KEEL_WEBHOOKS_ALLOW_LOOPBACK=1` gives.
fn router(app: &TestApp) -> axum::Router {
    let mut state = app.app.integrations.clone();
    state.webhook_policy = integrations::ssrf::Policy { allow_loopback: true };
    integrations::router(state)
}

async fn call(app: &TestApp, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Response {
    send_to(router(app), request(method, path, token, body)).await
}

async fn sync(app: &TestApp, token: &str, body: Value) -> Response {
    call(app, Method::POST, "/api/v1/integrations/calendar/sync", Some(token), Some(body)).await
}

/// A monthly subscription order of `user` whose paid term started
/// `started` ago (so it renews a month after).
async fn order(app: &TestApp, user: &User, started: Duration) -> Order {
    // Whole seconds: iCalendar times have no fractions.
    let start = chrono::SubsecRound::trunc_subsecs(Utc::now() - started, 0);
    let order = Order {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user.id.clone(),
        plan: Some("pro".into()),
        billing: Some(Billing::Monthly),
        amount_cents: 4900,
        status: Some("paid".into()),
        created_at: timestamp(start),
        period_start: Some(timestamp(start)),
        ..Default::default()
    };
    put_order(app, &order).await;
    order
}

async fn put_order(app: &TestApp, order: &Order) {
    let mut item = to_item(order).unwrap();
    item.insert("pk".into(), s(format!("ORDER#{}", order.id)));
    item.insert("sk".into(), s("META"));
    item.insert("type".into(), s("order"));
    item.insert("gsi1pk".into(), s(format!("USER#{}", order.user_id)));
    item.insert("gsi1sk".into(), s(format!("{}#{}", order.created_at, order.id)));
    app.store().put_item_unchecked(item).await.unwrap();
}

fn renewal_at(order: &Order) -> DateTime<Utc> {
    order.period_end.as_deref().map(time_of).unwrap_or_else(|| time_of(order.period_start.as_deref().unwrap()) + chrono::Months::new(1))
}

fn time_of(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

/// A report schedule of the caller's, through the reports API: daily at
/// 08:00 in Berlin. Its id and next run.
async fn schedule(app: &TestApp, token: &str, email: &str) -> (String, DateTime<Utc>) {
    let body = json!({
        "name": "Orders by country",
        "spec": {"dataset": "orders", "group_by": ["country"], "metrics": [{"op": "count", "as": "orders"}]},
        "formats": ["csv"], "cron": "0 8 * * *", "timezone": "Europe/Berlin", "recipients": [email],
    });
    let r = app.call(Method::POST, "/api/v1/reports/schedules", Some(token), Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (r.body["id"].as_str().unwrap().to_string(), time_of(r.body["next_run_at"].as_str().unwrap()))
}

/// One event as Python's `icalendar` reads it.
#[derive(Debug, Clone, PartialEq)]
struct Read {
    uid: String,
    /// DTSTART as an instant.
    start: DateTime<Utc>,
    /// Its TZID parameter (none: written in UTC).
    tzid: Option<String>,
    summary: String,
}

/// Parse iCalendar text with Python's `icalendar` (Radicale's own
/// dependency, in the venv). The script fails on a floating DTSTART, a TZID
/// without its VTIMEZONE, a VEVENT without UID/DTSTAMP, or a VTIMEZONE
/// with a UID or DTSTAMP.
fn read_ics(text: &str) -> Vec<Read> {
    let script = r#"
import json, sys
from icalendar import Calendar
cal = Calendar.from_ical(sys.stdin.buffer.read())
zones = {str(z["TZID"]) for z in cal.walk("VTIMEZONE")}
for z in cal.walk("VTIMEZONE"):
    assert "UID" not in z and "DTSTAMP" not in z, "a VTIMEZONE has a UID or DTSTAMP"
    assert z.walk("STANDARD") or z.walk("DAYLIGHT"), "a VTIMEZONE has no observance"
out = []
for ev in cal.walk("VEVENT"):
    assert "UID" in ev and "DTSTAMP" in ev, "an event lacks UID or DTSTAMP"
    prop = ev["DTSTART"]
    start = ev.decoded("DTSTART")
    assert getattr(start, "tzinfo", None) is not None, "a floating DTSTART: %s" % ev["UID"]
    tzid = prop.params.get("TZID")
    if tzid is not None:
        assert tzid in zones, "TZID %s has no VTIMEZONE" % tzid
    else:
        assert start.utcoffset().total_seconds() == 0, "DTSTART neither UTC nor with a TZID"
    out.append({"uid": str(ev["UID"]), "start": start.isoformat(), "tzid": tzid, "summary": str(ev.get("SUMMARY", ""))})
print(json.dumps(out))
"#;
    let python = keel_local::repo_root().join(".keel/venv/bin/python");
    let mut child = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "icalendar refused the text: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    let parsed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    parsed
        .into_iter()
        .map(|v| Read {
            uid: v["uid"].as_str().unwrap().to_string(),
            start: time_of(v["start"].as_str().unwrap()),
            tzid: v["tzid"].as_str().map(str::to_string),
            summary: v["summary"].as_str().unwrap().to_string(),
        })
        .collect()
}

/// Suspend a user as an administrator would (the profile's status; its keys kept).
async fn suspend(app: &TestApp, user_id: &str) {
    let mut user = shared::identity::users::get(app.store(), user_id).await.unwrap().unwrap();
    user.status = shared::identity::users::UserStatus::Suspended;
    let mut item = to_item(&user).unwrap();
    let stored = app.store().get_item(&format!("USER#{user_id}"), "PROFILE").await.unwrap().unwrap();
    for key in ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk", "type"] {
        if let Some(value) = stored.get(key) {
            item.insert(key.to_string(), value.clone());
        }
    }
    app.store().put_item_unchecked(item).await.unwrap();
}

fn feed_path(url: &str) -> String {
    url.strip_prefix("http://keel.test").unwrap_or_else(|| panic!("the public URL in {url}")).to_string()
}

async fn read_feed(app: &TestApp, url: &str) -> Response {
    call(app, Method::GET, &feed_path(url), None, None).await
}

#[tokio::test]
async fn an_ics_feed_has_the_users_own_events_and_a_revoked_or_reissued_url_is_dead() {
    let app = TestApp::spawn().await;
    let (ada, token) = app.user(&["analyst"]).await;
    let (bob, bob_token) = app.user(&["user"]).await;
    let running = order(&app, &ada, Duration::days(10)).await;
    let bobs = order(&app, &bob, Duration::days(3)).await;
    let (schedule_id, next_run) = schedule(&app, &token, &ada.email).await;

    // Bad input names its field.
    for (body, field) in [
        (json!({"target": "fax"}), "target"),
        (json!({}), "target"),
        (json!({"target": "ics", "events": "weather"}), "events"),
        (json!({"target": "ics", "events": ["renewals", 3]}), "events"),
        (json!({"target": "ics", "calendar_url": "https://cal.example.com/"}), "calendar_url"),
        (json!({"target": "caldav", "calendar_url": "http://10.0.0.1/cal/", "credentials": {"username": "a", "password": "b"}}), "calendar_url"),
        (json!({"target": "caldav", "calendar_url": "https://cal.example.com/"}), "credentials"),
        (json!({"target": "caldav", "calendar_url": "https://cal.example.com/", "credentials": {"username": "", "password": "b"}}), "credentials.username"),
        (json!({"target": "caldav"}), "calendar_url"),
    ] {
        let r = sync(&app, &token, body.clone()).await;
        assert_eq!((r.status, r.error_fields()), (StatusCode::BAD_REQUEST, vec![field.to_string()]), "{body}: {}", r.body);
    }
    // Signed in only.
    assert_eq!(call(&app, Method::POST, "/api/v1/integrations/calendar/sync", None, Some(json!({"target": "ics"}))).await.status, StatusCode::UNAUTHORIZED);

    let issued = sync(&app, &token, json!({"target": "ics", "events": ["renewals", "scheduled_reports"]})).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    assert_eq!(issued.headers["cache-control"], "no-store");
    let url = issued.body["feed"]["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("http://keel.test/api/v1/integrations/calendar/feeds/kcal_") && url.ends_with(".ics"), "{url}");

    // Public (no token), text/calendar, read back by Python's icalendar.
    let feed = read_feed(&app, &url).await;
    assert_eq!(feed.status, StatusCode::OK, "{}", feed.body);
    assert!(feed.headers["content-type"].to_str().unwrap().starts_with("text/calendar"));
    let text = feed.body.as_str().unwrap().to_string();
    assert!(text.contains("BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin"), "{text}");
    let events = read_ics(&text);
    let uids: Vec<&str> = events.iter().map(|e| e.uid.as_str()).collect();
    assert_eq!(events.len(), 2, "{events:?}");
    let renewal = events.iter().find(|e| e.uid == format!("renewal-{}@keel", running.id)).expect("the renewal");
    assert_eq!((renewal.start, renewal.tzid.as_deref()), (renewal_at(&running), None), "a renewal is in UTC");
    let report = events.iter().find(|e| e.uid == format!("report-schedule-{schedule_id}@keel")).expect("the schedule's next run");
    assert_eq!((report.start, report.tzid.as_deref()), (next_run, Some("Europe/Berlin")));
    assert!(!uids.contains(&format!("renewal-{}@keel", bobs.id).as_str()), "only ada's own events");
    // The same events read again: the same UIDs (calendars update in place).
    assert_eq!(read_ics(read_feed(&app, &url).await.body.as_str().unwrap()).iter().map(|e| e.uid.clone()).collect::<Vec<_>>(), uids);

    // Another user's feed has their events only, and one source only if asked.
    let bobs_feed = sync(&app, &bob_token, json!({"target": "ics", "events": "renewals"})).await;
    let bob_url = bobs_feed.body["feed"]["url"].as_str().unwrap().to_string();
    let bob_events = read_ics(read_feed(&app, &bob_url).await.body.as_str().unwrap());
    assert_eq!(bob_events.iter().map(|e| e.uid.clone()).collect::<Vec<_>>(), [format!("renewal-{}@keel", bobs.id)]);
    // Nothing of the token is stored in the clear.
    let stored = app.store().get_item(&format!("CALFEEDUSER#{}", ada.id), "FEED").await.unwrap().unwrap();
    let token_part = url.rsplit('/').next().unwrap().trim_end_matches(".ics");
    assert!(!format!("{stored:?}").contains(token_part));

    // Re-issuing kills the old URL.
    let reissued = sync(&app, &token, json!({"target": "ics"})).await;
    let new_url = reissued.body["feed"]["url"].as_str().unwrap().to_string();
    assert_ne!(new_url, url);
    assert_eq!(read_feed(&app, &url).await.status, StatusCode::NOT_FOUND);
    assert_eq!(read_feed(&app, &new_url).await.status, StatusCode::OK);
    // Guessing: a malformed or unknown token is the same 404.
    assert_eq!(read_feed(&app, "http://keel.test/api/v1/integrations/calendar/feeds/kcal_nope.ics").await.status, StatusCode::NOT_FOUND);

    // The hub shows the feed integration in use.
    let (_, admin) = app.user(&["super_admin"]).await;
    let catalogue = call(&app, Method::GET, "/api/v1/integrations/available", Some(&admin), None).await;
    let ics = catalogue.body["integrations"].as_array().unwrap().iter().find(|i| i["name"] == "ics").unwrap().clone();
    assert_eq!((ics["built"].clone(), ics["status"].clone()), (json!(true), json!("connected")), "{ics}");

    // Revoked: 404, and revoking again is a 404 too.
    let revoked = call(&app, Method::DELETE, "/api/v1/integrations/calendar/feeds", Some(&token), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
    assert_eq!(read_feed(&app, &new_url).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&app, Method::DELETE, "/api/v1/integrations/calendar/feeds", Some(&token), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(read_feed(&app, &bob_url).await.status, StatusCode::OK, "bob's feed is his own");

    // A suspended user's feed stops with their account.
    suspend(&app, &bob.id).await;
    assert_eq!(read_feed(&app, &bob_url).await.status, StatusCode::NOT_FOUND);

    let actions: Vec<String> = app.audit_for("calendar_feed", &ada.id).await.into_iter().map(|e| e.action).collect();
    assert_eq!(actions, ["calendar.feed_revoked", "calendar.feed_reissued", "calendar.feed_issued"]);
}

/// The user, acting in their calendar directly (as their calendar app would).
struct Calendar {
    url: String,
    http: reqwest::Client,
}

impl Calendar {
    fn req(&self, method: &str, name: &str) -> reqwest::RequestBuilder {
        self.http.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{name}", self.url)).basic_auth("ada", Some("calendar-pass"))
    }

    /// A resource's ETag and text, or none.
    async fn get(&self, name: &str) -> Option<(String, String)> {
        let r = self.req("GET", name).send().await.unwrap();
        if r.status() == 404 {
            return None;
        }
        assert_eq!(r.status(), 200);
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        Some((etag, r.text().await.unwrap()))
    }

    async fn put(&self, name: &str, text: String, etag: Option<&str>) {
        let mut r = self.req("PUT", name).header("content-type", "text/calendar").body(text);
        if let Some(etag) = etag {
            r = r.header("if-match", etag);
        }
        let r = r.send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    async fn delete(&self, name: &str) {
        let r = self.req("DELETE", name).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
}

fn summary(r: &Response) -> Value {
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["sync"]["ok"], true, "{}", r.body);
    r.body["sync"].clone()
}

fn counts(sync: &Value) -> [u64; 6] {
    ["created", "updated", "deleted", "dismissed", "user_edits_kept", "conflicts"].map(|k| sync[k].as_u64().unwrap())
}

/// Radicale round trip: Keel creates, moves and deletes its events on the
/// server; the user's deletion there dismisses an event, their edit is
/// kept until the source changes, their own event is left alone; a 412
/// (the server copy changed after the pull) is resolved by reading it and
/// writing Keel's version over it.
#[tokio::test]
async fn caldav_sync_round_trips_with_radicale_both_ways() {
    let app = TestApp::spawn().await;
    let radicale = radicale().await;
    let calendar = Calendar { url: radicale.url.clone(), http: reqwest::Client::new() };
    let (ada, token) = app.user(&["analyst"]).await;
    let (bob, _) = app.user(&["user"]).await;
    let mut moving = order(&app, &ada, Duration::days(10)).await;
    let mut ending = order(&app, &ada, Duration::days(20)).await;
    let bobs = order(&app, &bob, Duration::days(5)).await;
    let (schedule_id, next_run) = schedule(&app, &token, &ada.email).await;
    let moving_file = format!("renewal-{}.ics", moving.id);
    let ending_file = format!("renewal-{}.ics", ending.id);
    let schedule_file = format!("report-schedule-{schedule_id}.ics");
    // The user's own event, which Keel must never touch.
    let mine = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//ada//EN\r\nBEGIN:VEVENT\r\nUID:dentist@ada\r\nDTSTAMP:20261201T000000Z\r\nDTSTART:20261220T090000Z\r\nSUMMARY:Dentist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    calendar.put("dentist.ics", mine.to_string(), None).await;
    let (dentist_etag, _) = calendar.get("dentist.ics").await.unwrap();

    // Connect and sync: three events created, readable by icalendar.
    let connect = json!({"target": "caldav", "calendar_url": radicale.url, "credentials": {"username": "ada", "password": "calendar-pass"}, "events": ["renewals", "scheduled_reports"]});
    let first = sync(&app, &token, connect.clone()).await;
    assert_eq!(counts(&summary(&first)), [3, 0, 0, 0, 0, 0], "{}", first.body);
    assert!(!first.body.to_string().contains("calendar-pass"), "the password is never answered");
    assert_eq!(first.body["connection"]["username"], "ada");
    let item = app.store().get_item(&format!("CALDAV#{}", ada.id), "CONNECTION").await.unwrap().unwrap();
    assert!(!format!("{item:?}").contains("calendar-pass"), "sealed at rest");
    let (_, text) = calendar.get(&schedule_file).await.expect("the schedule's event");
    let read = read_ics(&text);
    assert_eq!((read[0].uid.clone(), read[0].start, read[0].tzid.as_deref()), (format!("report-schedule-{schedule_id}@keel"), next_run, Some("Europe/Berlin")));
    let (_, text) = calendar.get(&moving_file).await.expect("the renewal");
    assert_eq!(read_ics(&text)[0].start, renewal_at(&moving));
    assert!(calendar.get(&format!("renewal-{}.ics", bobs.id)).await.is_none(), "only ada's events");

    // Nothing changed: nothing written.
    assert_eq!(counts(&summary(&sync(&app, &token, json!({"target": "caldav"})).await)), [0; 6]);

    // Keel side: a renewal moves (updated in place), a subscription ends (deleted there).
    moving.period_end = Some(timestamp(renewal_at(&moving) + Duration::days(5)));
    put_order(&app, &moving).await;
    ending.ended_at = Some(timestamp(Utc::now()));
    put_order(&app, &ending).await;
    let second = summary(&sync(&app, &token, json!({"target": "caldav"})).await);
    assert_eq!(counts(&second), [0, 1, 1, 0, 0, 0], "{second}");
    let (_, text) = calendar.get(&moving_file).await.unwrap();
    assert_eq!(read_ics(&text)[0].start, renewal_at(&moving));
    assert!(text.contains("SEQUENCE:1"), "{text}");
    assert!(calendar.get(&ending_file).await.is_none());

    // Server side: the user deletes the report event (dismissed, never pushed
    // again) and moves the renewal (their edit is kept).
    calendar.delete(&schedule_file).await;
    let (etag, text) = calendar.get(&moving_file).await.unwrap();
    let moved_by_user = text.lines().map(|l| if l.starts_with("DTSTART") { "DTSTART:20300101T090000Z" } else { l }).collect::<Vec<_>>().join("\r\n");
    calendar.put(&moving_file, moved_by_user, Some(&etag)).await;
    let third = summary(&sync(&app, &token, json!({"target": "caldav"})).await);
    assert_eq!(counts(&third), [0, 0, 0, 1, 1, 0], "{third}");
    assert!(calendar.get(&schedule_file).await.is_none(), "not pushed again");
    let (_, text) = calendar.get(&moving_file).await.unwrap();
    assert_eq!(read_ics(&text)[0].start, time_of("2030-01-01T09:00:00Z"), "the user's edit is kept");

    // The schedule fires (its next run moves): still dismissed. The renewal's
    // source moves: Keel's fields win over the user's edit.
    reports::schedules::fire_due(app.store(), next_run).await.unwrap();
    moving.period_end = Some(timestamp(renewal_at(&moving) + Duration::days(1)));
    put_order(&app, &moving).await;
    let fourth = summary(&sync(&app, &token, json!({"target": "caldav"})).await);
    assert_eq!(counts(&fourth), [0, 1, 0, 0, 0, 0], "{fourth}");
    assert!(calendar.get(&schedule_file).await.is_none());
    let (_, text) = calendar.get(&moving_file).await.unwrap();
    assert_eq!(read_ics(&text)[0].start, renewal_at(&moving));

    // Keel's own writes come back through sync-collection with the ETags
    // it kept: not taken for the user's edits.
    assert_eq!(counts(&summary(&sync(&app, &token, json!({"target": "caldav"})).await)), [0; 6]);

    // A 412: the server copy changes after Keel last saw it (a lost race,
    // forged by making Keel's remembered ETag stale) while the source
    // changes: Keel reads the server copy and writes its version over it.
    let mut item = app.store().get_item(&format!("CALDAV#{}", ada.id), "CONNECTION").await.unwrap().unwrap();
    let mut entries: Value = serde_json::from_str(item["entries"].as_s().unwrap()).unwrap();
    entries[format!("renewal-{}@keel", moving.id)]["etag"] = json!("\"stale\"");
    item.insert("entries".into(), s(entries.to_string()));
    app.store().put_item_unchecked(item).await.unwrap();
    moving.period_end = Some(timestamp(renewal_at(&moving) + Duration::days(1)));
    put_order(&app, &moving).await;
    let fifth = summary(&sync(&app, &token, json!({"target": "caldav"})).await);
    assert_eq!(counts(&fifth), [0, 1, 0, 0, 0, 1], "{fifth}");
    let (_, text) = calendar.get(&moving_file).await.unwrap();
    assert_eq!(read_ics(&text)[0].start, renewal_at(&moving));

    // Fewer sources: the renewals leave the calendar (the dismissed report
    // event stays gone); the change is audited.
    let narrowed = summary(&sync(&app, &token, json!({"target": "caldav", "events": "scheduled_reports"})).await);
    assert_eq!(counts(&narrowed), [0, 0, 1, 0, 0, 0], "{narrowed}");
    assert!(calendar.get(&moving_file).await.is_none() && calendar.get(&schedule_file).await.is_none());

    // The user's own event was never touched.
    assert_eq!(calendar.get("dentist.ics").await.unwrap().0, dentist_etag);

    // The hub: CalDAV in use and healthy; audited connect and syncs.
    let (_, admin) = app.user(&["super_admin"]).await;
    let catalogue = call(&app, Method::GET, "/api/v1/integrations/available", Some(&admin), None).await;
    let caldav = catalogue.body["integrations"].as_array().unwrap().iter().find(|i| i["name"] == "caldav").unwrap().clone();
    assert_eq!(caldav["status"], "connected", "{caldav}");
    let actions: Vec<String> = app.audit_for("calendar_caldav", &ada.id).await.into_iter().map(|e| e.action).collect();
    assert_eq!(actions.iter().filter(|a| *a == "calendar.caldav_synced").count(), 8, "{actions:?}");
    assert_eq!(actions.last().unwrap(), "calendar.caldav_connected");
    assert!(actions.contains(&"calendar.caldav_updated".to_string()), "{actions:?}");

    // Disconnected: the password is gone; a sync needs a calendar again.
    assert_eq!(call(&app, Method::DELETE, "/api/v1/integrations/calendar/caldav", Some(&token), None).await.status, StatusCode::NO_CONTENT);
    assert!(app.store().get_item(&format!("CALDAV#{}", ada.id), "CONNECTION").await.unwrap().is_none());
    assert_eq!(sync(&app, &token, json!({"target": "caldav"})).await.error_fields(), ["calendar_url"]);
}

/// A server that fails: the sync answers `ok: false` with the reason, the
/// failure is audited and counted on the hub's CalDAV health; wrong
/// credentials say so.
#[tokio::test]
async fn a_failing_caldav_server_is_reported_and_counted_on_the_health() {
    let app = TestApp::spawn().await;
    let radicale = radicale().await;
    let (ada, token) = app.user(&["user"]).await;
    order(&app, &ada, Duration::days(1)).await;

    let wrong = sync(&app, &token, json!({"target": "caldav", "calendar_url": radicale.url, "credentials": {"username": "ada", "password": "wrong"}})).await;
    assert_eq!(wrong.status, StatusCode::OK, "{}", wrong.body);
    assert_eq!(wrong.body["sync"]["ok"], false);
    assert!(wrong.body["sync"]["error"].as_str().unwrap().contains("refused the credentials (401)"), "{}", wrong.body);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = format!("http://127.0.0.1:{closed}/ada/keel/");
    for _ in 0..2 {
        let r = sync(&app, &token, json!({"target": "caldav", "calendar_url": down, "credentials": {"username": "ada", "password": "calendar-pass"}})).await;
        assert_eq!(r.body["sync"]["ok"], false, "{}", r.body);
        assert!(r.body["sync"]["error"].as_str().unwrap().starts_with("connection failed"), "{}", r.body);
        assert!(r.body["connection"]["last_error"].is_string());
    }
    let health = shared::domain::integration_health::all(app.store()).await.unwrap();
    let caldav = health.iter().find(|h| h.name == "caldav").expect("recorded");
    assert_eq!(caldav.consecutive_failures, 3);
    let (_, admin) = app.user(&["super_admin"]).await;
    let catalogue = call(&app, Method::GET, "/api/v1/integrations/available", Some(&admin), None).await;
    let entry = catalogue.body["integrations"].as_array().unwrap().iter().find(|i| i["name"] == "caldav").unwrap().clone();
    assert_eq!(entry["status"], "failing", "{entry}");
    let failures = app.audit_for("calendar_caldav", &ada.id).await.into_iter().filter(|e| e.action == "calendar.caldav_synced").count();
    assert_eq!(failures, 3);

    // Back to a working server: healthy again.
    let ok =
        sync(&app, &token, json!({"target": "caldav", "calendar_url": radicale.url, "credentials": {"username": "ada", "password": "calendar-pass"}})).await;
    assert_eq!(counts(&summary(&ok))[0], 1);
    let health = shared::domain::integration_health::all(app.store()).await.unwrap();
    assert_eq!(health.iter().find(|h| h.name == "caldav").unwrap().consecutive_failures, 0);
}

/// The scheduled re-sync (`IntegrationsCalendarFunction`, every 15
/// minutes) syncs every connected calendar as the system: a source change
/// reaches the server without the user asking; a suspended user's calendar
/// is left alone.
#[tokio::test]
async fn the_scheduled_resync_syncs_every_connected_calendar_as_the_system() {
    let app = TestApp::spawn().await;
    let radicale = radicale().await;
    let calendar = Calendar { url: radicale.url.clone(), http: reqwest::Client::new() };
    let (ada, token) = app.user(&["user"]).await;
    let mut renewing = order(&app, &ada, Duration::days(2)).await;
    let connect =
        json!({"target": "caldav", "calendar_url": radicale.url, "credentials": {"username": "ada", "password": "calendar-pass"}, "events": "renewals"});
    assert_eq!(counts(&summary(&sync(&app, &token, connect).await))[0], 1);

    renewing.period_end = Some(timestamp(renewal_at(&renewing) + Duration::days(3)));
    put_order(&app, &renewing).await;
    let mut state = app.app.integrations.clone();
    state.webhook_policy = integrations::ssrf::Policy { allow_loopback: true };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let resynced = integrations::calendar::sync::resync_all(&state, deadline).await.unwrap();
    assert_eq!((resynced.synced, resynced.failed, resynced.skipped), (1, 0, 0));
    let (_, text) = calendar.get(&format!("renewal-{}.ics", renewing.id)).await.unwrap();
    assert_eq!(read_ics(&text)[0].start, renewal_at(&renewing));
    let newest = app.audit_for("calendar_caldav", &ada.id).await.remove(0);
    assert_eq!((newest.action.as_str(), newest.actor.kind.as_str(), newest.actor.id.as_str()), ("calendar.caldav_synced", "system", "calendar-resync"));

    // Nothing changed since: synced, but neither written nor audited.
    let audited = app.audit_for("calendar_caldav", &ada.id).await.len();
    let quiet = integrations::calendar::sync::resync_all(&state, deadline).await.unwrap();
    assert_eq!((quiet.synced, quiet.failed), (1, 0));
    assert_eq!(app.audit_for("calendar_caldav", &ada.id).await.len(), audited);

    // Suspended: skipped, nothing written.
    suspend(&app, &ada.id).await;
    let resynced = integrations::calendar::sync::resync_all(&state, deadline).await.unwrap();
    assert_eq!((resynced.synced, resynced.skipped), (0, 1));
}
