//! Chart moderation end to end: the state machine (and its 409s), version
//! checks, history kept with the chart, audit entries, the owner's email on
//! reject/hide, bulk moderation with mixed outcomes, the queue's order, and
//! listing filters with cursors.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use http::Method;
use serde_json::{Value, json};
use shared::audit::{Actor, AuditEntry};
use shared::domain::charts::{Chart, ModerationStatus};
use shared::store::timestamp;

use crate::helpers::TestApp;

/// Store a chart as the app would have created it.
pub async fn chart(app: &TestApp, owner_id: &str, title: &str, status: ModerationStatus, created: DateTime<Utc>) -> Chart {
    let mut chart = Chart::new(owner_id, title, "line").with_status(status);
    chart.created_at = timestamp(created);
    chart.updated_at = chart.created_at.clone();
    let audit = AuditEntry::new(&Actor::system("tests"), "chart.create", "chart", &chart.id);
    app.store().commit(vec![chart.create_write(app.store().table()).unwrap()], &audit).await.unwrap();
    chart
}

async fn moderate(app: &TestApp, token: &str, chart_id: &str, body: Value) -> crate::helpers::Response {
    app.call(Method::POST, &format!("/api/v1/admin/charts/{chart_id}/moderate"), Some(token), Some(body)).await
}

#[tokio::test]
async fn moderation_follows_the_state_machine_and_keeps_history() {
    let app = TestApp::spawn().await;
    let (owner, _) = app.user(&["user"]).await;
    let (moderator_user, moderator) = app.user(&["moderator"]).await;
    let c = chart(&app, &owner.id, "Revenue 2026", ModerationStatus::Pending, Utc::now()).await;

    let r = moderate(&app, &moderator, &c.id, json!({"action": "approve", "reason": "meets_guidelines", "version": 1})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.body["moderation_status"].as_str(), r.body["version"].as_u64()), (Some("approved"), Some(2)));

    // Approving an approved chart is not a transition.
    let r = moderate(&app, &moderator, &c.id, json!({"action": "approve", "reason": "meets_guidelines", "version": 2})).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("cannot approve a chart that is approved"), "{}", r.body);
    // A stale version is refused before anything changes.
    let r = moderate(&app, &moderator, &c.id, json!({"action": "flag", "reason": "spam", "version": 1})).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("version"), "{}", r.body);

    let r = moderate(&app, &moderator, &c.id, json!({"action": "flag", "reason": "misleading", "note": "numbers look made up", "version": 2})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.body["moderation_status"].as_str(), r.body["flagged"].as_bool()), (Some("flagged"), Some(true)));
    let r = moderate(&app, &moderator, &c.id, json!({"action": "unflag", "reason": "meets_guidelines", "version": 3})).await;
    assert_eq!((r.status.as_u16(), r.body["flagged"].as_bool()), (200, Some(false)), "{}", r.body);
    let r = moderate(&app, &moderator, &c.id, json!({"action": "restore", "reason": "other", "version": 4})).await;
    assert_eq!(r.status, 409, "restore applies only to hidden charts: {}", r.body);

    // Bad input names the field; nothing changes.
    for (body, field) in [
        (json!({"action": "approve", "reason": "because", "version": 4}), "reason"),
        (json!({"action": "delete", "reason": "spam", "version": 4}), "action"),
        (json!({"action": "flag", "reason": "spam"}), "version"),
        (json!({"action": "flag", "reason": "spam", "version": 4, "note": ""}), "note"),
        (json!({"action": "flag", "reason": "spam", "version": 4, "priority": 1}), "priority"),
    ] {
        let r = moderate(&app, &moderator, &c.id, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.error_fields(), vec![field.to_string()], "{body}");
    }
    assert_eq!(moderate(&app, &moderator, &uuid::Uuid::now_v7().to_string(), json!({"action": "flag", "reason": "spam", "version": 1})).await.status, 404);
    assert_eq!(moderate(&app, &moderator, "not-a-chart", json!({"action": "flag", "reason": "spam", "version": 1})).await.status, 404);

    let detail = app.get(&format!("/api/v1/admin/charts/{}", c.id), &moderator).await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert_eq!(detail.body["version"], 4);
    let history = detail.body["moderation_history"].as_array().unwrap();
    let actions: Vec<&str> = history.iter().map(|h| h["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["unflag", "flag", "approve"], "newest first, only applied decisions");
    assert_eq!(history[1]["note"], "numbers look made up");
    assert_eq!((history[1]["from"].as_str(), history[1]["to"].as_str()), (Some("approved"), Some("flagged")));
    assert_eq!(history[1]["actor_id"], moderator_user.id.as_str());

    let audit: Vec<(String, Option<String>)> = app.audit_for("chart", &c.id).await.into_iter().map(|e| (e.action, e.reason)).collect();
    assert!(audit.contains(&("chart.flag".into(), Some("misleading: numbers look made up".into()))), "{audit:?}");
    assert_eq!(audit.iter().filter(|(a, _)| a.starts_with("chart.") && a != "chart.create").count(), 3, "one entry per applied decision: {audit:?}");
    // Nothing was queued for the owner: approve and flag do not notify.
    assert_eq!(app.run_jobs().await, 0);
}

#[tokio::test]
async fn reject_and_hide_email_the_owner_with_the_reason() {
    let app = TestApp::spawn().await;
    let (owner, _) = app.user(&["user"]).await;
    let (_, moderator) = app.user(&["moderator"]).await;
    let a = chart(&app, &owner.id, "Crypto gains", ModerationStatus::Pending, Utc::now()).await;
    let b = chart(&app, &owner.id, "Neighbours' addresses", ModerationStatus::Approved, Utc::now()).await;

    let r = moderate(&app, &moderator, &a.id, json!({"action": "reject", "reason": "spam", "note": "internal: third report this week", "version": 1})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(app.run_jobs().await, 1);
    let emails = app.sent_emails(&owner.email).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert!(emails[0].contains("Crypto gains") && emails[0].contains("Spam or advertising"), "{}", emails[0]);
    assert!(!emails[0].contains("third report"), "the moderator's note stays internal");

    let r = moderate(&app, &moderator, &b.id, json!({"action": "hide", "reason": "personal_data", "version": 1})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(app.run_jobs().await, 1);
    let emails = app.sent_emails(&owner.email).await;
    assert_eq!(emails.len(), 2);
    assert!(emails.iter().any(|e| e.contains("hidden") && e.contains("Exposes personal data")), "{emails:?}");
    // Restoring does not email.
    moderate(&app, &moderator, &b.id, json!({"action": "restore", "reason": "meets_guidelines", "version": 2})).await;
    assert_eq!(app.run_jobs().await, 0);
}

#[tokio::test]
async fn bulk_moderation_reports_each_chart() {
    let app = TestApp::spawn().await;
    let (owner, _) = app.user(&["user"]).await;
    let (_, moderator) = app.user(&["moderator"]).await;
    let fresh = chart(&app, &owner.id, "A", ModerationStatus::Pending, Utc::now()).await;
    let changed = chart(&app, &owner.id, "B", ModerationStatus::Pending, Utc::now()).await;
    let hidden = chart(&app, &owner.id, "C", ModerationStatus::Hidden, Utc::now()).await;
    let flagged = chart(&app, &owner.id, "D", ModerationStatus::Flagged, Utc::now()).await;
    let missing = uuid::Uuid::now_v7().to_string();
    let body = json!({"action": "reject", "reason": "abuse", "items": [
        {"chart_id": fresh.id, "version": 1},
        {"chart_id": changed.id, "version": 2},
        {"chart_id": missing, "version": 1},
        {"chart_id": hidden.id, "version": 1},
        {"chart_id": flagged.id, "version": 1},
    ]});
    let r = app.call(Method::POST, "/api/v1/admin/charts/moderate", Some(&moderator), Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let statuses: Vec<(&str, &str)> =
        r.body["results"].as_array().unwrap().iter().map(|x| (x["chart_id"].as_str().unwrap(), x["status"].as_str().unwrap())).collect();
    assert_eq!(
        statuses,
        vec![
            (fresh.id.as_str(), "applied"),
            (changed.id.as_str(), "conflict"),
            (missing.as_str(), "not_found"),
            (hidden.id.as_str(), "invalid"),
            (flagged.id.as_str(), "applied")
        ]
    );
    assert_eq!((r.body["applied"].as_u64(), r.body["failed"].as_u64()), (Some(2), Some(3)));

    // Applied items changed, with their own audit entry; the others did not.
    for (c, expected, audited) in [(&fresh, "rejected", true), (&changed, "pending", false), (&hidden, "hidden", false), (&flagged, "rejected", true)] {
        let detail = app.get(&format!("/api/v1/admin/charts/{}", c.id), &moderator).await;
        assert_eq!(detail.body["moderation_status"], expected, "{}", c.title);
        let entries = app.audit_for("chart", &c.id).await.into_iter().filter(|e| e.action == "chart.reject").count();
        assert_eq!(entries, audited as usize, "{}", c.title);
    }
    assert_eq!(app.run_jobs().await, 2, "one notice per rejected chart");

    let too_many: Vec<Value> = (0..101).map(|_| json!({"chart_id": uuid::Uuid::now_v7().to_string(), "version": 1})).collect();
    for items in [json!(too_many), json!([])] {
        let r = app
            .call(
                Method::POST,
                "/api/v1/admin/charts/moderate",
                Some(&moderator),
                Some(json!({"action": "approve", "reason": "meets_guidelines", "items": items})),
            )
            .await;
        assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["items".to_string()]), "{}", r.body);
    }
    let r = app
        .call(
            Method::POST,
            "/api/v1/admin/charts/moderate",
            Some(&moderator),
            Some(json!({"action": "approve", "reason": "nope", "items": [{"chart_id": fresh.id, "version": 2}]})),
        )
        .await;
    assert_eq!(r.error_fields(), vec!["reason".to_string()]);
}

#[tokio::test]
async fn queue_lists_pending_and_flagged_oldest_first() {
    let app = TestApp::spawn().await;
    let (owner, _) = app.user(&["user"]).await;
    let (_, moderator) = app.user(&["moderator"]).await;
    let t0 = Utc::now() - Duration::days(10);
    let mut expected = Vec::new();
    for (day, status) in [
        (3, ModerationStatus::Pending),
        (1, ModerationStatus::Approved),
        (5, ModerationStatus::Flagged),
        (0, ModerationStatus::Flagged),
        (7, ModerationStatus::Pending),
        (2, ModerationStatus::Hidden),
        (4, ModerationStatus::Pending),
        (6, ModerationStatus::Rejected),
    ] {
        let c = chart(&app, &owner.id, &format!("day {day}"), status, t0 + Duration::days(day)).await;
        if matches!(status, ModerationStatus::Pending | ModerationStatus::Flagged) {
            expected.push((day, c.id));
        }
    }
    expected.sort();
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/admin/charts/queue?limit=2&cursor={c}"),
            None => "/api/v1/admin/charts/queue?limit=2".to_string(),
        };
        let r = app.get(&path, &moderator).await;
        assert_eq!(r.status, 200, "{}", r.body);
        seen.extend(r.body["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()));
        pages += 1;
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 10, "the queue never ends");
    }
    assert_eq!(seen, expected, "pending and flagged, oldest first, each once");
    let r = app.get("/api/v1/admin/charts/queue?cursor=garbage", &moderator).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["cursor".to_string()]));
}

#[tokio::test]
async fn list_filters_and_cursor_pagination() {
    let app = TestApp::spawn().await;
    let (ada, _) = app.user(&["user"]).await;
    let (bob, _) = app.user(&["user"]).await;
    let (_, analyst) = app.user(&["analyst"]).await;
    let t0 = Utc::now() - Duration::days(30);
    let mut all = HashSet::new();
    for (i, (owner, title, status)) in [
        (&ada, "Monthly REVENUE", ModerationStatus::Approved),
        (&ada, "Sleep", ModerationStatus::Flagged),
        (&ada, "revenue by country", ModerationStatus::Pending),
        (&bob, "Steps", ModerationStatus::Flagged),
        (&bob, "Revenue (old)", ModerationStatus::Hidden),
        (&bob, "Budget", ModerationStatus::Approved),
        (&bob, "Traffic", ModerationStatus::Rejected),
    ]
    .into_iter()
    .enumerate()
    {
        all.insert(chart(&app, &owner.id, title, status, t0 + Duration::days(i as i64)).await.id);
    }
    let titles = |r: &crate::helpers::Response| -> Vec<String> {
        r.body["items"].as_array().unwrap().iter().map(|c| c["title"].as_str().unwrap().to_string()).collect()
    };

    // Every chart once, newest first, three at a time.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = format!("/api/v1/admin/charts?limit=3{}", cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default());
        let r = app.get(&path, &analyst).await;
        assert_eq!(r.status, 200, "{}", r.body);
        seen.extend(r.body["items"].as_array().unwrap().iter().map(|c| (c["created_at"].as_str().unwrap().to_string(), c["id"].as_str().unwrap().to_string())));
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.iter().map(|(_, id)| id.clone()).collect::<HashSet<_>>(), all);
    assert_eq!(seen.len(), all.len());
    assert!(seen.windows(2).all(|w| w[0].0 > w[1].0), "newest first");

    let r = app.get("/api/v1/admin/charts?status=flagged", &analyst).await;
    assert_eq!(titles(&r), vec!["Steps", "Sleep"]);
    let r = app.get(&format!("/api/v1/admin/charts?owner_id={}&status=flagged", ada.id), &analyst).await;
    assert_eq!(titles(&r), vec!["Sleep"]);
    let r = app.get(&format!("/api/v1/admin/charts?owner_id={}&flagged=false", bob.id), &analyst).await;
    assert_eq!(titles(&r), vec!["Traffic", "Budget", "Revenue (old)"]);
    let r = app.get("/api/v1/admin/charts?title=%20ReVeNuE", &analyst).await;
    assert_eq!(titles(&r), vec!["Revenue (old)", "revenue by country", "Monthly REVENUE"]);
    let from = timestamp(t0 + Duration::days(2));
    let to = timestamp(t0 + Duration::days(4));
    let r = app.get(&format!("/api/v1/admin/charts?created_from={from}&created_to={to}"), &analyst).await;
    assert_eq!(titles(&r), vec!["Steps", "revenue by country"]);
    let r = app.get(&format!("/api/v1/admin/charts?status=approved&title=revenue&created_from={from}"), &analyst).await;
    assert!(titles(&r).is_empty());

    for (query, field) in [
        ("owner_id=abc", "owner_id"),
        ("status=deleted", "status"),
        ("limit=500", "limit"),
        ("flagged=maybe", "flagged"),
        ("title=", "title"),
        ("created_to=soon", "created_to"),
        ("sort=title", "sort"),
    ] {
        let r = app.get(&format!("/api/v1/admin/charts?{query}"), &analyst).await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert_eq!(r.error_fields(), vec![field.to_string()], "{query}");
    }
    // Analysts read charts but do not moderate.
    let r = moderate(&app, &analyst, seen[0].1.as_str(), json!({"action": "hide", "reason": "spam", "version": 1})).await;
    assert_eq!((r.status.as_u16(), r.body["missing_permission"].as_str()), (403, Some("charts:moderate")));
}

#[tokio::test]
async fn demo_charts_are_listed_and_moderated_like_any_other() {
    let app = TestApp::spawn().await;
    let summary = keel_local::seed::load(app.store(), 40, 11).await.unwrap();
    assert!(summary.charts > 20, "{summary:?}");
    let (_, moderator) = app.user(&["moderator"]).await;
    let r = app.get("/api/v1/admin/charts?limit=200", &moderator).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["items"].as_array().unwrap().len(), summary.charts, "every seeded chart is on the all-charts index");
    let queue = app.get("/api/v1/admin/charts/queue?limit=200", &moderator).await;
    let queued = queue.body["items"].as_array().unwrap();
    assert!(!queued.is_empty() && queued.iter().all(|c| c["moderation_status"] == "pending" || c["moderation_status"] == "flagged"), "{}", queue.body);
    let first = &queued[0];
    let r = moderate(&app, &moderator, first["id"].as_str().unwrap(), json!({"action": "approve", "reason": "meets_guidelines", "version": first["version"]}))
        .await;
    assert_eq!((r.status.as_u16(), r.body["moderation_status"].as_str()), (200, Some("approved")), "{}", r.body);
}
