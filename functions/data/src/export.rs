//! `POST /api/v1/data/export`: an export of a dataset (needs `data:export`;
//! the audit log also `audit:read`: the route's rule, `crate::EXPORT_ACCESS`)
//! or, without a dataset, of the caller's own data. Small text exports are answered in the response; the rest
//! become a `data_export` job (202 + job id) that the jobs worker streams to
//! the exports bucket. Either way the export is audited.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared::audit::AuditEntry;
use shared::domain::export::{self, Dataset, ExportParams, Filters, Format};
use shared::domain::jobs::{Job, JobStatus};
use shared::http::Caller;
use shared::http::extract::ValidJson;
use shared::identity::rbac::Permission;
use shared::platform::error::{Error, Result};
use utoipa::ToSchema;

use crate::DataState;

/// At most this many DynamoDB reads (query pages) are spent on answering
/// inline, and only for a plan of at most this many partitions (a week of
/// audit day partitions plus one); a larger plan is a job at once.
const READ_BUDGET: usize = 8;

/// How the request decided between an inline answer and a job (audited).
#[derive(Debug, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
enum Decision {
    /// The rollup counters say the export is larger than the inline limit.
    Estimate { estimate: export::Estimate },
    /// No counter fits and the plan has more partitions than the read budget.
    ReadBudget { partitions: usize },
    /// A bounded read (at most `inline_rows + 1` items) found more rows, or
    /// needed more pages than it may read.
    BoundedRead { estimate: Option<export::Estimate> },
    /// XLSX/PDF, `delivery: job`, or inline answers turned off.
    Requested,
}

/// Inline or job, from a cheap estimate, never by reading the dataset: the
/// rollup counters first; a read only when they say the export is small
/// (or cannot say), bounded to `inline_rows + 1` items and [`READ_BUDGET`]
/// pages; where the counters bound the rows but a filter narrows them, a
/// single page of one partition. `Ok(Err(decision))` is a job.
async fn inline_or_job(state: &DataState, params: &ExportParams, delivery: Delivery) -> Result<std::result::Result<(Vec<u8>, usize), Decision>> {
    let limit = state.exports.inline_rows;
    if delivery != Delivery::Auto || limit == 0 || params.format.text_encoder().is_none() {
        return Ok(Err(Decision::Requested));
    }
    let store = &state.platform.store;
    let now = chrono::Utc::now();
    let partitions = params.filters.plan(now)?.len();
    let estimate = export::estimate(store, &params.filters, now).await?;
    let max_pages = match &estimate {
        Some(e) if e.rows > limit as u64 && (e.exact || partitions > 1) => return Ok(Err(Decision::Estimate { estimate: e.clone() })),
        // The counters bound the rows but a filter narrows them: one page.
        Some(e) if e.rows > limit as u64 => 1,
        _ if partitions > READ_BUDGET => return Ok(Err(Decision::ReadBudget { partitions })),
        _ => READ_BUDGET,
    };
    Ok(export::encode_small(store, params, limit, max_pages).await?.ok_or(Decision::BoundedRead { estimate }))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Inline when small enough (CSV, JSON, NDJSON, SQL), else a job.
    #[default]
    Auto,
    /// Always a job (a download link when done).
    Job,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// What to export; omit it to export your own data (profile, charts,
    /// orders, activity).
    pub dataset: Option<Dataset>,
    /// Dataset filters (docs/exports.md): users `status, from, to`; charts
    /// `moderation_status, owner_id, from, to`; orders `user_id, status,
    /// from, to`; activity `user_id, kind, from, to`; audit `actor_id,
    /// target_type, target_id, action, outcome, from, to`.
    #[schema(value_type = Option<Object>)]
    pub filters: Option<Value>,
    /// Columns, in order; default all of the dataset's.
    pub columns: Option<Vec<String>>,
    pub format: Format,
    #[serde(default)]
    pub delivery: Delivery,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExportAccepted {
    pub job_id: String,
    pub status: JobStatus,
    /// Where to follow the job.
    pub location: String,
}

/// The request checked: job parameters, or the field at fault.
fn check(caller: &Caller, body: &ExportRequest) -> Result<ExportParams> {
    let principal = &caller.principal;
    let filters = match body.dataset {
        // Access (data:export, the audit log also audit:read) is the route's rule (`crate::EXPORT_ACCESS`).
        Some(dataset) => Filters::parse(dataset, body.filters.as_ref())?,
        None => {
            if body.filters.as_ref().is_some_and(|f| f.as_object().is_none_or(|o| !o.is_empty())) {
                return Err(Error::field("filters", "filters apply to datasets; an export of your own data takes none"));
            }
            Filters::Own { subject_id: principal.user_id.clone() }
        }
    };
    let columns = export::select_columns(filters.columns(), body.columns.as_deref())?;
    Ok(ExportParams {
        // Data shaping, not access: personal columns are masked without pii:read.
        mask: filters.dataset().is_some() && !principal.can(Permission::PiiRead),
        columns: columns.iter().map(|c| c.name.to_string()).collect(),
        format: body.format,
        filters,
    })
}

fn file_name(params: &ExportParams) -> String {
    let what = params.filters.dataset().map(Dataset::as_str).unwrap_or("my-data");
    format!("keel-{what}-{}.{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), params.format.extension())
}

#[utoipa::path(post, path = "/api/v1/data/export", tag = "data", request_body = ExportRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried export request safe (one job)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A small export, answered at once: the file itself (CSV, JSON, NDJSON or SQL); `x-keel-rows` gives its row count"),
        (status = 202, description = "The export is a job; follow `location` (GET /api/v1/data/jobs/{job_id})", body = ExportAccepted),
        (status = 400, description = "Invalid dataset, filter, column or format (the field is named)", body = shared::platform::error::Problem),
        (status = 403, description = "A dataset needs data:export (the audit log also audit:read)", body = shared::platform::error::Problem),
    ))]
pub async fn create(State(state): State<DataState>, caller: Caller, ValidJson(body): ValidJson<ExportRequest>) -> Result<Response> {
    let params = check(&caller, &body)?;
    let platform = &state.platform;
    let store = &platform.store;
    let summary =
        json!({ "dataset": params.filters.dataset(), "filters": params.filters, "columns": params.columns, "format": params.format, "masked": params.mask });

    let decision = match inline_or_job(&state, &params, body.delivery).await? {
        Ok((bytes, rows)) => {
            let (target_type, target_id) = match params.filters.dataset() {
                Some(d) => ("dataset", d.as_str().to_string()),
                None => ("user", caller.principal.user_id.clone()),
            };
            let mut after = summary.clone();
            after["rows"] = json!(rows);
            after["delivery"] = json!("inline");
            store.record(&AuditEntry::new(&caller.actor(), "data.export", target_type, &target_id).changes::<(), _>(None, Some(&after))).await?;
            let disposition = format!("attachment; filename=\"{}\"", file_name(&params));
            return Ok((
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, params.format.content_type().to_string()),
                    (header::CONTENT_DISPOSITION, disposition),
                    (header::HeaderName::from_static("x-keel-rows"), rows.to_string()),
                ],
                Body::from(bytes),
            )
                .into_response());
        }
        Err(decision) => decision,
    };

    let job_params = serde_json::to_value(&params).map_err(|e| Error::internal(e.to_string()))?;
    let job = Job::new(shared::domain::jobs::JobKind::DataExport, &caller.principal.user_id, job_params);
    let mut after = summary;
    after["delivery"] = json!("job");
    after["decision"] = serde_json::to_value(&decision).map_err(|e| Error::internal(e.to_string()))?;
    let audit = AuditEntry::new(&caller.actor(), "data.export", "job", &job.id).changes::<(), _>(None, Some(&after));
    store.commit(vec![job.create_write(store.table())?], &audit).await?;
    let location = format!("/api/v1/data/jobs/{}", job.id);
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location.clone())], Json(ExportAccepted { job_id: job.id, status: job.status, location })).into_response())
}
