//! The security detectors (compliance `security_events`): each fires on a
//! scripted scenario — driven through the API where a person would do it
//! (sign-ins with CloudFront's location headers, refused requests, role
//! grants, refresh-token reuse) and written as the functions write their
//! audit entries where it takes days or many accounts — and a normal day
//! on the demo data raises nothing. Events are listed, filtered,
//! acknowledged (audited) and emailed to the security contacts.

use std::collections::{BTreeMap, HashMap};

use axum::body::Body;
use chrono::{Duration, Timelike, Utc};
use compliance::ComplianceState;
use http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use shared::audit::{Actor, AuditEntry, Location, Outcome};

use crate::helpers::{PASSWORD, Response, TestApp};

fn state(app: &TestApp) -> ComplianceState {
    ComplianceState { platform: app.app.platform.clone(), clients: app.app.clients.clone() }
}

/// Run the detectors as the schedule would a little later (past the
/// settling time, so every entry written so far is read).
async fn detect(app: &TestApp) -> compliance::security_events::RunReport {
    compliance::security_events::run(&state(app), Utc::now() + Duration::minutes(2)).await.expect("detectors run")
}

/// A sign-in from `ip`, located by CloudFront headers when `place` is given.
async fn sign_in(app: &TestApp, email: &str, password: &str, ip: &str, place: Option<(&str, f64, f64)>) -> Response {
    let mut request =
        Request::builder().method(Method::POST).uri("/api/v1/auth/login").header("content-type", "application/json").header("x-forwarded-for", ip);
    if let Some((country, lat, lon)) = place {
        request = request
            .header("cloudfront-viewer-country", country)
            .header("cloudfront-viewer-latitude", lat.to_string())
            .header("cloudfront-viewer-longitude", lon.to_string());
    }
    app.send(request.body(Body::from(json!({"email": email, "password": password}).to_string())).unwrap()).await
}

async fn events(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let r = app.get(&format!("/api/v1/compliance/security-events{query}"), token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["events"].as_array().unwrap().clone()
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

fn user_actor(id: &str, ip: &str) -> Actor {
    Actor { id: id.into(), kind: "user".into(), source_ip: Some(ip.into()), user_agent: Some("Mozilla/5.0".into()), ..Actor::default() }
}

const NEW_YORK: (&str, f64, f64) = ("US", 40.71, -74.01);
const TOKYO: (&str, f64, f64) = ("JP", 35.68, 139.69);

#[tokio::test]
async fn a_normal_day_on_the_demo_data_raises_nothing() {
    let app = TestApp::spawn().await;
    let store = app.store().store().clone();
    // The demo data (as `make dev` loads it, smaller), then the day's traffic.
    keel_local::seed::load(&store, 300, 2026).await.unwrap();
    let state = state(&app);
    compliance::security_events::run(&state, Utc::now()).await.unwrap();
    let (_, officer) = app.user(&["super_admin"]).await;
    let (admin, admin_token) = app.user(&["admin"]).await;
    let mut people = Vec::new();
    for _ in 0..8 {
        people.push(app.user(&["user"]).await.0);
    }
    let (support, support_token) = app.user(&["support"]).await;
    // Everyone signs in from home, twice; one mistypes once first.
    for (i, person) in people.iter().chain([&admin, &support]).enumerate() {
        let ip = format!("198.51.100.{}", 10 + i);
        if i == 0 {
            assert_eq!(sign_in(&app, &person.email, "not quite it", &ip, Some(NEW_YORK)).await.status, StatusCode::UNAUTHORIZED);
        }
        for _ in 0..2 {
            let r = sign_in(&app, &person.email, PASSWORD, &ip, Some(NEW_YORK)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
    }
    // The admin's ordinary work: edits and a few exports.
    for person in people.iter().take(3) {
        let r = app
            .call(
                Method::PUT,
                &format!("/api/v1/admin/users/{}", person.id),
                Some(&admin_token),
                Some(json!({"name": "Renamed Person", "version": person.version})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    for _ in 0..3 {
        let r = app.call(Method::POST, "/api/v1/data/export", Some(&admin_token), Some(json!({"dataset": "users", "format": "csv"}))).await;
        assert!(r.status.is_success(), "{}", r.status);
    }
    // Support opens a page it may not see, once.
    assert_eq!(app.get("/api/v1/admin/audit-logs", &support_token).await.status, StatusCode::FORBIDDEN);

    let report = detect(&app).await;
    assert!(report.entries_read > 20, "the day's entries were read: {report:?}");
    assert_eq!(report.events_recorded, 0, "{report:?}");
    assert!(events(&app, &officer, "").await.is_empty());
}

#[tokio::test]
async fn sign_in_attacks_are_detected_from_the_api() {
    // Limits loose enough for the attack to reach the log (the defaults
    // lock the account after 5 failures and slow it to one a minute).
    let app = TestApp::spawn_with(HashMap::from([("RateLimits".to_string(), "login.account=30:60, login.ip=100:1".to_string())])).await;
    let (_, officer) = app.user(&["super_admin"]).await;
    detect(&app).await;
    let (victim, _) = app.user(&["admin"]).await;
    let (traveller, _) = app.user(&["analyst"]).await;
    let mut others = Vec::new();
    for _ in 0..5 {
        others.push(app.user(&["user"]).await.0);
    }

    // Brute force: 12 wrong passwords to one account from one address.
    for _ in 0..12 {
        assert_eq!(sign_in(&app, &victim.email, "hunter2hunter2", "192.0.2.66", None).await.status, StatusCode::UNAUTHORIZED);
    }
    // Spraying: one address, one password, six accounts (one unknown).
    for person in &others {
        assert_eq!(sign_in(&app, &person.email, "Winter2026!", "203.0.113.9", None).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(sign_in(&app, "nobody@example.com", "Winter2026!", "203.0.113.9", None).await.status, StatusCode::UNAUTHORIZED);
    // Travel: New York, then Tokyo ten minutes later.
    assert_eq!(sign_in(&app, &traveller.email, PASSWORD, "198.51.100.20", Some(NEW_YORK)).await.status, StatusCode::OK);
    assert_eq!(sign_in(&app, &traveller.email, PASSWORD, "192.0.2.200", Some(TOKYO)).await.status, StatusCode::OK);
    // A refresh token used twice.
    let login = sign_in(&app, &others[0].email, PASSWORD, "198.51.100.30", None).await;
    let first = login.body["refresh_token"].as_str().unwrap().to_string();
    let rotated = app.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token": first}))).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert_eq!(app.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token": first}))).await.status, StatusCode::UNAUTHORIZED);

    let report = detect(&app).await;
    let found = events(&app, &officer, "").await;
    let kinds: BTreeMap<String, usize> = found.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e["kind"].as_str().unwrap().to_string()).or_default() += 1;
        m
    });
    assert_eq!(
        kinds,
        BTreeMap::from([
            ("brute_force".to_string(), 1),
            ("impossible_travel".to_string(), 1),
            ("new_country".to_string(), 1),
            ("password_spraying".to_string(), 1),
            ("refresh_token_reuse".to_string(), 1),
        ]),
        "{found:#?}"
    );
    assert_eq!(report.events_recorded, 5);
    let brute = of_kind(&found, "brute_force")[0];
    assert_eq!(
        (brute["severity"].as_str(), brute["principal"].as_str(), brute["source_ip"].as_str()),
        (Some("high"), Some(victim.id.as_str()), Some("192.0.2.66"))
    );
    assert!(brute["evidence"].as_array().unwrap().len() >= 10, "{brute}");
    assert!(brute["recommendation"].as_str().unwrap().contains("192.0.2.66"), "{brute}");
    // The evidence is the audit entries themselves.
    let entry = brute["evidence"][0].as_str().unwrap();
    let r = app.get(&format!("/api/v1/admin/audit-logs/{entry}"), &officer).await;
    assert_eq!((r.status, r.body["action"].as_str(), r.body["outcome"].as_str()), (StatusCode::OK, Some("auth.login"), Some("failure")), "{}", r.body);
    let spray = of_kind(&found, "password_spraying")[0];
    assert_eq!((spray["source_ip"].as_str(), spray["principal"].as_str()), (Some("203.0.113.9"), None));
    let travel = of_kind(&found, "impossible_travel")[0];
    assert_eq!((travel["severity"].as_str(), travel["principal"].as_str()), (Some("high"), Some(traveller.id.as_str())));
    assert!(travel["summary"].as_str().unwrap().contains("from US then JP"), "{travel}");
    assert_eq!(of_kind(&found, "new_country")[0]["severity"], "medium");
    // The location was recorded with the sign-in, sealed with its address.
    let sign_ins = app.audit_for("user", &traveller.id).await;
    let last = sign_ins.iter().find(|e| e.action == "auth.login").unwrap();
    assert_eq!(last.actor.location, Some(Location { country: Some("JP".into()), latitude: Some(35.68), longitude: Some(139.69) }));

    // Read again: nothing new (each finding is recorded once).
    let again = compliance::security_events::run(&state(&app), Utc::now() + Duration::minutes(3)).await.unwrap();
    assert_eq!(again.events_recorded, 0);
    assert_eq!(events(&app, &officer, "").await.len(), 5);
    // Filters: severity and above, kind; bad ones are named.
    assert_eq!(events(&app, &officer, "?severity=high").await.len(), 4);
    assert_eq!(events(&app, &officer, "?kind=new_country").await.len(), 1);
    assert!(events(&app, &officer, &format!("?to={}", (Utc::now() - Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))).await.is_empty());
    for (query, field) in [("?severity=urgent", "severity"), ("?kind=ufo", "kind"), ("?from=yesterday", "from")] {
        let r = app.get(&format!("/api/v1/compliance/security-events{query}"), &officer).await;
        assert_eq!((r.status, r.error_fields()), (StatusCode::BAD_REQUEST, vec![field.to_string()]), "{query}: {}", r.body);
    }
}

#[tokio::test]
async fn account_misuse_is_detected_and_an_event_is_acknowledged_and_emailed() {
    let app = TestApp::spawn().await;
    let (officer_user, officer) = app.user(&["super_admin"]).await;
    let contact = "soc@example.com";
    let r = app
        .call(
            Method::PUT,
            "/api/v1/admin/system/config",
            Some(&officer),
            Some(json!({"version": 0, "reason": "security contacts", "security_contacts": [contact]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .call(
            Method::PUT,
            "/api/v1/admin/system/config",
            Some(&officer),
            Some(json!({"version": r.body["version"], "reason": "x", "security_contacts": ["not an address"]})),
        )
        .await;
    assert_eq!((r.status, r.error_fields()), (StatusCode::BAD_REQUEST, vec!["security_contacts[0]".to_string()]), "{}", r.body);
    let state = state(&app);
    let store = app.store();
    let now = Utc::now();
    let (admin, admin_token) = app.user(&["admin"]).await;
    let (analyst, _) = app.user(&["analyst"]).await;
    let (plain, plain_token) = app.user(&["user"]).await;

    // The admin's habit: 60 privileged actions over the past ten days, all
    // in the hours half a day away from now; the detectors learn it.
    let start = now - Duration::days(10);
    compliance::security_events::run(&state, start).await.unwrap();
    let usual = (now.hour() + 12) % 24;
    for i in 0..60i64 {
        let day = start + Duration::days(i % 10) + Duration::hours(2);
        let at = day.with_hour(((usual as i64 + i % 3 - 1).rem_euclid(24)) as u32).unwrap().with_minute((i % 50) as u32).unwrap();
        store.record(&AuditEntry::at(at, &user_actor(&admin.id, "198.51.100.5"), "user.update", "user", &plain.id)).await.unwrap();
    }
    detect(&app).await;

    // Off-hours: the admin now, at an hour they never work.
    let r = app
        .call(Method::PUT, &format!("/api/v1/admin/users/{}", plain.id), Some(&admin_token), Some(json!({"name": "Night Edit", "version": plain.version})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Escalation: a super admin created minutes ago makes someone an admin
    // (granting oneself a role is refused by the API).
    let (rookie, rookie_token) = app.user(&["super_admin"]).await;
    let (promoted, _) = app.user(&["user"]).await;
    let r = app
        .call(
            Method::PUT,
            &format!("/api/v1/admin/users/{}/roles", promoted.id),
            Some(&rookie_token),
            Some(json!({"roles": ["admin"], "version": promoted.version})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Probing: a plain user tries 20 admin routes.
    for i in 0..20 {
        let path = if i % 2 == 0 { "/api/v1/admin/users".to_string() } else { format!("/api/v1/admin/roles/role{i}") };
        assert_eq!(app.get(&path, &plain_token).await.status, StatusCode::FORBIDDEN);
    }
    // 2FA turned off on a privileged account (as the auth function records it).
    store.record(&AuditEntry::new(&user_actor(&analyst.id, "198.51.100.8"), "mfa.disable", "user", &analyst.id)).await.unwrap();
    // Mass export: 25 exports by the analyst today, none before.
    for _ in 0..25 {
        store.record(&AuditEntry::new(&user_actor(&analyst.id, "198.51.100.8"), "data.export", "job", &uuid::Uuid::now_v7().to_string())).await.unwrap();
    }

    let report = detect(&app).await;
    let found = events(&app, &officer, "").await;
    let kinds: Vec<&str> = {
        let mut k: Vec<&str> = found.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        k.sort();
        k
    };
    assert_eq!(kinds, ["mass_export", "mfa_disabled", "off_hours", "privilege_escalation", "probing"], "{found:#?}");
    assert_eq!(report.events_recorded, 5);
    assert_eq!(report.high_events, 3, "escalation, 2FA off, mass export");
    let off = of_kind(&found, "off_hours")[0];
    assert_eq!((off["principal"].as_str(), off["severity"].as_str()), (Some(admin.id.as_str()), Some("medium")));
    let escalation = of_kind(&found, "privilege_escalation")[0];
    assert_eq!(escalation["principal"], rookie.id.as_str());
    assert!(escalation["summary"].as_str().unwrap().contains("less than 7 days before granted the role(s) admin"), "{escalation}");
    let probing = of_kind(&found, "probing")[0];
    assert_eq!((probing["principal"].as_str(), probing["evidence"].as_array().unwrap().len()), (Some(plain.id.as_str()), 20));
    // Each refusal is in the audit log.
    let r = app.get(&format!("/api/v1/admin/audit-logs/{}", probing["evidence"][0].as_str().unwrap()), &officer).await;
    assert_eq!((r.body["action"].as_str(), r.body["outcome"].as_str()), (Some("access.denied"), Some("denied")), "{}", r.body);
    assert_eq!(of_kind(&found, "mass_export")[0]["principal"], analyst.id.as_str());
    assert_eq!(of_kind(&found, "mfa_disabled")[0]["principal"], analyst.id.as_str());

    // Each new high event emails the security contacts (a job committed with it).
    app.run_jobs().await;
    let mails = app.sent_emails(contact).await;
    assert_eq!(mails.len(), 3, "{mails:#?}");
    assert!(mails.iter().any(|m| m.contains("granted the role(s) admin") && m.contains("/acknowledge")), "{mails:#?}");

    // Acknowledge: with a note, audited, once; a note is required; auditors may only read.
    let id = escalation["id"].as_str().unwrap();
    let path = format!("/api/v1/compliance/security-events/{id}/acknowledge");
    let (_, auditor) = app.user(&["auditor"]).await;
    assert_eq!(app.call(Method::POST, &path, Some(&auditor), Some(json!({"note": "ok"}))).await.status, StatusCode::FORBIDDEN);
    let r = app.call(Method::POST, &path, Some(&officer), Some(json!({"note": "  "}))).await;
    assert_eq!((r.status, r.error_fields()), (StatusCode::BAD_REQUEST, vec!["note".to_string()]));
    let r = app.call(Method::POST, &path, Some(&officer), Some(json!({"note": "Planned: I audit the Q4 review myself."}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["acknowledged_by"].as_str(), r.body["acknowledgement_note"].as_str()),
        (Some(officer_user.id.as_str()), Some("Planned: I audit the Q4 review myself."))
    );
    assert_eq!(app.call(Method::POST, &path, Some(&officer), Some(json!({"note": "again"}))).await.status, StatusCode::CONFLICT);
    let audit = app.audit_for("security_event", id).await;
    let actions: Vec<(&str, Outcome)> = audit.iter().map(|e| (e.action.as_str(), e.outcome)).collect();
    assert_eq!(actions, [("security_event.detected", Outcome::Success), ("security_event.acknowledge", Outcome::Success)]);
    assert_eq!(audit[1].actor.id, officer_user.id);
    assert_eq!(events(&app, &officer, "?acknowledged=false").await.len(), 4);
    let r = app.get(&format!("/api/v1/compliance/security-events/{id}"), &officer).await;
    assert!(r.body["acknowledged_at"].is_string(), "{}", r.body);
    assert_eq!(app.get("/api/v1/compliance/security-events/sev_nothing", &officer).await.status, StatusCode::NOT_FOUND);

    // The compliance report's control counts them: open ones warn.
    let r = app.get("/api/v1/compliance/report", &officer).await;
    let control = r.body["controls"].as_array().unwrap().iter().find(|c| c["id"] == "security_events").unwrap().clone();
    assert_eq!(control["status"], "warn", "{control}");
    assert_eq!(control["evidence"]["open"].as_array().unwrap().len(), 4, "{control}");
    assert_eq!(control["evidence"]["detected_by_kind"]["privilege_escalation"], 1, "{control}");
}
