//! `GET /api/v1/compliance/report?framework=gdpr|ccpa|all&format=json|pdf`:
//! each control measured from live state, with its `status` (pass / warn /
//! fail), its `evidence` (counts, ids, timestamps, digests) and what to do
//! about it. The PDF (a summary page, then one section per framework) is
//! recorded in the audit log by its SHA-256, as is the JSON: whoever holds
//! a copy can show it is the one Keel produced, and when (the audit log is
//! itself sealed into the signed digest chain).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared::audit::AuditEntry;
use shared::domain::jobs::{JobKind, JobStatus};
use shared::domain::subject_requests::{Regime, RequestKind, RequestStatus, SubjectRequest};
use shared::domain::{backups, rollups, system_settings};
use shared::http::Caller;
use shared::platform::crypto::sha256_hex;
use shared::platform::error::{Error, Result};
use shared::store::{QuerySpec, attr_s, s, timestamp};
use utoipa::{IntoParams, ToSchema};

use crate::ComplianceState;
use crate::access_review::AccessReview;
use crate::gdpr::{self, GdprStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ComplianceFramework)]
pub enum Framework {
    Gdpr,
    Ccpa,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Json,
    Pdf,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// `gdpr`, `ccpa` or `all` (default).
    #[param(value_type = Option<String>)]
    pub framework: Option<Framework>,
    /// `json` (default) or `pdf`.
    #[param(value_type = Option<String>)]
    pub format: Option<Format>,
    /// The period the counts cover (default the 30 days up to now).
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ComplianceControlStatus)]
pub enum ControlStatus {
    Fail,
    Warn,
    Pass,
}

impl ControlStatus {
    fn as_str(self) -> &'static str {
        match self {
            ControlStatus::Pass => "pass",
            ControlStatus::Warn => "warn",
            ControlStatus::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ComplianceControl)]
pub struct Control {
    pub id: &'static str,
    pub title: &'static str,
    /// The frameworks (and articles or sections) it answers to.
    pub frameworks: Vec<String>,
    pub status: ControlStatus,
    /// What was measured, in one sentence.
    pub finding: String,
    #[schema(value_type = Object)]
    pub evidence: Value,
    pub remediation: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ComplianceReport)]
pub struct Report {
    pub framework: Framework,
    pub generated_at: String,
    pub generated_by: String,
    pub from: String,
    pub to: String,
    /// Controls per status.
    pub summary: BTreeMap<String, u64>,
    pub controls: Vec<Control>,
}

fn control(id: &'static str, title: &'static str, frameworks: &[&str], status: ControlStatus, finding: String, evidence: Value, remediation: &str) -> Control {
    Control { id, title, frameworks: frameworks.iter().map(|f| f.to_string()).collect(), status, finding, evidence, remediation: remediation.to_string() }
}

/// Everything the controls are measured from, read once.
pub struct Evidence {
    pub now: DateTime<Utc>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub requests: Vec<SubjectRequest>,
    pub gdpr: GdprStatus,
    pub review: AccessReview,
    pub retention_run: Option<Value>,
    pub retention: system_settings::Retention,
    pub encryption: Vec<(String, Option<String>)>,
    pub chain_head: Option<shared::audit::chain::ChainHead>,
    pub verified: Option<shared::audit::digest::Verified>,
    pub exports: BTreeMap<String, u64>,
    pub security_events: Vec<(String, String, String)>,
    /// What the security detectors found in the period.
    pub detected: Vec<crate::security_events::SecurityEvent>,
    pub backups: Vec<backups::Backup>,
}

/// The controls, from the evidence (pure: the tests feed it directly).
pub fn controls(e: &Evidence, framework: Framework) -> Vec<Control> {
    let regimes: &[Regime] = match framework {
        Framework::Gdpr => &[Regime::Gdpr],
        Framework::Ccpa => &[Regime::Ccpa],
        Framework::All => &[Regime::Gdpr, Regime::Ccpa],
    };
    let mut out = Vec::new();

    // Lawful basis (GDPR art. 6, 7 and 30): every kind of personal record
    // names its basis (the register lives with the data inventory, next to
    // the code that writes the records), and consent, where processing
    // relies on it, is recorded: email marketing reaches only addresses
    // that confirmed (double opt-in, with its time).
    let register: Vec<Value> = e.gdpr.data_inventory.iter().map(|i| json!({"record": i.record, "lawful_basis": i.lawful_basis})).collect();
    let missing: Vec<&str> = e.gdpr.data_inventory.iter().filter(|i| i.lawful_basis.trim().is_empty()).map(|i| i.record).collect();
    let consent = &e.gdpr.consent;
    out.push(control(
        "lawful_basis",
        "Every processing of personal data has a recorded lawful basis; consent is recorded where relied on",
        &["GDPR art. 6", "GDPR art. 7", "GDPR art. 30", "CCPA §1798.120"],
        if missing.is_empty() { ControlStatus::Pass } else { ControlStatus::Fail },
        format!(
            "{} kinds of personal record, {} without a basis; email-marketing consent: {} confirmed, {} pending, {} withdrawn",
            register.len(),
            missing.len(),
            consent.marketing_confirmed,
            consent.marketing_pending,
            consent.marketing_unsubscribed
        ),
        json!({"register": register, "without_basis": missing, "consent": consent}),
        "Name the lawful basis of each new kind of personal record in the data inventory (functions/compliance/src/gdpr.rs); marketing reaches only confirmed subscribers, and a withdrawal (one-click unsubscribe) takes effect at once.",
    ));

    // Subject-request deadlines (GDPR art. 12(3): a month; CCPA §1798.130: 45 days).
    let open: Vec<_> = e.gdpr.open_requests.iter().filter(|r| regimes.contains(&r.regime)).collect();
    let overdue: Vec<&str> = open.iter().filter(|r| r.overdue).map(|r| r.id.as_str()).collect();
    let closed: Vec<&SubjectRequest> = e
        .requests
        .iter()
        .filter(|r| regimes.contains(&r.regime) && !r.status.is_open())
        .filter(|r| r.completed_at.as_deref().is_some_and(|c| c >= timestamp(e.from).as_str() && c < timestamp(e.to).as_str()))
        .collect();
    let late: Vec<&str> = closed.iter().filter(|r| r.completed_at.as_deref() > Some(r.due_at.as_str())).map(|r| r.id.as_str()).collect();
    let status = if !overdue.is_empty() {
        ControlStatus::Fail
    } else if !late.is_empty() {
        ControlStatus::Warn
    } else {
        ControlStatus::Pass
    };
    out.push(control(
        "subject_request_deadlines",
        "Subject requests answered within the legal deadline",
        &["GDPR art. 12(3)", "CCPA §1798.130"],
        status,
        format!("{} open ({} overdue); {} closed in the period, {} after their deadline", open.len(), overdue.len(), closed.len(), late.len()),
        json!({"open": open.len(), "overdue_ids": overdue, "closed": closed.len(), "closed_late_ids": late,
               "median_days_to_close": e.gdpr.closed.median_days_to_close, "next_due": open.first().map(|r| &r.due_at)}),
        "Work the overdue requests first (GET /api/v1/data/requests); an export or erasure is started with POST /api/v1/data/export/gdpr or POST /api/v1/data/erase.",
    ));

    // Erasure certificates (GDPR art. 17, CCPA §1798.105).
    let erasures: Vec<&SubjectRequest> = closed.iter().copied().filter(|r| r.kind == RequestKind::Erasure && r.status == RequestStatus::Completed).collect();
    let certified: Vec<Value> = erasures
        .iter()
        .filter_map(|r| r.result.as_ref().and_then(|v| v.get("certificate_sha256")).map(|sha| json!({"request_id": r.id, "certificate_sha256": sha})))
        .collect();
    let uncertified: Vec<&str> =
        erasures.iter().filter(|r| r.result.as_ref().and_then(|v| v.get("certificate_sha256")).is_none()).map(|r| r.id.as_str()).collect();
    let failed: Vec<&str> = closed.iter().filter(|r| r.kind == RequestKind::Erasure && r.status == RequestStatus::Failed).map(|r| r.id.as_str()).collect();
    out.push(control(
        "erasure_certificates",
        "Every erasure is certified",
        &["GDPR art. 17", "CCPA §1798.105"],
        if !uncertified.is_empty() || !failed.is_empty() { ControlStatus::Fail } else { ControlStatus::Pass },
        format!("{} erasures completed in the period, {} with a signed certificate; {} failed", erasures.len(), certified.len(), failed.len()),
        json!({"certificates": certified, "without_certificate": uncertified, "failed": failed}),
        "Retry failed erasures (POST /api/v1/data/erase); a certificate is issued by each completed erasure (GET /api/v1/data/requests/{id}/certificate).",
    ));

    // Retention enforced (GDPR art. 5(1)(e), CCPA §1798.100(a)(3)).
    let ran_at = e.retention_run.as_ref().and_then(|r| r["ran_at"].as_str()).and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc));
    let status = match ran_at {
        None => ControlStatus::Fail,
        Some(t) if e.now - t > Duration::hours(2) => ControlStatus::Warn,
        Some(_) => ControlStatus::Pass,
    };
    out.push(control(
        "retention_enforced",
        "Retention policies enforced",
        &["GDPR art. 5(1)(e)", "CCPA §1798.100(a)(3)"],
        status,
        match ran_at {
            Some(t) => format!("the retention sweep last ran at {} (hourly)", timestamp(t)),
            None => "the retention sweep has never run".into(),
        },
        json!({"policy": e.retention, "last_run": e.retention_run}),
        "The sweep runs hourly (JobsFunction's RetentionSweep schedule): check the jobs function's errors and logs if it has not run for two hours.",
    ));

    // Encryption at rest (GDPR art. 32(1)(a), CCPA §1798.150).
    let unencrypted: Vec<&str> = e.encryption.iter().filter(|(_, key)| key.is_none()).map(|(store, _)| store.as_str()).collect();
    out.push(control(
        "encryption_at_rest",
        "Every store is encrypted at rest with a KMS key",
        &["GDPR art. 32(1)(a)", "CCPA §1798.150"],
        if unencrypted.is_empty() { ControlStatus::Pass } else { ControlStatus::Fail },
        format!("{} of {} stores encrypted with a KMS key", e.encryption.len() - unencrypted.len(), e.encryption.len()),
        json!({"stores": e.encryption.iter().map(|(store, key)| json!({"store": store, "kms_key": key})).collect::<Vec<_>>()}),
        "Redeploy template.yaml: it sets SSE-KMS on the table, every bucket and every queue.",
    ));

    // Audit chain verified (GDPR art. 5(2) accountability, art. 30).
    let status = match (&e.chain_head, &e.verified) {
        (None, _) => ControlStatus::Fail,
        (Some(head), Some(v)) if v.sequence >= head.version => ControlStatus::Pass,
        (Some(_), _) => ControlStatus::Warn,
    };
    out.push(control(
        "audit_chain_verified",
        "The audit log is sealed and verified up to its last digest",
        &["GDPR art. 5(2)", "GDPR art. 30"],
        status,
        match (&e.chain_head, &e.verified) {
            (Some(h), Some(v)) => format!("sealed up to {} (digest {}), verified up to digest {} at {}", h.period_end, h.version, v.sequence, v.verified_at),
            (Some(h), None) => format!("sealed up to {} (digest {}), never verified", h.period_end, h.version),
            (None, _) => "nothing sealed yet".into(),
        },
        json!({"head": e.chain_head.as_ref().map(|h| json!({"digest_id": h.digest_id, "sequence": h.version, "hash": h.hash, "period_end": h.period_end})),
               "verified": e.verified.as_ref().map(|v| json!({"sequence": v.sequence, "digest_id": v.digest_id, "hash": v.hash, "verified_at": v.verified_at}))}),
        "Verify the chain (GET /api/v1/admin/audit-logs/verify, or keel audit verify); the sealer runs every 5 minutes.",
    ));

    // 2FA coverage of privileged roles (GDPR art. 32).
    let privileged = e.review.principals.len();
    let without: Vec<&str> = e.review.principals.iter().filter(|p| !p.two_factor).map(|p| p.user_id.as_str()).collect();
    out.push(control(
        "privileged_2fa",
        "Every privileged account uses two-factor authentication",
        &["GDPR art. 32(1)(b)", "CCPA §1798.150"],
        if without.is_empty() { ControlStatus::Pass } else { ControlStatus::Fail },
        format!("{} of {privileged} privileged accounts use 2FA", privileged - without.len()),
        json!({"privileged": privileged, "without_2fa": without,
               "coverage": if privileged == 0 { 1.0 } else { (privileged - without.len()) as f64 / privileged as f64 }}),
        "Have them enable 2FA (POST /api/v1/auth/2fa/enable) and add their roles to mfa_required_roles (PUT /api/v1/admin/config).",
    ));

    // Access review (GDPR art. 32(1)(b), art. 25).
    let flagged: Vec<Value> = e.review.principals.iter().filter(|p| !p.flags.is_empty()).map(|p| json!({"user_id": p.user_id, "flags": p.flags})).collect();
    out.push(control(
        "access_review",
        "Privileges are held only where they are used",
        &["GDPR art. 25", "GDPR art. 32(1)(b)"],
        if flagged.is_empty() { ControlStatus::Pass } else { ControlStatus::Warn },
        format!("{} privileged principals, {} flagged", privileged, flagged.len()),
        json!({"reviewed_at": e.review.generated_at, "flagged": flagged}),
        "Act on each flag (GET /api/v1/compliance/access-review): remove unused roles, suspend stale accounts.",
    ));

    // Export and download logs (GDPR art. 30, CCPA §1798.185).
    out.push(control(
        "export_logs",
        "Exports of personal data are logged",
        &["GDPR art. 30", "CCPA §1798.185"],
        ControlStatus::Pass,
        format!(
            "{} export jobs in the period, each with its requester and audit entries (downloads are audited as data.export_download)",
            e.exports.values().sum::<u64>()
        ),
        json!({"export_jobs_by_kind": e.exports}),
        "Nothing to do; read them with GET /api/v1/admin/audit-logs?action=data.export_download.",
    ));

    // Breach-relevant security events (GDPR art. 33: 72 hours to notify):
    // the detectors' findings, each to be acknowledged; the raw audit
    // entries behind them as further evidence.
    use crate::security_events::detectors::Severity;
    let open: Vec<&crate::security_events::SecurityEvent> = e.detected.iter().filter(|d| d.acknowledged_at.is_none()).collect();
    let overdue = open
        .iter()
        .filter(|d| d.severity == Severity::High)
        .any(|d| DateTime::parse_from_rfc3339(&d.detected_at).is_ok_and(|t| e.now - t.with_timezone(&Utc) > chrono::Duration::hours(72)));
    let status = if overdue {
        ControlStatus::Fail
    } else if !open.is_empty() {
        ControlStatus::Warn
    } else {
        ControlStatus::Pass
    };
    let mut by_action: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, action, _) in &e.security_events {
        *by_action.entry(action.as_str()).or_default() += 1;
    }
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for d in &e.detected {
        *by_kind.entry(d.kind.as_str()).or_default() += 1;
    }
    out.push(control(
        "security_events",
        "Breach-relevant security events are reviewed",
        &["GDPR art. 33", "CCPA §1798.150"],
        status,
        format!(
            "{} security events detected in the period, {} not acknowledged ({} high); {} security-relevant audit entries",
            e.detected.len(),
            open.len(),
            open.iter().filter(|d| d.severity == Severity::High).count(),
            e.security_events.len()
        ),
        json!({
            "detected_by_kind": by_kind,
            "open": open.iter().take(50).map(|d| json!({"id": d.id, "kind": d.kind, "severity": d.severity, "detected_at": d.detected_at})).collect::<Vec<_>>(),
            "audit_entries_by_action": by_action,
            "entries": e.security_events.iter().take(50).map(|(ts, action, id)| json!({"ts": ts, "action": action, "audit_entry_id": id})).collect::<Vec<_>>(),
        }),
        "Review each open event (GET /api/v1/compliance/security-events?acknowledged=false), act on its recommendation and acknowledge it with a note; a high event unacknowledged after 72 hours fails this control (the GDPR's notification deadline).",
    ));

    // Backups proven to restore (GDPR art. 32(1)(c)).
    let completed: Vec<&backups::Backup> = e.backups.iter().filter(|b| b.completed_at.is_some() && b.error.is_none()).collect();
    let last = completed.iter().max_by(|a, b| a.created_at.cmp(&b.created_at));
    let last_verify = e.backups.iter().filter_map(|b| b.last_verify.as_ref().map(|v| (b, v))).max_by(|a, b| a.1.verified_at.cmp(&b.1.verified_at));
    let status = match (last, last_verify) {
        (None, _) => ControlStatus::Fail,
        (Some(_), Some((_, v))) if !v.ok => ControlStatus::Fail,
        (Some(b), Some(_)) if e.now - DateTime::parse_from_rfc3339(&b.created_at).map(|t| t.with_timezone(&Utc)).unwrap_or(e.now) > Duration::hours(26) => {
            ControlStatus::Warn
        }
        (Some(_), Some(_)) => ControlStatus::Pass,
        (Some(_), None) => ControlStatus::Warn,
    };
    out.push(control(
        "backups_restorable",
        "Backups are taken daily and proven to restore",
        &["GDPR art. 32(1)(c)"],
        status,
        format!("{} backups; the last at {}; the last verification {}", completed.len(), last.map_or("never", |b| b.created_at.as_str()),
            last_verify.map_or("never ran".to_string(), |(b, v)| format!("of {} {} at {}", b.id, if v.ok { "passed" } else { "failed" }, v.verified_at))),
        json!({"last_backup": last.map(|b| json!({"id": b.id, "created_at": b.created_at, "manifest_sha256": b.manifest_sha256, "item_count": b.item_count})),
               "last_verification": last_verify.map(|(b, v)| json!({"backup_id": b.id, "ok": v.ok, "verified_at": v.verified_at, "items_checked": v.items_checked, "problems": v.problems})),
               "erasures_reapplied_on_restore": true}),
        "Take and verify a backup (POST /api/v1/admin/backups, then POST /api/v1/admin/backups/{id}/verify); the schedule does both daily and weekly.",
    ));

    out
}

/// Read every piece of evidence.
pub async fn gather(state: &ComplianceState, now: DateTime<Utc>, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Evidence> {
    let store = state.platform.store.store();
    let requests = gdpr::all_requests(store).await?;
    let settings = state.platform.settings.current().await?;
    let mut gdpr = gdpr::status_of(&requests, now, from, to, &settings.settings.retention);
    gdpr.consent = gdpr::consent(store).await?;
    let review = crate::access_review::access_review(state, now).await?;
    let retention_run = store
        .get_item(system_settings::RETENTION_LAST_RUN_PK, system_settings::RETENTION_LAST_RUN_SK)
        .await?
        .map(|item| serde_json::json!({"ran_at": attr_s(&item, "ran_at"), "swept": shared::store::from_item::<Value>(item).ok().and_then(|v| v.get("swept").cloned())}));
    let encryption = crate::encryption::stores(state).await?;
    let chain_head = shared::audit::chain::head(store).await?;
    let verified = shared::audit::chain::last_verified(store).await?;
    let mut exports = BTreeMap::new();
    for status in [JobStatus::Succeeded, JobStatus::Failed, JobStatus::Running, JobStatus::Queued, JobStatus::Cancelled] {
        let spec = QuerySpec {
            index: Some("gsi2"),
            key_condition: "gsi2pk = :pk AND gsi2sk BETWEEN :from AND :to",
            values: vec![(":pk", s(format!("JOBS#{}", status.as_str()))), (":from", s(timestamp(from))), (":to", s(format!("{}~", timestamp(to))))],
            ..QuerySpec::default()
        };
        for item in store.query_all(&spec).await? {
            let kind = attr_s(&item, "kind").unwrap_or("");
            if [JobKind::DataExport, JobKind::GdprExport, JobKind::AuditExport, JobKind::Report].iter().any(|k| k.as_str() == kind) {
                *exports.entry(kind.to_string()).or_insert(0) += 1;
            }
        }
    }
    let spec = QuerySpec {
        key_condition: "pk = :pk AND sk BETWEEN :from AND :to",
        values: vec![(":pk", s(rollups::SECURITY_INDEX_PK)), (":from", s(timestamp(from))), (":to", s(format!("{}~", timestamp(to))))],
        ..QuerySpec::default()
    };
    let security_events = store
        .query_all(&spec)
        .await?
        .iter()
        .map(|i| (attr_s(i, "ts").unwrap_or("").to_string(), attr_s(i, "action").unwrap_or("").to_string(), attr_s(i, "id").unwrap_or("").to_string()))
        .collect();
    let backups = backups::list(store).await?;
    let detected = crate::security_events::between(store, &timestamp(from), &timestamp(to), 1_000).await?;
    Ok(Evidence {
        now,
        from,
        to,
        requests,
        gdpr,
        review,
        retention_run,
        retention: settings.settings.retention.clone(),
        encryption,
        chain_head,
        verified,
        exports,
        security_events,
        detected,
        backups,
    })
}

pub fn summary(controls: &[Control]) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = [("pass", 0), ("warn", 0), ("fail", 0)].into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for c in controls {
        *out.entry(c.status.as_str().to_string()).or_default() += 1;
    }
    out
}

/// The report as a PDF: a summary page (counts, every control's status),
/// then a section per framework with each control's finding, evidence and
/// remediation.
pub fn pdf(report: &Report) -> Result<Vec<u8>> {
    use keel_render::{Document, Kpi, Section, Table, TableColumn, Unit};
    let text = |name: &str| TableColumn { name: name.to_string(), unit: Unit::Text };
    let count =
        |status: &str| Kpi { label: format!("controls: {status}"), value: report.summary.get(status).map(|n| *n as f64), unit: Unit::Count, change: None };
    let mut sections = vec![Section {
        title: "Summary".into(),
        description: Some(format!("{} controls measured from live state between {} and {}.", report.controls.len(), report.from, report.to)),
        chart: None,
        table: Table {
            columns: vec![text("control"), text("status"), text("finding")],
            rows: report.controls.iter().map(|c| vec![json!(c.title), json!(c.status.as_str()), json!(c.finding)]).collect(),
        },
    }];
    let frameworks: &[(&str, &str)] = match report.framework {
        Framework::Gdpr => &[("GDPR", "General Data Protection Regulation")],
        Framework::Ccpa => &[("CCPA", "California Consumer Privacy Act")],
        Framework::All => &[("GDPR", "General Data Protection Regulation"), ("CCPA", "California Consumer Privacy Act")],
    };
    // Per framework, a section per control: its articles, finding and
    // remediation as text (wrapped), its evidence as field / value rows.
    for (short, long) in frameworks {
        for c in report.controls.iter().filter(|c| c.frameworks.iter().any(|f| f.starts_with(short))) {
            let articles: Vec<&str> = c.frameworks.iter().filter(|f| f.starts_with(short)).map(String::as_str).collect();
            let rows = match &c.evidence {
                Value::Object(fields) => {
                    fields.iter().map(|(k, v)| vec![json!(k), json!(if let Value::String(s) = v { s.clone() } else { v.to_string() })]).collect()
                }
                other => vec![vec![json!("evidence"), json!(other.to_string())]],
            };
            sections.push(Section {
                title: format!("{short} ({long}): {} [{}]", c.title, c.status.as_str().to_uppercase()),
                description: Some(format!("{}. Finding: {}. Remediation: {}", articles.join(", "), c.finding, c.remediation)),
                chart: None,
                table: Table { columns: vec![text("evidence"), text("value")], rows },
            });
        }
    }
    let document = Document {
        title: "Keel compliance report".into(),
        description: Some(
            "Each control measured from live state, with its evidence. This file's SHA-256 is recorded in Keel's audit log (action compliance.report).".into(),
        ),
        parameters: vec![
            ("framework".into(), format!("{:?}", report.framework).to_lowercase()),
            ("period".into(), format!("{} to {}", report.from, report.to)),
        ],
        data_range: Some((report.from[..10].to_string(), report.to[..10].to_string())),
        generated_at: DateTime::parse_from_rfc3339(&report.generated_at).map(|t| t.with_timezone(&Utc)).unwrap_or_else(|_| Utc::now()),
        requested_by: report.generated_by.clone(),
        page_size: keel_render::PageSize::A4,
        kpis: vec![count("pass"), count("warn"), count("fail")],
        sections,
    };
    keel_render::pdf::render(&document).map_err(|e| Error::internal(format!("compliance report PDF: {e}")))
}

/// The PDF form of the report (the OpenAPI document's name for its body).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct CompliancePdf(pub Vec<u8>);

/// The compliance report, as JSON or a PDF, recorded by its SHA-256.
#[utoipa::path(
    get,
    path = "/api/v1/compliance/report",
    tag = "compliance",
    params(ReportQuery),
    responses(
        (status = 200, description = "The report: JSON, or a PDF with format=pdf; X-Keel-Report-Sha256 is its SHA-256, recorded in the audit log",
         content((Report = "application/json"), (CompliancePdf = "application/pdf"))),
        (status = 400, description = "A bad framework, format or period (named)", body = shared::platform::error::Problem)
    )
)]
pub async fn get(State(state): State<ComplianceState>, caller: Caller, Query(query): Query<ReportQuery>) -> Result<Response> {
    let now = Utc::now();
    let (from, to) = gdpr::period(&gdpr::PeriodQuery { from: query.from.clone(), to: query.to.clone() }, now)?;
    let framework = query.framework.unwrap_or(Framework::All);
    let evidence = gather(&state, now, from, to).await?;
    let controls = controls(&evidence, framework);
    let report = Report {
        framework,
        generated_at: timestamp(now),
        generated_by: caller.principal.user_id.clone(),
        from: timestamp(from),
        to: timestamp(to),
        summary: summary(&controls),
        controls,
    };
    let (bytes, content_type) = match query.format.unwrap_or_default() {
        Format::Json => (serde_json::to_vec(&report).map_err(|e| Error::internal(e.to_string()))?, "application/json"),
        Format::Pdf => (pdf(&report)?, "application/pdf"),
    };
    let sha256 = sha256_hex(&bytes);
    let audit = AuditEntry::new(&caller.actor(), "compliance.report", "compliance_report", &sha256).reason(format!(
        "{content_type} report, framework {:?}, {} to {}: {} pass, {} warn, {} fail; sha256 {sha256}",
        framework, report.from, report.to, report.summary["pass"], report.summary["warn"], report.summary["fail"]
    ));
    state.platform.store.record(&audit).await?;
    let disposition =
        format!("attachment; filename=\"keel-compliance-{}.{}\"", &report.generated_at[..10], if content_type == "application/pdf" { "pdf" } else { "json" });
    let mut response =
        ([(header::CONTENT_TYPE, content_type.to_string()), (header::HeaderName::from_static("x-keel-report-sha256"), sha256)], bytes).into_response();
    if content_type == "application/pdf" {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, disposition.parse().map_err(|_| Error::internal("content-disposition"))?);
    }
    Ok(response)
}
