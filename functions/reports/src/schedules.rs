//! Scheduled reports: `POST/GET/PUT/DELETE /api/v1/reports/schedules[/{id}]`
//! and `GET …/{id}/runs` (the run log), and [`fire_due`], which the jobs
//! worker runs every minute (EventBridge Scheduler deployed; the local
//! stack's own loop locally, since the emulator's scheduler never fires;
//! tests call it with their own clock).
//!
//! A schedule is a template or spec, formats, a cron expression in an IANA
//! time zone, recipients and when to send (`send_if`). Each firing makes,
//! for every recipient, a *run record* (`REPORTSCHEDULE#<id> /
//! RUN#<run time>#<recipient>`) and a report job, committed with the
//! schedule's next run time in one transaction: the run record is created
//! only if absent, so a (schedule, run time, recipient) is delivered
//! exactly once however many ticks race. With `run_as: recipient` each
//! recipient's report runs with their own permissions (masking, the audit
//! log) and their own filters (`recipient_filters`).

use std::str::FromStr as _;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use shared::audit::{Actor, AuditEntry, Journal};
use shared::domain::jobs::Job;
use shared::http::Caller;
use shared::http::extract::{PathId, ValidJson};
use shared::identity::rbac::{Permission, PermissionSet};
use shared::platform::error::{Error, FieldError, Result};
use shared::store::ids::JobId;
use shared::store::{QuerySpec, Write, from_item, s, to_item};
use utoipa::ToSchema;

use crate::ReportsState;
use crate::generate::{self, ReportCompression, ReportFormat, ReportJob};
use crate::spec::{Comparison, Spec};

pub const MAX_RECIPIENTS: usize = 20;
pub const MAX_SUBJECT: usize = 200;
/// Files up to this size (all together) are attached; larger ones are sent
/// as a share link.
pub const ATTACHMENT_LIMIT: u64 = 7 * 1024 * 1024;
/// The gsi2 partition of enabled schedules, by next run time.
const DUE: &str = "SCHEDULES#due";

/// Whose permissions a scheduled report runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunAs {
    /// The schedule's owner: every recipient gets the owner's report.
    #[default]
    Owner,
    /// Each recipient (a Keel user) gets the report run with their own
    /// permissions and their `recipient_filters`.
    Recipient,
}

/// When a run sends its email (else it is logged as `not_triggered`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SendIf {
    #[default]
    Always,
    /// The report has at least one row.
    HasResults,
    /// Its data differ from the last run's for that recipient (by digest).
    DataChanged,
    /// A row of the first section passes `threshold`.
    Threshold,
    /// The analytics refresh found an anomaly since the last run.
    Anomaly,
}

/// `column op value` on the first section's rows (`send_if: threshold`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub column: String,
    #[schema(value_type = String, example = "gt")]
    pub op: Comparison,
    pub value: f64,
}

/// How a run reaches its recipient (carried on the report job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub schedule_id: String,
    /// RFC 3339: the run time it fires for.
    pub run_at: String,
    pub recipient: String,
    pub subject: String,
    pub send_if: SendIf,
    pub threshold: Option<Threshold>,
    /// Told of every failure.
    pub owner_id: String,
    /// The run could not start (why): the job only logs the error and tells the owner.
    #[serde(default)]
    pub refused: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInput {
    pub name: Option<String>,
    pub template: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub spec: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    pub format: Option<ReportFormat>,
    pub formats: Option<Vec<ReportFormat>>,
    pub compress: Option<ReportCompression>,
    pub page_size: Option<keel_render::PageSize>,
    /// Five fields (minute hour day-of-month month day-of-week), e.g. `0 8 * * MON`.
    #[schema(example = "0 8 * * MON")]
    pub cron: String,
    /// IANA time zone of the cron expression (default UTC).
    #[schema(example = "Europe/Berlin")]
    pub timezone: Option<String>,
    /// Email addresses (with `run_as: recipient`, of Keel users).
    pub recipients: Vec<String>,
    pub subject: Option<String>,
    pub send_if: Option<SendIf>,
    pub threshold: Option<Threshold>,
    pub run_as: Option<RunAs>,
    /// Per recipient (by email): filters merged into the spec's, or parameters into the template's.
    #[schema(value_type = Option<Object>)]
    pub recipient_filters: Option<Map<String, Value>>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// A schedule as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub template: Option<String>,
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    #[schema(value_type = Option<Object>)]
    pub spec: Option<Spec>,
    pub formats: Vec<ReportFormat>,
    pub compress: Option<ReportCompression>,
    pub page_size: keel_render::PageSize,
    pub cron: String,
    pub timezone: String,
    pub recipients: Vec<String>,
    pub subject: String,
    pub send_if: SendIf,
    pub threshold: Option<Threshold>,
    pub run_as: RunAs,
    #[schema(value_type = Object)]
    pub recipient_filters: Map<String, Value>,
    pub enabled: bool,
    /// The owner's report masks personal data (they lack `pii:read`).
    pub owner_mask: bool,
    /// The next run time (RFC 3339, UTC); null when disabled.
    pub next_run_at: Option<String>,
    pub last_run_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub version: u64,
}

impl Schedule {
    pub fn pk(id: &str) -> String {
        format!("REPORTSCHEDULE#{id}")
    }

    fn to_item(&self) -> Result<shared::store::Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(Schedule::pk(&self.id)));
        item.insert("sk".into(), s("META"));
        item.insert("gsi1pk".into(), s(format!("SCHEDULES#{}", self.owner_id)));
        item.insert("gsi1sk".into(), s(format!("{}#{}", self.created_at, self.id)));
        if let (true, Some(next)) = (self.enabled, &self.next_run_at) {
            item.insert("gsi2pk".into(), s(DUE));
            item.insert("gsi2sk".into(), s(format!("{next}#{}", self.id)));
        }
        item.insert("type".into(), s("report_schedule"));
        Ok(item)
    }

    /// The report job a run makes for `recipient` (filters merged), checked.
    fn report(&self, recipient: &str, mask: bool, requested_by: &str, run_at: &str) -> std::result::Result<ReportJob, Vec<FieldError>> {
        let job = self.report_job(recipient, mask, requested_by, run_at);
        generate::check(&job, Utc::now()).map(|_| job)
    }

    /// The report job a run makes for `recipient`, not checked (a run that
    /// cannot start still carries one, to tell the owner).
    fn report_job(&self, recipient: &str, mask: bool, requested_by: &str, run_at: &str) -> ReportJob {
        let extra = self.recipient_filters.get(recipient).and_then(Value::as_object).cloned().unwrap_or_default();
        let mut parameters = self.parameters.clone();
        let mut spec = self.spec.clone();
        if self.template.is_some() {
            parameters.extend(extra);
        } else if let Some(spec) = &mut spec {
            let mut filters = spec.filters.clone().and_then(|f| f.as_object().cloned()).unwrap_or_default();
            filters.extend(extra);
            spec.filters = Some(Value::Object(filters));
        }
        ReportJob {
            template: self.template.clone(),
            parameters,
            spec,
            formats: self.formats.clone(),
            compress: self.compress,
            page_size: self.page_size,
            mask,
            requested_by: requested_by.to_string(),
            shared: false,
            delivery: Some(Delivery {
                schedule_id: self.id.clone(),
                run_at: run_at.to_string(),
                recipient: recipient.to_string(),
                subject: self.subject.clone(),
                send_if: self.send_if,
                threshold: self.threshold.clone(),
                owner_id: self.owner_id.clone(),
                refused: None,
            }),
        }
    }
}

/// The next time `cron` fires strictly after `after`, in `timezone`.
pub fn next_run(cron: &str, timezone: &str, after: DateTime<Utc>) -> std::result::Result<DateTime<Utc>, String> {
    let cron = croner::Cron::from_str(cron).map_err(|e| format!("not a cron expression: {e}"))?;
    let tz = chrono_tz::Tz::from_str(timezone).map_err(|_| format!("unknown time zone `{timezone}` (an IANA name, e.g. Europe/Berlin)"))?;
    let next = cron.find_next_occurrence(&after.with_timezone(&tz), false).map_err(|e| format!("never fires: {e}"))?;
    Ok(next.with_timezone(&Utc))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    !local.is_empty() && domain.contains('.') && email.len() <= 254 && !email.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',')
}

/// A schedule from its input, checked; every error names its field.
fn build(input: &ScheduleInput, caller: &Caller, existing: Option<&Schedule>, now: DateTime<Utc>) -> Result<Schedule> {
    let mut errors: Vec<FieldError> = Vec::new();
    let formats = generate::formats_of(input.format, input.formats.as_deref(), &[ReportFormat::Pdf])?;
    let spec = generate::parse_spec(input.spec.as_ref())?;
    let timezone = input.timezone.clone().unwrap_or_else(|| "UTC".into());
    let cron = input.cron.trim().to_string();
    let next = match next_run(&cron, &timezone, now) {
        Ok(next) => Some(next),
        Err(message) => {
            let field = if message.contains("time zone") { "timezone" } else { "cron" };
            errors.push(FieldError::new(field, message));
            None
        }
    };
    if cron.split_whitespace().count() != 5 && !cron.starts_with('@') {
        errors.push(FieldError::new("cron", "five fields: minute hour day-of-month month day-of-week"));
    }
    if input.recipients.is_empty() || input.recipients.len() > MAX_RECIPIENTS {
        errors.push(FieldError::new("recipients", format!("1 to {MAX_RECIPIENTS} email addresses")));
    }
    let mut recipients: Vec<String> = Vec::new();
    for (i, r) in input.recipients.iter().enumerate() {
        let r = r.trim().to_lowercase();
        if !valid_email(&r) {
            errors.push(FieldError::new(format!("recipients[{i}]"), "not an email address"));
        } else if recipients.contains(&r) {
            errors.push(FieldError::new(format!("recipients[{i}]"), "listed twice"));
        } else {
            recipients.push(r);
        }
    }
    let recipient_filters: Map<String, Value> =
        input.recipient_filters.clone().unwrap_or_default().into_iter().map(|(k, v)| (k.trim().to_lowercase(), v)).collect();
    for (email, filters) in &recipient_filters {
        if !recipients.contains(email) {
            errors.push(FieldError::new(format!("recipient_filters.{email}"), "not one of the recipients"));
        } else if !filters.is_object() {
            errors.push(FieldError::new(format!("recipient_filters.{email}"), "must be an object of filters (or of a template's parameters)"));
        }
    }
    let send_if = input.send_if.unwrap_or_default();
    match (send_if, &input.threshold) {
        (SendIf::Threshold, None) => errors.push(FieldError::new("threshold", "send_if threshold needs {column, op, value}")),
        (SendIf::Threshold, Some(t)) if !t.value.is_finite() => errors.push(FieldError::new("threshold.value", "must be a finite number")),
        (s, Some(_)) if s != SendIf::Threshold => errors.push(FieldError::new("threshold", "only with send_if threshold")),
        _ => {}
    }
    let subject = input.subject.clone().unwrap_or_else(|| input.name.clone().unwrap_or_else(|| "Scheduled report".into()));
    if subject.is_empty() || subject.chars().count() > MAX_SUBJECT || subject.contains(['\r', '\n']) {
        errors.push(FieldError::new("subject", format!("1 to {MAX_SUBJECT} characters on one line")));
    }
    let owner_mask = !caller.principal.can(Permission::PiiRead);
    let now_text = rfc3339(now);
    let schedule = Schedule {
        id: existing.map_or_else(|| uuid::Uuid::now_v7().to_string(), |e| e.id.clone()),
        owner_id: existing.map_or_else(|| caller.principal.user_id.clone(), |e| e.owner_id.clone()),
        name: input.name.clone().unwrap_or_else(|| subject.clone()),
        template: input.template.clone(),
        parameters: input.parameters.clone().unwrap_or_default(),
        spec,
        formats,
        compress: input.compress,
        page_size: input.page_size.unwrap_or_default(),
        cron,
        timezone,
        recipients,
        subject,
        send_if,
        threshold: input.threshold.clone(),
        run_as: input.run_as.unwrap_or_default(),
        recipient_filters,
        enabled: input.enabled.unwrap_or(true),
        owner_mask,
        next_run_at: next.map(rfc3339),
        last_run_at: existing.and_then(|e| e.last_run_at.clone()),
        created_at: existing.map_or_else(|| now_text.clone(), |e| e.created_at.clone()),
        updated_at: now_text,
        version: existing.map_or(1, |e| e.version + 1),
    };
    // The report itself, as the owner would get it (each recipient's is checked at each run).
    let probe = schedule.recipients.first().cloned().unwrap_or_default();
    if let Err(found) = schedule.report(&probe, owner_mask, &schedule.owner_id, "") {
        errors.extend(found);
    }
    if schedule.name.chars().count() > MAX_SUBJECT {
        errors.push(FieldError::new("name", format!("at most {MAX_SUBJECT} characters")));
    }
    if errors.is_empty() { Ok(schedule) } else { Err(Error::Validation(errors)) }
}

async fn load(state: &ReportsState, caller: &Caller, id: &str) -> Result<Schedule> {
    let schedule: Schedule = state.platform.store.get(&Schedule::pk(id), "META").await?.ok_or_else(|| Error::NotFound(format!("no report schedule {id}")))?;
    // Another's schedule reads as missing.
    if schedule.owner_id != caller.principal.user_id {
        return Err(Error::NotFound(format!("no report schedule {id}")));
    }
    Ok(schedule)
}

fn audit_view(s: &Schedule) -> Value {
    json!({
        "name": s.name, "template": s.template, "spec": s.spec, "parameters": s.parameters, "formats": s.formats, "cron": s.cron,
        "timezone": s.timezone, "recipients": s.recipients, "send_if": s.send_if, "run_as": s.run_as, "enabled": s.enabled,
    })
}

#[utoipa::path(post, path = "/api/v1/reports/schedules", tag = "reports", request_body = ScheduleInput, security(("bearer" = [])),
    responses(
        (status = 201, description = "The schedule with its next run time", body = Schedule),
        (status = 400, description = "A bad cron expression, time zone, recipient, send_if, template or spec (the field is named)", body = shared::platform::error::Problem),
        (status = 403, description = "Needs reports:write (a report on the audit log also audit:read)", body = shared::platform::error::Problem),
    ))]
pub async fn create(State(state): State<ReportsState>, caller: Caller, ValidJson(body): ValidJson<ScheduleInput>) -> Result<Response> {
    let schedule = build(&body, &caller, None, Utc::now())?;
    let store = &state.platform.store;
    let audit =
        AuditEntry::new(&caller.actor(), "report.schedule.create", "report_schedule", &schedule.id).changes::<(), _>(None, Some(&audit_view(&schedule)));
    store.commit(vec![Write::put_new(store.table(), schedule.to_item()?, Error::Conflict("schedule exists".into()))?], &audit).await?;
    let location = format!("/api/v1/reports/schedules/{}", schedule.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(schedule)).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<Schedule>,
}

#[utoipa::path(get, path = "/api/v1/reports/schedules", tag = "reports", security(("bearer" = [])),
    responses((status = 200, description = "The caller's schedules, newest first", body = ScheduleList)))]
pub async fn list(State(state): State<ReportsState>, caller: Caller) -> Result<Json<ScheduleList>> {
    let spec = QuerySpec {
        index: Some("gsi1"),
        key_condition: "gsi1pk = :pk",
        values: vec![(":pk", s(format!("SCHEDULES#{}", caller.principal.user_id)))],
        forward: false,
        ..Default::default()
    };
    let (items, _) = state.platform.store.query_filled(&spec, None, 100, 5).await?;
    Ok(Json(ScheduleList { schedules: items.into_iter().map(from_item).collect::<Result<_>>()? }))
}

#[utoipa::path(get, path = "/api/v1/reports/schedules/{schedule_id}", tag = "reports", security(("bearer" = [])),
    params(("schedule_id" = String, Path, description = "Schedule id (UUID)")),
    responses(
        (status = 200, description = "The schedule", body = Schedule),
        (status = 404, description = "No such schedule of yours", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<ReportsState>, caller: Caller, PathId(id): PathId<JobId>) -> Result<Json<Schedule>> {
    Ok(Json(load(&state, &caller, id.as_str()).await?))
}

#[utoipa::path(put, path = "/api/v1/reports/schedules/{schedule_id}", tag = "reports", request_body = ScheduleInput, security(("bearer" = [])),
    params(("schedule_id" = String, Path, description = "Schedule id (UUID)")),
    responses(
        (status = 200, description = "The schedule as replaced, its next run recomputed", body = Schedule),
        (status = 400, description = "A bad field (named)", body = shared::platform::error::Problem),
        (status = 403, description = "A report on the audit log needs audit:read", body = shared::platform::error::Problem),
        (status = 404, description = "No such schedule of yours", body = shared::platform::error::Problem),
        (status = 409, description = "It changed meanwhile (it fired, or another edit)", body = shared::platform::error::Problem),
    ))]
pub async fn replace(
    State(state): State<ReportsState>,
    caller: Caller,
    PathId(id): PathId<JobId>,
    ValidJson(body): ValidJson<ScheduleInput>,
) -> Result<Json<Schedule>> {
    let current = load(&state, &caller, id.as_str()).await?;
    // audit:read for a report on the audit log is the route's rule (the body's spec or template).
    let next = build(&body, &caller, Some(&current), Utc::now())?;
    let store = &state.platform.store;
    let audit =
        AuditEntry::new(&caller.actor(), "report.schedule.update", "report_schedule", &next.id).changes(Some(&audit_view(&current)), Some(&audit_view(&next)));
    store.commit(vec![Write::put_versioned(store.table(), next.to_item()?, current.version)?], &audit).await?;
    Ok(Json(next))
}

#[utoipa::path(delete, path = "/api/v1/reports/schedules/{schedule_id}", tag = "reports", security(("bearer" = [])),
    params(("schedule_id" = String, Path, description = "Schedule id (UUID)")),
    responses(
        (status = 204, description = "Deleted; runs already queued still deliver"),
        (status = 404, description = "No such schedule of yours", body = shared::platform::error::Problem),
    ))]
pub async fn delete(State(state): State<ReportsState>, caller: Caller, PathId(id): PathId<JobId>) -> Result<StatusCode> {
    let current = load(&state, &caller, id.as_str()).await?;
    let store = &state.platform.store;
    let audit = AuditEntry::new(&caller.actor(), "report.schedule.delete", "report_schedule", &current.id).changes::<_, ()>(Some(&audit_view(&current)), None);
    store.commit(vec![Write::delete_versioned(store.table(), &Schedule::pk(&current.id), "META", current.version)?], &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A run's state in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Queued or generating.
    Working,
    /// Sent.
    Success,
    /// Failed for good; the owner was told.
    Error,
    /// The report ran; `send_if` said not to send.
    NotTriggered,
    /// A try failed; the queue retries it.
    Retrying,
}

/// One (run time, recipient) of a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub schedule_id: String,
    pub run_at: String,
    pub recipient: String,
    pub state: RunState,
    pub report_id: Option<String>,
    pub attempts: u32,
    pub error: Option<String>,
    /// `attachment` or `link`, once sent.
    pub delivered: Option<String>,
    pub message_id: Option<String>,
    /// SHA-256 of the report's data (for `send_if: data_changed`).
    pub data_digest: Option<String>,
    pub updated_at: String,
}

impl Run {
    pub fn sk(run_at: &str, recipient: &str) -> String {
        format!("RUN#{run_at}#{recipient}")
    }

    pub fn to_item(&self) -> Result<shared::store::Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(Schedule::pk(&self.schedule_id)));
        item.insert("sk".into(), s(Run::sk(&self.run_at, &self.recipient)));
        item.insert("type".into(), s("report_schedule_run"));
        Ok(item)
    }
}

/// A schedule's runs, newest first (at most `limit`).
pub async fn runs_of(store: &shared::store::Store, schedule_id: &str, limit: i32) -> Result<Vec<Run>> {
    let spec = QuerySpec {
        key_condition: "pk = :pk AND begins_with(sk, :run)",
        values: vec![(":pk", s(Schedule::pk(schedule_id))), (":run", s("RUN#"))],
        forward: false,
        ..Default::default()
    };
    let (items, _) = store.query_filled(&spec, None, limit, 5).await?;
    items.into_iter().map(from_item).collect()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<Run>,
}

#[utoipa::path(get, path = "/api/v1/reports/schedules/{schedule_id}/runs", tag = "reports", security(("bearer" = [])),
    params(("schedule_id" = String, Path, description = "Schedule id (UUID)")),
    responses(
        (status = 200, description = "The run log, newest first: per run time and recipient, success, working, error, not_triggered or retrying", body = RunList),
        (status = 404, description = "No such schedule of yours", body = shared::platform::error::Problem),
    ))]
pub async fn runs(State(state): State<ReportsState>, caller: Caller, PathId(id): PathId<JobId>) -> Result<Json<RunList>> {
    let schedule = load(&state, &caller, id.as_str()).await?;
    Ok(Json(RunList { runs: runs_of(&state.platform.store, &schedule.id, 200).await? }))
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Fired {
    /// (schedule, run time) fired.
    pub runs: Vec<(String, String)>,
    /// Report jobs queued.
    pub jobs: usize,
    /// Recipients whose run could not start (logged as `error`).
    pub refused: usize,
    /// Schedules another tick fired first.
    pub raced: usize,
}

/// Fire every enabled schedule due at `now`: for each recipient a run
/// record and a report job, with the schedule's next run time, in one
/// transaction (see the module's doc). A schedule that missed several
/// times (the scheduler was down) fires once, for its latest due time.
pub async fn fire_due(store: &Journal, now: DateTime<Utc>) -> Result<Fired> {
    let spec = QuerySpec {
        index: Some("gsi2"),
        key_condition: "gsi2pk = :pk AND gsi2sk <= :now",
        values: vec![(":pk", s(DUE)), (":now", s(format!("{}~", rfc3339(now))))],
        forward: true,
        ..Default::default()
    };
    let mut fired = Fired::default();
    let roles = shared::identity::roles::RoleCatalog::new(store.store().clone(), std::time::Duration::from_secs(0));
    for item in store.query_all(&spec).await? {
        let schedule: Schedule = from_item(item)?;
        let Some(due) = schedule.next_run_at.clone() else { continue };
        let Ok(next) = next_run(&schedule.cron, &schedule.timezone, now) else { continue };
        let mut writes = Vec::new();
        let mut updated = schedule.clone();
        updated.next_run_at = Some(rfc3339(next));
        updated.last_run_at = Some(due.clone());
        updated.version += 1;
        writes.push(Write::put_versioned(store.table(), updated.to_item()?, schedule.version)?);
        let mut jobs = 0;
        for recipient in &schedule.recipients {
            let mut run = Run {
                schedule_id: schedule.id.clone(),
                run_at: due.clone(),
                recipient: recipient.clone(),
                state: RunState::Working,
                report_id: None,
                attempts: 0,
                error: None,
                delivered: None,
                message_id: None,
                data_digest: None,
                updated_at: rfc3339(now),
            };
            match job_for(store, &roles, &schedule, recipient, &due, now).await {
                Ok(job) => {
                    run.report_id = Some(job.id.clone());
                    writes.push(job.create_write(store.table())?);
                    jobs += 1;
                }
                Err(why) => {
                    // Logged as an error now; a job tells the owner (by email, from the worker).
                    run.state = RunState::Error;
                    run.error = Some(why.clone());
                    let mut notice = schedule.report_job(recipient, true, &schedule.owner_id, &due);
                    if let Some(delivery) = &mut notice.delivery {
                        delivery.refused = Some(why);
                    }
                    let job = Job::of(&schedule.owner_id, &notice)?;
                    run.report_id = Some(job.id.clone());
                    writes.push(job.create_write(store.table())?);
                    fired.refused += 1;
                }
            }
            // Exactly once per (schedule, run time, recipient).
            writes.push(Write::put_new(store.table(), run.to_item()?, Error::Conflict("this run was fired already".into()))?);
        }
        let audit = AuditEntry::at(now, &Actor::system("scheduler"), "report.schedule.run", "report_schedule", &schedule.id)
            .changes::<(), _>(None, Some(&json!({ "run_at": due, "recipients": schedule.recipients.len(), "jobs": jobs, "next_run_at": updated.next_run_at })));
        match store.commit(writes, &audit).await {
            Ok(()) => {
                fired.runs.push((schedule.id.clone(), due));
                fired.jobs += jobs;
            }
            Err(Error::Conflict(_)) => fired.raced += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(fired)
}

/// The report job of one recipient's run, or why it cannot run.
async fn job_for(
    store: &Journal,
    roles: &shared::identity::roles::RoleCatalog,
    schedule: &Schedule,
    recipient: &str,
    run_at: &str,
    now: DateTime<Utc>,
) -> std::result::Result<Job, String> {
    let (owner, mask) = match schedule.run_as {
        RunAs::Owner => (schedule.owner_id.clone(), schedule.owner_mask),
        RunAs::Recipient => {
            let email = shared::identity::users::Email::parse(recipient)?;
            let user = shared::identity::users::find_by_email(store, &email)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "run_as recipient: not a Keel user".to_string())?;
            let held: PermissionSet = roles.permissions_of_token(&user.roles, now.timestamp()).await.map_err(|e| e.to_string())?;
            if !held.contains(Permission::ReportsRead) {
                return Err("run_as recipient: the recipient lacks reports:read".into());
            }
            let report = schedule.report(recipient, !held.contains(Permission::PiiRead), &user.id, run_at).map_err(|e| format!("{e:?}"))?;
            if crate::reads_audit_log(report.template.as_deref(), report.spec.as_ref()) && !held.contains(Permission::AuditRead) {
                return Err("run_as recipient: the report reads the audit log and the recipient lacks audit:read".into());
            }
            return Job::of(&user.id, &report).map_err(|e| e.to_string());
        }
    };
    let report = schedule
        .report(recipient, mask, &owner, run_at)
        .map_err(|errors| errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))?;
    Job::of(&owner, &report).map_err(|e| e.to_string())
}
