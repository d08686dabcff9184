//! Erasure (GDPR art. 17 / CCPA deletion): `DELETE /api/v1/data/user/{user_id}`
//! records a tracked subject request and queues the `erasure` job, which
//! removes or anonymizes the person everywhere, destroys their audit key
//! (crypto-shredding) and signs a certificate (docs/subject-requests.md).
//! `GET /api/v1/data/requests/{request_id}/certificate` returns it to
//! operators with `data:requests`, to the requester, or to whoever holds the
//! receipt given when the request was made (the person cannot sign in
//! afterwards).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::domain::jobs::Job;
use shared::domain::subject_requests::{self, Regime, RequestKind, RequestStatus, SubjectRequest};
use shared::http::{Caller, Principal};
use shared::identity::rbac::Permission;
use shared::platform::crypto::{random_token, sha256_hex};
use shared::platform::error::{Error, Result};
use shared::store::ids::{SubjectRequestId, UserId};
use utoipa::{IntoParams, ToSchema};

use crate::DataState;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ErasureQuery {
    /// `gdpr` (30-day deadline, the default) or `ccpa` (45 days).
    pub regime: Option<Regime>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErasureAccepted {
    pub request_id: String,
    pub job_id: String,
    pub status: RequestStatus,
    pub due_at: String,
    /// Shown once: fetches the certificate without signing in (the person
    /// erased cannot). Keep it.
    pub receipt: String,
    /// Where the signed certificate appears when the erasure is done.
    pub certificate_location: String,
    /// The tracked request.
    pub location: String,
}

#[utoipa::path(delete, path = "/api/v1/data/user/{user_id}", tag = "data",
    params(("user_id" = String, Path, description = "The person to erase (yourself, or anyone with data:erase)"), ErasureQuery),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Recorded; a job erases the person and signs a certificate", body = ErasureAccepted),
        (status = 403, description = "Erasing another user needs data:erase", body = shared::platform::error::Problem),
        (status = 404, description = "No such user", body = shared::platform::error::Problem),
        (status = 409, description = "A super admin (remove the role first), or an erasure of this user is already under way", body = shared::platform::error::Problem),
    ))]
pub async fn create(State(state): State<DataState>, caller: Caller, Path(user_id): Path<String>, Query(query): Query<ErasureQuery>) -> Result<Response> {
    let me = caller.principal.user_id.clone();
    // Erasing another user needs data:erase: the route's rule (self or permission).
    let store = &state.platform.store;
    let missing = || Error::NotFound(format!("no user {user_id}"));
    let user_id = UserId::parse(&user_id).ok_or_else(missing)?;
    let user = shared::identity::users::get(store, &user_id).await?.ok_or_else(missing)?;
    if user.roles.iter().any(|r| r == "super_admin") {
        return Err(Error::Conflict("a super admin cannot be erased: remove the super_admin role first (there must always be one)".into()));
    }
    let regime = query.regime.unwrap_or_default();
    let mut request = SubjectRequest::new(RequestKind::Erasure, regime, &user_id, &me);
    let receipt = random_token();
    let params = serde_json::json!({ "request_id": request.id, "receipt_sha256": sha256_hex(receipt.as_bytes()) });
    let job = Job::new(shared::domain::jobs::JobKind::Erasure, subject_requests::ERASURE_JOB_OWNER, params);
    request.job_id = Some(job.id.clone());
    let guard = subject_requests::erasure_guard(store.table(), &user_id, &request.id)?;
    let audit = request.audit(&caller.actor(), "data.subject_request.create");
    subject_requests::create_with(store, &request, vec![job.create_write(store.table())?, guard], audit).await?;
    let location = format!("/api/v1/data/requests/{}", request.id);
    let accepted = ErasureAccepted {
        certificate_location: format!("{location}/certificate"),
        location: location.clone(),
        request_id: request.id,
        job_id: job.id,
        status: request.status,
        due_at: request.due_at,
        receipt,
    };
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(accepted)).into_response())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CertificateQuery {
    /// The receipt from the erasure's 202 answer (instead of a token).
    pub receipt: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/data/requests/{request_id}/certificate", tag = "data",
    params(("request_id" = String, Path, description = "An erasure request"), CertificateQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The signed erasure certificate (verify `signature` over `keel-erasure-certificate/1:<sha256>` with the audit key's public key)", body = Object),
        (status = 404, description = "No such erasure request, or not yours to see", body = shared::platform::error::Problem),
        (status = 409, description = "The erasure is not finished yet", body = shared::platform::error::Problem),
    ))]
pub async fn certificate(
    State(state): State<DataState>,
    principal: Option<Principal>,
    Path(request_id): Path<String>,
    Query(query): Query<CertificateQuery>,
) -> Result<Json<Value>> {
    let store = &state.platform.store;
    let not_found = || Error::NotFound(format!("no erasure request {request_id}"));
    let request_id = SubjectRequestId::parse(&request_id).ok_or_else(not_found)?;
    let request = subject_requests::get(store, &request_id).await?.filter(|r| r.kind == RequestKind::Erasure).ok_or_else(not_found)?;
    let job = match &request.job_id {
        Some(id) => shared::domain::jobs::get(store, id).await?,
        None => None,
    };
    let by_receipt = query.receipt.as_deref().is_some_and(|r| {
        let expected = job.as_ref().and_then(|j| j.params["receipt_sha256"].as_str()).unwrap_or("");
        !expected.is_empty() && constant_time_eq(sha256_hex(r.as_bytes()).as_bytes(), expected.as_bytes())
    });
    // Scoping, not access (the route is open to receipts): a signed-in caller sees their own request's certificate, or any with data:requests; others get 404.
    let by_principal = principal.as_ref().is_some_and(|p| p.can(Permission::DataRequests) || p.user_id == request.requested_by);
    if !by_receipt && !by_principal {
        return Err(not_found());
    }
    if request.status != RequestStatus::Completed {
        return Err(Error::Conflict(format!("the erasure is {}; the certificate is made when it completes", request.status.as_str())));
    }
    let key =
        request.result.as_ref().and_then(|r| r["certificate_key"].as_str()).ok_or_else(|| Error::internal("completed erasure without a certificate key"))?;
    let object = state
        .s3
        .get_object()
        .bucket(&state.platform.config.exports_bucket)
        .key(key)
        .send()
        .await
        .map_err(shared::platform::error::aws("s3 GetObject (erasure certificate)"))?;
    let bytes = object.body.collect().await.map_err(|e| Error::internal(format!("reading the certificate: {e}")))?.into_bytes();
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| Error::internal(format!("certificate is not JSON: {e}")))?;
    Ok(Json(value))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
