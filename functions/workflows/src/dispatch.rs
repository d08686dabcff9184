//! The workflows dispatcher: its own consumer of the table's stream (as
//! the webhook dispatcher and the search indexer are).
//!
//! - A new audit entry (committed with the change it records) starts a run
//!   of every enabled workflow whose event trigger names its action and
//!   whose filter it passes. The run's id is derived from the entry's and
//!   the workflow's, so a stream record read twice starts one run.
//! - The same entry ends the `wait_for_event` steps of runs waiting for it
//!   (found in the same index query as the workflows it starts), when it
//!   passes the step's filter and is not the run's own doing.
//! - A new step message (committed with the transition that asks for it)
//!   is sent to the jobs queue, held back until its time when SQS can hold
//!   it (15 minutes); later ones are sent by the tick.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use futures::StreamExt;
use serde_json::{Value, json};
use shared::audit::{AuditEntry, Outcome};
use shared::domain::masking;
use shared::identity::rbac::{Permission, PermissionSet};
use shared::identity::users;
use shared::platform::error::{Error, Result};
use shared::store::{QuerySpec, s};
use tokio::sync::OnceCell;

use crate::definition::Trigger;
use crate::engine::Engine;
use crate::expr;
use crate::model::{self, Version, Workflow};

/// Records of a batch applied at once, at most. Bounded so a batch of
/// 100 does not send 100 requests to the table together.
const CONCURRENCY: usize = 8;

#[derive(Clone)]
pub struct Dispatcher {
    pub engine: Engine,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
}

/// Values read once per key, shared by a batch's records applied at once.
struct Memo<V>(Mutex<HashMap<String, Arc<OnceCell<V>>>>);

impl<V: Clone> Memo<V> {
    fn new() -> Memo<V> {
        Memo(Mutex::new(HashMap::new()))
    }

    async fn get<F: Future<Output = Result<V>>>(&self, key: String, load: impl FnOnce() -> F) -> Result<V> {
        // A poisoned lock only means another record panicked while inserting.
        let cell = self.0.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default().clone();
        cell.get_or_try_init(load).await.cloned()
    }
}

/// What one batch reads once instead of once per record: each action's
/// listeners, each workflow owner's permissions, each version, each
/// entity's data as a set of permissions sees it. Made anew
/// for every batch, so a workflow or a waiter committed before a batch's
/// records is seen (its stream record came first, so it was committed
/// before the batch was read), and permissions are as fresh as the batch.
struct Batch {
    listeners: Memo<(Vec<Workflow>, Vec<model::Waiter>)>,
    held: Memo<PermissionSet>,
    versions: Memo<Option<Version>>,
    /// An entity's `data`, per target and what its reader may see of it
    /// (owners holding the same relevant permissions share one read).
    data: Memo<Value>,
}

/// An audit entry that arrived, with the waits it may end.
struct Arrived {
    entry: AuditEntry,
    waiters: Vec<model::Waiter>,
}

impl Dispatcher {
    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        let batch = Batch { listeners: Memo::new(), held: Memo::new(), versions: Memo::new(), data: Memo::new() };
        let image = |item: &serde_dynamo::Item| -> Option<Value> { if item.is_empty() { None } else { serde_dynamo::from_item(item.clone()).ok() } };
        let images: Vec<(Option<Value>, Option<Value>)> = event.records.iter().map(|r| (image(&r.change.old_image), image(&r.change.new_image))).collect();
        // Runs are started and messages sent a few records at a time: each
        // is idempotent (a run's id is derived from its entry; a step
        // message executes once however often it is sent) and none needs
        // another's effect. Waits are ended after, in stream order: the
        // first matching event ends a wait. (The futures are collected
        // first: a stream mapping through a closure is not `Send`, a rustc
        // limitation with higher-ranked lifetimes, and the reader needs it.)
        let applying: Vec<_> = images.iter().map(|(old, new)| self.apply(old.as_ref(), new.as_ref(), &batch)).collect();
        let applied: Vec<Result<Option<Arrived>>> = futures::stream::iter(applying).buffered(CONCURRENCY).collect().await;
        let mut failed = applied.iter().enumerate().find_map(|(i, r)| r.as_ref().err().map(|e| (i, e.to_string())));
        let resumable = failed.as_ref().map_or(applied.len(), |(i, _)| *i);
        'records: for (i, arrived) in applied.iter().enumerate().take(resumable) {
            let Ok(Some(arrived)) = arrived else { continue };
            for waiter in &arrived.waiters {
                if let Err(e) = self.resume(waiter, &arrived.entry, &batch).await {
                    failed = Some((i, e.to_string()));
                    break 'records;
                }
            }
        }
        let mut response = DynamoDbEventResponse::default();
        // The first failed record and all after it are read again (Lambda's
        // retry from the reported sequence number); those after it that
        // were applied meanwhile are idempotent.
        if let Some((i, error)) = failed {
            tracing::warn!(error = %error, "workflow dispatch failed; the stream record will be retried");
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = event.records[i].change.sequence_number.clone();
            response.batch_item_failures.push(failure);
        }
        response
    }

    /// One changed item: an audit entry may start runs (and is returned
    /// with the waits it may end); a step message is sent.
    async fn apply(&self, old: Option<&Value>, new: Option<&Value>, batch: &Batch) -> Result<Option<Arrived>> {
        let (None, Some(new)) = (old, new) else { return Ok(None) };
        if let Some((message, deferred)) = model::pending_message(new) {
            if !deferred {
                crate::tick::send(&self.sqs, &self.queue_url, &message, self.engine.clock.now()).await?;
            }
            return Ok(None);
        }
        if new.get("type").and_then(Value::as_str) != Some("audit") || new.get("outcome").and_then(Value::as_str) != Some("success") {
            return Ok(None);
        }
        let Some(action) = new.get("action").and_then(Value::as_str) else { return Ok(None) };
        let (workflows, waiters) = batch.listeners.get(action.to_string(), || self.listeners(action)).await?;
        if workflows.is_empty() && waiters.is_empty() {
            return Ok(None);
        }
        let (Some(pk), Some(sk)) = (new.get("pk").and_then(Value::as_str), new.get("sk").and_then(Value::as_str)) else { return Ok(None) };
        // The entry as readers see it (people by id, not pseudonym).
        let Some(item) = self.engine.store.get_item(pk, sk).await? else { return Ok(None) };
        let Some(entry) = self.engine.store.reveal_audit(vec![item]).await?.pop() else { return Ok(None) };
        if entry.outcome != Outcome::Success {
            return Ok(None);
        }
        for workflow in &workflows {
            self.start_for(workflow, &entry, batch).await?;
        }
        Ok(Some(Arrived { entry, waiters }))
    }

    /// The enabled workflows an audit action starts and the runs waiting for it.
    async fn listeners(&self, action: &str) -> Result<(Vec<Workflow>, Vec<model::Waiter>)> {
        let spec = QuerySpec {
            index: Some("gsi2"),
            key_condition: "gsi2pk = :pk",
            values: vec![(":pk", s(model::trigger_pk(&model::event_key(action))))],
            ..Default::default()
        };
        let (mut workflows, mut waiters) = (Vec::new(), Vec::new());
        for item in self.engine.store.query_all(&spec).await? {
            match model::listener(item) {
                Some(model::Listener::Workflow(w)) if w.enabled => workflows.push(w),
                Some(model::Listener::Waiter(w)) => waiters.push(w),
                _ => {}
            }
        }
        Ok((workflows, waiters))
    }

    /// End a run's wait with `entry`, unless the entry is older than the
    /// wait or the run's own doing (an action it took before waiting).
    async fn resume(&self, waiter: &model::Waiter, entry: &AuditEntry, batch: &Batch) -> Result<bool> {
        let since = shared::platform::time::parse(&waiter.since);
        let at = shared::platform::time::parse(&entry.ts);
        if matches!((at, since), (Some(at), Some(since)) if at < since) {
            return Ok(false);
        }
        if entry.actor.kind == "workflow" && entry.actor.request_id.as_deref() == Some(waiter.run_id.as_str()) {
            return Ok(false);
        }
        let Some(workflow) = model::get(self.engine.store.store(), &waiter.workflow_id).await? else { return Ok(false) };
        let received = self.event_of(&workflow, entry, batch).await?;
        self.engine.resume(waiter, &workflow, received).await
    }

    /// Start `workflow`'s run for `entry` unless its filter says no or the
    /// loop guard stops it (then a failed run says why); whether a run was
    /// recorded.
    async fn start_for(&self, workflow: &Workflow, entry: &AuditEntry, batch: &Batch) -> Result<bool> {
        let store = self.engine.store.store();
        // A version never changes once written.
        let key = format!("{}/{}", workflow.id, workflow.version);
        let Some(version) = batch.versions.get(key, || model::version(store, &workflow.id, workflow.version)).await? else { return Ok(false) };
        let event = self.event_of(workflow, entry, batch).await?;
        if let Trigger::Event { filter: Some(filter), .. } = &version.definition.trigger {
            let context = json!({"event": event, "input": {}, "steps": {}, "vars": {}, "run": {}});
            match expr::evaluate(filter, &context) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) => {
                    tracing::warn!(workflow_id = %workflow.id, error = %e, "a workflow's trigger filter failed; no run");
                    return Ok(false);
                }
            }
        }
        // Started by a workflow's own action: the chain goes on from its run.
        let (depth, chain, parent) = match (entry.actor.kind.as_str(), entry.actor.request_id.as_deref()) {
            ("workflow", Some(run_id)) => match model::run(store, run_id).await? {
                Some(parent) => {
                    let mut chain = parent.chain.clone();
                    chain.push(parent.workflow_id.clone());
                    (parent.depth + 1, chain, Some(parent.id))
                }
                None => (0, Vec::new(), None),
            },
            _ => (0, Vec::new(), None),
        };
        let id = crate::engine::derived_id(&format!("{}/{}", entry.id, workflow.id));
        let now = self.engine.clock.now();
        let origin = crate::engine::Origin { trigger: "event", event, input: json!({}), depth, chain, parent };
        let (run, mut writes) = crate::engine::start_with_id(&id, &version, origin.clone(), now, store.table())?;
        let limit = version.definition.runs_per_minute();
        writes.push(model::rate_write(store.table(), &workflow.id, now, limit)?);
        match store.transact(writes).await {
            Ok(()) => {
                if run.status == model::RunStatus::Failed {
                    tracing::warn!(workflow_id = %workflow.id, run_id = %run.id, error = ?run.error, "workflow run stopped by the loop guard");
                }
                Ok(true)
            }
            Err(Error::TooManyRequests { .. }) => {
                // A flood: the first refusal of the minute is a failed run
                // saying why; the others are counted in the bucket.
                shared::platform::telemetry::emit_metric(&[("Function", "workflows")], &[("RunsRateLimited", 1.0, "Count")]);
                if !model::first_refusal(store, &workflow.id, now).await? {
                    return Ok(false);
                }
                let reason = format!(
                    "rate limit: more than {limit} runs of workflow {} started in one minute; events are not run until the next minute (max_runs_per_minute)",
                    workflow.id
                );
                tracing::warn!(workflow_id = %workflow.id, limit, "workflow runs rate-limited");
                let (_, writes) = crate::engine::refuse_with_id(&id, &version, origin, now, store.table(), reason)?;
                match store.transact(writes).await {
                    Ok(()) => Ok(true),
                    Err(Error::Conflict(why)) => already_started(store, &id, why).await,
                    Err(e) => Err(e),
                }
            }
            Err(Error::Conflict(why)) => already_started(store, &id, why).await,
            Err(e) => Err(e),
        }
    }

    /// The run's `event`: `{type, actor, target, data}`, where `data` is the
    /// entity after the change as the API shows it to the workflow's owner.
    async fn event_of(&self, workflow: &Workflow, entry: &AuditEntry, batch: &Batch) -> Result<Value> {
        let held = batch.held.get(workflow.owner_id.clone(), || held_by(&self.engine, &workflow.owner_id)).await?;
        let sees: String = DATA_PERMISSIONS.iter().map(|p| if held.contains(*p) { '1' } else { '0' }).collect();
        let key = format!("{}#{}#{sees}", entry.target_type, entry.target_id);
        let data = batch.data.get(key, || entity_data_for(&self.engine, held, &entry.target_type, &entry.target_id)).await?;
        Ok(json!({
            "type": entry.action,
            "id": entry.id,
            "at": entry.ts,
            "actor": {"id": entry.actor.id, "kind": entry.actor.kind},
            "target": {"type": entry.target_type, "id": entry.target_id},
            "data": data,
        }))
    }
}

/// A run's start that conflicted: fine if the run exists (this record was
/// read before), else a transaction that lost a race on the minute's rate
/// bucket (records are applied concurrently): an error, so the record is
/// retried, never dropped.
async fn already_started(store: &shared::store::Store, run_id: &str, why: String) -> Result<bool> {
    if model::run(store, run_id).await?.is_some() {
        return Ok(false);
    }
    Err(Error::Conflict(format!("starting run {run_id}: {why}; the record will be retried")))
}

/// The order's customer's orders by status (`{orders, disputed, refunded,
/// …}`), so a workflow can act on repeated chargebacks. Orders are on gsi1
/// under their user.
async fn customer_orders(store: &shared::store::Store, user_id: &str) -> Result<Value> {
    let spec = QuerySpec {
        index: Some("gsi1"),
        key_condition: "gsi1pk = :pk",
        filter: "#type = :order",
        names: vec![("#type", "type")],
        values: vec![(":pk", s(format!("USER#{user_id}"))), (":order", s("order"))],
        ..Default::default()
    };
    let mut counts = serde_json::Map::new();
    let mut total = 0u64;
    for item in store.query_all(&spec).await? {
        total += 1;
        if let Some(status) = shared::store::attr_s(&item, "status") {
            let entry = counts.entry(status.to_string()).or_insert(json!(0));
            *entry = json!(entry.as_u64().unwrap_or(0) + 1);
        }
    }
    counts.insert("orders".into(), json!(total));
    Ok(Value::Object(counts))
}

/// An entity as the API shows it to `owner_id` (personal fields masked
/// without pii:read), or `{id}` for kinds the workflow cannot read.
pub async fn entity_data(engine: &Engine, owner_id: &str, target_type: &str, target_id: &str) -> Result<Value> {
    entity_data_for(engine, held_by(engine, owner_id).await?, target_type, target_id).await
}

/// The permissions `owner_id` holds now (none once they are gone).
async fn held_by(engine: &Engine, owner_id: &str) -> Result<PermissionSet> {
    Ok(match users::get(engine.store.store(), owner_id).await? {
        Some(owner) => engine.roles.fresh_for(&owner.roles).await?.permissions_of(&owner.roles),
        None => PermissionSet::of(&[]),
    })
}

/// The permissions that decide what `entity_data_for` shows.
const DATA_PERMISSIONS: [Permission; 4] = [Permission::UsersRead, Permission::PiiRead, Permission::ChartsRead, Permission::AnalyticsRead];

/// An entity as the API shows it to a holder of `held` (what it shows
/// depends only on `DATA_PERMISSIONS`).
async fn entity_data_for(engine: &Engine, held: PermissionSet, target_type: &str, target_id: &str) -> Result<Value> {
    let store = engine.store.store();
    match target_type {
        "user" if held.contains(Permission::UsersRead) => {
            let Some(user) = users::get(store, target_id).await? else { return Ok(json!({"id": target_id})) };
            let pii = held.contains(Permission::PiiRead);
            let two_factor = shared::identity::two_factor::get(store, &user.id).await?.is_some_and(|r| r.is_active());
            Ok(json!({
                "id": user.id,
                "email": if pii { user.email.clone() } else { masking::email(&user.email) },
                "name": if pii { user.name.clone() } else { masking::name(&user.name) },
                "roles": user.roles,
                "status": user.status,
                "country": user.country,
                "created_at": user.created_at,
                "last_login_at": user.last_login_at,
                "version": user.version,
                "two_factor": two_factor,
            }))
        }
        "chart" if held.contains(Permission::ChartsRead) => {
            let Some(id) = shared::store::ids::ChartId::parse(target_id) else { return Ok(json!({"id": target_id})) };
            match shared::domain::charts::get(store, &id).await? {
                Some(chart) => serde_json::to_value(&chart).map_err(|e| Error::internal(e.to_string())),
                None => Ok(json!({"id": target_id})),
            }
        }
        "order" if held.contains(Permission::AnalyticsRead) => {
            let item = store.get_item(&format!("ORDER#{target_id}"), "META").await?;
            match item.map(shared::store::from_item::<shared::domain::revenue::Order>).transpose()? {
                Some(order) => {
                    let mut data = serde_json::to_value(&order).map_err(|e| Error::internal(e.to_string()))?;
                    data["customer"] = customer_orders(store, &order.user_id).await?;
                    Ok(data)
                }
                None => Ok(json!({"id": target_id})),
            }
        }
        _ => Ok(json!({"id": target_id})),
    }
}
