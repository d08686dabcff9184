//! Every route × every built-in role: allowed, or 403 naming the missing
//! permission. Public routes need no token; the others refuse none. (The
//! same walk for custom roles is in `roles.rs`.)

use http::Method;
use serde_json::json;
use shared::http::{Access, Route};
use shared::identity::rbac::BuiltinRole;

use crate::helpers::TestApp;

pub fn all_routes() -> Vec<&'static Route> {
    auth::ROUTES.iter().chain(admin::ROUTES.iter()).chain(data::ROUTES.iter()).collect()
}

/// A route's path with its parameters filled in (a chart id that names no
/// chart: access is decided before the handler looks).
pub fn concrete(path: &str, user_id: &str, role_name: &str) -> String {
    path.replace("{user_id}", user_id)
        .replace("{name}", role_name)
        .replace("{provider}", "no-such-provider")
        .replace("{chart_id}", &uuid::Uuid::now_v7().to_string())
        // Audit entry ids are UUIDv7; a fresh one names no entry (404 when allowed).
        .replace("{entry_id}", &uuid::Uuid::now_v7().to_string())
        // Job ids are UUIDv7; a fresh one names no job (404 when allowed).
        .replace("{job_id}", &uuid::Uuid::now_v7().to_string())
        // Subject request ids likewise.
        .replace("{request_id}", &uuid::Uuid::now_v7().to_string())
}

#[tokio::test]
async fn every_route_and_role() {
    let app = TestApp::spawn().await;
    let mut checked = 0;
    for role in BuiltinRole::ALL {
        let (_, token) = app.user(&[role.as_str()]).await;
        let permissions = role.permissions();
        for route in all_routes() {
            // A fresh target per call, so a delete by one role does not
            // change what the next role sees.
            let (target, _) = app.user(&["user"]).await;
            let probe = if route.path.contains("{name}") { app.role(&["audit:read"]).await.name } else { String::new() };
            let path = concrete(route.path, &target.id, &probe);
            let body = matches!(route.method, Method::POST | Method::PUT).then(|| json!({}));
            let response = app.call(route.method.clone(), &path, Some(&token), body).await;
            let context = format!("{} {} as {}: {} {}", route.method, route.path, role.as_str(), response.status, response.body);
            // The target is another user, so "self or permission" needs the permission.
            match route.access {
                Access::Permission(p) | Access::SelfOrPermission(p) if !permissions.contains(p) => {
                    assert_eq!(response.status, 403, "{context}");
                    assert_eq!(response.body["missing_permission"], p.as_str(), "{context}");
                    assert_eq!(response.headers["content-type"], "application/problem+json", "{context}");
                }
                _ => assert!(response.status != 403 && response.status != 401, "{context}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, BuiltinRole::ALL.len() * all_routes().len());
}

#[tokio::test]
async fn protected_routes_need_a_token() {
    let app = TestApp::spawn().await;
    let (target, _) = app.user(&["user"]).await;
    for route in all_routes().into_iter().filter(|r| matches!(r.access, Access::Authenticated | Access::Permission(_) | Access::SelfOrPermission(_))) {
        let response = app.call(route.method.clone(), &concrete(route.path, &target.id, "some_role"), None, Some(json!({}))).await;
        assert_eq!(response.status, 401, "{} {}", route.method, route.path);
    }
}

#[tokio::test]
async fn moderators_see_users_without_personal_data() {
    let app = TestApp::spawn().await;
    let (target, _) = app.user(&["user"]).await;
    let (_, moderator) = app.user(&["moderator"]).await;
    let (_, support) = app.user(&["support"]).await;
    let masked = app.get(&format!("/api/v1/admin/users/{}", target.id), &moderator).await;
    assert_eq!(masked.status, 200);
    assert_ne!(masked.body["email"], target.email.as_str());
    assert!(masked.body["email"].as_str().unwrap().contains("***@example.com"));
    let clear = app.get(&format!("/api/v1/admin/users/{}", target.id), &support).await;
    assert_eq!(clear.body["email"], target.email.as_str());
}

#[tokio::test]
async fn no_privilege_escalation_through_roles() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    // roles:write belongs to super_admin only, so an admin may not grant it.
    let r = app.call(Method::POST, "/api/v1/admin/users", Some(&admin), Some(json!({"email": "x@example.com", "name": "X", "roles": ["super_admin"], "password": "a long enough password"}))).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["missing_permission"], "roles:write");
    let (victim, _) = app.user(&["super_admin"]).await;
    let r = app.call(Method::PUT, &format!("/api/v1/admin/users/{}", victim.id), Some(&admin), Some(json!({"version": 1, "roles": ["user"]}))).await;
    assert_eq!(r.status, 403, "{}", r.body);
}
