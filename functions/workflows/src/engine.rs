//! Executing a run's steps: one step message at a time (the jobs worker
//! calls `Engine::execute`), each transition one transaction.
//!
//! A step message names a run, a step and an attempt. The transition that
//! ends the step writes, in one transaction: the run (versioned), the
//! message marked done (conditional on it being pending: a second delivery
//! of the same message changes nothing), the next step's message, and for
//! a Keel action the action's own writes and audit entry. So an action is
//! applied exactly once however often its message is delivered, and a
//! worker that dies mid-step leaves the message pending to be redelivered.
//! Effects outside the table cannot join the transaction: an email is sent
//! at most once (a marker is written before sending; a redelivery that
//! finds it fails the attempt rather than sending twice), a webhook at
//! least once with the same `webhook-id` (receivers deduplicate on it).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use shared::audit::{Actor, AuditEntry, Journal};
use shared::identity::rbac::PermissionSet;
use shared::identity::roles::RoleCatalog;
use shared::identity::users::{self, User, UserStatus};
use shared::platform::error::{Error, Result};
use shared::store::{Item, Write, n, s, timestamp};

use crate::definition::{Definition, RetryOn, Step, StepType, action_spec, parse_duration};
use crate::expr;
use crate::model::{self, Run, RunStatus, StepExecution, StepMessage, StepStatus, Version, Workflow};

/// Runs leading to runs: at most this many in a chain.
pub const MAX_DEPTH: u32 = 5;
/// Steps a dry run walks at most (a definition has no loops, so this is
/// only a bound on a long one).
const DRY_RUN_MAX_STEPS: usize = 200;
/// A step's output kept in the run record, at most.
const OUTPUT_MAX_BYTES: usize = 8_192;

pub use integrations::delivery::{Clock, ManualClock, SystemClock};

mod actions;

#[derive(Clone)]
pub struct Engine {
    pub store: Journal,
    /// The workflow owner's permissions (actions run with them).
    pub roles: RoleCatalog,
    pub ses: aws_sdk_sesv2::Client,
    pub email_from: String,
    pub webhook_policy: integrations::ssrf::Policy,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("table", &self.store.table()).field("email_from", &self.email_from).finish_non_exhaustive()
    }
}

/// Live: steps act. Dry: everything is evaluated and rendered, nothing is
/// sent or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Dry,
}

/// What one attempt of a step came to.
struct Outcome {
    status: StepStatus,
    input: Value,
    output: Value,
    /// A condition's branch.
    branch: Option<bool>,
    error: Option<StepError>,
    /// When the next step is due (a wait).
    next_due: Option<DateTime<Utc>>,
    /// A Keel action's writes and audit entry, committed with the transition.
    writes: Vec<Write>,
    audit: Option<AuditEntry>,
    /// Values a `set` step adds to `vars`.
    vars: Map<String, Value>,
    /// A `wait_for_event` step registered: it waits until this time.
    awaiting: Option<DateTime<Utc>>,
    /// The step that follows, named by the outcome (a timeout's `on_timeout`).
    goto: Option<String>,
    /// A high security event was raised: its metric, once committed.
    high_security_event: Option<shared::domain::security_events::Kind>,
}

#[derive(Debug, Clone)]
pub struct StepError {
    pub message: String,
    /// Timeouts, refused connections, 429 and 5xx, throttling.
    pub transient: bool,
}

impl StepError {
    fn permanent(message: impl Into<String>) -> StepError {
        StepError { message: message.into(), transient: false }
    }

    fn transient(message: impl Into<String>) -> StepError {
        StepError { message: message.into(), transient: true }
    }
}

impl Outcome {
    fn done(input: Value, output: Value) -> Outcome {
        Outcome {
            status: StepStatus::Succeeded,
            input,
            output,
            branch: None,
            error: None,
            next_due: None,
            writes: Vec::new(),
            audit: None,
            vars: Map::new(),
            awaiting: None,
            goto: None,
            high_security_event: None,
        }
    }

    fn failed(input: Value, error: StepError) -> Outcome {
        Outcome { status: StepStatus::Failed, error: Some(error), ..Outcome::done(input, Value::Null) }
    }
}

/// The context a run starts with.
pub fn context(run_id: &str, workflow_id: &str, version: u32, started_at: &str, event: Value, input: Value) -> Value {
    json!({
        "event": event,
        "input": input,
        "steps": {},
        "vars": {},
        "run": {"id": run_id, "workflow_id": workflow_id, "version": version, "started_at": started_at},
    })
}

/// What starts a run: its trigger, event and input, and the chain of runs
/// that led to it (the loop guard).
#[derive(Debug, Clone)]
pub struct Origin {
    pub trigger: &'static str,
    pub event: Value,
    pub input: Value,
    pub depth: u32,
    pub chain: Vec<String>,
    pub parent: Option<String>,
}

impl Origin {
    /// A run nothing led to.
    pub fn new(trigger: &'static str, event: Value, input: Value) -> Origin {
        Origin { trigger, event, input, depth: 0, chain: Vec::new(), parent: None }
    }
}

/// A new run of `version` and the writes that start it (the run record and
/// its first step's message), or a run refused by the loop guard (already
/// failed, no step).
pub fn start(version: &Version, origin: Origin, now: DateTime<Utc>, table: &str) -> Result<(Run, Vec<Write>)> {
    start_with_id(&uuid::Uuid::now_v7().to_string(), version, origin, now, table)
}

/// `start` with the run's id given (derived from what started it, so the
/// same cause starts one run).
pub fn start_with_id(id: &str, version: &Version, origin: Origin, now: DateTime<Utc>, table: &str) -> Result<(Run, Vec<Write>)> {
    let Origin { trigger, event, input, depth, chain, parent } = origin;
    let started_at = timestamp(now);
    let first = version.definition.steps.first().map(|s| s.id.clone());
    let guard = loop_guard(&version.workflow_id, depth, &chain);
    let run = Run {
        id: id.to_string(),
        workflow_id: version.workflow_id.clone(),
        version: version.version,
        status: RunStatus::Running,
        trigger: trigger.to_string(),
        context: context(id, &version.workflow_id, version.version, &started_at, event, input),
        steps: Vec::new(),
        current_step: first.clone(),
        current_attempt: 1,
        due_at: Some(started_at.clone()),
        waiting_for: None,
        depth,
        chain: chain.clone(),
        error: None,
        failed_step: None,
        parent_run_id: parent,
        started_at: started_at.clone(),
        finished_at: None,
        updated_at: started_at.clone(),
        rev: 1,
    };
    if let Some(refused) = guard {
        return refused_run(run, refused, table);
    }
    let mut writes = vec![run.create_write(table)?];
    if let Some(first) = first {
        writes.push(StepMessage::new(id, &first, 1, now).create_write(table, now)?);
    }
    Ok((run, writes))
}

/// A run that is not started: recorded as failed with `reason`, no step.
fn refused_run(mut run: Run, reason: String, table: &str) -> Result<(Run, Vec<Write>)> {
    run.status = RunStatus::Failed;
    run.error = Some(reason);
    run.current_step = None;
    run.due_at = None;
    run.finished_at = Some(run.started_at.clone());
    Ok((run.clone(), vec![run.create_write(table)?]))
}

/// `start_with_id`'s run refused for `reason` (the rate limit).
pub fn refuse_with_id(id: &str, version: &Version, origin: Origin, now: DateTime<Utc>, table: &str, reason: String) -> Result<(Run, Vec<Write>)> {
    let (run, _) = start_with_id(id, version, Origin { chain: Vec::new(), depth: 0, ..origin }, now, table)?;
    refused_run(run, reason, table)
}

/// Why a run may not start: a chain of runs too deep, or a workflow that
/// would run again inside its own chain.
pub fn loop_guard(workflow_id: &str, depth: u32, chain: &[String]) -> Option<String> {
    if chain.iter().any(|w| w == workflow_id) {
        return Some(format!(
            "loop guard: workflow {workflow_id} would run again inside its own chain of runs ({} → {workflow_id}); stopped",
            chain.join(" → ")
        ));
    }
    if depth > MAX_DEPTH {
        return Some(format!("loop guard: a chain of more than {MAX_DEPTH} runs, each started by the one before; stopped"));
    }
    None
}

impl Engine {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Execute one step message (the jobs worker's `workflow_step`). A
    /// message that is stale (the run moved on, or it was executed) is
    /// acknowledged without doing anything; an error leaves it to SQS.
    pub async fn execute(&self, message: &StepMessage) -> Result<()> {
        let store = self.store.store();
        let now = self.now();
        let Some(run) = model::run(store, &message.run_id).await? else {
            tracing::warn!(run_id = %message.run_id, "step message of an unknown run; acknowledged");
            return Ok(());
        };
        let moved_on = run.status.is_final() || run.current_step.as_deref() != Some(message.step_id.as_str()) || run.current_attempt != message.attempt;
        // A timeout counts only while the run still waits for its event.
        if moved_on || (message.is_timeout() && run.waiting_for.is_none()) {
            tracing::info!(run_id = %run.id, step = %message.step_id, attempt = message.attempt, "stale step message; acknowledged");
            // Off the due index, so the tick does not send it again.
            match store.transact(vec![message.done_write(store.table())?]).await {
                Ok(()) | Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
            return Ok(());
        }
        if !model::pending_item(store, message).await? {
            return Ok(());
        }
        let due = model::not_before(&message.not_before)?;
        if due - now > chrono::Duration::seconds(2) {
            // Early (a clock ahead of ours): the tick sends it when due.
            tracing::info!(run_id = %run.id, step = %message.step_id, due = %message.not_before, "step message before its time; left for the tick");
            return Ok(());
        }
        let version = model::version(store, &run.workflow_id, run.version)
            .await?
            .ok_or_else(|| Error::internal(format!("run {} is pinned to a missing version", run.id)))?;
        let workflow = model::get(store, &run.workflow_id).await?.ok_or_else(|| Error::internal(format!("run {} names a missing workflow", run.id)))?;
        let Some(step) = version.definition.step(&message.step_id).cloned() else {
            return Err(Error::internal(format!("run {} names step {} its version does not have", run.id, message.step_id)));
        };
        // A run its workflow's deletion did not reach (started from a
        // trigger index read just before): it ends here, honestly.
        if workflow.deleted_at.is_some() {
            let outcome = Outcome::failed(Value::Null, StepError::permanent("the workflow was deleted"));
            return self.finish(run, &version.definition, &workflow, &step, message, outcome, now, 0).await;
        }
        if message.is_timeout() {
            let outcome = timed_out(&step);
            return self.finish(run, &version.definition, &workflow, &step, message, outcome, now, 0).await;
        }
        // Email is sent at most once: a marker before sending.
        if step.step_type == StepType::SendEmail && !step_skipped(&step, &run.context) {
            let marker = Item::from([
                ("pk".to_string(), s(model::run_pk(&run.id))),
                ("sk".to_string(), s(format!("EFFECT#{}#{:03}", step.id, message.attempt))),
                ("ttl".to_string(), n(shared::store::ttl_after(30 * 86_400))),
            ]);
            if !store.put_new(marker).await? {
                let outcome = Outcome::failed(
                    Value::Null,
                    StepError::permanent("interrupted: an earlier delivery of this attempt stopped after it may have sent the email; not sent again"),
                );
                return self.finish(run, &version.definition, &workflow, &step, message, outcome, now, 0).await;
            }
        }
        let started = std::time::Instant::now();
        let outcome = self.perform(&workflow, &run, &step, message.attempt, Mode::Live).await;
        let elapsed = started.elapsed().as_millis() as u64;
        shared::platform::telemetry::emit_metric(
            &[("Function", "workflows"), ("StepType", step.step_type.as_str())],
            &[("StepDuration", elapsed as f64, "Milliseconds"), ("StepFailed", (outcome.status == StepStatus::Failed) as u8 as f64, "Count")],
        );
        self.finish(run, &version.definition, &workflow, &step, message, outcome, now, elapsed).await
    }

    /// Record an attempt's outcome and move the run on, in one transaction.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        mut run: Run,
        definition: &Definition,
        workflow: &Workflow,
        step: &Step,
        message: &StepMessage,
        mut outcome: Outcome,
        started: DateTime<Utc>,
        elapsed: u64,
    ) -> Result<()> {
        let table = self.store.table().to_string();
        let now = self.now();
        let mut writes = vec![message.done_write(&table)?];
        if let (Some(deadline), None) = (outcome.awaiting, &outcome.error) {
            // Registered: the event (through the dispatcher) or the timeout
            // (a message due at the deadline) ends the step, whichever
            // marks the timeout message done first.
            let event = step.event.clone().unwrap_or_default();
            let waiter = model::Waiter {
                run_id: run.id.clone(),
                workflow_id: run.workflow_id.clone(),
                step_id: step.id.clone(),
                attempt: message.attempt,
                event: event.clone(),
                since: timestamp(now),
                deadline: timestamp(deadline),
            };
            run.status = RunStatus::Waiting;
            run.waiting_for = Some(event);
            run.due_at = Some(timestamp(deadline));
            run.updated_at = timestamp(now);
            run.rev += 1;
            writes.push(StepMessage::timeout(&run.id, &step.id, message.attempt, deadline).create_write(&table, now)?);
            writes.push(waiter.put_write(&table)?);
            writes.push(run.save_write(&table)?);
            return match self.store.store().transact(writes).await {
                Ok(()) | Err(Error::Conflict(_)) => Ok(()),
                Err(e) => Err(e),
            };
        }
        if run.waiting_for.take().is_some() {
            writes.push(model::Waiter::delete_write(&table, &run.id, &step.id, message.attempt)?);
        }
        let mut execution = StepExecution {
            step_id: step.id.clone(),
            step_type: step.step_type.as_str().into(),
            attempt: message.attempt,
            status: outcome.status,
            due_at: message.not_before.clone(),
            started_at: timestamp(started),
            duration_ms: elapsed,
            input: outcome.input.clone(),
            output: truncated(outcome.output.clone()),
            error: outcome.error.as_ref().map(|e| e.message.clone()),
            retry_at: None,
            next: None,
        };
        let (next, next_attempt, next_due) = match (&outcome.error, outcome.status) {
            (Some(error), _) => {
                let policy = step.retry.clone();
                let retries = policy.as_ref().is_some_and(|p| message.attempt < p.attempts && (error.transient || p.retry_on == Some(RetryOn::Any)));
                if let (true, Some(policy)) = (retries, policy) {
                    let delay = jittered(policy.delay_before(message.attempt + 1), policy.jitter.unwrap_or(0.0));
                    let at = now + delay;
                    execution.retry_at = Some(timestamp(at));
                    (Some(step.id.clone()), message.attempt + 1, at)
                } else if let Some(target) = step.on_failure.clone().filter(|t| t != crate::definition::END) {
                    (Some(target), 1, now)
                } else {
                    (None, 0, now)
                }
            }
            (None, _) => {
                let next = match &outcome.goto {
                    Some(target) => Some(target.clone()).filter(|t| t != crate::definition::END),
                    None => definition.next_after(step, outcome.branch),
                };
                (next, 1, outcome.next_due.unwrap_or(now))
            }
        };
        execution.next = next.clone().filter(|n| *n != step.id || next_attempt == 1);
        // The context the following steps read.
        if let Some(map) = run.context.get_mut("steps").and_then(Value::as_object_mut) {
            map.insert(step.id.clone(), json!({"status": outcome.status, "output": execution.output, "error": execution.error, "attempt": message.attempt}));
        }
        if let Some(vars) = run.context.get_mut("vars").and_then(Value::as_object_mut) {
            vars.extend(outcome.vars.clone());
        }
        run.steps.push(execution);
        run.updated_at = timestamp(now);
        run.rev += 1;
        match next {
            Some(next_step) => {
                run.current_step = Some(next_step.clone());
                run.current_attempt = next_attempt;
                run.due_at = Some(timestamp(next_due));
                run.status = if next_due > now { RunStatus::Waiting } else { RunStatus::Running };
                writes.push(StepMessage::new(&run.id, &next_step, next_attempt, next_due).create_write(&table, now)?);
            }
            None => {
                run.current_step = None;
                run.due_at = None;
                run.finished_at = Some(timestamp(now));
                if let Some(error) = &outcome.error {
                    run.status = RunStatus::Failed;
                    run.failed_step = Some(step.id.clone());
                    run.error = Some(format!("step {} ({}) failed after {} attempt(s): {}", step.id, step.step_type.as_str(), message.attempt, error.message));
                } else {
                    run.status = RunStatus::Succeeded;
                }
            }
        }
        writes.push(run.save_write(&table)?);
        writes.extend(std::mem::take(&mut outcome.writes));
        let committed = match &outcome.audit {
            Some(audit) => self.store.commit(writes, audit).await,
            None => self.store.store().transact(writes).await,
        };
        match committed {
            Ok(()) => {
                if let Some(kind) = outcome.high_security_event {
                    shared::domain::security_events::emit_high_metric(kind);
                }
                tracing::info!(run_id = %run.id, workflow_id = %workflow.id, step = %step.id, attempt = message.attempt, status = run.status.as_str(), "workflow step done");
                Ok(())
            }
            // Another delivery executed it, or the run was cancelled
            // meanwhile: nothing of this attempt is applied.
            Err(Error::Conflict(why)) => {
                tracing::info!(run_id = %run.id, step = %step.id, why, "step transition lost to another change; acknowledged");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Perform one step against the run's context.
    async fn perform(&self, workflow: &Workflow, run: &Run, step: &Step, attempt: u32, mode: Mode) -> Outcome {
        let context = &run.context;
        if step.step_type != StepType::Condition
            && let Some(guard) = &step.condition
        {
            match expr::evaluate(guard, context) {
                Ok(true) => {}
                Ok(false) => return Outcome { status: StepStatus::Skipped, ..Outcome::done(json!({"condition": guard}), json!({"skipped": true})) },
                Err(e) => return Outcome::failed(json!({"condition": guard}), StepError::permanent(e)),
            }
        }
        let render = |template: &Option<String>| -> std::result::Result<String, StepError> {
            expr::render(template.as_deref().unwrap_or_default(), context).map_err(StepError::permanent)
        };
        match step.step_type {
            StepType::Condition => {
                let condition = step.condition.clone().unwrap_or_default();
                match expr::evaluate(&condition, context) {
                    Ok(branch) => Outcome { branch: Some(branch), ..Outcome::done(json!({"condition": condition}), json!({"result": branch})) },
                    Err(e) => Outcome::failed(json!({"condition": condition}), StepError::permanent(e)),
                }
            }
            StepType::Set => {
                let mut vars = Map::new();
                for (name, template) in step.values.clone().unwrap_or_default() {
                    match expr::render(&template, context) {
                        Ok(value) => {
                            vars.insert(name, Value::String(value));
                        }
                        Err(e) => return Outcome::failed(json!({}), StepError::permanent(format!("values.{name}: {e}"))),
                    }
                }
                Outcome { vars: vars.clone(), ..Outcome::done(json!({}), Value::Object(vars)) }
            }
            StepType::SendEmail => {
                let (to, subject, body) = match (render(&step.to), render(&step.subject), render(&step.body)) {
                    (Ok(to), Ok(subject), Ok(body)) => (to.trim().to_string(), subject, body),
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Outcome::failed(json!({}), e),
                };
                let input = json!({"to": to, "subject": subject, "body": body});
                if users::Email::parse(&to).is_err() {
                    return Outcome::failed(input, StepError::permanent(format!("to: {to:?} is not an email address")));
                }
                if subject.chars().count() > 200 || subject.contains('\n') {
                    return Outcome::failed(input, StepError::permanent("subject: one line of at most 200 characters"));
                }
                if mode == Mode::Dry {
                    return Outcome::done(input, json!({"dry_run": true, "would_send": true}));
                }
                match self.send_email(&to, &subject, &body).await {
                    Ok(id) => Outcome::done(input, json!({"message_id": id})),
                    Err(e) => Outcome::failed(input, StepError::transient(e.to_string())),
                }
            }
            StepType::SendWebhook => {
                let url = match render(&step.url) {
                    Ok(url) => url,
                    Err(e) => return Outcome::failed(json!({}), e),
                };
                let payload = match step.payload.as_ref().map(|p| expr::render_value(p, context)).transpose() {
                    Ok(payload) => payload.unwrap_or(json!({})),
                    Err(e) => return Outcome::failed(json!({"url": redact_url(&url)}), StepError::permanent(e)),
                };
                let input = json!({"url": redact_url(&url), "payload": payload});
                if let Err(refusal) = integrations::ssrf::check_url(&url, self.webhook_policy) {
                    return Outcome::failed(input, StepError::permanent(format!("url: {refusal}")));
                }
                if mode == Mode::Dry {
                    return Outcome::done(input, json!({"dry_run": true, "would_post": true}));
                }
                // The same id for every delivery of this attempt.
                let webhook_id = format!("wfs_{}_{}_{}", run.id, step.id, attempt);
                let body = payload.to_string();
                let headers =
                    [("webhook-id", webhook_id), ("webhook-timestamp", self.now().timestamp().to_string()), ("user-agent", "keel-workflows".to_string())];
                let sent = integrations::delivery::post(&url, self.webhook_policy, &headers, &body).await;
                let output = json!({"status": sent.status, "response": sent.response.chars().take(500).collect::<String>(), "latency_ms": sent.latency.as_millis() as u64});
                match sent.status {
                    Some(status) if (200..300).contains(&status) => Outcome::done(input, output),
                    Some(status) if status == 429 || status >= 500 || status == 408 => {
                        Outcome { output, ..Outcome::failed(input, StepError::transient(format!("the receiver answered {status}"))) }
                    }
                    Some(status) => Outcome { output, ..Outcome::failed(input, StepError::permanent(format!("the receiver answered {status}"))) },
                    None => Outcome::failed(input, StepError::transient(sent.error.unwrap_or_else(|| "no answer".into()))),
                }
            }
            StepType::Action => self.action(workflow, run, step, mode).await,
            StepType::Wait => {
                let now = self.now();
                let until = match (&step.duration, &step.until) {
                    (Some(duration), _) => parse_duration(duration).map(|seconds| now + chrono::Duration::seconds(seconds)).map_err(StepError::permanent),
                    (None, Some(_)) => render(&step.until).and_then(|text| {
                        let at = shared::platform::time::parse(text.trim())
                            .ok_or_else(|| StepError::permanent(format!("until: {text:?} is not an RFC 3339 time")))?;
                        if at - now > chrono::Duration::seconds(crate::definition::MAX_WAIT_SECONDS) {
                            return Err(StepError::permanent("until: at most a year ahead"));
                        }
                        Ok(at.max(now))
                    }),
                    (None, None) => Err(StepError::permanent("a wait step needs duration or until")),
                };
                match until {
                    Ok(until) => Outcome {
                        next_due: Some(until),
                        ..Outcome::done(json!({"duration": step.duration, "until": step.until}), json!({"until": timestamp(until)}))
                    },
                    Err(e) => Outcome::failed(json!({}), e),
                }
            }
            StepType::RunWorkflow => self.run_workflow(run, step, mode).await,
            StepType::WaitForEvent => {
                let event = step.event.clone().unwrap_or_default();
                let input = wait_input(step);
                let deadline = match parse_duration(step.timeout.as_deref().unwrap_or_default()) {
                    Ok(seconds) => self.now() + chrono::Duration::seconds(seconds),
                    Err(e) => return Outcome::failed(input, StepError::permanent(format!("timeout: {e}"))),
                };
                if mode == Mode::Dry {
                    // The plan assumes the event comes; the run's own event
                    // stands in for it.
                    let output = json!({"dry_run": true, "would_wait_for": event, "timeout_at": timestamp(deadline), "event": context.get("event")});
                    return Outcome { next_due: Some(deadline), ..Outcome::done(input, output) };
                }
                Outcome { awaiting: Some(deadline), ..Outcome::done(input, json!({"waiting_for": event, "until": timestamp(deadline)})) }
            }
        }
    }

    /// An event for a run waiting in a `wait_for_event` step: if the run is
    /// still waiting for it and `received` passes the step's filter, the
    /// step succeeds with the event and the run goes on (one transaction;
    /// the step's timeout message is marked done in it, so the timeout and
    /// the event cannot both end the step). Whether it ended the step.
    pub async fn resume(&self, waiter: &model::Waiter, workflow: &Workflow, received: Value) -> Result<bool> {
        let store = self.store.store();
        let table = store.table().to_string();
        let now = self.now();
        let forget = || async { store.transact(vec![model::Waiter::delete_write(&table, &waiter.run_id, &waiter.step_id, waiter.attempt)?]).await };
        let Some(run) = model::run(store, &waiter.run_id).await? else {
            forget().await?;
            return Ok(false);
        };
        let current = !run.status.is_final()
            && run.waiting_for.is_some()
            && run.current_step.as_deref() == Some(waiter.step_id.as_str())
            && run.current_attempt == waiter.attempt;
        if !current {
            forget().await?;
            return Ok(false);
        }
        let version = model::version(store, &run.workflow_id, run.version)
            .await?
            .ok_or_else(|| Error::internal(format!("run {} is pinned to a missing version", run.id)))?;
        let Some(step) = version.definition.step(&waiter.step_id).cloned() else { return Ok(false) };
        if let Some(filter) = &step.filter {
            let mut context = run.context.clone();
            if let Some(map) = context.as_object_mut() {
                map.insert("received".into(), received.clone());
            }
            match expr::evaluate(filter, &context) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) => {
                    tracing::warn!(run_id = %run.id, step = %step.id, error = %e, "a wait_for_event filter failed; not this event");
                    return Ok(false);
                }
            }
        }
        let deadline = model::not_before(&waiter.deadline)?;
        let message = StepMessage::timeout(&run.id, &step.id, waiter.attempt, deadline);
        let input = wait_input(&step);
        let outcome = Outcome::done(input, json!({"event": received}));
        self.finish(run, &version.definition, workflow, &step, &message, outcome, now, 0).await?;
        Ok(true)
    }

    async fn send_email(&self, to: &str, subject: &str, text: &str) -> Result<Option<String>> {
        use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
        let content = |data: &str| Content::builder().data(data).build().map_err(|e| Error::internal(e.to_string()));
        let message = Message::builder().subject(content(subject)?).body(Body::builder().text(content(text)?).build()).build();
        let sent = self
            .ses
            .send_email()
            .from_email_address(&self.email_from)
            .destination(Destination::builder().to_addresses(to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(shared::platform::error::aws("ses SendEmail"))?;
        Ok(sent.message_id().map(str::to_string))
    }

    /// The permissions the workflow's owner holds now (a suspended or
    /// deleted owner holds none).
    async fn owner_permissions(&self, owner_id: &str) -> Result<(Option<User>, PermissionSet)> {
        let Some(owner) = users::get(self.store.store(), owner_id).await? else { return Ok((None, PermissionSet::of(&[]))) };
        if owner.status != UserStatus::Active {
            return Ok((Some(owner), PermissionSet::of(&[])));
        }
        let catalog = self.roles.fresh_for(&owner.roles).await?;
        let held = catalog.permissions_of(&owner.roles);
        Ok((Some(owner), held))
    }

    /// A Keel action, as the owner: the same checks as the API's, the
    /// writes and audit entry returned to commit with the transition.
    async fn action(&self, workflow: &Workflow, run: &Run, step: &Step, mode: Mode) -> Outcome {
        let name = step.action.clone().unwrap_or_default();
        let Some(spec) = action_spec(&name) else { return Outcome::failed(json!({"action": name}), StepError::permanent("not an action")) };
        let mut params = Map::new();
        for (key, template) in step.params.clone().unwrap_or_default() {
            match expr::render(&template, &run.context) {
                Ok(value) => {
                    params.insert(key, Value::String(value.trim().to_string()));
                }
                Err(e) => return Outcome::failed(json!({"action": name}), StepError::permanent(format!("params.{key}: {e}"))),
            }
        }
        let input = json!({"action": name, "params": params});
        let (_, held) = match self.owner_permissions(&workflow.owner_id).await {
            Ok(found) => found,
            Err(e) => return Outcome::failed(input, StepError::transient(e.to_string())),
        };
        if !held.contains(spec.permission) {
            return Outcome::failed(input, StepError::permanent(format!("the workflow's owner does not hold {} (needed by {name})", spec.permission)));
        }
        match name.as_str() {
            "chart.moderate" => return self.moderate_chart(workflow, run, step, &params, input, mode).await,
            "data.export" => return self.export(workflow, run, &params, &held, input, mode),
            "report.generate" => return self.generate_report(workflow, run, &params, &held, input, mode),
            "insight.create" => return self.create_insight(workflow, run, step, &params, input, mode).await,
            "security_event.raise" => return self.raise_security_event(workflow, run, step, &params, input, mode).await,
            _ => {}
        }
        let param = |key: &str| params.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        let user_id = param("user_id");
        let user = match shared::store::ids::UserId::parse(&user_id) {
            Some(_) => match users::get(self.store.store(), &user_id).await {
                Ok(Some(user)) => user,
                Ok(None) => return Outcome::failed(input, StepError::permanent(format!("params.user_id: no user {user_id}"))),
                Err(e) => return Outcome::failed(input, StepError::transient(e.to_string())),
            },
            None => return Outcome::failed(input, StepError::permanent(format!("params.user_id: {user_id:?} is not a user id"))),
        };
        if user.status == UserStatus::Deleted {
            return Outcome::failed(input, StepError::permanent("the user is deleted"));
        }
        if user.id == workflow.owner_id {
            return Outcome::failed(input, StepError::permanent("a workflow does not act on its own owner (as the API refuses self-changes)"));
        }
        if name == "user.revoke_sessions" {
            return self.revoke_sessions(workflow, run, step, &user, input, mode).await;
        }
        let mut next = user.next_version();
        let mut holder_writes = Vec::new();
        let audit_action = match name.as_str() {
            "user.suspend" | "user.reactivate" => {
                let target = if name == "user.suspend" { UserStatus::Suspended } else { UserStatus::Active };
                if user.status == target {
                    return Outcome::done(input, json!({"changed": false, "status": user.status}));
                }
                if user.status == UserStatus::Invited {
                    return Outcome::failed(input, StepError::permanent("an invited user becomes active by accepting the invitation"));
                }
                next.status = target;
                name.clone()
            }
            _ => {
                let role = param("role");
                let catalog = match self.roles.fresh_for(std::slice::from_ref(&role)).await {
                    Ok(c) => c,
                    Err(e) => return Outcome::failed(input, StepError::transient(e.to_string())),
                };
                let problems = users::check_roles("params.role", std::slice::from_ref(&role), &catalog);
                if let Some(problem) = problems.first() {
                    return Outcome::failed(input, StepError::permanent(format!("params.role: {}", problem.message)));
                }
                // As the API's rule: nobody hands out (or takes away)
                // permissions they do not hold themselves.
                if let Some(missing) = catalog.permissions_of(std::slice::from_ref(&role)).first_missing_from(held) {
                    return Outcome::failed(input, StepError::permanent(format!("the workflow's owner does not hold {missing}, which role {role} carries")));
                }
                let mut roles = user.roles.clone();
                if name == "user.add_role" {
                    if roles.contains(&role) {
                        return Outcome::done(input, json!({"changed": false, "roles": roles}));
                    }
                    roles.push(role);
                } else {
                    if !roles.contains(&role) {
                        return Outcome::done(input, json!({"changed": false, "roles": roles}));
                    }
                    roles.retain(|r| *r != role);
                    if roles.is_empty() {
                        return Outcome::failed(input, StepError::permanent("a user keeps at least one role"));
                    }
                }
                match shared::identity::roles::holder_writes(self.store.table(), &catalog, &user.roles, &roles) {
                    Ok(w) => holder_writes = w,
                    Err(e) => return Outcome::failed(input, StepError::transient(e.to_string())),
                }
                next.roles = roles;
                "user.update".to_string()
            }
        };
        let output = json!({"changed": true, "user_id": user.id, "status": next.status, "roles": next.roles});
        if mode == Mode::Dry {
            return Outcome::done(input, json!({"dry_run": true, "would_change": output}));
        }
        let item = match next.to_item() {
            Ok(item) => item,
            Err(e) => return Outcome::failed(input, StepError::transient(e.to_string())),
        };
        let mut writes = match Write::put_versioned(self.store.table(), item, user.version) {
            Ok(w) => vec![w],
            Err(e) => return Outcome::failed(input, StepError::transient(e.to_string())),
        };
        writes.extend(holder_writes);
        let audit = AuditEntry::new(&workflow_actor(workflow, run), &audit_action, "user", &user.id)
            .reason(format!("workflow {:?} ({}), run {}, step {}", workflow.name, workflow.id, run.id, step.id))
            .changes(Some(&user), Some(&next));
        Outcome { writes, audit: Some(audit), ..Outcome::done(input, output) }
    }

    /// Moderate a chart as the owner, through the API's own domain code
    /// (`shared::domain::moderation`): the state machine, the history
    /// entry, the owner's notice and the audit entry, committed with the
    /// step's transition. The chart's current version is the one decided
    /// on; a change in between makes the transition conflict and the
    /// message is executed again.
    async fn moderate_chart(&self, workflow: &Workflow, run: &Run, step: &Step, params: &Map<String, Value>, input: Value, mode: Mode) -> Outcome {
        use shared::domain::moderation::{self, Decision, Refusal};
        let param = |key: &str| params.get(key).and_then(Value::as_str).map(str::to_string);
        let chart_id = param("chart_id").unwrap_or_default();
        let action: shared::domain::charts::ModerationAction = match serde_json::from_value(json!(param("action").unwrap_or_default())) {
            Ok(action) => action,
            Err(_) => {
                return Outcome::failed(input, StepError::permanent(format!("params.action: one of {}", crate::definition::MODERATION_ACTIONS.join(", "))));
            }
        };
        let settings = match shared::domain::system_settings::load_current(self.store.store()).await {
            Ok(settings) => settings,
            Err(e) => return Outcome::failed(input, StepError::transient(e.to_string())),
        };
        let code = param("reason").unwrap_or_default();
        let note = param("note").filter(|n| !n.trim().is_empty());
        let reason = match moderation::check_reason(&settings.settings, &code, note.as_deref()) {
            Ok(reason) => reason,
            Err(e) => return Outcome::failed(input, StepError::permanent(field_errors("params.", &e))),
        };
        let decision = Decision { action, reason, note: note.as_deref(), version: None };
        let actor = workflow_actor(workflow, run);
        let planned = match moderation::plan(&self.store, &actor, &chart_id, &decision).await {
            Ok(planned) => planned,
            Err(Refusal::InvalidTransition(why)) => return Outcome::failed(input, StepError::permanent(why)),
            Err(Refusal::NotFound) => return Outcome::failed(input, StepError::permanent(format!("params.chart_id: no chart {chart_id}"))),
            Err(Refusal::Stale(why)) => return Outcome::failed(input, StepError::transient(why)),
            Err(Refusal::Failed(e)) => return Outcome::failed(input, StepError::transient(e.to_string())),
        };
        let mut output =
            json!({"chart_id": chart_id, "from": planned.before.moderation_status, "to": planned.chart.moderation_status, "version": planned.chart.version});
        if mode == Mode::Dry {
            // The shape a live run gives, so later steps' templates render.
            output["dry_run"] = json!(true);
            return Outcome::done(input, output);
        }
        // The moderation's own reason (code and note), and which workflow took it.
        let why = planned.audit.reason.clone().unwrap_or(code);
        let audit = planned.audit.reason(format!("{why} (workflow {:?}, run {}, step {})", workflow.name, run.id, step.id));
        Outcome { writes: planned.writes, audit: Some(audit), ..Outcome::done(input, output) }
    }

    /// Export a dataset as the owner: a data export job (the data
    /// function's own), masked unless the owner holds pii:read, the audit
    /// log only with audit:read; the job is committed with the step's
    /// transition and its file is the owner's to download.
    fn export(&self, workflow: &Workflow, run: &Run, params: &Map<String, Value>, held: &PermissionSet, input: Value, mode: Mode) -> Outcome {
        use shared::domain::export::{self, Dataset, ExportParams, Filters, Format};
        use shared::identity::rbac::Permission;
        let param = |key: &str| actions::param(params, key);
        let dataset: Dataset = match serde_json::from_value(json!(param("dataset").unwrap_or_default())) {
            Ok(dataset) => dataset,
            Err(_) => return Outcome::failed(input, StepError::permanent(format!("params.dataset: one of {}", crate::definition::EXPORT_DATASETS.join(", ")))),
        };
        if dataset == Dataset::Audit && !held.contains(Permission::AuditRead) {
            return Outcome::failed(input, StepError::permanent("the workflow's owner does not hold audit:read (needed to export the audit log)"));
        }
        let format: Format = match serde_json::from_value(json!(param("format").unwrap_or_else(|| "csv".into()))) {
            Ok(format) => format,
            Err(_) => return Outcome::failed(input, StepError::permanent(format!("params.format: one of {}", crate::definition::EXPORT_FORMATS.join(", ")))),
        };
        let filters_value = match param("filters").map(|text| serde_json::from_str::<Value>(&text)) {
            None => None,
            Some(Ok(value)) => Some(value),
            Some(Err(e)) => return Outcome::failed(input, StepError::permanent(format!("params.filters: not JSON: {e}"))),
        };
        let filters = match Filters::parse(dataset, filters_value.as_ref()) {
            Ok(filters) => filters,
            Err(e) => return Outcome::failed(input, StepError::permanent(field_errors("params.", &e))),
        };
        let requested: Option<Vec<String>> = param("columns").map(|c| c.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect());
        let columns = match export::select_columns(filters.columns(), requested.as_deref()) {
            Ok(columns) => columns.iter().map(|c| c.name.to_string()).collect::<Vec<_>>(),
            Err(e) => return Outcome::failed(input, StepError::permanent(field_errors("params.", &e))),
        };
        let params = ExportParams { filters, columns, format, mask: !held.contains(Permission::PiiRead) };
        let job_params = match serde_json::to_value(&params) {
            Ok(v) => v,
            Err(e) => return Outcome::failed(input, StepError::transient(e.to_string())),
        };
        let job = shared::domain::jobs::Job::new(shared::domain::jobs::JobKind::DataExport, &workflow.owner_id, job_params);
        let output = json!({"job_id": job.id, "location": format!("/api/v1/data/jobs/{}", job.id), "dataset": dataset, "format": format, "columns": params.columns, "masked": params.mask});
        let summary = json!({"dataset": dataset, "filters": params.filters, "columns": params.columns, "format": format, "masked": params.mask, "delivery": "job",
            "workflow": {"id": workflow.id, "run": run.id}});
        let audit = AuditEntry::new(&workflow_actor(workflow, run), "data.export", "job", &job.id).changes::<(), _>(None, Some(&summary));
        self.job_outcome(&job, output, audit, input, mode)
    }

    /// An action that queues a job: a dry run answers the output a live
    /// run gives (the job id is not kept); a live one the job's write and
    /// its audit entry, committed with the step's transition.
    fn job_outcome(&self, job: &shared::domain::jobs::Job, mut output: Value, audit: AuditEntry, input: Value, mode: Mode) -> Outcome {
        if mode == Mode::Dry {
            output["dry_run"] = json!(true);
            return Outcome::done(input, output);
        }
        match job.create_write(self.store.table()) {
            Ok(write) => Outcome { writes: vec![write], audit: Some(audit), ..Outcome::done(input, output) },
            Err(e) => Outcome::failed(input, StepError::transient(e.to_string())),
        }
    }

    /// Revoke every active session of `user` (refresh tokens stop working;
    /// access tokens expire within their 15 minutes).
    async fn revoke_sessions(&self, workflow: &Workflow, run: &Run, step: &Step, user: &User, input: Value, mode: Mode) -> Outcome {
        let spec = shared::store::QuerySpec {
            key_condition: "pk = :pk AND begins_with(sk, :s)",
            filter: "#status = :active",
            names: vec![("#status", "status")],
            values: vec![(":pk", s(User::pk(&user.id))), (":s", s("SESSION#")), (":active", s("active"))],
            ..Default::default()
        };
        let sessions = match self.store.query_all(&spec).await {
            Ok(items) => items,
            Err(e) => return Outcome::failed(input, StepError::transient(e.to_string())),
        };
        // One transaction holds 100 writes; the rest wait for another run.
        let ids: Vec<String> = sessions.iter().filter_map(|i| shared::store::attr_s(i, "sk")).map(str::to_string).take(90).collect();
        let output = json!({"user_id": user.id, "revoked": ids.len()});
        if mode == Mode::Dry {
            return Outcome::done(input, json!({"dry_run": true, "would_revoke": ids.len()}));
        }
        if ids.is_empty() {
            return Outcome::done(input, output);
        }
        let now = s(timestamp(self.now()));
        let mut writes = Vec::new();
        for sk in &ids {
            let update = shared::store::UpdateSpec::new("SET #status = :revoked, revoked_at = :now")
                .condition("attribute_exists(pk)")
                .name("#status", "status")
                .value(":revoked", s("revoked"))
                .value(":now", now.clone());
            match Write::update(self.store.table(), &User::pk(&user.id), sk, &update, None) {
                Ok(w) => writes.push(w),
                Err(e) => return Outcome::failed(input, StepError::transient(e.to_string())),
            }
        }
        let audit = AuditEntry::new(&workflow_actor(workflow, run), "user.revoke_sessions", "user", &user.id).reason(format!(
            "workflow {:?} ({}), run {}, step {}: {} sessions",
            workflow.name,
            workflow.id,
            run.id,
            step.id,
            ids.len()
        ));
        Outcome { writes, audit: Some(audit), ..Outcome::done(input, output) }
    }

    async fn run_workflow(&self, run: &Run, step: &Step, mode: Mode) -> Outcome {
        let target = step.workflow_id.clone().unwrap_or_default();
        let input = match step.input.as_ref().map(|i| expr::render_value(i, &run.context)).transpose() {
            Ok(input) => input.unwrap_or(json!({})),
            Err(e) => return Outcome::failed(json!({"workflow_id": target}), StepError::permanent(format!("input: {e}"))),
        };
        let shown = json!({"workflow_id": target, "input": input});
        let workflow = match model::get(self.store.store(), &target).await {
            Ok(Some(w)) if w.enabled => w,
            Ok(_) => return Outcome::failed(shown, StepError::permanent(format!("workflow {target} does not exist or is disabled"))),
            Err(e) => return Outcome::failed(shown, StepError::transient(e.to_string())),
        };
        let mut chain = run.chain.clone();
        chain.push(run.workflow_id.clone());
        if let Some(refused) = loop_guard(&workflow.id, run.depth + 1, &chain) {
            return Outcome::failed(shown, StepError::permanent(refused));
        }
        let version = match model::version(self.store.store(), &workflow.id, workflow.version).await {
            Ok(Some(v)) => v,
            Ok(None) => return Outcome::failed(shown, StepError::permanent("the workflow has no current version")),
            Err(e) => return Outcome::failed(shown, StepError::transient(e.to_string())),
        };
        if mode == Mode::Dry {
            return Outcome::done(shown, json!({"dry_run": true, "would_start": workflow.id}));
        }
        // The child's id is fixed by this attempt, so a redelivery makes no second run.
        let id = derived_id(&format!("{}/{}/{}", run.id, step.id, run.current_attempt));
        let origin = Origin {
            trigger: "workflow",
            event: run.context.get("event").cloned().unwrap_or(Value::Null),
            input,
            depth: run.depth + 1,
            chain,
            parent: Some(run.id.clone()),
        };
        match start_with_id(&id, &version, origin, self.now(), self.store.table()) {
            Ok((child, writes)) => Outcome { writes, ..Outcome::done(shown, json!({"run_id": child.id})) },
            Err(e) => Outcome::failed(shown, StepError::transient(e.to_string())),
        }
    }

    /// Walk a definition with `context` without side effects: every
    /// condition evaluated, every template rendered, every action checked
    /// against the owner's permissions and the data; nothing sent or
    /// written. The planned trace, step by step.
    pub async fn dry_run(&self, workflow: &Workflow, version: &Version, event: Value, input: Value) -> Result<DryRun> {
        let now = self.now();
        let (mut run, _) = start(version, Origin::new("dry_run", event, input), now, self.store.table())?;
        run.status = RunStatus::Running;
        let definition = &version.definition;
        let mut trace = Vec::new();
        let mut current = definition.steps.first().cloned();
        while let Some(step) = current.take() {
            if trace.len() >= DRY_RUN_MAX_STEPS {
                break;
            }
            let outcome = self.perform(workflow, &run, &step, 1, Mode::Dry).await;
            let next = match &outcome.error {
                Some(_) => step.on_failure.clone().filter(|t| t != crate::definition::END),
                None => definition.next_after(&step, outcome.branch),
            };
            if let Some(map) = run.context.get_mut("steps").and_then(Value::as_object_mut) {
                map.insert(step.id.clone(), json!({"status": outcome.status, "output": outcome.output, "attempt": 1}));
            }
            if let Some(vars) = run.context.get_mut("vars").and_then(Value::as_object_mut) {
                vars.extend(outcome.vars.clone());
            }
            let failed = outcome.error.is_some() && next.is_none();
            trace.push(DryRunStep {
                step_id: step.id.clone(),
                step_type: step.step_type.as_str().into(),
                status: outcome.status,
                input: outcome.input,
                output: outcome.output,
                error: outcome.error.map(|e| e.message),
                waits_until: outcome.next_due.map(timestamp),
                next: next.clone(),
            });
            if failed {
                return Ok(DryRun { status: RunStatus::Failed, steps: trace, context: run.context });
            }
            current = next.and_then(|id| definition.step(&id).cloned());
        }
        Ok(DryRun { status: RunStatus::Succeeded, steps: trace, context: run.context })
    }
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = WorkflowDryRun)]
pub struct DryRun {
    /// How the run would end: `succeeded` or `failed`.
    pub status: RunStatus,
    pub steps: Vec<DryRunStep>,
    /// The context at the end (what each step would have produced).
    #[schema(value_type = Object)]
    pub context: Value,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = WorkflowDryRunStep)]
pub struct DryRunStep {
    pub step_id: String,
    #[serde(rename = "type")]
    pub step_type: String,
    pub status: StepStatus,
    #[schema(value_type = Object)]
    pub input: Value,
    #[schema(value_type = Object)]
    pub output: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A wait: when the next step would run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waits_until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Who a workflow's action is recorded as: the workflow, for its owner,
/// with the run as the request (the loop guard follows it).
pub fn workflow_actor(workflow: &Workflow, run: &Run) -> Actor {
    Actor {
        id: workflow.owner_id.clone(),
        kind: "workflow".into(),
        user_agent: Some(format!("keel-workflow/{}", workflow.id)),
        request_id: Some(run.id.clone()),
        ..Actor::default()
    }
}

/// A domain error as a step's error: each field named (under `prefix`).
fn field_errors(prefix: &str, error: &Error) -> String {
    match error {
        Error::Validation(errors) => errors.iter().map(|e| format!("{prefix}{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "),
        other => other.to_string(),
    }
}

/// A `wait_for_event` step's inputs, as its log shows them.
fn wait_input(step: &Step) -> Value {
    json!({"event": step.event, "filter": step.filter, "timeout": step.timeout})
}

/// A `wait_for_event` step whose time ran out: on to `on_timeout`, or failed.
fn timed_out(step: &Step) -> Outcome {
    let input = wait_input(step);
    match &step.on_timeout {
        Some(target) => Outcome { goto: Some(target.clone()), ..Outcome::done(input, json!({"timed_out": true})) },
        None => Outcome::failed(
            input,
            StepError::permanent(format!("timed out: no {} within {}", step.event.as_deref().unwrap_or_default(), step.timeout.as_deref().unwrap_or_default())),
        ),
    }
}

fn step_skipped(step: &Step, context: &Value) -> bool {
    step.condition.as_ref().is_some_and(|c| expr::evaluate(c, context) == Ok(false))
}

/// A UUID derived from `seed` (the same seed, the same id).
pub fn derived_id(seed: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(seed.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string()
}

fn jittered(delay: chrono::Duration, jitter: f64) -> chrono::Duration {
    if jitter <= 0.0 {
        return delay;
    }
    let cut = rand::random::<f64>() * jitter;
    chrono::Duration::milliseconds((delay.num_milliseconds() as f64 * (1.0 - cut)) as i64)
}

/// A URL as the execution log shows it: scheme and host only (webhook
/// URLs often carry their secret in the path, as Slack's do).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => format!("{}://{}/…", parsed.scheme(), parsed.host_str().unwrap_or("")),
        Err(_) => "(not a URL)".into(),
    }
}

fn truncated(output: Value) -> Value {
    let text = output.to_string();
    if text.len() <= OUTPUT_MAX_BYTES {
        return output;
    }
    json!({"truncated": true, "bytes": text.len(), "start": text.chars().take(1_000).collect::<String>()})
}
