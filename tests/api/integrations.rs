//! The integrations function: webhook endpoints (secrets shown once, sealed
//! at rest, rotation with overlap), their signatures checked by the
//! Standard Webhooks reference library (`standardwebhooks` from PyPI, in
//! the project's venv), the SSRF guard on saved URLs, and deliveries from
//! audit entries through the stream and the webhooks queue to a receiver
//! listening on loopback (retries on an injected clock, a worker killed
//! mid-attempt, 410, the DLQ, replays).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::response::IntoResponse;

use http::{Method, StatusCode};
use integrations::delivery::{Clock, ManualClock};
use keel_local::stream_reader::{Start, StreamReader};
use serde_json::{Value, json};

use crate::helpers::{TestApp, request, send_to};

/// Verify a delivery's headers and body with the `standardwebhooks`
/// package: prints `ok` or the library's error.
fn verified_by_standardwebhooks(secret: &str, msg_id: &str, timestamp: i64, signature: &str, body: &str) -> String {
    let script = r#"
import sys
from standardwebhooks.webhooks import Webhook
secret, msg_id, ts, sig, body = sys.argv[1:6]
try:
    Webhook(secret).verify(body, {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": sig})
    print("ok")
except Exception as e:
    print(type(e).__name__, e)
"#;
    let python = keel_local::repo_root().join(".keel/venv/bin/python");
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .args([secret, msg_id, &timestamp.to_string(), signature, body])
        .output()
        .expect("the project's Python (make venv)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn create(app: &TestApp, token: &str, body: Value) -> crate::helpers::Response {
    app.call(Method::POST, "/api/v1/integrations/webhooks", Some(token), Some(body)).await
}

/// The signature header the delivery worker would send for `body` now.
async fn signature_now(app: &TestApp, id: &str, msg_id: &str, body: &str) -> (i64, String) {
    let now = chrono::Utc::now();
    let (_, keys) = integrations::webhooks::with_signing_keys(&app.app.integrations, id, now).await.unwrap();
    (now.timestamp(), integrations::signing::signature_header(&keys, msg_id, now.timestamp(), body.as_bytes()))
}

#[tokio::test]
async fn secret_is_shown_once_sealed_at_rest_and_signs_what_standardwebhooks_verifies() {
    let app = TestApp::spawn().await;
    let (admin, token) = app.user(&["super_admin"]).await;
    let created = create(&app, &token, json!({"url": "https://hooks.example.com/keel", "event_types": ["user.*", "chart.moderated"]})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.headers["cache-control"], "no-store");
    let secret = created.body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(created.body["retry_schedule_seconds"], json!([0, 5, 300, 1800, 7200, 18000, 36000, 36000]));
    assert_eq!(created.body["owner_id"], admin.id.as_str());

    // Never shown again: not by a read, not by the list.
    let read = app.get(&format!("/api/v1/integrations/webhooks/{id}"), &token).await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(read.body.get("secret").is_none());
    let list = app.get("/api/v1/integrations/webhooks", &token).await;
    assert_eq!(list.body["webhooks"].as_array().unwrap().len(), 1);
    assert!(!list.body.to_string().contains(&secret));
    // Sealed at rest: the stored item holds no copy of it in the clear.
    let item = app.store().get_item(&format!("WEBHOOK#{id}"), "META").await.unwrap().unwrap();
    assert!(item.contains_key("secret"));
    assert!(!format!("{item:?}").contains(secret.trim_start_matches("whsec_")));
    // Audited with the change, without the secret.
    let audit = app.audit_for("webhook", &id).await;
    assert_eq!(audit.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["webhook.created"]);

    // What the worker signs with, opened from the sealed copy, verifies
    // with the secret shown, by the reference implementation.
    let body = r#"{"type":"user.created","timestamp":"2026-12-03T12:00:00Z","data":{"id":"u1"}}"#;
    let (ts, signature) = signature_now(&app, &id, "msg_2aXkP0", body).await;
    assert_eq!(signature.split(' ').count(), 1);
    assert_eq!(verified_by_standardwebhooks(&secret, "msg_2aXkP0", ts, &signature, body), "ok");
    // And a changed body does not.
    assert_ne!(verified_by_standardwebhooks(&secret, "msg_2aXkP0", ts, &signature, &body.replace("u1", "u2")), "ok");
}

#[tokio::test]
async fn rotation_signs_with_both_secrets_while_they_overlap() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["super_admin"]).await;
    let created = create(&app, &token, json!({"url": "https://hooks.example.com/keel", "event_types": ["*"]})).await;
    let id = created.body["id"].as_str().unwrap().to_string();
    let old = created.body["secret"].as_str().unwrap().to_string();

    let rotated = app.call(Method::POST, &format!("/api/v1/integrations/webhooks/{id}/rotate-secret"), Some(&token), None).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new = rotated.body["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    let until = chrono::DateTime::parse_from_rfc3339(rotated.body["previous_secret_expires_at"].as_str().unwrap()).unwrap();
    assert!(until > chrono::Utc::now() + chrono::Duration::hours(23));

    let body = r#"{"type":"chart.moderated","data":{}}"#;
    let (ts, signature) = signature_now(&app, &id, "msg_rot", body).await;
    assert_eq!(signature.split(' ').count(), 2, "{signature}");
    // A receiver still on the old secret and one already on the new both accept.
    assert_eq!(verified_by_standardwebhooks(&old, "msg_rot", ts, &signature, body), "ok");
    assert_eq!(verified_by_standardwebhooks(&new, "msg_rot", ts, &signature, body), "ok");
    // After the overlap only the new secret signs.
    let (_, keys) = integrations::webhooks::with_signing_keys(&app.app.integrations, &id, chrono::Utc::now() + chrono::Duration::hours(25)).await.unwrap();
    let later = integrations::signing::signature_header(&keys, "msg_late", ts, body.as_bytes());
    assert_eq!(later.split(' ').count(), 1);
    assert_eq!(verified_by_standardwebhooks(&new, "msg_late", ts, &later, body), "ok");
    assert_ne!(verified_by_standardwebhooks(&old, "msg_late", ts, &later, body), "ok");

    let actions: Vec<String> = app.audit_for("webhook", &id).await.into_iter().map(|e| e.action).collect();
    assert!(actions.contains(&"webhook.secret_rotated".to_string()), "{actions:?}");
}

#[tokio::test]
async fn bad_endpoints_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["super_admin"]).await;
    for (body, field) in [
        (json!({"url": "https://169.254.169.254/latest/meta-data/", "event_types": ["*"]}), "url"),
        (json!({"url": "https://0x7f.1/", "event_types": ["*"]}), "url"),
        (json!({"url": "http://hooks.example.com/", "event_types": ["*"]}), "url"),
        // Loopback is refused unless the stack allows it (it does not here).
        (json!({"url": "http://127.0.0.1:9000/", "event_types": ["*"]}), "url"),
        (json!({"url": "https://hooks.example.com/", "event_types": []}), "event_types"),
        (json!({"url": "https://hooks.example.com/", "event_types": ["user.*", "User.Created"]}), "event_types[1]"),
        (json!({"url": "https://hooks.example.com/", "event_types": ["*"], "retry_schedule_seconds": [0, 100000]}), "retry_schedule_seconds[1]"),
        (json!({"url": "https://hooks.example.com/", "event_types": ["*"], "retry_schedule_seconds": []}), "retry_schedule_seconds"),
    ] {
        let response = create(&app, &token, body.clone()).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}: {}", response.body);
        assert_eq!(response.error_fields(), [field], "{body}");
    }
    assert_eq!(app.get("/api/v1/integrations/webhooks", &token).await.body["webhooks"], json!([]));
}

#[tokio::test]
async fn loopback_receivers_only_with_the_flag_and_only_as_127_0_0_1() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["super_admin"]).await;
    let mut state = app.app.integrations.clone();
    state.webhook_policy = integrations::ssrf::Policy { allow_loopback: true };
    let allowed = integrations::router(state);
    let post = |url: &str| request(Method::POST, "/api/v1/integrations/webhooks", Some(&token), Some(json!({"url": url, "event_types": ["*"]})));
    assert_eq!(send_to(allowed.clone(), post("http://127.0.0.1:9000/hook")).await.status, StatusCode::CREATED);
    for url in ["http://localhost:9000/hook", "http://127.1:9000/hook", "http://[::1]:9000/hook", "http://127.0.0.2:9000/hook"] {
        let response = send_to(allowed.clone(), post(url)).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{url}");
        assert_eq!(response.error_fields(), ["url"], "{url}");
    }
}

#[tokio::test]
async fn updates_and_deletes_are_audited_and_version_checked() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["super_admin"]).await;
    let created = create(&app, &token, json!({"url": "https://hooks.example.com/a", "event_types": ["user.created"]})).await;
    let id = created.body["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/integrations/webhooks/{id}");

    let updated =
        app.call(Method::PUT, &path, Some(&token), Some(json!({"event_types": ["export.*"], "enabled": false, "retry_schedule_seconds": [0, 1]}))).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["event_types"], json!(["export.*"]));
    assert_eq!(updated.body["enabled"], false);
    assert_eq!(updated.body["disabled_reason"], "disabled by an administrator");
    assert_eq!(updated.body["version"], 2);
    // A bad field in an update is refused before anything changes.
    let refused = app.call(Method::PUT, &path, Some(&token), Some(json!({"url": "https://10.0.0.1/"}))).await;
    assert_eq!(refused.error_fields(), ["url"]);
    let reenabled = app.call(Method::PUT, &path, Some(&token), Some(json!({"enabled": true}))).await;
    assert_eq!(reenabled.body["enabled"], true);
    assert!(reenabled.body.get("disabled_reason").is_none());
    // The secret survives an update: the worker can still sign.
    integrations::webhooks::with_signing_keys(&app.app.integrations, &id, chrono::Utc::now()).await.unwrap();

    assert_eq!(app.call(Method::DELETE, &path, Some(&token), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, &token).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.call(Method::DELETE, &path, Some(&token), None).await.status, StatusCode::NOT_FOUND);
    let mut actions: Vec<String> = app.audit_for("webhook", &id).await.into_iter().map(|e| e.action).collect();
    actions.sort();
    assert_eq!(actions, ["webhook.created", "webhook.deleted", "webhook.updated", "webhook.updated"]);
}

#[tokio::test]
async fn reading_needs_integrations_read_and_changing_integrations_write() {
    let app = TestApp::spawn().await;
    let reader = app.role(&["integrations:read"]).await;
    let (_, token) = app.user(&[reader.name.as_str()]).await;
    assert_eq!(app.get("/api/v1/integrations/webhooks", &token).await.status, StatusCode::OK);
    let refused = create(&app, &token, json!({"url": "https://hooks.example.com/", "event_types": ["*"]})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["missing_permission"], "integrations:write");
}

/// What the test receiver answers, in order (then 200 for ever).
#[derive(Clone)]
enum Reply {
    Status(u16),
    RetryAfter(u16, &'static str),
    /// Hold the request open (the worker is killed meanwhile).
    Hang,
}

#[derive(Debug, Clone)]
struct Seen {
    id: String,
    timestamp: i64,
    signature: String,
    body: String,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    script: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    /// An HTTP receiver on 127.0.0.1 that records every request.
    async fn start(script: Vec<Reply>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            url: format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port()),
            script: Arc::new(Mutex::new(script.into())),
            seen: Default::default(),
        };
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: http::HeaderMap, body: String| {
                let state = state.clone();
                async move {
                    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                    state.seen.lock().unwrap().push(Seen {
                        id: header("webhook-id"),
                        timestamp: header("webhook-timestamp").parse().unwrap_or_default(),
                        signature: header("webhook-signature"),
                        body,
                    });
                    let reply = state.script.lock().unwrap().pop_front().unwrap_or(Reply::Status(200));
                    let status = |code: u16| StatusCode::from_u16(code).unwrap();
                    match reply {
                        Reply::Status(code) => (status(code), "received").into_response(),
                        Reply::RetryAfter(code, after) => (status(code), [("retry-after", after)], "slow down").into_response(),
                        Reply::Hang => {
                            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                            StatusCode::NO_CONTENT.into_response()
                        }
                    }
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        receiver
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The stack's delivery pipeline with loopback receivers allowed and the
/// given clock: the dispatcher on its own stream reader, the worker on the
/// webhooks queue, the sweeper.
struct Pipeline {
    reader: StreamReader,
    dispatcher: integrations::dispatch::Dispatcher,
    worker: integrations::delivery::Worker,
    router: axum::Router,
}

impl Pipeline {
    async fn new(app: &TestApp, clock: Arc<dyn Clock>) -> Pipeline {
        let mut state = app.app.integrations.clone();
        state.webhook_policy = integrations::ssrf::Policy { allow_loopback: true };
        let mut worker = app.app.webhooks.clone();
        worker.state = state.clone();
        worker.clock = clock.clone();
        let mut dispatcher = app.app.webhook_dispatcher.clone();
        dispatcher.clock = clock;
        let arn = &app.stack.resources["Table"].attributes["StreamArn"];
        let mut reader = StreamReader::open(aws_sdk_dynamodbstreams::Client::new(&app.sdk), arn, Start::TrimHorizon).await.unwrap();
        // What happened before the test's endpoints existed is not theirs.
        reader.drain(&dispatcher).await.unwrap();
        Pipeline { reader, dispatcher, worker, router: integrations::router(state) }
    }

    async fn endpoint(&self, token: &str, body: Value) -> Value {
        let response = send_to(self.router.clone(), request(Method::POST, "/api/v1/integrations/webhooks", Some(token), Some(body))).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        response.body
    }

    /// Stream to deliveries to messages, then the queue until it is empty.
    async fn run(&mut self, app: &TestApp) -> usize {
        let (url, arn) = (&app.stack.env["KEEL_WEBHOOKS_QUEUE_URL"], &app.stack.resources["WebhooksQueue"].attributes["Arn"]);
        let mut handled = 0;
        loop {
            let dispatched = self.reader.drain(&self.dispatcher).await.unwrap();
            let n = keel_local::poller::poll_once(&app.app.clients.sqs, url, arn, &self.worker, 0).await.unwrap();
            handled += n;
            if n == 0 && dispatched == 0 {
                return handled;
            }
        }
    }

    async fn sweep(&self, app: &TestApp) -> usize {
        integrations::dispatch::sweep_due(app.store(), &app.app.clients.sqs, &app.stack.env["KEEL_WEBHOOKS_QUEUE_URL"], self.worker.clock.now(), 100)
            .await
            .unwrap()
    }
}

async fn deliveries(app: &TestApp, token: &str, endpoint_id: &str) -> Vec<Value> {
    let response = app.get(&format!("/api/v1/integrations/webhooks/{endpoint_id}/deliveries"), token).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response.body["deliveries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn audit_entries_are_delivered_signed_logged_and_replayed() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["super_admin"]).await;
    let mut pipeline = Pipeline::new(&app, Arc::new(integrations::delivery::SystemClock)).await;
    let receiver = Receiver::start(vec![]).await;
    let endpoint = pipeline.endpoint(&token, json!({"url": receiver.url, "event_types": ["user.*"]})).await;
    let (secret, endpoint_id) = (endpoint["secret"].as_str().unwrap(), endpoint["id"].as_str().unwrap());

    let (user, _) = app.user(&["user"]).await;
    pipeline.run(&app).await;
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1, "only user.* actions: {seen:?}");
    let body: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body["type"], "user.create");
    assert_eq!(body["data"]["target_type"], "user");
    // Checked by the reference implementation, as a receiver would.
    assert_eq!(verified_by_standardwebhooks(secret, &seen[0].id, seen[0].timestamp, &seen[0].signature, &seen[0].body), "ok");
    assert!(!seen[0].body.contains(user.email.as_str()), "no person in the clear");

    let log = deliveries(&app, &token, endpoint_id).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"], "succeeded");
    assert_eq!(log[0]["msg_id"], seen[0].id.as_str());
    assert_eq!(log[0]["attempts"][0]["status"], 200);
    assert_eq!(log[0]["attempts"][0]["response"], "received");
    assert!(log[0]["attempts"][0]["latency_ms"].is_u64());

    // A replay is the same message again: same webhook-id, new delivery.
    let delivery_id = log[0]["id"].as_str().unwrap();
    let replayed = app.call(Method::POST, &format!("/api/v1/integrations/webhooks/deliveries/{delivery_id}/replay"), Some(&token), None).await;
    assert_eq!(replayed.status, StatusCode::ACCEPTED, "{}", replayed.body);
    pipeline.run(&app).await;
    let seen = receiver.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].id, seen[0].id);
    assert_eq!(seen[1].body, seen[0].body);
    let log = deliveries(&app, &token, endpoint_id).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["replay_of"], delivery_id);
    let actions: Vec<String> = app.audit_for("webhook", endpoint_id).await.into_iter().map(|e| e.action).collect();
    assert!(actions.contains(&"webhook.delivery_replayed".to_string()), "{actions:?}");
}

#[tokio::test]
async fn a_receiver_failing_twice_sees_three_attempts_at_the_schedules_spacing() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["super_admin"]).await;
    let start = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp(), 0).unwrap();
    let clock = ManualClock::at(start);
    let mut pipeline = Pipeline::new(&app, Arc::new(clock.clone())).await;
    let receiver = Receiver::start(vec![Reply::Status(500), Reply::Status(503)]).await;
    let endpoint = pipeline.endpoint(&token, json!({"url": receiver.url, "event_types": ["user.create"]})).await;
    app.user(&["user"]).await;

    pipeline.run(&app).await;
    assert_eq!(receiver.seen().len(), 1);
    // Nothing is due before the schedule's 5 s have passed.
    clock.set(start + chrono::Duration::seconds(4));
    assert_eq!(pipeline.sweep(&app).await, 0);
    clock.set(start + chrono::Duration::seconds(5));
    assert_eq!(pipeline.sweep(&app).await, 1);
    pipeline.run(&app).await;
    assert_eq!(receiver.seen().len(), 2);
    clock.set(start + chrono::Duration::seconds(5 + 299));
    assert_eq!(pipeline.sweep(&app).await, 0);
    clock.set(start + chrono::Duration::seconds(5 + 300));
    assert_eq!(pipeline.sweep(&app).await, 1);
    pipeline.run(&app).await;

    let seen = receiver.seen();
    assert_eq!(seen.len(), 3);
    let spacing: Vec<i64> = seen.windows(2).map(|w| w[1].timestamp - w[0].timestamp).collect();
    assert_eq!(spacing, [5, 300]);
    assert!(seen.iter().all(|s| s.id == seen[0].id), "one message, one webhook-id");
    let log = deliveries(&app, &token, endpoint["id"].as_str().unwrap()).await;
    assert_eq!(log[0]["status"], "succeeded");
    let statuses: Vec<&Value> = log[0]["attempts"].as_array().unwrap().iter().map(|a| &a["status"]).collect();
    assert_eq!(statuses, [&json!(500), &json!(503), &json!(200)]);
    // Later sweeps find nothing left to send.
    clock.set(start + chrono::Duration::days(2));
    assert_eq!(pipeline.sweep(&app).await, 0);
}

#[tokio::test]
async fn a_worker_killed_mid_delivery_loses_nothing() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["super_admin"]).await;
    let mut pipeline = Pipeline::new(&app, Arc::new(integrations::delivery::SystemClock)).await;
    let receiver = Receiver::start(vec![Reply::Hang]).await;
    let endpoint = pipeline.endpoint(&token, json!({"url": receiver.url, "event_types": ["user.create"]})).await;
    app.user(&["user"]).await;
    pipeline.reader.drain(&pipeline.dispatcher).await.unwrap();

    // Receive the message as Lambda would, and kill the worker while the
    // receiver holds the request open: the future is dropped mid-attempt.
    let (url, arn) = (&app.stack.env["KEEL_WEBHOOKS_QUEUE_URL"], &app.stack.resources["WebhooksQueue"].attributes["Arn"]);
    let received = app.app.clients.sqs.receive_message().queue_url(url).max_number_of_messages(1).send().await.unwrap();
    let message = received.messages().first().expect("the delivery's message").clone();
    let event: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(json!({"Records": [{
        "messageId": message.message_id(), "receiptHandle": message.receipt_handle(), "body": message.body(),
        "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1",
    }]}))
    .unwrap();
    let killed = tokio::time::timeout(std::time::Duration::from_secs(2), pipeline.worker.handle(event)).await;
    assert!(killed.is_err(), "the attempt was still running");
    assert_eq!(receiver.seen().len(), 1);
    let log = deliveries(&app, &token, endpoint["id"].as_str().unwrap()).await;
    assert_eq!(log[0]["status"], "pending");
    assert_eq!(log[0]["claimed_by"], message.message_id().unwrap());
    assert_eq!(log[0]["attempts"], json!([]));

    // Its visibility timeout passes (made immediate here): SQS delivers the
    // same message again, and that delivery takes the attempt over.
    app.app
        .clients
        .sqs
        .change_message_visibility()
        .queue_url(url)
        .receipt_handle(message.receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    pipeline.run(&app).await;
    let seen = receiver.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].id, seen[0].id);
    let log = deliveries(&app, &token, endpoint["id"].as_str().unwrap()).await;
    assert_eq!(log[0]["status"], "succeeded");
    assert_eq!(log[0]["attempts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn gone_disables_the_endpoint_with_an_audit_entry() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["super_admin"]).await;
    let mut pipeline = Pipeline::new(&app, Arc::new(integrations::delivery::SystemClock)).await;
    let receiver = Receiver::start(vec![Reply::Status(410)]).await;
    let endpoint = pipeline.endpoint(&token, json!({"url": receiver.url, "event_types": ["user.create"]})).await;
    let id = endpoint["id"].as_str().unwrap();
    app.user(&["user"]).await;
    pipeline.run(&app).await;

    let read = app.get(&format!("/api/v1/integrations/webhooks/{id}"), &token).await;
    assert_eq!(read.body["enabled"], false);
    assert_eq!(read.body["disabled_reason"], "the receiver answered 410 Gone");
    assert_eq!(deliveries(&app, &token, id).await[0]["status"], "failed");
    let actions: Vec<String> = app.audit_for("webhook", id).await.into_iter().map(|e| e.action).collect();
    assert!(actions.contains(&"webhook.disabled".to_string()), "{actions:?}");
    // Nothing more is sent to it.
    app.user(&["user"]).await;
    pipeline.run(&app).await;
    assert_eq!(receiver.seen().len(), 1);
}

#[tokio::test]
async fn retry_after_is_honoured_and_the_last_failure_goes_to_the_dlq() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["super_admin"]).await;
    let start = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp(), 0).unwrap();
    let clock = ManualClock::at(start);
    let mut pipeline = Pipeline::new(&app, Arc::new(clock.clone())).await;
    let receiver = Receiver::start(vec![Reply::RetryAfter(503, "120"), Reply::Status(301)]).await;
    let endpoint = pipeline.endpoint(&token, json!({"url": receiver.url, "event_types": ["user.create"], "retry_schedule_seconds": [0, 60]})).await;
    app.user(&["user"]).await;
    pipeline.run(&app).await;

    // The schedule says 60 s; the receiver asked for 120.
    clock.set(start + chrono::Duration::seconds(60));
    assert_eq!(pipeline.sweep(&app).await, 0);
    clock.set(start + chrono::Duration::seconds(120));
    assert_eq!(pipeline.sweep(&app).await, 1);
    pipeline.run(&app).await;
    assert_eq!(receiver.seen().len(), 2);

    let log = deliveries(&app, &token, endpoint["id"].as_str().unwrap()).await;
    assert_eq!(log[0]["status"], "failed");
    // A redirect is a failure, not followed.
    assert_eq!(log[0]["attempts"][1]["status"], 301);
    assert_eq!(log[0]["attempts"][1]["error"], "redirects are not followed");
    let dlq = app.app.clients.sqs.receive_message().queue_url(&app.stack.env["KEEL_WEBHOOKS_DLQ_URL"]).send().await.unwrap();
    let bodies: Vec<Value> = dlq.messages().iter().map(|m| serde_json::from_str(m.body().unwrap()).unwrap()).collect();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["delivery_id"], log[0]["id"]);
}

/// An endpoint whose attempts all fail for five days is disabled, with an
/// audit entry and an email to its owner; a success in between starts the
/// five days again, and turning it back on does too.
#[tokio::test]
async fn an_endpoint_failing_for_five_days_is_disabled_and_its_owner_emailed() {
    let app = TestApp::spawn().await;
    let (owner, token) = app.user(&["super_admin"]).await;
    let start = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp(), 0).unwrap();
    let clock = ManualClock::at(start);
    let mut pipeline = Pipeline::new(&app, Arc::new(clock.clone())).await;
    let receiver = Receiver::start(vec![Reply::Status(500), Reply::Status(200), Reply::Status(500), Reply::Status(502), Reply::Status(503)]).await;
    // One attempt per event, so each event is one failure.
    let endpoint = pipeline.endpoint(&token, json!({"url": receiver.url, "event_types": ["user.create"], "retry_schedule_seconds": [0]})).await;
    let id = endpoint["id"].as_str().unwrap();
    let path = format!("/api/v1/integrations/webhooks/{id}");
    let event_at = |at: chrono::DateTime<chrono::Utc>| {
        clock.set(at);
        app.user(&["user"])
    };

    event_at(start).await; // fails: failing since `start`
    pipeline.run(&app).await;
    event_at(start + chrono::Duration::days(1)).await; // succeeds
    pipeline.run(&app).await;
    event_at(start + chrono::Duration::days(2)).await; // fails: failing since day 2
    pipeline.run(&app).await;
    event_at(start + chrono::Duration::days(6)).await; // fails, 4 days on: still on
    pipeline.run(&app).await;
    assert_eq!(app.get(&path, &token).await.body["enabled"], json!(true), "the success on day 1 started the days again");
    let health = integrations::delivery::health(app.store(), id).await.unwrap();
    assert_eq!((health.consecutive_failures, health.failing_since), (2, Some(shared::store::timestamp(start + chrono::Duration::days(2)))));

    event_at(start + chrono::Duration::days(7)).await; // fails, 5 days on: disabled
    pipeline.run(&app).await;
    let read = app.get(&path, &token).await;
    assert_eq!(read.body["enabled"], false);
    let reason = read.body["disabled_reason"].as_str().unwrap().to_string();
    assert!(reason.starts_with("every attempt failed for 5 days (since "), "{reason}");
    let disabled: Vec<_> = app.audit_for("webhook", id).await.into_iter().filter(|e| e.action == "webhook.disabled").collect();
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0].actor.id, "webhooks");

    app.run_jobs().await;
    let emails = app.sent_emails(&owner.email).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert!(emails[0].contains(&receiver.url) && emails[0].contains("every attempt failed for 5 days"), "{}", emails[0]);

    // Nothing more goes to it; turned back on, it starts afresh.
    event_at(start + chrono::Duration::days(8)).await;
    pipeline.run(&app).await;
    assert_eq!(receiver.seen().len(), 5);
    let on = app.call(Method::PUT, &path, Some(&token), Some(json!({"enabled": true}))).await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    assert_eq!(integrations::delivery::health(app.store(), id).await.unwrap().failing_since, None);
}
