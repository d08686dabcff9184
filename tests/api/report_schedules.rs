//! Scheduled reports and share links (docs/reports.md) against the local
//! stack: a schedule fires through the local scheduler (its clock given by
//! the test), the email with the report attached is in the emulator's SES
//! outbox, a (schedule, run time, recipient) is delivered exactly once,
//! `send_if` holds back an empty report, `run_as: recipient` runs with
//! the recipient's permissions and filters, failures reach the owner; a
//! share link works without a token, is audited per view, and answers
//! 410 after revoke and after expiry (404 once gone).

use chrono::{DateTime, Duration, Utc};
use http::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// Raw (MIME) messages the emulator accepted for `to`.
pub async fn raw_emails(app: &TestApp, to: &str) -> Vec<String> {
    let mut data = Value::Null;
    for _ in 0..20 {
        if let Ok(response) = reqwest::get(format!("{}/moto-api/data.json", app.endpoint)).await
            && let Ok(bytes) = response.bytes().await
            && let Ok(value) = serde_json::from_slice::<Value>(&bytes)
        {
            data = value;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    data["ses"]["RawMessage"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .filter(|m| m["destinations"].as_array().is_some_and(|a| a.iter().any(|x| x == to)))
                .filter_map(|m| m["raw_data"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The attachments of a MIME message, read by Python's `email` package:
/// (file name, content type, text of the body).
fn attachments(raw: &str) -> Vec<(String, String, String)> {
    let dir = std::env::temp_dir().join(format!("keel-mail-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("message.eml");
    std::fs::write(&path, raw).unwrap();
    let script = r#"
import email, json, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=policy.default)
out = []
for part in m.iter_attachments():
    body = part.get_payload(decode=True)
    text = body.decode("utf-8", "replace") if part.get_content_type().startswith("text/") else "%d bytes" % len(body)
    out.append([part.get_filename(), part.get_content_type(), text])
print(json.dumps(out))
"#;
    let python = keel_local::repo_root().join(".keel/venv/bin/python");
    let out = std::process::Command::new(python).arg("-c").arg(script).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().with_timezone(&Utc)
}

async fn fire(app: &TestApp, at: DateTime<Utc>) -> reports::schedules::Fired {
    reports::schedules::fire_due(app.store(), at).await.unwrap()
}

#[tokio::test]
async fn a_schedule_fires_through_the_local_scheduler_and_emails_the_report_exactly_once() {
    let app = TestApp::spawn().await;
    let (items, _) = keel_local::seed::generate(Utc::now(), 60, 3);
    keel_local::seed::put(app.store(), &items).await.unwrap();
    let (owner, token) = app.user(&["analyst"]).await;
    let recipient = format!("finance-{}@example.com", uuid::Uuid::now_v7().simple());

    // Bad input is named.
    let bad = json!({"spec": {"dataset": "orders", "group_by": ["country"], "metrics": [{"op": "count"}]}, "cron": "every day", "timezone": "Mars/Olympus",
        "recipients": ["not-an-email"], "send_if": "threshold"});
    let r = app.call(Method::POST, "/api/v1/reports/schedules", Some(&token), Some(bad)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let fields = r.error_fields();
    for f in ["cron", "recipients[0]", "threshold"] {
        assert!(fields.iter().any(|x| x == f), "{f} in {fields:?}");
    }

    let body = json!({
        "name": "Orders by country",
        "spec": {"dataset": "orders", "group_by": ["country"], "metrics": [{"op": "sum", "field": "amount_cents", "as": "gross_cents"}, {"op": "count", "as": "orders"}],
                 "chart": {"type": "bar", "x": "country", "y": ["gross_cents"]}},
        "formats": ["csv", "pdf"],
        "cron": "0 8 * * *",
        "timezone": "Europe/Berlin",
        "recipients": [recipient],
        "subject": "Daily orders",
    });
    let r = app.call(Method::POST, "/api/v1/reports/schedules", Some(&token), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let due = time(&r.body["next_run_at"]);
    // 08:00 in Berlin: 07:00 or 06:00 UTC.
    assert!(due > Utc::now() && [6, 7].contains(&chrono::Timelike::hour(&due)) && chrono::Timelike::minute(&due) == 0, "{due}");

    // Not due yet: nothing fires.
    assert_eq!(fire(&app, due - Duration::seconds(1)).await.runs.len(), 0);
    // Due: one run, one job; the next run is a day later.
    let fired = fire(&app, due + Duration::seconds(5)).await;
    assert_eq!((fired.runs.len(), fired.jobs), (1, 1), "{fired:?}");
    let schedule = app.get(&format!("/api/v1/reports/schedules/{id}"), &token).await;
    assert_eq!(time(&schedule.body["next_run_at"]), due + Duration::days(1));
    // A second tick at the same time finds nothing due.
    assert_eq!(fire(&app, due + Duration::seconds(6)).await.runs.len(), 0);
    // Exactly once: even with the schedule put back (a racing tick that read it before), the run record refuses a second firing.
    let pk = reports::schedules::Schedule::pk(&id);
    let mut item = app.store().get_item(&pk, "META").await.unwrap().unwrap();
    item.insert("gsi2sk".into(), shared::store::s(format!("{}#{id}", due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))));
    item.insert("next_run_at".into(), shared::store::s(due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
    app.store().put_item_unchecked(item).await.unwrap();
    let again = fire(&app, due + Duration::seconds(7)).await;
    assert_eq!((again.runs.len(), again.jobs, again.raced), (0, 0, 1), "{again:?}");

    app.run_jobs().await;
    let emails = raw_emails(&app, &recipient).await;
    assert_eq!(emails.len(), 1, "one email for the one run");
    assert!(emails[0].contains("Subject: Daily orders"), "{}", &emails[0][..emails[0].len().min(500)]);
    let files = attachments(&emails[0]);
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert!(names.iter().any(|n| n.ends_with(".csv")) && names.iter().any(|n| n.ends_with(".pdf")), "{names:?}");
    let csv = &files.iter().find(|f| f.0.ends_with(".csv")).unwrap().2;
    assert!(csv.starts_with("country,gross_cents,orders"), "{csv}");

    // A redelivered job message does not send twice.
    let runs = app.get(&format!("/api/v1/reports/schedules/{id}/runs"), &token).await;
    assert_eq!(runs.status, 200, "{}", runs.body);
    let run = &runs.body["runs"][0];
    assert_eq!(
        (run["state"].as_str(), run["delivered"].as_str(), run["recipient"].as_str()),
        (Some("success"), Some("attachment"), Some(recipient.as_str())),
        "{}",
        runs.body
    );
    let job = shared::domain::jobs::get(app.store(), run["report_id"].as_str().unwrap()).await.unwrap().unwrap();
    app.redeliver(&job).await;
    app.run_jobs().await;
    assert_eq!(raw_emails(&app, &recipient).await.len(), 1);
    assert_eq!(app.get(&format!("/api/v1/reports/schedules/{id}/runs"), &token).await.body["runs"].as_array().unwrap().len(), 1);

    // Others do not see it; the owner lists it; the changes are audited.
    let (_, other) = app.user(&["analyst"]).await;
    assert_eq!(app.get(&format!("/api/v1/reports/schedules/{id}"), &other).await.status, 404);
    let listed = app.get("/api/v1/reports/schedules", &token).await;
    assert_eq!(listed.body["schedules"][0]["id"], id.as_str());
    let actions: Vec<String> = app.audit_for("report_schedule", &id).await.into_iter().map(|e| e.action).collect();
    for action in ["report.schedule.create", "report.schedule.run", "report.schedule.delivered"] {
        assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
    }
    let _ = owner;
}

#[tokio::test]
async fn send_if_run_as_recipient_and_failures_reach_the_owner() {
    let app = TestApp::spawn().await;
    let (items, _) = keel_local::seed::generate(Utc::now(), 60, 3);
    keel_local::seed::put(app.store(), &items).await.unwrap();
    let (owner, token) = app.user(&["admin"]).await;
    let (analyst, _) = app.user(&["analyst"]).await;
    let stranger = format!("nobody-{}@example.com", uuid::Uuid::now_v7().simple());

    // has_results: a report with no rows is not sent.
    let empty = json!({"spec": {"dataset": "orders", "filters": {"user_id": "no-such-user"}, "group_by": ["country"], "metrics": [{"op": "count"}]},
        "format": "csv", "cron": "*/5 * * * *", "recipients": [owner.email], "send_if": "has_results"});
    let r = app.call(Method::POST, "/api/v1/reports/schedules", Some(&token), Some(empty)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let empty_id = r.body["id"].as_str().unwrap().to_string();
    let due = time(&r.body["next_run_at"]);

    // run_as recipient: the analyst (no pii:read) gets masked emails, filtered to their country; a stranger is no Keel user.
    let mut filters = serde_json::Map::new();
    filters.insert(analyst.email.clone(), json!({"status": "active"}));
    let users = json!({"spec": {"dataset": "users", "columns": ["email", "country"], "limit": 50}, "format": "csv", "cron": "*/5 * * * *",
        "recipients": [analyst.email, stranger], "run_as": "recipient", "recipient_filters": filters});
    let r = app.call(Method::POST, "/api/v1/reports/schedules", Some(&token), Some(users)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let users_id = r.body["id"].as_str().unwrap().to_string();

    let fired = fire(&app, due + Duration::seconds(1)).await;
    assert_eq!((fired.runs.len(), fired.refused), (2, 1), "{fired:?}");
    app.run_jobs().await;

    let runs = |id: String| {
        let app = &app;
        let token = token.clone();
        async move { app.get(&format!("/api/v1/reports/schedules/{id}/runs"), &token).await.body["runs"].as_array().unwrap().clone() }
    };
    let empty_runs = runs(empty_id).await;
    assert_eq!(empty_runs[0]["state"], "not_triggered", "{empty_runs:?}");
    assert!(raw_emails(&app, &owner.email).await.is_empty(), "nothing sent for an empty report");

    let user_runs = runs(users_id).await;
    let state_of = |to: &str| user_runs.iter().find(|r| r["recipient"] == to).map(|r| r["state"].as_str().unwrap().to_string());
    assert_eq!(state_of(&analyst.email).as_deref(), Some("success"), "{user_runs:?}");
    assert_eq!(state_of(&stranger).as_deref(), Some("error"), "{user_runs:?}");
    let mail = raw_emails(&app, &analyst.email).await;
    assert_eq!(mail.len(), 1);
    let csv = attachments(&mail[0]).into_iter().find(|f| f.0.ends_with(".csv")).unwrap().2;
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert!(!rows.is_empty() && rows.iter().all(|r| r.contains("***@")), "masked for a recipient without pii:read: {csv}");
    // The owner hears of the failed run.
    let notices = app.sent_emails(&owner.email).await;
    assert!(notices.iter().any(|m| m.contains(&stranger) && m.contains("not a Keel user")), "{notices:?}");
}

#[tokio::test]
async fn a_share_link_works_without_a_token_is_audited_and_ends() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["analyst"]).await;
    let r = app
        .call(
            Method::POST,
            "/api/v1/reports/generate",
            Some(&token),
            Some(json!({"spec": {"dataset": "charts", "group_by": ["moderation_status"], "metrics": [{"op": "count"}]}, "formats": ["csv", "json"]})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["report_id"].as_str().unwrap().to_string();
    app.run_jobs().await;

    // Bad lifetimes are named; 90 days at most.
    let share = |body: Value| {
        let app = &app;
        let token = token.clone();
        let id = id.clone();
        async move { app.call(Method::POST, &format!("/api/v1/reports/{id}/share"), Some(&token), Some(body)).await }
    };
    let r = share(json!({"expires_in": "91d"})).await;
    assert_eq!((r.status, r.error_fields()), (http::StatusCode::BAD_REQUEST, vec!["expires_in".to_string()]));
    let r = share(json!({"password": "open sesame"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let expires = time(&r.body["expires_at"]);
    assert!((expires - Utc::now() - Duration::days(7)).num_seconds().abs() < 60, "7 days by default");
    let url = r.body["url"].as_str().unwrap().to_string();
    let share_id = r.body["share_id"].as_str().unwrap().to_string();

    // No token: the password is asked for, then the files are served.
    assert_eq!(app.call(Method::GET, &url, None, None).await.status, 401);
    let viewed = app.send(http::Request::builder().uri(&url).header("x-share-password", "open sesame").body(axum::body::Body::empty()).unwrap()).await;
    assert_eq!(viewed.status, 200, "{}", viewed.body);
    let r = app.call(Method::POST, &format!("{url}?format=csv"), None, Some(json!({"password": "open sesame"}))).await;
    assert_eq!(r.status, 303);
    let views: Vec<_> = app.audit_for("report", &id).await.into_iter().filter(|e| e.action == "report.share.view").collect();
    assert_eq!(views.iter().filter(|e| e.outcome == shared::audit::Outcome::Success).count(), 2, "{views:?}");
    assert_eq!(views.iter().filter(|e| e.outcome == shared::audit::Outcome::Denied).count(), 1, "{views:?}");

    // Listed; revoked: 410.
    let list = app.get(&format!("/api/v1/reports/{id}/shares"), &token).await;
    assert_eq!(list.body["shares"][0]["state"], "active", "{}", list.body);
    let r = app.call(Method::DELETE, &format!("/api/v1/reports/{id}/share/{share_id}"), Some(&token), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "revoked");
    let gone = app.call(Method::POST, &url, None, Some(json!({"password": "open sesame"}))).await;
    assert_eq!(gone.status, 410, "{}", gone.body);

    // Expired: 410; once the item is gone (TTL), 404.
    let r = share(json!({"expires_in": 3600})).await;
    let url = r.body["url"].as_str().unwrap().to_string();
    assert_eq!(app.call(Method::GET, &url, None, None).await.status, 200);
    let token_part = url.rsplit('/').next().unwrap();
    let pk = format!("REPORTSHARE#{}", shared::platform::crypto::sha256_hex(token_part.as_bytes()));
    let mut item = app.store().get_item(&pk, "META").await.unwrap().unwrap();
    item.insert("expires_at".into(), shared::store::s((Utc::now() - Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
    app.store().put_item_unchecked(item).await.unwrap();
    let expired = app.call(Method::GET, &url, None, None).await;
    assert_eq!(expired.status, 410, "{}", expired.body);
    assert!(expired.body["detail"].as_str().unwrap().contains("expired"));
    app.store().delete(&pk, "META").await.unwrap();
    assert_eq!(app.call(Method::GET, &url, None, None).await.status, 404);
}
