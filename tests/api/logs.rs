//! `GET /api/v1/admin/logs`: the request id of a problem+json body leads to
//! that request's log lines (the local stack's JSON lines file, which every
//! function of this test process appends to).

use http::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{TestApp, request};

fn lines(body: &Value) -> &Vec<Value> {
    body["lines"].as_array().expect("lines")
}

#[tokio::test]
async fn a_problem_request_id_leads_to_its_log_lines() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["super_admin"]).await;

    // A request that fails: a user that does not exist.
    let failed = app.get("/api/v1/admin/users/no-such-user", &admin).await;
    assert_eq!(failed.status, StatusCode::NOT_FOUND);
    let request_id = failed.body["request_id"].as_str().expect("request_id in the problem body").to_string();
    assert_eq!(failed.headers["x-request-id"], request_id.as_str());

    let found = app.get(&format!("/api/v1/admin/logs?request_id={request_id}"), &admin).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(found.body["source"], "file");
    assert_eq!(found.body["truncated"], false);
    let found_lines = lines(&found.body);
    assert!(!found_lines.is_empty(), "no lines for {request_id}");
    assert!(found_lines.iter().all(|l| l["request_id"] == request_id.as_str()), "{found_lines:?}");
    assert!(found_lines.iter().all(|l| l["function"] == "admin"), "{found_lines:?}");
    // The refusal itself, with its status and problem type, and the
    // request's summary line.
    let refused = found_lines.iter().find(|l| l["message"] == "request refused").expect("the refusal line");
    assert_eq!(refused["fields"]["status"], 404);
    assert_eq!(refused["fields"]["problem"], "not-found");
    assert_eq!(refused["fields"]["path"], "/api/v1/admin/users/no-such-user");
    assert!(found_lines.iter().any(|l| l["message"] == "served" && l["fields"]["status"] == 404));

    // Another request's id finds nothing of this one.
    let other = app.call(Method::GET, "/api/v1/admin/charts/no-such-chart", Some(&admin), None).await;
    let other_id = other.body["request_id"].as_str().unwrap().to_string();
    assert_ne!(other_id, request_id);
    let found = app.get(&format!("/api/v1/admin/logs?request_id={other_id}"), &admin).await;
    assert!(lines(&found.body).iter().all(|l| l["request_id"] == other_id.as_str() && l["fields"]["path"] != "/api/v1/admin/users/no-such-user"));
    let unknown = app.get("/api/v1/admin/logs?request_id=never-issued-0000", &admin).await;
    assert_eq!(unknown.status, StatusCode::OK);
    assert!(lines(&unknown.body).is_empty(), "{}", unknown.body);

    // Level: the refusal is an info line, so `warn` and up leaves none of it.
    let warn = app.get(&format!("/api/v1/admin/logs?request_id={request_id}&level=warn"), &admin).await;
    assert_eq!(warn.status, StatusCode::OK);
    assert!(lines(&warn.body).is_empty(), "{}", warn.body);
    let debug = app.get(&format!("/api/v1/admin/logs?request_id={request_id}&level=DEBUG"), &admin).await;
    assert_eq!(lines(&debug.body).len(), found_lines.len());

    // Text, case-insensitive, in the message or the fields.
    let by_text = app.get(&format!("/api/v1/admin/logs?request_id={request_id}&q=REFUSED"), &admin).await;
    assert_eq!(lines(&by_text.body).len(), 1, "{}", by_text.body);
    assert_eq!(lines(&by_text.body)[0]["message"], "request refused");
    let by_field = app.get(&format!("/api/v1/admin/logs?request_id={request_id}&q=No-Such-User&limit=1"), &admin).await;
    assert_eq!(lines(&by_field.body).len(), 1);
    assert_eq!(by_field.body["truncated"], true, "two lines name the path, one was asked for");
    let no_text = app.get(&format!("/api/v1/admin/logs?request_id={request_id}&q=nothing-like-this"), &admin).await;
    assert!(lines(&no_text.body).is_empty());

    // Function: the lines are the admin function's.
    let by_function = app.get(&format!("/api/v1/admin/logs?request_id={request_id}&function=admin"), &admin).await;
    assert_eq!(lines(&by_function.body).len(), found_lines.len());
    let wrong_function = app.get(&format!("/api/v1/admin/logs?request_id={request_id}&function=auth"), &admin).await;
    assert!(lines(&wrong_function.body).is_empty());

    // A range that ended before the request holds none of its lines.
    let before = app.get(&format!("/api/v1/admin/logs?request_id={request_id}&from=2020-01-01T00:00:00Z&to=2020-01-01T01:00:00Z"), &admin).await;
    assert_eq!(before.status, StatusCode::OK);
    assert!(lines(&before.body).is_empty());
}

#[tokio::test]
async fn bad_filters_are_named_and_the_permission_is_needed() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["super_admin"]).await;
    for (query, field) in [
        ("from=yesterday", "from"),
        ("to=2026-13-01", "to"),
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", "from"),
        ("level=loud", "level"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=many", "limit"),
        ("function=a%20b", "function"),
    ] {
        let response = app.get(&format!("/api/v1/admin/logs?{query}"), &admin).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{query}: {}", response.body);
        assert_eq!(response.headers["content-type"], "application/problem+json");
        assert!(
            response.error_fields().contains(&field.to_string()) || response.body["detail"].as_str().unwrap_or("").contains(field),
            "{query}: {}",
            response.body
        );
    }

    // Without system:read: refused, naming the permission.
    for role in ["user", "moderator"] {
        let (_, token) = app.user(&[role]).await;
        let response = app.send(request(Method::GET, "/api/v1/admin/logs", Some(&token), None)).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{role}");
        assert_eq!(response.body["missing_permission"], "system:read");
    }
    // Auditors hold system:read.
    let (_, auditor) = app.user(&["auditor"]).await;
    assert_eq!(app.get("/api/v1/admin/logs", &auditor).await.status, StatusCode::OK);
}
