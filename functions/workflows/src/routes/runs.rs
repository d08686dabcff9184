//! Runs: start one by hand, the execution log, cancel, re-run from the
//! failed step, the dry run, and per-workflow figures.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared::audit::AuditEntry;
use shared::http::Caller;
use shared::http::extract::ValidJson;
use shared::platform::error::{Error, Result};
use shared::store::{s, timestamp};
use utoipa::ToSchema;

use crate::WorkflowsState;
use crate::engine::{self, DryRun};
use crate::model::{self, Run, RunStatus, StepMessage, StepStatus};
use crate::routes::workflows::load_with_definition;

const RUNS_LIST_MAX: i32 = 100;
const INPUT_MAX_BYTES: usize = 32 * 1024;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkflowRunRequest)]
pub struct RunRequest {
    /// The run's `input` (an object, at most 32 KiB).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkflowRunList)]
pub struct RunList {
    /// Newest first, at most 100.
    pub items: Vec<Run>,
}

fn checked_input(input: Option<Value>, field: &str) -> Result<Value> {
    let input = input.unwrap_or_else(|| json!({}));
    if !input.is_object() {
        return Err(Error::field(field, "an object"));
    }
    if input.to_string().len() > INPUT_MAX_BYTES {
        return Err(Error::field(field, "at most 32 KiB"));
    }
    Ok(input)
}

/// Start a run now with `input` (any trigger type), as the caller.
#[utoipa::path(post, path = "/api/v1/workflows/{id}/runs", tag = "workflows", request_body = RunRequest,
    params(("id" = String, Path, description = "A workflow's id")),
    responses(
        (status = 202, description = "Started; its steps run on the jobs queue", body = Run),
        (status = 400, description = "The input is not an object", body = shared::platform::error::Problem),
        (status = 404, description = "No such workflow", body = shared::platform::error::Problem),
        (status = 409, description = "The workflow is disabled", body = shared::platform::error::Problem),
    ))]
pub async fn start(
    State(state): State<WorkflowsState>,
    caller: Caller,
    Path(id): Path<String>,
    ValidJson(body): ValidJson<RunRequest>,
) -> Result<(StatusCode, Json<Run>)> {
    let input = checked_input(body.input, "input")?;
    let (workflow, version) = load_with_definition(&state, &id).await?;
    if !workflow.enabled {
        return Err(Error::Conflict(format!("workflow {id} is disabled")));
    }
    let event = json!({"type": "manual", "actor": {"id": caller.principal.user_id, "kind": "user"}});
    let (run, writes) = engine::start(&version, engine::Origin::new("manual", event, input), Utc::now(), state.platform.store.table())?;
    let audit = AuditEntry::new(&caller.actor(), "workflow.run", "workflow", &id).reason(format!("run {} of version {}", run.id, version.version));
    state.platform.store.commit(writes, &audit).await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

#[utoipa::path(get, path = "/api/v1/workflows/{id}/runs", tag = "workflows",
    params(("id" = String, Path, description = "A workflow's id")),
    responses((status = 200, body = RunList), (status = 404, description = "No such workflow", body = shared::platform::error::Problem)))]
pub async fn list(State(state): State<WorkflowsState>, Path(id): Path<String>) -> Result<Json<RunList>> {
    let store = state.platform.store.store();
    model::load(store, &id).await?;
    Ok(Json(RunList { items: model::runs_of(store, &id, RUNS_LIST_MAX).await? }))
}

async fn load_run(state: &WorkflowsState, id: &str, run_id: &str) -> Result<Run> {
    let store = state.platform.store.store();
    model::load(store, id).await?;
    let missing = || Error::NotFound(format!("no run {run_id} of workflow {id}"));
    if uuid::Uuid::parse_str(run_id).is_err() {
        return Err(missing());
    }
    model::run(store, run_id).await?.filter(|r| r.workflow_id == id).ok_or_else(missing)
}

/// A run with every step's inputs, outputs, attempts, durations and errors.
#[utoipa::path(get, path = "/api/v1/workflows/{id}/runs/{run_id}", tag = "workflows",
    params(("id" = String, Path, description = "A workflow's id"), ("run_id" = String, Path, description = "A run's id")),
    responses((status = 200, body = Run), (status = 404, description = "No such workflow or run", body = shared::platform::error::Problem)))]
pub async fn get(State(state): State<WorkflowsState>, Path((id, run_id)): Path<(String, String)>) -> Result<Json<Run>> {
    Ok(Json(load_run(&state, &id, &run_id).await?))
}

/// Cancel a run that has not ended: its pending step is not executed.
#[utoipa::path(post, path = "/api/v1/workflows/{id}/runs/{run_id}/cancel", tag = "workflows",
    params(("id" = String, Path, description = "A workflow's id"), ("run_id" = String, Path, description = "A run's id")),
    responses(
        (status = 200, body = Run),
        (status = 404, description = "No such workflow or run", body = shared::platform::error::Problem),
        (status = 409, description = "The run has ended", body = shared::platform::error::Problem),
    ))]
pub async fn cancel(State(state): State<WorkflowsState>, caller: Caller, Path((id, run_id)): Path<(String, String)>) -> Result<Json<Run>> {
    let run = load_run(&state, &id, &run_id).await?;
    if run.status.is_final() {
        return Err(Error::Conflict(format!("run {run_id} has ended ({})", run.status.as_str())));
    }
    Ok(Json(cancel_run(&state, &caller, run, "cancelled").await?))
}

/// Cancel every run of workflow `id` that is running or waiting (its
/// deletion); a run that ends meanwhile is left as it ended.
pub(crate) async fn cancel_active(state: &WorkflowsState, caller: &Caller, id: &str) -> Result<u64> {
    let spec = shared::store::QuerySpec {
        index: Some("gsi1"),
        key_condition: "gsi1pk = :pk",
        filter: "#status IN (:running, :waiting)",
        names: vec![("#status", "status")],
        values: vec![(":pk", s(format!("WFRUNS#{id}"))), (":running", s("running")), (":waiting", s("waiting"))],
        ..Default::default()
    };
    let mut cancelled = 0;
    for item in state.platform.store.query_all(&spec).await? {
        let listed = Run::from_item(&item)?;
        // The index may lag: the run as it is now decides.
        let Some(run) = model::run(state.platform.store.store(), &listed.id).await? else { continue };
        if run.status.is_final() {
            continue;
        }
        match cancel_run(state, caller, run, "cancelled with its workflow's deletion").await {
            Ok(_) => cancelled += 1,
            Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(cancelled)
}

/// A run cancelled (`why`), with its pending message and waiter retired.
async fn cancel_run(state: &WorkflowsState, caller: &Caller, run: Run, why: &str) -> Result<Run> {
    let (id, run_id) = (run.workflow_id.clone(), run.id.clone());
    let mut next = run.clone();
    next.status = RunStatus::Cancelled;
    next.current_step = None;
    next.due_at = None;
    next.finished_at = Some(timestamp(Utc::now()));
    next.updated_at = timestamp(Utc::now());
    next.rev += 1;
    let audit = AuditEntry::new(&caller.actor(), "workflow_run.cancel", "workflow", &id).reason(format!("run {run_id} {why} at step {:?}", run.current_step));
    let table = state.platform.store.table();
    let mut writes = vec![next.save_write(table)?];
    // Its pending step message is retired with it (the tick would send
    // it), and a wait for an event with it.
    if let Some(message) = run.pending_message() {
        writes.push(message.done_write(table)?);
    }
    if let (Some(_), Some(step)) = (&run.waiting_for, &run.current_step) {
        writes.push(crate::model::Waiter::delete_write(table, &run_id, step, run.current_attempt)?);
    }
    next.waiting_for = None;
    state.platform.store.commit(writes, &audit).await?;
    Ok(next)
}

/// Re-run a failed run from its failed step: a new run on the same version
/// with the context the failed one had (the steps before are not repeated).
#[utoipa::path(post, path = "/api/v1/workflows/{id}/runs/{run_id}/retry", tag = "workflows",
    params(("id" = String, Path, description = "A workflow's id"), ("run_id" = String, Path, description = "A run's id")),
    responses(
        (status = 202, body = Run),
        (status = 404, description = "No such workflow or run", body = shared::platform::error::Problem),
        (status = 409, description = "The run did not fail", body = shared::platform::error::Problem),
    ))]
pub async fn retry(State(state): State<WorkflowsState>, caller: Caller, Path((id, run_id)): Path<(String, String)>) -> Result<(StatusCode, Json<Run>)> {
    let failed = load_run(&state, &id, &run_id).await?;
    let (RunStatus::Failed, Some(step)) = (failed.status, failed.failed_step.clone()) else {
        return Err(Error::Conflict(format!("run {run_id} did not fail at a step ({})", failed.status.as_str())));
    };
    let now = Utc::now();
    let new_id = uuid::Uuid::now_v7().to_string();
    let mut context = failed.context.clone();
    context["run"] = json!({"id": new_id, "workflow_id": id, "version": failed.version, "started_at": timestamp(now)});
    let run = Run {
        id: new_id.clone(),
        workflow_id: id.clone(),
        version: failed.version,
        status: RunStatus::Running,
        trigger: "retry".into(),
        context,
        steps: Vec::new(),
        current_step: Some(step.clone()),
        current_attempt: 1,
        due_at: Some(timestamp(now)),
        waiting_for: None,
        depth: failed.depth,
        chain: failed.chain.clone(),
        error: None,
        failed_step: None,
        parent_run_id: Some(run_id.clone()),
        started_at: timestamp(now),
        finished_at: None,
        updated_at: timestamp(now),
        rev: 1,
    };
    let table = state.platform.store.table();
    let writes = vec![run.create_write(table)?, StepMessage::new(&new_id, &step, 1, now).create_write(table, now)?];
    let audit = AuditEntry::new(&caller.actor(), "workflow_run.retry", "workflow", &id).reason(format!("run {run_id} re-run from step {step} as run {new_id}"));
    state.platform.store.commit(writes, &audit).await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkflowDryRunRequest)]
pub struct DryRunRequest {
    /// The run's `input` (an object).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    /// A sample event (`{type, actor, target: {type, id}, data}`); or give
    /// `target` and the event is read from the table as a real one would be.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub event: Option<Value>,
    /// An entity (`{type, id}`: a user or a chart) the sample event is about.
    #[serde(default)]
    pub target: Option<Target>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkflowDryRunTarget)]
pub struct Target {
    #[serde(rename = "type")]
    pub target_type: String,
    pub id: String,
}

/// Evaluate every condition and template with the given input or sample
/// event and return the planned trace: nothing is sent or written.
#[utoipa::path(post, path = "/api/v1/workflows/{id}/dry-run", tag = "workflows", request_body = DryRunRequest,
    params(("id" = String, Path, description = "A workflow's id")),
    responses(
        (status = 200, body = DryRun),
        (status = 400, description = "The input or event is not an object", body = shared::platform::error::Problem),
        (status = 404, description = "No such workflow", body = shared::platform::error::Problem),
    ))]
pub async fn dry_run(State(state): State<WorkflowsState>, Path(id): Path<String>, ValidJson(body): ValidJson<DryRunRequest>) -> Result<Json<DryRun>> {
    let input = checked_input(body.input, "input")?;
    let (workflow, version) = load_with_definition(&state, &id).await?;
    let event = match (body.event, body.target) {
        (Some(event), _) => checked_input(Some(event), "event")?,
        (None, Some(target)) => {
            if !["user", "chart"].contains(&target.target_type.as_str()) {
                return Err(Error::field("target.type", "user or chart"));
            }
            let event_type = match &version.definition.trigger {
                crate::definition::Trigger::Event { event, .. } => event.clone(),
                other => other.kind().to_string(),
            };
            let data = crate::dispatch::entity_data(&state.engine, &workflow.owner_id, &target.target_type, &target.id).await?;
            json!({"type": event_type, "actor": {"id": workflow.owner_id, "kind": "user"}, "target": {"type": target.target_type, "id": target.id}, "data": data})
        }
        (None, None) => json!({"type": version.definition.trigger.kind()}),
    };
    Ok(Json(state.engine.dry_run(&workflow, &version, event, input).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowAnalytics {
    /// The runs looked at (the latest, at most 1,000).
    pub runs: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub in_progress: u64,
    /// succeeded ÷ ended runs (none ended: null).
    pub success_rate: Option<f64>,
    pub steps: Vec<StepFigures>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkflowStepFigures)]
pub struct StepFigures {
    pub step_id: String,
    pub executions: u64,
    pub failures: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
}

/// Per workflow: runs by status, success rate, p50/p95 duration per step.
#[utoipa::path(get, path = "/api/v1/workflows/{id}/analytics", tag = "workflows",
    params(("id" = String, Path, description = "A workflow's id")),
    responses((status = 200, body = WorkflowAnalytics), (status = 404, description = "No such workflow", body = shared::platform::error::Problem)))]
pub async fn analytics(State(state): State<WorkflowsState>, Path(id): Path<String>) -> Result<Json<WorkflowAnalytics>> {
    let store = state.platform.store.store();
    model::load(store, &id).await?;
    let runs = model::runs_of(store, &id, 1_000).await?;
    let count = |status: RunStatus| runs.iter().filter(|r| r.status == status).count() as u64;
    let (succeeded, failed, cancelled) = (count(RunStatus::Succeeded), count(RunStatus::Failed), count(RunStatus::Cancelled));
    let ended = succeeded + failed + cancelled;
    let mut by_step: std::collections::BTreeMap<String, (Vec<u64>, u64)> = Default::default();
    for execution in runs.iter().flat_map(|r| &r.steps) {
        let entry = by_step.entry(execution.step_id.clone()).or_default();
        entry.0.push(execution.duration_ms);
        entry.1 += (execution.status == StepStatus::Failed) as u64;
    }
    let steps = by_step
        .into_iter()
        .map(|(step_id, (mut durations, failures))| {
            durations.sort_unstable();
            let at = |q: f64| durations[((durations.len() as f64 - 1.0) * q).round() as usize];
            StepFigures { step_id, executions: durations.len() as u64, failures, p50_ms: at(0.5), p95_ms: at(0.95) }
        })
        .collect();
    Ok(Json(WorkflowAnalytics {
        runs: runs.len() as u64,
        succeeded,
        failed,
        cancelled,
        in_progress: runs.len() as u64 - ended,
        success_rate: (ended > 0).then(|| succeeded as f64 / ended as f64),
        steps,
    }))
}
