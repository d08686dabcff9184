//! Bulk operations end to end: dry runs (count and sample), jobs fanned out
//! over SQS in segments, per-item outcomes (changed, unchanged, version
//! conflicts, missing ids) with an audit entry per changed item, the
//! configurable cap, soft delete and restore within the window, and a
//! redelivered segment counted once.

use chrono::Utc;
use http::Method;
use serde_json::{Value, json};
use shared::audit::{Actor, AuditEntry};
use shared::domain::charts::ModerationStatus;
use shared::domain::data_jobs::{BulkTarget, SEGMENT_KIND, SegmentMessage};
use shared::identity::users::{Email, User, UserStatus};

use crate::data_import::set_limits;
use crate::helpers::{Response, TestApp};

/// A user written straight to the store (no password: fast). One at a
/// time: the emulator's transactions are not safe to run concurrently.
async fn plain_user(app: &TestApp, email: String, status: UserStatus) -> User {
    let user = User::new(&Email::parse(&email).unwrap(), "Bulk Person", vec!["user".into()], status);
    shared::identity::users::create(app.store(), &user, AuditEntry::new(&Actor::system("tests"), "user.create", "user", &user.id)).await.unwrap();
    user
}

async fn bulk(app: &TestApp, token: &str, op: &str, body: Value) -> Response {
    app.call(Method::POST, &format!("/api/v1/data/bulk/{op}"), Some(token), Some(body)).await
}

/// Run the queue and read the job's status.
async fn finish(app: &TestApp, token: &str, accepted: &Response) -> Response {
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    app.run_jobs().await;
    let r = app.get(&format!("/api/v1/data/bulk/{}", accepted.body["job_id"].as_str().unwrap()), token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

async fn actions(app: &TestApp, target_type: &str, id: &str) -> Vec<String> {
    app.audit_for(target_type, id).await.into_iter().map(|e| e.action).collect()
}

#[tokio::test]
async fn update_by_ids_reports_every_item() {
    let app = TestApp::spawn().await;
    let (admin_user, admin) = app.user(&["admin"]).await;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let mut u: Vec<User> = Vec::new();
    for i in 0..4 {
        u.push(plain_user(&app, format!("up{tag}-{i}@example.com"), if i == 3 { UserStatus::Suspended } else { UserStatus::Active }).await);
    }
    let missing = uuid::Uuid::now_v7().to_string();
    let ids = json!([u[0].id, {"id": u[1].id, "version": 1}, {"id": u[2].id, "version": 7}, missing, u[3].id, admin_user.id]);

    let dry = bulk(&app, &admin, "update", json!({"dataset": "users", "ids": ids, "changes": {"status": "suspended"}, "dry_run": true})).await;
    assert_eq!(dry.status, 200, "{}", dry.body);
    assert_eq!((dry.body["count"].as_u64(), dry.body["missing"].clone()), (Some(5), json!([missing])));
    assert_eq!(dry.body["sample"].as_array().unwrap().len(), 5);
    assert!(dry.body["sample"][0].get("email").is_none(), "no personal fields in the sample");
    assert_eq!(shared::identity::users::get(app.store(), &u[0].id).await.unwrap().unwrap().status, UserStatus::Active, "a dry run changes nothing");

    let accepted = bulk(&app, &admin, "update", json!({"dataset": "users", "ids": ids, "changes": {"status": "suspended"}, "reason": "chargebacks"})).await;
    assert_eq!((accepted.body["total"].as_u64(), accepted.body["segments"].as_u64()), (Some(6), Some(1)), "{}", accepted.body);
    let status = finish(&app, &admin, &accepted).await;
    assert_eq!(status.body["status"], "succeeded", "{}", status.body);
    assert_eq!(status.body["progress"], json!({"processed": 6, "total": 6}));
    assert_eq!(status.body["result"], json!({"succeeded": 2, "unchanged": 1, "failed": 3}));
    let failures: Vec<(String, String)> = status.body["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap().to_string(), f["reason"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(failures.iter().any(|(id, r)| *id == u[2].id && r.contains("version conflict")), "{failures:?}");
    assert!(failures.iter().any(|(id, r)| *id == missing && r == "not found"), "{failures:?}");
    assert!(failures.iter().any(|(id, r)| *id == admin_user.id && r.contains("your own status")), "{failures:?}");

    for user in &u[..2] {
        assert_eq!(shared::identity::users::get(app.store(), &user.id).await.unwrap().unwrap().status, UserStatus::Suspended);
        let audit = app.audit_for("user", &user.id).await;
        let entry = audit.iter().find(|e| e.action == "user.suspend").expect("each changed item has its own audit entry");
        assert_eq!((entry.actor.id.as_str(), entry.reason.as_deref()), (admin_user.id.as_str(), Some("chargebacks")));
    }
    assert_eq!(shared::identity::users::get(app.store(), &u[2].id).await.unwrap().unwrap().status, UserStatus::Active);
    assert!(!actions(&app, "user", &u[2].id).await.contains(&"user.suspend".to_string()));
    assert!(!actions(&app, "user", &u[3].id).await.contains(&"user.suspend".to_string()), "unchanged items are not audited as changed");

    // Field-level errors.
    let r = bulk(&app, &admin, "update", json!({"dataset": "users", "ids": [u[0].id], "changes": {"status": "deleted"}})).await;
    assert_eq!(r.error_fields(), vec!["changes.status".to_string()]);
    let r = bulk(&app, &admin, "update", json!({"dataset": "users", "ids": [u[0].id], "changes": {"nickname": "x"}})).await;
    assert_eq!(r.error_fields(), vec!["changes.nickname".to_string()]);
    let r = bulk(&app, &admin, "update", json!({"dataset": "users", "ids": [u[0].id, u[0].id], "changes": {"country": "DE"}})).await;
    assert_eq!(r.error_fields(), vec!["ids[1]".to_string()]);
    let r = bulk(&app, &admin, "delete", json!({"dataset": "users", "filter": {"owner_id": u[0].id}})).await;
    assert_eq!(r.error_fields(), vec!["filter.owner_id".to_string()]);
}

#[tokio::test]
async fn delete_by_filter_fans_out_under_the_cap_and_restores_within_the_window() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    // 101 users: two segments (100 + 1). Loaded in batches (fixtures, not audited).
    let users: Vec<User> = (0..101)
        .map(|i| User::new(&Email::parse(&format!("bk{tag}-{i}@example.com")).unwrap(), "Bulk Person", vec!["user".into()], UserStatus::Active))
        .collect();
    app.store().batch_put(users.iter().flat_map(|u| [u.to_item().unwrap(), u.guard_item()]).collect()).await.unwrap();
    let filter = json!({"email_prefix": format!("bk{tag}")});

    let dry = bulk(&app, &admin, "delete", json!({"dataset": "users", "filter": filter, "dry_run": true})).await;
    assert_eq!(dry.status, 200, "{}", dry.body);
    assert_eq!((dry.body["count"].as_u64(), dry.body["exceeds_cap"].as_bool(), dry.body["sample"].as_array().unwrap().len()), (Some(101), Some(false), 10));

    // The cap (limits.bulk_operation_cap), for filters and id lists.
    set_limits(&app, &admin, json!({"bulk_operation_cap": 100})).await;
    let dry = bulk(&app, &admin, "delete", json!({"dataset": "users", "filter": filter, "dry_run": true})).await;
    assert_eq!((dry.body["exceeds_cap"].as_bool(), dry.body["cap"].as_u64()), (Some(true), Some(100)));
    let r = bulk(&app, &admin, "delete", json!({"dataset": "users", "filter": filter})).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["filter".to_string()]), "{}", r.body);
    let too_many: Vec<String> = users.iter().take(101).map(|u| u.id.clone()).collect();
    let r = bulk(&app, &admin, "delete", json!({"dataset": "users", "ids": too_many})).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["ids".to_string()]));
    assert_eq!(app.run_jobs().await, 0, "nothing was queued");

    set_limits(&app, &admin, json!({"bulk_operation_cap": 1000})).await;
    let accepted = bulk(&app, &admin, "delete", json!({"dataset": "users", "filter": filter, "reason": "spam wave"})).await;
    assert_eq!(accepted.body["segments"], 2, "{}", accepted.body);
    let status = finish(&app, &admin, &accepted).await;
    assert_eq!((status.body["status"].as_str(), status.body["result"]["succeeded"].as_u64()), (Some("succeeded"), Some(101)), "{}", status.body);
    for user in users.iter().step_by(20) {
        let stored = shared::identity::users::get(app.store(), &user.id).await.unwrap().unwrap();
        assert_eq!(stored.status, UserStatus::Deleted);
        assert!(stored.deleted_at.is_some());
        assert_eq!(actions(&app, "user", &user.id).await.iter().filter(|a| *a == "user.delete").count(), 1);
    }

    // A redelivered segment is counted once and changes nothing.
    let job_id = accepted.body["job_id"].as_str().unwrap();
    let before = shared::domain::jobs::get(app.store(), job_id).await.unwrap().unwrap();
    let again = SegmentMessage {
        job_id: job_id.into(),
        kind: SEGMENT_KIND.into(),
        segment: 0,
        targets: users.iter().take(100).map(|u| BulkTarget { id: u.id.clone(), version: None }).collect(),
    };
    app.app
        .clients
        .sqs
        .send_message()
        .queue_url(&app.stack.env["KEEL_JOBS_QUEUE_URL"])
        .message_body(serde_json::to_string(&again).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(app.run_jobs().await, 1);
    let after = shared::domain::jobs::get(app.store(), job_id).await.unwrap().unwrap();
    assert_eq!((after.version, after.result), (before.version, before.result));

    // Restore: within the window users come back suspended; past it, refused.
    let mut old = shared::identity::users::get(app.store(), &users[3].id).await.unwrap().unwrap();
    old.deleted_at = Some(shared::store::timestamp(Utc::now() - chrono::Duration::days(40)));
    app.store().put_item_unchecked(old.to_item().unwrap()).await.unwrap();
    let ids: Vec<&str> = users[..4].iter().map(|u| u.id.as_str()).collect();
    let status = finish(&app, &admin, &bulk(&app, &admin, "restore", json!({"dataset": "users", "ids": ids})).await).await;
    assert_eq!(status.body["result"], json!({"succeeded": 3, "unchanged": 0, "failed": 1}), "{}", status.body);
    assert!(status.body["failures"][0]["reason"].as_str().unwrap().contains("restore window"));
    let restored = shared::identity::users::get(app.store(), &users[0].id).await.unwrap().unwrap();
    assert_eq!((restored.status, restored.deleted_at), (UserStatus::Suspended, None));
    assert!(actions(&app, "user", &users[0].id).await.contains(&"user.restore".to_string()));
}

#[tokio::test]
async fn charts_update_soft_delete_and_restore() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let (owner, _) = app.user(&["user"]).await;
    let (heir, _) = app.user(&["user"]).await;
    let mut charts = Vec::new();
    for i in 0..5 {
        charts.push(crate::charts::chart(&app, &owner.id, &format!("Chart {i}"), ModerationStatus::Approved, Utc::now()).await);
    }
    // Transfer four (one with a stale version) to the heir.
    let ids = json!([charts[0].id, charts[1].id, charts[2].id, {"id": charts[3].id, "version": 5}]);
    let status = finish(&app, &admin, &bulk(&app, &admin, "update", json!({"dataset": "charts", "ids": ids, "changes": {"owner_id": heir.id}})).await).await;
    assert_eq!(status.body["result"], json!({"succeeded": 3, "unchanged": 0, "failed": 1}), "{}", status.body);
    assert!(actions(&app, "chart", &charts[0].id).await.contains(&"chart.update".to_string()));
    let r = bulk(&app, &admin, "update", json!({"dataset": "charts", "ids": [charts[0].id], "changes": {"owner_id": uuid::Uuid::now_v7().to_string()}})).await;
    assert_eq!(r.error_fields(), vec!["changes.owner_id".to_string()]);

    // Soft-delete the heir's charts by filter: they leave the listings.
    let dry = bulk(&app, &admin, "delete", json!({"dataset": "charts", "filter": {"owner_id": heir.id}, "dry_run": true})).await;
    assert_eq!(dry.body["count"], 3, "{}", dry.body);
    let status = finish(&app, &admin, &bulk(&app, &admin, "delete", json!({"dataset": "charts", "filter": {"owner_id": heir.id}})).await).await;
    assert_eq!(status.body["result"]["succeeded"], 3, "{}", status.body);
    let listed = app.get("/api/v1/admin/charts?limit=50", &admin).await;
    let listed: Vec<&str> = listed.body["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(actions(&app, "chart", &charts[1].id).await.contains(&"chart.delete".to_string()));

    // Restore by filter (the deleted charts of that owner).
    let status = finish(&app, &admin, &bulk(&app, &admin, "restore", json!({"dataset": "charts", "filter": {"owner_id": heir.id}})).await).await;
    assert_eq!(status.body["result"]["succeeded"], 3, "{}", status.body);
    let listed = app.get("/api/v1/admin/charts?limit=50", &admin).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn the_retention_sweep_purges_soft_deletes_past_the_window_only() {
    let app = TestApp::spawn().await;
    let store = app.store();
    let (owner, _) = app.user(&["user"]).await;
    let long_ago = shared::store::timestamp(Utc::now() - chrono::Duration::days(31));
    let lately = shared::store::timestamp(Utc::now() - chrono::Duration::days(2));
    let soft_deleted = |at: &str| {
        let mut chart = shared::domain::charts::Chart::new(&owner.id, "Old deleted chart", "bar");
        chart.deleted_at = Some(at.to_string());
        chart
    };
    let (expired_chart, recent_chart) = (soft_deleted(&long_ago), soft_deleted(&lately));
    let mut gone = User::new(
        &Email::parse(&format!("gone-{}@example.com", uuid::Uuid::new_v4().simple())).unwrap(),
        "Long Gone",
        vec!["user".into()],
        UserStatus::Deleted,
    );
    gone.deleted_at = Some(long_ago.clone());
    let mut recent = User::new(
        &Email::parse(&format!("recent-{}@example.com", uuid::Uuid::new_v4().simple())).unwrap(),
        "Recently Gone",
        vec!["user".into()],
        UserStatus::Deleted,
    );
    recent.deleted_at = Some(lately.clone());
    store
        .batch_put(vec![
            expired_chart.to_item().unwrap(),
            recent_chart.to_item().unwrap(),
            gone.to_item().unwrap(),
            gone.guard_item(),
            recent.to_item().unwrap(),
            recent.guard_item(),
        ])
        .await
        .unwrap();

    let swept = jobs::retention::sweep(&app.app.worker, Utc::now()).await.unwrap();
    assert_eq!((swept.charts_purged, swept.users_queued_for_erasure), (1, 1), "{swept:?}");
    assert!(store.get_item(&format!("CHART#{}", expired_chart.id), "META").await.unwrap().is_none());
    assert!(store.get_item(&format!("CHART#{}", recent_chart.id), "META").await.unwrap().is_some(), "within the window: kept");
    let purge = app.audit_for("chart", &expired_chart.id).await;
    assert!(purge.iter().any(|e| e.action == "chart.purge" && e.about.as_deref() == Some(owner.id.as_str())), "{purge:?}");
    // Running again queues nothing twice.
    let again = jobs::retention::sweep(&app.app.worker, Utc::now()).await.unwrap();
    assert_eq!((again.charts_purged, again.users_queued_for_erasure), (0, 0));

    // The expired user is erased like any erasure, with a certificate.
    app.run_jobs().await;
    assert!(shared::identity::users::get(store, &gone.id).await.unwrap().is_none());
    assert!(shared::identity::users::get(store, &recent.id).await.unwrap().is_some());
    let requests = shared::domain::subject_requests::list_all(store, None, 50).await.unwrap().items;
    let erasure = requests.iter().find(|r| r.requested_by == jobs::retention::REQUESTER).expect("a system erasure request");
    assert_eq!(erasure.status, shared::domain::subject_requests::RequestStatus::Completed);
    assert!(erasure.subject_id.is_none() && erasure.is_about(&gone.id));
}

#[tokio::test]
async fn the_retention_sweep_expires_export_files_then_job_records() {
    let app = TestApp::spawn().await;
    let store = app.store();
    let (_, token) = app.user(&["user"]).await;
    let r = app.call(Method::POST, "/api/v1/data/export", Some(&token), Some(json!({"format": "csv", "delivery": "job"}))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let job_id = r.body["job_id"].as_str().unwrap().to_string();
    app.run_jobs().await;
    let key = shared::domain::jobs::get(store, &job_id).await.unwrap().unwrap().result.unwrap()["key"].as_str().unwrap().to_string();
    let bucket = app.stack.env["KEEL_EXPORTS_BUCKET"].clone();
    let exists = |key: String| {
        let (s3, bucket) = (app.app.clients.s3.clone(), bucket.clone());
        async move { s3.head_object().bucket(bucket).key(key).send().await.is_ok() }
    };
    assert!(exists(key.clone()).await);

    // Within retention.exports_days (7): nothing happens.
    let swept = jobs::retention::sweep(&app.app.worker, Utc::now() + chrono::Duration::days(6)).await.unwrap();
    assert_eq!((swept.export_files_expired, swept.jobs_removed), (0, 0));
    // Past it: the file goes, the job says so and offers no link.
    let swept = jobs::retention::sweep(&app.app.worker, Utc::now() + chrono::Duration::days(8)).await.unwrap();
    assert_eq!((swept.export_files_expired, swept.jobs_removed), (1, 0), "{swept:?}");
    assert!(!exists(key.clone()).await);
    let view = app.get(&format!("/api/v1/data/jobs/{job_id}"), &token).await;
    assert_eq!(view.status, 200, "{}", view.body);
    assert!(view.body["files_expired_at"].is_string() && view.body["download_url"].is_null(), "{}", view.body);
    // Past retention.jobs_days (30): the record goes too.
    let swept = jobs::retention::sweep(&app.app.worker, Utc::now() + chrono::Duration::days(31)).await.unwrap();
    assert_eq!(swept.jobs_removed, 1, "{swept:?}");
    assert!(shared::domain::jobs::get(store, &job_id).await.unwrap().is_none());
}
