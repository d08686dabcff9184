//! Bulk operations (`bulk_update`, `bulk_delete`, `bulk_restore` jobs): each
//! `bulk_segment` message carries up to 100 targets. Every item is read,
//! checked, and changed with its own version-checked `Store::commit` and
//! audit entry; an item already as asked is left alone (so a redelivered
//! segment changes nothing twice). The segment's outcomes are stored once
//! (`JOB#id / SEG#n`, conditional) in the same transaction that adds them
//! to the job's progress and counts; the segment that completes the count
//! marks the job succeeded.

use std::time::Duration;

use chrono::Utc;
use shared::audit::AuditEntry;
use shared::domain::charts::{self, Chart};
use shared::domain::data_jobs::{BulkOp, BulkParams, BulkTarget, Dataset, ItemOutcome, ItemResult, SegmentMessage, SegmentPlan, SegmentRecord, segment_sk};
use shared::domain::jobs::{self, Job, JobStatus};
use shared::identity::rbac::PermissionSet;
use shared::identity::roles::{self, Catalog};
use shared::identity::users::{self, User, UserStatus};
use shared::platform::error::{Error, Result};
use shared::store::ids::{ChartId, UserId};
use shared::store::{Transacted, UpdateSpec, Write, n, s, timestamp};

use crate::Worker;

fn ok(id: &str) -> ItemResult {
    ItemResult { id: id.to_string(), outcome: ItemOutcome::Succeeded, reason: None }
}

fn unchanged(id: &str, reason: &str) -> ItemResult {
    ItemResult { id: id.to_string(), outcome: ItemOutcome::Unchanged, reason: Some(reason.to_string()) }
}

fn failed(id: &str, reason: impl Into<String>) -> ItemResult {
    ItemResult { id: id.to_string(), outcome: ItemOutcome::Failed, reason: Some(reason.into()) }
}

/// Whether `deleted_at` is still within the restore window.
fn restorable(deleted_at: Option<&str>, days: u32) -> bool {
    deleted_at
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| Utc::now().signed_duration_since(t) <= chrono::Duration::days(days as i64))
}

struct Context<'a> {
    worker: &'a Worker,
    params: &'a BulkParams,
    catalog: &'a Catalog,
    granter: PermissionSet,
}

impl Context<'_> {
    fn audit(&self, action: &str, target_type: &str, id: &str) -> AuditEntry {
        let entry = AuditEntry::new(&self.params.actor, action, target_type, id);
        match &self.params.reason {
            Some(r) => entry.reason(r.clone()),
            None => entry,
        }
    }

    /// Commit one item's change; a lost race or a failed condition is that
    /// item's failure, anything else fails the segment (it is retried).
    async fn commit(&self, id: &str, writes: Vec<Write>, audit: AuditEntry) -> Result<ItemResult> {
        match self.worker.store.commit(writes, &audit).await {
            Ok(()) => Ok(ok(id)),
            Err(Error::Conflict(reason)) => Ok(failed(id, reason)),
            Err(e) => Err(e),
        }
    }

    async fn user(&self, target: &BulkTarget) -> Result<ItemResult> {
        let id = target.id.as_str();
        let table = self.worker.store.table();
        let user = match UserId::parse(id) {
            Some(user_id) => users::get(&self.worker.store, &user_id).await?,
            None => None,
        };
        let Some(user) = user else { return Ok(failed(id, "not found")) };
        if let Some(v) = target.version.filter(|v| *v != user.version) {
            return Ok(failed(id, format!("version conflict: you read version {v}, it is now {}", user.version)));
        }
        let is_self = user.id == self.params.actor.id;
        let mut next = user.next_version();
        match self.params.op {
            BulkOp::Update => {
                let changes = self.params.user_changes.clone().unwrap_or_default();
                if user.status == UserStatus::Deleted {
                    return Ok(failed(id, "the user is deleted; restore it first"));
                }
                if let Some(status) = changes.status.filter(|s| *s != user.status) {
                    if is_self {
                        return Ok(failed(id, "you cannot change your own status"));
                    }
                    if user.status == UserStatus::Invited && status == UserStatus::Active {
                        return Ok(failed(id, "an invited user becomes active by accepting the invitation"));
                    }
                    next.status = status;
                }
                if let Some(country) = changes.country {
                    next.country = Some(country);
                }
                if next.status == user.status && next.country == user.country {
                    return Ok(unchanged(id, "already as asked"));
                }
                let action = match (user.status, next.status) {
                    (a, b) if a == b => "user.update",
                    (_, UserStatus::Suspended) => "user.suspend",
                    _ => "user.reactivate",
                };
                let audit = self.audit(action, "user", id).changes(Some(&user), Some(&next));
                self.commit(id, vec![Write::put_versioned(table, next.to_item()?, user.version)?], audit).await
            }
            BulkOp::Delete => {
                if user.status == UserStatus::Deleted {
                    return Ok(unchanged(id, "already deleted"));
                }
                if is_self {
                    return Ok(failed(id, "you cannot delete yourself"));
                }
                if !self.catalog.permissions_of(&user.roles).is_subset_of(self.granter) {
                    return Ok(failed(id, "the user holds permissions beyond yours"));
                }
                next.status = UserStatus::Deleted;
                next.deleted_at = Some(next.updated_at.clone());
                let mut writes = vec![Write::put_versioned(table, next.to_item()?, user.version)?];
                writes.extend(roles::holder_writes(table, self.catalog, &user.roles, &[])?);
                let audit = self.audit("user.delete", "user", id).changes(Some(&user), Some(&next));
                self.commit(id, writes, audit).await
            }
            BulkOp::Restore => {
                if user.status != UserStatus::Deleted {
                    return Ok(unchanged(id, "not deleted"));
                }
                if !restorable(user.deleted_at.as_deref(), self.params.restore_window_days) {
                    return Ok(failed(id, format!("deleted more than {} days ago: the restore window has passed", self.params.restore_window_days)));
                }
                if !self.catalog.permissions_of(&user.roles).is_subset_of(self.granter) {
                    return Ok(failed(id, "the user holds permissions beyond yours"));
                }
                // Back as suspended: an operator reactivates deliberately.
                next.status = UserStatus::Suspended;
                next.deleted_at = None;
                let mut writes = vec![Write::put_versioned(table, next.to_item()?, user.version)?];
                writes.extend(roles::holder_writes(table, self.catalog, &[], &user.roles)?);
                let audit = self.audit("user.restore", "user", id).changes(Some(&user), Some(&next));
                self.commit(id, writes, audit).await
            }
        }
    }

    async fn chart(&self, target: &BulkTarget) -> Result<ItemResult> {
        let id = target.id.as_str();
        let table = self.worker.store.table();
        let chart = match ChartId::parse(id) {
            Some(chart_id) => charts::get(&self.worker.store, &chart_id).await?,
            None => None,
        };
        let Some(chart) = chart else { return Ok(failed(id, "not found")) };
        if let Some(v) = target.version.filter(|v| *v != chart.version) {
            return Ok(failed(id, format!("version conflict: you read version {v}, it is now {}", chart.version)));
        }
        let mut next = Chart { version: chart.version + 1, updated_at: timestamp(Utc::now()), ..chart.clone() };
        let mut writes = Vec::new();
        let action = match self.params.op {
            BulkOp::Update => {
                if chart.deleted_at.is_some() {
                    return Ok(failed(id, "the chart is deleted; restore it first"));
                }
                let changes = self.params.chart_changes.clone().unwrap_or_default();
                if let Some(kind) = changes.kind {
                    next.kind = kind;
                }
                if let Some(owner) = changes.owner_id {
                    writes.push(Write::check(
                        table,
                        &User::pk(&owner),
                        "PROFILE",
                        "attribute_exists(pk)",
                        vec![],
                        Error::Conflict("the new owner no longer exists".into()),
                    )?);
                    next.owner_id = owner;
                }
                if next.kind == chart.kind && next.owner_id == chart.owner_id {
                    return Ok(unchanged(id, "already as asked"));
                }
                "chart.update"
            }
            BulkOp::Delete => {
                if chart.deleted_at.is_some() {
                    return Ok(unchanged(id, "already deleted"));
                }
                next.deleted_at = Some(next.updated_at.clone());
                "chart.delete"
            }
            BulkOp::Restore => {
                if chart.deleted_at.is_none() {
                    return Ok(unchanged(id, "not deleted"));
                }
                if !restorable(chart.deleted_at.as_deref(), self.params.restore_window_days) {
                    return Ok(failed(id, format!("deleted more than {} days ago: the restore window has passed", self.params.restore_window_days)));
                }
                next.deleted_at = None;
                "chart.restore"
            }
        };
        writes.insert(0, Write::put_versioned(table, next.to_item()?, chart.version)?);
        let audit = self.audit(action, "chart", id).about(&chart.owner_id).changes(Some(&chart), Some(&next));
        self.commit(id, writes, audit).await
    }
}

/// Store the segment's outcomes and add them to the job, once: false when
/// this segment was already counted (a duplicate delivery).
async fn count_segment(worker: &Worker, record: &SegmentRecord) -> Result<bool> {
    let store = &worker.store;
    let put = Write::put_new(store.table(), record.to_item()?, Error::Conflict("segment already counted".into()))?;
    let add = UpdateSpec::new("SET #p.#processed = #p.#processed + :n, #r.#s = #r.#s + :s, #r.#u = #r.#u + :u, #r.#f = #r.#f + :f, #v = #v + :one, #at = :now")
        .condition("attribute_exists(pk)")
        .name("#p", "progress")
        .name("#processed", "processed")
        .name("#r", "result")
        .name("#s", "succeeded")
        .name("#u", "unchanged")
        .name("#f", "failed")
        .name("#v", "version")
        .name("#at", "updated_at")
        .value(":n", n(record.succeeded + record.unchanged + record.failed))
        .value(":s", n(record.succeeded))
        .value(":u", n(record.unchanged))
        .value(":f", n(record.failed))
        .value(":one", n(1))
        .value(":now", s(timestamp(Utc::now())));
    let writes = [put, Write::update(store.table(), &Job::pk(&record.job_id), "META", &add, None)?];
    for attempt in 0..10u32 {
        match store.try_transact(&writes).await? {
            Transacted::Done => return Ok(true),
            // The segment's record exists: counted before.
            Transacted::ConditionFailed(None | Some(0)) => return Ok(false),
            Transacted::ConditionFailed(Some(_)) => return Err(Error::internal(format!("bulk segment: job {} is gone", record.job_id))),
            // Segments of one job finishing together touch the same job
            // item: a transaction conflict, retried.
            Transacted::Contended => tokio::time::sleep(Duration::from_millis(20 * 2u64.pow(attempt.min(6)))).await,
        }
    }
    Err(Error::internal("bulk segment: the job item stayed contended"))
}

/// Mark the job succeeded once every item is counted.
async fn finish_if_done(worker: &Worker, job_id: &str) -> Result<()> {
    let Some(job) = jobs::get(&worker.store, job_id).await? else { return Ok(()) };
    if job.status != JobStatus::Running || job.progress.processed < job.progress.total {
        return Ok(());
    }
    let mut done = job.clone();
    done.status = JobStatus::Succeeded;
    match jobs::save(&worker.store, &done).await {
        // Another segment finished it, or counted meanwhile (it finishes then).
        Ok(_) | Err(Error::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Segments of one job all add to the same job item; run concurrently in
/// one invocation they would only contend for it. One at a time per
/// instance; parallelism comes from concurrent Lambda instances.
static ONE_SEGMENT_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn run_segment(worker: &Worker, body: &str) -> Result<()> {
    let _turn = ONE_SEGMENT_AT_A_TIME.lock().await;
    let mut msg: SegmentMessage = serde_json::from_str(body).map_err(|e| Error::internal(format!("malformed segment message: {e}")))?;
    let Some(job) = jobs::get(&worker.store, &msg.job_id).await? else {
        return Err(Error::internal(format!("job {} not found", msg.job_id)));
    };
    if job.status.is_final() || worker.store.get_item(&Job::pk(&job.id), &segment_sk(msg.segment)).await?.is_some() {
        tracing::info!(job_id = %job.id, segment = msg.segment, "duplicate delivery of a finished segment; acknowledged");
        return Ok(());
    }
    let params: BulkParams = job.payload()?;
    // The targets are in the job's plan (older messages carried them).
    if msg.targets.is_empty() {
        let plan = SegmentPlan::load(&worker.store, &job.id, msg.segment)
            .await?
            .ok_or_else(|| Error::internal(format!("job {} has no plan for segment {}", job.id, msg.segment)))?;
        msg.targets = plan.targets;
    }
    let catalog = roles::RoleCatalog::new(worker.store.store().clone(), Duration::ZERO).fresh().await?;
    let granter = roles::parse_permissions("granter_permissions", &params.granter_permissions).unwrap_or_else(|_| PermissionSet::empty());
    let context = Context { worker, params: &params, catalog: &catalog, granter };
    let mut results = Vec::with_capacity(msg.targets.len());
    for target in &msg.targets {
        results.push(match params.dataset {
            Dataset::Users => context.user(target).await?,
            Dataset::Charts => context.chart(target).await?,
        });
    }
    let count = |o: ItemOutcome| results.iter().filter(|r| r.outcome == o).count() as u64;
    let record = SegmentRecord {
        job_id: job.id.clone(),
        segment: msg.segment,
        succeeded: count(ItemOutcome::Succeeded),
        unchanged: count(ItemOutcome::Unchanged),
        failed: count(ItemOutcome::Failed),
        failures: results.iter().filter(|r| r.outcome == ItemOutcome::Failed).cloned().collect(),
        done_at: timestamp(Utc::now()),
    };
    if count_segment(worker, &record).await? {
        finish_if_done(worker, &job.id).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_window() {
        let now = Utc::now();
        assert!(restorable(Some(&timestamp(now - chrono::Duration::days(29))), 30));
        assert!(!restorable(Some(&timestamp(now - chrono::Duration::days(31))), 30));
        assert!(!restorable(None, 30));
    }
}
