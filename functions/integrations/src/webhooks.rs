//! Outgoing webhook endpoints: `POST/GET /api/v1/integrations/webhooks`,
//! `GET/PUT/DELETE /api/v1/integrations/webhooks/{id}` and
//! `POST /api/v1/integrations/webhooks/{id}/rotate-secret`.
//!
//! An endpoint is a URL (checked by the SSRF guard when saved, and again at
//! each delivery), the event types it wants (audit actions such as
//! `user.created`, or wildcards `user.*` and `*`), and a `whsec_` secret
//! shown once, stored sealed with the data key. Rotating keeps the previous
//! secret signing beside the new one for `ROTATION_OVERLAP`. Every change
//! is audited in the transaction that makes it; the secrets never appear in
//! a response other than the one that creates them, nor in an audit diff.
//!
//! Keys: `WEBHOOK#<id> / META`, listed through gsi1 `WEBHOOKS` / created#id.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::audit::AuditEntry;
use shared::http::Caller;
use shared::http::extract::{PathId, ValidJson};
use shared::platform::crypto::Sealed;
use shared::platform::error::{Error, Result};
use shared::store::{Item, QuerySpec, Write, attr_s, from_item, s, timestamp, to_item};
use utoipa::ToSchema;

use crate::IntegrationsState;
use crate::signing;
use crate::ssrf;

/// The default wait before each attempt, counted from the previous one:
/// the first at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const DEFAULT_RETRY_SCHEDULE: [u32; 8] = [0, 5, 300, 1800, 7200, 18000, 36000, 36000];
/// The longest schedule an endpoint may set, and the longest single wait.
pub const MAX_ATTEMPTS: usize = 12;
pub const MAX_RETRY_WAIT_SECONDS: u32 = 24 * 3600;
pub const MAX_EVENT_TYPES: usize = 50;
pub const MAX_URL_CHARS: usize = 2048;
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// How long the previous secret keeps signing after a rotation, so
/// receivers can switch without dropping a delivery.
pub const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);

pub const LIST_PK: &str = "WEBHOOKS";

/// A webhook endpoint's id (a UUIDv7, `WEBHOOK#<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookId(String);

impl shared::store::ids::Id for WebhookId {
    const WHAT: &'static str = "webhook";
    fn parse(value: &str) -> Option<Self> {
        uuid::Uuid::try_parse(value).ok().map(|_| WebhookId(value.to_string()))
    }
}

impl WebhookId {
    pub fn generate() -> WebhookId {
        WebhookId(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn pk(id: &str) -> String {
    format!("WEBHOOK#{id}")
}

/// An endpoint as the API shows it (and as audit diffs record it): no secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    pub description: String,
    /// Audit actions delivered to this endpoint: exact (`user.created`), a
    /// prefix wildcard (`user.*`) or everything (`*`).
    pub event_types: Vec<String>,
    /// Deliveries stop while disabled (by an admin, or by a 410 answer).
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Seconds to wait before each attempt, counted from the previous one.
    pub retry_schedule_seconds: Vec<u32>,
    /// Until when the secret before the last rotation still signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<String>,
    pub owner_id: String,
    pub created_at: String,
    pub updated_at: String,
    pub version: u64,
}

impl WebhookEndpoint {
    /// Whether an audit action is one this endpoint wants.
    pub fn wants(&self, action: &str) -> bool {
        self.enabled && self.event_types.iter().any(|pattern| pattern_matches(pattern, action))
    }
}

/// `*` matches every action, `a.*` every action under `a.` (any depth),
/// anything else exactly itself.
pub fn pattern_matches(pattern: &str, action: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => action.starts_with(prefix) && action.len() > prefix.len(),
        None => pattern == action,
    }
}

/// An event type pattern: dot-separated lower-case words (`a-z`, `0-9`,
/// `_`), optionally ending in `.*`, or `*` alone.
fn valid_pattern(pattern: &str) -> bool {
    let word = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if pattern == "*" {
        return true;
    }
    let exact = pattern.strip_suffix(".*").unwrap_or(pattern);
    exact.split('.').all(word)
}

/// The secrets of an endpoint as stored: sealed, bound to its key.
struct Secrets {
    current: Sealed,
    previous: Option<Sealed>,
}

fn sealed_attr(item: &Item, name: &str) -> Result<Option<Sealed>> {
    attr_s(item, name).map(|json| serde_json::from_str(json).map_err(|e| Error::internal(format!("sealed {name}: {e}")))).transpose()
}

fn item_of(endpoint: &WebhookEndpoint, secrets: &Secrets) -> Result<Item> {
    let mut item = to_item(endpoint)?;
    let json = |sealed: &Sealed| serde_json::to_string(sealed).map_err(|e| Error::internal(e.to_string()));
    item.insert("pk".into(), s(pk(&endpoint.id)));
    item.insert("sk".into(), s("META"));
    item.insert("type".into(), s("webhook_endpoint"));
    item.insert("gsi1pk".into(), s(LIST_PK));
    item.insert("gsi1sk".into(), s(format!("{}#{}", endpoint.created_at, endpoint.id)));
    item.insert("secret".into(), s(json(&secrets.current)?));
    if let Some(previous) = &secrets.previous {
        item.insert("previous_secret".into(), s(json(previous)?));
    }
    Ok(item)
}

/// An endpoint and its sealed secrets, if it exists.
async fn load(state: &IntegrationsState, id: &str) -> Result<(WebhookEndpoint, Secrets)> {
    let item = state.platform.store.get_item(&pk(id), "META").await?.ok_or_else(|| Error::NotFound(format!("no webhook {id}")))?;
    let current = sealed_attr(&item, "secret")?.ok_or_else(|| Error::internal(format!("webhook {id} has no secret")))?;
    let previous = sealed_attr(&item, "previous_secret")?;
    Ok((from_item(item)?, Secrets { current, previous }))
}

/// The endpoint with the HMAC keys that sign its deliveries now: the
/// current secret, and the previous one while its overlap lasts.
pub async fn with_signing_keys(state: &IntegrationsState, id: &str, now: chrono::DateTime<chrono::Utc>) -> Result<(WebhookEndpoint, Vec<Vec<u8>>)> {
    let (endpoint, secrets) = load(state, id).await?;
    let context = pk(id);
    let mut sealed = vec![&secrets.current];
    let overlapping = endpoint.previous_secret_expires_at.as_deref().and_then(shared::platform::time::parse).is_some_and(|until| now < until);
    if overlapping && let Some(previous) = &secrets.previous {
        sealed.push(previous);
    }
    let mut keys = Vec::new();
    for secret in sealed {
        if let Some(key) = state.opened_secrets.get(secret) {
            keys.push(key);
            continue;
        }
        let plain = state.platform.envelope.open(secret, &context).await?;
        let text = String::from_utf8(plain).map_err(|_| Error::internal("webhook secret is not text"))?;
        let key = signing::key_of(&text).ok_or_else(|| Error::internal("webhook secret is malformed"))?;
        state.opened_secrets.put(secret, key.clone());
        keys.push(key);
    }
    Ok((endpoint, keys))
}

/// Webhook signing keys an instance has opened, by the sealed secret they
/// came from: a delivery worker signs many messages per endpoint, and
/// opening costs a KMS Decrypt each time. A rotation seals a new secret,
/// so it is a new entry; at most `OpenedSecrets::CAPACITY` are held (then
/// the map starts afresh), for the instance's life only.
#[derive(Clone, Default)]
pub struct OpenedSecrets(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>);

impl std::fmt::Debug for OpenedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenedSecrets(…)")
    }
}

impl OpenedSecrets {
    pub const CAPACITY: usize = 1024;

    fn get(&self, sealed: &Sealed) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&sealed.data).cloned()
    }

    fn put(&self, sealed: &Sealed, key: Vec<u8>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= Self::CAPACITY {
            map.clear();
        }
        map.insert(sealed.data.clone(), key);
    }
}

/// The write that replaces `before` by `after` (its version checked),
/// keeping the sealed secrets: for the delivery worker's own changes (a
/// 410 disables the endpoint), committed with their audit entry.
pub async fn replace_write(state: &IntegrationsState, before: &WebhookEndpoint, after: &WebhookEndpoint) -> Result<Write> {
    let (_, secrets) = load(state, &before.id).await?;
    Write::put_versioned(state.platform.store.table(), item_of(after, &secrets)?, before.version)
}

/// Every endpoint, oldest first.
pub async fn all(state: &IntegrationsState) -> Result<Vec<WebhookEndpoint>> {
    let spec = QuerySpec { index: Some("gsi1"), key_condition: "gsi1pk = :pk", values: vec![(":pk", s(LIST_PK))], forward: true, ..Default::default() };
    state.platform.store.query_all(&spec).await?.into_iter().map(from_item).collect()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `https://` URL of a public host (see docs/integrations.md, "SSRF guard").
    pub url: String,
    /// 1 to 50 audit action patterns.
    pub event_types: Vec<String>,
    pub description: Option<String>,
    /// Seconds before each attempt (1 to 12 entries, each at most a day);
    /// default 0, 5, 300, 1800, 7200, 18000, 36000, 36000.
    pub retry_schedule_seconds: Option<Vec<u32>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    pub retry_schedule_seconds: Option<Vec<u32>>,
    /// `true` re-enables an endpoint disabled by an admin, by a 410 or
    /// after failing for five days (its failing days start again).
    pub enabled: Option<bool>,
}

/// An endpoint with its secret: answered once, when created or rotated.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// `whsec_…`: verify deliveries with it. Not shown again.
    pub secret: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookEndpoint>,
}

fn check_url(state: &IntegrationsState, url: &str, errors: &mut Vec<Error>) {
    if url.chars().count() > MAX_URL_CHARS {
        errors.push(Error::field("url", format!("at most {MAX_URL_CHARS} characters")));
    } else if let Err(refusal) = ssrf::check_url(url, state.webhook_policy) {
        errors.push(Error::field("url", refusal.to_string()));
    }
}

fn check_event_types(event_types: &[String], errors: &mut Vec<Error>) {
    if event_types.is_empty() || event_types.len() > MAX_EVENT_TYPES {
        errors.push(Error::field("event_types", format!("1 to {MAX_EVENT_TYPES} event types")));
    }
    for (i, pattern) in event_types.iter().enumerate() {
        if !valid_pattern(pattern) {
            errors.push(Error::field(format!("event_types[{i}]"), "an audit action (`user.created`), a prefix wildcard (`user.*`) or `*`"));
        }
    }
}

fn check_schedule(schedule: &[u32], errors: &mut Vec<Error>) {
    if schedule.is_empty() || schedule.len() > MAX_ATTEMPTS {
        errors.push(Error::field("retry_schedule_seconds", format!("1 to {MAX_ATTEMPTS} attempts")));
    }
    for (i, wait) in schedule.iter().enumerate() {
        if *wait > MAX_RETRY_WAIT_SECONDS {
            errors.push(Error::field(format!("retry_schedule_seconds[{i}]"), format!("at most {MAX_RETRY_WAIT_SECONDS} seconds")));
        }
    }
}

fn check_description(description: &str, errors: &mut Vec<Error>) {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        errors.push(Error::field("description", format!("at most {MAX_DESCRIPTION_CHARS} characters")));
    }
}

/// All field errors of a request as one 400.
fn field_errors(errors: Vec<Error>) -> Result<()> {
    let fields: Vec<_> = errors
        .into_iter()
        .flat_map(|e| match e {
            Error::Validation(fields) => fields,
            _ => Vec::new(),
        })
        .collect();
    if fields.is_empty() { Ok(()) } else { Err(Error::Validation(fields)) }
}

/// Answered with `Cache-Control: no-store`: the secret is in it, so neither
/// caches nor the idempotency store keep it.
fn secret_response(status: StatusCode, body: WebhookWithSecret) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn seal_secret(state: &IntegrationsState, id: &str, secret: &str) -> Result<Sealed> {
    state.platform.envelope.seal(secret.as_bytes(), &pk(id)).await
}

#[utoipa::path(post, path = "/api/v1/integrations/webhooks", tag = "integrations", request_body = CreateWebhook,
    responses((status = 201, description = "Created; the secret is shown this once", body = WebhookWithSecret)))]
pub async fn create(State(state): State<IntegrationsState>, caller: Caller, ValidJson(body): ValidJson<CreateWebhook>) -> Result<Response> {
    let mut errors = Vec::new();
    check_url(&state, &body.url, &mut errors);
    check_event_types(&body.event_types, &mut errors);
    let schedule = body.retry_schedule_seconds.unwrap_or_else(|| DEFAULT_RETRY_SCHEDULE.to_vec());
    check_schedule(&schedule, &mut errors);
    let description = body.description.unwrap_or_default();
    check_description(&description, &mut errors);
    field_errors(errors)?;
    let now = timestamp(chrono::Utc::now());
    let id = WebhookId::generate();
    let endpoint = WebhookEndpoint {
        id: id.as_str().to_string(),
        url: body.url,
        description,
        event_types: body.event_types,
        enabled: true,
        disabled_reason: None,
        retry_schedule_seconds: schedule,
        previous_secret_expires_at: None,
        owner_id: caller.principal.user_id.clone(),
        created_at: now.clone(),
        updated_at: now,
        version: 1,
    };
    let secret = signing::new_secret();
    let secrets = Secrets { current: seal_secret(&state, &endpoint.id, &secret).await?, previous: None };
    let store = &state.platform.store;
    let audit = AuditEntry::new(&caller.actor(), "webhook.created", "webhook", &endpoint.id).changes::<(), _>(None, Some(&endpoint));
    store.commit(vec![Write::put_new(store.table(), item_of(&endpoint, &secrets)?, Error::Conflict("webhook exists".into()))?], &audit).await?;
    Ok(secret_response(StatusCode::CREATED, WebhookWithSecret { endpoint, secret }))
}

#[utoipa::path(get, path = "/api/v1/integrations/webhooks", tag = "integrations",
    responses((status = 200, description = "Every webhook endpoint, oldest first", body = WebhookList)))]
pub async fn list(State(state): State<IntegrationsState>) -> Result<Json<WebhookList>> {
    Ok(Json(WebhookList { webhooks: all(&state).await? }))
}

#[utoipa::path(get, path = "/api/v1/integrations/webhooks/{id}", tag = "integrations", params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, description = "The endpoint (without its secret)", body = WebhookEndpoint)))]
pub async fn read(State(state): State<IntegrationsState>, PathId(id): PathId<WebhookId>) -> Result<Json<WebhookEndpoint>> {
    Ok(Json(load(&state, id.as_str()).await?.0))
}

#[utoipa::path(put, path = "/api/v1/integrations/webhooks/{id}", tag = "integrations", params(("id" = String, Path, description = "Webhook id")),
    request_body = UpdateWebhook, responses((status = 200, description = "Updated", body = WebhookEndpoint)))]
pub async fn update(
    State(state): State<IntegrationsState>,
    caller: Caller,
    PathId(id): PathId<WebhookId>,
    ValidJson(body): ValidJson<UpdateWebhook>,
) -> Result<Json<WebhookEndpoint>> {
    let mut errors = Vec::new();
    if let Some(url) = &body.url {
        check_url(&state, url, &mut errors);
    }
    if let Some(event_types) = &body.event_types {
        check_event_types(event_types, &mut errors);
    }
    if let Some(schedule) = &body.retry_schedule_seconds {
        check_schedule(schedule, &mut errors);
    }
    if let Some(description) = &body.description {
        check_description(description, &mut errors);
    }
    field_errors(errors)?;
    let (before, secrets) = load(&state, id.as_str()).await?;
    let mut after = before.clone();
    if let Some(url) = body.url {
        after.url = url;
    }
    if let Some(event_types) = body.event_types {
        after.event_types = event_types;
    }
    if let Some(description) = body.description {
        after.description = description;
    }
    if let Some(schedule) = body.retry_schedule_seconds {
        after.retry_schedule_seconds = schedule;
    }
    if let Some(enabled) = body.enabled {
        after.enabled = enabled;
        after.disabled_reason = (!enabled).then(|| "disabled by an administrator".to_string());
    }
    after.version = before.version + 1;
    after.updated_at = timestamp(chrono::Utc::now());
    let store = &state.platform.store;
    let audit = AuditEntry::new(&caller.actor(), "webhook.updated", "webhook", &after.id).changes(Some(&before), Some(&after));
    let mut writes = vec![Write::put_versioned(store.table(), item_of(&after, &secrets)?, before.version)?];
    if after.enabled && !before.enabled {
        // Turned back on: its failing days start again from the next failure.
        let fresh = Item::from([
            ("pk".to_string(), s(pk(&after.id))),
            ("sk".to_string(), s(crate::delivery::HEALTH_SK)),
            ("type".to_string(), s("webhook_health")),
            ("reenabled_at".to_string(), s(after.updated_at.clone())),
        ]);
        writes.push(Write::put(store.table(), fresh)?);
    }
    store.commit(writes, &audit).await?;
    Ok(Json(after))
}

#[utoipa::path(delete, path = "/api/v1/integrations/webhooks/{id}", tag = "integrations", params(("id" = String, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted; no further deliveries")))]
pub async fn delete(State(state): State<IntegrationsState>, caller: Caller, PathId(id): PathId<WebhookId>) -> Result<StatusCode> {
    let (before, _) = load(&state, id.as_str()).await?;
    let store = &state.platform.store;
    let audit = AuditEntry::new(&caller.actor(), "webhook.deleted", "webhook", &before.id).changes::<_, ()>(Some(&before), None);
    store.commit(vec![Write::delete_versioned(store.table(), &pk(&before.id), "META", before.version)?], &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/integrations/webhooks/{id}/rotate-secret", tag = "integrations", params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, description = "A new secret, shown this once; the previous one signs too until `previous_secret_expires_at`", body = WebhookWithSecret)))]
pub async fn rotate_secret(State(state): State<IntegrationsState>, caller: Caller, PathId(id): PathId<WebhookId>) -> Result<Response> {
    let (before, secrets) = load(&state, id.as_str()).await?;
    let now = chrono::Utc::now();
    let secret = signing::new_secret();
    let rotated = Secrets { current: seal_secret(&state, &before.id, &secret).await?, previous: Some(secrets.current) };
    let mut after = before.clone();
    after.previous_secret_expires_at = Some(timestamp(now + ROTATION_OVERLAP));
    after.version = before.version + 1;
    after.updated_at = timestamp(now);
    let store = &state.platform.store;
    let audit = AuditEntry::new(&caller.actor(), "webhook.secret_rotated", "webhook", &after.id).changes(Some(&before), Some(&after));
    store.commit(vec![Write::put_versioned(store.table(), item_of(&after, &rotated)?, before.version)?], &audit).await?;
    Ok(secret_response(StatusCode::OK, WebhookWithSecret { endpoint: after, secret }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_actions() {
        assert!(pattern_matches("*", "user.created"));
        assert!(pattern_matches("user.*", "user.created"));
        assert!(pattern_matches("user.*", "user.role.changed"));
        assert!(!pattern_matches("user.*", "users.created"));
        assert!(!pattern_matches("user.*", "user."));
        assert!(pattern_matches("chart.moderated", "chart.moderated"));
        assert!(!pattern_matches("chart.moderated", "chart.moderated.extra"));
    }

    #[test]
    fn patterns_are_checked() {
        for good in ["*", "user.created", "user.*", "export.completed", "auth.refresh_reuse"] {
            assert!(valid_pattern(good), "{good}");
        }
        for bad in ["", "User.created", "user..created", "user*", "*.created", "user.*.x", ".user", "user.", "user created"] {
            assert!(!valid_pattern(bad), "{bad}");
        }
    }
}
