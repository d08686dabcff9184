//! `GET /api/v1/admin/audit-logs/verify` and `POST
//! /api/v1/admin/audit-logs/export`: check the sealed audit log against its
//! signed digests (naming the first mismatch), and export a range with its
//! digests and the public key as NDJSON for offline verification (a job).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use shared::audit::AuditEntry;
use shared::audit::digest::Report;
use shared::domain::jobs::Job;
use shared::http::Caller;
use shared::http::extract::{ValidJson, ValidQuery};
use shared::platform::error::{Error, Result};
use shared::platform::time;
use shared::store::timestamp;
use utoipa::{IntoParams, ToSchema};

use crate::AdminState;

/// A live verification reads every entry and digest of the range within
/// one request; longer ranges go through `keel audit verify`.
const MAX_VERIFY_DAYS: i64 = 31;
/// An export job streams at most this range.
const MAX_EXPORT_DAYS: i64 = 366;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// From this time (RFC 3339). Without `from` and `to`: every entry
    /// since the last verification (`last_verified.entries_verified_to`;
    /// the chain's start the first time), up to now.
    pub from: Option<String>,
    /// Up to this time (RFC 3339); default now (`from` given: at most 31
    /// days after it).
    pub to: Option<String>,
    /// Check the digest chain from genesis again, not from the last
    /// verified digest (which was itself checked back to genesis).
    pub full_chain: Option<bool>,
}

/// `[from, to]` from optional RFC 3339 bounds, at most `max_days` long.
fn range(from: &Option<String>, to: &Option<String>, max_days: i64) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let (from, to) = (time::field("from", from.as_deref())?, time::field("to", to.as_deref())?);
    let to = to.unwrap_or_else(Utc::now);
    let from = from.unwrap_or(to - Duration::days(1));
    if from > to {
        return Err(Error::field("from", "must not be after to"));
    }
    if to - from > Duration::days(max_days) {
        return Err(Error::field("from", format!("the range is at most {max_days} days")));
    }
    Ok((from, to))
}

#[utoipa::path(get, path = "/api/v1/admin/audit-logs/verify", tag = "audit", params(VerifyQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "The verification report; `ok` is false and `first_problem` names the first mismatch when the log was tampered with", body = Report),
        (status = 400, description = "Invalid range", body = shared::platform::error::Problem),
        (status = 403, description = "Missing audit:read", body = shared::platform::error::Problem),
    ))]
pub async fn verify(State(state): State<AdminState>, ValidQuery(q): ValidQuery<VerifyQuery>) -> Result<Json<Report>> {
    let range = if q.from.is_some() || q.to.is_some() {
        let (from, to) = range(&q.from, &q.to, MAX_VERIFY_DAYS)?;
        Some((timestamp(from - Duration::microseconds(1)), timestamp(to)))
    } else {
        None
    };
    Ok(Json(state.audit.verify_and_remember(range, q.full_chain.unwrap_or(false), Utc::now()).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditExportRequest {
    /// From this time (RFC 3339); default 24 hours before `to`.
    pub from: Option<String>,
    /// Up to this time (RFC 3339); default now.
    pub to: Option<String>,
    /// Only entries with this action, or this prefix when it ends in `.`.
    /// A filtered export verifies what it holds but cannot show deletions.
    pub action: Option<String>,
    /// Only entries by this actor.
    pub actor_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditExportAccepted {
    pub job_id: String,
    pub status: shared::domain::jobs::JobStatus,
}

/// Parameters of an `audit_export` job (what the worker reads back).
#[derive(Debug, Serialize)]
struct ExportParams {
    from: String,
    to: String,
    action: Option<String>,
    actor_id: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/admin/audit-logs/export", tag = "audit", request_body = AuditExportRequest, security(("bearer" = [])),
    responses(
        (status = 202, description = "The export job was queued; its result names the NDJSON object in the exports bucket", body = AuditExportAccepted),
        (status = 400, description = "Invalid range or filter", body = shared::platform::error::Problem),
        (status = 403, description = "Missing audit:read", body = shared::platform::error::Problem),
    ))]
pub async fn export(
    State(state): State<AdminState>,
    caller: Caller,
    ValidJson(body): ValidJson<AuditExportRequest>,
) -> Result<(StatusCode, Json<AuditExportAccepted>)> {
    let (from, to) = range(&body.from, &body.to, MAX_EXPORT_DAYS)?;
    for (field, value) in [("action", &body.action), ("actor_id", &body.actor_id)] {
        if value.as_ref().is_some_and(|v| v.is_empty() || v.len() > 200) {
            return Err(Error::field(field, "must be 1 to 200 characters"));
        }
    }
    let params = ExportParams { from: shared::store::timestamp(from), to: shared::store::timestamp(to), action: body.action, actor_id: body.actor_id };
    let params = serde_json::to_value(&params).map_err(|e| Error::internal(e.to_string()))?;
    let job = Job::new(shared::domain::jobs::JobKind::AuditExport, &caller.principal.user_id, params.clone());
    let platform = &state.platform;
    // Exports of the audit log are themselves audited (ARCHITECTURE.md §5).
    let audit = AuditEntry::new(&caller.actor(), "audit.export", "job", &job.id).changes::<(), _>(None, Some(&params));
    platform.store.commit(vec![job.create_write(platform.store.table())?], &audit).await?;
    Ok((StatusCode::ACCEPTED, Json(AuditExportAccepted { job_id: job.id, status: job.status })))
}
