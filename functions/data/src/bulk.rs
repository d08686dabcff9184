//! `/api/v1/data/bulk/{update,delete,restore}`: change many users or charts
//! named by an id list or a filter. `dry_run` answers the count and a
//! sample; otherwise the targets (at most `limits.bulk_operation_cap`) are
//! split into segments of 100, one SQS message each, and the jobs worker
//! changes every item with its own version-checked, audited commit
//! (functions/jobs/src/bulk.rs). Deletes are soft; `restore` undoes them
//! within `retention.restore_window_days`. `GET /{job_id}` reports progress
//! and per-item failures.

use aws_sdk_dynamodb::types::AttributeValue;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared::audit::AuditEntry;
use shared::domain::charts::{self, ModerationStatus};
use shared::domain::data_jobs::{self, BulkOp, BulkParams, BulkTarget, ChartChanges, Dataset, ItemResult, SEGMENT_SIZE, UserChanges};
use shared::domain::jobs::{Job, JobKind, JobStatus, Progress};
use shared::http::Caller;
use shared::http::extract::{PathId, ValidJson};
use shared::identity::users::UserStatus;
use shared::platform::error::{Error, FieldError, Result};
use shared::platform::time;
use shared::store::ids::{JobId, UserId};
use shared::store::{Item, QuerySpec, s};
use utoipa::ToSchema;

use crate::DataState;

/// Items shown by a dry run.
const SAMPLE: usize = 10;

/// An item by id, or by id and the version you read.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum IdRef {
    Id(String),
    Versioned(BulkTarget),
}

impl IdRef {
    fn target(self) -> BulkTarget {
        match self {
            IdRef::Id(id) => BulkTarget { id, version: None },
            IdRef::Versioned(t) => t,
        }
    }
}

/// Which items: by dataset, the fields that apply to it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkFilter {
    /// users: `active`, `invited`, `suspended` (restore: only `deleted`).
    pub status: Option<UserStatus>,
    /// users: holding this role.
    pub role: Option<String>,
    /// users: emails starting with this (case-insensitive).
    pub email_prefix: Option<String>,
    /// charts: of this owner.
    pub owner_id: Option<String>,
    /// charts: in this moderation state.
    pub moderation_status: Option<ModerationStatus>,
    /// Created at or after (RFC 3339).
    pub created_from: Option<String>,
    /// Created before (RFC 3339).
    pub created_to: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// `users` or `charts`.
    pub dataset: Dataset,
    /// The items: ids, or `{id, version}` to have an item refused when it
    /// changed since you read it. Give `ids` or `filter`.
    pub ids: Option<Vec<IdRef>>,
    pub filter: Option<BulkFilter>,
    /// Count and sample only; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Why (kept in every item's audit entry), at most 500 characters.
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkUpdateRequest {
    pub dataset: Dataset,
    pub ids: Option<Vec<IdRef>>,
    pub filter: Option<BulkFilter>,
    #[serde(default)]
    pub dry_run: bool,
    pub reason: Option<String>,
    /// users: `{status: active|suspended, country}`; charts: `{kind, owner_id}`.
    #[schema(value_type = Object)]
    pub changes: Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DryRun {
    pub dry_run: bool,
    /// Items that would be changed (ids: those that exist; filter: matches,
    /// counted up to cap + 1).
    pub count: usize,
    /// More items match than `cap`: the operation would be refused.
    pub exceeds_cap: bool,
    /// `limits.bulk_operation_cap`.
    pub cap: u32,
    /// Up to 10 of the items (no personal fields).
    #[schema(value_type = Vec<Object>)]
    pub sample: Vec<Value>,
    /// Listed ids that name no item.
    pub missing: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkAccepted {
    pub job_id: String,
    pub status: JobStatus,
    pub total: usize,
    pub segments: usize,
}

fn check_reason(reason: &Option<String>) -> Option<FieldError> {
    reason.as_ref().filter(|r| r.chars().count() > 500 || r.trim().is_empty()).map(|_| FieldError::new("reason", "1 to 500 characters"))
}

/// Validate the update's `changes` for the dataset (fields named `changes.x`).
async fn parse_changes(state: &DataState, dataset: Dataset, changes: &Value) -> Result<(Option<UserChanges>, Option<ChartChanges>)> {
    let bytes = serde_json::to_vec(changes).map_err(|e| Error::internal(e.to_string()))?;
    let prefix = |e: Error| match e {
        Error::Validation(errors) => Error::Validation(
            errors.into_iter().map(|f| FieldError::new(if f.field == "body" { "changes".into() } else { format!("changes.{}", f.field) }, f.message)).collect(),
        ),
        other => other,
    };
    match dataset {
        Dataset::Users => {
            let c: UserChanges = shared::http::extract::parse_json(&bytes).map_err(prefix)?;
            let mut errors = Vec::new();
            if c.status.is_none() && c.country.is_none() {
                errors.push(FieldError::new("changes", "give at least one of status, country"));
            }
            if matches!(c.status, Some(UserStatus::Deleted | UserStatus::Invited)) {
                errors.push(FieldError::new("changes.status", "may be active or suspended (use bulk/delete to delete)"));
            }
            if c.country.as_ref().is_some_and(|c| c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_uppercase())) {
                errors.push(FieldError::new("changes.country", "must be an ISO 3166-1 alpha-2 code such as DE"));
            }
            if !errors.is_empty() {
                return Err(Error::Validation(errors));
            }
            Ok((Some(c), None))
        }
        Dataset::Charts => {
            let c: ChartChanges = shared::http::extract::parse_json(&bytes).map_err(prefix)?;
            if c.kind.is_none() && c.owner_id.is_none() {
                return Err(Error::field("changes", "give at least one of kind, owner_id"));
            }
            if let Some(kind) = &c.kind
                && !charts::KINDS.contains(&kind.as_str())
            {
                return Err(Error::field("changes.kind", format!("must be one of {}", charts::KINDS.join(", "))));
            }
            if let Some(owner) = &c.owner_id {
                let exists = match UserId::parse(owner) {
                    Some(owner) => shared::identity::users::get(&state.platform.store, &owner).await?.is_some_and(|u| u.status != UserStatus::Deleted),
                    None => false,
                };
                if !exists {
                    return Err(Error::field("changes.owner_id", "names no user"));
                }
            }
            Ok((None, Some(c)))
        }
    }
}

/// The targets of a request, with what a dry run shows.
struct Resolved {
    targets: Vec<BulkTarget>,
    /// Items read (filters, and id lists in a dry run).
    items: Vec<Item>,
    missing: Vec<String>,
    exceeds_cap: bool,
}

fn check_ids(ids: &[IdRef], cap: usize) -> Result<()> {
    if ids.is_empty() {
        return Err(Error::field("ids", "list at least one id"));
    }
    if ids.len() > cap {
        return Err(Error::field("ids", format!("at most {cap} items (limits.bulk_operation_cap)")));
    }
    let mut seen = std::collections::HashSet::new();
    let mut errors = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let id = match id {
            IdRef::Id(id) => id,
            IdRef::Versioned(t) => &t.id,
        };
        if id.is_empty() || id.len() > 64 {
            errors.push(FieldError::new(format!("ids[{i}]"), "must be 1 to 64 characters"));
        } else if !seen.insert(id.clone()) {
            errors.push(FieldError::new(format!("ids[{i}]"), format!("{id:?} is listed twice")));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(Error::Validation(errors)) }
}

fn item_key(dataset: Dataset, id: &str) -> (String, &'static str) {
    match dataset {
        Dataset::Users => (shared::identity::users::User::pk(id), "PROFILE"),
        Dataset::Charts => (charts::Chart::pk(id), "META"),
    }
}

/// Read items by id (missing ones are absent).
async fn read_items(state: &DataState, dataset: Dataset, ids: &[String]) -> Result<Vec<Item>> {
    let keys: Vec<(String, String)> = ids
        .iter()
        .map(|id| {
            let (pk, sk) = item_key(dataset, id);
            (pk, sk.to_string())
        })
        .collect();
    state.platform.store.batch_get(&keys).await
}

/// The index query a filter becomes.
struct FilterQuery {
    index: &'static str,
    key: &'static str,
    filters: Vec<&'static str>,
    names: Vec<(&'static str, &'static str)>,
    values: Vec<(&'static str, AttributeValue)>,
}

fn filter_query(op: BulkOp, dataset: Dataset, f: &BulkFilter) -> Result<FilterQuery> {
    let mut errors = Vec::new();
    let wrong = |errors: &mut Vec<FieldError>, field: &str, set: bool| {
        if set {
            errors.push(FieldError::new(format!("filter.{field}"), format!("does not apply to {}", dataset.as_str())));
        }
    };
    let from = time::field("filter.created_from", f.created_from.as_deref())?.map(shared::store::timestamp);
    let to = time::field("filter.created_to", f.created_to.as_deref())?.map(shared::store::timestamp);
    let criteria =
        [f.status.is_some(), f.role.is_some(), f.email_prefix.is_some(), f.owner_id.is_some(), f.moderation_status.is_some(), from.is_some(), to.is_some()];
    if op != BulkOp::Restore && !criteria.iter().any(|c| *c) {
        errors.push(FieldError::new("filter", "give at least one criterion (an empty filter would match everything)"));
    }
    let mut q = FilterQuery { index: "gsi3", key: "", filters: Vec::new(), names: Vec::new(), values: Vec::new() };
    q.values.push((":from", s(from.unwrap_or_else(|| "0".into()))));
    q.values.push((":to", s(to.unwrap_or_else(|| "~".into()))));
    match dataset {
        Dataset::Users => {
            wrong(&mut errors, "owner_id", f.owner_id.is_some());
            wrong(&mut errors, "moderation_status", f.moderation_status.is_some());
            let status = match (op, f.status) {
                (BulkOp::Restore, None | Some(UserStatus::Deleted)) => Some(UserStatus::Deleted),
                (BulkOp::Restore, Some(_)) => {
                    errors.push(FieldError::new("filter.status", "restore applies to deleted users only"));
                    None
                }
                (_, Some(UserStatus::Deleted)) => {
                    errors.push(FieldError::new("filter.status", "deleted users are changed only by restore"));
                    None
                }
                (_, status) => status,
            };
            match status {
                Some(status) => {
                    q.index = "gsi2";
                    q.key = "gsi2pk = :pk AND gsi2sk BETWEEN :from AND :to";
                    q.values.push((":pk", s(format!("USERS#{}", status.as_str()))));
                }
                None => {
                    q.key = "gsi3pk = :pk AND gsi3sk BETWEEN :from AND :to";
                    q.values.push((":pk", s("USERS")));
                    q.filters.push("#status <> :deleted");
                    q.names.push(("#status", "status"));
                    q.values.push((":deleted", s("deleted")));
                }
            }
            if let Some(prefix) = &f.email_prefix {
                let prefix = prefix.trim().to_lowercase();
                if prefix.is_empty() || prefix.len() > 254 {
                    errors.push(FieldError::new("filter.email_prefix", "must be 1 to 254 characters"));
                }
                q.filters.push("begins_with(email, :prefix)");
                q.values.push((":prefix", s(prefix)));
            }
            if let Some(role) = &f.role {
                if role.is_empty() || role.len() > 64 {
                    errors.push(FieldError::new("filter.role", "must be 1 to 64 characters"));
                }
                q.filters.push("contains(#roles, :role)");
                q.names.push(("#roles", "roles"));
                q.values.push((":role", s(role.clone())));
            }
        }
        Dataset::Charts => {
            wrong(&mut errors, "status", f.status.is_some());
            wrong(&mut errors, "role", f.role.is_some());
            wrong(&mut errors, "email_prefix", f.email_prefix.is_some());
            if let Some(owner) = &f.owner_id
                && UserId::parse(owner).is_none()
            {
                errors.push(FieldError::new("filter.owner_id", UserId::EXPECTED));
            }
            match (op, &f.owner_id, f.moderation_status) {
                (BulkOp::Restore, owner, status) => {
                    q.key = "gsi3pk = :pk AND gsi3sk BETWEEN :from AND :to";
                    q.values.push((":pk", s(charts::DELETED_PARTITION)));
                    if let Some(owner) = owner {
                        q.filters.push("owner_id = :owner");
                        q.values.push((":owner", s(owner.clone())));
                    }
                    if let Some(status) = status {
                        q.filters.push("moderation_status = :ms");
                        q.values.push((":ms", s(status.as_str())));
                    }
                }
                (_, Some(owner), status) => {
                    q.index = "gsi1";
                    q.key = "gsi1pk = :pk AND gsi1sk BETWEEN :from AND :to";
                    q.values.push((":pk", s(format!("OWNER#{owner}"))));
                    if let Some(status) = status {
                        q.filters.push("moderation_status = :ms");
                        q.values.push((":ms", s(status.as_str())));
                    }
                }
                (_, None, Some(status)) => {
                    q.index = "gsi2";
                    q.key = "gsi2pk = :pk AND gsi2sk BETWEEN :from AND :to";
                    q.values.push((":pk", s(status.partition())));
                }
                (_, None, None) => {
                    q.key = "gsi3pk = :pk AND gsi3sk BETWEEN :from AND :to";
                    q.values.push((":pk", s("CHARTS")));
                }
            }
        }
    }
    if errors.is_empty() { Ok(q) } else { Err(Error::Validation(errors)) }
}

/// Every item the filter matches, up to `cap + 1` (Query on an index, never
/// a Scan).
async fn query_filter(state: &DataState, q: &FilterQuery, cap: usize) -> Result<Vec<Item>> {
    let store = &state.platform.store;
    let filter = q.filters.join(" AND ");
    let spec = QuerySpec {
        index: Some(q.index),
        key_condition: q.key,
        filter: &filter,
        names: q.names.clone(),
        values: q.values.clone(),
        forward: true,
        consistent: false,
    };
    let mut items = Vec::new();
    let mut pages = store.query_pages(&spec, None);
    while items.len() <= cap
        && let Some(page) = pages.next(None).await?
    {
        items.extend(page);
    }
    items.truncate(cap + 1);
    Ok(items)
}

async fn resolve(
    state: &DataState,
    op: BulkOp,
    dataset: Dataset,
    ids: Option<Vec<IdRef>>,
    filter: Option<BulkFilter>,
    cap: usize,
    dry_run: bool,
) -> Result<Resolved> {
    match (ids, filter) {
        (Some(ids), None) => {
            check_ids(&ids, cap)?;
            let targets: Vec<BulkTarget> = ids.into_iter().map(IdRef::target).collect();
            let (items, missing) = if dry_run {
                let names: Vec<String> = targets.iter().map(|t| t.id.clone()).collect();
                let items = read_items(state, dataset, &names).await?;
                let found: std::collections::HashSet<&str> = items.iter().filter_map(|i| shared::store::attr_s(i, "id")).collect();
                let missing = names.iter().filter(|id| !found.contains(id.as_str())).cloned().collect();
                (items, missing)
            } else {
                (Vec::new(), Vec::new())
            };
            Ok(Resolved { targets, items, missing, exceeds_cap: false })
        }
        (None, Some(filter)) => {
            let q = filter_query(op, dataset, &filter)?;
            let items = query_filter(state, &q, cap).await?;
            let targets = items
                .iter()
                .filter_map(|i| {
                    let id = shared::store::attr_s(i, "id")?.to_string();
                    let version = i.get("version").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok());
                    Some(BulkTarget { id, version })
                })
                .collect::<Vec<_>>();
            Ok(Resolved { exceeds_cap: targets.len() > cap, targets, items, missing: Vec::new() })
        }
        (Some(_), Some(_)) => Err(Error::field("ids", "give ids or filter, not both")),
        (None, None) => Err(Error::field("ids", "give ids or filter")),
    }
}

/// What a dry run shows of an item: no personal fields.
fn sample_view(dataset: Dataset, item: &Item) -> Value {
    let get = |name: &str| shared::store::attr_s(item, name).map(|v| Value::String(v.to_string())).unwrap_or(Value::Null);
    let version = item.get("version").and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<u64>().ok());
    match dataset {
        Dataset::Users => {
            json!({ "id": get("id"), "status": get("status"), "country": get("country"), "created_at": get("created_at"), "deleted_at": get("deleted_at"), "version": version })
        }
        Dataset::Charts => {
            json!({ "id": get("id"), "title": get("title"), "owner_id": get("owner_id"), "kind": get("kind"), "moderation_status": get("moderation_status"), "deleted_at": get("deleted_at"), "version": version })
        }
    }
}

struct Ask {
    op: BulkOp,
    dataset: Dataset,
    ids: Option<Vec<IdRef>>,
    filter: Option<BulkFilter>,
    dry_run: bool,
    reason: Option<String>,
    user_changes: Option<UserChanges>,
    chart_changes: Option<ChartChanges>,
}

async fn run(state: DataState, caller: Caller, ask: Ask) -> Result<Response> {
    let settings = state.platform.settings.current().await?;
    let cap = settings.settings.limits.bulk_operation_cap as usize;
    let filter_copy = ask.filter.clone();
    let resolved = resolve(&state, ask.op, ask.dataset, ask.ids, ask.filter, cap, ask.dry_run).await?;
    if ask.dry_run {
        let count = if resolved.missing.is_empty() && resolved.items.is_empty() { resolved.targets.len() } else { resolved.items.len() };
        let body = DryRun {
            dry_run: true,
            count,
            exceeds_cap: resolved.exceeds_cap,
            cap: cap as u32,
            sample: resolved.items.iter().take(SAMPLE).map(|i| sample_view(ask.dataset, i)).collect(),
            missing: resolved.missing,
        };
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    if resolved.exceeds_cap {
        return Err(Error::field("filter", format!("matches more than {cap} items (limits.bulk_operation_cap); narrow it")));
    }
    let targets = resolved.targets;
    if targets.is_empty() {
        return Err(Error::Unprocessable("nothing matches the filter".into()));
    }
    let segments: Vec<&[BulkTarget]> = targets.chunks(SEGMENT_SIZE).collect();
    let params = BulkParams {
        op: ask.op,
        dataset: ask.dataset,
        user_changes: ask.user_changes,
        chart_changes: ask.chart_changes,
        reason: ask.reason,
        actor: caller.actor(),
        granter_permissions: caller.principal.permissions.names(),
        segments: segments.len(),
        restore_window_days: settings.settings.retention.restore_window_days,
    };
    let mut job = Job::new(ask.op.kind(), &caller.principal.user_id, serde_json::to_value(&params).map_err(|e| Error::internal(e.to_string()))?);
    job.status = JobStatus::Running;
    job.progress = Progress { processed: 0, total: targets.len() as u64, ..Default::default() };
    job.result = Some(json!({ "succeeded": 0, "unchanged": 0, "failed": 0 }));
    let store = &state.platform.store;
    let audit = AuditEntry::new(&caller.actor(), &format!("data.bulk_{}", ask.op.as_str()), "job", &job.id).changes::<(), _>(
        None,
        Some(&json!({ "dataset": ask.dataset, "count": targets.len(), "filter": filter_copy, "user_changes": params.user_changes, "chart_changes": params.chart_changes, "reason": params.reason })),
    );
    // The plan first (it can be larger than one transaction; the plan of a
    // job that never commits expires), then the job: committing it is what
    // asks the outbox to send one message per segment.
    let ttl = shared::store::ttl_after(data_jobs::PLAN_TTL_SECONDS);
    let plans = segments
        .iter()
        .enumerate()
        .map(|(segment, targets)| data_jobs::SegmentPlan { job_id: job.id.clone(), segment, targets: targets.to_vec(), ttl }.to_item())
        .collect::<Result<Vec<_>>>()?;
    store.batch_put(plans).await?;
    store.commit(vec![job.create_write(store.table())?], &audit).await?;
    Ok((StatusCode::ACCEPTED, Json(BulkAccepted { job_id: job.id, status: job.status, total: targets.len(), segments: segments.len() })).into_response())
}

#[utoipa::path(post, path = "/api/v1/data/bulk/update", tag = "data", request_body = BulkUpdateRequest, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "A retried request answers the same job")),
    responses(
        (status = 200, description = "dry_run: the count and a sample", body = DryRun),
        (status = 202, description = "The job; each item is changed with its own audit entry", body = BulkAccepted),
        (status = 400, description = "Invalid fields, or more items than limits.bulk_operation_cap", body = shared::platform::error::Problem),
        (status = 403, description = "Missing data:bulk", body = shared::platform::error::Problem),
        (status = 422, description = "Nothing matches", body = shared::platform::error::Problem),
    ))]
pub async fn update(State(state): State<DataState>, caller: Caller, ValidJson(body): ValidJson<BulkUpdateRequest>) -> Result<Response> {
    if let Some(e) = check_reason(&body.reason) {
        return Err(Error::Validation(vec![e]));
    }
    let (user_changes, chart_changes) = parse_changes(&state, body.dataset, &body.changes).await?;
    let ask = Ask {
        op: BulkOp::Update,
        dataset: body.dataset,
        ids: body.ids,
        filter: body.filter,
        dry_run: body.dry_run,
        reason: body.reason,
        user_changes,
        chart_changes,
    };
    run(state, caller, ask).await
}

#[utoipa::path(post, path = "/api/v1/data/bulk/delete", tag = "data", request_body = BulkRequest, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "A retried request answers the same job")),
    responses(
        (status = 200, description = "dry_run: the count and a sample", body = DryRun),
        (status = 202, description = "The job; each item is soft-deleted (restorable for retention.restore_window_days) with its own audit entry", body = BulkAccepted),
        (status = 400, description = "Invalid fields, or more items than limits.bulk_operation_cap", body = shared::platform::error::Problem),
        (status = 403, description = "Missing data:bulk", body = shared::platform::error::Problem),
        (status = 422, description = "Nothing matches", body = shared::platform::error::Problem),
    ))]
pub async fn delete(State(state): State<DataState>, caller: Caller, ValidJson(body): ValidJson<BulkRequest>) -> Result<Response> {
    simple(state, caller, BulkOp::Delete, body).await
}

#[utoipa::path(post, path = "/api/v1/data/bulk/restore", tag = "data", request_body = BulkRequest, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "A retried request answers the same job")),
    responses(
        (status = 200, description = "dry_run: the count and a sample", body = DryRun),
        (status = 202, description = "The job; each soft-deleted item deleted within the restore window comes back (users as suspended)", body = BulkAccepted),
        (status = 400, description = "Invalid fields, or more items than limits.bulk_operation_cap", body = shared::platform::error::Problem),
        (status = 403, description = "Missing data:bulk", body = shared::platform::error::Problem),
        (status = 422, description = "Nothing matches", body = shared::platform::error::Problem),
    ))]
pub async fn restore(State(state): State<DataState>, caller: Caller, ValidJson(body): ValidJson<BulkRequest>) -> Result<Response> {
    simple(state, caller, BulkOp::Restore, body).await
}

async fn simple(state: DataState, caller: Caller, op: BulkOp, body: BulkRequest) -> Result<Response> {
    if let Some(e) = check_reason(&body.reason) {
        return Err(Error::Validation(vec![e]));
    }
    let ask = Ask {
        op,
        dataset: body.dataset,
        ids: body.ids,
        filter: body.filter,
        dry_run: body.dry_run,
        reason: body.reason,
        user_changes: None,
        chart_changes: None,
    };
    run(state, caller, ask).await
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkJobStatus {
    pub job_id: String,
    pub kind: JobKind,
    pub status: JobStatus,
    pub dataset: Dataset,
    /// Items done of all items.
    pub progress: Progress,
    /// Counts: `succeeded`, `unchanged`, `failed`.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Every item that was not changed, and why (first 1,000).
    pub failures: Vec<ItemResult>,
    pub created_at: String,
    pub updated_at: String,
}

#[utoipa::path(get, path = "/api/v1/data/bulk/{job_id}", tag = "data", security(("bearer" = [])),
    params(("job_id" = String, Path, description = "The bulk job id")),
    responses(
        (status = 200, description = "Status, progress, counts and per-item failures", body = BulkJobStatus),
        (status = 403, description = "Missing data:bulk", body = shared::platform::error::Problem),
        (status = 404, description = "No such bulk job of yours", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<DataState>, caller: Caller, PathId(job_id): PathId<JobId>) -> Result<Json<BulkJobStatus>> {
    let kinds = [JobKind::BulkUpdate, JobKind::BulkDelete, JobKind::BulkRestore];
    let job = crate::owned_job(&state, &caller.principal, &job_id, &kinds).await?;
    let params: BulkParams = serde_json::from_value(job.params.clone()).map_err(|e| Error::internal(format!("bulk job params: {e}")))?;
    let failures = shared::domain::data_jobs::segment_failures(&state.platform.store, &job.id, 1000).await?;
    Ok(Json(BulkJobStatus {
        job_id: job.id,
        kind: job.kind,
        status: job.status,
        dataset: params.dataset,
        progress: job.progress,
        result: job.result,
        failures,
        created_at: job.created_at,
        updated_at: job.updated_at,
    }))
}
