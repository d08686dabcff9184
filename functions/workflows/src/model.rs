//! How workflows, their versions, runs and step messages are kept in the
//! table (docs/workflows.md, "Items").
//!
//! - `WORKFLOW#<id> / META`: the workflow (name, owner, current version,
//!   trigger); gsi1 `WORKFLOWS` lists them; an event trigger is indexed on
//!   gsi2 `WFTRIGGER#<event>`, a schedule on gsi3 `WFSCHEDULE` by its next
//!   time.
//! - `WORKFLOW#<id> / VERSION#<000001>`: one immutable definition.
//! - `WFRUN#<run id> / META`: a run, pinned to its version, with its
//!   context and every step execution; gsi1 `WFRUNS#<workflow id>`.
//! - `WFRUN#<run id> / MSG#<step>#<attempt>`: a step to execute (the
//!   outbox: committed with the transition that asks for it, sent to the
//!   jobs queue from the stream); gsi2 `WFDUE` by its time while pending.
//!   A `wait_for_event` step's timeout is one too (`MSG#<step>#<attempt>#timeout`).
//! - `WFRUN#<run id> / WAIT#<step>#<attempt>`: a run waiting for an event;
//!   gsi2 `WFTRIGGER#<event>` (beside the workflows that event starts, so
//!   the dispatcher finds both in one query).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::platform::error::{Error, Result};
use shared::store::{Item, QuerySpec, Store, Write, from_item, n, s, timestamp, to_item};
use utoipa::ToSchema;

use crate::definition::{Definition, Trigger};

pub const LIST_PK: &str = "WORKFLOWS";
pub const SCHEDULE_PK: &str = "WFSCHEDULE";
pub const DUE_PK: &str = "WFDUE";
/// The `type` of a step message item (the dispatcher sends these).
pub const STEP_MESSAGE_TYPE: &str = "workflow_step";
/// The `kind` of a step's SQS message on the jobs queue.
pub const STEP_KIND: &str = "workflow_step";
/// SQS holds a message back at most this long; longer waits are kept in
/// the table and sent by the tick when they are due.
pub const SQS_MAX_DELAY_SECONDS: i64 = 900;

pub fn workflow_pk(id: &str) -> String {
    format!("WORKFLOW#{id}")
}

pub fn run_pk(id: &str) -> String {
    format!("WFRUN#{id}")
}

pub fn version_sk(version: u32) -> String {
    format!("VERSION#{version:06}")
}

pub fn trigger_pk(event: &str) -> String {
    format!("WFTRIGGER#{event}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Workflow {
    pub id: String,
    pub name: String,
    /// The user whose permissions the workflow's actions use.
    pub owner_id: String,
    /// The version new runs use.
    pub version: u32,
    pub enabled: bool,
    /// `event`, `schedule`, `webhook` or `manual`.
    pub trigger: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// A schedule's next time (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<String>,
    /// A webhook trigger's signing secret, sealed with the data key.
    #[serde(default, skip_serializing)]
    #[schema(ignore)]
    pub webhook_secret: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Deleted (`DELETE /api/v1/workflows/{id}`): disabled, out of the
    /// list, answered as missing; the record, versions and runs are kept
    /// for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub deleted_at: Option<String>,
    /// Bumped by every change of this record (optimistic concurrency).
    pub rev: u64,
}

impl Workflow {
    pub fn to_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        if let Some(secret) = &self.webhook_secret {
            item.insert("webhook_secret".into(), s(secret.clone()));
        }
        item.insert("pk".into(), s(workflow_pk(&self.id)));
        item.insert("sk".into(), s("META"));
        item.insert("type".into(), s("workflow"));
        if self.deleted_at.is_none() {
            item.insert("gsi1pk".into(), s(LIST_PK));
            item.insert("gsi1sk".into(), s(format!("{}#{}", self.created_at, self.id)));
        }
        if self.enabled {
            if let Some(event) = &self.event {
                item.insert("gsi2pk".into(), s(trigger_pk(&event_key(event))));
                item.insert("gsi2sk".into(), s(self.id.clone()));
            }
            if let Some(next) = &self.next_run_at {
                item.insert("gsi3pk".into(), s(SCHEDULE_PK));
                item.insert("gsi3sk".into(), s(format!("{next}#{}", self.id)));
            }
        }
        Ok(item)
    }

    /// Replace the record if its `rev` is still `expected` (its `version`
    /// attribute is the definition's version, not the record's).
    pub fn save_write(&self, table: &str, expected: u64) -> Result<Write> {
        let condition = shared::store::Condition::new("#rev = :rev").name("#rev", "rev").value(":rev", n(expected));
        let conflict = Error::Conflict(format!("workflow {} was changed by someone else; reload and retry", self.id));
        Write::put_if(table, self.to_item()?, &condition, Some(conflict))
    }

    pub fn from_item(mut item: Item) -> Result<Workflow> {
        let secret = item.remove("webhook_secret").and_then(|v| v.as_s().ok().cloned());
        let mut workflow: Workflow = from_item(item)?;
        workflow.webhook_secret = secret;
        Ok(workflow)
    }
}

/// The key an event trigger is indexed and matched by: the audit action
/// with its verb's tense worn off, so `user.created` (as a definition may
/// say it) and `user.create` (as the audit log records it) meet, and so do
/// `chart.flagged` and `chart.flag`, `security_event.detected` and
/// `security_event.detect`.
pub fn event_key(event: &str) -> String {
    let Some((noun, verb)) = event.split_once('.') else { return event.to_string() };
    let mut stem = verb.strip_suffix("ed").unwrap_or(verb);
    stem = stem.strip_suffix('e').unwrap_or(stem);
    let mut chars: Vec<char> = stem.chars().collect();
    let n = chars.len();
    if n > 2 && chars[n - 1] == chars[n - 2] && chars[n - 1].is_ascii_alphabetic() && !"aeiou".contains(chars[n - 1]) {
        chars.pop();
    }
    format!("{noun}.{}", chars.into_iter().collect::<String>())
}

pub async fn get(store: &Store, id: &str) -> Result<Option<Workflow>> {
    store.get_item(&workflow_pk(id), "META").await?.map(Workflow::from_item).transpose()
}

pub async fn load(store: &Store, id: &str) -> Result<Workflow> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(Error::NotFound(format!("no workflow {id}")));
    }
    get(store, id).await?.filter(|w| w.deleted_at.is_none()).ok_or_else(|| Error::NotFound(format!("no workflow {id}")))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = WorkflowVersion)]
pub struct Version {
    pub workflow_id: String,
    pub version: u32,
    pub definition: Definition,
    pub created_at: String,
    pub created_by: String,
    /// Set when this version was made by rolling back to an older one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_from: Option<u32>,
}

impl Version {
    pub fn to_item(&self) -> Result<Item> {
        let definition = serde_json::to_string(&self.definition).map_err(|e| Error::internal(e.to_string()))?;
        let mut item = Item::from([
            ("pk".to_string(), s(workflow_pk(&self.workflow_id))),
            ("sk".to_string(), s(version_sk(self.version))),
            ("type".to_string(), s("workflow_version")),
            ("workflow_id".to_string(), s(self.workflow_id.clone())),
            ("version".to_string(), n(self.version)),
            ("definition".to_string(), s(definition)),
            ("created_at".to_string(), s(self.created_at.clone())),
            ("created_by".to_string(), s(self.created_by.clone())),
        ]);
        if let Some(from) = self.rolled_back_from {
            item.insert("rolled_back_from".into(), n(from));
        }
        Ok(item)
    }

    pub fn from_item(item: &Item) -> Result<Version> {
        let text =
            |name: &str| shared::store::attr_s(item, name).map(str::to_string).ok_or_else(|| Error::internal(format!("workflow version without {name}")));
        let number = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<u32>().ok());
        Ok(Version {
            workflow_id: text("workflow_id")?,
            version: number("version").ok_or_else(|| Error::internal("workflow version without a number"))?,
            definition: serde_json::from_str(&text("definition")?).map_err(|e| Error::internal(format!("stored definition: {e}")))?,
            created_at: text("created_at")?,
            created_by: text("created_by")?,
            rolled_back_from: number("rolled_back_from"),
        })
    }

    pub fn create_write(&self, table: &str) -> Result<Write> {
        Write::put_new(table, self.to_item()?, Error::Conflict(format!("version {} of workflow {} exists already", self.version, self.workflow_id)))
    }
}

pub async fn version(store: &Store, workflow_id: &str, version: u32) -> Result<Option<Version>> {
    store.get_item(&workflow_pk(workflow_id), &version_sk(version)).await?.as_ref().map(Version::from_item).transpose()
}

pub async fn versions(store: &Store, workflow_id: &str) -> Result<Vec<Version>> {
    let spec = QuerySpec {
        key_condition: "pk = :pk AND begins_with(sk, :v)",
        values: vec![(":pk", s(workflow_pk(workflow_id))), (":v", s("VERSION#"))],
        forward: true,
        ..Default::default()
    };
    store.query_all(&spec).await?.iter().map(Version::from_item).collect()
}

/// The trigger fields a workflow record keeps of its definition.
pub fn apply_trigger(workflow: &mut Workflow, definition: &Definition, now: DateTime<Utc>) {
    workflow.trigger = definition.trigger.kind().to_string();
    workflow.event = match &definition.trigger {
        Trigger::Event { event, .. } => Some(event.clone()),
        _ => None,
    };
    workflow.next_run_at = match &definition.trigger {
        Trigger::Schedule { cron, timezone } => crate::tick::next_time(cron, timezone.as_deref(), now).map(timestamp),
        _ => None,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    /// Waiting for a step's time (a wait step, or a retry's delay).
    Waiting,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn is_final(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Succeeded,
    Failed,
    /// Its guard condition was false.
    Skipped,
}

/// One execution (attempt) of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = WorkflowStepExecution)]
pub struct StepExecution {
    pub step_id: String,
    #[serde(rename = "type")]
    pub step_type: String,
    pub attempt: u32,
    pub status: StepStatus,
    /// When it was due, and when it ran.
    pub due_at: String,
    pub started_at: String,
    pub duration_ms: u64,
    /// The step's inputs as rendered (secrets redacted).
    #[schema(value_type = Object)]
    pub input: Value,
    #[schema(value_type = Object)]
    pub output: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a failed attempt that will be retried: when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
    /// The step that follows (none: the run ended here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = WorkflowRun)]
pub struct Run {
    pub id: String,
    pub workflow_id: String,
    /// The version the run started on (it keeps it to the end).
    pub version: u32,
    pub status: RunStatus,
    /// `event`, `schedule`, `webhook`, `manual`, `workflow` (started by
    /// another run) or `retry` (re-run from a failed step).
    pub trigger: String,
    /// The context templates and conditions read.
    #[schema(value_type = Object)]
    pub context: Value,
    pub steps: Vec<StepExecution>,
    /// The step to execute next and its attempt (none when finished).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    #[serde(default)]
    pub current_attempt: u32,
    /// When the current step is due (waiting for an event: its timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
    /// The event a `wait_for_event` step is waiting for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// How many runs led to this one (the loop guard), and their workflows.
    pub depth: u32,
    pub chain: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    /// The run this one re-runs or was started by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<String>,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub updated_at: String,
    pub rev: u64,
}

impl Run {
    pub fn to_item(&self) -> Result<Item> {
        let json = serde_json::to_string(self).map_err(|e| Error::internal(e.to_string()))?;
        let mut item = Item::from([
            ("pk".to_string(), s(run_pk(&self.id))),
            ("sk".to_string(), s("META")),
            ("type".to_string(), s("workflow_run")),
            ("workflow_id".to_string(), s(self.workflow_id.clone())),
            ("status".to_string(), s(self.status.as_str())),
            ("run".to_string(), s(json)),
            ("version".to_string(), n(self.rev)),
            ("gsi1pk".to_string(), s(format!("WFRUNS#{}", self.workflow_id))),
            ("gsi1sk".to_string(), s(format!("{}#{}", self.started_at, self.id))),
        ]);
        if self.status.is_final() {
            // Runs are kept 90 days after they end.
            item.insert("ttl".into(), n(shared::store::ttl_after(90 * 86_400)));
        }
        Ok(item)
    }

    pub fn from_item(item: &Item) -> Result<Run> {
        let text = shared::store::attr_s(item, "run").ok_or_else(|| Error::internal("workflow run without its record"))?;
        serde_json::from_str(text).map_err(|e| Error::internal(format!("stored run: {e}")))
    }

    /// The write that replaces this run if nobody changed it since `rev`.
    pub fn save_write(&self, table: &str) -> Result<Write> {
        Write::put_versioned(table, self.to_item()?, self.rev - 1)
    }

    pub fn create_write(&self, table: &str) -> Result<Write> {
        Write::put_new(table, self.to_item()?, Error::Conflict(format!("run {} exists already", self.id)))
    }

    /// The message its current step waits on: the step's own, or (waiting
    /// for an event) its timeout.
    pub fn pending_message(&self) -> Option<StepMessage> {
        let (step, due) = (self.current_step.as_deref()?, shared::platform::time::parse(self.due_at.as_deref()?)?);
        Some(match self.waiting_for {
            Some(_) => StepMessage::timeout(&self.id, step, self.current_attempt, due),
            None => StepMessage::new(&self.id, step, self.current_attempt, due),
        })
    }
}

pub async fn run(store: &Store, id: &str) -> Result<Option<Run>> {
    store.get_item(&run_pk(id), "META").await?.as_ref().map(Run::from_item).transpose()
}

pub async fn runs_of(store: &Store, workflow_id: &str, limit: i32) -> Result<Vec<Run>> {
    let spec =
        QuerySpec { index: Some("gsi1"), key_condition: "gsi1pk = :pk", values: vec![(":pk", s(format!("WFRUNS#{workflow_id}")))], ..Default::default() };
    let (items, _) = store.query_page(&spec, None, limit).await?;
    items.iter().map(Run::from_item).collect()
}

/// A step to execute: the item the dispatcher sends (and the tick, when
/// it is due later than SQS can hold it), and the SQS message body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMessage {
    pub kind: String,
    pub run_id: String,
    pub step_id: String,
    pub attempt: u32,
    pub not_before: String,
    /// `timeout`: a `wait_for_event` step's time ran out (absent: execute
    /// the step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

pub const TIMEOUT_PHASE: &str = "timeout";

impl StepMessage {
    pub fn new(run_id: &str, step_id: &str, attempt: u32, not_before: DateTime<Utc>) -> StepMessage {
        StepMessage { kind: STEP_KIND.into(), run_id: run_id.into(), step_id: step_id.into(), attempt, not_before: timestamp(not_before), phase: None }
    }

    /// A `wait_for_event` step's timeout. Whichever comes first, the event
    /// or this, marks it done; the other then changes nothing.
    pub fn timeout(run_id: &str, step_id: &str, attempt: u32, at: DateTime<Utc>) -> StepMessage {
        StepMessage { phase: Some(TIMEOUT_PHASE.into()), ..StepMessage::new(run_id, step_id, attempt, at) }
    }

    pub fn is_timeout(&self) -> bool {
        self.phase.as_deref() == Some(TIMEOUT_PHASE)
    }

    pub fn sk(&self) -> String {
        match &self.phase {
            Some(phase) => format!("MSG#{}#{:03}#{phase}", self.step_id, self.attempt),
            None => format!("MSG#{}#{:03}", self.step_id, self.attempt),
        }
    }

    /// The pending item; `deferred` when SQS cannot hold it back that long.
    pub fn create_write(&self, table: &str, now: DateTime<Utc>) -> Result<Write> {
        let due = not_before(&self.not_before)?;
        let deferred = (due - now).num_seconds() > SQS_MAX_DELAY_SECONDS;
        let item = Item::from([
            ("pk".to_string(), s(run_pk(&self.run_id))),
            ("sk".to_string(), s(self.sk())),
            ("type".to_string(), s(STEP_MESSAGE_TYPE)),
            ("message".to_string(), s(serde_json::to_string(self).map_err(|e| Error::internal(e.to_string()))?)),
            ("deferred".to_string(), aws_sdk_dynamodb::types::AttributeValue::Bool(deferred)),
            ("gsi2pk".to_string(), s(DUE_PK)),
            ("gsi2sk".to_string(), s(format!("{}#{}#{}", self.not_before, self.run_id, self.sk()))),
            ("ttl".to_string(), n(shared::store::ttl_after(400 * 86_400))),
        ]);
        Write::put_new(table, item, Error::Conflict(format!("step {} attempt {} of run {} exists already", self.step_id, self.attempt, self.run_id)))
    }

    /// Mark it executed (off the due index), if it still is pending.
    pub fn done_write(&self, table: &str) -> Result<Write> {
        let item = Item::from([
            ("pk".to_string(), s(run_pk(&self.run_id))),
            ("sk".to_string(), s(self.sk())),
            ("type".to_string(), s("workflow_step_done")),
            ("message".to_string(), s(serde_json::to_string(self).map_err(|e| Error::internal(e.to_string()))?)),
            ("ttl".to_string(), n(shared::store::ttl_after(30 * 86_400))),
        ]);
        Write::put_if(
            table,
            item,
            &shared::store::Condition::new("#t = :pending").name("#t", "type").value(":pending", s(STEP_MESSAGE_TYPE)),
            Some(Error::Conflict("the step was executed already".into())),
        )
    }

    pub fn body(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::internal(e.to_string()))
    }
}

/// One more run of `workflow_id` in this minute's bucket
/// (`WORKFLOW#<id> / RATE#<minute>`), only while under `limit`: written
/// with the run, so a run over the limit is not started. Over it, the
/// write fails with 429.
pub fn rate_write(table: &str, workflow_id: &str, now: DateTime<Utc>, limit: u32) -> Result<Write> {
    let update = shared::store::UpdateSpec::new("ADD #count :one SET #ttl = :ttl")
        .condition("attribute_not_exists(#count) OR #count < :limit")
        .name("#count", "count")
        .name("#ttl", "ttl")
        .value(":one", n(1))
        .value(":limit", n(limit))
        .value(":ttl", n(now.timestamp() + 3_600));
    let retry_after = 60 - now.timestamp().rem_euclid(60) as u64;
    Write::update(table, &workflow_pk(workflow_id), &rate_sk(now), &update, Some(Error::TooManyRequests { retry_after_secs: retry_after }))
}

pub fn rate_sk(now: DateTime<Utc>) -> String {
    format!("RATE#{}", now.format("%Y%m%dT%H%M"))
}

/// Count a refused run in this minute's bucket; whether it is the first
/// (that one is recorded as a failed run, the rest only counted).
pub async fn first_refusal(store: &Store, workflow_id: &str, now: DateTime<Utc>) -> Result<bool> {
    let update = shared::store::UpdateSpec::new("ADD refused :one").value(":one", n(1));
    let item = store.update(&workflow_pk(workflow_id), &rate_sk(now), &update).await?;
    Ok(item.as_ref().and_then(|i| i.get("refused")).and_then(|v| v.as_n().ok()).is_some_and(|v| v == "1"))
}

/// A run waiting for an event (`wait_for_event`), found by the dispatcher
/// with the workflows the same event starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiter {
    pub run_id: String,
    pub workflow_id: String,
    pub step_id: String,
    pub attempt: u32,
    /// The audit action waited for, as the step names it.
    pub event: String,
    /// Since when (events recorded before do not count) and until when.
    pub since: String,
    pub deadline: String,
}

pub const WAITER_TYPE: &str = "workflow_wait";

impl Waiter {
    pub fn sk(step_id: &str, attempt: u32) -> String {
        format!("WAIT#{step_id}#{attempt:03}")
    }

    pub fn put_write(&self, table: &str) -> Result<Write> {
        let deadline = not_before(&self.deadline)?;
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(run_pk(&self.run_id)));
        item.insert("sk".into(), s(Waiter::sk(&self.step_id, self.attempt)));
        item.insert("type".into(), s(WAITER_TYPE));
        item.insert("gsi2pk".into(), s(trigger_pk(&event_key(&self.event))));
        // After every workflow id (UUIDs sort before `~`).
        item.insert("gsi2sk".into(), s(format!("~WAIT#{}#{}", self.run_id, self.step_id)));
        item.insert("ttl".into(), n(deadline.timestamp() + 7 * 86_400));
        Write::put(table, item)
    }

    pub fn delete_write(table: &str, run_id: &str, step_id: &str, attempt: u32) -> Result<Write> {
        Write::delete(table, &run_pk(run_id), &Waiter::sk(step_id, attempt))
    }
}

/// What an event's index entry is: a workflow it starts, or a run waiting for it.
pub enum Listener {
    Workflow(Workflow),
    Waiter(Waiter),
}

pub fn listener(item: Item) -> Option<Listener> {
    match shared::store::attr_s(&item, "type") {
        Some(WAITER_TYPE) => from_item(item).ok().map(Listener::Waiter),
        Some("workflow") => Workflow::from_item(item).ok().map(Listener::Workflow),
        _ => None,
    }
}

/// A step message item's message, if the item is a pending one.
pub fn pending_message(image: &Value) -> Option<(StepMessage, bool)> {
    if image.get("type").and_then(Value::as_str) != Some(STEP_MESSAGE_TYPE) {
        return None;
    }
    let message: StepMessage = serde_json::from_str(image.get("message")?.as_str()?).ok()?;
    let deferred = image.get("deferred").and_then(Value::as_bool).unwrap_or(false);
    Some((message, deferred))
}

/// A stored time of a step message.
pub fn not_before(value: &str) -> Result<DateTime<Utc>> {
    shared::platform::time::parse(value).ok_or_else(|| Error::internal(format!("a step message's time {value:?} is not RFC 3339")))
}

pub async fn pending_item(store: &Store, message: &StepMessage) -> Result<bool> {
    Ok(store.get_item(&run_pk(&message.run_id), &message.sk()).await?.is_some_and(|item| shared::store::attr_s(&item, "type") == Some(STEP_MESSAGE_TYPE)))
}

#[cfg(test)]
mod tests {
    use super::event_key;

    #[test]
    fn past_tense_events_meet_audit_actions() {
        for (given, action) in [
            ("user.created", "user.create"),
            ("chart.flagged", "chart.flag"),
            ("order.refunded", "order.refund"),
            ("user.suspended", "user.suspend"),
            ("user.reactivated", "user.reactivate"),
            ("security_event.detected", "security_event.detected"),
            ("security_event.detect", "security_event.detected"),
            ("user.updated", "user.update"),
        ] {
            assert_eq!(event_key(given), event_key(action), "{given}");
        }
        assert_ne!(event_key("user.create"), event_key("user.update"));
        assert_ne!(event_key("user.create"), event_key("chart.create"));
    }
}
