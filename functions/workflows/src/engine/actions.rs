//! The actions that make a record of their own: a report (the reports
//! function's job), an insight (beside the analytics job's) and a security
//! event (beside the detectors'). Each is checked as the API or the job
//! that makes the same record checks it, by the same code, and its writes
//! and audit entry are committed with the step's transition.

use serde_json::{Map, Value, json};
use shared::audit::AuditEntry;
use shared::identity::rbac::{Permission, PermissionSet};
use shared::store::Write;

use super::{Engine, Mode, Outcome, StepError, workflow_actor};
use crate::definition::Step;
use crate::model::{Run, Workflow};

/// A parameter as rendered, trimmed; `None` when absent or blank.
pub(super) fn param(params: &Map<String, Value>, key: &str) -> Option<String> {
    params.get(key).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
}

/// A comma-separated list parameter (`evidence`, `formats`).
fn list(params: &Map<String, Value>, key: &str) -> Vec<String> {
    param(params, key).map(|v| v.split(',').map(|i| i.trim().to_string()).filter(|i| !i.is_empty()).collect()).unwrap_or_default()
}

/// The audit entry that started the run (an event trigger), as evidence.
fn trigger_entry(run: &Run) -> Option<String> {
    run.context.pointer("/event/id").and_then(Value::as_str).map(str::to_string)
}

/// Where a record made by a step says it came from.
fn step_query(workflow: &Workflow, run: &Run) -> String {
    format!("/api/v1/workflows/{}/runs/{}", workflow.id, run.id)
}

impl Engine {
    /// Generate a report as the owner: the reports function's `report` job,
    /// checked by its own `check` (template, parameters, formats), masked
    /// unless the owner holds pii:read, a template over the audit log only
    /// with audit:read (as `POST /api/v1/reports/generate` requires).
    pub(super) fn generate_report(
        &self,
        workflow: &Workflow,
        run: &Run,
        params: &Map<String, Value>,
        held: &PermissionSet,
        input: Value,
        mode: Mode,
    ) -> Outcome {
        use reports::generate::{self, ReportFormat, ReportJob};
        let template = param(params, "template").unwrap_or_default();
        if reports::reads_audit_log(Some(&template), None) && !held.contains(Permission::AuditRead) {
            return Outcome::failed(
                input,
                StepError::permanent(format!("the workflow's owner does not hold audit:read (template {template} reads the audit log)")),
            );
        }
        let mut formats = Vec::new();
        for name in list(params, "formats") {
            match serde_json::from_value::<ReportFormat>(json!(name)) {
                Ok(format) if !formats.contains(&format) => formats.push(format),
                Ok(_) => {}
                Err(_) => {
                    let all: Vec<&str> = ReportFormat::ALL.iter().map(|f| f.as_str()).collect();
                    return Outcome::failed(input, StepError::permanent(format!("params.formats: {name:?} is not one of {}", all.join(", "))));
                }
            }
        }
        if formats.is_empty() {
            formats.push(ReportFormat::Pdf);
        }
        let parameters = match param(params, "parameters").map(|text| serde_json::from_str::<Value>(&text)) {
            None => Map::new(),
            Some(Ok(Value::Object(map))) => map,
            Some(Ok(_)) => return Outcome::failed(input, StepError::permanent("params.parameters: a JSON object of the template's parameters")),
            Some(Err(e)) => return Outcome::failed(input, StepError::permanent(format!("params.parameters: not JSON: {e}"))),
        };
        let shared = match param(params, "shared").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Outcome::failed(input, StepError::permanent("params.shared: true or false")),
        };
        let report = ReportJob {
            template: Some(template),
            parameters,
            spec: None,
            formats,
            compress: None,
            page_size: Default::default(),
            mask: !held.contains(Permission::PiiRead),
            requested_by: workflow.owner_id.clone(),
            shared,
            delivery: None,
        };
        let checked = match generate::check(&report, self.now()) {
            Ok(checked) => checked,
            Err(errors) => {
                let message = errors.iter().map(|e| format!("params.{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
                return Outcome::failed(input, StepError::permanent(message));
            }
        };
        let job_params = match serde_json::to_value(&report) {
            Ok(v) => v,
            Err(e) => return Outcome::failed(input, StepError::transient(e.to_string())),
        };
        let job = shared::domain::jobs::Job::new(shared::domain::jobs::JobKind::Report, &workflow.owner_id, job_params);
        let output = json!({"report_id": job.id, "location": format!("/api/v1/reports/{}", job.id), "title": checked.title,
            "formats": report.formats, "masked": report.mask});
        let summary = json!({"title": checked.title, "template": report.template, "parameters": report.parameters, "formats": report.formats,
            "masked": report.mask, "shared": report.shared, "workflow": {"id": workflow.id, "run": run.id}});
        let audit = AuditEntry::new(&workflow_actor(workflow, run), "report.generate", "report", &job.id).changes::<(), _>(None, Some(&summary));
        self.job_outcome(&job, output, audit, input, mode)
    }

    /// Raise an insight beside the analytics job's: the same record and
    /// lifecycle (operators acknowledge, implement and dismiss it; its
    /// outcome is measured 30 days after `implemented`), marked with the
    /// run that raised it so a refresh never calls it stale. Its `key`
    /// (default: the run and step) names it: a later run with the same key
    /// updates its figures and keeps its lifecycle.
    pub(super) async fn create_insight(&self, workflow: &Workflow, run: &Run, step: &Step, params: &Map<String, Value>, input: Value, mode: Mode) -> Outcome {
        use shared::domain::insights::{self, Evidence, Finding, Impact, Insight, InsightCategory, InsightOrigin, Measure, MeasureDirection, StoredQuery};
        let text = |key: &str, max: usize| -> std::result::Result<String, StepError> {
            let value = param(params, key).ok_or_else(|| StepError::permanent(format!("params.{key}: required")))?;
            if value.chars().count() > max {
                return Err(StepError::permanent(format!("params.{key}: at most {max} characters")));
            }
            Ok(value)
        };
        let number = |key: &str| -> std::result::Result<Option<f64>, StepError> {
            match param(params, key) {
                None => Ok(None),
                Some(v) => v.parse::<f64>().ok().filter(|n| n.is_finite()).map(Some).ok_or_else(|| StepError::permanent(format!("params.{key}: a number"))),
            }
        };
        let checked = (|| -> std::result::Result<Finding, StepError> {
            let title = text("title", 200)?;
            let explanation = text("explanation", 2_000)?;
            let recommendation = text("recommendation", 2_000)?;
            let category: InsightCategory = serde_json::from_value(json!(param(params, "category").unwrap_or_default()))
                .map_err(|_| StepError::permanent(format!("params.category: one of {}", crate::definition::INSIGHT_CATEGORIES.join(", "))))?;
            let confidence = number("confidence")?.unwrap_or(1.0);
            if !(0.0..=1.0).contains(&confidence) {
                return Err(StepError::permanent("params.confidence: from 0 to 1"));
            }
            let unit = param(params, "unit").unwrap_or_else(|| if category == InsightCategory::Revenue { "cents".into() } else { "users".into() });
            if !["cents", "users", "charts"].contains(&unit.as_str()) {
                return Err(StepError::permanent("params.unit: cents, users or charts"));
            }
            let value = number("impact")?.unwrap_or(0.0);
            let series = param(params, "series").unwrap_or_else(|| default_series(category).to_string());
            if series.chars().count() > 100 {
                return Err(StepError::permanent("params.series: at most 100 characters"));
            }
            let desired = match param(params, "desired").as_deref() {
                None | Some("up") => MeasureDirection::Up,
                Some("down") => MeasureDirection::Down,
                Some(_) => return Err(StepError::permanent("params.desired: up or down")),
            };
            let key = match param(params, "key") {
                // Within the workflow's own names: a workflow cannot take
                // over the analytics job's insights or another workflow's.
                Some(key) if key.chars().count() <= 200 => format!("workflow:{}:{key}", workflow.id),
                Some(_) => return Err(StepError::permanent("params.key: at most 200 characters")),
                None => format!("workflow:{}:{}:{}", workflow.id, run.id, step.id),
            };
            let mut evidence = list(params, "evidence");
            if evidence.is_empty() {
                evidence.extend(trigger_entry(run));
            }
            evidence.truncate(50);
            Ok(Finding {
                key,
                title,
                explanation,
                evidence: Evidence { ids: evidence, ..Evidence::default() },
                confidence,
                impact: Impact { value, formula: format!("as given by workflow {:?}", workflow.name), value_cents: (unit == "cents").then_some(value), unit },
                category,
                recommendation,
                query: StoredQuery { method: "GET".into(), path: step_query(workflow, run), params: Default::default() },
                measure: Measure { series, desired },
            })
        })();
        let finding = match checked {
            Ok(finding) => finding,
            Err(e) => return Outcome::failed(input, e),
        };
        let id = insights::id_for(&finding.key);
        let existing = match insights::get(self.store.store(), &id).await {
            Ok(found) => found,
            Err(e) => return Outcome::failed(input, StepError::transient(e.to_string())),
        };
        let now = self.now();
        let origin = InsightOrigin { workflow_id: workflow.id.clone(), run_id: run.id.clone(), step_id: step.id.clone() };
        let (next, action) = match &existing {
            Some(old) => (Insight { origin: Some(origin), ..old.refound(finding, now) }, "analytics.insight.refreshed"),
            None => (Insight { origin: Some(origin), ..Insight::found(finding, now) }, "analytics.insight.found"),
        };
        let mut output = json!({"insight_id": next.id, "location": format!("/api/v1/analytics/insights/{}", next.id), "created": existing.is_none(),
            "status": next.status, "priority": next.priority});
        if mode == Mode::Dry {
            output["dry_run"] = json!(true);
            return Outcome::done(input, output);
        }
        let item = match next.to_item() {
            Ok(item) => item,
            Err(e) => return Outcome::failed(input, StepError::transient(e.to_string())),
        };
        let write = match &existing {
            Some(old) => Write::put_versioned(self.store.table(), item, old.version),
            None => Write::put_new(self.store.table(), item, shared::platform::error::Error::Conflict(format!("insight {} exists", next.id))),
        };
        let write = match write {
            Ok(write) => write,
            Err(e) => return Outcome::failed(input, StepError::transient(e.to_string())),
        };
        let audit = AuditEntry::at(now, &workflow_actor(workflow, run), action, "insight", &next.id)
            .reason(format!("workflow {:?} ({}), run {}, step {}", workflow.name, workflow.id, run.id, step.id))
            .changes(existing.as_ref().map(Insight::audit_view).as_ref(), Some(&next.audit_view()));
        Outcome { writes: vec![write], audit: Some(audit), ..Outcome::done(input, output) }
    }

    /// Raise a security event beside the detectors': the same record, the
    /// same email to the security contacts when high, the same audit
    /// action (`security_event.detected`) and metric. One per run and
    /// step: a redelivered message records nothing twice.
    pub(super) async fn raise_security_event(
        &self,
        workflow: &Workflow,
        run: &Run,
        step: &Step,
        params: &Map<String, Value>,
        input: Value,
        mode: Mode,
    ) -> Outcome {
        use shared::domain::security_events::{self, Finding, Kind, Severity};
        let checked = (|| -> std::result::Result<Finding, StepError> {
            let severity =
                param(params, "severity").as_deref().and_then(Severity::parse).ok_or_else(|| StepError::permanent("params.severity: low, medium or high"))?;
            let summary = param(params, "summary").ok_or_else(|| StepError::permanent("params.summary: required"))?;
            let recommendation = param(params, "recommendation").ok_or_else(|| StepError::permanent("params.recommendation: required"))?;
            for (key, value) in [("summary", &summary), ("recommendation", &recommendation)] {
                if value.chars().count() > 2_000 {
                    return Err(StepError::permanent(format!("params.{key}: at most 2,000 characters")));
                }
            }
            let principal = match param(params, "principal") {
                Some(id) if shared::store::ids::UserId::parse(&id).is_some() => Some(id),
                Some(id) => return Err(StepError::permanent(format!("params.principal: {id:?} is not a user id"))),
                None => None,
            };
            let source_ip = match param(params, "source_ip") {
                Some(ip) if ip.parse::<std::net::IpAddr>().is_ok() => Some(ip),
                Some(ip) => return Err(StepError::permanent(format!("params.source_ip: {ip:?} is not an IP address"))),
                None => None,
            };
            let mut evidence = list(params, "evidence");
            if evidence.is_empty() {
                evidence.extend(trigger_entry(run));
            }
            evidence.truncate(50);
            let occurred_at =
                run.context.pointer("/event/at").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| shared::store::timestamp(self.now()));
            Ok(Finding {
                kind: Kind::Workflow,
                severity,
                key: format!("workflow:{}:{}:{}", workflow.id, run.id, step.id),
                principal,
                source_ip,
                occurred_at,
                summary,
                recommendation,
                evidence,
            })
        })();
        let finding = match checked {
            Ok(finding) => finding,
            Err(e) => return Outcome::failed(input, e),
        };
        let contacts = match shared::domain::system_settings::load_current(self.store.store()).await {
            Ok(settings) => settings.settings.security_contacts,
            Err(e) => return Outcome::failed(input, StepError::transient(e.to_string())),
        };
        let actor = workflow_actor(workflow, run);
        let (event, writes, audit) = match security_events::record(&self.store, &finding, &contacts, &actor, self.now()).await {
            Ok(recorded) => recorded,
            Err(e) => return Outcome::failed(input, StepError::transient(e.to_string())),
        };
        let mut output = json!({"event_id": event.id, "location": format!("/api/v1/compliance/security-events/{}", event.id), "severity": event.severity,
            "notified": event.notified, "evidence": event.evidence});
        if mode == Mode::Dry {
            output["dry_run"] = json!(true);
            return Outcome::done(input, output);
        }
        let reason = format!("{} (workflow {:?}, run {}, step {})", audit.reason.clone().unwrap_or_default(), workflow.name, run.id, step.id);
        let high = (event.severity == Severity::High).then_some(event.kind);
        Outcome { writes, audit: Some(audit.reason(reason)), high_security_event: high, ..Outcome::done(input, output) }
    }
}

/// The series whose change tells whether acting on an insight of this
/// category worked, when the step does not name one.
fn default_series(category: shared::domain::insights::InsightCategory) -> &'static str {
    use shared::domain::insights::InsightCategory::*;
    match category {
        Revenue => "revenue_cents",
        Churn => "mrr",
        Growth => "signups",
        Engagement | Security => "active_users",
        Moderation => "charts_created",
    }
}
