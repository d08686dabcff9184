//! A workflow definition as the API takes it: a trigger and steps (a graph:
//! each step names its next steps), and `validate`, which reports every
//! problem of a definition at once, each naming its field (`steps[1].to`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::platform::error::FieldError;
use utoipa::ToSchema;

use crate::expr;

/// Steps per workflow, and the longest wait.
pub const MAX_STEPS: usize = 50;
pub const MAX_WAIT_SECONDS: i64 = 366 * 86_400;
/// The name a branch gives to end the run.
pub const END: &str = "end";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkflowDefinition)]
pub struct Definition {
    /// 1 to 100 characters.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub trigger: Trigger,
    /// Run from the first; each step names what follows (see `Step`).
    pub steps: Vec<Step>,
    /// Runs events and inbound webhooks may start per minute (1 to 1,000;
    /// default 120): past it, a flood stops with an honest failed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runs_per_minute: Option<u32>,
}

/// Runs per minute when a definition does not say.
pub const DEFAULT_RUNS_PER_MINUTE: u32 = 120;

/// What starts a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[schema(as = WorkflowTrigger)]
pub enum Trigger {
    /// An audit action (`user.create`, `chart.flag`, `order.refunded`, …),
    /// with an optional CEL filter over the event.
    Event {
        event: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
    },
    /// A cron expression (5 fields) in an IANA time zone (default UTC).
    Schedule {
        cron: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
    },
    /// A POST to the workflow's inbound URL, signed (Standard Webhooks).
    Webhook {},
    /// Only `POST /api/v1/workflows/{id}/runs`.
    Manual {},
}

impl Trigger {
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Event { .. } => "event",
            Trigger::Schedule { .. } => "schedule",
            Trigger::Webhook {} => "webhook",
            Trigger::Manual {} => "manual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepType {
    /// Branch on `condition` (CEL): `on_true` or `on_false`.
    Condition,
    /// Set values (`values`: name → template) in `vars`.
    Set,
    /// Email `to` with `subject` and `body` (templates), through SES.
    SendEmail,
    /// POST `payload` (templates in its strings) to `url`, signed, through
    /// the integrations delivery path (its SSRF guard).
    SendWebhook,
    /// A Keel action (`action`, `params`), as the workflow's owner, with
    /// the owner's permissions, audited.
    Action,
    /// Wait for `duration` (`30s`, `15m`, `2h`, `1d`, `1w`; at most a year)
    /// or `until` a time (a template giving RFC 3339).
    Wait,
    /// Start another workflow's run with `input` (it runs on its own).
    RunWorkflow,
    /// Wait until an audit event (`event`, past or present tense) passes
    /// `filter` (CEL; `received` is the event), at most `timeout`; then
    /// `on_success` with the event as `steps.<id>.output.event`, or on
    /// timeout `on_timeout` (absent: the step fails, `on_failure`).
    WaitForEvent,
}

impl StepType {
    pub fn as_str(self) -> &'static str {
        match self {
            StepType::Condition => "condition",
            StepType::Set => "set",
            StepType::SendEmail => "send_email",
            StepType::SendWebhook => "send_webhook",
            StepType::Action => "action",
            StepType::Wait => "wait",
            StepType::RunWorkflow => "run_workflow",
            StepType::WaitForEvent => "wait_for_event",
        }
    }
}

/// One step. Which fields apply depends on `type`. What follows a step:
/// `on_success` if given (or `"end"`), else the next step in the list; a
/// condition goes to `on_true` (default: the next step) or `on_false`
/// (default: the end); a step that fails after its retries goes to
/// `on_failure`, or fails the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkflowStep)]
pub struct Step {
    /// Unique in the workflow: lower-case letters, digits, `_` (1 to 40).
    pub id: String,
    #[serde(rename = "type")]
    pub step_type: StepType,
    /// For `condition` the branch test; for any other type a guard: the
    /// step is skipped when it is false. CEL over the context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_true: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_false: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
    /// `wait_for_event`: where to go when the time runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    /// `wait_for_event`: the audit action waited for (`user.two_factor_enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// `wait_for_event`: CEL over the context and `received` (the event,
    /// shaped as the run's `event`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// `wait_for_event`: how long at most (`30m`, `3d`; at most a year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Retries of one step: `attempts` tries in all; before try n + 1 a delay
/// of `initial_delay × backoff^(n−1)`, at most `max_delay`, less up to
/// `jitter` of itself at random. Which errors retry: `transient` (timeouts,
/// refused connections, HTTP 429 and 5xx, throttling; the default) or
/// `any`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkflowRetryPolicy)]
pub struct RetryPolicy {
    /// 1 to 25 (1: no retry).
    pub attempts: u32,
    /// A duration (`30s`, `5m`, …); default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<String>,
    /// 1 to 10; default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<f64>,
    /// Default `1h`; at most a year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<String>,
    /// 0 to 1; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<f64>,
    /// `transient` (default) or `any`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<RetryOn>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    Transient,
    Any,
}

impl RetryPolicy {
    /// The delay before attempt `next` (2 or more), without jitter.
    pub fn delay_before(&self, next: u32) -> chrono::Duration {
        let initial = self.initial_delay.as_deref().and_then(|d| parse_duration(d).ok()).unwrap_or(10) as f64;
        let max = self.max_delay.as_deref().and_then(|d| parse_duration(d).ok()).unwrap_or(3_600) as f64;
        let backoff = self.backoff.unwrap_or(2.0);
        let seconds = (initial * backoff.powi(next.saturating_sub(2) as i32)).min(max);
        chrono::Duration::milliseconds((seconds * 1000.0) as i64)
    }
}

/// An audit action's shape: `noun.verb`, lower-case letters and `_`.
pub fn is_event_name(event: &str) -> bool {
    event.len() <= 80 && event.split('.').count() == 2 && event.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
}

/// `30s`, `15m`, `2h`, `1d`, `1w` (or a plain number of seconds) in seconds.
pub fn parse_duration(raw: &str) -> Result<i64, String> {
    let raw = raw.trim();
    let (digits, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let amount: i64 = digits.parse().map_err(|_| format!("{raw:?} is not a duration such as 30s, 15m, 2h, 1d or 1w"))?;
    let unit_seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{raw:?} is not a duration such as 30s, 15m, 2h, 1d or 1w")),
    };
    let seconds = amount.checked_mul(unit_seconds).unwrap_or(i64::MAX);
    if seconds > MAX_WAIT_SECONDS {
        return Err("at most a year".into());
    }
    Ok(seconds)
}

/// A Keel action a step may take: its parameters and the permission the
/// workflow's owner must hold, and the audit actions it records (for the
/// loop guard).
pub struct ActionSpec {
    pub name: &'static str,
    /// Required parameters, then optional ones.
    pub params: &'static [&'static str],
    pub optional: &'static [&'static str],
    pub permission: shared::identity::rbac::Permission,
    pub records: &'static [&'static str],
}

pub const ACTIONS: &[ActionSpec] = {
    use shared::identity::rbac::Permission::*;
    &[
        ActionSpec { name: "user.suspend", params: &["user_id"], optional: &[], permission: UsersWrite, records: &["user.suspend"] },
        ActionSpec { name: "user.reactivate", params: &["user_id"], optional: &[], permission: UsersWrite, records: &["user.reactivate"] },
        ActionSpec { name: "user.add_role", params: &["user_id", "role"], optional: &[], permission: RolesWrite, records: &["user.update"] },
        ActionSpec { name: "user.remove_role", params: &["user_id", "role"], optional: &[], permission: RolesWrite, records: &["user.update"] },
        ActionSpec { name: "user.revoke_sessions", params: &["user_id"], optional: &[], permission: UsersWrite, records: &["user.revoke_sessions"] },
        ActionSpec {
            name: "chart.moderate",
            params: &["chart_id", "action", "reason"],
            optional: &["note"],
            permission: ChartsModerate,
            records: &["chart.approve", "chart.reject", "chart.flag", "chart.unflag", "chart.hide", "chart.restore"],
        },
        ActionSpec {
            name: "data.export",
            params: &["dataset"],
            optional: &["format", "columns", "filters"],
            permission: DataExport,
            records: &["data.export"],
        },
        ActionSpec {
            name: "report.generate",
            params: &["template"],
            optional: &["formats", "parameters", "shared"],
            permission: ReportsWrite,
            records: &["report.generate"],
        },
        ActionSpec {
            name: "insight.create",
            params: &["title", "explanation", "recommendation", "category"],
            optional: &["key", "confidence", "impact", "unit", "series", "desired", "evidence"],
            permission: AnalyticsInsightsWrite,
            records: &["analytics.insight.found", "analytics.insight.refreshed"],
        },
        ActionSpec {
            name: "security_event.raise",
            params: &["severity", "summary", "recommendation"],
            optional: &["principal", "source_ip", "evidence"],
            permission: SecurityRespond,
            records: &["security_event.detected"],
        },
    ]
};

/// A `chart.moderate` action's `action`, a `data.export` action's `dataset` and `format`.
pub const MODERATION_ACTIONS: &[&str] = &["approve", "reject", "flag", "unflag", "hide", "restore"];
pub const EXPORT_DATASETS: &[&str] = &["users", "charts", "orders", "activity", "audit"];
pub const EXPORT_FORMATS: &[&str] = &["csv", "json", "ndjson", "xlsx", "pdf", "sql"];
/// A `report.generate` action's `formats` (a comma-separated list of them).
pub const REPORT_FORMATS: &[&str] = &["csv", "json", "ndjson", "xlsx", "pdf", "sql", "png"];
/// An `insight.create` action's `category`, `unit` and `desired`.
pub const INSIGHT_CATEGORIES: &[&str] = &["revenue", "churn", "growth", "engagement", "moderation", "security"];
pub const INSIGHT_UNITS: &[&str] = &["cents", "users", "charts"];
pub const DIRECTIONS: &[&str] = &["up", "down"];
/// A `security_event.raise` action's `severity`.
pub const SEVERITIES: &[&str] = &["low", "medium", "high"];

/// The values a fixed (untemplated) parameter of an action may take, where
/// they are a closed set: checked at save, as templated ones are when they run.
fn allowed_values(action: &str, param: &str) -> Option<&'static [&'static str]> {
    Some(match (action, param) {
        ("chart.moderate", "action") => MODERATION_ACTIONS,
        ("data.export", "dataset") => EXPORT_DATASETS,
        ("data.export", "format") => EXPORT_FORMATS,
        ("report.generate", "formats") => REPORT_FORMATS,
        ("report.generate", "shared") => &["true", "false"],
        ("insight.create", "category") => INSIGHT_CATEGORIES,
        ("insight.create", "unit") => INSIGHT_UNITS,
        ("insight.create", "desired") => DIRECTIONS,
        ("security_event.raise", "severity") => SEVERITIES,
        _ => return None,
    })
}

pub fn action_spec(name: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().find(|a| a.name == name)
}

impl Definition {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// What follows `step` when it succeeded (a condition: `branch`).
    pub fn next_after(&self, step: &Step, branch: Option<bool>) -> Option<String> {
        let following = || self.steps.iter().position(|s| s.id == step.id).and_then(|i| self.steps.get(i + 1)).map(|s| s.id.clone());
        let named = match branch {
            Some(true) => step.on_true.clone().map(Some).unwrap_or_else(following),
            Some(false) => step.on_false.clone(),
            None => step.on_success.clone().map(Some).unwrap_or_else(following),
        };
        named.filter(|n| n != END)
    }

    pub fn runs_per_minute(&self) -> u32 {
        self.max_runs_per_minute.unwrap_or(DEFAULT_RUNS_PER_MINUTE)
    }

    /// The audit actions this workflow's steps record (the loop guard).
    pub fn records(&self) -> BTreeSet<&'static str> {
        let mut records = BTreeSet::new();
        for step in &self.steps {
            let Some(spec) = step.action.as_deref().and_then(action_spec) else { continue };
            // A moderation whose decision is fixed records that one action;
            // a templated one may record any.
            let fixed = step.params.as_ref().and_then(|p| p.get("action")).filter(|a| !a.contains("{{")).map(|a| format!("chart.{}", a.trim()));
            match fixed.filter(|_| spec.name == "chart.moderate") {
                Some(action) => records.extend(spec.records.iter().copied().filter(|r| *r == action)),
                None => records.extend(spec.records.iter().copied()),
            }
        }
        records
    }

    /// The workflows this one starts (`run_workflow`).
    pub fn starts(&self) -> BTreeSet<String> {
        self.steps.iter().filter(|s| s.step_type == StepType::RunWorkflow).filter_map(|s| s.workflow_id.clone()).collect()
    }

    /// Every problem of the definition, each naming its field.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut push = |field: String, message: String| errors.push(FieldError::new(field, message));
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            push("name".into(), "1 to 100 characters without control characters".into());
        }
        if self.description.as_ref().is_some_and(|d| d.chars().count() > 1_000) {
            push("description".into(), "at most 1,000 characters".into());
        }
        if self.max_runs_per_minute.is_some_and(|m| !(1..=1_000).contains(&m)) {
            push("max_runs_per_minute".into(), "1 to 1,000".into());
        }
        let ids: Vec<&str> = self.steps.iter().map(|s| s.id.as_str()).collect();
        let known: BTreeSet<&str> = ids.iter().copied().collect();
        // Reference checks: roots the context has, steps that exist.
        let check_refs = |field: String, found: Result<(BTreeSet<String>, BTreeSet<String>), String>, push: &mut dyn FnMut(String, String)| match found {
            Err(message) => push(field, message),
            Ok((variables, steps)) => {
                if let Some(bad) = variables.iter().find(|v| !expr::ROOTS.contains(&v.as_str())) {
                    push(field.clone(), format!("reads {bad:?}, which the context does not have (it has {})", expr::ROOTS.join(", ")));
                }
                if let Some(bad) = steps.iter().find(|s| !known.contains(s.as_str())) {
                    push(field, format!("reads steps.{bad}, and there is no step {bad:?}"));
                }
            }
        };
        match &self.trigger {
            Trigger::Event { event, filter } => {
                if !is_event_name(event) {
                    push("trigger.event".into(), "an audit action such as user.create or chart.flag".into());
                }
                if let Some(filter) = filter {
                    check_refs("trigger.filter".into(), expr::expression_references(filter), &mut push);
                }
            }
            Trigger::Schedule { cron, timezone } => {
                if let Err(e) = cron.parse::<croner::Cron>() {
                    push("trigger.cron".into(), format!("not a cron expression of 5 fields: {e}"));
                } else if cron.split_whitespace().count() != 5 {
                    push("trigger.cron".into(), "5 fields: minute hour day-of-month month day-of-week".into());
                }
                if let Some(zone) = timezone
                    && zone.parse::<chrono_tz::Tz>().is_err()
                {
                    push("trigger.timezone".into(), "an IANA time zone such as Europe/Paris".into());
                }
            }
            Trigger::Webhook {} | Trigger::Manual {} => {}
        }
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            push("steps".into(), format!("1 to {MAX_STEPS} steps"));
        }
        let mut seen = BTreeSet::new();
        for (i, step) in self.steps.iter().enumerate() {
            let at = |field: &str| format!("steps[{i}].{field}");
            if step.id.is_empty() || step.id.len() > 40 || !step.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') || step.id == END
            {
                push(at("id"), "1 to 40 lower-case letters, digits or _ (and not \"end\")".into());
            } else if !seen.insert(step.id.as_str()) {
                push(at("id"), format!("{:?} is the id of an earlier step", step.id));
            }
            for (field, target) in [
                ("on_true", &step.on_true),
                ("on_false", &step.on_false),
                ("on_success", &step.on_success),
                ("on_failure", &step.on_failure),
                ("on_timeout", &step.on_timeout),
            ] {
                if let Some(target) = target
                    && target != END
                    && !known.contains(target.as_str())
                {
                    push(at(field), format!("there is no step {target:?} (or \"end\")"));
                }
            }
            if let Some(condition) = &step.condition {
                check_refs(at("condition"), expr::expression_references(condition), &mut push);
            }
            let mut templates: Vec<(String, String)> = Vec::new();
            let mut require = |field: &str, value: Option<&str>, push: &mut dyn FnMut(String, String)| match value {
                None => push(at(field), format!("required for a {} step", step.step_type.as_str())),
                Some(v) => templates.push((at(field), v.to_string())),
            };
            // Which fields each type takes; the others must be absent.
            let allowed: &[&str] = match step.step_type {
                StepType::Condition => {
                    if step.condition.is_none() {
                        push(at("condition"), "required for a condition step".into());
                    }
                    &["on_true", "on_false"]
                }
                StepType::Set => {
                    match &step.values {
                        Some(values) if !values.is_empty() && values.len() <= 50 => {
                            for (name, template) in values {
                                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                                    push(at(&format!("values.{name}")), "names are letters, digits and _".into());
                                }
                                templates.push((at(&format!("values.{name}")), template.clone()));
                            }
                        }
                        _ => push(at("values"), "1 to 50 values (name → template)".into()),
                    }
                    &["values", "on_success", "on_failure"]
                }
                StepType::SendEmail => {
                    require("to", step.to.as_deref(), &mut push);
                    require("subject", step.subject.as_deref(), &mut push);
                    require("body", step.body.as_deref(), &mut push);
                    &["to", "subject", "body", "on_success", "on_failure", "retry"]
                }
                StepType::SendWebhook => {
                    match step.url.as_deref() {
                        None => push(at("url"), "required for a send_webhook step".into()),
                        Some(url) if url.contains("{{") => templates.push((at("url"), url.to_string())),
                        Some(url) => {
                            if let Err(refusal) = integrations::ssrf::check_url(url, integrations::ssrf::Policy { allow_loopback: true }) {
                                push(at("url"), refusal.to_string());
                            }
                        }
                    }
                    if let Some(payload) = &step.payload {
                        let mut strings = Vec::new();
                        expr::strings_of(payload, &mut strings);
                        for s in strings {
                            check_refs(at("payload"), expr::template_references(&s), &mut push);
                        }
                    }
                    &["url", "payload", "on_success", "on_failure", "retry"]
                }
                StepType::Action => {
                    match step.action.as_deref().map(|a| (a, action_spec(a))) {
                        None => push(at("action"), "required for an action step".into()),
                        Some((name, None)) => {
                            push(at("action"), format!("{name:?} is not an action; one of {}", ACTIONS.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")))
                        }
                        Some((_, Some(spec))) => {
                            let empty = BTreeMap::new();
                            let params = step.params.as_ref().unwrap_or(&empty);
                            for needed in spec.params {
                                match params.get(*needed) {
                                    None => push(at(&format!("params.{needed}")), format!("required by {}", spec.name)),
                                    Some(template) => templates.push((at(&format!("params.{needed}")), template.clone())),
                                }
                            }
                            for (name, template) in params.iter().filter(|(k, _)| spec.optional.contains(&k.as_str())) {
                                templates.push((at(&format!("params.{name}")), template.clone()));
                            }
                            if let Some(extra) = params.keys().find(|k| !spec.params.contains(&k.as_str()) && !spec.optional.contains(&k.as_str())) {
                                let takes: Vec<&str> = spec.params.iter().chain(spec.optional).copied().collect();
                                push(at(&format!("params.{extra}")), format!("{} takes {}", spec.name, takes.join(", ")));
                            }
                            // Fixed values are checked now; templates when they run.
                            for (name, value) in params.iter().filter(|(_, v)| !v.contains("{{")) {
                                let Some(allowed) = allowed_values(spec.name, name) else { continue };
                                // `formats` is a list; the others one value.
                                let values: Vec<&str> = if name == "formats" { value.split(',').map(str::trim).collect() } else { vec![value.trim()] };
                                if values.iter().any(|v| !allowed.contains(v)) {
                                    push(at(&format!("params.{name}")), format!("one of {}", allowed.join(", ")));
                                }
                            }
                            if spec.name == "report.generate"
                                && let Some(template) = params.get("template").filter(|t| !t.contains("{{"))
                                && !reports::templates::exists(template.trim())
                            {
                                push(at("params.template"), format!("not a report template; one of {}", reports::templates::ids().join(", ")));
                            }
                        }
                    }
                    &["action", "params", "on_success", "on_failure", "retry"]
                }
                StepType::Wait => {
                    match (&step.duration, &step.until) {
                        (Some(d), None) => {
                            if let Err(e) = parse_duration(d) {
                                push(at("duration"), e);
                            }
                        }
                        (None, Some(until)) => templates.push((at("until"), until.clone())),
                        _ => push(at("duration"), "a wait step takes either duration or until".into()),
                    }
                    &["duration", "until", "on_success"]
                }
                StepType::RunWorkflow => {
                    match step.workflow_id.as_deref() {
                        Some(id) if uuid::Uuid::parse_str(id).is_ok() => {}
                        _ => push(at("workflow_id"), "the id of a workflow (UUID)".into()),
                    }
                    if let Some(input) = &step.input {
                        let mut strings = Vec::new();
                        expr::strings_of(input, &mut strings);
                        for s in strings {
                            check_refs(at("input"), expr::template_references(&s), &mut push);
                        }
                    }
                    &["workflow_id", "input", "on_success", "on_failure"]
                }
                StepType::WaitForEvent => {
                    match step.event.as_deref() {
                        Some(event) if is_event_name(event) => {}
                        Some(_) => push(at("event"), "an audit action such as user.two_factor_enable or chart.flag".into()),
                        None => push(at("event"), "required for a wait_for_event step".into()),
                    }
                    match step.timeout.as_deref().map(parse_duration) {
                        None => push(at("timeout"), "required for a wait_for_event step (a duration such as 3d; at most a year)".into()),
                        Some(Err(e)) => push(at("timeout"), e),
                        Some(Ok(_)) => {}
                    }
                    if let Some(filter) = &step.filter {
                        // `received` is the event that arrived, beside the context.
                        match expr::expression_references(filter) {
                            Ok((mut variables, steps)) => {
                                variables.remove("received");
                                check_refs(at("filter"), Ok((variables, steps)), &mut push);
                            }
                            Err(e) => push(at("filter"), e),
                        }
                    }
                    &["event", "filter", "timeout", "on_success", "on_failure", "on_timeout"]
                }
            };
            let present: [(&str, bool); 20] = [
                ("on_true", step.on_true.is_some()),
                ("on_false", step.on_false.is_some()),
                ("on_success", step.on_success.is_some()),
                ("on_failure", step.on_failure.is_some()),
                ("retry", step.retry.is_some()),
                ("to", step.to.is_some()),
                ("subject", step.subject.is_some()),
                ("body", step.body.is_some()),
                ("url", step.url.is_some()),
                ("payload", step.payload.is_some()),
                ("values", step.values.is_some()),
                ("action", step.action.is_some()),
                ("params", step.params.is_some()),
                ("duration", step.duration.is_some()),
                ("until", step.until.is_some()),
                ("workflow_id", step.workflow_id.is_some() || step.input.is_some()),
                ("event", step.event.is_some()),
                ("filter", step.filter.is_some()),
                ("timeout", step.timeout.is_some()),
                ("on_timeout", step.on_timeout.is_some()),
            ];
            for (field, is_set) in present {
                if is_set && !allowed.contains(&field) {
                    push(at(field), format!("a {} step does not take {field}", step.step_type.as_str()));
                }
            }
            for (field, template) in templates {
                check_refs(field, expr::template_references(&template), &mut push);
            }
            if let Some(retry) = &step.retry {
                if !(1..=25).contains(&retry.attempts) {
                    push(at("retry.attempts"), "1 to 25".into());
                }
                for (field, value) in [("retry.initial_delay", &retry.initial_delay), ("retry.max_delay", &retry.max_delay)] {
                    if let Some(Err(e)) = value.as_deref().map(parse_duration) {
                        push(at(field), e);
                    }
                }
                if retry.backoff.is_some_and(|b| !(1.0..=10.0).contains(&b)) {
                    push(at("retry.backoff"), "1 to 10".into());
                }
                if retry.jitter.is_some_and(|j| !(0.0..=1.0).contains(&j)) {
                    push(at("retry.jitter"), "0 to 1".into());
                }
            }
        }
        if errors.is_empty()
            && let Some(cycle) = self.cycle()
        {
            errors.push(FieldError::new("steps", format!("the steps loop ({}); a workflow's steps must not lead back to themselves", cycle.join(" → "))));
        }
        errors
    }

    /// A loop in the step graph, if any (the step ids around it).
    fn cycle(&self) -> Option<Vec<String>> {
        let edges: HashMap<&str, Vec<String>> = self
            .steps
            .iter()
            .map(|s| {
                let mut next: Vec<String> = Vec::new();
                if s.step_type == StepType::Condition {
                    next.extend(self.next_after(s, Some(true)));
                    next.extend(self.next_after(s, Some(false)));
                } else {
                    next.extend(self.next_after(s, None));
                    next.extend(s.on_failure.clone().filter(|f| f != END));
                    next.extend(s.on_timeout.clone().filter(|f| f != END));
                }
                (s.id.as_str(), next)
            })
            .collect();
        fn visit<'a>(node: &'a str, edges: &'a HashMap<&str, Vec<String>>, path: &mut Vec<&'a str>, done: &mut BTreeSet<&'a str>) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|p| *p == node) {
                let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            if !done.insert(node) {
                return None;
            }
            path.push(node);
            for next in edges.get(node).into_iter().flatten() {
                if let Some(found) = visit(next, edges, path, done) {
                    return Some(found);
                }
            }
            path.pop();
            None
        }
        let mut done = BTreeSet::new();
        self.steps.iter().find_map(|s| visit(&s.id, &edges, &mut Vec::new(), &mut done))
    }
}

#[cfg(test)]
mod tests {
    /// The closed values checked at save are the ones the domain takes
    /// when the step runs (a value added there must be added here).
    #[test]
    fn closed_values_are_the_domains() {
        let formats: Vec<&str> = reports::generate::ReportFormat::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(super::REPORT_FORMATS, formats.as_slice());
        let severities: Vec<&str> = shared::domain::security_events::Severity::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(super::SEVERITIES, severities.as_slice());
        for name in super::INSIGHT_CATEGORIES {
            let category: shared::domain::insights::InsightCategory = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(category.as_str(), *name);
        }
    }

    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Definition {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_issue_example_is_valid() {
        let definition = parse(json!({"name": "welcome", "trigger": {"type": "event", "event": "user.created"},
            "steps": [{"id": "check", "type": "condition", "condition": "event.data.email.endsWith('@example.com')", "on_true": "mail"},
                      {"id": "mail", "type": "send_email", "to": "{{ event.data.email }}", "subject": "Welcome", "body": "Hello {{ event.data.name }}"}]}));
        assert_eq!(definition.validate(), vec![]);
        assert_eq!(definition.next_after(&definition.steps[0], Some(true)).as_deref(), Some("mail"));
        assert_eq!(definition.next_after(&definition.steps[0], Some(false)), None);
        assert_eq!(definition.next_after(&definition.steps[1], None), None);
    }

    #[test]
    fn problems_name_their_fields() {
        let definition = parse(json!({"name": "", "trigger": {"type": "schedule", "cron": "nope", "timezone": "Mars/Base"},
            "steps": [{"id": "a", "type": "send_email", "to": "{{ evnt.email }}", "subject": "x", "on_success": "zz"},
                      {"id": "a", "type": "wait", "duration": "3y"},
                      {"id": "c", "type": "condition", "condition": "event.x ==", "url": "https://x"},
                      {"id": "d", "type": "action", "action": "user.explode"}]}));
        let fields: BTreeSet<String> = definition.validate().into_iter().map(|e| e.field).collect();
        for field in [
            "name",
            "trigger.cron",
            "trigger.timezone",
            "steps[0].to",
            "steps[0].body",
            "steps[0].on_success",
            "steps[1].id",
            "steps[1].duration",
            "steps[2].condition",
            "steps[2].url",
            "steps[3].action",
        ] {
            assert!(fields.contains(field), "{field} missing from {fields:?}");
        }
    }

    #[test]
    fn a_wait_for_event_needs_an_event_and_a_timeout_and_its_filter_may_read_received() {
        let good = parse(json!({"name": "w", "trigger": {"type": "manual"},
            "steps": [{"id": "w", "type": "wait_for_event", "event": "user.two_factor_enable", "filter": "received.actor.id == input.user_id",
                       "timeout": "3d", "on_timeout": "late"},
                      {"id": "late", "type": "set", "values": {"x": "{{ steps.w.output }}"}}]}));
        assert_eq!(good.validate(), vec![]);
        let bad = parse(json!({"name": "w", "trigger": {"type": "manual"},
            "steps": [{"id": "w", "type": "wait_for_event", "event": "User Created", "filter": "recieved.actor.id == 'x'", "on_timeout": "nowhere",
                       "duration": "1d"}]}));
        let fields: BTreeSet<String> = bad.validate().into_iter().map(|e| e.field).collect();
        for field in ["steps[0].event", "steps[0].timeout", "steps[0].filter", "steps[0].on_timeout", "steps[0].duration"] {
            assert!(fields.contains(field), "{field} missing from {fields:?}");
        }
        let elsewhere =
            parse(json!({"name": "w", "trigger": {"type": "manual"}, "steps": [{"id": "s", "type": "set", "values": {"x": "1"}, "timeout": "1d"}]}));
        assert_eq!(elsewhere.validate()[0].field, "steps[0].timeout");
    }

    #[test]
    fn loops_in_the_steps_are_refused() {
        let definition = parse(json!({"name": "loop", "trigger": {"type": "manual"},
            "steps": [{"id": "a", "type": "set", "values": {"x": "1"}}, {"id": "b", "type": "set", "values": {"y": "2"}, "on_success": "a"}]}));
        let errors = definition.validate();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("a → b → a"), "{errors:?}");
    }

    #[test]
    fn durations_are_bounded() {
        assert_eq!(parse_duration("90m"), Ok(5_400));
        assert!(parse_duration("9223372036854775807w").is_err());
        assert!(parse_duration("367d").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn retry_delays_grow_and_cap() {
        let policy =
            RetryPolicy { attempts: 5, initial_delay: Some("1h".into()), backoff: Some(2.0), max_delay: Some("3h".into()), jitter: None, retry_on: None };
        assert_eq!(policy.delay_before(2), chrono::Duration::hours(1));
        assert_eq!(policy.delay_before(3), chrono::Duration::hours(2));
        assert_eq!(policy.delay_before(4), chrono::Duration::hours(3));
    }
}
