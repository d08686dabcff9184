//! Custom roles end to end: CRUD with versions and audit, field-level
//! validation, built-in roles read-only, no privilege escalation, a custom
//! role granting exactly its permissions on every route, permission changes
//! reaching already-issued tokens within the cache TTL, deletion rules, and
//! role assignments with optimistic locking.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use shared::audit::Outcome;
use shared::identity::rbac::{BuiltinRole, Permission, PermissionSet};

use crate::helpers::{PASSWORD, TestApp, request, send_to};
use crate::rbac::{all_routes, check_probe, probes};

const ROLES: &str = "/api/v1/admin/roles";

fn role_path(name: &str) -> String {
    format!("{ROLES}/{name}")
}

fn roles_path(user_id: &str) -> String {
    format!("/api/v1/admin/users/{user_id}/roles")
}

#[tokio::test]
async fn create_read_update_delete_with_versions_and_audit() {
    let app = TestApp::spawn().await;
    let (_, root) = app.user(&["super_admin"]).await;
    let body = json!({"name": "billing_viewer", "description": "Reads the audit trail for billing", "permissions": ["audit:read", "users:read"]});
    let created = app.call(Method::POST, ROLES, Some(&root), Some(body.clone())).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.headers["location"], "/api/v1/admin/roles/billing_viewer");
    assert_eq!(created.body["permissions"], json!(["users:read", "audit:read"]), "declaration order");
    assert_eq!((created.body["require_2fa"].clone(), created.body["builtin"].clone(), created.body["version"].clone()), (json!(false), json!(false), json!(1)));
    assert_eq!(created.body["holders"], 0);
    let again = app.call(Method::POST, ROLES, Some(&root), Some(body)).await;
    assert_eq!(again.status, 409, "{}", again.body);

    let listed = app.get(ROLES, &root).await;
    assert_eq!(listed.status, 200);
    let names: Vec<&str> = listed.body["items"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    let mut expected: Vec<&str> = BuiltinRole::ALL.iter().map(|r| r.as_str()).collect();
    expected.push("billing_viewer");
    assert_eq!(names, expected, "built-ins first, then custom roles");
    let admin = &listed.body["items"][1];
    assert_eq!((admin["builtin"].clone(), admin["version"].clone()), (json!(true), Value::Null));
    assert_eq!(admin["permissions"], json!(BuiltinRole::Admin.permissions().names()));

    let read = app.get(&role_path("billing_viewer"), &root).await;
    assert_eq!(read.body, created.body);

    let path = role_path("billing_viewer");
    let updated = app
        .call(Method::PUT, &path, Some(&root), Some(json!({"version": 1, "permissions": ["audit:read"], "require_2fa": true, "reason": "least privilege"})))
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(
        (updated.body["version"].clone(), updated.body["permissions"].clone(), updated.body["require_2fa"].clone()),
        (json!(2), json!(["audit:read"]), json!(true))
    );
    assert_eq!(updated.body["description"], "Reads the audit trail for billing", "unchanged fields stay");
    let stale = app.call(Method::PUT, &path, Some(&root), Some(json!({"version": 1, "description": "late"}))).await;
    assert_eq!(stale.status, 409, "{}", stale.body);

    let stale_delete = app
        .send(
            http::Request::builder()
                .method("DELETE")
                .uri(&path)
                .header("authorization", format!("Bearer {root}"))
                .header("if-match", "1")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(stale_delete.status, 409);
    assert_eq!(app.call(Method::DELETE, &path, Some(&root), None).await.status, 204);
    assert_eq!(app.get(&path, &root).await.status, 404);
    assert_eq!(app.call(Method::DELETE, &path, Some(&root), None).await.status, 404);
    assert_eq!(app.get(&role_path("Not_A_Role"), &root).await.status, 404);

    // Every change is audited with what changed.
    let audit = app.audit_for("role", "billing_viewer").await;
    let find =
        |action: &str| audit.iter().find(|e| e.action == action && e.outcome == Outcome::Success).unwrap_or_else(|| panic!("{action} not audited: {audit:?}"));
    assert_eq!(find("role.create").changes.as_ref().unwrap()["after"]["permissions"], json!(["users:read", "audit:read"]));
    let update = find("role.update");
    assert_eq!(update.reason.as_deref(), Some("least privilege"));
    let changes = update.changes.as_ref().unwrap();
    assert_eq!(changes["before"], json!({"permissions": ["users:read", "audit:read"], "require_2fa": false}));
    assert_eq!(changes["after"], json!({"permissions": ["audit:read"], "require_2fa": true}));
    let delete = find("role.delete");
    assert_eq!(delete.changes.as_ref().unwrap()["before"]["permissions"], json!(["audit:read"]));
    assert_eq!(delete.changes.as_ref().unwrap()["after"], json!({}));
    assert_eq!(audit.iter().filter(|e| e.action == "role.update").count(), 1, "the stale update left no entry");
}

#[tokio::test]
async fn invalid_input_names_the_field() {
    let app = TestApp::spawn().await;
    let (_, root) = app.user(&["super_admin"]).await;
    let role = app.role(&["audit:read"]).await;
    let ok = |overrides: Value| {
        let mut body = json!({"name": "valid_name", "description": "A role", "permissions": ["audit:read"]});
        for (k, v) in overrides.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (ok(json!({"permissions": ["audit:read", "users:read", "users:fly"]})), "permissions[2]"),
        (ok(json!({"permissions": ["audit:read", "audit:read"]})), "permissions[1]"),
        (ok(json!({"permissions": []})), "permissions"),
        (ok(json!({"permissions": ["audit:read", 7]})), "permissions[1]"),
        (ok(json!({"name": "Billing"})), "name"),
        (ok(json!({"name": "admin"})), "name"),
        (ok(json!({"name": "x"})), "name"),
        (ok(json!({"description": ""})), "description"),
        (ok(json!({"description": "x".repeat(501)})), "description"),
        (ok(json!({"require_2fa": "yes"})), "require_2fa"),
        (ok(json!({"holders": 5})), "holders"),
        (json!({"description": "A role", "permissions": ["audit:read"]}), "name"),
    ];
    for (body, field) in cases {
        let r = app.call(Method::POST, ROLES, Some(&root), Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert!(r.error_fields().contains(&field.to_string()), "{body}: expected {field}, got {}", r.body);
    }
    let path = role_path(&role.name);
    for (body, field) in [
        (json!({"version": 1, "permissions": ["nope"]}), "permissions[0]"),
        (json!({"version": 1, "name": "renamed"}), "name"),
        (json!({"permissions": ["audit:read"]}), "version"),
        (json!({"version": 1, "description": " "}), "description"),
    ] {
        let r = app.call(Method::PUT, &path, Some(&root), Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.error_fields().contains(&field.to_string()), "{body}: expected {field}, got {}", r.body);
    }

    let (target, _) = app.user(&["user"]).await;
    for (body, field) in [
        (json!({"version": 1, "roles": ["user", "root"]}), "roles[1]"),
        (json!({"version": 1, "roles": ["user", role.name, "user"]}), "roles[2]"),
        (json!({"version": 1, "roles": []}), "roles"),
        (json!({"version": 1}), "roles"),
        (json!({"version": 1, "roles": ["user"], "reason": "x".repeat(501)}), "reason"),
    ] {
        let r = app.call(Method::PUT, &roles_path(&target.id), Some(&root), Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.error_fields().contains(&field.to_string()), "{body}: expected {field}, got {}", r.body);
    }
    // Nothing was written by any of them.
    assert_eq!(app.get(&format!("/api/v1/admin/users/{}", target.id), &root).await.body["version"], 1);
    assert_eq!(app.get(&path, &root).await.body["version"], 1);
}

#[tokio::test]
async fn built_in_roles_are_readable_but_not_editable() {
    let app = TestApp::spawn().await;
    let (_, root) = app.user(&["super_admin"]).await;
    for role in BuiltinRole::ALL {
        let r = app.get(&role_path(role.as_str()), &root).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["builtin"], true);
        assert_eq!(r.body["permissions"], json!(role.permissions().names()));
        assert_eq!(r.body["description"], role.description());

        let edit = app.call(Method::PUT, &role_path(role.as_str()), Some(&root), Some(json!({"version": 1, "description": "mine now"}))).await;
        assert_eq!(edit.status, 409, "{}", edit.body);
        assert!(edit.body["detail"].as_str().unwrap().contains("built-in role and cannot be changed"), "{}", edit.body);
        let delete = app.call(Method::DELETE, &role_path(role.as_str()), Some(&root), None).await;
        assert_eq!(delete.status, 409, "{}", delete.body);
        assert!(delete.body["detail"].as_str().unwrap().contains("cannot be deleted"), "{}", delete.body);
    }
    assert_eq!(app.get(&role_path("unknown_role"), &root).await.status, 404);
}

#[tokio::test]
async fn nobody_grants_more_than_they_hold() {
    let app = TestApp::spawn().await;
    let (_, root) = app.user(&["super_admin"]).await;
    // A role manager who may manage roles but holds few other rights.
    let manager_role = app.role(&["roles:read", "roles:write", "audit:read", "users:read"]).await;
    let (manager, token) = app.user(&[manager_role.name.as_str()]).await;

    let create = |perms: Value| json!({"name": format!("r{}", &uuid::Uuid::new_v4().simple().to_string()[..10]), "description": "x", "permissions": perms});
    let r = app.call(Method::POST, ROLES, Some(&token), Some(create(json!(["audit:read", "users:delete"])))).await;
    assert_eq!((r.status.as_u16(), r.body["missing_permission"].as_str()), (403, Some("users:delete")), "{}", r.body);
    let ok = app.call(Method::POST, ROLES, Some(&token), Some(create(json!(["audit:read"])))).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let lesser = ok.body["name"].as_str().unwrap().to_string();

    // Editing or deleting a role above one's own is refused, even a
    // description change; so is adding a permission one lacks.
    let powerful = app.role(&["users:delete"]).await;
    let r = app.call(Method::PUT, &role_path(&powerful.name), Some(&token), Some(json!({"version": 1, "description": "harmless?"}))).await;
    assert_eq!((r.status.as_u16(), r.body["missing_permission"].as_str()), (403, Some("users:delete")), "{}", r.body);
    let r = app.call(Method::DELETE, &role_path(&powerful.name), Some(&token), None).await;
    assert_eq!((r.status.as_u16(), r.body["missing_permission"].as_str()), (403, Some("users:delete")), "{}", r.body);
    let r = app.call(Method::PUT, &role_path(&lesser), Some(&token), Some(json!({"version": 1, "permissions": ["audit:read", "pii:read"]}))).await;
    assert_eq!((r.status.as_u16(), r.body["missing_permission"].as_str()), (403, Some("pii:read")), "{}", r.body);

    // Granting: only roles within the manager's own permissions.
    let (target, _) = app.user(&["user"]).await;
    let r = app.call(Method::PUT, &roles_path(&target.id), Some(&token), Some(json!({"version": 1, "roles": ["user", "admin"]}))).await;
    assert_eq!((r.status.as_u16(), r.body["missing_permission"].as_str()), (403, Some("users:write")), "{}", r.body);
    let r = app.call(Method::PUT, &roles_path(&target.id), Some(&token), Some(json!({"version": 1, "roles": ["user", lesser]}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["roles"], json!(["user", lesser]));
    // Taking away a role one could not grant is refused too.
    let (supported, _) = app.user(&["support"]).await;
    let r = app.call(Method::PUT, &roles_path(&supported.id), Some(&token), Some(json!({"version": 1, "roles": ["user"]}))).await;
    assert_eq!((r.status.as_u16(), r.body["missing_permission"].as_str()), (403, Some("users:write")), "{}", r.body);

    // Nobody edits their own roles, not even to a subset.
    let r = app.call(Method::PUT, &roles_path(&manager.id), Some(&token), Some(json!({"version": 1, "roles": [manager_role.name, lesser]}))).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["roles".to_string()]), "{}", r.body);
    let (me, root_user_token) = app.user(&["super_admin"]).await;
    let r = app
        .call(Method::PUT, &format!("/api/v1/admin/users/{}", me.id), Some(&root_user_token), Some(json!({"version": 1, "roles": ["super_admin", "auditor"]})))
        .await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["roles".to_string()]), "{}", r.body);

    // The user routes apply the same rule to custom roles: an admin (no
    // roles:write) may not hand out a custom role that carries it.
    let (_, admin) = app.user(&["admin"]).await;
    let role_writer = app.role(&["roles:write"]).await;
    let r = app
        .call(
            Method::POST,
            "/api/v1/admin/users",
            Some(&admin),
            Some(json!({"email": "cr@example.com", "name": "C", "roles": [role_writer.name], "password": PASSWORD})),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.body["missing_permission"].as_str()), (403, Some("roles:write")), "{}", r.body);
    let r = app.call(Method::PUT, &format!("/api/v1/admin/users/{}", target.id), Some(&admin), Some(json!({"version": 2, "roles": [role_writer.name]}))).await;
    assert_eq!((r.status.as_u16(), r.body["missing_permission"].as_str()), (403, Some("roles:write")), "{}", r.body);
    let r = app
        .call(Method::POST, "/api/v1/admin/users", Some(&admin), Some(json!({"email": "ok@example.com", "name": "C", "roles": [lesser], "password": PASSWORD})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    // Denials are security events: audited with the missing permission.
    let denied = app.audit_for("role", &powerful.name).await;
    assert!(
        denied.iter().any(|e| e.action == "role.update" && e.outcome == Outcome::Denied && e.reason.as_deref().is_some_and(|r| r.contains("users:delete"))),
        "{denied:?}"
    );
    let denied = app.audit_for("user", &supported.id).await;
    assert!(denied.iter().any(|e| e.action == "user.assign_roles" && e.outcome == Outcome::Denied && e.actor.id == manager.id), "{denied:?}");
    assert_eq!(app.get(&role_path(&powerful.name), &root).await.body["version"], 1, "nothing changed");
}

#[tokio::test]
async fn a_custom_role_grants_exactly_its_permissions() {
    let app = TestApp::spawn().await;
    // Every permission a route's rule can ask for (body cases included).
    let mut permissions: Vec<Permission> = all_routes().iter().flat_map(|r| r.access.permissions()).collect();
    permissions.sort();
    permissions.dedup();
    assert!(permissions.contains(&Permission::AuditRead) && permissions.contains(&Permission::RolesWrite) && permissions.contains(&Permission::DataExport));
    let mut checked = 0;
    let mut failures = Vec::new();
    for permission in permissions.iter().copied() {
        let role = app.role(&[permission.as_str()]).await;
        let (me, token) = app.user(&[role.name.as_str()]).await;
        for route in all_routes() {
            let target = app.user(&["user"]).await.0.id;
            // Judged within the caller's rights, so a delete can go through.
            let probe_role = if route.path.contains("{name}") { app.role(&[permission.as_str()]).await.name } else { String::new() };
            for probe in probes(route, &me, &target, &probe_role) {
                check_probe(
                    &app,
                    route,
                    &probe,
                    &me,
                    &token,
                    PermissionSet::of(&[permission]),
                    &format!("a custom role with only {permission}"),
                    &mut failures,
                )
                .await;
                checked += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} probes went wrong:\n{}", failures.len(), failures.join("\n"));
    // Extra probes as in rbac::every_route_and_role: export 3, subject export 2, erasure 1, report generation 3.
    assert_eq!(checked, permissions.len() * (all_routes().len() + 3 + 2 + 1 + 3));
}

#[tokio::test]
async fn a_permission_change_reaches_issued_tokens_within_the_cache_ttl() {
    const TTL: u64 = 2;
    let app = TestApp::spawn_with(HashMap::from([("RoleCacheSeconds".to_string(), TTL.to_string())])).await;
    assert_eq!(app.app.platform.config.role_cache_ttl, Duration::from_secs(TTL));
    // A second instance of the functions on the same stack: its own cache,
    // as another Lambda instance would have.
    let other = keel_local::app::build(&app.sdk, &app.stack.env).await.unwrap();
    let on_other = |path: &str, token: &str| send_to(other.router.clone(), request(Method::GET, path, Some(token), None));

    let (_, root) = app.user(&["super_admin"]).await;
    let role = app.role(&["audit:read"]).await;
    let (holder, token) = app.user(&[role.name.as_str()]).await;
    let audit_logs = "/api/v1/admin/audit-logs?limit=1";
    let user_path = format!("/api/v1/admin/users/{}", holder.id);

    // Measured before the first load, so `loaded.elapsed()` never
    // understates the cache's age.
    let loaded = Instant::now();
    assert_eq!(on_other(audit_logs, &token).await.status, 200);
    let denied = on_other(&user_path, &token).await;
    assert_eq!((denied.status.as_u16(), denied.body["missing_permission"].as_str()), (403, Some("users:read")));
    for _ in 0..5 {
        on_other(audit_logs, &token).await;
    }
    // On a slow machine the TTL may already have run out; only then may the
    // catalog have been read again.
    if loaded.elapsed() < Duration::from_secs(TTL) {
        assert_eq!(other.platform.roles.loads(), 1, "a warm cache costs no DynamoDB call");
    }

    // Change the role through the first instance; the token is not reissued.
    let r = app.call(Method::PUT, &role_path(&role.name), Some(&root), Some(json!({"version": 1, "permissions": ["users:read"]}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The instance that made the change sees it at once.
    assert_eq!(app.get(&user_path, &token).await.status, 200);
    // The other instance answers from its cache until the TTL runs out.
    let still_cached = on_other(audit_logs, &token).await.status;
    if loaded.elapsed() < Duration::from_secs(TTL) {
        assert_eq!(still_cached, 200, "served from the cache within the TTL");
    }
    let deadline = Instant::now() + Duration::from_secs(TTL + 10);
    loop {
        if on_other(&user_path, &token).await.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the change never reached the other instance");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(loaded.elapsed() >= Duration::from_secs(TTL), "not before the cache expired");
    let r = on_other(audit_logs, &token).await;
    assert_eq!((r.status.as_u16(), r.body["missing_permission"].as_str()), (403, Some("audit:read")), "the old permission is gone");

    // Deleting the role (after taking it away) removes its grants from the
    // token that still names it.
    let r = app.call(Method::PUT, &roles_path(&holder.id), Some(&root), Some(json!({"version": 1, "roles": ["user"]}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(app.call(Method::DELETE, &role_path(&role.name), Some(&root), None).await.status, 204);
    let deadline = Instant::now() + Duration::from_secs(TTL + 10);
    while on_other(&user_path, &token).await.status != 403 {
        assert!(Instant::now() < deadline, "the deleted role still grants on the other instance");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn held_roles_cannot_be_deleted() {
    let app = TestApp::spawn().await;
    let (_, root) = app.user(&["super_admin"]).await;
    let role = app.role(&["audit:read"]).await;
    let path = role_path(&role.name);
    let (holder, _) = app.user(&["user", role.name.as_str()]).await;
    let r = app
        .call(
            Method::POST,
            "/api/v1/admin/users",
            Some(&root),
            Some(json!({"email": "second@example.com", "name": "S", "roles": [role.name], "password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let second = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(app.get(&path, &root).await.body["holders"], 2);

    let r = app.call(Method::DELETE, &path, Some(&root), None).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("held by 2 user(s)"), "{}", r.body);
    // The role filter finds who holds it.
    let holders = app.get(&format!("/api/v1/admin/users?role={}", role.name), &root).await;
    assert_eq!(holders.body["items"].as_array().unwrap().len(), 2, "{}", holders.body);

    // Taking the role away, and deleting a holder, release it.
    let r = app.call(Method::PUT, &roles_path(&holder.id), Some(&root), Some(json!({"version": 1, "roles": ["user"]}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(app.call(Method::DELETE, &format!("/api/v1/admin/users/{second}"), Some(&root), None).await.status, 204);
    assert_eq!(app.get(&path, &root).await.body["holders"], 0);
    assert_eq!(app.call(Method::DELETE, &path, Some(&root), None).await.status, 204);

    // A deleted role cannot be assigned.
    let r = app.call(Method::PUT, &roles_path(&holder.id), Some(&root), Some(json!({"version": 2, "roles": [role.name]}))).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["roles[0]".to_string()]), "{}", r.body);

    // A token issued while the old role existed gains nothing from a new
    // role that reuses the name.
    let issued_before = chrono::Utc::now().timestamp() - 120;
    let claims = shared::identity::token::Claims {
        iss: app.app.platform.verifier.issuer().to_string(),
        aud: shared::platform::config::AUDIENCE.into(),
        sub: holder.id.clone(),
        exp: issued_before + 900,
        iat: issued_before,
        jti: "old".into(),
        sid: "s".into(),
        roles: vec![role.name.clone()],
        amr: vec!["pwd".into()],
        scope: None,
    };
    let old_token = app.app.signer.sign(&claims).await.unwrap();
    let r = app.call(Method::POST, ROLES, Some(&root), Some(json!({"name": role.name, "description": "reused", "permissions": ["audit:read"]}))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app.get("/api/v1/admin/audit-logs?limit=1", &old_token).await;
    assert_eq!((r.status.as_u16(), r.body["missing_permission"].as_str()), (403, Some("audit:read")), "{}", r.body);
}

#[tokio::test]
async fn assignments_are_version_checked_and_counted_once() {
    let app = TestApp::spawn().await;
    let (_, root) = app.user(&["super_admin"]).await;
    let (first, second) = (app.role(&["audit:read"]).await, app.role(&["users:read"]).await);
    let (target, _) = app.user(&["user"]).await;
    let path = roles_path(&target.id);
    let (a, b) = tokio::join!(
        app.call(Method::PUT, &path, Some(&root), Some(json!({"version": 1, "roles": [first.name]}))),
        app.call(Method::PUT, &path, Some(&root), Some(json!({"version": 1, "roles": [second.name]}))),
    );
    let mut statuses = vec![a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, vec![200, 409], "{} / {}", a.body, b.body);
    let (winner, loser) = if a.status == 200 { (&first, &second) } else { (&second, &first) };
    let user = app.get(&format!("/api/v1/admin/users/{}", target.id), &root).await;
    assert_eq!((user.body["version"].clone(), user.body["roles"].clone()), (json!(2), json!([winner.name])));
    // Holder counts moved with the winner only (same transaction).
    assert_eq!(app.get(&role_path(&winner.name), &root).await.body["holders"], 1);
    assert_eq!(app.get(&role_path(&loser.name), &root).await.body["holders"], 0);

    let stale = app.call(Method::PUT, &path, Some(&root), Some(json!({"version": 1, "roles": ["user"]}))).await;
    assert_eq!(stale.status, 409, "{}", stale.body);
    let r = app.call(Method::PUT, &path, Some(&root), Some(json!({"version": 2, "roles": ["analyst", winner.name], "reason": "quarterly review"}))).await;
    assert_eq!((r.status.as_u16(), r.body["version"].clone()), (200, json!(3)), "{}", r.body);

    let entries: Vec<_> = app.audit_for("user", &target.id).await.into_iter().filter(|e| e.action == "user.assign_roles").collect();
    assert_eq!(entries.len(), 2, "one entry per successful assignment: {entries:?}");
    let latest = &entries[0];
    assert_eq!(latest.reason.as_deref(), Some("quarterly review"));
    assert_eq!(latest.changes.as_ref().unwrap()["before"]["roles"], json!([winner.name]));
    assert_eq!(latest.changes.as_ref().unwrap()["after"]["roles"], json!(["analyst", winner.name]));

    assert_eq!(app.call(Method::DELETE, &format!("/api/v1/admin/users/{}", target.id), Some(&root), None).await.status, 204);
    assert_eq!(app.get(&role_path(&winner.name), &root).await.body["holders"], 0, "a deleted user holds nothing");
    let r = app.call(Method::PUT, &path, Some(&root), Some(json!({"version": 4, "roles": ["user"]}))).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        app.call(Method::PUT, &roles_path(&uuid::Uuid::now_v7().to_string()), Some(&root), Some(json!({"version": 1, "roles": ["user"]}))).await.status,
        404
    );
}

/// The built-in roles table in docs/roles.md, as the code defines it.
fn builtin_roles_table() -> String {
    let mut table = String::from("| role | what for | permissions |\n|---|---|---|\n");
    for role in BuiltinRole::ALL {
        let permissions = role.permissions().names().iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(" ");
        let permissions = if role.permissions().is_empty() { "none (self-service routes only)".to_string() } else { permissions };
        table.push_str(&format!("| `{}` | {} | {} |\n", role.as_str(), role.description(), permissions));
    }
    table
}

#[test]
fn docs_list_the_built_in_roles_as_the_code_defines_them() {
    const BEGIN: &str = "<!-- built-in roles: generated by tests/api/roles.rs, KEEL_UPDATE_DOCS=1 rewrites -->\n";
    const END: &str = "<!-- end of built-in roles -->";
    let path = keel_local::repo_root().join("docs/roles.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find(BEGIN).expect("docs/roles.md has the begin marker") + BEGIN.len();
    let end = text[start..].find(END).expect("docs/roles.md has the end marker") + start;
    let generated = builtin_roles_table();
    if std::env::var("KEEL_UPDATE_DOCS").is_ok() {
        std::fs::write(&path, format!("{}{generated}{}", &text[..start], &text[end..])).unwrap();
        return;
    }
    assert!(text[start..end] == generated, "docs/roles.md's built-in roles table is stale; run with KEEL_UPDATE_DOCS=1 or paste:\n{generated}");
}
