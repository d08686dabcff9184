//! The compliance function: the GDPR status, the access review and the
//! security recommendations, from the state the other functions left.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;

fn find<'a>(list: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|v| v[key] == value)
}

#[tokio::test]
async fn a_gdpr_export_request_shows_with_its_deadline_30_days_out() {
    let app = TestApp::spawn().await;
    let (_, officer) = app.user(&["super_admin"]).await;
    let (_, person) = app.user(&["user"]).await;
    let r = app.call(Method::POST, "/api/v1/data/export/gdpr", Some(&person), Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let request_id = r.body["request_id"].as_str().unwrap().to_string();
    let r = app.call(Method::POST, "/api/v1/data/export/gdpr", Some(&person), Some(json!({"regime": "ccpa"}))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);

    let r = app.get("/api/v1/compliance/gdpr", &officer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let open = find(&r.body["open_requests"], "id", &request_id).unwrap_or_else(|| panic!("the request is open: {}", r.body));
    assert_eq!(open["regime"], "gdpr");
    assert_eq!(open["overdue"], false);
    assert_eq!(open["days_left"], 29, "30 days from now, less the moments since: {open}");
    let received = chrono::DateTime::parse_from_rfc3339(open["received_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(open["due_at"].as_str().unwrap()).unwrap();
    assert_eq!(due - received, chrono::Duration::days(30));
    let ccpa = r.body["open_requests"].as_array().unwrap().iter().find(|o| o["regime"] == "ccpa").unwrap();
    assert_eq!(ccpa["days_left"], 44);
    assert_eq!(r.body["deadline_days"], json!({"ccpa": 45, "gdpr": 30}));
    assert_eq!(r.body["overdue"], 0);
    // The inventory says where personal data lives and for how long.
    let inventory = r.body["data_inventory"].as_array().unwrap();
    let audit = inventory.iter().find(|e| e["record"] == "audit entries").unwrap();
    assert_eq!(audit["retention"], "2555 days (settings: retention)");

    // Once done, it counts as closed in the period, on time.
    app.run_jobs().await;
    let r = app.get("/api/v1/compliance/gdpr", &officer).await;
    assert!(find(&r.body["open_requests"], "id", &request_id).is_none(), "{}", r.body);
    assert_eq!(r.body["closed"]["completed"], 2, "{}", r.body);
    assert_eq!(r.body["closed"]["late"], 0);
    assert!(r.body["closed"]["median_days_to_close"].as_f64().unwrap() < 0.1);

    // A bad period names its field; a plain user may not look.
    let r = app.get("/api/v1/compliance/gdpr?from=yesterday", &officer).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_fields(), vec!["from"]);
    assert_eq!(app.get("/api/v1/compliance/gdpr", &person).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_access_review_lists_privileged_principals_with_their_last_uses_and_2fa() {
    let app = TestApp::spawn().await;
    let (officer_user, officer) = app.user(&["super_admin"]).await;
    let (admin, _) = app.user(&["admin"]).await;
    let (plain, _) = app.user(&["user"]).await;
    // The officer uses roles:write once.
    let r = app
        .call(Method::PUT, &format!("/api/v1/admin/users/{}/roles", plain.id), Some(&officer), Some(json!({"version": 1, "roles": ["user", "moderator"]})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let r = app.get("/api/v1/compliance/access-review", &officer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let principals = &r.body["principals"];
    let officer_review = find(principals, "user_id", &officer_user.id).unwrap_or_else(|| panic!("{}", r.body));
    let roles_write = find(&officer_review["permissions"], "permission", "roles:write").unwrap();
    assert_eq!(roles_write["last_action"], "user.assign_roles");
    assert!(roles_write["last_used_at"].is_string());
    assert_eq!(roles_write["unused"], false);
    let users_read = find(&officer_review["permissions"], "permission", "users:read").unwrap();
    assert_eq!(users_read["use_recorded"], false, "reads are not audited");
    assert_eq!(officer_review["two_factor"], false);
    assert!(officer_review["flags"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().contains("two-factor")));
    // The admin is listed; the one now a moderator too; nobody holding only `user`.
    assert!(find(principals, "user_id", &admin.id).is_some());
    assert!(find(principals, "user_id", &plain.id).is_some(), "a moderator now");
    let (other, _) = app.user(&["user"]).await;
    let r = app.get("/api/v1/compliance/access-review", &officer).await;
    assert!(find(&r.body["principals"], "user_id", &other.id).is_none());
    assert_eq!(r.body["without_two_factor"], r.body["principals"].as_array().unwrap().len());

    // The recommendations name the accounts without 2FA and say how to fix it.
    let r = app.get("/api/v1/compliance/security-recommendations", &officer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let list = &r.body["recommendations"];
    let no_2fa = find(list, "id", "privileged_without_2fa").unwrap();
    assert_eq!(no_2fa["status"], "action_needed");
    assert_eq!(no_2fa["severity"], "high");
    assert!(no_2fa["evidence"].as_array().unwrap().iter().any(|e| e.as_str().unwrap().starts_with(&admin.id)));
    assert!(no_2fa["fix"].as_str().unwrap().contains("/api/v1/auth/2fa/enable"));
    assert_eq!(find(list, "id", "oauth_pkce").unwrap()["status"], "ok");
    assert_eq!(find(list, "id", "failing_integrations").unwrap()["status"], "ok");
    assert!(find(list, "id", "data_key_rotation").is_some());
    assert!(find(list, "id", "admin_roles_require_2fa").is_some());
    // Action needed comes first.
    assert_eq!(list[0]["status"], "action_needed");
}
