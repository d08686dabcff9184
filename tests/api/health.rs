//! System health (every dependency checked, a broken one shows as down) and
//! metrics (request counts and latency percentiles from the EMF lines the
//! local stack captures), with their input validation.

use http::Method;

use crate::helpers::TestApp;

#[tokio::test]
async fn every_dependency_is_ok_and_a_deleted_queue_is_down() {
    let app = TestApp::spawn().await;
    let (_, auditor) = app.user(&["auditor"]).await;
    let r = app.get("/api/v1/admin/system/health", &auditor).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "ok", "{}", r.body);
    let names: Vec<&str> = r.body["dependencies"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["table", "bucket:exports", "bucket:audit", "queue:jobs", "queue:jobs_dlq", "queue:webhooks", "queue:webhooks_dlq", "key:data", "key:signing"]
    );
    for d in r.body["dependencies"].as_array().unwrap() {
        assert_eq!(d["status"], "ok", "{d}");
        assert!(d["latency_ms"].as_f64().unwrap() > 0.0, "{d}");
    }

    app.app.clients.sqs.delete_queue().queue_url(&app.stack.env["KEEL_WEBHOOKS_DLQ_URL"]).send().await.unwrap();
    let r = app.get("/api/v1/admin/system/health", &auditor).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "degraded", "{}", r.body);
    let broken = r.body["dependencies"].as_array().unwrap().iter().find(|d| d["name"] == "queue:webhooks_dlq").unwrap();
    assert_eq!(broken["status"], "down");
    assert!(broken["error"].as_str().unwrap().len() > 3, "{broken}");
    let others_ok = r.body["dependencies"].as_array().unwrap().iter().filter(|d| d["name"] != "queue:webhooks_dlq").all(|d| d["status"] == "ok");
    assert!(others_ok, "{}", r.body);
}

#[tokio::test]
async fn a_disabled_key_takes_the_system_down() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    app.app.clients.kms.disable_key().key_id(&app.stack.env["KEEL_DATA_KEY_ID"]).send().await.unwrap();
    let r = app.get("/api/v1/admin/system/health", &admin).await;
    assert_eq!(r.body["status"], "down", "{}", r.body);
    let key = r.body["dependencies"].as_array().unwrap().iter().find(|d| d["name"] == "key:data").unwrap();
    assert_eq!(key["status"], "down");
    assert_eq!(key["critical"], true);
}

#[tokio::test]
async fn metrics_count_requests_and_report_percentiles() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let from = shared::store::timestamp(chrono::Utc::now() - chrono::Duration::seconds(1));
    for _ in 0..5 {
        assert_eq!(app.get("/api/v1/admin/users?limit=2", &admin).await.status, 200);
    }
    assert_eq!(app.login("nobody@example.com", "wrong password here").await.status, 401);
    let to = shared::store::timestamp(chrono::Utc::now() + chrono::Duration::seconds(1));
    let r = app.get(&format!("/api/v1/admin/system/metrics?from={from}&to={to}"), &admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["source"], "local");
    let function = |name: &str| {
        r.body["functions"].as_array().unwrap().iter().find(|f| f["function"] == name).cloned().unwrap_or_else(|| panic!("no {name} in {}", r.body))
    };
    let admin_fn = function("admin");
    // Other tests in this process serve requests too: at least ours.
    assert!(admin_fn["requests"].as_u64().unwrap() >= 5, "{admin_fn}");
    let latency = &admin_fn["latency_ms"];
    let (p50, p95, p99) = (latency["p50"].as_f64().unwrap(), latency["p95"].as_f64().unwrap(), latency["p99"].as_f64().unwrap());
    assert!(0.0 < p50 && p50 <= p95 && p95 <= p99, "{latency}");
    let rate = admin_fn["error_rate"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&rate));
    assert!(function("auth")["requests"].as_u64().unwrap() >= 1);
    let queues: Vec<&str> = r.body["queues"].as_array().unwrap().iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(queues, ["jobs", "jobs_dlq", "webhooks", "webhooks_dlq"]);

    // A range before any request has none.
    let r = app.get("/api/v1/admin/system/metrics?from=2001-01-01T00:00:00Z&to=2001-01-02T00:00:00Z", &admin).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["functions"], serde_json::json!([]));
}

#[tokio::test]
async fn metrics_ranges_are_validated() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    for (query, field) in [
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", "from"),
        ("window=5", "window"),
    ] {
        let r = app.call(Method::GET, &format!("/api/v1/admin/system/metrics?{query}"), Some(&admin), None).await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert_eq!(r.error_fields(), vec![field.to_string()], "{query}: {}", r.body);
    }
}
