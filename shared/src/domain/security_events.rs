//! Security events (docs/compliance.md, "Security events"): what the
//! compliance function's detectors find in the audit log, and what a
//! workflow raises (`security_event.raise`). Both record an event the same
//! way ([`record`]): once (its id derived from its key), with its audit
//! entry (`security_event.detected`, which workflows listen to) and, when
//! high and the settings name security contacts, the email job to them,
//! all in one transaction. A new high event also raises the
//! `SecurityEventsHigh` metric ([`emit_high_metric`], after the commit).
//!
//! Keys: `SECEVENT#<id> / EVENT`, listed through gsi1 (`SECEVENTS`,
//! `<occurred_at>#<id>`); kept 400 days (`ttl`).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::{Actor, AuditEntry, Journal};
use crate::domain::jobs::{Job, SecurityAlertEmail};
use crate::platform::crypto::sha256_hex;
use crate::platform::error::{Error, Result};
use crate::store::{Write, n, s, timestamp, to_item};

/// The partition key of event `id`.
pub fn event_pk(id: &str) -> String {
    format!("SECEVENT#{id}")
}
pub const EVENT_SK: &str = "EVENT";
/// gsi1's partition listing every event by time.
pub const EVENTS_LIST_PK: &str = "SECEVENTS";
/// Events are kept a year (then expire), as evidence for the annual audit.
pub const EVENT_TTL_DAYS: i64 = 400;
/// The audit action of a recorded event.
pub const DETECTED_ACTION: &str = "security_event.detected";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = SecurityEventKind)]
pub enum Kind {
    BruteForce,
    PasswordSpraying,
    NewCountry,
    ImpossibleTravel,
    PrivilegeEscalation,
    MassExport,
    MfaDisabled,
    RefreshTokenReuse,
    OffHours,
    Probing,
    /// Raised by a workflow's `security_event.raise` step (its summary
    /// says what it saw; the evidence is the entries it acted on).
    Workflow,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::BruteForce,
        Kind::PasswordSpraying,
        Kind::NewCountry,
        Kind::ImpossibleTravel,
        Kind::PrivilegeEscalation,
        Kind::MassExport,
        Kind::MfaDisabled,
        Kind::RefreshTokenReuse,
        Kind::OffHours,
        Kind::Probing,
        Kind::Workflow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::BruteForce => "brute_force",
            Kind::PasswordSpraying => "password_spraying",
            Kind::NewCountry => "new_country",
            Kind::ImpossibleTravel => "impossible_travel",
            Kind::PrivilegeEscalation => "privilege_escalation",
            Kind::MassExport => "mass_export",
            Kind::MfaDisabled => "mfa_disabled",
            Kind::RefreshTokenReuse => "refresh_token_reuse",
            Kind::OffHours => "off_hours",
            Kind::Probing => "probing",
            Kind::Workflow => "workflow",
        }
    }

    /// The rules that count entries in a sliding window (the others fire
    /// on one entry, or once a day).
    pub fn counts(self) -> bool {
        matches!(self, Kind::BruteForce | Kind::PasswordSpraying | Kind::Probing)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = SecurityEventSeverity)]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub const ALL: &'static [Severity] = &[Severity::Low, Severity::Medium, Severity::High];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    pub fn parse(value: &str) -> Option<Severity> {
        Some(match value {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            _ => return None,
        })
    }
}

/// What a detector found, or a workflow raised.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    pub severity: Severity,
    /// Identifies the finding: the same evidence read again gives the same key.
    pub key: String,
    /// The user it is about (the attacked or the acting account), if any.
    pub principal: Option<String>,
    /// The source address, for the rules about one source.
    pub source_ip: Option<String>,
    /// The time of the entry that completed it.
    pub occurred_at: String,
    /// What was seen, naming no person (the principal is a field).
    pub summary: String,
    pub recommendation: String,
    /// Audit entry ids, oldest first.
    pub evidence: Vec<String>,
}

impl Finding {
    /// Who or what it is about: the account, else the source address.
    pub fn subject(&self) -> String {
        self.principal.clone().or_else(|| self.source_ip.clone()).unwrap_or_default()
    }
}

/// A security event as stored and answered. The principal is stored by
/// audit pseudonym and answered by user id while the person is known (an
/// erased person's events stay, naming nobody).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = DetectedSecurityEvent)]
pub struct SecurityEvent {
    pub id: String,
    pub kind: Kind,
    pub severity: Severity,
    /// When the entry that completed the finding happened.
    pub occurred_at: String,
    pub detected_at: String,
    /// The account it is about (user id; `null` for a source-only finding
    /// or once the person was erased).
    pub principal: Option<String>,
    pub source_ip: Option<String>,
    pub summary: String,
    pub recommendation: String,
    /// Audit entry ids (GET /api/v1/admin/audit-logs/{entry_id}).
    pub evidence: Vec<String>,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    pub acknowledgement_note: Option<String>,
    /// Whether the security contacts were emailed.
    pub notified: bool,
    pub version: u64,
}

/// The id of the event recorded for `key`.
pub fn id_for(key: &str) -> String {
    format!("sev_{}", &sha256_hex(key.as_bytes())[..24])
}

/// A finding as a new event: its item (put only if new), the email job to
/// `contacts` when it is high, and its audit entry by `actor`, for the
/// caller to commit in one transaction (a conflict: recorded before).
pub async fn record(
    journal: &Journal,
    finding: &Finding,
    contacts: &[String],
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<(SecurityEvent, Vec<Write>, AuditEntry)> {
    let store = journal.store();
    let keys = journal.subject_keys()?;
    let id = id_for(&finding.key);
    let principal = match &finding.principal {
        Some(user_id) => Some(keys.pseudonym_of(store, user_id).await?.unwrap_or_else(|| crate::audit::pseudonyms::ERASED.to_string())),
        None => None,
    };
    let notify = finding.severity == Severity::High && !contacts.is_empty();
    let event = SecurityEvent {
        id: id.clone(),
        kind: finding.kind,
        severity: finding.severity,
        occurred_at: finding.occurred_at.clone(),
        detected_at: timestamp(now),
        principal,
        source_ip: finding.source_ip.clone(),
        summary: finding.summary.clone(),
        recommendation: finding.recommendation.clone(),
        evidence: finding.evidence.clone(),
        acknowledged_at: None,
        acknowledged_by: None,
        acknowledgement_note: None,
        notified: notify,
        version: 1,
    };
    let mut item = to_item(&event)?;
    item.insert("pk".into(), s(event_pk(&id)));
    item.insert("sk".into(), s(EVENT_SK));
    item.insert("gsi1pk".into(), s(EVENTS_LIST_PK));
    item.insert("gsi1sk".into(), s(format!("{}#{id}", event.occurred_at)));
    item.insert("type".into(), s("security_event"));
    item.insert("ttl".into(), n((now + Duration::days(EVENT_TTL_DAYS)).timestamp()));
    let mut writes = vec![Write::put_new(store.table(), item, Error::Conflict(format!("security event {id} was recorded before")))?];
    if notify {
        let alert = SecurityAlertEmail {
            event_id: id.clone(),
            kind: finding.kind.as_str().to_string(),
            severity: finding.severity.as_str().to_string(),
            summary: finding.summary.clone(),
            recommendation: finding.recommendation.clone(),
            occurred_at: finding.occurred_at.clone(),
            contacts: contacts.to_vec(),
        };
        writes.push(Job::of(&actor.id, &alert)?.create_write(store.table())?);
    }
    let audit = AuditEntry::at(now, actor, DETECTED_ACTION, "security_event", &id).reason(format!(
        "{} ({}): {}",
        finding.kind.as_str(),
        finding.severity.as_str(),
        finding.summary
    ));
    Ok((event, writes, audit))
}

/// The `SecurityEventsHigh` metric (per kind and in total) for a newly
/// recorded high event: the template's alarm watches it.
pub fn emit_high_metric(kind: Kind) {
    crate::platform::telemetry::emit_metric(&[("Kind", kind.as_str())], &[("SecurityEventsHigh", 1.0, "Count")]);
    crate::platform::telemetry::emit_metric(&[], &[("SecurityEventsHigh", 1.0, "Count")]);
}
