//! The hub: `GET /api/v1/integrations/available` (the catalogue with each
//! integration's status here), `PUT /api/v1/integrations/{name}/config`
//! (credentials sealed with the data key, never returned: a masked hint)
//! and `POST /api/v1/integrations/{name}/test` (a real call to the
//! service with those credentials, its outcome recorded).
//!
//! Keys: `INTEGRATION#<name> / CONFIG` (settings in the clear, secrets as
//! one sealed JSON map bound to the name, hints); the health record is
//! `shared::domain::integration_health` (`INTEGRATION#<name> / HEALTH`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use shared::audit::{AuditEntry, Outcome};
use shared::domain::integration_health::{self, IntegrationHealth};
use shared::http::Caller;
use shared::http::extract::ValidJson;
use shared::platform::crypto::Sealed;
use shared::platform::error::{Error, FieldError, Result};
use shared::store::{Item, Write, attr_s, s, timestamp};
use utoipa::ToSchema;

use crate::{IntegrationsState, calendar, delivery, marketing, social, ssrf, webhooks};

/// How long a connection test may take.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_VALUE_CHARS: usize = 1024;

/// One thing an integration needs.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Field {
    pub name: &'static str,
    /// Sealed and never shown again (a hint of its last 4 characters).
    pub secret: bool,
    pub required: bool,
    pub description: &'static str,
}

const fn field(name: &'static str, secret: bool, required: bool, description: &'static str) -> Field {
    Field { name, secret, required, description }
}

/// A catalogue entry.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub name: &'static str,
    pub title: &'static str,
    pub category: &'static str,
    pub description: &'static str,
    /// Set through `PUT …/{name}/config` (the others are set elsewhere, or
    /// not built yet).
    pub fields: &'static [Field],
    /// Usable in this version of Keel.
    pub built: bool,
    pub setup: &'static str,
}

pub const CATALOGUE: &[Entry] = &[
    Entry {
        name: "webhooks",
        title: "Outgoing webhooks",
        category: "automation",
        description: "Audit events delivered to your endpoints, signed after Standard Webhooks, retried, logged and replayable.",
        fields: &[],
        built: true,
        setup: "Add endpoints with POST /api/v1/integrations/webhooks.",
    },
    Entry {
        name: "stripe",
        title: "Stripe",
        category: "payments",
        description: "Stripe's events (checkout, invoices, refunds, subscriptions) become Keel's orders.",
        fields: &[
            field("api_key", true, true, "A secret or restricted key (sk_… or rk_…) the connection test reads the balance with."),
            field("api_base", false, false, "Stripe's API base URL (default https://api.stripe.com)."),
        ],
        built: true,
        setup: "Point a Stripe webhook endpoint at /api/v1/integrations/payments/stripe/webhook and set the StripeWebhookSecret parameter.",
    },
    Entry {
        name: "segment",
        title: "Segment",
        category: "analytics",
        description: "Keel's domain events (sign-ups, sign-ins, orders, chart actions) to Segment's HTTP tracking API, in batches of at most 500 KB, deduplicated by messageId.",
        fields: &[
            field("write_key", true, true, "The source's write key."),
            field("endpoint", false, false, "Tracking API base URL (default https://api.segment.io; EU: https://events.eu1.segmentapis.com)."),
        ],
        built: true,
        setup: "Store the write key; the connection test sends one track call. Events are forwarded every minute from the time it is configured.",
    },
    Entry {
        name: "mixpanel",
        title: "Mixpanel",
        category: "analytics",
        description: "Keel's domain events to Mixpanel's /import API, 2,000 per call, deduplicated by $insert_id.",
        fields: &[
            field("project_id", false, true, "The Mixpanel project id (digits)."),
            field("api_secret", true, true, "The project's API secret."),
            field("endpoint", false, false, "API base URL (default https://api.mixpanel.com; EU: https://api-eu.mixpanel.com)."),
        ],
        built: true,
        setup: "Store the project id and API secret; the connection test imports one event. Events are forwarded every minute from the time it is configured.",
    },
    Entry {
        name: "ga4",
        title: "Google Analytics 4",
        category: "analytics",
        description: "Keel's domain events to the GA4 Measurement Protocol, 25 per request and person.",
        fields: &[
            field("measurement_id", false, true, "The data stream's measurement id (G-…)."),
            field("api_secret", true, true, "A Measurement Protocol API secret of that stream."),
            field("endpoint", false, false, "Base URL (default https://www.google-analytics.com)."),
        ],
        built: true,
        setup: "Store the measurement id and API secret; the connection test asks the validation server. Events are forwarded every minute from the time it is configured.",
    },
    Entry {
        name: "caldav",
        title: "Calendar (CalDAV)",
        category: "calendar",
        description: "Two-way sync of each user's renewals and scheduled reports with their CalDAV calendar (Fastmail, iCloud, Nextcloud, Radicale…).",
        fields: &[
            field("url", false, true, "A calendar collection's URL (for the connection test; users connect their own)."),
            field("username", false, true, "The account's user name."),
            field("password", true, true, "Its password or app password."),
        ],
        built: true,
        setup: "Each user connects their own calendar with POST /api/v1/integrations/calendar/sync {target: caldav, calendar_url, credentials}; optionally store a calendar here to test the server (PROPFIND).",
    },
    Entry {
        name: "ics",
        title: "Calendar feed (ICS)",
        category: "calendar",
        description: "A private, revocable ICS feed per user that Google Calendar and Outlook subscribe to.",
        fields: &[],
        built: true,
        setup: "Each user issues their feed URL with POST /api/v1/integrations/calendar/sync {target: ics} and revokes it with DELETE /api/v1/integrations/calendar/feeds.",
    },
    Entry {
        name: "ses_marketing",
        title: "Email marketing (SES)",
        category: "email",
        description: "Double opt-in subscriptions, one-click unsubscribe (RFC 8058), bounce and complaint suppression.",
        fields: &[],
        built: true,
        setup: "Sends from the EmailFrom identity; set the stack's SesEventsTopicArn output as that identity's bounce and complaint topic. Subscribe with POST /api/v1/integrations/marketing/subscribe, send with POST /api/v1/integrations/marketing/campaigns.",
    },
    Entry {
        name: "social_sharing",
        title: "Social sharing",
        category: "social",
        description: "Share links for public charts with Open Graph cards and click counts per network.",
        fields: &[],
        built: true,
        setup: "Nothing to set up: POST /api/v1/integrations/social/share gives a network's share link; short links live under the PublicUrl parameter.",
    },
];

fn entry(name: &str) -> Result<&'static Entry> {
    CATALOGUE.iter().find(|e| e.name == name).ok_or_else(|| Error::NotFound(format!("no integration named {name}")))
}

/// `not_configured`, `connected` or `failing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = IntegrationStatus)]
pub enum Status {
    NotConfigured,
    Connected,
    Failing,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Available {
    pub name: &'static str,
    pub title: &'static str,
    pub category: &'static str,
    pub description: &'static str,
    /// What it needs (`PUT …/{name}/config` fields; none when set elsewhere).
    pub needs: &'static [Field],
    pub setup: &'static str,
    /// Usable in this version of Keel (the others are listed, not built).
    pub built: bool,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
    /// Its stored configuration (settings and secret hints), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Catalogue {
    pub integrations: Vec<Available>,
}

/// A stored configuration as shown (and as audit diffs record it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConfigView {
    pub name: String,
    /// Non-secret values, as given.
    pub settings: BTreeMap<String, String>,
    /// Secret values as hints only (`…abcd`).
    pub secrets: BTreeMap<String, String>,
    pub updated_at: String,
    pub updated_by: String,
    pub version: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigRequest {
    /// Every field the integration needs (`GET …/available` lists them):
    /// secrets and settings alike, as strings.
    pub values: BTreeMap<String, String>,
}

fn config_pk(name: &str) -> String {
    integration_health::pk(name)
}

fn hint(secret: &str) -> String {
    let tail: String = secret.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    if secret.chars().count() <= 8 { "…".to_string() } else { format!("…{tail}") }
}

pub(crate) async fn stored(state: &IntegrationsState, name: &str) -> Result<Option<(ConfigView, Option<Sealed>)>> {
    let Some(item) = state.platform.store.get_item(&config_pk(name), "CONFIG").await? else { return Ok(None) };
    let view: ConfigView =
        serde_json::from_str(attr_s(&item, "view").unwrap_or("null")).map_err(|e| Error::internal(format!("integration config view: {e}")))?;
    let sealed = attr_s(&item, "secrets_sealed").map(serde_json::from_str).transpose().map_err(|e| Error::internal(format!("integration secrets: {e}")))?;
    Ok(Some((view, sealed)))
}

/// The secrets of a stored configuration, opened.
pub(crate) async fn open_secrets(state: &IntegrationsState, name: &str, sealed: Option<&Sealed>) -> Result<BTreeMap<String, String>> {
    let Some(sealed) = sealed else { return Ok(BTreeMap::new()) };
    let plain = state.platform.envelope.open(sealed, &format!("integration:{name}")).await?;
    serde_json::from_slice(&plain).map_err(|e| Error::internal(format!("integration secrets: {e}")))
}

fn check_value(entry: &Entry, field: &Field, value: &str, errors: &mut Vec<FieldError>) {
    let path = format!("values.{}", field.name);
    if value.trim().is_empty() || value.chars().count() > MAX_VALUE_CHARS || value.chars().any(char::is_control) {
        errors.push(FieldError::new(path, format!("must be 1 to {MAX_VALUE_CHARS} characters, no control characters")));
        return;
    }
    let ok = match (entry.name, field.name) {
        (_, "endpoint" | "api_base" | "url") => url::Url::parse(value).is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some()),
        ("stripe", "api_key") => value.starts_with("sk_") || value.starts_with("rk_"),
        ("mixpanel", "project_id") => value.bytes().all(|b| b.is_ascii_digit()),
        ("ga4", "measurement_id") => value.starts_with("G-") && value.len() > 2,
        _ => true,
    };
    if !ok {
        errors.push(FieldError::new(path, format!("is not valid: {}", field.description)));
    }
}

/// The integrations Keel can connect, and how each is doing here.
#[utoipa::path(get, path = "/api/v1/integrations/available", tag = "integrations", responses((status = 200, body = Catalogue)))]
pub async fn available(State(state): State<IntegrationsState>) -> Result<Json<Catalogue>> {
    let store = state.platform.store.store();
    let health: BTreeMap<String, IntegrationHealth> = integration_health::all(store).await?.into_iter().map(|h| (h.name.clone(), h)).collect();
    let mut integrations = Vec::with_capacity(CATALOGUE.len());
    for entry in CATALOGUE {
        let config = if entry.fields.is_empty() { None } else { stored(&state, entry.name).await?.map(|(view, _)| view) };
        let recorded = health.get(entry.name);
        let mut item = Available {
            name: entry.name,
            title: entry.title,
            category: entry.category,
            description: entry.description,
            needs: entry.fields,
            setup: entry.setup,
            built: entry.built,
            status: Status::NotConfigured,
            last_success_at: recorded.and_then(|h| h.last_success_at.clone()),
            last_error: recorded.and_then(|h| h.last_error.clone()),
            last_error_at: recorded.and_then(|h| h.last_error_at.clone()),
            config,
        };
        if entry.name == "webhooks" {
            webhooks_status(&state, &mut item).await?;
        } else {
            // Social sharing needs nothing but the public URL, always set;
            // email marketing sends from the deployed sender (EmailFrom).
            let configured = item.config.is_some()
                || (entry.name == "stripe" && state.stripe_webhook_secret.is_some())
                || (entry.name == "caldav" && calendar::sync::count(&state).await? > 0)
                || (entry.name == "ics" && calendar::feeds::count(&state).await? > 0)
                || entry.name == social::HUB_NAME
                || entry.name == marketing::HUB_NAME;
            item.status = match (configured, recorded.is_some_and(IntegrationHealth::failing)) {
                (false, _) => Status::NotConfigured,
                (true, true) => Status::Failing,
                (true, false) => Status::Connected,
            };
        }
        integrations.push(item);
    }
    Ok(Json(Catalogue { integrations }))
}

/// Webhooks: connected with at least one enabled endpoint, failing while
/// any enabled endpoint's attempts all fail (three or more in a row).
async fn webhooks_status(state: &IntegrationsState, item: &mut Available) -> Result<()> {
    let endpoints = webhooks::all(state).await?;
    let enabled: Vec<_> = endpoints.iter().filter(|e| e.enabled).collect();
    if enabled.is_empty() {
        item.status = Status::NotConfigured;
        return Ok(());
    }
    // One read for every enabled endpoint's health.
    let keys: Vec<_> = enabled.iter().map(|e| (webhooks::pk(&e.id), delivery::HEALTH_SK.to_string())).collect();
    let healths: std::collections::HashMap<String, delivery::EndpointHealth> = state
        .platform
        .store
        .batch_get(&keys)
        .await?
        .into_iter()
        .filter_map(|item| Some((attr_s(&item, "pk")?.to_string(), shared::store::from_item(item).ok()?)))
        .collect();
    let mut failing = 0;
    for endpoint in &enabled {
        let health = healths.get(&webhooks::pk(&endpoint.id)).cloned().unwrap_or_default();
        item.last_success_at = item.last_success_at.clone().max(health.last_success_at.clone());
        if health.failing() {
            failing += 1;
            item.last_error_at = item.last_error_at.clone().max(health.last_failure_at.clone());
        }
    }
    item.status = if failing > 0 { Status::Failing } else { Status::Connected };
    if failing > 0 {
        item.last_error = Some(format!("{failing} of {} enabled endpoints failing (see each endpoint's deliveries)", enabled.len()));
    }
    Ok(())
}

/// Store an integration's credentials and settings (replacing any):
/// secrets sealed with the data key, shown back as hints only.
#[utoipa::path(
    put,
    path = "/api/v1/integrations/{name}/config",
    tag = "integrations",
    params(("name" = String, Path, description = "An integration's name from GET /api/v1/integrations/available")),
    request_body = ConfigRequest,
    responses(
        (status = 200, body = ConfigView),
        (status = 400, description = "A value is missing, unknown or invalid (named)", body = shared::platform::error::Problem),
        (status = 404, description = "No such integration", body = shared::platform::error::Problem)
    )
)]
pub async fn configure(
    State(state): State<IntegrationsState>,
    caller: Caller,
    Path(name): Path<String>,
    ValidJson(body): ValidJson<ConfigRequest>,
) -> Result<Json<ConfigView>> {
    let entry = entry(&name)?;
    if entry.fields.is_empty() {
        return Err(Error::field("name", format!("{} is not configured here: {}", entry.name, entry.setup)));
    }
    let mut errors = Vec::new();
    for key in body.values.keys().filter(|k| !entry.fields.iter().any(|f| f.name == k.as_str())) {
        errors.push(FieldError::new(format!("values.{key}"), format!("{} takes no such value", entry.name)));
    }
    let (mut settings, mut secrets) = (BTreeMap::new(), BTreeMap::new());
    for field in entry.fields {
        match body.values.get(field.name) {
            None if field.required => errors.push(FieldError::new(format!("values.{}", field.name), format!("is required: {}", field.description))),
            None => {}
            Some(value) => {
                check_value(entry, field, value, &mut errors);
                if field.secret {
                    secrets.insert(field.name.to_string(), value.trim().to_string())
                } else {
                    settings.insert(field.name.to_string(), value.trim().to_string())
                };
            }
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let before = stored(&state, entry.name).await?.map(|(view, _)| view);
    let now = timestamp(chrono::Utc::now());
    let view = ConfigView {
        name: entry.name.to_string(),
        settings,
        secrets: secrets.iter().map(|(k, v)| (k.clone(), hint(v))).collect(),
        updated_at: now,
        updated_by: caller.principal.user_id.clone(),
        version: before.as_ref().map_or(1, |b| b.version + 1),
    };
    let plain = serde_json::to_vec(&secrets).map_err(|e| Error::internal(e.to_string()))?;
    let sealed = state.platform.envelope.seal(&plain, &format!("integration:{}", entry.name)).await?;
    let item = Item::from([
        ("pk".to_string(), s(config_pk(entry.name))),
        ("sk".to_string(), s("CONFIG")),
        ("type".to_string(), s("integration_config")),
        ("view".to_string(), s(to_json(&view)?)),
        ("secrets_sealed".to_string(), s(to_json(&sealed)?)),
    ]);
    let store = &state.platform.store;
    let write = match &before {
        None => Write::put_new(store.table(), item, Error::Conflict("configured meanwhile: read it and try again".into()))?,
        Some(_) => Write::put(store.table(), item)?,
    };
    let audit = AuditEntry::new(&caller.actor(), "integration.configured", "integration", entry.name).changes(before.as_ref(), Some(&view));
    store.commit(vec![write], &audit).await?;
    Ok(Json(view))
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::internal(e.to_string()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestResult {
    pub name: String,
    pub ok: bool,
    /// The service's HTTP status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The integration's health after this test.
    pub health: IntegrationHealth,
}

/// Call the service with the stored credentials (a read, or one test
/// event) and record the outcome: the health, the alarm metric, an audit
/// entry.
#[utoipa::path(
    post,
    path = "/api/v1/integrations/{name}/test",
    tag = "integrations",
    params(("name" = String, Path, description = "An integration's name from GET /api/v1/integrations/available")),
    responses(
        (status = 200, description = "The test ran (passed or not: see `ok`)", body = TestResult),
        (status = 400, description = "Nothing to test: not configured, or not built", body = shared::platform::error::Problem),
        (status = 404, description = "No such integration", body = shared::platform::error::Problem),
        // `/webhooks/{id}` is the more specific route for this path (static
        // segments win), and it takes no POST; webhooks are tested by their
        // deliveries.
        (status = 405, description = "`name` is `webhooks`: POST /api/v1/integrations/webhooks/test is a webhook endpoint's path (Allow lists its methods)", body = shared::platform::error::Problem)
    )
)]
pub async fn test(State(state): State<IntegrationsState>, caller: Caller, Path(name): Path<String>) -> Result<Json<TestResult>> {
    let entry = entry(&name)?;
    if !entry.built && entry.fields.is_empty() {
        return Err(Error::field("name", format!("{} is not built yet", entry.name)));
    }
    let Some((view, sealed)) = (if entry.fields.is_empty() { None } else { stored(&state, entry.name).await? }) else {
        return Err(Error::field("name", format!("{} has nothing to test: {}", entry.name, entry.setup)));
    };
    let secrets = open_secrets(&state, entry.name, sealed.as_ref()).await?;
    let value = |key: &str| view.settings.get(key).or_else(|| secrets.get(key)).cloned().unwrap_or_default();
    let started = Instant::now();
    let (http_status, outcome) = connection_test(&state, entry.name, &value).await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let store = &state.platform.store;
    let health = integration_health::record(store.store(), entry.name, outcome.clone(), chrono::Utc::now()).await?;
    let mut audit = AuditEntry::new(&caller.actor(), "integration.tested", "integration", entry.name).outcome(if outcome.is_ok() {
        Outcome::Success
    } else {
        Outcome::Failure
    });
    if let Err(e) = &outcome {
        audit = audit.reason(e.clone());
    }
    store.record(&audit).await?;
    Ok(Json(TestResult { name: entry.name.to_string(), ok: outcome.is_ok(), http_status, latency_ms, error: outcome.err(), health }))
}

pub(crate) fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

pub(crate) fn base(value: String, default: &str) -> String {
    let base = if value.is_empty() { default.to_string() } else { value };
    base.trim_end_matches('/').to_string()
}

/// One call to the service, as its documentation describes; the HTTP
/// status and whether it means the credentials work.
async fn connection_test(state: &IntegrationsState, name: &str, value: &(dyn Fn(&str) -> String + Sync)) -> (Option<u16>, std::result::Result<(), String>) {
    let now = chrono::Utc::now();
    let test_id = uuid::Uuid::now_v7().to_string();
    let (method, url, auth, body): (reqwest::Method, String, Option<String>, Option<serde_json::Value>) = match name {
        "stripe" => (
            reqwest::Method::GET,
            format!("{}/v1/balance", base(value("api_base"), "https://api.stripe.com")),
            Some(format!("Bearer {}", value("api_key"))),
            None,
        ),
        "segment" => (
            reqwest::Method::POST,
            format!("{}/v1/batch", base(value("endpoint"), "https://api.segment.io")),
            Some(basic(&value("write_key"), "")),
            Some(serde_json::json!({
                "batch": [{"type": "track", "event": "Keel Connection Test", "anonymousId": "keel-connection-test", "messageId": test_id,
                           "timestamp": timestamp(now), "properties": {"source": "keel"}}],
                "sentAt": timestamp(now),
            })),
        ),
        "mixpanel" => (
            reqwest::Method::POST,
            format!("{}/import?strict=1&project_id={}", base(value("endpoint"), "https://api.mixpanel.com"), value("project_id")),
            Some(basic(&value("api_secret"), "")),
            Some(
                serde_json::json!([{"event": "Keel Connection Test", "properties": {"time": now.timestamp_millis(), "distinct_id": "keel-connection-test", "$insert_id": test_id}}]),
            ),
        ),
        "ga4" => (
            reqwest::Method::POST,
            format!(
                "{}/debug/mp/collect?measurement_id={}&api_secret={}",
                base(value("endpoint"), "https://www.google-analytics.com"),
                url::form_urlencoded::byte_serialize(value("measurement_id").as_bytes()).collect::<String>(),
                url::form_urlencoded::byte_serialize(value("api_secret").as_bytes()).collect::<String>(),
            ),
            None,
            Some(serde_json::json!({"client_id": "keel.connection-test", "events": [{"name": "keel_connection_test", "params": {"engagement_time_msec": 1}}]})),
        ),
        "caldav" => (reqwest::Method::from_bytes(b"PROPFIND").expect("a method"), value("url"), Some(basic(&value("username"), &value("password"))), None),
        other => return (None, Err(format!("{other} has no connection test"))),
    };
    let (client, target) = match ssrf::guarded_client(&url, state.webhook_policy, TEST_TIMEOUT, "keel-integrations").await {
        Ok(found) => found,
        Err(error) => return (None, Err(error)),
    };
    let mut request = client.request(method, target);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    request = match (name, body) {
        ("caldav", _) => request
            .header("depth", "0")
            .header("content-type", "application/xml; charset=utf-8")
            .body(r#"<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:displayname/></d:prop></d:propfind>"#),
        (_, Some(body)) => request.header("content-type", "application/json").body(body.to_string()),
        (_, None) => request,
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) if e.is_timeout() => return (None, Err(format!("no answer within {} s", TEST_TIMEOUT.as_secs()))),
        Err(e) => return (None, Err(format!("connection failed: {e}"))),
    };
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let snippet: String = text.chars().take(300).collect();
    let outcome = match (name, status) {
        (_, 401 | 403) => Err(format!("the service refused the credentials ({status})")),
        ("caldav", 207) if text.contains("calendar") => Ok(()),
        ("caldav", 207) => Err("the URL answers, but is not a calendar collection".to_string()),
        ("ga4", 200) => match serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["validationMessages"].as_array().cloned()) {
            Some(messages) if messages.is_empty() => Ok(()),
            Some(messages) => Err(format!("the validation server found problems: {}", serde_json::Value::Array(messages))),
            None => Err(format!("not a validation server answer: {snippet}")),
        },
        (_, 200..=299) => Ok(()),
        (_, 300..=399) => Err(format!("answered a redirect ({status}); redirects are not followed")),
        _ => Err(format!("answered {status}: {snippet}")),
    };
    (Some(status), outcome)
}
