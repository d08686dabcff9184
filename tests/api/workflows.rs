//! Workflows end to end against the local stack (docs/workflows.md):
//! triggers (event, schedule, signed webhook, manual), steps executed by
//! the jobs worker from the jobs queue, retries and waits on an injected
//! clock, a worker killed mid-step, the loop guard, dry runs, versions and
//! the templates.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use chrono::{DateTime, Duration, Utc};
use http::{Method, Request, StatusCode};
use keel_local::stream_reader::{Start, StreamReader};
use serde_json::{Value, json};
use shared::identity::users::UserStatus;
use workflows::engine::{Clock, ManualClock};

use crate::helpers::TestApp;

/// The stack's workflows machinery with one clock and loopback webhooks:
/// the dispatcher (its own stream reader), the jobs worker, the tick.
struct Flow {
    reader: StreamReader,
    dispatcher: workflows::dispatch::Dispatcher,
    worker: jobs::Worker,
}

impl Flow {
    async fn new(app: &TestApp, clock: Arc<dyn Clock>) -> Flow {
        let mut engine = app.app.workflows_dispatcher.engine.clone();
        engine.clock = clock;
        engine.webhook_policy = integrations::ssrf::Policy { allow_loopback: true };
        let mut dispatcher = app.app.workflows_dispatcher.clone();
        dispatcher.engine = engine.clone();
        let mut worker = app.app.worker.clone();
        worker.workflows = engine;
        let arn = &app.stack.resources["Table"].attributes["StreamArn"];
        let mut reader = StreamReader::open(aws_sdk_dynamodbstreams::Client::new(&app.sdk), arn, Start::TrimHorizon).await.unwrap();
        // What happened before the test's workflows existed is not theirs.
        reader.drain(&dispatcher).await.unwrap();
        Flow { reader, dispatcher, worker }
    }

    /// Dispatch what the stream holds and execute the jobs queue until
    /// both are idle, as the event sources would; the messages executed.
    async fn run(&mut self, app: &TestApp) -> usize {
        let url = &app.stack.env["KEEL_JOBS_QUEUE_URL"];
        let arn = &app.stack.resources["JobsQueue"].attributes["Arn"];
        let mut total = 0;
        loop {
            let dispatched = self.reader.drain(&self.dispatcher).await.unwrap();
            let ran = keel_local::poller::poll_once(&app.app.clients.sqs, url, arn, &self.worker, 0).await.unwrap();
            total += ran;
            if dispatched == 0 && ran == 0 {
                return total;
            }
        }
    }

    async fn tick(&self, now: DateTime<Utc>) -> workflows::tick::Ticked {
        let tick = workflows::tick::Tick { engine: &self.dispatcher.engine, sqs: &self.dispatcher.sqs, queue_url: &self.dispatcher.queue_url };
        tick.run(now).await.unwrap()
    }
}

/// Move the test's clock to the next whole second after the real now and
/// answer it. Runs started through the API are due by the real clock; a
/// test clock behind it would hold their first step back in the queue with
/// a delay (on a slow machine, seconds), where one poll does not see it.
/// Whole seconds, since stored times keep microseconds, not nanoseconds.
fn catch_up(clock: &ManualClock) -> DateTime<Utc> {
    let now = DateTime::from_timestamp(Utc::now().timestamp() + 1, 0).unwrap();
    clock.set(now);
    now
}

async fn create(app: &TestApp, token: &str, definition: Value) -> Value {
    let created = app.call(Method::POST, "/api/v1/workflows", Some(token), Some(definition)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    created.body
}

async fn runs(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let list = app.get(&format!("/api/v1/workflows/{id}/runs"), token).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    list.body["items"].as_array().unwrap().clone()
}

async fn run_of(app: &TestApp, token: &str, id: &str, run_id: &str) -> Value {
    let run = app.get(&format!("/api/v1/workflows/{id}/runs/{run_id}"), token).await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.body);
    run.body
}

#[tokio::test]
async fn an_audited_event_runs_a_condition_an_email_and_an_action_as_the_workflow() {
    let app = TestApp::spawn().await;
    let (admin, token) = app.user(&["admin"]).await;
    let mut flow = Flow::new(&app, Arc::new(workflows::engine::SystemClock)).await;
    let workflow = create(
        &app,
        &token,
        json!({"name": "welcome", "trigger": {"type": "event", "event": "user.created"},
            "steps": [{"id": "check", "type": "condition", "condition": "event.data.email.endsWith('@example.com')", "on_true": "mail"},
                      {"id": "mail", "type": "send_email", "to": "{{ event.data.email }}", "subject": "Welcome", "body": "Hello {{ event.data.name }}"},
                      {"id": "hold", "type": "action", "action": "user.suspend", "params": {"user_id": "{{ event.target.id }}"}}]}),
    )
    .await;
    let id = workflow["id"].as_str().unwrap().to_string();
    assert_eq!(workflow["version"], 1);

    // Two users through the API: one matches the condition, one does not.
    let mut users = Vec::new();
    for email in ["ada@example.com", "bob@example.org"] {
        let made = app
            .call(
                Method::POST,
                "/api/v1/admin/users",
                Some(&token),
                Some(json!({"email": email, "name": "Ada Lovelace", "roles": ["user"], "password": "correct horse battery"})),
            )
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
        users.push(made.body["id"].as_str().unwrap().to_string());
    }
    flow.run(&app).await;

    let all = runs(&app, &token, &id).await;
    assert_eq!(all.len(), 2, "one run per user.create entry: {all:?}");
    for run in &all {
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["version"], 1);
    }
    // The matching user: email sent through SES, suspended as the workflow.
    let emails = app.sent_emails("ada@example.com").await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert!(emails[0].contains("Hello Ada Lovelace"), "{}", emails[0]);
    let ada = shared::identity::users::get(app.store(), &users[0]).await.unwrap().unwrap();
    assert_eq!(ada.status, UserStatus::Suspended);
    let entries = app.audit_for("user", &users[0]).await;
    let suspend = entries.iter().find(|e| e.action == "user.suspend").expect("the action is audited");
    assert_eq!(suspend.actor.kind, "workflow");
    assert_eq!(suspend.actor.id, admin.id, "as the workflow's owner");
    let ada_run = all.iter().find(|r| r["context"]["event"]["target"]["id"] == users[0].as_str()).unwrap();
    assert_eq!(suspend.actor.request_id.as_deref(), ada_run["id"].as_str(), "the entry names the run");
    let steps: Vec<&str> = ada_run["steps"].as_array().unwrap().iter().map(|s| s["step_id"].as_str().unwrap()).collect();
    assert_eq!(steps, ["check", "mail", "hold"]);
    assert_eq!(ada_run["steps"][1]["input"]["to"], "ada@example.com");
    assert!(ada_run["steps"][1]["output"]["message_id"].is_string());

    // The other: the condition was false, so the run ended there.
    assert!(app.sent_emails("bob@example.org").await.is_empty());
    let bob = shared::identity::users::get(app.store(), &users[1]).await.unwrap().unwrap();
    assert_eq!(bob.status, UserStatus::Active);

    // The figures per workflow.
    let figures = app.get(&format!("/api/v1/workflows/{id}/analytics"), &token).await;
    assert_eq!(figures.body["runs"], 2);
    assert_eq!(figures.body["success_rate"], 1.0);
    assert!(figures.body["steps"].as_array().unwrap().iter().any(|s| s["step_id"] == "mail" && s["executions"] == 1));
}

#[tokio::test]
async fn a_schedule_fires_through_the_local_tick_once() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["admin"]).await;
    let clock = ManualClock::at(Utc::now());
    let mut flow = Flow::new(&app, Arc::new(clock.clone())).await;
    let workflow = create(
        &app,
        &token,
        json!({"name": "weekly", "trigger": {"type": "schedule", "cron": "0 8 * * 1", "timezone": "Europe/Paris"},
            "steps": [{"id": "mail", "type": "send_email", "to": "team@example.com", "subject": "Weekly", "body": "Run {{ run.id }} for {{ event.scheduled_for }}"}]}),
    )
    .await;
    let id = workflow["id"].as_str().unwrap();
    let next: DateTime<Utc> = workflow["next_run_at"].as_str().unwrap().parse().unwrap();
    assert!(next > Utc::now() && next - Utc::now() <= Duration::days(7));
    // Before its time: nothing.
    assert_eq!(flow.tick(next - Duration::minutes(1)).await.schedules_fired, 0);
    // At its time: one run, however often the tick runs.
    clock.set(next + Duration::seconds(5));
    assert_eq!(flow.tick(next + Duration::seconds(5)).await.schedules_fired, 1);
    assert_eq!(flow.tick(next + Duration::seconds(30)).await.schedules_fired, 0);
    flow.run(&app).await;
    let all = runs(&app, &token, id).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["status"], "succeeded", "{}", all[0]);
    assert_eq!(all[0]["trigger"], "schedule");
    assert_eq!(app.sent_emails("team@example.com").await.len(), 1);
    let after = app.get(&format!("/api/v1/workflows/{id}"), &token).await;
    let moved: DateTime<Utc> = after.body["next_run_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(moved - next, Duration::days(7), "the next Monday");
}

#[tokio::test]
async fn the_tick_finds_deferred_and_lost_messages_behind_a_backlog_of_sent_ones() {
    use workflows::model::StepMessage;
    let app = TestApp::spawn().await;
    let flow = Flow::new(&app, Arc::new(workflows::engine::SystemClock)).await;
    let table = app.store().table().to_string();
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    // 450 messages the dispatcher sent itself (due within SQS's reach),
    // sorting before the deferred one the tick must send.
    let mut backlog: Vec<_> =
        (0..450).map(|i| StepMessage::new(&format!("backlog-{i:03}"), "s", 1, now + Duration::minutes(4)).create_write(&table, now).unwrap()).collect();
    while !backlog.is_empty() {
        let chunk: Vec<_> = backlog.drain(..backlog.len().min(100)).collect();
        app.store().transact(chunk).await.unwrap();
    }
    // A step waiting a day (deferred: SQS cannot hold it), due in 5 minutes;
    // a message due 10 minutes ago and never executed (lost).
    let deferred = StepMessage::new("zz-deferred", "wait", 1, now + Duration::minutes(5));
    let lost = StepMessage::new("zz-lost", "step", 1, now - Duration::minutes(10));
    app.store()
        .transact(vec![deferred.create_write(&table, now - Duration::days(1)).unwrap(), lost.create_write(&table, now - Duration::minutes(11)).unwrap()])
        .await
        .unwrap();
    assert_eq!(flow.tick(now).await.messages_sent, 2);
    for message in [&deferred, &lost] {
        let item = app.store().get_item(&workflows::model::run_pk(&message.run_id), &message.sk()).await.unwrap().unwrap();
        assert!(shared::store::attr_s(&item, "sent_at").is_some(), "{message:?} sent");
    }
    // Each sent once: a minute later nothing; the lost one is tried again
    // five minutes after its last send (the backlog is not stale yet).
    assert_eq!(flow.tick(now + Duration::minutes(1)).await.messages_sent, 0);
    assert_eq!(flow.tick(now + Duration::minutes(2) + Duration::seconds(30)).await.messages_sent, 0);
    assert_eq!(flow.tick(now + Duration::minutes(5) + Duration::seconds(1)).await.messages_sent, 1);
}

fn signed(secret: &str, id: &str, at: i64, body: &str) -> String {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap();
    integrations::signing::sign(&key, id, at, body.as_bytes())
}

async fn hook(app: &TestApp, id: &str, message_id: &str, at: i64, signature: &str, body: &str) -> crate::helpers::Response {
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/workflows/{id}/hooks"))
        .header("content-type", "application/json")
        .header("webhook-id", message_id)
        .header("webhook-timestamp", at.to_string())
        .header("webhook-signature", signature)
        .body(Body::from(body.to_string()))
        .unwrap();
    app.send(request).await
}

#[tokio::test]
async fn an_inbound_webhook_runs_only_when_signed_with_the_secret() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["admin"]).await;
    let mut flow = Flow::new(&app, Arc::new(workflows::engine::SystemClock)).await;
    let workflow = create(
        &app,
        &token,
        json!({"name": "inbound", "trigger": {"type": "webhook"},
            "steps": [{"id": "note", "type": "set", "values": {"order": "{{ input.order_id }}"}}]}),
    )
    .await;
    let id = workflow["id"].as_str().unwrap();
    let secret = workflow["webhook_secret"].as_str().expect("the secret, once").to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(workflow["inbound_url"], format!("http://keel.test/api/v1/workflows/{id}/hooks"));
    assert!(app.get(&format!("/api/v1/workflows/{id}"), &token).await.body.get("webhook_secret").is_none(), "not shown again");

    let body = r#"{"order_id": "o-1"}"#;
    let now = Utc::now().timestamp();
    // A wrong secret, a changed body, a stale timestamp, no signature: refused.
    let wrong = signed("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "msg_1", now, body);
    assert_eq!(hook(&app, id, "msg_1", now, &wrong, body).await.status, StatusCode::UNAUTHORIZED);
    let other_body = signed(&secret, "msg_1", now, r#"{"order_id": "o-2"}"#);
    assert_eq!(hook(&app, id, "msg_1", now, &other_body, body).await.status, StatusCode::UNAUTHORIZED);
    let stale = signed(&secret, "msg_1", now - 600, body);
    assert_eq!(hook(&app, id, "msg_1", now - 600, &stale, body).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(hook(&app, id, "msg_1", now, "", body).await.status, StatusCode::UNAUTHORIZED);
    flow.run(&app).await;
    assert!(runs(&app, &token, id).await.is_empty(), "no run from a refused call");

    // Signed: a run with the body as input; the sender's retry is the same run.
    let good = signed(&secret, "msg_1", now, body);
    let accepted = hook(&app, id, "msg_1", now, &good, body).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    let again = hook(&app, id, "msg_1", now, &good, body).await;
    assert_eq!(again.body["run_id"], accepted.body["run_id"]);
    flow.run(&app).await;
    let all = runs(&app, &token, id).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["status"], "succeeded");
    assert_eq!(all[0]["context"]["vars"]["order"], "o-1");
}

#[tokio::test]
async fn a_flood_of_events_or_webhooks_is_stopped_by_the_runs_per_minute_limit() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["admin"]).await;
    // A fixed minute: the limit counts per clock minute.
    let clock = ManualClock::at(DateTime::from_timestamp(Utc::now().timestamp() / 60 * 60 + 10, 0).unwrap());
    let mut flow = Flow::new(&app, Arc::new(clock.clone())).await;
    let workflow = create(
        &app,
        &token,
        json!({"name": "capped", "max_runs_per_minute": 2, "trigger": {"type": "event", "event": "user.created"},
            "steps": [{"id": "mark", "type": "set", "values": {"user": "{{ event.target.id }}"}}]}),
    )
    .await;
    let id = workflow["id"].as_str().unwrap();
    for _ in 0..5 {
        app.user(&["user"]).await;
    }
    flow.run(&app).await;
    let all = runs(&app, &token, id).await;
    let mut statuses: Vec<&str> = all.iter().map(|r| r["status"].as_str().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses, ["failed", "succeeded", "succeeded"], "two runs, one failed run saying why, the rest counted: {all:?}");
    let failed = all.iter().find(|r| r["status"] == "failed").unwrap();
    assert!(failed["error"].as_str().unwrap().starts_with("rate limit: more than 2 runs"), "{failed}");
    // The next minute: runs again.
    clock.set(clock.now() + Duration::minutes(1));
    app.user(&["user"]).await;
    flow.run(&app).await;
    assert_eq!(runs(&app, &token, id).await.len(), 4);

    // An inbound webhook past its limit answers 429 with Retry-After.
    let hooked = create(
        &app,
        &token,
        json!({"name": "hooked", "max_runs_per_minute": 1, "trigger": {"type": "webhook"}, "steps": [{"id": "s", "type": "set", "values": {"x": "1"}}]}),
    )
    .await;
    let (hook_id, secret) = (hooked["id"].as_str().unwrap(), hooked["webhook_secret"].as_str().unwrap());
    while Utc::now().timestamp() % 60 > 50 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let now = Utc::now().timestamp();
    let body = r#"{"n": 1}"#;
    assert_eq!(hook(&app, hook_id, "msg_a", now, &signed(secret, "msg_a", now, body), body).await.status, StatusCode::ACCEPTED);
    let over = hook(&app, hook_id, "msg_b", now, &signed(secret, "msg_b", now, body), body).await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS, "{}", over.body);
    assert!(over.headers.get("retry-after").is_some());
    // The sender's retry of the accepted message is still the same run.
    assert_eq!(hook(&app, hook_id, "msg_a", now, &signed(secret, "msg_a", now, body), body).await.status, StatusCode::ACCEPTED);
    let bad = app
        .call(
            Method::POST,
            "/api/v1/workflows/validate",
            Some(&token),
            Some(json!({"name": "x", "max_runs_per_minute": 0, "trigger": {"type": "manual"}, "steps": [{"id": "s", "type": "set", "values": {"x": "1"}}]})),
        )
        .await;
    assert_eq!(bad.body["errors"][0]["field"], "max_runs_per_minute");
}

#[tokio::test]
async fn a_disabled_workflow_starts_nothing_until_enabled_again() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["admin"]).await;
    let mut flow = Flow::new(&app, Arc::new(workflows::engine::SystemClock)).await;
    let workflow = create(
        &app,
        &token,
        json!({"name": "toggled", "trigger": {"type": "event", "event": "user.created"}, "steps": [{"id": "s", "type": "set", "values": {"x": "1"}}]}),
    )
    .await;
    let id = workflow["id"].as_str().unwrap();
    let off = app.call(Method::POST, &format!("/api/v1/workflows/{id}/disable"), Some(&token), None).await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    assert_eq!(off.body["enabled"], false);
    app.user(&["user"]).await;
    flow.run(&app).await;
    assert!(runs(&app, &token, id).await.is_empty(), "disabled: no run");
    let manual = app.call(Method::POST, &format!("/api/v1/workflows/{id}/runs"), Some(&token), Some(json!({}))).await;
    assert_eq!(manual.status, StatusCode::CONFLICT);

    let on = app.call(Method::POST, &format!("/api/v1/workflows/{id}/enable"), Some(&token), None).await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    assert_eq!(on.body["enabled"], true);
    app.user(&["user"]).await;
    flow.run(&app).await;
    assert_eq!(runs(&app, &token, id).await.len(), 1, "enabled again: the next event runs");
    let actions: Vec<String> = app.audit_for("workflow", id).await.into_iter().map(|e| e.action).collect();
    assert!(actions.contains(&"workflow.disable".to_string()) && actions.contains(&"workflow.enable".to_string()), "{actions:?}");
}

/// The "suspend on repeated chargebacks" template against real Stripe
/// events: the first dispute of a customer's order does not suspend them,
/// the second does, as the workflow, once.
#[tokio::test]
async fn repeated_chargebacks_from_stripe_suspend_the_customer_through_the_template() {
    use crate::payments::{DAY, JAN, deliver, dispute_event, invoice_paid};
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["super_admin"]).await;
    let (customer, _) = app.user(&["user"]).await;
    let mut flow = Flow::new(&app, Arc::new(workflows::engine::SystemClock)).await;
    let made = app
        .call(
            Method::POST,
            "/api/v1/workflows/from-template",
            Some(&token),
            Some(json!({"template": "suspend_on_chargeback", "settings": {"trust_email": "trust@example.com", "disputes": "2"}})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let id = made.body["id"].as_str().unwrap();
    for (n, invoice) in ["in_cb1", "in_cb2"].iter().enumerate() {
        let start = JAN + (n as i64) * 31 * DAY;
        let mut paid = invoice_paid(&format!("evt_{invoice}"), invoice, "cus_cb", "sub_cb", "month", 2900, start, start + 31 * DAY);
        paid["data"]["object"]["metadata"] = json!({"user_id": customer.id});
        assert_eq!(deliver(&app, &paid).await.status, StatusCode::OK);
    }
    flow.run(&app).await;

    // One chargeback: a run, the condition false, nobody suspended.
    let first = dispute_event("evt_cb1", "charge.dispute.created", JAN + 40 * DAY, "dp_cb1", "ch_in_cb1", 3190, "needs_response");
    assert_eq!(deliver(&app, &first).await.status, StatusCode::OK);
    flow.run(&app).await;
    let all = runs(&app, &token, id).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["context"]["event"]["data"]["customer"]["disputed"], 1, "{}", all[0]);
    assert_eq!(all[0]["steps"][0]["output"]["result"], false);
    let now = shared::identity::users::get(app.store(), &customer.id).await.unwrap().unwrap();
    assert_eq!(now.status, UserStatus::Active);

    // The second: suspended as the workflow, the trust team told.
    let second = dispute_event("evt_cb2", "charge.dispute.created", JAN + 41 * DAY, "dp_cb2", "ch_in_cb2", 3190, "needs_response");
    assert_eq!(deliver(&app, &second).await.status, StatusCode::OK);
    flow.run(&app).await;
    let all = runs(&app, &token, id).await;
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|r| r["status"] == "succeeded"), "{all:?}");
    let now = shared::identity::users::get(app.store(), &customer.id).await.unwrap().unwrap();
    assert_eq!(now.status, UserStatus::Suspended);
    let suspensions: Vec<_> = app.audit_for("user", &customer.id).await.into_iter().filter(|e| e.action == "user.suspend").collect();
    assert_eq!(suspensions.len(), 1);
    assert_eq!(suspensions[0].actor.kind, "workflow");
    let emails = app.sent_emails("trust@example.com").await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert!(emails[0].contains("2 of the customer's 2 orders are"), "{}", emails[0]);
}

/// A receiver that answers 503 to the first `failures` calls, then 200.
async fn flaky_receiver(failures: usize) -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, seen) = (calls.clone(), ids.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: http::HeaderMap| {
            let (c, seen) = (c.clone(), seen.clone());
            async move {
                seen.lock().unwrap().push(headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string());
                if c.fetch_add(1, Ordering::SeqCst) < failures { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls, ids)
}

#[tokio::test]
async fn a_failing_step_retries_with_its_configured_spacing() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["admin"]).await;
    let clock = ManualClock::at(Utc::now());
    let mut flow = Flow::new(&app, Arc::new(clock.clone())).await;
    let (url, calls, ids) = flaky_receiver(2).await;
    let workflow = create(
        &app,
        &token,
        json!({"name": "flaky", "trigger": {"type": "manual"},
            "steps": [{"id": "post", "type": "send_webhook", "url": url, "payload": {"text": "hello {{ input.who }}"},
                       "retry": {"attempts": 3, "initial_delay": "1h", "backoff": 2, "max_delay": "1d"}}]}),
    )
    .await;
    let id = workflow["id"].as_str().unwrap();
    let started = app.call(Method::POST, &format!("/api/v1/workflows/{id}/runs"), Some(&token), Some(json!({"input": {"who": "ops"}}))).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let run_id = started.body["id"].as_str().unwrap().to_string();
    let t0 = catch_up(&clock);

    // Attempt 1 fails (503): the next is due an hour later, not before.
    flow.run(&app).await;
    let run = run_of(&app, &token, id, &run_id).await;
    assert_eq!(run["status"], "waiting", "{run}");
    let first_retry: DateTime<Utc> = run["steps"][0]["retry_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(first_retry - t0, Duration::hours(1));
    // An hour is beyond SQS's 15 minutes: kept in the table for the tick.
    clock.set(t0 + Duration::minutes(30));
    assert_eq!(flow.tick(t0 + Duration::minutes(30)).await.messages_sent, 0);
    flow.run(&app).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "not before its time");

    // Attempt 2 at +1 h fails: the next is due 2 h after it (backoff 2).
    let t1 = t0 + Duration::hours(1);
    clock.set(t1);
    assert_eq!(flow.tick(t1).await.messages_sent, 1);
    flow.run(&app).await;
    let run = run_of(&app, &token, id, &run_id).await;
    let second_retry: DateTime<Utc> = run["steps"][1]["retry_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(second_retry - t1, Duration::hours(2));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Attempt 3 at +3 h succeeds; the run says so, with every attempt.
    let t2 = t1 + Duration::hours(2);
    clock.set(t2);
    flow.tick(t2).await;
    flow.run(&app).await;
    let run = run_of(&app, &token, id, &run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let attempts: Vec<(u64, &str)> = run["steps"].as_array().unwrap().iter().map(|s| (s["attempt"].as_u64().unwrap(), s["status"].as_str().unwrap())).collect();
    assert_eq!(attempts, [(1, "failed"), (2, "failed"), (3, "succeeded")]);
    assert_eq!(run["steps"][0]["error"], "the receiver answered 503");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let ids = ids.lock().unwrap().clone();
    assert_eq!(ids.iter().collect::<std::collections::BTreeSet<_>>().len(), 3, "one webhook-id per attempt: {ids:?}");
}

#[tokio::test]
async fn a_step_that_exhausts_its_retries_fails_the_run_honestly_and_can_be_rerun() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["admin"]).await;
    let clock = ManualClock::at(Utc::now());
    let mut flow = Flow::new(&app, Arc::new(clock.clone())).await;
    let (url, calls, _) = flaky_receiver(2).await;
    let workflow = create(
        &app,
        &token,
        json!({"name": "fails", "trigger": {"type": "manual"},
            "steps": [{"id": "post", "type": "send_webhook", "url": url, "retry": {"attempts": 2, "initial_delay": "30m"}},
                      {"id": "after", "type": "set", "values": {"done": "yes"}}]}),
    )
    .await;
    let id = workflow["id"].as_str().unwrap();
    let started = app.call(Method::POST, &format!("/api/v1/workflows/{id}/runs"), Some(&token), Some(json!({}))).await;
    let run_id = started.body["id"].as_str().unwrap().to_string();
    let t0 = catch_up(&clock);
    flow.run(&app).await;
    clock.set(t0 + Duration::minutes(30));
    flow.tick(t0 + Duration::minutes(30)).await;
    flow.run(&app).await;
    let run = run_of(&app, &token, id, &run_id).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["failed_step"], "post");
    assert!(run["error"].as_str().unwrap().contains("after 2 attempt(s): the receiver answered 503"), "{run}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Re-run from the failed step: the receiver now answers 200.
    let retried = app.call(Method::POST, &format!("/api/v1/workflows/{id}/runs/{run_id}/retry"), Some(&token), None).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.body);
    flow.run(&app).await;
    let rerun = run_of(&app, &token, id, retried.body["id"].as_str().unwrap()).await;
    assert_eq!(rerun["status"], "succeeded", "{rerun}");
    assert_eq!(rerun["parent_run_id"], run_id.as_str());
    let steps: Vec<&str> = rerun["steps"].as_array().unwrap().iter().map(|s| s["step_id"].as_str().unwrap()).collect();
    assert_eq!(steps, ["post", "after"], "from the failed step on");
    let again = app.call(Method::POST, &format!("/api/v1/workflows/{id}/runs/{run_id}/retry"), Some(&token), None).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "a failed run may be re-run again");
    let not_failed = app.call(Method::POST, &format!("/api/v1/workflows/{id}/runs/{}/retry", rerun["id"].as_str().unwrap()), Some(&token), None).await;
    assert_eq!(not_failed.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_wait_for_event_resumes_on_the_matching_event_or_times_out() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["admin"]).await;
    let (ada, _) = app.user(&["user"]).await;
    let (bob, _) = app.user(&["user"]).await;
    let clock = ManualClock::at(Utc::now());
    let mut flow = Flow::new(&app, Arc::new(clock.clone())).await;
    // Wait up to three days for this run's user to be suspended.
    let workflow = create(
        &app,
        &token,
        json!({"name": "await", "trigger": {"type": "manual"},
            "steps": [{"id": "hold", "type": "wait_for_event", "event": "user.suspended", "filter": "received.target.id == input.user_id",
                       "timeout": "3d", "on_timeout": "late"},
                      {"id": "mail", "type": "send_email", "to": "ops@example.com", "subject": "Suspended",
                       "body": "{{ steps.hold.output.event.target.id }} is {{ steps.hold.output.event.data.status }}", "on_success": "end"},
                      {"id": "late", "type": "set", "values": {"late": "yes"}}]}),
    )
    .await;
    let id = workflow["id"].as_str().unwrap();
    // Without on_timeout, a timeout fails the step.
    let strict = create(
        &app,
        &token,
        json!({"name": "strict", "trigger": {"type": "manual"},
            "steps": [{"id": "hold", "type": "wait_for_event", "event": "user.suspend", "timeout": "1d"}]}),
    )
    .await;
    let strict_id = strict["id"].as_str().unwrap();
    let start = async |wf: &str, user: &str| -> String {
        let started = app.call(Method::POST, &format!("/api/v1/workflows/{wf}/runs"), Some(&token), Some(json!({"input": {"user_id": user}}))).await;
        assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
        started.body["id"].as_str().unwrap().to_string()
    };
    let (ada_run, bob_run) = (start(id, &ada.id).await, start(id, &bob.id).await);
    let t0 = catch_up(&clock);
    flow.run(&app).await;
    for run_id in [&ada_run, &bob_run] {
        let run = run_of(&app, &token, id, run_id).await;
        assert_eq!(run["status"], "waiting", "{run}");
        assert_eq!(run["waiting_for"], "user.suspended");
        assert_eq!(run["current_step"], "hold");
    }

    // Ada is suspended through the API: her run goes on with the event;
    // Bob's does not match the filter and keeps waiting. (The waits began
    // at the test clock's time, up to a second ahead of the real one the
    // API records events at; an event before a wait does not count.)
    while Utc::now() <= t0 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let path = format!("/api/v1/admin/users/{}", ada.id);
    let suspended = app.call(Method::PUT, &path, Some(&token), Some(json!({"version": 1, "status": "suspended", "reason": "chargeback"}))).await;
    assert_eq!(suspended.status, StatusCode::OK, "{}", suspended.body);
    flow.run(&app).await;
    let run = run_of(&app, &token, id, &ada_run).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let steps: Vec<&str> = run["steps"].as_array().unwrap().iter().map(|s| s["step_id"].as_str().unwrap()).collect();
    assert_eq!(steps, ["hold", "mail"]);
    assert_eq!(run["steps"][0]["output"]["event"]["type"], "user.suspend");
    let emails = app.sent_emails("ops@example.com").await;
    assert_eq!(emails.len(), 1);
    assert!(emails[0].contains(&format!("{} is suspended", ada.id)), "{}", emails[0]);
    assert_eq!(run_of(&app, &token, id, &bob_run).await["status"], "waiting");

    // The strict run starts now: Ada's suspension came before its wait and
    // does not count; a day later it fails honestly.
    let strict_run = start(strict_id, &ada.id).await;
    catch_up(&clock);
    flow.run(&app).await;
    assert_eq!(run_of(&app, &token, strict_id, &strict_run).await["status"], "waiting");

    // Three days on: Bob's wait times out into `late`; the strict run failed.
    let later = t0 + Duration::days(3) + Duration::seconds(2);
    clock.set(later);
    assert_eq!(flow.tick(later).await.messages_sent, 2, "both timeouts, kept for the tick");
    flow.run(&app).await;
    let run = run_of(&app, &token, id, &bob_run).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let steps: Vec<(&str, &Value)> = run["steps"].as_array().unwrap().iter().map(|s| (s["step_id"].as_str().unwrap(), &s["output"])).collect();
    assert_eq!(steps[0], ("hold", &json!({"timed_out": true})));
    assert_eq!(steps[1].0, "late");
    let run = run_of(&app, &token, strict_id, &strict_run).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["failed_step"], "hold");
    assert!(run["error"].as_str().unwrap().contains("timed out: no user.suspend within 1d"), "{run}");
    // Bob suspended now: no run waits any more, nothing happens.
    let path = format!("/api/v1/admin/users/{}", bob.id);
    assert_eq!(app.call(Method::PUT, &path, Some(&token), Some(json!({"version": 1, "status": "suspended", "reason": "x"}))).await.status, StatusCode::OK);
    flow.run(&app).await;
    assert_eq!(app.sent_emails("ops@example.com").await.len(), 1);

    // A waiting run cancelled: its wait goes with it.
    let cancelled = start(id, &bob.id).await;
    catch_up(&clock);
    flow.run(&app).await;
    let answer = app.call(Method::POST, &format!("/api/v1/workflows/{id}/runs/{cancelled}/cancel"), Some(&token), None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let spec = shared::store::QuerySpec {
        key_condition: "pk = :pk AND begins_with(sk, :w)",
        values: vec![(":pk", shared::store::s(format!("WFRUN#{cancelled}"))), (":w", shared::store::s("WAIT#"))],
        ..Default::default()
    };
    assert!(app.store().query_all(&spec).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_reported_chart_is_hidden_and_an_export_made_as_the_workflow_through_the_apis_own_rules() {
    let app = TestApp::spawn().await;
    let (admin, token) = app.user(&["admin"]).await;
    let (owner, _) = app.user(&["user"]).await;
    let mut flow = Flow::new(&app, Arc::new(workflows::engine::SystemClock)).await;
    let chart = crate::charts::chart(&app, &owner.id, "Reported chart", shared::domain::charts::ModerationStatus::Approved, Utc::now()).await;
    let workflow = create(
        &app,
        &token,
        json!({"name": "escalate", "trigger": {"type": "event", "event": "chart.flagged"},
            "steps": [{"id": "hide", "type": "action", "action": "chart.moderate",
                       "params": {"chart_id": "{{ event.target.id }}", "action": "hide", "reason": "abuse", "note": "hidden by workflow"}},
                      {"id": "export", "type": "action", "action": "data.export",
                       "params": {"dataset": "charts", "format": "csv", "columns": "id,title,moderation_status"}},
                      {"id": "mail", "type": "send_email", "to": "mods@example.com", "subject": "Chart hidden",
                       "body": "{{ steps.hide.output.from }} → {{ steps.hide.output.to }}; export {{ steps.export.output.location }}"}]}),
    )
    .await;
    let id = workflow["id"].as_str().unwrap();

    // A moderator flags it: the workflow hides it, as the API would.
    let flagged = app
        .call(
            Method::POST,
            &format!("/api/v1/admin/charts/{}/moderate", chart.id),
            Some(&token),
            Some(json!({"action": "flag", "reason": "abuse", "version": chart.version})),
        )
        .await;
    assert_eq!(flagged.status, StatusCode::OK, "{}", flagged.body);
    flow.run(&app).await;
    let all = runs(&app, &token, id).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["status"], "succeeded", "{}", all[0]);
    let id_of = |s: &str| shared::store::ids::ChartId::parse(s).unwrap();
    let now = shared::domain::charts::get(app.store(), &id_of(&chart.id)).await.unwrap().unwrap();
    assert_eq!(now.moderation_status, shared::domain::charts::ModerationStatus::Hidden);
    let history = shared::domain::charts::history(app.store(), &chart.id, 10).await.unwrap();
    assert!(history.iter().any(|e| e.to == shared::domain::charts::ModerationStatus::Hidden && e.actor_id == admin.id), "{history:?}");
    let hide = app.audit_for("chart", &chart.id).await.into_iter().find(|e| e.action == "chart.hide").expect("the hide is audited");
    assert_eq!(hide.actor.kind, "workflow");
    assert_eq!(hide.actor.request_id.as_deref(), all[0]["id"].as_str());
    assert!(hide.reason.as_deref().is_some_and(|r| r.starts_with("abuse: hidden by workflow (workflow \"escalate\"")), "{:?}", hide.reason);
    // The export: a data export job of the owner's, run by the worker.
    let job_id = all[0]["steps"][1]["output"]["job_id"].as_str().unwrap().to_string();
    let emails = app.sent_emails("mods@example.com").await;
    assert!(emails[0].contains(&format!("flagged → hidden; export /api/v1/data/jobs/{job_id}")), "{}", emails[0]);
    app.run_jobs().await;
    let job = app.get(&format!("/api/v1/data/jobs/{job_id}"), &token).await;
    assert_eq!(job.status, StatusCode::OK, "{}", job.body);
    assert_eq!(job.body["status"], "succeeded", "{}", job.body);
    assert!(app.audit_for("job", &job_id).await.iter().any(|e| e.action == "data.export" && e.actor.kind == "workflow"));

    // The same rules as the API: a transition the state machine refuses
    // fails the step and says why; bad fixed parameters are refused when
    // saving.
    let again =
        app.call(Method::POST, &format!("/api/v1/workflows/{id}/dry-run"), Some(&token), Some(json!({"target": {"type": "chart", "id": chart.id}}))).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert!(again.body["steps"][0]["error"].as_str().unwrap().contains("cannot hide a chart that is hidden"), "{}", again.body);
    let bad = app
        .call(
            Method::POST,
            "/api/v1/workflows/validate",
            Some(&token),
            Some(json!({"name": "x", "trigger": {"type": "manual"},
                "steps": [{"id": "a", "type": "action", "action": "chart.moderate", "params": {"chart_id": "x", "action": "burn", "reason": "spam", "colour": "red"}},
                          {"id": "b", "type": "action", "action": "data.export", "params": {"dataset": "secrets", "format": "csv"}}]})),
        )
        .await;
    let fields: Vec<&str> = bad.body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    for field in ["steps[0].params.action", "steps[0].params.colour", "steps[1].params.dataset"] {
        assert!(fields.contains(&field), "{field} missing from {fields:?}");
    }
}

#[tokio::test]
async fn a_one_day_wait_completes_when_the_clock_reaches_it_and_runs_can_be_cancelled() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["admin"]).await;
    let clock = ManualClock::at(Utc::now());
    let mut flow = Flow::new(&app, Arc::new(clock.clone())).await;
    let workflow = create(
        &app,
        &token,
        json!({"name": "later", "trigger": {"type": "manual"},
            "steps": [{"id": "pause", "type": "wait", "duration": "1d"},
                      {"id": "mail", "type": "send_email", "to": "later@example.com", "subject": "A day later", "body": "{{ steps.pause.output.until }}"}]}),
    )
    .await;
    let id = workflow["id"].as_str().unwrap();
    let path = format!("/api/v1/workflows/{id}/runs");
    let start = || app.call(Method::POST, &path, Some(&token), Some(json!({})));
    let run_id = start().await.body["id"].as_str().unwrap().to_string();
    let cancelled_id = start().await.body["id"].as_str().unwrap().to_string();
    let t0 = catch_up(&clock);
    flow.run(&app).await;
    let run = run_of(&app, &token, id, &run_id).await;
    assert_eq!(run["status"], "waiting");
    assert_eq!(run["current_step"], "mail");
    let cancelled = app.call(Method::POST, &format!("/api/v1/workflows/{id}/runs/{cancelled_id}/cancel"), Some(&token), None).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");

    // 23 hours later: still waiting.
    clock.set(t0 + Duration::hours(23));
    assert_eq!(flow.tick(t0 + Duration::hours(23)).await.messages_sent, 0, "an hour away: beyond SQS's 15 minutes");
    flow.run(&app).await;
    assert_eq!(run_of(&app, &token, id, &run_id).await["status"], "waiting");
    assert!(app.sent_emails("later@example.com").await.is_empty());

    // A day later: the email goes; the cancelled run stays cancelled.
    clock.set(t0 + Duration::days(1) + Duration::seconds(1));
    flow.tick(t0 + Duration::days(1) + Duration::seconds(1)).await;
    flow.run(&app).await;
    let run = run_of(&app, &token, id, &run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(app.sent_emails("later@example.com").await.len(), 1);
    assert_eq!(run_of(&app, &token, id, &cancelled_id).await["status"], "cancelled");
    assert_eq!(app.call(Method::POST, &format!("/api/v1/workflows/{id}/runs/{run_id}/cancel"), Some(&token), None).await.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_worker_killed_mid_step_or_a_message_delivered_twice_acts_once() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["admin"]).await;
    let (target, _) = app.user(&["user"]).await;
    let flow = Flow::new(&app, Arc::new(workflows::engine::SystemClock)).await;
    let workflow = create(
        &app,
        &token,
        json!({"name": "suspend", "trigger": {"type": "manual"},
            "steps": [{"id": "suspend", "type": "action", "action": "user.suspend", "params": {"user_id": "{{ input.user_id }}"}}]}),
    )
    .await;
    let id = workflow["id"].as_str().unwrap();
    let started = app.call(Method::POST, &format!("/api/v1/workflows/{id}/runs"), Some(&token), Some(json!({"input": {"user_id": target.id}}))).await;
    let run_id = started.body["id"].as_str().unwrap().to_string();
    let message = workflows::model::StepMessage::new(&run_id, "suspend", 1, started.body["started_at"].as_str().unwrap().parse().unwrap());
    let engine = &flow.worker.workflows;

    // A worker killed at every point of the step: the task is dropped
    // after each await it reaches, before its transaction commits or after.
    for polls in 1..40 {
        let mut task = Box::pin(engine.execute(&message));
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut finished = false;
        for _ in 0..polls {
            tokio::task::yield_now().await;
            if task.as_mut().poll(&mut cx).is_ready() {
                finished = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        drop(task);
        if finished {
            break;
        }
    }
    // Redelivered, twice at once.
    let (a, b) = tokio::join!(engine.execute(&message), engine.execute(&message));
    a.unwrap();
    b.unwrap();
    let entries = app.audit_for("user", &target.id).await;
    assert_eq!(entries.iter().filter(|e| e.action == "user.suspend").count(), 1, "one suspension: {:?}", entries.iter().map(|e| &e.action).collect::<Vec<_>>());
    let user = shared::identity::users::get(app.store(), &target.id).await.unwrap().unwrap();
    assert_eq!(user.status, UserStatus::Suspended);
    assert_eq!(user.version, target.version + 1, "changed once");
    let run = run_of(&app, &token, id, &run_id).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["steps"].as_array().unwrap().len(), 1, "one execution recorded: {run}");
}

#[tokio::test]
async fn a_workflow_that_would_trigger_itself_is_refused_or_stopped() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["admin"]).await;
    let mut flow = Flow::new(&app, Arc::new(workflows::engine::SystemClock)).await;
    // Directly: suspending on a suspension.
    let direct = app
        .call(
            Method::POST,
            "/api/v1/workflows",
            Some(&token),
            Some(json!({"name": "again", "trigger": {"type": "event", "event": "user.suspended"},
                "steps": [{"id": "s", "type": "action", "action": "user.suspend", "params": {"user_id": "{{ event.target.id }}"}}]})),
        )
        .await;
    assert_eq!(direct.status, StatusCode::BAD_REQUEST, "{}", direct.body);
    assert_eq!(direct.error_fields(), ["steps"]);
    assert!(direct.body["errors"][0]["message"].as_str().unwrap().contains("would trigger itself"), "{}", direct.body);

    // Through another workflow: A reactivates on a suspension; B, which
    // suspends on a reactivation, closes the loop and is refused.
    let a = create(
        &app,
        &token,
        json!({"name": "A", "trigger": {"type": "event", "event": "user.suspended"},
            "steps": [{"id": "r", "type": "action", "action": "user.reactivate", "params": {"user_id": "{{ event.target.id }}"}}]}),
    )
    .await;
    let b_definition = json!({"name": "B", "trigger": {"type": "event", "event": "user.reactivated"},
        "steps": [{"id": "s", "type": "action", "action": "user.suspend", "params": {"user_id": "{{ event.target.id }}"}}]});
    let b = app.call(Method::POST, "/api/v1/workflows", Some(&token), Some(b_definition.clone())).await;
    assert_eq!(b.status, StatusCode::BAD_REQUEST, "{}", b.body);
    assert!(b.body["errors"][0]["message"].as_str().unwrap().contains("B → A → B"), "{}", b.body);

    // Saved anyway (as a race between two saves could): the run-time guard
    // stops the chain.
    let b_id = uuid::Uuid::now_v7().to_string();
    let definition: workflows::definition::Definition = serde_json::from_value(b_definition).unwrap();
    let now = Utc::now();
    let (owner, _) = (a["owner_id"].as_str().unwrap().to_string(), ());
    let mut record = workflows::model::Workflow {
        id: b_id.clone(),
        name: "B".into(),
        owner_id: owner,
        version: 1,
        enabled: true,
        trigger: String::new(),
        event: None,
        next_run_at: None,
        webhook_secret: None,
        created_at: shared::store::timestamp(now),
        updated_at: shared::store::timestamp(now),
        deleted_at: None,
        rev: 1,
    };
    workflows::model::apply_trigger(&mut record, &definition, now);
    let version = workflows::model::Version {
        workflow_id: b_id.clone(),
        version: 1,
        definition,
        created_at: shared::store::timestamp(now),
        created_by: "tests".into(),
        rolled_back_from: None,
    };
    app.store().put_item_unchecked(record.to_item().unwrap()).await.unwrap();
    app.store().put_item_unchecked(version.to_item().unwrap()).await.unwrap();

    let (victim, _) = app.user(&["user"]).await;
    let suspended = app
        .call(Method::PUT, &format!("/api/v1/admin/users/{}", victim.id), Some(&token), Some(json!({"version": victim.version, "status": "suspended"})))
        .await;
    assert_eq!(suspended.status, StatusCode::OK, "{}", suspended.body);
    flow.run(&app).await;
    let a_runs = runs(&app, &token, a["id"].as_str().unwrap()).await;
    let b_runs = runs(&app, &token, &b_id).await;
    let stopped: Vec<&Value> = a_runs.iter().chain(&b_runs).filter(|r| r["error"].as_str().is_some_and(|e| e.starts_with("loop guard"))).collect();
    assert_eq!(stopped.len(), 1, "A: {a_runs:?}\nB: {b_runs:?}");
    assert_eq!(stopped[0]["status"], "failed");
    // A ran once, B once, then A again was stopped: a handful of changes, not a storm.
    let changes = app.audit_for("user", &victim.id).await.into_iter().filter(|e| e.actor.kind == "workflow").count();
    assert_eq!(changes, 2, "A's reactivation and B's suspension, then stopped");
}

#[tokio::test]
async fn a_dry_run_plans_every_step_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["admin"]).await;
    let (target, _) = app.user(&["user"]).await;
    let workflow = create(
        &app,
        &token,
        json!({"name": "plan", "trigger": {"type": "manual"},
            "steps": [{"id": "check", "type": "condition", "condition": "input.amount > 100", "on_true": "note", "on_false": "end"},
                      {"id": "note", "type": "set", "values": {"label": "big: {{ input.amount }}"}},
                      {"id": "mail", "type": "send_email", "to": "ops@example.com", "subject": "{{ vars.label }}", "body": "user {{ input.user_id }}"},
                      {"id": "hook", "type": "send_webhook", "url": "https://hooks.example.com/services/SECRET/PATH", "payload": {"text": "{{ vars.label }}"}},
                      {"id": "pause", "type": "wait", "duration": "2h"},
                      {"id": "suspend", "type": "action", "action": "user.suspend", "params": {"user_id": "{{ input.user_id }}"}}]}),
    )
    .await;
    let id = workflow["id"].as_str().unwrap();
    let before = app.store().scan_all().await.unwrap().len();
    let planned =
        app.call(Method::POST, &format!("/api/v1/workflows/{id}/dry-run"), Some(&token), Some(json!({"input": {"amount": 250, "user_id": target.id}}))).await;
    assert_eq!(planned.status, StatusCode::OK, "{}", planned.body);
    assert_eq!(planned.body["status"], "succeeded", "{}", planned.body);
    let steps = planned.body["steps"].as_array().unwrap();
    let ids: Vec<&str> = steps.iter().map(|s| s["step_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["check", "note", "mail", "hook", "pause", "suspend"]);
    assert_eq!(steps[2]["input"]["subject"], "big: 250");
    assert_eq!(steps[3]["input"]["url"], "https://hooks.example.com/…", "the URL's secret path is not shown");
    assert!(steps[4]["waits_until"].is_string());
    assert_eq!(steps[5]["output"]["would_change"]["status"], "suspended");
    // Nothing sent, nothing written.
    assert!(app.sent_emails("ops@example.com").await.is_empty());
    assert_eq!(app.store().scan_all().await.unwrap().len(), before, "the table is unchanged");
    assert_eq!(shared::identity::users::get(app.store(), &target.id).await.unwrap().unwrap().status, UserStatus::Active);
    // The other branch, and a failing template named.
    let small = app.call(Method::POST, &format!("/api/v1/workflows/{id}/dry-run"), Some(&token), Some(json!({"input": {"amount": 5}}))).await;
    assert_eq!(small.body["steps"].as_array().unwrap().len(), 1);
    let broken = app.call(Method::POST, &format!("/api/v1/workflows/{id}/dry-run"), Some(&token), Some(json!({"input": {"amount": 500}}))).await;
    assert_eq!(broken.body["status"], "failed");
    assert!(broken.body["steps"][2]["error"].as_str().unwrap().contains("template"), "{}", broken.body);
}

#[tokio::test]
async fn versions_pin_runs_and_can_be_compared_and_rolled_back() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["admin"]).await;
    let mut flow = Flow::new(&app, Arc::new(workflows::engine::SystemClock)).await;
    let v1 = json!({"name": "pinned", "trigger": {"type": "manual"}, "steps": [{"id": "mark", "type": "set", "values": {"which": "one"}}]});
    let workflow = create(&app, &token, v1).await;
    let id = workflow["id"].as_str().unwrap();
    let first = app.call(Method::POST, &format!("/api/v1/workflows/{id}/runs"), Some(&token), Some(json!({}))).await;
    let v2 = json!({"name": "pinned", "trigger": {"type": "manual"}, "steps": [{"id": "mark", "type": "set", "values": {"which": "two"}}]});
    let updated = app.call(Method::PUT, &format!("/api/v1/workflows/{id}"), Some(&token), Some(v2)).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["version"], 2);
    let second = app.call(Method::POST, &format!("/api/v1/workflows/{id}/runs"), Some(&token), Some(json!({}))).await;
    flow.run(&app).await;
    let first = run_of(&app, &token, id, first.body["id"].as_str().unwrap()).await;
    let second = run_of(&app, &token, id, second.body["id"].as_str().unwrap()).await;
    assert_eq!((first["version"].as_u64(), first["context"]["vars"]["which"].as_str()), (Some(1), Some("one")), "started on v1, ran v1");
    assert_eq!((second["version"].as_u64(), second["context"]["vars"]["which"].as_str()), (Some(2), Some("two")));

    let diff = app.get(&format!("/api/v1/workflows/{id}/versions/1/diff/2"), &token).await;
    assert_eq!(diff.body["changes"], json!([{"path": "/steps/0/values/which", "from": "one", "to": "two"}]));
    let rolled = app.call(Method::POST, &format!("/api/v1/workflows/{id}/rollback"), Some(&token), Some(json!({"version": 1}))).await;
    assert_eq!(rolled.status, StatusCode::OK, "{}", rolled.body);
    assert_eq!(rolled.body["version"], 3);
    assert_eq!(rolled.body["definition"]["steps"][0]["values"]["which"], "one");
    let versions = app.get(&format!("/api/v1/workflows/{id}/versions"), &token).await;
    let listed: Vec<(u64, Option<u64>)> =
        versions.body["items"].as_array().unwrap().iter().map(|v| (v["version"].as_u64().unwrap(), v["rolled_back_from"].as_u64())).collect();
    assert_eq!(listed, [(1, None), (2, None), (3, Some(1))]);
    let actions: Vec<String> = app.audit_for("workflow", id).await.into_iter().map(|e| e.action).collect();
    for action in ["workflow.create", "workflow.update", "workflow.rollback", "workflow.run"] {
        assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
    }
}

#[tokio::test]
async fn bad_definitions_are_refused_naming_each_field() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["admin"]).await;
    let (_, analyst) = app.user(&["analyst"]).await;
    let bad = json!({"name": "bad", "trigger": {"type": "event", "event": "user.created", "filter": "event.data.email.endsWith("},
        "steps": [{"id": "mail", "type": "send_email", "to": "{{ evnt.data.email }}", "subject": "x", "body": "y", "on_success": "nowhere"},
                  {"id": "act", "type": "action", "action": "user.explode"}]});
    let refused = app.call(Method::POST, "/api/v1/workflows", Some(&token), Some(bad.clone())).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let fields = refused.error_fields();
    for field in ["trigger.filter", "steps[0].to", "steps[0].on_success", "steps[1].action"] {
        assert!(fields.contains(&field.to_string()), "{field} in {fields:?}");
    }
    let checked = app.call(Method::POST, "/api/v1/workflows/validate", Some(&token), Some(bad)).await;
    assert_eq!(checked.status, StatusCode::OK);
    assert_eq!(checked.body["valid"], false);
    assert_eq!(checked.body["errors"].as_array().unwrap().len(), fields.len());
    let unknown =
        app.call(Method::POST, "/api/v1/workflows", Some(&token), Some(json!({"name": "x", "trigger": {"type": "manual"}, "steps": [], "extra": 1}))).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(app.get("/api/v1/workflows", &analyst).await.status == StatusCode::FORBIDDEN);
    assert_eq!(app.get("/api/v1/workflows/not-an-id", &token).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_template_dry_runs_against_the_demo_data() {
    let app = TestApp::spawn().await;
    let (items, _) = keel_local::seed::generate(Utc::now(), 60, 3);
    keel_local::seed::put(app.store(), &items).await.unwrap();
    let (_, token) = app.user(&["super_admin"]).await;
    // Demo entities to run against: a user, a chart, an order.
    let of_type = |kind: &str| {
        items.iter().find(|i| shared::store::attr_s(i, "type") == Some(kind)).and_then(|i| shared::store::attr_s(i, "id")).map(str::to_string).expect(kind)
    };
    let (user_id, chart_id) = (of_type("user"), of_type("chart"));
    let order: Value = items
        .iter()
        .find(|i| shared::store::attr_s(i, "pk").is_some_and(|pk| pk.starts_with("ORDER#")))
        .map(|i| serde_dynamo::from_item(i.clone()).unwrap())
        .expect("an order");
    let templates = app.get("/api/v1/workflows/templates", &token).await;
    let names: Vec<String> = templates.body["items"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect();
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        let made = app.call(Method::POST, "/api/v1/workflows/from-template", Some(&token), Some(json!({"template": name}))).await;
        assert_eq!(made.status, StatusCode::CREATED, "{name}: {}", made.body);
        let id = made.body["id"].as_str().unwrap();
        let request = match made.body["definition"]["trigger"]["event"].as_str() {
            Some("user.created") | Some("auth.login") => json!({"target": {"type": "user", "id": user_id}}),
            Some("chart.flagged") => json!({"target": {"type": "chart", "id": chart_id}}),
            Some("order.updated") => {
                let mut data = order.clone();
                data["status"] = json!(if name == "suspend_on_chargeback" { "disputed" } else { "refunded" });
                // As the dispatcher adds it: the customer's orders by status.
                data["customer"] = json!({"orders": 3, "paid": 1, "disputed": 2});
                json!({"event": {"type": "order.updated", "target": {"type": "order", "id": order["id"]}, "data": data}})
            }
            Some("security_event.detected") => {
                json!({"event": {"type": "security_event.detected", "at": "2026-12-01T00:00:00Z", "target": {"type": "security_event", "id": "e-1"}}})
            }
            _ => json!({"input": {"user_id": user_id, "role": "moderator"}}),
        };
        let planned = app.call(Method::POST, &format!("/api/v1/workflows/{id}/dry-run"), Some(&token), Some(request)).await;
        assert_eq!(planned.status, StatusCode::OK, "{name}: {}", planned.body);
        assert_eq!(planned.body["status"], "succeeded", "{name}: {}", planned.body);
    }
}

/// Suspend or reactivate a user through the API (as an operator would).
async fn set_status(app: &TestApp, token: &str, user_id: &str, status: &str) {
    let path = format!("/api/v1/admin/users/{user_id}");
    let current = app.get(&path, token).await;
    assert_eq!(current.status, StatusCode::OK, "{}", current.body);
    let r = app.call(Method::PUT, &path, Some(token), Some(json!({"version": current.body["version"], "status": status, "reason": "abuse"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn a_workflow_raises_a_security_event_an_insight_and_a_report_through_the_same_records() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["super_admin"]).await;
    let (suspect, _) = app.user(&["user"]).await;
    let contact = "soc-workflow-events@example.com";
    let r = app
        .call(
            Method::PUT,
            "/api/v1/admin/system/config",
            Some(&token),
            Some(json!({"version": 0, "reason": "security contacts", "security_contacts": [contact]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut flow = Flow::new(&app, Arc::new(workflows::engine::SystemClock)).await;
    let workflow = create(
        &app,
        &token,
        json!({"name": "suspensions", "trigger": {"type": "event", "event": "user.suspended"},
            "steps": [{"id": "raise", "type": "action", "action": "security_event.raise",
                       "params": {"severity": "high", "principal": "{{ event.target.id }}", "summary": "An account was suspended by {{ event.actor.id }}",
                                  "recommendation": "Review the account's recent sign-ins and exports."}},
                      {"id": "insight", "type": "action", "action": "insight.create",
                       "params": {"key": "suspensions", "category": "security", "title": "Accounts are being suspended",
                                  "explanation": "{{ event.target.id }} was suspended", "recommendation": "Look for a pattern", "impact": "1"}},
                      {"id": "report", "type": "action", "action": "report.generate",
                       "params": {"template": "signups_and_activation", "formats": "csv,pdf"}}]}),
    )
    .await;
    let id = workflow["id"].as_str().unwrap();
    set_status(&app, &token, &suspect.id, "suspended").await;
    flow.run(&app).await;
    let all = runs(&app, &token, id).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["status"], "succeeded", "{}", all[0]);
    let trigger_entry = app.audit_for("user", &suspect.id).await.into_iter().find(|e| e.action == "user.suspend").expect("suspension audited");

    // The security event: the detectors' record, about the suspect, with
    // the suspension as evidence, emailed to the contacts (high).
    let event_id = all[0]["steps"][0]["output"]["event_id"].as_str().unwrap().to_string();
    let event = app.get(&format!("/api/v1/compliance/security-events/{event_id}"), &token).await;
    assert_eq!(event.status, StatusCode::OK, "{}", event.body);
    assert_eq!((event.body["kind"].as_str(), event.body["severity"].as_str()), (Some("workflow"), Some("high")), "{}", event.body);
    assert_eq!(event.body["principal"], json!(suspect.id));
    assert_eq!(event.body["evidence"], json!([trigger_entry.id]));
    assert_eq!(event.body["notified"], true);
    let detected = app.audit_for("security_event", &event_id).await;
    assert!(detected.iter().any(|e| e.action == "security_event.detected" && e.actor.kind == "workflow"), "{detected:?}");
    let listed = app.get("/api/v1/compliance/security-events?kind=workflow", &token).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert!(listed.body["events"].as_array().unwrap().iter().any(|e| e["id"] == json!(event_id)), "{}", listed.body);

    // The insight: listed beside the analytics job's, from this run.
    let insight_id = all[0]["steps"][1]["output"]["insight_id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/analytics/insights/{insight_id}");
    let insight = app.get(&path, &token).await;
    assert_eq!(insight.status, StatusCode::OK, "{}", insight.body);
    assert_eq!(insight.body["category"], "security");
    assert_eq!(insight.body["origin"]["workflow_id"], json!(id));
    assert_eq!(insight.body["evidence"]["ids"], json!([trigger_entry.id]));
    assert_eq!(insight.body["query"]["path"], json!(format!("/api/v1/workflows/{id}/runs/{}", all[0]["id"].as_str().unwrap())));
    let r = app.call(Method::PATCH, &path, Some(&token), Some(json!({"status": "acknowledged", "note": "watching"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // The report: the reports function's job, generated by the worker.
    let report_id = all[0]["steps"][2]["output"]["report_id"].as_str().unwrap().to_string();
    app.run_jobs().await;
    let report = app.get(&format!("/api/v1/reports/{report_id}"), &token).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    assert_eq!(report.body["status"], "succeeded", "{}", report.body);
    assert_eq!(report.body["files"].as_array().map(Vec::len), Some(2), "{}", report.body);
    assert!(app.audit_for("report", &report_id).await.iter().any(|e| e.action == "report.generate" && e.actor.kind == "workflow"));
    assert_eq!(app.sent_emails(contact).await.len(), 1, "the high event's alert");

    // A second suspension: a new event, and the same insight (its key)
    // with new figures and its lifecycle kept.
    let (second, _) = app.user(&["user"]).await;
    set_status(&app, &token, &second.id, "suspended").await;
    flow.run(&app).await;
    let all = runs(&app, &token, id).await;
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|r| r["status"] == "succeeded"), "{all:?}");
    let newest = all.iter().find(|r| r["steps"][1]["output"]["created"] == false).expect("the second run updated the insight");
    assert_eq!(newest["steps"][1]["output"]["insight_id"], json!(insight_id));
    assert_ne!(newest["steps"][0]["output"]["event_id"], json!(event_id));
    let insight = app.get(&path, &token).await;
    assert_eq!(insight.body["status"], "acknowledged", "{}", insight.body);
    assert!(insight.body["explanation"].as_str().unwrap().contains(&second.id), "{}", insight.body);

    // An analytics refresh does not find it (it is no model's finding) and
    // leaves it as it is: not stale.
    let r = app.call(Method::POST, "/api/v1/analytics/refresh", Some(&token), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    app.run_jobs().await;
    let insight = app.get(&path, &token).await;
    assert_eq!(insight.body["stale"], false, "{}", insight.body);

    // Fixed parameters are checked when saving, each named.
    let bad = app
        .call(
            Method::POST,
            "/api/v1/workflows/validate",
            Some(&token),
            Some(json!({"name": "x", "trigger": {"type": "manual"},
                "steps": [{"id": "a", "type": "action", "action": "security_event.raise", "params": {"severity": "dire", "summary": "s", "recommendation": "r"}},
                          {"id": "b", "type": "action", "action": "insight.create", "params": {"title": "t", "explanation": "e", "recommendation": "r", "category": "vibes"}},
                          {"id": "c", "type": "action", "action": "report.generate", "params": {"template": "nope", "formats": "pdf,doc"}}]})),
        )
        .await;
    assert_eq!((bad.status, &bad.body["valid"]), (StatusCode::OK, &json!(false)), "{}", bad.body);
    let fields: Vec<&str> = bad.body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    for field in ["steps[0].params.severity", "steps[1].params.category", "steps[2].params.template", "steps[2].params.formats"] {
        assert!(fields.contains(&field), "{field} missing from {fields:?}");
    }
    // A workflow that raises security events on security events would
    // trigger itself: refused.
    let looping = app
        .call(
            Method::POST,
            "/api/v1/workflows",
            Some(&token),
            Some(json!({"name": "echo", "trigger": {"type": "event", "event": "security_event.detected"},
                "steps": [{"id": "a", "type": "action", "action": "security_event.raise", "params": {"severity": "low", "summary": "s", "recommendation": "r"}}]})),
        )
        .await;
    assert_eq!(looping.status, StatusCode::BAD_REQUEST, "{}", looping.body);
}

#[tokio::test]
async fn deleting_a_workflow_stops_it_cancels_its_runs_and_keeps_its_history() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["admin"]).await;
    let (someone, _) = app.user(&["user"]).await;
    let mut flow = Flow::new(&app, Arc::new(workflows::engine::SystemClock)).await;
    let waiting = create(
        &app,
        &token,
        json!({"name": "slow", "trigger": {"type": "event", "event": "user.suspended"},
            "steps": [{"id": "pause", "type": "wait", "duration": "1d"},
                      {"id": "mail", "type": "send_email", "to": "slow@example.com", "subject": "later", "body": "later"}]}),
    )
    .await;
    let id = waiting["id"].as_str().unwrap().to_string();
    let starter =
        create(&app, &token, json!({"name": "starter", "trigger": {"type": "manual"}, "steps": [{"id": "go", "type": "run_workflow", "workflow_id": id}]}))
            .await;
    let starter_id = starter["id"].as_str().unwrap().to_string();
    set_status(&app, &token, &someone.id, "suspended").await;
    flow.run(&app).await;
    let run = runs(&app, &token, &id).await.remove(0);
    assert_eq!(run["status"], "waiting", "{run}");
    let run_id = run["id"].as_str().unwrap().to_string();

    // Another workflow starts it: refused, naming that one.
    let path = format!("/api/v1/workflows/{id}");
    let refused = app.call(Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(refused.body["detail"].as_str().unwrap().contains(&starter_id), "{}", refused.body);
    let r = app.call(Method::DELETE, &format!("/api/v1/workflows/{starter_id}"), Some(&token), None).await;
    assert_eq!((r.status, r.body["cancelled_runs"].as_u64()), (StatusCode::OK, Some(0)), "{}", r.body);

    // Deleted: its waiting run cancelled, gone from the API, audited.
    let deleted = app.call(Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert_eq!(deleted.body["cancelled_runs"], 1, "{}", deleted.body);
    assert_eq!(app.get(&path, &token).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.call(Method::DELETE, &path, Some(&token), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.call(Method::POST, &format!("{path}/runs"), Some(&token), Some(json!({}))).await.status, StatusCode::NOT_FOUND);
    let list = app.get("/api/v1/workflows", &token).await;
    assert!(!list.body["items"].as_array().unwrap().iter().any(|w| w["id"] == json!(id)), "{}", list.body);
    let stored = workflows::model::run(app.store(), &run_id).await.unwrap().unwrap();
    assert_eq!(stored.status, workflows::model::RunStatus::Cancelled);
    let audit = app.audit_for("workflow", &id).await;
    assert!(audit.iter().any(|e| e.action == "workflow.delete"), "{audit:?}");
    assert!(audit.iter().any(|e| e.action == "workflow_run.cancel" && e.reason.as_deref().is_some_and(|r| r.contains("deletion"))), "{audit:?}");
    // Versions stay in the table.
    assert!(workflows::model::version(app.store(), &id, 1).await.unwrap().is_some());

    // A run its deletion did not reach (started from a trigger index read
    // just before it) ends failed at its next step, naming why.
    let version = workflows::model::version(app.store(), &id, 1).await.unwrap().unwrap();
    let late_id = uuid::Uuid::now_v7().to_string();
    let origin = workflows::engine::Origin::new("event", json!({"type": "user.suspend"}), json!({}));
    let (_, writes) = workflows::engine::start_with_id(&late_id, &version, origin, Utc::now(), app.store().table()).unwrap();
    app.store().transact(writes).await.unwrap();
    flow.run(&app).await;
    let late = workflows::model::run(app.store(), &late_id).await.unwrap().unwrap();
    assert_eq!(late.status, workflows::model::RunStatus::Failed, "{late:?}");
    assert!(late.error.as_deref().is_some_and(|e| e.contains("the workflow was deleted")), "{late:?}");

    // Its event no longer starts it.
    set_status(&app, &token, &someone.id, "active").await;
    set_status(&app, &token, &someone.id, "suspended").await;
    flow.run(&app).await;
    assert_eq!(workflows::model::runs_of(app.store(), &id, 10).await.unwrap().len(), 2, "no new run (the first and the late one)");
    assert!(app.sent_emails("slow@example.com").await.is_empty());
}
