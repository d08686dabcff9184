//! `POST /api/v1/data/export/gdpr`: a GDPR/CCPA subject export — everything
//! Keel holds about a person, as one zip the `jobs` worker builds
//! (`gdpr_export`). Anyone signed in may ask for their own; asking for
//! another user's needs `data:requests`. The request is tracked
//! (`shared::domain::subject_requests`, `GET /api/v1/data/requests`) with its
//! deadline; the request, its job and the audit entry are one transaction.
//! The zip is downloaded like other exports: `GET /api/v1/data/jobs/{job_id}`
//! by whoever asked.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::domain::jobs::Job;
use shared::domain::subject_requests::{self, ExportJobParams, Regime, RequestKind, RequestStatus, SubjectRequest};
use shared::http::Caller;
use shared::http::extract::ValidJson;
use shared::platform::error::{Error, Result};
use shared::store::ids::UserId;
use utoipa::ToSchema;

use crate::DataState;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectExportRequest {
    /// The user whose data to export; default (or your own id): yourself.
    /// Anyone else's needs `data:requests`.
    pub user_id: Option<String>,
    /// The law the request is made under: `gdpr` (30 days, the default) or
    /// `ccpa` (45 days).
    #[serde(default)]
    pub regime: Regime,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubjectExportAccepted {
    pub request_id: String,
    pub job_id: String,
    pub status: RequestStatus,
    /// The deadline (RFC 3339): received plus 30 days (GDPR) or 45 (CCPA).
    pub due_at: String,
    /// Where to follow the job and, once done, download the zip
    /// (`GET /api/v1/data/jobs/{job_id}`).
    pub location: String,
}

#[utoipa::path(post, path = "/api/v1/data/export/gdpr", tag = "data", request_body = SubjectExportRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe (one request, one job)")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Recorded; the zip is built by a job: follow `location` (GET /api/v1/data/jobs/{job_id}); the request is at GET /api/v1/data/requests/{request_id}", body = SubjectExportAccepted),
        (status = 400, description = "Invalid body (the field is named)", body = shared::platform::error::Problem),
        (status = 403, description = "Another user's export needs data:requests", body = shared::platform::error::Problem),
        (status = 404, description = "No such user", body = shared::platform::error::Problem),
    ))]
pub async fn create(State(state): State<DataState>, caller: Caller, ValidJson(body): ValidJson<SubjectExportRequest>) -> Result<Response> {
    let me = caller.principal.user_id.clone();
    let subject_id = body.user_id.clone().unwrap_or_else(|| me.clone());
    // Another user's export needs data:requests: the route's rule, applied
    // before this runs, so who may not ask learns nothing about who exists.
    let store = &state.platform.store;
    let missing = || Error::NotFound(format!("no user {subject_id}"));
    let subject_id = UserId::parse(&subject_id).ok_or_else(missing)?;
    shared::identity::users::get(store, &subject_id).await?.ok_or_else(missing)?;

    let mut request = SubjectRequest::new(RequestKind::Export, body.regime, &subject_id, &me);
    let params = ExportJobParams { request_id: request.id.clone(), subject_id: subject_id.to_string(), regime: body.regime };
    // The job belongs to whoever asked: they follow and download it.
    let job = Job::new(shared::domain::jobs::JobKind::GdprExport, &me, serde_json::to_value(&params).map_err(|e| Error::internal(e.to_string()))?);
    request.job_id = Some(job.id.clone());
    let audit = request.audit(&caller.actor(), "data.subject_request.create");
    subject_requests::create_with(store, &request, vec![job.create_write(store.table())?], audit).await?;
    let location = format!("/api/v1/data/jobs/{}", job.id);
    let accepted = SubjectExportAccepted { request_id: request.id, job_id: job.id, status: request.status, due_at: request.due_at, location: location.clone() };
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(accepted)).into_response())
}
