//! `POST /api/v1/workflows/{id}/hooks`: a webhook-triggered workflow's
//! inbound URL. Public, but signed: Standard Webhooks headers
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<HMAC-SHA256>`)
//! with the workflow's `whsec_` secret, the timestamp within 5 minutes.
//! The run's id is derived from `webhook-id`, so a sender's retry of the
//! same message starts one run.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use chrono::Utc;
use serde::Serialize;
use serde_json::{Value, json};
use shared::platform::error::{Error, Result};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::WorkflowsState;
use crate::engine;
use crate::model;

/// How far a signed timestamp may be from now.
const TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkflowHookAccepted)]
pub struct HookAccepted {
    pub run_id: String,
}

fn refused(why: &str) -> Error {
    Error::Unauthorized(format!("webhook refused: {why}"))
}

/// Start a run of a webhook-triggered workflow with the JSON body as its input.
#[utoipa::path(post, path = "/api/v1/workflows/{id}/hooks", tag = "workflows",
    params(
        ("id" = String, Path, description = "A workflow's id"),
        ("webhook-id" = String, Header, description = "The message's id"),
        ("webhook-timestamp" = String, Header, description = "Unix seconds"),
        ("webhook-signature" = String, Header, description = "`v1,<base64 HMAC-SHA256 of id.timestamp.body>`"),
    ),
    request_body(content = Object, description = "A JSON object: the run's input"),
    responses(
        (status = 202, body = HookAccepted),
        (status = 400, description = "The body is not a JSON object", body = shared::platform::error::Problem),
        (status = 401, description = "Missing, stale or wrong signature", body = shared::platform::error::Problem),
        (status = 404, description = "No webhook-triggered workflow here", body = shared::platform::error::Problem),
        (status = 409, description = "The workflow is disabled", body = shared::platform::error::Problem),
        (status = 429, description = "The workflow started its max_runs_per_minute; retry after Retry-After", body = shared::platform::error::Problem),
    ))]
pub async fn receive(State(state): State<WorkflowsState>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Result<(StatusCode, Json<HookAccepted>)> {
    let store = state.platform.store.store();
    let not_here = || Error::NotFound(format!("no webhook-triggered workflow {id}"));
    let workflow = model::load(store, &id).await.map_err(|_| not_here())?;
    let (Some(sealed), true) = (workflow.webhook_secret.clone(), workflow.trigger == "webhook") else { return Err(not_here()) };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let (Some(message_id), Some(timestamp), Some(signatures)) = (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature")) else {
        return Err(refused("webhook-id, webhook-timestamp and webhook-signature are required"));
    };
    if message_id.len() > 200 {
        return Err(refused("webhook-id is too long"));
    }
    let at: i64 = timestamp.parse().map_err(|_| refused("webhook-timestamp is not Unix seconds"))?;
    if (Utc::now().timestamp() - at).abs() > TOLERANCE_SECONDS {
        return Err(refused("webhook-timestamp is more than 5 minutes from now"));
    }
    let sealed: shared::platform::crypto::Sealed = serde_json::from_str(&sealed).map_err(|e| Error::internal(format!("stored secret: {e}")))?;
    let secret = state.platform.envelope.open(&sealed, &format!("workflow:{id}")).await?;
    let secret = String::from_utf8(secret).map_err(|_| Error::internal("stored secret is not text"))?;
    let key =
        base64::engine::general_purpose::STANDARD.decode(secret.trim_start_matches("whsec_")).map_err(|_| Error::internal("stored secret is not base64"))?;
    let expected = integrations::signing::sign(&key, message_id, at, &body);
    let matches = signatures.split_whitespace().any(|given| given.as_bytes().ct_eq(expected.as_bytes()).into());
    if !matches {
        return Err(refused("the signature does not match"));
    }
    if !workflow.enabled {
        return Err(Error::Conflict(format!("workflow {id} is disabled")));
    }
    let input: Value = serde_json::from_slice(&body).map_err(|_| Error::field("body", "a JSON object"))?;
    if !input.is_object() {
        return Err(Error::field("body", "a JSON object"));
    }
    let version = model::version(store, &id, workflow.version).await?.ok_or_else(|| Error::internal("the workflow has no current version"))?;
    let run_id = engine::derived_id(&format!("{id}/hook/{message_id}"));
    let event = json!({"type": "webhook", "webhook_id": message_id});
    let now = Utc::now();
    let (_, mut writes) = engine::start_with_id(&run_id, &version, engine::Origin::new("webhook", event, input), now, store.table())?;
    // Past the workflow's runs per minute: 429 with Retry-After, which
    // webhook senders honour by retrying later.
    writes.push(model::rate_write(store.table(), &id, now, version.definition.runs_per_minute())?);
    match store.transact(writes).await {
        Ok(()) => Ok((StatusCode::ACCEPTED, Json(HookAccepted { run_id }))),
        // A retry of a message already taken: the same run. (Otherwise a
        // race on the rate bucket: 409, and the sender retries.)
        Err(Error::Conflict(why)) => match model::run(store, &run_id).await? {
            Some(_) => Ok((StatusCode::ACCEPTED, Json(HookAccepted { run_id }))),
            None => Err(Error::Conflict(why)),
        },
        Err(e) => Err(e),
    }
}
