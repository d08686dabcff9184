//! Test harness: one AWS emulator per test process (started here unless
//! `KEEL_TEST_AWS_ENDPOINT` names a running one), and a fresh stack —
//! created from template.yaml under a unique name — per test, so tests run
//! in parallel without sharing state.

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use keel_local::app::LocalApp;
use keel_local::provision::Stack;
use keel_local::stream_reader::{OutboxOnly, Start, StreamReader};
use serde_json::Value;
use shared::audit::{Actor, AuditEntry};
use shared::identity::users::{Email, User, UserStatus};
use tokio::sync::OnceCell;
use tower::ServiceExt;

static ENDPOINT: OnceCell<String> = OnceCell::const_new();
static MOTO: std::sync::OnceLock<keel_local::moto::Moto> = std::sync::OnceLock::new();

pub async fn endpoint() -> String {
    ENDPOINT
        .get_or_init(|| async {
            if let Ok(e) = std::env::var("KEEL_TEST_AWS_ENDPOINT") {
                return e;
            }
            let moto = keel_local::moto::Moto::start(None).await.expect("start moto_server (run `make venv`)");
            let endpoint = moto.endpoint.clone();
            // Kept for the life of the process; the guard stops moto when
            // the process exits.
            let _ = MOTO.set(moto);
            endpoint
        })
        .await
        .clone()
}

pub struct TestApp {
    pub app: LocalApp,
    pub stack: Stack,
    pub sdk: aws_config::SdkConfig,
    pub endpoint: String,
    /// The table stream as the outbox reads it (opened on first use).
    outbox_reader: tokio::sync::Mutex<Option<StreamReader>>,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Response {
    /// The field names of a problem+json validation error.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"].as_array().map(|a| a.iter().map(|e| e["field"].as_str().unwrap_or("").to_string()).collect()).unwrap_or_default()
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(HashMap::new()).await
    }

    pub async fn spawn_with(overrides: HashMap<String, String>) -> TestApp {
        shared::platform::telemetry::init_for_tests();
        let endpoint = endpoint().await;
        let sdk = keel_local::sdk_config(&endpoint).await;
        let template = keel_local::template::Template::load(&keel_local::repo_root().join("template.yaml")).unwrap();
        let name = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut params = HashMap::from([("PublicUrl".to_string(), "http://keel.test".to_string()), ("EmailFrom".to_string(), format!("noreply@{name}.test"))]);
        params.extend(overrides);
        let stack = keel_local::provision::provision(&sdk, &template, &name, &params).await.expect("provision stack");
        let app = keel_local::app::build(&sdk, &stack.env).await.expect("build app");
        TestApp { app, stack, sdk, endpoint, outbox_reader: Default::default() }
    }

    pub fn router(&self) -> Router {
        self.app.router.clone()
    }

    pub fn store(&self) -> &shared::audit::Journal {
        &self.app.platform.store
    }

    /// Send a request through the merged router (the local/API Gateway path).
    pub async fn send(&self, request: Request<Body>) -> Response {
        send_to(self.router(), request).await
    }

    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Response {
        self.send(request(method, path, token, body)).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// Create a user with `roles` and a password (`PASSWORD`) directly in the store (as
    /// the system), and mint an access token for it.
    pub async fn user(&self, roles: &[&str]) -> (User, String) {
        let email = Email::parse(&format!("{}@example.com", uuid::Uuid::new_v4().simple())).unwrap();
        let mut user = User::new(&email, "Test User", roles.iter().map(|r| r.to_string()).collect(), UserStatus::Active);
        user.password_hash = Some(password_hash().to_string());
        let audit = AuditEntry::new(&Actor::system("tests"), "user.create", "user", &user.id);
        shared::identity::users::create(self.store(), &user, audit).await.unwrap();
        let grant = shared::identity::token::SessionGrant::new(&[shared::identity::token::amr::PASSWORD], None);
        let token = self.app.signer.access_token(&user, "test-session", &grant).await.unwrap().token;
        (user, token)
    }

    /// Create a custom role with `permissions` directly in the store (as the
    /// system), under a fresh name; this instance sees it at once.
    pub async fn role(&self, permissions: &[&str]) -> shared::identity::roles::CustomRole {
        let name = format!("r{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let names: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
        let set = shared::identity::roles::parse_permissions("permissions", &names).unwrap();
        let role = shared::identity::roles::CustomRole::new(&name, "A test role", set, false);
        let audit = AuditEntry::new(&Actor::system("tests"), "role.create", "role", &name);
        shared::identity::roles::create(self.store(), &role, audit).await.unwrap();
        // As the admin function does after a role change it made.
        self.app.platform.roles.invalidate();
        role
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.call(Method::POST, "/api/v1/auth/login", None, Some(serde_json::json!({ "email": email, "password": password }))).await
    }

    /// Send what the outbox holds (committed jobs, read from the table's
    /// stream as the streams worker would) and run the jobs queue until both
    /// are empty, as Lambda's event sources would. Returns the messages run.
    pub async fn run_jobs(&self) -> usize {
        let url = &self.stack.env["KEEL_JOBS_QUEUE_URL"];
        let arn = &self.stack.resources["JobsQueue"].attributes["Arn"];
        let mut total = 0;
        loop {
            let sent = self.send_outbox().await;
            let n = keel_local::poller::poll_once(&self.app.clients.sqs, url, arn, &self.app.worker, 0).await.unwrap();
            if n == 0 && sent == 0 {
                return total;
            }
            total += n;
        }
    }

    /// Put a job's message on the queue again, as an at-least-once delivery
    /// (or a second send) would.
    pub async fn redeliver(&self, job: &shared::domain::jobs::Job) {
        let body = serde_json::to_string(&job.message()).unwrap();
        shared::domain::jobs::send(&self.app.clients.sqs, &self.stack.env["KEEL_JOBS_QUEUE_URL"], &[body]).await.unwrap();
    }

    /// Run what is on the jobs queue now, without sending the outbox first.
    pub async fn run_jobs_queue_only(&self) -> usize {
        let url = &self.stack.env["KEEL_JOBS_QUEUE_URL"];
        let arn = &self.stack.resources["JobsQueue"].attributes["Arn"];
        keel_local::poller::poll_once(&self.app.clients.sqs, url, arn, &self.app.worker, 0).await.unwrap()
    }

    /// Read the table's stream through the outbox dispatcher (`dispatcher`,
    /// the stack's own unless a test swaps it); the records it acknowledged.
    pub async fn send_outbox_with(&self, dispatcher: &streams::Worker) -> usize {
        let mut reader = self.outbox_reader.lock().await;
        if reader.is_none() {
            let arn = &self.stack.resources["Table"].attributes["StreamArn"];
            *reader = Some(StreamReader::open(aws_sdk_dynamodbstreams::Client::new(&self.sdk), arn, Start::TrimHorizon).await.unwrap());
        }
        reader.as_mut().unwrap().drain(&OutboxOnly(dispatcher)).await.unwrap()
    }

    pub async fn send_outbox(&self) -> usize {
        self.send_outbox_with(&self.app.streams).await
    }

    /// Emails the emulator has accepted for sending to `to`.
    pub async fn sent_emails(&self, to: &str) -> Vec<String> {
        // The emulator builds data.json by walking every model while other
        // tests' requests change them, and answers 500 when one changes
        // mid-walk: ask again until it returns a snapshot.
        let mut data = Value::Null;
        for _ in 0..20 {
            data = reqwest_like_get(&format!("{}/moto-api/data.json", self.endpoint)).await;
            if data.is_object() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        data["ses"]["Message"]
            .as_array()
            .map(|messages| {
                messages
                    .iter()
                    .filter(|m| m["destinations"]["ToAddresses"].as_array().is_some_and(|a| a.iter().any(|x| x == to)))
                    .filter_map(|m| m["body"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Audit entries about a target, newest first (straight from the table).
    pub async fn audit_for(&self, target_type: &str, target_id: &str) -> Vec<AuditEntry> {
        shared::audit::pseudonyms::entries_for_target(self.store(), target_type, target_id).await.unwrap()
    }
}

pub const PASSWORD: &str = "correct horse battery staple";

/// A tiny HTTP GET over loopback (the emulator's own API), without pulling
/// an HTTP client crate into the build.
async fn reqwest_like_get(url: &str) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    stream.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// Send a request to a router: the stack's own, or another instance of the
/// functions (with its own caches) on the same stack.
pub async fn send_to(router: Router, request: Request<Body>) -> Response {
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body =
        if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())) };
    Response { status, headers, body }
}

/// A request as a client sends it (JSON body, bearer token, client address).
pub fn request(method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path).header("user-agent", "keel-tests").header("x-forwarded-for", "203.0.113.9");
    if let Some(t) = token {
        builder = builder.header("authorization", format!("Bearer {t}"));
    }
    match body {
        Some(b) => builder.header("content-type", "application/json").body(Body::from(b.to_string())).unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

/// `PASSWORD`'s argon2id hash, made once: test users all share it (the
/// role walks create thousands of users, and each hash takes 19 MiB and a
/// noticeable time).
pub fn password_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| shared::platform::crypto::hash_password(PASSWORD).expect("hash"))
}
