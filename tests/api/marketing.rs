//! Email marketing against the emulator's SES and SNS: the double opt-in
//! round trip (the confirmation email's single-use link, SES's contact
//! list), campaigns whose every email carries RFC 8058's headers with its
//! own link, one-click unsubscribe honoured by the next campaign, and SES
//! bounce and complaint notifications (in SES's documented shape,
//! published to the stack's SNS topic and delivered to its queue) putting
//! addresses on the suppression list that every send checks.

use std::time::{Duration, Instant};

use http::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, send_to};
use crate::report_schedules::raw_emails;

fn address() -> String {
    format!("{}@example.com", uuid::Uuid::new_v4().simple())
}

async fn subscribe(app: &TestApp, body: Value) -> crate::helpers::Response {
    app.call(Method::POST, "/api/v1/integrations/marketing/subscribe", None, Some(body)).await
}

/// The path of the confirmation link in the one confirmation email sent to `email`.
async fn confirmation_path(app: &TestApp, email: &str) -> String {
    let emails = app.sent_emails(email).await;
    assert_eq!(emails.len(), 1, "one confirmation email: {emails:?}");
    let start = emails[0].find("http://keel.test/api/v1/integrations/marketing/confirm/").expect("a confirmation link");
    let link: String = emails[0][start..].chars().take_while(|c| !c.is_whitespace()).collect();
    link.strip_prefix("http://keel.test").unwrap().to_string()
}

/// Subscribe and confirm `email` (through the emails, as a person would).
async fn confirmed(app: &TestApp, email: &str) {
    assert_eq!(subscribe(app, json!({"email": email})).await.status, StatusCode::ACCEPTED);
    app.run_jobs().await;
    let path = confirmation_path(app, email).await;
    let r = app.call(Method::POST, &path, None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.run_jobs().await;
}

async fn campaign(app: &TestApp, token: &str, subject: &str) {
    let r = app
        .call(
            Method::POST,
            "/api/v1/integrations/marketing/campaigns",
            Some(token),
            Some(json!({"list": "news", "subject": subject, "text": "What is new in Keel."})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    app.run_jobs().await;
}

/// A header's value in a raw message (unfolded).
fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or(raw).replace("\r\n ", " ").replace("\r\n\t", " ");
    head.lines().find_map(|line| line.strip_prefix(&format!("{name}: ")).map(str::to_string))
}

async fn lookup(app: &TestApp, token: &str, email: &str) -> crate::helpers::Response {
    app.get(&format!("/api/v1/integrations/marketing/subscribers?email={email}"), token).await
}

/// Publish an SES notification to the stack's SES events topic, as SES
/// does, and let the jobs worker consume the queue SNS delivers it to.
async fn ses_notifies(app: &TestApp, notification: Value) {
    let topic = &app.stack.resources["SesEventsTopic"].reference;
    let sns = aws_sdk_sns::Client::new(&app.sdk);
    sns.publish().topic_arn(topic).message(notification.to_string()).send().await.expect("publish to the SES events topic");
    let queue = &app.stack.resources["SesEventsQueue"];
    let n = keel_local::poller::poll_once(&app.app.clients.sqs, &queue.reference, &queue.attributes["Arn"], &app.app.worker, 1).await.unwrap();
    assert_eq!(n, 1, "the notification reached the SES events queue");
}

/// SES's GetContact answer for `email` in Keel's contact list, as JSON
/// (the emulator writes its timestamps as strings, which the SDK's
/// deserializer refuses, so the raw answer is read), or none.
async fn ses_contact(app: &TestApp, email: &str) -> Option<Value> {
    let ses = aws_sdk_sesv2::Client::new(&app.sdk);
    match ses.get_contact().contact_list_name(shared::domain::marketing::CONTACT_LIST).email_address(email).send().await {
        Ok(contact) => Some(json!({"EmailAddress": contact.email_address(), "UnsubscribeAll": contact.unsubscribe_all()})),
        Err(e) => {
            let raw = e.raw_response()?;
            if raw.status().as_u16() != 200 {
                return None;
            }
            serde_json::from_slice(raw.body().bytes()?).ok()
        }
    }
}

#[tokio::test]
async fn double_opt_in_round_trip_with_a_single_use_link_and_the_ses_contact_list() {
    let app = TestApp::spawn().await;
    let (_, support) = app.user(&["support"]).await;
    let email = address();
    let first = subscribe(&app, json!({"email": email, "lists": ["news", "product"]})).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(first.body["status"], "pending");
    assert_eq!(lookup(&app, &support, &email).await.body["subscriber"]["status"], "pending");
    // Subscribing again at once sends no second email; the answer is the same.
    let again = subscribe(&app, json!({"email": email.to_uppercase(), "lists": ["news", "product"]})).await;
    assert_eq!((again.status, &again.body), (first.status, &first.body));
    app.run_jobs().await;
    let path = confirmation_path(&app, &email).await;

    // The link opens a page whose button confirms (a GET changes nothing).
    let page = app.call(Method::GET, &path, None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.as_str().unwrap().contains(&format!("<form method=\"post\" action=\"{path}\">")), "{}", page.body);
    assert_eq!(lookup(&app, &support, &email).await.body["subscriber"]["status"], "pending");
    let confirmed = app.call(Method::POST, &path, None, None).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    assert_eq!(confirmed.body, json!({"status": "confirmed", "lists": ["news", "product"]}));
    // Single use.
    assert_eq!(app.call(Method::POST, &path, None, None).await.status, StatusCode::NOT_FOUND);
    let view = lookup(&app, &support, &email).await;
    assert_eq!((view.status, view.body["subscriber"]["status"].as_str()), (StatusCode::OK, Some("confirmed")), "{}", view.body);
    assert!(view.body["suppressed"].is_null());

    // The contact job puts the address in SES's contact list.
    app.run_jobs().await;
    let contact = ses_contact(&app, &email).await.expect("the SES contact");
    assert_eq!((contact["EmailAddress"].as_str(), contact["UnsubscribeAll"].as_bool()), (Some(email.as_str()), Some(false)), "{contact}");

    // A confirmed address subscribing again gets no email, and the same answer.
    let known = subscribe(&app, json!({"email": email})).await;
    let unknown = subscribe(&app, json!({"email": address()})).await;
    assert_eq!((known.status, &known.body), (unknown.status, &unknown.body));
    app.run_jobs().await;
    assert_eq!(app.sent_emails(&email).await.len(), 1);

    // Audited, without the address.
    let key = shared::domain::marketing::email_key(&email);
    let actions: Vec<String> = app.audit_for("marketing_subscriber", &key).await.into_iter().map(|e| e.action).collect();
    assert_eq!(actions, ["marketing.confirmed", "marketing.subscribed"]);
    // The consent held shows in the GDPR status and the lawful-basis control:
    // this address confirmed, the other one asked (pending).
    // (The table's stream through the whole streams worker, rollups included.)
    let arn = &app.stack.resources["Table"].attributes["StreamArn"];
    let mut stream =
        keel_local::stream_reader::StreamReader::open(aws_sdk_dynamodbstreams::Client::new(&app.sdk), arn, keel_local::stream_reader::Start::TrimHorizon)
            .await
            .unwrap();
    stream.drain(&app.app.streams).await.unwrap();
    let (_, officer) = app.user(&["auditor"]).await;
    let gdpr = app.get("/api/v1/compliance/gdpr", &officer).await;
    assert_eq!(gdpr.body["consent"], json!({"marketing_pending": 1, "marketing_confirmed": 1, "marketing_unsubscribed": 0}), "{}", gdpr.body);
    let marketing = gdpr.body["data_inventory"].as_array().unwrap().iter().find(|e| e["record"] == "email-marketing subscription").unwrap().clone();
    assert!(marketing["lawful_basis"].as_str().unwrap().starts_with("consent"), "{marketing}");
    let report = app.get("/api/v1/compliance/report", &officer).await;
    let control = report.body["controls"].as_array().unwrap().iter().find(|c| c["id"] == "lawful_basis").unwrap().clone();
    assert_eq!((control["status"].as_str(), control["evidence"]["consent"]["marketing_confirmed"].as_i64()), (Some("pass"), Some(1)), "{control}");
    // Looking a person up needs pii:read.
    let (_, plain) = app.user(&["user"]).await;
    assert_eq!(lookup(&app, &plain, &email).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_campaign_email_carries_one_click_unsubscribe_and_the_next_campaign_honours_it() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["super_admin"]).await;
    let (ada, bob) = (address(), address());
    confirmed(&app, &ada).await;
    confirmed(&app, &bob).await;
    campaign(&app, &admin, "Keel in December").await;

    let mut links = Vec::new();
    for to in [&ada, &bob] {
        let raw = raw_emails(&app, to).await;
        assert_eq!(raw.len(), 1, "one campaign email to {to}");
        assert_eq!(header(&raw[0], "Subject").as_deref(), Some("Keel in December"));
        let unsubscribe = header(&raw[0], "List-Unsubscribe").expect("List-Unsubscribe");
        let (https, mailto) = unsubscribe.split_once(", ").expect("two URIs");
        assert!(https.starts_with("<http://keel.test/api/v1/integrations/marketing/unsubscribe/") && https.ends_with('>'), "{unsubscribe}");
        assert!(mailto.starts_with("<mailto:noreply@") && mailto.ends_with("?subject=unsubscribe>"), "{unsubscribe}");
        assert_eq!(header(&raw[0], "List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
        links.push(https.trim_matches(['<', '>']).strip_prefix("http://keel.test").unwrap().to_string());
    }
    assert_ne!(links[0], links[1], "each email its own link");

    // What a mail client sends for a one-click unsubscribe (RFC 8058).
    let one_click = |path: &str, body: &'static str| {
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(body))
            .unwrap()
    };
    let wrong = send_to(app.router(), one_click(&links[0], "List-Unsubscribe=Maybe")).await;
    assert_eq!((wrong.status, wrong.error_fields()), (StatusCode::BAD_REQUEST, vec!["List-Unsubscribe".to_string()]));
    let started = Instant::now();
    let r = send_to(app.router(), one_click(&links[0], "List-Unsubscribe=One-Click")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(1), "unsubscribed within a second");
    assert_eq!(r.body, json!({"status": "unsubscribed", "lists": []}));
    // Again: the same answer, nothing changes.
    assert_eq!(send_to(app.router(), one_click(&links[0], "List-Unsubscribe=One-Click")).await.status, StatusCode::OK);

    // Unsubscribed from its only list: out of SES's contact list too.
    assert!(ses_contact(&app, &bob).await.is_some());
    app.run_jobs().await;
    assert!(ses_contact(&app, &ada).await.is_none(), "removed from the SES contact list");
    campaign(&app, &admin, "Keel in January").await;
    assert_eq!(raw_emails(&app, &ada).await.len(), 1, "no email after unsubscribing");
    assert_eq!(raw_emails(&app, &bob).await.len(), 2);
    let key = shared::domain::marketing::email_key(&ada);
    assert_eq!(app.audit_for("marketing_subscriber", &key).await[0].action, "marketing.unsubscribed");

    // The hub: built, connected, with the last successful send.
    let hub = app.get("/api/v1/integrations/available", &admin).await;
    let entry = hub.body["integrations"].as_array().unwrap().iter().find(|i| i["name"] == "ses_marketing").unwrap().clone();
    assert_eq!((entry["built"].as_bool(), entry["status"].as_str()), (Some(true), Some("connected")), "{entry}");
    assert!(entry["last_success_at"].is_string(), "{entry}");
}

#[tokio::test]
async fn bounces_and_complaints_suppress_and_suppressed_addresses_get_no_email() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["super_admin"]).await;
    let (bouncing, complaining, fine) = (address(), address(), address());
    confirmed(&app, &bouncing).await;
    confirmed(&app, &fine).await;
    // Subscribed; its confirmation not sent yet.
    assert_eq!(subscribe(&app, json!({"email": complaining})).await.status, StatusCode::ACCEPTED);

    // SES's notification shapes (Amazon SES Developer Guide, "Amazon SNS
    // notification contents"): a transient bounce changes nothing, a
    // permanent one and a complaint suppress.
    let bounce = |kind: &str, to: &str| {
        json!({
            "notificationType": "Bounce",
            "bounce": {"bounceType": kind, "bounceSubType": "General", "bouncedRecipients": [{"emailAddress": to, "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
                       "timestamp": "2026-12-04T12:00:00.000Z", "feedbackId": "0100018c-bounce", "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com"},
            "mail": {"timestamp": "2026-12-04T11:59:59.000Z", "source": "noreply@keel.test", "messageId": "0100018c-msg", "destination": [to]}
        })
    };
    ses_notifies(&app, bounce("Transient", &bouncing)).await;
    let (_, support) = app.user(&["support"]).await;
    assert!(lookup(&app, &support, &bouncing).await.body["suppressed"].is_null());
    ses_notifies(&app, bounce("Permanent", &bouncing)).await;
    ses_notifies(
        &app,
        json!({
            "notificationType": "Complaint",
            "complaint": {"complainedRecipients": [{"emailAddress": complaining}], "timestamp": "2026-12-04T12:01:00.000Z", "feedbackId": "0100018c-complaint", "complaintFeedbackType": "abuse"},
            "mail": {"timestamp": "2026-12-04T11:59:59.000Z", "source": "noreply@keel.test", "messageId": "0100018c-msg2", "destination": [complaining]}
        }),
    )
    .await;
    let view = lookup(&app, &support, &bouncing).await;
    assert_eq!(view.body["suppressed"]["reason"], "bounce", "{}", view.body);
    assert_eq!(view.body["suppressed"]["detail"], "Permanent/General");
    assert_eq!(view.body["subscriber"]["status"], "unsubscribed");
    assert_eq!(lookup(&app, &support, &complaining).await.body["suppressed"]["reason"], "complaint");

    // No confirmation to the complaining address, no campaign to the bounced one.
    app.run_jobs().await;
    assert!(app.sent_emails(&complaining).await.is_empty(), "a suppressed address gets no confirmation");
    campaign(&app, &admin, "After the bounce").await;
    assert!(raw_emails(&app, &bouncing).await.is_empty());
    assert_eq!(raw_emails(&app, &fine).await.len(), 1);
    // Subscribing it again sends nothing, and answers as for anyone.
    assert_eq!(subscribe(&app, json!({"email": bouncing})).await.body["status"], "pending");
    app.run_jobs().await;
    assert_eq!(app.sent_emails(&bouncing).await.len(), 1, "only the first confirmation, from before the bounce");
    let key = shared::domain::marketing::email_key(&bouncing);
    assert_eq!(app.audit_for("marketing_subscriber", &key).await[0].action, "marketing.suppressed");
}

#[tokio::test]
async fn bad_input_names_its_field() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["super_admin"]).await;
    for (body, field) in [
        (json!({}), "email"),
        (json!({"email": "not-an-address"}), "email"),
        (json!({"email": "a@example.com", "lists": []}), "lists"),
        (json!({"email": "a@example.com", "lists": ["news", "Bad List"]}), "lists[1]"),
    ] {
        let r = subscribe(&app, body.clone()).await;
        assert_eq!((r.status, r.error_fields()), (StatusCode::BAD_REQUEST, vec![field.to_string()]), "{body}: {}", r.body);
    }
    for (body, field) in [
        (json!({"subject": "s", "text": "t"}), "list"),
        (json!({"list": "news", "text": "t"}), "subject"),
        (json!({"list": "news", "subject": "two\nlines", "text": "t"}), "subject"),
        (json!({"list": "news", "subject": "s", "text": ""}), "text"),
    ] {
        let r = app.call(Method::POST, "/api/v1/integrations/marketing/campaigns", Some(&admin), Some(body.clone())).await;
        assert_eq!((r.status, r.error_fields()), (StatusCode::BAD_REQUEST, vec![field.to_string()]), "{body}: {}", r.body);
    }
    let r = lookup(&app, &admin, "nope").await;
    assert_eq!((r.status, r.error_fields()), (StatusCode::BAD_REQUEST, vec!["email".to_string()]));
    assert!(raw_emails(&app, "a@example.com").await.is_empty());
}

#[tokio::test]
async fn erasing_a_person_deletes_their_subscription_and_leaves_no_address_behind() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["super_admin"]).await;
    let (_, support) = app.user(&["support"]).await;
    let (me, token) = app.user(&["user"]).await;
    let email = me.email.as_str().to_string();
    confirmed(&app, &email).await;
    campaign(&app, &admin, "Before the erasure").await;
    assert_eq!(raw_emails(&app, &email).await.len(), 1);

    let r = app.call(Method::DELETE, &format!("/api/v1/data/user/{}", me.id), Some(&token), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    app.run_jobs().await;
    assert_eq!(lookup(&app, &support, &email).await.status, StatusCode::NOT_FOUND);
    let items = app.store().store().scan_all().await.unwrap();
    let holding: Vec<String> = items.iter().map(|i| format!("{i:?}")).filter(|text| text.contains(&email)).collect();
    assert!(holding.is_empty(), "items still holding the address: {holding:?}");
    campaign(&app, &admin, "After the erasure").await;
    assert_eq!(raw_emails(&app, &email).await.len(), 1, "nothing sent after the erasure");
}
