//! Analytics connectors: Keel's domain events forwarded to Segment,
//! Mixpanel and GA4 by the scheduled run, against local receivers that
//! answer as each service documents and check its limits (batch sizes,
//! required fields, dedup ids), with an injectable clock. A run killed
//! while a batch is in flight loses nothing and repeats only that batch,
//! with the same dedup ids.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use http::{Method, StatusCode};
use integrations::connectors::{Connector, Forwarder};
use serde_json::{Value, json};
use shared::audit::{Actor, AuditEntry};

use crate::helpers::{TestApp, request, send_to};

/// A clock the test moves.
#[derive(Clone)]
struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl integrations::delivery::Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap() = at;
    }
}

/// What a receiver saw: each accepted request's dedup ids, in order, and
/// the answers it is told to give next.
#[derive(Default)]
struct Seen {
    requests: Vec<Vec<String>>,
    bodies: Vec<Value>,
    /// Statuses (and Retry-After) to answer with before accepting.
    refuse: Vec<(u16, Option<&'static str>)>,
    /// Accept the request with this index, then never answer (the
    /// forwarder is killed while it waits).
    hang_on: Option<usize>,
    hung: Option<tokio::sync::oneshot::Sender<()>>,
}

type Log = Arc<Mutex<Seen>>;

/// Check a request as the service would; Err: its 4xx answer.
type Check = fn(&http::HeaderMap, &HashMap<String, String>, &[u8]) -> Result<(Vec<String>, Value), (u16, String)>;

fn segment_check(headers: &http::HeaderMap, _: &HashMap<String, String>, body: &[u8]) -> Result<(Vec<String>, Value), (u16, String)> {
    use base64::Engine as _;
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("seg-write-key:"));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return Err((401, "invalid write key".into()));
    }
    if body.len() > 500 * 1024 {
        return Err((400, format!("batch of {} bytes is over 500 KB", body.len())));
    }
    let batch: Value = serde_json::from_slice(body).map_err(|_| (400, "not JSON".to_string()))?;
    let calls = batch["batch"].as_array().cloned().unwrap_or_default();
    let mut ids = Vec::new();
    for call in &calls {
        if serde_json::to_vec(call).unwrap().len() > 32 * 1024 {
            return Err((400, "a call over 32 KB".into()));
        }
        if call["type"] != "track" || call["event"].as_str().is_none() || call["userId"].as_str().is_none() || call["timestamp"].as_str().is_none() {
            return Err((400, format!("a track call needs event, userId, timestamp: {call}")));
        }
        ids.push(call["messageId"].as_str().ok_or((400, "messageId missing".to_string()))?.to_string());
    }
    if ids.is_empty() {
        return Err((400, "empty batch".into()));
    }
    Ok((ids, batch))
}

fn mixpanel_check(headers: &http::HeaderMap, query: &HashMap<String, String>, body: &[u8]) -> Result<(Vec<String>, Value), (u16, String)> {
    use base64::Engine as _;
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("mp-secret:"));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) || query.get("project_id").map(String::as_str) != Some("4242") {
        return Err((401, "invalid credentials or project".into()));
    }
    if query.get("strict").map(String::as_str) != Some("1") {
        return Err((400, "strict=1 expected".into()));
    }
    if body.len() > 10 * 1024 * 1024 {
        return Err((413, "over 10 MB".into()));
    }
    let events: Value = serde_json::from_slice(body).map_err(|_| (400, "not JSON".to_string()))?;
    let list = events.as_array().cloned().unwrap_or_default();
    if list.is_empty() || list.len() > 2000 {
        return Err((400, format!("{} events: 1 to 2000 per call", list.len())));
    }
    let mut ids = Vec::new();
    for event in &list {
        let p = &event["properties"];
        let insert_id = p["$insert_id"].as_str().unwrap_or("");
        let valid_id = !insert_id.is_empty() && insert_id.len() <= 36 && insert_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if event["event"].as_str().is_none() || p["time"].as_i64().is_none() || p["distinct_id"].as_str().is_none() || !valid_id {
            return Err((400, format!("event, time, distinct_id and a valid $insert_id are required: {event}")));
        }
        ids.push(insert_id.to_string());
    }
    Ok((ids, events))
}

fn ga4_check(_: &http::HeaderMap, query: &HashMap<String, String>, body: &[u8]) -> Result<(Vec<String>, Value), (u16, String)> {
    if query.get("measurement_id").map(String::as_str) != Some("G-KEELTEST") || query.get("api_secret").map(String::as_str) != Some("ga-secret") {
        return Err((403, "unknown measurement id or secret".into()));
    }
    if body.len() > 130 * 1024 {
        return Err((413, "over 130 KB".into()));
    }
    let request: Value = serde_json::from_slice(body).map_err(|_| (400, "not JSON".to_string()))?;
    let events = request["events"].as_array().cloned().unwrap_or_default();
    if request["client_id"].as_str().is_none() || events.is_empty() || events.len() > 25 {
        return Err((400, "client_id and 1 to 25 events".into()));
    }
    let mut ids = Vec::new();
    for event in &events {
        let name = event["name"].as_str().unwrap_or("");
        let valid_name = !name.is_empty()
            && name.len() <= 40
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let params = event["params"].as_object().cloned().unwrap_or_default();
        if !valid_name || params.len() > 25 || event["timestamp_micros"].as_i64().is_none() {
            return Err((400, format!("bad event: {event}")));
        }
        ids.push(params["keel_event_id"].as_str().unwrap_or("").to_string());
    }
    Ok((ids, request))
}

async fn receiver(path: &'static str, check: Check) -> (String, Log) {
    let log: Log = Default::default();
    let seen = log.clone();
    let app = axum::Router::new().route(
        path,
        axum::routing::post(move |headers: http::HeaderMap, query: axum::extract::Query<HashMap<String, String>>, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let (ids, value) = match check(&headers, &query, &body) {
                    Ok(found) => found,
                    Err((status, message)) => return (StatusCode::from_u16(status).unwrap(), message).into_response(),
                };
                let hang = {
                    let mut seen = seen.lock().unwrap();
                    if !seen.refuse.is_empty() {
                        let (status, retry_after) = seen.refuse.remove(0);
                        let mut response = (StatusCode::from_u16(status).unwrap(), "try later").into_response();
                        if let Some(after) = retry_after {
                            response.headers_mut().insert("retry-after", after.parse().unwrap());
                        }
                        return response;
                    }
                    seen.requests.push(ids);
                    seen.bodies.push(value);
                    if seen.hang_on == Some(seen.requests.len() - 1) { seen.hung.take() } else { None }
                };
                if let Some(hung) = hang {
                    let _ = hung.send(());
                    std::future::pending::<()>().await;
                }
                (StatusCode::OK, axum::Json(json!({"success": true, "code": 200, "status": "OK"}))).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, log)
}

async fn configure(app: &TestApp, token: &str, name: &str, values: Value) {
    let router = integrations::router(app.app.integrations.clone());
    let response = send_to(router, request(Method::PUT, &format!("/api/v1/integrations/{name}/config"), Some(token), Some(json!({"values": values})))).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
}

/// `count` sign-ins of `user` from `at` on (a microsecond apart), written
/// straight to the audit log as the auth function writes them (sealed,
/// pseudonymous).
async fn sign_ins(app: &TestApp, user: &shared::identity::users::User, count: usize, at: DateTime<Utc>) -> Vec<String> {
    use futures::StreamExt as _;
    let actor = Actor { id: user.id.clone(), kind: "user".into(), ..Actor::default() };
    let entries: Vec<AuditEntry> =
        (0..count).map(|i| AuditEntry::at(at + chrono::Duration::microseconds(i as i64), &actor, "auth.login", "user", &user.id)).collect();
    let items: Vec<_> = futures::stream::iter(entries.iter().map(|e| app.store().seal_audit(e))).buffered(16).collect().await;
    app.store().store().batch_put(items.into_iter().map(Result::unwrap).collect()).await.unwrap();
    entries.into_iter().map(|e| e.id).collect()
}

fn forwarder(app: &TestApp, clock: &TestClock) -> Forwarder {
    let mut state = app.app.integrations.clone();
    state.webhook_policy = integrations::ssrf::Policy { allow_loopback: true };
    Forwarder { state, clock: Arc::new(clock.clone()) }
}

fn all_ids(log: &Log) -> Vec<String> {
    log.lock().unwrap().requests.iter().flatten().cloned().collect()
}

#[tokio::test]
async fn domain_events_reach_segment_mixpanel_and_ga4_within_their_limits_and_a_killed_run_loses_and_doubles_nothing() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["super_admin"]).await;
    let (segment_url, segment) = receiver("/v1/batch", segment_check).await;
    let (mixpanel_url, mixpanel) = receiver("/import", mixpanel_check).await;
    let (ga4_url, ga4) = receiver("/mp/collect", ga4_check).await;
    configure(&app, &admin, "segment", json!({"write_key": "seg-write-key", "endpoint": segment_url})).await;
    configure(&app, &admin, "mixpanel", json!({"project_id": "4242", "api_secret": "mp-secret", "endpoint": mixpanel_url})).await;
    configure(&app, &admin, "ga4", json!({"measurement_id": "G-KEELTEST", "api_secret": "ga-secret", "endpoint": ga4_url})).await;

    // Domain events after the connectors were configured: a sign-up (its
    // audit entry, as the admin API writes it), 2,600 sign-ins (over
    // Segment's 500 KB and Mixpanel's 2,000 per call), an order, and an
    // audit entry that is not a domain event.
    let (buyer, _) = app.user(&["user"]).await;
    let logins = sign_ins(&app, &buyer, 2600, Utc::now()).await;
    let order_id = uuid::Uuid::new_v4().to_string();
    let order = json!({"pk": format!("ORDER#{order_id}"), "sk": "META", "id": order_id, "user_id": buyer.id, "amount_cents": 1999,
                       "currency": "EUR", "plan": "pro", "billing": "monthly", "created_at": shared::store::timestamp(Utc::now())});
    let order_item: shared::store::Item = serde_dynamo::to_item(order).unwrap();
    let order_audit = AuditEntry::new(&Actor::system("stripe"), "order.created", "order", &order_id).about(&buyer.id);
    app.store().commit(vec![shared::store::Write::put(app.store().table(), order_item).unwrap()], &order_audit).await.unwrap();
    app.store().record(&AuditEntry::new(&Actor::system("tests"), "role.create", "role", "not-an-event")).await.unwrap();
    let sign_up = app.audit_for("user", &buyer.id).await.into_iter().find(|e| e.action == "user.create").unwrap().id;
    let expected: HashSet<String> = logins.iter().cloned().chain([order_audit.id.clone(), sign_up]).collect();

    // Not settled yet: nothing is sent.
    let clock = TestClock(Arc::new(Mutex::new(Utc::now())));
    let forwarder = forwarder(&app, &clock);
    let report = forwarder.forward(Connector::Segment).await.unwrap();
    assert_eq!(report.events, 0, "{report:?}");
    assert!(segment.lock().unwrap().requests.is_empty());

    // Segment: the run is killed while its first batch is in flight (the
    // receiver has it and never answers).
    let (hung, hung_seen) = tokio::sync::oneshot::channel();
    {
        let mut seen = segment.lock().unwrap();
        seen.hang_on = Some(0);
        seen.hung = Some(hung);
    }
    clock.set(Utc::now() + chrono::Duration::minutes(2));
    let run = tokio::spawn({
        let forwarder = forwarder.clone();
        async move { forwarder.forward(Connector::Segment).await }
    });
    hung_seen.await.unwrap();
    run.abort();
    let _ = run.await;
    let first_batch = segment.lock().unwrap().requests[0].clone();
    // While the killed run's lease holds, another run waits.
    assert_eq!(forwarder.forward(Connector::Segment).await.unwrap().status, "busy");
    // Later, a run resumes: the batch in flight again, with the same ids, then the rest.
    clock.set(Utc::now() + chrono::Duration::minutes(10));
    let report = forwarder.forward(Connector::Segment).await.unwrap();
    assert_eq!(report.status, "forwarded", "{report:?}");
    let requests = segment.lock().unwrap().requests.clone();
    assert!(requests.len() >= 3, "2,600 sign-ins need two 500 KB batches: {}", requests.len());
    assert_eq!(requests[1], first_batch, "the batch in flight is sent again with the same messageIds");
    let ids = all_ids(&segment);
    let unique: HashSet<_> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len() - first_batch.len(), "only the batch in flight repeats");
    assert_eq!(unique, expected, "every domain event reaches Segment, and nothing else");
    // The order carries its revenue; the pseudonym, not the user id, names the buyer.
    let bodies = segment.lock().unwrap().bodies.clone();
    let calls: Vec<Value> = bodies.iter().flat_map(|b| b["batch"].as_array().unwrap().clone()).collect();
    let order_call = calls.iter().find(|c| c["messageId"] == order_audit.id.as_str()).expect("the order is forwarded");
    assert_eq!(order_call["event"], "Order Completed");
    assert_eq!(order_call["properties"]["revenue"], 19.99);
    assert_eq!(order_call["properties"]["currency"], "EUR");
    let login_call = calls.iter().find(|c| c["event"] == "Signed In").unwrap();
    assert_eq!(order_call["userId"], login_call["userId"]);
    assert_ne!(login_call["userId"], buyer.id.as_str());
    assert!(!calls.iter().any(|c| c.to_string().contains(buyer.email.as_str())), "no email leaves Keel");
    // Run again: nothing new, nothing re-sent.
    let before = ids.len();
    assert_eq!(forwarder.forward(Connector::Segment).await.unwrap().events, 0);
    assert_eq!(all_ids(&segment).len(), before);

    // Mixpanel: a 503 with Retry-After defers the connector; the run that
    // comes after it sends everything in calls of at most 2,000 events.
    mixpanel.lock().unwrap().refuse.push((503, Some("120")));
    let report = forwarder.forward(Connector::Mixpanel).await.unwrap();
    assert_eq!(report.status, "failed", "{report:?}");
    let waiting = forwarder.forward(Connector::Mixpanel).await.unwrap();
    assert_eq!(waiting.status, "waiting", "Retry-After is honoured: {waiting:?}");
    clock.set(Utc::now() + chrono::Duration::minutes(13));
    let report = forwarder.forward(Connector::Mixpanel).await.unwrap();
    assert_eq!(report.status, "forwarded", "{report:?}");
    let sizes: Vec<usize> = mixpanel.lock().unwrap().requests.iter().map(Vec::len).collect();
    assert_eq!(sizes.iter().sum::<usize>(), expected.len(), "{sizes:?}");
    assert!(sizes.iter().all(|s| *s <= 2000) && sizes.len() >= 2, "{sizes:?}");
    assert_eq!(all_ids(&mixpanel).into_iter().collect::<HashSet<_>>(), expected);

    // GA4: one person per request, 25 events at most; the purchase keeps its
    // order id as the transaction id.
    let report = forwarder.forward(Connector::Ga4).await.unwrap();
    assert_eq!(report.status, "forwarded", "{report:?}");
    let (requests, bodies) = {
        let seen = ga4.lock().unwrap();
        (seen.requests.clone(), seen.bodies.clone())
    };
    assert!(requests.iter().all(|r| r.len() <= 25));
    assert_eq!(requests.iter().flatten().cloned().collect::<HashSet<_>>(), expected);
    let purchase = bodies.iter().flat_map(|b| b["events"].as_array().unwrap().clone()).find(|e| e["name"] == "purchase").unwrap();
    assert_eq!(purchase["params"]["transaction_id"], order_id.as_str());
    assert_eq!(purchase["params"]["value"], 19.99);

    // The hub shows them connected, with the last success.
    let router = integrations::router(app.app.integrations.clone());
    let catalogue = send_to(router, request(Method::GET, "/api/v1/integrations/available", Some(&admin), None)).await;
    for name in ["segment", "mixpanel", "ga4"] {
        let entry = catalogue.body["integrations"].as_array().unwrap().iter().find(|i| i["name"] == name).unwrap().clone();
        assert_eq!(entry["status"], "connected", "{entry}");
        assert!(entry["last_success_at"].is_string(), "{entry}");
    }
}

#[tokio::test]
async fn a_refused_batch_is_kept_as_a_dead_letter_audited_and_the_connector_goes_on() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["super_admin"]).await;
    let (segment_url, segment) = receiver("/v1/batch", segment_check).await;
    configure(&app, &admin, "segment", json!({"write_key": "seg-write-key", "endpoint": segment_url})).await;
    let (user, _) = app.user(&["user"]).await;
    let first = sign_ins(&app, &user, 3, Utc::now()).await;
    segment.lock().unwrap().refuse.push((400, None));
    let clock = TestClock(Arc::new(Mutex::new(Utc::now() + chrono::Duration::minutes(2))));
    let forwarder = forwarder(&app, &clock);
    let report = forwarder.forward(Connector::Segment).await.unwrap();
    assert_eq!(report.dropped, 4, "the sign-up and three sign-ins: {report:?}");
    let audit = app.audit_for("integration", "segment").await;
    assert!(audit.iter().any(|e| e.action == "integration.events_dropped" && e.reason.as_deref().is_some_and(|r| r.contains("400"))), "{audit:?}");
    let dead = app
        .store()
        .store()
        .query_all(&shared::store::QuerySpec {
            key_condition: "pk = :pk AND begins_with(sk, :dead)",
            values: vec![(":pk", shared::store::s("INTEGRATION#segment")), (":dead", shared::store::s("DEADLETTER#"))],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let kept: HashSet<String> = dead[0]["event_ids"].as_ss().unwrap().iter().cloned().collect();
    assert!(first.iter().all(|id| kept.contains(id)));
    // Later events go through (after the settled instant the cursor reached).
    let later = sign_ins(&app, &user, 2, Utc::now() + chrono::Duration::seconds(90)).await;
    clock.set(Utc::now() + chrono::Duration::minutes(4));
    let report = forwarder.forward(Connector::Segment).await.unwrap();
    assert_eq!(report.events, 2, "{report:?}");
    assert_eq!(all_ids(&segment), later);
}
