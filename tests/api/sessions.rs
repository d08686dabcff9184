//! Login, refresh-token rotation, reuse detection and logout.

use http::Method;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp};

async fn refresh(app: &TestApp, token: &str) -> crate::helpers::Response {
    app.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({ "refresh_token": token }))).await
}

#[tokio::test]
async fn login_refresh_rotation_and_reuse_revokes_the_family() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user(&["support"]).await;

    let bad = app.login(&user.email, "wrong password!!").await;
    assert_eq!(bad.status, 401);
    let unknown = app.login("nobody@example.com", PASSWORD).await;
    assert_eq!(unknown.status, 401);
    assert_eq!(bad.body["detail"], unknown.body["detail"], "failures must not reveal which emails exist");

    let login = app.login(&user.email, PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let access = login.body["access_token"].as_str().unwrap();
    assert_eq!(app.get(&format!("/api/v1/admin/users/{}", user.id), access).await.status, 200);
    let first = login.body["refresh_token"].as_str().unwrap().to_string();

    let rotated = refresh(&app, &first).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let second = rotated.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    let third = refresh(&app, &second).await.body["refresh_token"].as_str().unwrap().to_string();

    // The first token comes back: theft. The whole family dies.
    let reuse = refresh(&app, &first).await;
    assert_eq!(reuse.status, 401);
    assert!(reuse.body["detail"].as_str().unwrap().contains("reuse"), "{}", reuse.body);
    assert_eq!(refresh(&app, &third).await.status, 401, "the newest token of a revoked family must die too");

    let audit = app.audit_for("session", first.split('.').next().unwrap()).await;
    assert!(audit.iter().any(|e| e.action == "auth.refresh_reuse"), "reuse is audited");
    let logins = app.audit_for("user", &user.id).await;
    assert!(logins.iter().any(|e| e.action == "auth.login" && e.outcome == shared::audit::Outcome::Failure && e.reason.as_deref() == Some("wrong password")));
}

#[tokio::test]
async fn logout_ends_the_session_and_suspended_users_cannot_refresh() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user(&["user"]).await;
    let login = app.login(&user.email, PASSWORD).await;
    let token = login.body["refresh_token"].as_str().unwrap().to_string();
    let out = app.call(Method::POST, "/api/v1/auth/logout", None, Some(json!({ "refresh_token": token }))).await;
    assert_eq!(out.status, 204);
    assert_eq!(refresh(&app, &token).await.status, 401);

    let login = app.login(&user.email, PASSWORD).await;
    let token = login.body["refresh_token"].as_str().unwrap().to_string();
    let (_, admin) = app.user(&["admin"]).await;
    let r = app.call(Method::PUT, &format!("/api/v1/admin/users/{}", user.id), Some(&admin), Some(json!({ "version": 1, "status": "suspended" }))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(refresh(&app, &token).await.status, 401);
    assert_eq!(app.login(&user.email, PASSWORD).await.status, 401);
    for garbage in ["", "no-dot", "a.b", &"x".repeat(600)] {
        assert_eq!(refresh(&app, garbage).await.status, 401, "{garbage:?}");
    }
}

#[tokio::test]
async fn login_responses_are_never_stored_for_idempotency() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user(&["user"]).await;
    let request = || {
        http::Request::builder()
            .method("POST")
            .uri("/api/v1/auth/login")
            .header("content-type", "application/json")
            .header("idempotency-key", "same-key")
            .body(axum::body::Body::from(json!({"email": user.email, "password": PASSWORD}).to_string()))
            .unwrap()
    };
    let first = app.send(request()).await;
    let second = app.send(request()).await;
    assert_eq!((first.status.as_u16(), second.status.as_u16()), (200, 200));
    assert_ne!(first.body["refresh_token"], second.body["refresh_token"], "each login is a new session");
    assert!(second.headers.get("idempotent-replayed").is_none());
}
