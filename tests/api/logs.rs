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

/// The deployed source: the same lines as Lambda writes them to stdout (no
/// timestamp of their own) in the stack's function log groups, between the
/// runtime's START/END lines and EMF metric lines, read back through
/// DescribeLogGroups and FilterLogEvents (the emulator's).
#[tokio::test]
async fn the_cloudwatch_source_reads_the_stacks_log_groups() {
    use aws_sdk_cloudwatchlogs::types::InputLogEvent;
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["super_admin"]).await;
    let failed = app.get("/api/v1/admin/users/no-such-user", &admin).await;
    let request_id = failed.body["request_id"].as_str().unwrap().to_string();

    // This request's lines as the admin Lambda would print them.
    let path = shared::platform::telemetry::log_file().expect("the test log file");
    let written: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| l.contains(&request_id))
        .map(|l| {
            let mut line: serde_json::Map<String, Value> = serde_json::from_str(l).unwrap();
            line.remove("timestamp");
            Value::Object(line).to_string()
        })
        .collect();
    assert!(written.len() >= 2, "{written:?}");

    let logs = aws_sdk_cloudwatchlogs::Client::new(&app.sdk);
    let stack = &app.stack.name;
    let now = chrono::Utc::now().timestamp_millis();
    let put = |group: String, messages: Vec<String>| {
        let logs = logs.clone();
        async move {
            logs.create_log_group().log_group_name(&group).send().await.unwrap();
            logs.create_log_stream().log_group_name(&group).log_stream_name("2026/12/04/[$LATEST]0a1b").send().await.unwrap();
            let events = messages.into_iter().enumerate().map(|(i, m)| InputLogEvent::builder().timestamp(now - 1000 + i as i64).message(m).build().unwrap());
            logs.put_log_events()
                .log_group_name(&group)
                .log_stream_name("2026/12/04/[$LATEST]0a1b")
                .set_log_events(Some(events.collect()))
                .send()
                .await
                .unwrap();
        }
    };
    let mut admin_lines = vec!["START RequestId: 6f1c Version: $LATEST".to_string()];
    admin_lines.extend(written.iter().cloned());
    admin_lines.push(shared::platform::telemetry::emf_line(&[("Function", "keel-AdminFunction-AB12")], &[("Requests", 1.0, "Count")]));
    admin_lines.push("END RequestId: 6f1c".to_string());
    put(format!("/aws/lambda/{stack}-AdminFunction-AB12CD"), admin_lines).await;
    let other_request = r#"{"level":"WARN","fields":{"message":"slow provider","elapsed_ms":2500},"span":{"request_id":"auth-req-1","function":"keel-AuthFunction-XY","name":"request"}}"#;
    put(format!("/aws/lambda/{stack}-AuthFunction-XY12"), vec![other_request.to_string()]).await;
    // Another stack's group (the same request id in it) is not searched.
    put(format!("/aws/lambda/{stack}x-AdminFunction-ZZ"), written.clone()).await;

    let mut state = app.app.admin.clone();
    state.monitoring.logs = std::sync::Arc::new(admin::logs::LogSource::CloudWatch { client: logs.clone(), stack: stack.clone() });
    let router = admin::router(state);
    let get = |path: String| crate::helpers::send_to(router.clone(), request(Method::GET, &path, Some(&admin), None));

    let found = get(format!("/api/v1/admin/logs?request_id={request_id}")).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(found.body["source"], "cloudwatch");
    let found_lines = lines(&found.body);
    assert_eq!(found_lines.len(), written.len(), "{found_lines:?}");
    assert!(found_lines.iter().all(|l| l["function"] == "admin" && l["request_id"] == request_id.as_str()));
    let refused = found_lines.iter().find(|l| l["message"] == "request refused").expect("the refusal line");
    assert_eq!(refused["fields"]["status"], 404);

    let warn = get("/api/v1/admin/logs?level=warn".into()).await;
    let warn_lines = lines(&warn.body);
    assert_eq!(warn_lines.len(), 1, "{}", warn.body);
    assert_eq!(warn_lines[0]["function"], "auth");
    assert_eq!(warn_lines[0]["request_id"], "auth-req-1");
    let by_text = get("/api/v1/admin/logs?function=auth&q=SLOW%20provider".into()).await;
    assert_eq!(lines(&by_text.body).len(), 1);
    let all = get("/api/v1/admin/logs?function=admin".into()).await;
    assert_eq!(lines(&all.body).len(), written.len(), "START/END and the EMF line are not log lines");

    let unknown = get("/api/v1/admin/logs?function=billing".into()).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.error_fields(), ["function"]);
}
