//! Moderating one chart: the version check, the state machine, the history
//! entry, the owner's notification job and the audit entry, all in one
//! transaction (the admin API's single and bulk endpoints and a workflow's
//! `chart.moderate` action all go through here, so a chart is never
//! half-moderated and the rules are the same for each).

use crate::audit::Journal;
use crate::audit::{Actor, AuditEntry};
use crate::domain::charts::{self, Chart, ModerationAction, ModerationEvent, ModerationStatus};
use crate::domain::jobs::{ChartModerationEmail, Job};
use crate::domain::system_settings::{ModerationReason, Settings};
use crate::platform::error::{Error, FieldError};
use crate::store::ids::ChartId;
use crate::store::{Write, timestamp};

/// What a moderator decided about one chart.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    pub action: ModerationAction,
    pub reason: &'a ModerationReason,
    pub note: Option<&'a str>,
    /// The chart version the moderator saw; `None`: the chart as it is
    /// (a workflow decides on the current chart; the write is still
    /// conditional on the version read).
    pub version: Option<u64>,
}

/// The decision's `reason` (a configured code) and `note`, checked: the
/// reason found, or every bad field named.
pub fn check_reason<'a>(settings: &'a Settings, reason: &str, note: Option<&str>) -> crate::Result<&'a ModerationReason> {
    let mut errors = Vec::new();
    let found = settings.moderation_reason(reason);
    if found.is_none() {
        let codes: Vec<&str> = settings.moderation_reasons.iter().map(|r| r.code.as_str()).collect();
        errors.push(FieldError::new("reason", format!("must be one of the configured reasons: {}", codes.join(", "))));
    }
    if note.is_some_and(|n| n.trim().is_empty() || n.chars().count() > 1000) {
        errors.push(FieldError::new("note", "1 to 1000 characters when given"));
    }
    match found {
        Some(r) if errors.is_empty() => Ok(r),
        _ => Err(Error::Validation(errors)),
    }
}

/// Why a decision was not applied.
#[derive(Debug)]
pub enum Refusal {
    NotFound,
    /// The chart changed since the moderator read it.
    Stale(String),
    /// The action does not apply in the chart's state.
    InvalidTransition(String),
    Failed(Error),
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Error {
        match refusal {
            Refusal::NotFound => Error::NotFound("no such chart".into()),
            Refusal::Stale(m) | Refusal::InvalidTransition(m) => Error::Conflict(m),
            Refusal::Failed(e) => e,
        }
    }
}

/// A committed decision: the chart as it is now, and the notification job
/// to dispatch (committed with the change; the caller sends its message).
#[derive(Debug)]
pub struct Moderated {
    pub chart: Chart,
    pub notice: Option<Job>,
}

fn invalid_transition(action: ModerationAction, from: ModerationStatus) -> Refusal {
    let valid: Vec<&str> = action.valid_from().into_iter().map(ModerationStatus::as_str).collect();
    Refusal::InvalidTransition(format!("cannot {} a chart that is {} (only from: {})", action.as_str(), from.as_str(), valid.join(", ")))
}

/// A decision checked against the chart as it is, not yet committed: the
/// writes and the audit entry to commit together (a workflow commits them
/// with its step's transition).
#[derive(Debug)]
pub struct Planned {
    pub before: Chart,
    pub chart: Chart,
    pub writes: Vec<Write>,
    pub audit: AuditEntry,
    pub notice: Option<Job>,
}

/// `chart_id` as the request gave it: one that is not a chart id is a chart
/// that does not exist.
pub async fn moderate(store: &Journal, actor: &Actor, chart_id: &str, decision: &Decision<'_>) -> Result<Moderated, Refusal> {
    let planned = plan(store, actor, chart_id, decision).await?;
    match store.commit(planned.writes, &planned.audit).await {
        Ok(()) => Ok(Moderated { chart: planned.chart, notice: planned.notice }),
        // The chart's versioned put is the only write that can conflict.
        Err(Error::Conflict(m)) => Err(Refusal::Stale(m)),
        Err(e) => Err(Refusal::Failed(e)),
    }
}

/// Check `decision` against the chart and plan its writes.
pub async fn plan(store: &Journal, actor: &Actor, chart_id: &str, decision: &Decision<'_>) -> Result<Planned, Refusal> {
    let chart_id = ChartId::parse(chart_id).ok_or(Refusal::NotFound)?;
    let current = charts::get(store, &chart_id).await.map_err(Refusal::Failed)?.ok_or(Refusal::NotFound)?;
    if let Some(seen) = decision.version.filter(|v| *v != current.version) {
        return Err(Refusal::Stale(format!("the chart was changed (version {} now, {seen} sent); reload and retry", current.version)));
    }
    let from = current.moderation_status;
    let to = decision.action.apply(from).ok_or_else(|| invalid_transition(decision.action, from))?;
    let next = current.moderated(to);
    let event = ModerationEvent {
        id: uuid::Uuid::now_v7().to_string(),
        chart_id: current.id.clone(),
        at: timestamp(chrono::Utc::now()),
        actor_id: actor.id.clone(),
        action: decision.action,
        from,
        to,
        reason: decision.reason.code.clone(),
        note: decision.note.map(str::to_string),
        version: next.version,
    };
    let put = |result: crate::Result<Write>| result.map_err(Refusal::Failed);
    let mut writes = vec![
        put(next.to_item().and_then(|item| Write::put_versioned(store.table(), item, current.version)))?,
        put(event.to_item().and_then(|item| Write::put_new(store.table(), item, Error::Conflict("duplicate moderation event".into()))))?,
    ];
    // The owner hears why their chart is no longer shown; the moderator's
    // free-text note stays internal.
    let notice = decision
        .action
        .notifies_owner()
        .then(|| {
            let email = ChartModerationEmail {
                chart_id: next.id.clone(),
                action: decision.action.as_str().into(),
                reason: decision.reason.code.clone(),
                reason_label: decision.reason.label.clone(),
            };
            Job::of(&actor.id, &email)
        })
        .transpose()
        .map_err(Refusal::Failed)?;
    if let Some(job) = &notice {
        writes.push(put(job.create_write(store.table()))?);
    }
    let why = match decision.note {
        Some(note) => format!("{}: {note}", decision.reason.code),
        None => decision.reason.code.clone(),
    };
    let audit = AuditEntry::new(actor, &format!("chart.{}", decision.action.as_str()), "chart", &current.id)
        .about(&current.owner_id)
        .changes(Some(&current), Some(&next))
        .reason(why);
    Ok(Planned { before: current, chart: next, writes, audit, notice })
}
