//! `/api/v1/workflows`: create, list, read, new versions (PUT), versions,
//! validation. Every change is audited with it.

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use shared::audit::AuditEntry;
use shared::http::Caller;
use shared::http::extract::ValidJson;
use shared::platform::error::{Error, FieldError, Result};
use shared::store::{QuerySpec, Write, s, timestamp};
use utoipa::ToSchema;

use crate::WorkflowsState;
use crate::definition::{Definition, Trigger};
use crate::model::{self, Version, Workflow};

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowView {
    #[serde(flatten)]
    pub workflow: Workflow,
    pub definition: Definition,
    /// A webhook trigger's inbound URL (POST, signed with Standard
    /// Webhooks headers with the secret given when it was created).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound_url: Option<String>,
    /// Shown once, when the workflow is created: the `whsec_` secret its
    /// inbound webhooks are signed with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowList {
    pub items: Vec<Workflow>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkflowVersionList)]
pub struct VersionList {
    pub items: Vec<Version>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkflowValidation)]
pub struct Validation {
    pub valid: bool,
    pub errors: Vec<FieldError>,
}

pub fn inbound_url(state: &WorkflowsState, workflow: &Workflow) -> Option<String> {
    (workflow.trigger == "webhook").then(|| format!("{}/api/v1/workflows/{}/hooks", state.platform.config.public_url, workflow.id))
}

fn view(state: &WorkflowsState, workflow: Workflow, definition: Definition, secret: Option<String>) -> WorkflowView {
    WorkflowView { inbound_url: inbound_url(state, &workflow), workflow, definition, webhook_secret: secret }
}

/// Every problem of a definition, the loop guard's included.
async fn check(state: &WorkflowsState, definition: &Definition, id: Option<&str>) -> Result<()> {
    let mut errors = definition.validate();
    if errors.is_empty() {
        errors.extend(loop_check(state, definition, id).await?);
    }
    if errors.is_empty() { Ok(()) } else { Err(Error::Validation(errors)) }
}

/// Refuse a workflow whose actions would trigger itself, directly or
/// through other workflows (their event triggers, or `run_workflow`).
async fn loop_check(state: &WorkflowsState, definition: &Definition, id: Option<&str>) -> Result<Vec<FieldError>> {
    let store = state.platform.store.store();
    let this = id.unwrap_or("(new)").to_string();
    let mut graph: HashMap<String, Definition> = HashMap::from([(this.clone(), definition.clone())]);
    for workflow in list_all(store).await? {
        if workflow.id == this || !workflow.enabled {
            continue;
        }
        if let Some(version) = model::version(store, &workflow.id, workflow.version).await? {
            graph.insert(workflow.id.clone(), version.definition);
        }
    }
    // The workflows each one leads to.
    let leads_to = |from: &Definition| -> BTreeSet<String> {
        let records: BTreeSet<String> = from.records().into_iter().map(model::event_key).collect();
        let mut next: BTreeSet<String> = from.starts();
        for (other, definition) in &graph {
            if let Trigger::Event { event, .. } = &definition.trigger
                && records.contains(&model::event_key(event))
            {
                next.insert(other.clone());
            }
        }
        next
    };
    // Breadth-first from this workflow: does anything lead back to it?
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut frontier: Vec<(String, Vec<String>)> = vec![(this.clone(), vec![definition.name.clone()])];
    while let Some((node, path)) = frontier.pop() {
        let Some(current) = graph.get(&node) else { continue };
        for next in leads_to(current) {
            let name = graph.get(&next).map(|d| d.name.clone()).unwrap_or_else(|| next.clone());
            let mut path = path.clone();
            path.push(name);
            if next == this {
                return Ok(vec![FieldError::new(
                    "steps",
                    format!("the workflow would trigger itself ({}); change its trigger or its actions", path.join(" → ")),
                )]);
            }
            if seen.insert(next.clone()) {
                frontier.push((next, path));
            }
        }
    }
    Ok(Vec::new())
}

async fn list_all(store: &shared::store::Store) -> Result<Vec<Workflow>> {
    let spec = QuerySpec { index: Some("gsi1"), key_condition: "gsi1pk = :pk", values: vec![(":pk", s(model::LIST_PK))], ..Default::default() };
    store.query_all(&spec).await?.into_iter().map(Workflow::from_item).collect()
}

/// A new `whsec_` secret, and its sealed form to store.
async fn new_secret(state: &WorkflowsState, id: &str) -> Result<(String, String)> {
    use base64::Engine as _;
    let bytes: [u8; 24] = rand::random();
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes));
    let sealed = state.platform.envelope.seal(secret.as_bytes(), &format!("workflow:{id}")).await?;
    Ok((secret, serde_json::to_string(&sealed).map_err(|e| Error::internal(e.to_string()))?))
}

/// Create a workflow (version 1), owned by the caller.
#[utoipa::path(post, path = "/api/v1/workflows", tag = "workflows", request_body = Definition,
    responses(
        (status = 201, body = WorkflowView),
        (status = 400, description = "The definition is not valid (each problem names its field)", body = shared::platform::error::Problem),
    ))]
pub async fn create(
    State(state): State<WorkflowsState>,
    caller: Caller,
    ValidJson(definition): ValidJson<Definition>,
) -> Result<(StatusCode, Json<WorkflowView>)> {
    let (workflow, secret) = create_workflow(&state, &caller, definition.clone(), None).await?;
    Ok((StatusCode::CREATED, Json(view(&state, workflow, definition, secret))))
}

pub async fn create_workflow(state: &WorkflowsState, caller: &Caller, definition: Definition, template: Option<&str>) -> Result<(Workflow, Option<String>)> {
    check(state, &definition, None).await?;
    let now = Utc::now();
    let id = uuid::Uuid::now_v7().to_string();
    let (secret, sealed) = match definition.trigger {
        Trigger::Webhook {} => {
            let (secret, sealed) = new_secret(state, &id).await?;
            (Some(secret), Some(sealed))
        }
        _ => (None, None),
    };
    let mut workflow = Workflow {
        id: id.clone(),
        name: definition.name.trim().to_string(),
        owner_id: caller.principal.user_id.clone(),
        version: 1,
        enabled: true,
        trigger: String::new(),
        event: None,
        next_run_at: None,
        webhook_secret: sealed,
        created_at: timestamp(now),
        updated_at: timestamp(now),
        deleted_at: None,
        rev: 1,
    };
    model::apply_trigger(&mut workflow, &definition, now);
    let version = Version {
        workflow_id: id.clone(),
        version: 1,
        definition: definition.clone(),
        created_at: timestamp(now),
        created_by: caller.principal.user_id.clone(),
        rolled_back_from: None,
    };
    let table = state.platform.store.table();
    let writes = vec![Write::put_new(table, workflow.to_item()?, Error::Conflict("the workflow exists already".into()))?, version.create_write(table)?];
    let mut audit = AuditEntry::new(&caller.actor(), "workflow.create", "workflow", &id).changes::<Definition, Definition>(None, Some(&definition));
    if let Some(template) = template {
        audit = audit.reason(format!("from template {template}"));
    }
    state.platform.store.commit(writes, &audit).await?;
    Ok((workflow, secret))
}

#[utoipa::path(get, path = "/api/v1/workflows", tag = "workflows", responses((status = 200, body = WorkflowList)))]
pub async fn list(State(state): State<WorkflowsState>) -> Result<Json<WorkflowList>> {
    let mut items = list_all(state.platform.store.store()).await?;
    items.reverse();
    Ok(Json(WorkflowList { items }))
}

pub async fn load_with_definition(state: &WorkflowsState, id: &str) -> Result<(Workflow, Version)> {
    let store = state.platform.store.store();
    let workflow = model::load(store, id).await?;
    let version =
        model::version(store, id, workflow.version).await?.ok_or_else(|| Error::internal(format!("workflow {id} has no version {}", workflow.version)))?;
    Ok((workflow, version))
}

#[utoipa::path(get, path = "/api/v1/workflows/{id}", tag = "workflows",
    params(("id" = String, Path, description = "A workflow's id")),
    responses((status = 200, body = WorkflowView), (status = 404, description = "No such workflow", body = shared::platform::error::Problem)))]
pub async fn get(State(state): State<WorkflowsState>, Path(id): Path<String>) -> Result<Json<WorkflowView>> {
    let (workflow, version) = load_with_definition(&state, &id).await?;
    Ok(Json(view(&state, workflow, version.definition, None)))
}

/// A new version (runs already started keep theirs).
#[utoipa::path(put, path = "/api/v1/workflows/{id}", tag = "workflows", request_body = Definition,
    params(("id" = String, Path, description = "A workflow's id")),
    responses(
        (status = 200, body = WorkflowView),
        (status = 400, description = "The definition is not valid", body = shared::platform::error::Problem),
        (status = 404, description = "No such workflow", body = shared::platform::error::Problem),
        (status = 409, description = "Changed meanwhile; retry", body = shared::platform::error::Problem),
    ))]
pub async fn update(
    State(state): State<WorkflowsState>,
    caller: Caller,
    Path(id): Path<String>,
    ValidJson(definition): ValidJson<Definition>,
) -> Result<Json<WorkflowView>> {
    let (workflow, current) = load_with_definition(&state, &id).await?;
    check(&state, &definition, Some(&id)).await?;
    let next = new_version(&state, &caller, workflow, &current, definition.clone(), None).await?;
    Ok(Json(view(&state, next, definition, None)))
}

pub async fn new_version(
    state: &WorkflowsState,
    caller: &Caller,
    workflow: Workflow,
    current: &Version,
    definition: Definition,
    rolled_back_from: Option<u32>,
) -> Result<Workflow> {
    if definition.trigger.kind() != current.definition.trigger.kind()
        && (definition.trigger.kind() == "webhook" || current.definition.trigger.kind() == "webhook")
    {
        return Err(Error::field("trigger.type", "a webhook trigger cannot be added to or removed from a workflow; create a new workflow"));
    }
    let now = Utc::now();
    let mut next = workflow.clone();
    next.version = workflow.version + 1;
    next.name = definition.name.trim().to_string();
    next.updated_at = timestamp(now);
    next.rev = workflow.rev + 1;
    model::apply_trigger(&mut next, &definition, now);
    let version = Version {
        workflow_id: workflow.id.clone(),
        version: next.version,
        definition: definition.clone(),
        created_at: timestamp(now),
        created_by: caller.principal.user_id.clone(),
        rolled_back_from,
    };
    let table = state.platform.store.table();
    let writes = vec![next.save_write(table, workflow.rev)?, version.create_write(table)?];
    let action = if rolled_back_from.is_some() { "workflow.rollback" } else { "workflow.update" };
    let audit = AuditEntry::new(&caller.actor(), action, "workflow", &workflow.id)
        .reason(format!("version {} → {}", workflow.version, next.version))
        .changes(Some(&current.definition), Some(&definition));
    state.platform.store.commit(writes, &audit).await?;
    Ok(next)
}

/// Turn a workflow off (its triggers stop starting runs; runs under way go
/// on) or on again (checked by the loop guard like a save; a schedule's
/// next time counted from now). Audited.
#[utoipa::path(post, path = "/api/v1/workflows/{id}/disable", tag = "workflows",
    params(("id" = String, Path, description = "A workflow's id")),
    responses(
        (status = 200, body = WorkflowView),
        (status = 404, description = "No such workflow", body = shared::platform::error::Problem),
        (status = 409, description = "Changed meanwhile; retry", body = shared::platform::error::Problem),
    ))]
pub async fn disable(State(state): State<WorkflowsState>, caller: Caller, Path(id): Path<String>) -> Result<Json<WorkflowView>> {
    set_enabled(&state, &caller, &id, false).await
}

#[utoipa::path(post, path = "/api/v1/workflows/{id}/enable", tag = "workflows",
    params(("id" = String, Path, description = "A workflow's id")),
    responses(
        (status = 200, body = WorkflowView),
        (status = 400, description = "Enabled, it would trigger itself (the loop guard)", body = shared::platform::error::Problem),
        (status = 404, description = "No such workflow", body = shared::platform::error::Problem),
        (status = 409, description = "Changed meanwhile; retry", body = shared::platform::error::Problem),
    ))]
pub async fn enable(State(state): State<WorkflowsState>, caller: Caller, Path(id): Path<String>) -> Result<Json<WorkflowView>> {
    set_enabled(&state, &caller, &id, true).await
}

async fn set_enabled(state: &WorkflowsState, caller: &Caller, id: &str, enabled: bool) -> Result<Json<WorkflowView>> {
    let (workflow, version) = load_with_definition(state, id).await?;
    if workflow.enabled == enabled {
        return Ok(Json(view(state, workflow, version.definition, None)));
    }
    if enabled {
        check(state, &version.definition, Some(id)).await?;
    }
    let now = Utc::now();
    let mut next = workflow.clone();
    next.enabled = enabled;
    next.updated_at = timestamp(now);
    next.rev = workflow.rev + 1;
    model::apply_trigger(&mut next, &version.definition, now);
    let action = if enabled { "workflow.enable" } else { "workflow.disable" };
    let audit = AuditEntry::new(&caller.actor(), action, "workflow", id).changes(Some(&workflow), Some(&next));
    let table = state.platform.store.table();
    state.platform.store.commit(vec![next.save_write(table, workflow.rev)?], &audit).await?;
    Ok(Json(view(state, next, version.definition, None)))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = WorkflowDeleted)]
pub struct Deleted {
    pub id: String,
    pub deleted_at: String,
    /// Runs that were running or waiting, now cancelled.
    pub cancelled_runs: u64,
}

/// Delete a workflow: it stops at once (no event, schedule, webhook or
/// manual run starts it again), its runs in flight are cancelled, and it
/// is gone from the API. Refused while another workflow starts it
/// (`run_workflow`). Its record, versions and runs stay in the table for
/// the audit trail (the entry holds the record as it was).
#[utoipa::path(delete, path = "/api/v1/workflows/{id}", tag = "workflows",
    params(("id" = String, Path, description = "A workflow's id")),
    responses(
        (status = 200, body = Deleted),
        (status = 404, description = "No such workflow", body = shared::platform::error::Problem),
        (status = 409, description = "Another workflow starts this one, or it changed meanwhile", body = shared::platform::error::Problem),
    ))]
pub async fn delete(State(state): State<WorkflowsState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Deleted>> {
    let store = state.platform.store.store();
    let workflow = model::load(store, &id).await?;
    let mut starters = Vec::new();
    for other in list_all(store).await? {
        if other.id == id {
            continue;
        }
        if let Some(version) = model::version(store, &other.id, other.version).await?
            && version.definition.starts().contains(&id)
        {
            starters.push(format!("{:?} ({})", other.name, other.id));
        }
    }
    if !starters.is_empty() {
        return Err(Error::Conflict(format!("workflow {id} is started by {}: remove their run_workflow steps first", starters.join(", "))));
    }
    let now = Utc::now();
    let mut next = workflow.clone();
    next.enabled = false;
    next.next_run_at = None;
    next.webhook_secret = None;
    next.deleted_at = Some(timestamp(now));
    next.updated_at = timestamp(now);
    next.rev = workflow.rev + 1;
    let audit = AuditEntry::new(&caller.actor(), "workflow.delete", "workflow", &id).changes(Some(&workflow), Some(&next));
    let table = state.platform.store.table();
    state.platform.store.commit(vec![next.save_write(table, workflow.rev)?], &audit).await?;
    // Nothing starts it now; what was under way stops.
    let cancelled = crate::routes::runs::cancel_active(&state, &caller, &id).await?;
    Ok(Json(Deleted { id, deleted_at: timestamp(now), cancelled_runs: cancelled }))
}

#[utoipa::path(get, path = "/api/v1/workflows/{id}/versions", tag = "workflows",
    params(("id" = String, Path, description = "A workflow's id")),
    responses((status = 200, body = VersionList), (status = 404, description = "No such workflow", body = shared::platform::error::Problem)))]
pub async fn versions(State(state): State<WorkflowsState>, Path(id): Path<String>) -> Result<Json<VersionList>> {
    let store = state.platform.store.store();
    model::load(store, &id).await?;
    Ok(Json(VersionList { items: model::versions(store, &id).await? }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkflowRollbackRequest)]
pub struct RollbackRequest {
    /// The version to make current again (as a new version equal to it).
    pub version: u32,
}

/// Roll back: a new version equal to an older one.
#[utoipa::path(post, path = "/api/v1/workflows/{id}/rollback", tag = "workflows", request_body = RollbackRequest,
    params(("id" = String, Path, description = "A workflow's id")),
    responses(
        (status = 200, body = WorkflowView),
        (status = 400, description = "No such version", body = shared::platform::error::Problem),
        (status = 404, description = "No such workflow", body = shared::platform::error::Problem),
    ))]
pub async fn rollback(
    State(state): State<WorkflowsState>,
    caller: Caller,
    Path(id): Path<String>,
    ValidJson(body): ValidJson<RollbackRequest>,
) -> Result<Json<WorkflowView>> {
    let (workflow, current) = load_with_definition(&state, &id).await?;
    let old = model::version(state.platform.store.store(), &id, body.version)
        .await?
        .ok_or_else(|| Error::field("version", format!("workflow {id} has versions 1 to {}", workflow.version)))?;
    check(&state, &old.definition, Some(&id)).await?;
    let next = new_version(&state, &caller, workflow, &current, old.definition.clone(), Some(body.version)).await?;
    Ok(Json(view(&state, next, old.definition, None)))
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkflowVersionDiff)]
pub struct VersionDiff {
    pub from: u32,
    pub to: u32,
    /// Each difference: its JSON path, and the value in each version
    /// (absent: null).
    pub changes: Vec<Change>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkflowChange)]
pub struct Change {
    pub path: String,
    #[schema(value_type = Object)]
    pub from: serde_json::Value,
    #[schema(value_type = Object)]
    pub to: serde_json::Value,
}

/// What changed between two versions.
#[utoipa::path(get, path = "/api/v1/workflows/{id}/versions/{from}/diff/{to}", tag = "workflows",
    params(("id" = String, Path, description = "A workflow's id"), ("from" = u32, Path, description = "A version"), ("to" = u32, Path, description = "Another version")),
    responses((status = 200, body = VersionDiff), (status = 404, description = "No such workflow or version", body = shared::platform::error::Problem)))]
pub async fn diff(State(state): State<WorkflowsState>, Path((id, from, to)): Path<(String, String, String)>) -> Result<Json<VersionDiff>> {
    let store = state.platform.store.store();
    model::load(store, &id).await?;
    let number = |raw: &str| raw.parse::<u32>().map_err(|_| Error::NotFound(format!("no version {raw}")));
    let (from, to) = (number(&from)?, number(&to)?);
    let a = model::version(store, &id, from).await?.ok_or_else(|| Error::NotFound(format!("no version {from}")))?;
    let b = model::version(store, &id, to).await?.ok_or_else(|| Error::NotFound(format!("no version {to}")))?;
    let mut changes = Vec::new();
    let (a, b) = (serde_json::to_value(&a.definition).unwrap_or_default(), serde_json::to_value(&b.definition).unwrap_or_default());
    compare("", &a, &b, &mut changes);
    Ok(Json(VersionDiff { from, to, changes }))
}

fn compare(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<Change>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                compare(&format!("{path}/{key}"), x.get(key).unwrap_or(&Value::Null), y.get(key).unwrap_or(&Value::Null), out);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                compare(&format!("{path}/{i}"), x.get(i).unwrap_or(&Value::Null), y.get(i).unwrap_or(&Value::Null), out);
            }
        }
        _ if a != b => out.push(Change { path: if path.is_empty() { "/".into() } else { path.into() }, from: a.clone(), to: b.clone() }),
        _ => {}
    }
}

/// Check a definition without saving it: every syntax, type and reference
/// problem, each naming its field.
#[utoipa::path(post, path = "/api/v1/workflows/validate", tag = "workflows", request_body = Definition,
    responses((status = 200, body = Validation), (status = 400, description = "Not a definition at all (unknown or mistyped fields)", body = shared::platform::error::Problem)))]
pub async fn validate(State(state): State<WorkflowsState>, ValidJson(definition): ValidJson<Definition>) -> Result<Json<Validation>> {
    let errors = match check(&state, &definition, None).await {
        Ok(()) => Vec::new(),
        Err(Error::Validation(errors)) => errors,
        Err(e) => return Err(e),
    };
    Ok(Json(Validation { valid: errors.is_empty(), errors }))
}
