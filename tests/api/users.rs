//! User management end to end: create (password or invitation email),
//! list with filters and cursors, update with optimistic locking, suspend,
//! soft delete, idempotent create.

use std::collections::HashSet;

use http::Method;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn create_with_password_then_sign_in() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let r = app
        .call(
            Method::POST,
            "/api/v1/admin/users",
            Some(&admin),
            Some(json!({"email": " Grace@Example.com ", "name": "Grace", "roles": ["support"], "password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["email"], "grace@example.com");
    assert_eq!(r.body["has_password"], true);
    assert!(r.body.get("password_hash").is_none());
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.headers["location"], format!("/api/v1/admin/users/{id}"));
    assert_eq!(app.login("grace@example.com", PASSWORD).await.status, 200);

    let dup =
        app.call(Method::POST, "/api/v1/admin/users", Some(&admin), Some(json!({"email": "GRACE@example.com", "name": "G2", "password": PASSWORD}))).await;
    assert_eq!(dup.status, 409, "{}", dup.body);

    let audit = app.audit_for("user", &id).await;
    let created = audit.iter().find(|e| e.action == "user.create").expect("create audited");
    assert_eq!(created.actor.source_ip.as_deref(), Some("203.0.113.9"));
    assert_eq!(created.changes.as_ref().unwrap()["after"]["password_hash"], "[redacted]");
}

#[tokio::test]
async fn invitation_email_sets_the_password() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let r = app.call(Method::POST, "/api/v1/admin/users", Some(&admin), Some(json!({"email": "invitee@example.org", "name": "Invitee", "invite": true}))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "invited");
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(app.login("invitee@example.org", PASSWORD).await.status, 401, "no password yet");

    assert_eq!(app.run_jobs().await, 1);
    let emails = app.sent_emails("invitee@example.org").await;
    assert_eq!(emails.len(), 1, "exactly one invitation email");
    let token = emails[0].split("token=").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    // A redelivered message for the finished job sends nothing more.
    assert_eq!(app.run_jobs().await, 0);

    let accept = |password: &'static str, token: String| {
        let app = &app;
        async move { app.call(Method::POST, "/api/v1/auth/invitations/accept", None, Some(json!({"token": token, "password": password}))).await }
    };
    assert_eq!(accept("short", token.clone()).await.status, 400);
    let ok = accept(PASSWORD, token.clone()).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(accept(PASSWORD, token).await.status, 401, "single use");
    assert_eq!(app.login("invitee@example.org", PASSWORD).await.status, 200);
    let actions: Vec<String> = app.audit_for("user", &id).await.into_iter().map(|e| e.action).collect();
    assert!(actions.contains(&"user.activate".to_string()), "{actions:?}");
}

#[tokio::test]
async fn list_filters_and_cursor_pagination() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let mut ids = HashSet::new();
    for i in 0..7 {
        let r = app.call(Method::POST, "/api/v1/admin/users", Some(&admin), Some(json!({"email": format!("page{i}@list.test"), "name": format!("P{i}"), "roles": if i % 2 == 0 { json!(["analyst"]) } else { json!(["user"]) }, "password": PASSWORD}))).await;
        assert_eq!(r.status, 201);
        ids.insert(r.body["id"].as_str().unwrap().to_string());
    }
    // Walk the email-prefix listing three at a time.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/v1/admin/users?email_prefix=PAGE&limit=3".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = app.get(&path, &admin).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let items = r.body["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|u| u["id"].as_str().unwrap().to_string()));
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "every user exactly once");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), ids);

    let analysts = app.get("/api/v1/admin/users?role=analyst&email_prefix=page", &admin).await;
    assert_eq!(analysts.body["items"].as_array().unwrap().len(), 4);
    let newest = app.get("/api/v1/admin/users?status=active&limit=2", &admin).await;
    let items = newest.body["items"].as_array().unwrap();
    assert!(items[0]["created_at"].as_str() >= items[1]["created_at"].as_str(), "newest first");
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let none = app.get(&format!("/api/v1/admin/users?created_from={}", later.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)), &admin).await;
    assert_eq!(none.body["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn cursors_cannot_be_forged_or_moved_between_queries() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    for _ in 0..3 {
        app.user(&["user"]).await;
    }
    let first = app.get("/api/v1/admin/users?limit=1", &admin).await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(app.get(&format!("/api/v1/admin/users?limit=1&cursor={cursor}"), &admin).await.status, 200);

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let (payload, tag) = cursor.split_once('.').unwrap();
    let mut key: serde_json::Value = serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
    key["pk"] = json!("USER#00000000-0000-0000-0000-000000000000");
    let forged = format!("{}.{tag}", B64.encode(key.to_string()));
    for bad in [forged.as_str(), "garbage", "e30.AAAA"] {
        let r = app.get(&format!("/api/v1/admin/users?limit=1&cursor={bad}"), &admin).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.error_fields(), vec!["cursor"]);
    }
    // A real cursor used with other filters is refused too.
    let r = app.get(&format!("/api/v1/admin/users?limit=1&status=suspended&cursor={cursor}"), &admin).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn concurrent_updates_one_wins_one_conflicts() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let (target, _) = app.user(&["user"]).await;
    let path = format!("/api/v1/admin/users/{}", target.id);
    let (a, b) = tokio::join!(
        app.call(Method::PUT, &path, Some(&admin), Some(json!({"version": 1, "name": "Alice"}))),
        app.call(Method::PUT, &path, Some(&admin), Some(json!({"version": 1, "name": "Bob"}))),
    );
    let mut statuses = vec![a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, vec![200, 409], "{} / {}", a.body, b.body);
    let stored = app.get(&path, &admin).await;
    assert_eq!(stored.body["version"], 2);
    let winner = if a.status == 200 { "Alice" } else { "Bob" };
    assert_eq!(stored.body["name"], winner);
    let updates = app.audit_for("user", &target.id).await.into_iter().filter(|e| e.action == "user.update").count();
    assert_eq!(updates, 1, "only the winner is audited");
}

#[tokio::test]
async fn email_change_moves_the_uniqueness_guard() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let (a, _) = app.user(&["user"]).await;
    let (b, _) = app.user(&["user"]).await;
    let path = format!("/api/v1/admin/users/{}", a.id);
    let taken = app.call(Method::PUT, &path, Some(&admin), Some(json!({"version": 1, "email": b.email}))).await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    let moved = app.call(Method::PUT, &path, Some(&admin), Some(json!({"version": 1, "email": "moved@example.net"}))).await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    // The old address is free again; the new one is taken.
    let reuse_old = app.call(Method::POST, "/api/v1/admin/users", Some(&admin), Some(json!({"email": a.email, "name": "New", "password": PASSWORD}))).await;
    assert_eq!(reuse_old.status, 201, "{}", reuse_old.body);
    let reuse_new =
        app.call(Method::POST, "/api/v1/admin/users", Some(&admin), Some(json!({"email": "moved@example.net", "name": "New", "password": PASSWORD}))).await;
    assert_eq!(reuse_new.status, 409);
}

#[tokio::test]
async fn suspend_reactivate_and_soft_delete() {
    let app = TestApp::spawn().await;
    let (me, admin) = app.user(&["admin"]).await;
    let (target, _) = app.user(&["user"]).await;
    let path = format!("/api/v1/admin/users/{}", target.id);
    let r = app.call(Method::PUT, &path, Some(&admin), Some(json!({"version": 1, "status": "suspended", "reason": "chargeback"}))).await;
    assert_eq!(r.body["status"], "suspended");
    let r = app.call(Method::PUT, &path, Some(&admin), Some(json!({"version": 2, "status": "active"}))).await;
    assert_eq!(r.body["status"], "active");
    let actions: Vec<(String, Option<String>)> = app.audit_for("user", &target.id).await.into_iter().map(|e| (e.action, e.reason)).collect();
    assert!(actions.contains(&("user.suspend".into(), Some("chargeback".into()))), "{actions:?}");
    assert!(actions.iter().any(|(a, _)| a == "user.reactivate"));

    let stale = app
        .send(
            http::Request::builder()
                .method("DELETE")
                .uri(&path)
                .header("authorization", format!("Bearer {admin}"))
                .header("if-match", "1")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(stale.status, 409);
    let deleted = app.call(Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(app.get(&path, &admin).await.body["status"], "deleted");
    assert_eq!(app.call(Method::DELETE, &path, Some(&admin), None).await.status, 409);
    let listed = app.get("/api/v1/admin/users?limit=200", &admin).await;
    assert!(listed.body["items"].as_array().unwrap().iter().all(|u| u["id"] != target.id.as_str()), "deleted users are hidden by default");
    let only_deleted = app.get("/api/v1/admin/users?status=deleted", &admin).await;
    assert_eq!(only_deleted.body["items"][0]["id"], target.id.as_str());
    assert_eq!(app.call(Method::DELETE, &format!("/api/v1/admin/users/{}", me.id), Some(&admin), None).await.status, 409, "not yourself");
    assert_eq!(app.get("/api/v1/admin/users/not-a-uuid", &admin).await.status, 404);
}

#[tokio::test]
async fn idempotency_key_makes_create_safe_to_retry() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let request = |body: serde_json::Value| {
        http::Request::builder()
            .method("POST")
            .uri("/api/v1/admin/users")
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", "application/json")
            .header("idempotency-key", "create-lin-1")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap()
    };
    let body = json!({"email": "lin@example.com", "name": "Lin", "password": PASSWORD});
    let first = app.send(request(body.clone())).await;
    assert_eq!(first.status, 201);
    let again = app.send(request(body)).await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let different = app.send(request(json!({"email": "other@example.com", "name": "O", "password": PASSWORD}))).await;
    assert_eq!(different.status, 422);
}
