//! `Idempotency-Key` for POSTs: the first request with a key runs and its
//! response is stored for 24 hours; a retry with the same key and the same
//! request gets the stored response; the same key with a different request
//! is refused (422); a retry while the first is still running gets 409.
//! Only authenticated requests take part: public POSTs (login, refresh)
//! answer with tokens, which must never be stored. Responses marked
//! `Cache-Control: no-store` (2FA secrets, recovery codes) are never stored
//! either; a retry of such a request runs again.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::audit::Journal;
use crate::http::Principal;
use crate::platform::crypto::sha256_hex;
use crate::platform::error::{Error, Result};
use crate::store::{Store, to_item, ttl_after};

pub const HEADER: &str = "idempotency-key";
const KEEP_SECONDS: i64 = 24 * 3600;
/// Responses larger than this are not kept (DynamoDB items are at most 400 KB).
const MAX_STORED_BODY: usize = 300 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    pk: String,
    sk: String,
    fingerprint: String,
    state: String,
    #[serde(default)]
    status: u16,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    body: String,
    ttl: i64,
    /// `PERSONAL#<user id>` for a signed-in caller: an erasure finds the
    /// caller's stored responses there (they may hold personal data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi2pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi2sk: Option<String>,
}

pub async fn middleware(State(store): State<Journal>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(HEADER).cloned() else {
        return next.run(request).await;
    };
    if request.extensions().get::<Principal>().is_none() {
        return next.run(request).await;
    }
    match run(&store, key, request, next).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn run(store: &Store, key: HeaderValue, request: Request, next: Next) -> Result<Response> {
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| Error::field("Idempotency-Key", "must be 1 to 255 visible characters"))?
        .to_string();
    let owner = request.extensions().get::<Principal>().map(|p| p.user_id.clone()).unwrap_or_default();
    let (parts, body) = request.into_parts();
    let limit = crate::http::current_body_limit().max(1);
    let bytes = to_bytes(body, limit).await.map_err(|_| Error::PayloadTooLarge { limit })?;
    let fingerprint = sha256_hex(&[parts.method.as_str().as_bytes(), parts.uri.path().as_bytes(), &bytes].concat());
    let pk = format!("IDEMPOTENCY#{owner}#{}", sha256_hex(key.as_bytes()));

    let claim = Record {
        pk: pk.clone(),
        sk: "IDEMPOTENCY".into(),
        fingerprint: fingerprint.clone(),
        state: "in_progress".into(),
        status: 0,
        content_type: None,
        location: None,
        body: String::new(),
        ttl: ttl_after(KEEP_SECONDS),
        gsi2pk: (!owner.is_empty()).then(|| crate::audit::pseudonyms::personal_pk(&owner)),
        gsi2sk: (!owner.is_empty()).then(|| pk.clone()),
    };
    if !store.put_new(to_item(&claim)?).await? {
        let existing: Record = store.get(&pk, "IDEMPOTENCY").await?.ok_or_else(|| Error::Conflict("retry the request".into()))?;
        if existing.fingerprint != fingerprint {
            return Err(Error::Unprocessable("this Idempotency-Key was used for a different request".into()));
        }
        if existing.state != "done" {
            return Err(Error::Conflict("a request with this Idempotency-Key is still in progress".into()));
        }
        return Ok(replay(existing));
    }

    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let status = response.status();
    let no_store = response
        .headers()
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case("no-store")));
    if status.is_server_error() || no_store {
        // Let the client retry a failure that was not its fault; and never
        // keep a response that holds secrets.
        let _ = store.delete(&pk, "IDEMPOTENCY").await;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX).await.map_err(|e| Error::internal(format!("reading response: {e}")))?;
    if body.len() <= MAX_STORED_BODY {
        let header_str = |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let done = Record {
            state: "done".into(),
            status: status.as_u16(),
            content_type: header_str(header::CONTENT_TYPE),
            location: header_str(header::LOCATION),
            body: B64.encode(&body),
            ..claim
        };
        // This request's own record, claimed above: replaced outright.
        store.put_item_unchecked(to_item(&done)?).await?;
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

fn replay(record: Record) -> Response {
    let body = B64.decode(record.body).unwrap_or_default();
    let mut response = (StatusCode::from_u16(record.status).unwrap_or(StatusCode::OK), body).into_response();
    let headers = response.headers_mut();
    if let Some(ct) = record.content_type.and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    if let Some(loc) = record.location.and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert(header::LOCATION, loc);
    }
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}
