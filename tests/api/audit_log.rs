//! The audit trail: a change and its entry are stored together or not at
//! all; the listing filters by actor, target, action and time; personal data
//! is masked for principals without pii:read.

use http::Method;
use serde_json::json;
use shared::audit::{Actor, AuditEntry};
use shared::store::Write;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn change_and_audit_entry_are_written_together_or_not_at_all() {
    let app = TestApp::spawn().await;
    let store = app.store();
    let (user, _) = app.user(&["user"]).await;
    let mut renamed = user.next_version();
    renamed.name = "Renamed".into();

    // Force the audit half to fail: its key is already taken.
    let audit = AuditEntry::new(&Actor::system("tests"), "user.update", "user", &user.id);
    store.put_item_unchecked(store.seal_audit(&audit).await.unwrap()).await.unwrap();
    let result = store.commit(vec![Write::put_versioned(store.table(), renamed.to_item().unwrap(), user.version).unwrap()], &audit).await;
    assert!(result.is_err());
    let stored = shared::identity::users::get(store, &user.id).await.unwrap().unwrap();
    assert_eq!((stored.name.as_str(), stored.version), ("Test User", 1), "the change must not land without its audit entry");

    // Force the change half to fail (stale version): no audit entry appears.
    let audit = AuditEntry::new(&Actor::system("tests"), "user.update", "user", &user.id);
    let result = store.commit(vec![Write::put_versioned(store.table(), renamed.to_item().unwrap(), 41).unwrap()], &audit).await;
    assert!(matches!(result, Err(shared::Error::Conflict(_))), "{result:?}");
    let entry = store.get_item(&format!("AUDIT#{}", audit.day()), &audit.sort_key()).await.unwrap();
    assert!(entry.is_none(), "an audit entry without its change must not exist");

    // Both halves fine: both land.
    store.commit(vec![Write::put_versioned(store.table(), renamed.to_item().unwrap(), user.version).unwrap()], &audit).await.unwrap();
    assert_eq!(shared::identity::users::get(store, &user.id).await.unwrap().unwrap().name, "Renamed");
    assert!(store.get_item(&format!("AUDIT#{}", audit.day()), &audit.sort_key()).await.unwrap().is_some());
}

#[tokio::test]
async fn listing_filters_and_masking() {
    let app = TestApp::spawn().await;
    let (admin_user, admin) = app.user(&["admin"]).await;
    let (_, auditor) = app.user(&["auditor"]).await;
    let mut created = Vec::new();
    for i in 0..3 {
        let r = app
            .call(
                Method::POST,
                "/api/v1/admin/users",
                Some(&admin),
                Some(json!({"email": format!("audited{i}@example.com"), "name": format!("Audited {i}"), "password": PASSWORD})),
            )
            .await;
        created.push(r.body["id"].as_str().unwrap().to_string());
    }
    app.call(Method::PUT, &format!("/api/v1/admin/users/{}", created[0]), Some(&admin), Some(json!({"version": 1, "name": "Renamed"}))).await;

    let by_actor = app.get(&format!("/api/v1/admin/audit-logs?actor_id={}", admin_user.id), &admin).await;
    assert_eq!(by_actor.status, 200, "{}", by_actor.body);
    let actions: Vec<&str> = by_actor.body["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["user.update", "user.create", "user.create", "user.create"], "newest first");

    let by_target = app.get(&format!("/api/v1/admin/audit-logs?target_type=user&target_id={}", created[0]), &admin).await;
    assert_eq!(by_target.body["items"].as_array().unwrap().len(), 2);
    let updates = app.get("/api/v1/admin/audit-logs?action=user.update", &admin).await;
    assert!(updates.body["items"].as_array().unwrap().iter().all(|e| e["action"] == "user.update"));
    let prefix = app.get("/api/v1/admin/audit-logs?action=user.&limit=200", &admin).await;
    assert!(prefix.body["items"].as_array().unwrap().len() >= 4);
    let past = app.get("/api/v1/admin/audit-logs?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z", &admin).await;
    assert_eq!(past.body["items"].as_array().unwrap().len(), 0);

    // Walk the day partitions two at a time: all entries, no duplicates.
    let mut seen = std::collections::HashSet::new();
    let mut cursor = String::new();
    loop {
        let r = app.get(&format!("/api/v1/admin/audit-logs?limit=2{cursor}"), &admin).await;
        assert_eq!(r.status, 200, "{}", r.body);
        for e in r.body["items"].as_array().unwrap() {
            assert!(seen.insert(e["id"].as_str().unwrap().to_string()), "duplicate entry");
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert!(seen.len() >= 6, "{}", seen.len());

    // Auditors read the log, with personal data masked.
    let masked = app.get(&format!("/api/v1/admin/audit-logs?target_type=user&target_id={}", created[1]), &auditor).await;
    assert_eq!(masked.status, 200);
    let entry = &masked.body["items"][0];
    assert_eq!(entry["actor"]["source_ip"], "203.0.113.x");
    assert_eq!(entry["changes"]["after"]["email"], "a***@example.com");
    let clear = app.get(&format!("/api/v1/admin/audit-logs?target_type=user&target_id={}", created[1]), &admin).await;
    assert_eq!(clear.body["items"][0]["changes"]["after"]["email"], "audited1@example.com");
}

#[tokio::test]
async fn bootstrap_admin_is_audited_and_only_once() {
    let app = TestApp::spawn().await;
    let user = shared::identity::users::bootstrap_admin(app.store(), "root@example.com", "Root", PASSWORD, false).await.unwrap();
    assert_eq!(user.roles, vec!["super_admin"]);
    let again = shared::identity::users::bootstrap_admin(app.store(), "root2@example.com", "Root 2", PASSWORD, false).await;
    assert!(matches!(again, Err(shared::Error::Conflict(_))), "{again:?}");
    shared::identity::users::bootstrap_admin(app.store(), "root2@example.com", "Root 2", PASSWORD, true).await.unwrap();
    let audit = app.audit_for("user", &user.id).await;
    assert_eq!(audit[0].action, "user.bootstrap_admin");
    assert_eq!(audit[0].actor.kind, "cli");
    assert_eq!(app.login("root@example.com", PASSWORD).await.status, 200);
}
