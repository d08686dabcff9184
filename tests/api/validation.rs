//! Bad input gets a problem+json 400 or 413 naming the field — never a 500.

use axum::body::Body;
use http::Method;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn invalid_bodies_name_the_field() {
    let app = TestApp::spawn().await;
    let (target, admin) = app.user(&["admin"]).await;
    let cases = [
        (json!({"email": 42, "name": "x", "password": PASSWORD}), "email"),
        (json!({"email": "a@b.io", "name": "x", "roles": ["admin", 7], "password": PASSWORD}), "roles[1]"),
        (json!({"email": "a@b.io", "name": "x", "password": PASSWORD, "is_admin": true}), "is_admin"),
        (json!({"name": "x", "password": PASSWORD}), "email"),
        (json!({"email": "not-an-email", "name": "x", "password": PASSWORD}), "email"),
        (json!({"email": "a@b.io", "name": "x", "password": "short"}), "password"),
        (json!({"email": "a@b.io", "name": "x", "roles": ["root"], "password": PASSWORD}), "roles[0]"),
        (json!({"email": "a@b.io", "name": "", "password": PASSWORD}), "name"),
        (json!({"email": "a@b.io", "name": "x"}), "password"),
    ];
    for (body, field) in cases {
        let r = app.call(Method::POST, "/api/v1/admin/users", Some(&admin), Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert!(r.error_fields().contains(&field.to_string()), "{body}: expected {field}, got {}", r.body);
    }
    let r = app.call(Method::PUT, &format!("/api/v1/admin/users/{}", target.id), Some(&admin), Some(json!({"version": "one"}))).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["version".to_string()]));
    let r = app.call(Method::PUT, &format!("/api/v1/admin/users/{}", target.id), Some(&admin), Some(json!({"version": 1, "status": "deleted"}))).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["status".to_string()]));

    let r = app
        .send(
            http::Request::builder().method("POST").uri("/api/v1/auth/login").header("content-type", "application/json").body(Body::from("{not json")).unwrap(),
        )
        .await;
    assert_eq!(r.status, 400);
    let r =
        app.send(http::Request::builder().method("POST").uri("/api/v1/auth/login").header("content-type", "text/plain").body(Body::from("{}")).unwrap()).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (415, vec!["content-type".to_string()]));

    for (query, field) in [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("status=gone", "status"),
        ("created_from=yesterday", "created_from"),
        ("role=root", "role"),
        ("bogus=1", "bogus"),
    ] {
        let r = app.get(&format!("/api/v1/admin/users?{query}"), &admin).await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert!(r.error_fields().contains(&field.to_string()), "{query}: {}", r.body);
    }
    let r = app.get("/api/v1/admin/audit-logs?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", &admin).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["from".to_string()]));
}

#[tokio::test]
async fn oversize_bodies_get_413_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let huge = "x".repeat(app.app.platform.config.max_body_bytes + 1);
    let r = app.call(Method::POST, "/api/v1/admin/users", Some(&admin), Some(json!({"email": "big@example.com", "name": huge, "password": PASSWORD}))).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let listed = app.get("/api/v1/admin/users?email_prefix=big", &admin).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn unknown_paths_are_404_problems() {
    let app = TestApp::spawn().await;
    let r = app.call(Method::GET, "/api/v1/nothing-here", None, None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["status"], 404);
}

/// What axum's own extractors refuse (in text/plain) reaches the client as
/// a problem too.
#[tokio::test]
async fn framework_rejections_are_problems() {
    let app = TestApp::spawn().await;
    let (admin_user, admin) = app.user(&["admin"]).await;
    let r = app.call(Method::DELETE, &format!("/api/v1/data/user/{}?regime=null", admin_user.id), Some(&admin), None).await;
    assert_eq!((r.status.as_u16(), r.headers["content-type"].to_str().unwrap()), (400, "application/problem+json"), "{}", r.body);
    assert_eq!(r.body["status"], 400);
    assert!(r.body["detail"].as_str().unwrap().contains("regime"), "{}", r.body);
}
