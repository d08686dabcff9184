//! The integrations hub: the catalogue with each integration's status,
//! credentials sealed and shown as hints, connection tests against real
//! peers (a Radicale CalDAV server started here, and local receivers that
//! answer as Segment's tracking API and GA4's validation server do, and
//! check what their documentation requires), failures counted into the
//! health the catalogue, the admin health route and the alarm metric read.

use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, request, send_to};
use crate::radicale::radicale;

/// The integrations router with loopback targets allowed (the local
/// receivers), as `KEEL_WEBHOOKS_ALLOW_LOOPBACK=1` gives.
fn router(app: &TestApp) -> axum::Router {
    let mut state = app.app.integrations.clone();
    state.webhook_policy = integrations::ssrf::Policy { allow_loopback: true };
    integrations::router(state)
}

async fn call(app: &TestApp, method: Method, path: &str, token: &str, body: Option<Value>) -> crate::helpers::Response {
    send_to(router(app), request(method, path, Some(token), body)).await
}

async fn catalogue(app: &TestApp, token: &str) -> Vec<Value> {
    let response = call(app, Method::GET, "/api/v1/integrations/available", token, None).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response.body["integrations"].as_array().unwrap().clone()
}

fn named<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter().find(|i| i["name"] == name).unwrap_or_else(|| panic!("{name} in the catalogue"))
}

/// A receiver answering as Segment's `POST /v1/batch` does: 200 for a
/// batch of at most 500 KB, sent with the write key as the Basic user,
/// whose calls each have a type and a messageId; 401 for another key.
async fn segment_receiver(write_key: &'static str) -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Default::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/v1/batch",
        axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let log = log.clone();
            async move {
                use base64::Engine as _;
                let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:")));
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
                    return (StatusCode::UNAUTHORIZED, "invalid write key").into_response();
                }
                if body.len() > 500 * 1024 {
                    return (StatusCode::PAYLOAD_TOO_LARGE, "batch over 500 KB").into_response();
                }
                let Ok(batch) = serde_json::from_slice::<Value>(&body) else { return (StatusCode::BAD_REQUEST, "not JSON").into_response() };
                let calls = batch["batch"].as_array().cloned().unwrap_or_default();
                if calls.is_empty() || calls.iter().any(|c| c["type"].as_str().is_none() || c["messageId"].as_str().is_none()) {
                    return (StatusCode::BAD_REQUEST, "each call needs a type and a messageId").into_response();
                }
                log.lock().unwrap().push(batch);
                axum::Json(json!({"success": true})).into_response()
            }
        }),
    );
    (serve(app).await, seen)
}

/// A receiver answering as GA4's validation server
/// (`/debug/mp/collect`): always 200, with `validationMessages` naming
/// what is wrong (here: an unknown measurement id or secret).
async fn ga4_receiver() -> String {
    let app = axum::Router::new().route(
        "/debug/mp/collect",
        axum::routing::post(|query: axum::extract::Query<std::collections::HashMap<String, String>>, body: String| async move {
            let mut messages = Vec::new();
            if query.get("measurement_id").map(String::as_str) != Some("G-KEELTEST") || query.get("api_secret").map(String::as_str) != Some("s3cret-api") {
                messages
                    .push(json!({"fieldPath": "measurement_id", "description": "Unknown measurement id or API secret.", "validationCode": "VALUE_INVALID"}));
            }
            let body: Value = serde_json::from_str(&body).unwrap_or_default();
            if body["client_id"].as_str().is_none() || body["events"].as_array().is_none_or(|e| e.is_empty() || e.len() > 25) {
                messages.push(json!({"fieldPath": "events", "description": "client_id and 1 to 25 events are required.", "validationCode": "VALUE_REQUIRED"}));
            }
            axum::Json(json!({"validationMessages": messages}))
        }),
    );
    serve(app).await
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

use axum::response::IntoResponse;

#[tokio::test]
async fn the_catalogue_lists_every_integration_with_its_status_here() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["super_admin"]).await;
    let list = catalogue(&app, &token).await;
    assert!(list.len() >= 8, "{list:?}");
    for name in ["webhooks", "stripe", "segment", "mixpanel", "ga4", "caldav", "ics", "ses_marketing", "social_sharing"] {
        let entry = named(&list, name);
        assert!(entry["category"].is_string() && entry["needs"].is_array() && entry["built"].is_boolean(), "{entry}");
    }
    assert_eq!(named(&list, "webhooks")["status"], "not_configured", "no endpoint yet");
    assert_eq!(named(&list, "stripe")["status"], "connected", "the local stack has a signing secret");
    assert_eq!(named(&list, "segment")["status"], "not_configured");
    let needs: Vec<&str> = named(&list, "ga4")["needs"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(needs, ["measurement_id", "api_secret", "endpoint"]);

    // One endpoint makes webhooks connected.
    let created =
        call(&app, Method::POST, "/api/v1/integrations/webhooks", &token, Some(json!({"url": "https://hooks.example.com/k", "event_types": ["*"]}))).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(named(&catalogue(&app, &token).await, "webhooks")["status"], "connected");

    // Reading needs integrations:read; a plain user has none.
    let (_, plain) = app.user(&["user"]).await;
    assert_eq!(call(&app, Method::GET, "/api/v1/integrations/available", &plain, None).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn credentials_are_sealed_shown_as_hints_and_checked_field_by_field() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["super_admin"]).await;
    let put = |name: &str, values: Value| {
        let path = format!("/api/v1/integrations/{name}/config");
        let token = token.clone();
        let app = &app;
        async move { call(app, Method::PUT, &path, &token, Some(json!({ "values": values }))).await }
    };
    let missing = put("ga4", json!({"measurement_id": "G-KEELTEST"})).await;
    assert_eq!((missing.status, missing.error_fields()), (StatusCode::BAD_REQUEST, vec!["values.api_secret".to_string()]));
    let bad = put("ga4", json!({"measurement_id": "UA-1", "api_secret": "x", "colour": "red"})).await;
    let mut fields = bad.error_fields();
    fields.sort();
    assert_eq!(fields, ["values.colour", "values.measurement_id"]);
    assert_eq!(put("no-such-thing", json!({})).await.status, StatusCode::NOT_FOUND);
    // Listed, not built: nothing to configure.
    assert_eq!(put("ics", json!({})).await.error_fields(), ["name"]);

    let saved = put("ga4", json!({"measurement_id": "G-KEELTEST", "api_secret": "s3cret-api-value"})).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert_eq!(saved.body["settings"], json!({"measurement_id": "G-KEELTEST"}));
    assert_eq!(saved.body["secrets"], json!({"api_secret": "…alue"}));
    // At rest: no plaintext secret anywhere in the item; in the audit
    // entry, only the hint.
    let item = app.store().get_item("INTEGRATION#ga4", "CONFIG").await.unwrap().unwrap();
    assert!(!format!("{item:?}").contains("s3cret-api-value"));
    let audit = app.audit_for("integration", "ga4").await;
    assert_eq!(audit[0].action, "integration.configured");
    assert!(!serde_json::to_string(&audit[0]).unwrap().contains("s3cret-api-value"));
    let listed = catalogue(&app, &token).await;
    assert_eq!(named(&listed, "ga4")["status"], "connected");
    assert_eq!(named(&listed, "ga4")["config"]["secrets"]["api_secret"], "…alue");
}

/// Connection tests call the real peer: Radicale for CalDAV (PROPFIND with
/// the stored credentials), and receivers answering as Segment and GA4 do.
/// Three failures in a row make an integration failing: in the catalogue
/// and on the admin health route; a success mends it.
#[tokio::test]
async fn connection_tests_reach_the_peer_and_three_failures_make_it_failing() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["super_admin"]).await;
    let configure = |name: &str, values: Value| {
        let path = format!("/api/v1/integrations/{name}/config");
        let token = token.clone();
        let app = &app;
        async move {
            let r = call(app, Method::PUT, &path, &token, Some(json!({ "values": values }))).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
    };
    let test = |name: &str| {
        let path = format!("/api/v1/integrations/{name}/test");
        let token = token.clone();
        let app = &app;
        async move {
            let r = call(app, Method::POST, &path, &token, None).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            r.body
        }
    };

    // CalDAV against Radicale: the right password reads the calendar, a
    // wrong one is refused by the server.
    let calendar = radicale().await;
    configure("caldav", json!({"url": calendar.url, "username": "ada", "password": "calendar-pass"})).await;
    let passed = test("caldav").await;
    assert_eq!((passed["ok"].clone(), passed["http_status"].clone()), (json!(true), json!(207)), "{passed}");
    configure("caldav", json!({"url": calendar.url, "username": "ada", "password": "wrong"})).await;
    let refused = test("caldav").await;
    assert_eq!((refused["ok"].clone(), refused["http_status"].clone()), (json!(false), json!(401)), "{refused}");

    // Segment: the test call is a valid batch with the write key.
    let (segment, seen) = segment_receiver("wk_live_123456").await;
    configure("segment", json!({"write_key": "wk_live_123456", "endpoint": segment})).await;
    assert_eq!(test("segment").await["ok"], true);
    assert_eq!(seen.lock().unwrap()[0]["batch"][0]["event"], "Keel Connection Test");

    // GA4: a wrong secret is a 200 whose validation messages say so.
    let ga4 = ga4_receiver().await;
    configure("ga4", json!({"measurement_id": "G-KEELTEST", "api_secret": "wrong-secret", "endpoint": ga4})).await;
    for n in 1..=3 {
        let failed = test("ga4").await;
        assert_eq!(failed["ok"], false);
        assert!(failed["error"].as_str().unwrap().contains("Unknown measurement id"), "{failed}");
        assert_eq!(failed["health"]["consecutive_failures"], n);
    }
    assert_eq!(named(&catalogue(&app, &token).await, "ga4")["status"], "failing");
    let health = app.get("/api/v1/admin/system/health", &token).await;
    assert_eq!(health.body["status"], "degraded", "{}", health.body);
    let listed: Vec<&Value> = health.body["integrations"].as_array().unwrap().iter().filter(|i| i["name"] == "ga4").collect();
    assert_eq!(listed[0]["consecutive_failures"], 3);
    let outcomes: Vec<String> =
        app.audit_for("integration", "ga4").await.into_iter().filter(|e| e.action == "integration.tested").map(|e| format!("{:?}", e.outcome)).collect();
    assert_eq!(outcomes, ["Failure", "Failure", "Failure"]);

    configure("ga4", json!({"measurement_id": "G-KEELTEST", "api_secret": "s3cret-api", "endpoint": ga4})).await;
    assert_eq!(test("ga4").await["ok"], true);
    assert_eq!(named(&catalogue(&app, &token).await, "ga4")["status"], "connected");

    // A target inside the network is refused like a webhook's would be.
    let strict =
        send_to(integrations::router(app.app.integrations.clone()), request(Method::POST, "/api/v1/integrations/segment/test", Some(&token), None)).await;
    assert_eq!(strict.body["ok"], false);
    assert!(strict.body["error"].as_str().unwrap().starts_with("refused"), "{}", strict.body);
}
