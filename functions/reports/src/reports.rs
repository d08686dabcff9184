//! `POST /api/v1/reports/generate` (a report job, 202), `POST
//! /api/v1/reports/validate` (a spec's errors and a row estimate, before
//! anything runs), `GET /api/v1/reports/templates`, `GET
//! /api/v1/reports/{report_id}` (status, files with presigned downloads)
//! and `GET /api/v1/reports` (the caller's and the shared ones).
//!
//! A report is a `report` job (`JOB#<id>`): its parameters are the
//! `generate::ReportJob`, its result the `generate::ReportResult`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use shared::audit::AuditEntry;
use shared::domain::export;
use shared::domain::jobs::{self, Job, JobKind, JobStatus, Progress};
use shared::http::Caller;
use shared::http::extract::{PathId, ValidJson, ValidQuery};
use shared::identity::rbac::Permission;
use shared::platform::error::{Error, Result};
use shared::store::ids::JobId;
use shared::store::{QuerySpec, s};
use utoipa::{IntoParams, ToSchema};

use crate::ReportsState;
use crate::datasets::{Filters, Source};
use crate::generate::{self, ReportCompression, ReportFormat, ReportJob, ReportResult};
use crate::spec::{self, Spec};
use crate::templates::{self, TemplateInfo};

/// How long a download link is valid.
const DOWNLOAD_TTL: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// A template's id (`GET /api/v1/reports/templates`); or give a `spec`.
    pub template: Option<String>,
    /// The builder's model: `{dataset, columns, filters, group_by, metrics, having, sort, limit, chart, title, description}` (docs/reports.md).
    #[schema(value_type = Option<Object>)]
    pub spec: Option<Value>,
    /// One format; or several in `formats`.
    pub format: Option<ReportFormat>,
    pub formats: Option<Vec<ReportFormat>>,
    /// A template's parameters (strings; each template lists its own).
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    pub compress: Option<ReportCompression>,
    /// The PDF's paper: `a4` (default) or `letter`.
    pub page_size: Option<keel_render::PageSize>,
    /// List it to everyone who reads reports (default: only to you).
    #[serde(default)]
    pub shared: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GenerateAccepted {
    pub report_id: String,
    pub status: JobStatus,
    /// Where to follow it.
    pub location: String,
}

/// The job a request asks for, checked (every error names its field).
fn job_of(caller: &Caller, body: &GenerateRequest) -> Result<(ReportJob, generate::Checked)> {
    let formats = generate::formats_of(body.format, body.formats.as_deref(), &[])?;
    let principal = &caller.principal;
    let job = ReportJob {
        template: body.template.clone(),
        parameters: body.parameters.clone().unwrap_or_default(),
        spec: generate::parse_spec(body.spec.as_ref())?,
        formats,
        compress: body.compress,
        page_size: body.page_size.unwrap_or_default(),
        // Data shaping, not access: personal fields are masked without pii:read.
        mask: !principal.can(Permission::PiiRead),
        requested_by: principal.user_id.clone(),
        shared: body.shared,
        delivery: None,
    };
    let checked = generate::check(&job, Utc::now()).map_err(Error::Validation)?;
    Ok((job, checked))
}

#[utoipa::path(post, path = "/api/v1/reports/generate", tag = "reports", request_body = GenerateRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe (one report)")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The report is being generated; follow `location`", body = GenerateAccepted),
        (status = 400, description = "The template, parameters, spec or formats are invalid (every bad field is named)", body = shared::platform::error::Problem),
        (status = 403, description = "Needs reports:write (a report on the audit log also audit:read)", body = shared::platform::error::Problem),
    ))]
pub async fn generate(State(state): State<ReportsState>, caller: Caller, ValidJson(body): ValidJson<GenerateRequest>) -> Result<Response> {
    let (report, checked) = job_of(&caller, &body)?;
    let store = &state.platform.store;
    let params = serde_json::to_value(&report).map_err(|e| Error::internal(e.to_string()))?;
    let job = Job::new(JobKind::Report, &caller.principal.user_id, params);
    let summary = json!({
        "title": checked.title, "template": report.template, "spec": report.spec, "parameters": report.parameters,
        "formats": report.formats, "masked": report.mask, "shared": report.shared,
    });
    let audit = AuditEntry::new(&caller.actor(), "report.generate", "report", &job.id).changes::<(), _>(None, Some(&summary));
    store.commit(vec![job.create_write(store.table())?], &audit).await?;
    let location = format!("/api/v1/reports/{}", job.id);
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location.clone())], Json(GenerateAccepted { report_id: job.id, status: job.status, location }))
        .into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    #[schema(value_type = Object)]
    pub spec: Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OutputColumn {
    pub name: String,
    /// text, number or time.
    pub kind: String,
    pub group: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Estimate {
    /// Records the source holds for these filters, from the rollup
    /// counters (null when they cannot say: the run will tell).
    pub rows_read: Option<u64>,
    /// Whether `rows_read` is exact (else an upper bound).
    pub exact: bool,
    /// Rows the report will have, at most: the limit, the source's rows,
    /// and for time buckets the periods of the range.
    pub rows_at_most: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Validation {
    pub valid: bool,
    /// Every problem, each naming its field (`group_by[1].bucket`).
    pub errors: Vec<shared::platform::error::FieldError>,
    pub columns: Vec<OutputColumn>,
    pub estimate: Option<Estimate>,
}

#[utoipa::path(post, path = "/api/v1/reports/validate", tag = "reports", request_body = ValidateRequest, security(("bearer" = [])),
    responses(
        (status = 200, description = "The spec's errors (unknown field, metric on a non-numeric field, grouping too fine for the range, …), its output columns and a row estimate; nothing runs", body = Validation),
        (status = 400, description = "The body is not a spec at all", body = shared::platform::error::Problem),
    ))]
pub async fn validate(State(state): State<ReportsState>, ValidJson(body): ValidJson<ValidateRequest>) -> Result<Json<Validation>> {
    let Some(spec) = generate::parse_spec(Some(&body.spec))? else {
        return Err(Error::field("spec", "required"));
    };
    let now = Utc::now();
    let plan = match spec::validate(&spec, now) {
        Ok(plan) => plan,
        Err(errors) => return Ok(Json(Validation { valid: false, errors, columns: Vec::new(), estimate: None })),
    };
    let columns = plan
        .outputs
        .iter()
        .map(|o| OutputColumn {
            name: o.name.clone(),
            kind: serde_json::to_value(o.kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            group: o.group,
        })
        .collect();
    let counted = match &plan.filters {
        Filters::Export(f) => export::estimate(&state.platform.store, f, now).await?,
        Filters::Metrics(..) => None,
    };
    let (from, to) = plan.filters.range(now);
    let from = from.unwrap_or(to - chrono::Duration::days(spec::OPEN_RANGE_DAYS));
    // Groups bounded by their time buckets' periods, when every group is bucketed.
    let periods: Option<u64> = spec.group_by.iter().try_fold(1u64, |n, g| g.bucket().map(|b| n.saturating_mul(b.periods_between(from, to).max(1) as u64)));
    let mut bounds: Vec<u64> = Vec::new();
    if let Some(l) = spec.limit {
        bounds.push(l);
    }
    if let Some(c) = &counted {
        bounds.push(c.rows);
    }
    if plan.aggregated {
        if spec.group_by.is_empty() {
            bounds.push(1);
        } else if let Some(p) = periods {
            bounds.push(p);
        }
    } else {
        bounds.push(crate::engine::MAX_RAW_ROWS as u64);
    }
    let estimate =
        Estimate { rows_read: counted.as_ref().map(|c| c.rows), exact: counted.as_ref().is_some_and(|c| c.exact), rows_at_most: bounds.into_iter().min() };
    Ok(Json(Validation { valid: true, errors: Vec::new(), columns, estimate: Some(estimate) }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    pub templates: Vec<TemplateInfo>,
    /// Every dataset a spec may read, with its fields.
    #[schema(value_type = Vec<Object>)]
    pub datasets: Vec<Value>,
}

#[utoipa::path(get, path = "/api/v1/reports/templates", tag = "reports", security(("bearer" = [])),
    responses((status = 200, description = "The report templates with their parameters and formats, and the datasets a spec can use", body = TemplateList)))]
pub async fn templates() -> Json<TemplateList> {
    let datasets = Source::all().into_iter().map(|s| json!({ "name": s.name(), "fields": s.fields() })).collect();
    Json(TemplateList { templates: templates::list(Utc::now()), datasets })
}

/// A stored file with its download link.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FileView {
    #[serde(flatten)]
    pub file: generate::ReportFile,
    /// A presigned GET, valid 5 minutes (single-report read only).
    pub download_url: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReportView {
    pub report_id: String,
    pub status: JobStatus,
    pub progress: Progress,
    pub title: Option<String>,
    pub owner_id: String,
    pub shared: bool,
    pub template: Option<String>,
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    #[schema(value_type = Option<Object>)]
    pub spec: Option<Spec>,
    pub formats: Vec<ReportFormat>,
    /// Rows of the report's tables (when done).
    pub rows: Option<u64>,
    pub generated_at: Option<String>,
    /// The data's first and last day.
    pub data_range: Option<(String, String)>,
    pub files: Vec<FileView>,
    pub error: Option<String>,
    pub created_at: String,
}

/// A report job as the API shows it (downloads not yet presigned), and its parameters.
pub fn view_of(job: &Job) -> Result<(ReportView, ReportJob)> {
    let report: ReportJob = job.payload()?;
    let result: Option<ReportResult> = job.result.clone().map(serde_json::from_value).transpose().map_err(|e| Error::internal(e.to_string()))?;
    Ok((
        ReportView {
            report_id: job.id.clone(),
            status: job.status,
            progress: job.progress.clone(),
            title: result.as_ref().map(|r| r.title.clone()),
            owner_id: job.owner_id.clone(),
            shared: report.shared,
            template: report.template.clone(),
            parameters: report.parameters.clone(),
            spec: report.spec.clone(),
            formats: report.formats.clone(),
            rows: result.as_ref().map(|r| r.rows),
            generated_at: result.as_ref().map(|r| r.generated_at.clone()),
            data_range: result.as_ref().and_then(|r| r.data_range.clone()),
            files: result.map(|r| r.files.into_iter().map(|file| FileView { file, download_url: None }).collect()).unwrap_or_default(),
            error: job.error.clone(),
            created_at: job.created_at.clone(),
        },
        report,
    ))
}

/// A report the caller may see: their own, or a shared one (others read as missing).
pub async fn visible(state: &ReportsState, caller: &Caller, id: &str) -> Result<(Job, ReportView, ReportJob)> {
    let missing = || Error::NotFound(format!("no report {id}"));
    let job = jobs::get(&state.platform.store, id).await?.filter(|j| j.kind == JobKind::Report).ok_or_else(missing)?;
    let (view, report) = view_of(&job)?;
    if job.owner_id != caller.principal.user_id && !report.shared {
        return Err(missing());
    }
    Ok((job, view, report))
}

#[utoipa::path(get, path = "/api/v1/reports/{report_id}", tag = "reports", security(("bearer" = [])),
    params(("report_id" = String, Path, description = "Report id (UUID)")),
    responses(
        (status = 200, description = "Status, progress, the spec or template, row count, data range, and each file with a presigned download (5 minutes)", body = ReportView),
        (status = 404, description = "No such report, or another's that is not shared", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<ReportsState>, caller: Caller, PathId(id): PathId<JobId>) -> Result<Json<ReportView>> {
    let (_, mut view, _) = visible(&state, &caller, id.as_str()).await?;
    for file in &mut view.files {
        file.download_url = Some(presign(&state, &file.file.key, &file.file.file_name).await?);
    }
    Ok(Json(view))
}

pub async fn presign(state: &ReportsState, key: &str, file_name: &str) -> Result<String> {
    let presigning = aws_sdk_s3::presigning::PresigningConfig::expires_in(DOWNLOAD_TTL).map_err(|e| Error::internal(e.to_string()))?;
    let request = state
        .s3
        .get_object()
        .bucket(&state.platform.config.exports_bucket)
        .key(key)
        .response_content_disposition(format!("attachment; filename=\"{file_name}\""))
        .presigned(presigning)
        .await
        .map_err(shared::platform::error::aws("s3 presign GetObject"))?;
    Ok(request.uri().to_string())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many, newest first (1 to 100; default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReportList {
    pub reports: Vec<ReportView>,
}

#[utoipa::path(get, path = "/api/v1/reports", tag = "reports", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, description = "The caller's reports and the shared ones, newest first (no download links: read one for those)", body = ReportList)))]
pub async fn list(State(state): State<ReportsState>, caller: Caller, ValidQuery(query): ValidQuery<ListQuery>) -> Result<Json<ReportList>> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(Error::field("limit", "must be 1 to 100"));
    }
    let store = &state.platform.store;
    let owner = format!("OWNER#{}", caller.principal.user_id);
    let own = QuerySpec {
        index: Some("gsi1"),
        key_condition: "gsi1pk = :pk",
        filter: "#kind = :kind",
        names: vec![("#kind", "kind")],
        values: vec![(":pk", s(owner)), (":kind", s(JobKind::Report.as_str()))],
        forward: false,
        ..Default::default()
    };
    let shared_spec =
        QuerySpec { index: Some("gsi3"), key_condition: "gsi3pk = :pk", values: vec![(":pk", s(jobs::SHARED_REPORTS))], forward: false, ..Default::default() };
    let ((own, _), (shared, _)) = tokio::try_join!(store.query_filled(&own, None, limit as i32, 10), store.query_filled(&shared_spec, None, limit as i32, 10))?;
    let mut found: Vec<Job> = Vec::new();
    for item in own.into_iter().chain(shared) {
        let job: Job = shared::store::from_item(item)?;
        if !found.iter().any(|j| j.id == job.id) {
            found.push(job);
        }
    }
    found.sort_by(|a, b| (&b.created_at, &b.id).cmp(&(&a.created_at, &a.id)));
    found.truncate(limit as usize);
    let reports = found.iter().map(|j| view_of(j).map(|(v, _)| v)).collect::<Result<Vec<_>>>()?;
    Ok(Json(ReportList { reports }))
}
