//! Insights (docs/analytics.md, "Insights"): ranked findings that the
//! analytics job derives from the metrics, forecasts, anomalies and churn
//! model, each with the numbers behind it, a confidence from the statistics,
//! an estimated impact with its formula, and a lifecycle an operator moves
//! it through. Thirty days after an operator marks one `implemented`, the
//! job measures the insight's metric before and after and sets `verified`
//! or `no_effect`.
//!
//! An insight's id is derived from its `key` (what it is about, e.g.
//! `anomaly:signups:country=US:2026-11-02`), so the job that finds the same
//! thing again updates that insight's figures and keeps its lifecycle.
//!
//! Keys: `INSIGHTS / INSIGHT#<id>`: every insight in one partition (tens
//! of them), so the list is one Query of the table that reads them all at
//! once to rank in memory, costing what the partition holds. Every change
//! is written with its audit entry in one transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditEntry, Journal};
use crate::platform::error::{Error, Result};
use crate::store::ids::InsightId;
use crate::store::{Item, QuerySpec, Store, Write, from_doc_item, s, timestamp, to_doc_item};

/// The `type` attribute of insight items.
pub const ITEM_TYPE: &str = "insight";
/// The partition holding every insight.
pub const PARTITION: &str = "INSIGHTS";
/// Days after `implemented` when the outcome is measured.
pub const OUTCOME_AFTER_DAYS: i64 = 30;
/// The longest note an operator may attach to a status change.
pub const MAX_NOTE_CHARS: usize = 2000;

/// The sort key of insight `id` in [`PARTITION`].
pub fn sort_key(id: &str) -> String {
    format!("INSIGHT#{id}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InsightStatus {
    New,
    Acknowledged,
    InProgress,
    Implemented,
    Dismissed,
    /// Set by the job: the metric moved the desired way, with confidence.
    Verified,
    /// Set by the job: no change the statistics can tell from noise.
    NoEffect,
}

impl InsightStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InsightStatus::New => "new",
            InsightStatus::Acknowledged => "acknowledged",
            InsightStatus::InProgress => "in_progress",
            InsightStatus::Implemented => "implemented",
            InsightStatus::Dismissed => "dismissed",
            InsightStatus::Verified => "verified",
            InsightStatus::NoEffect => "no_effect",
        }
    }

    /// The statuses an operator may set; `verified` and `no_effect` are the
    /// measured outcome's.
    pub fn operator_settable(self) -> bool {
        !matches!(self, InsightStatus::Verified | InsightStatus::NoEffect)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InsightCategory {
    Revenue,
    Churn,
    Growth,
    Engagement,
    Moderation,
    Security,
}

impl InsightCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            InsightCategory::Revenue => "revenue",
            InsightCategory::Churn => "churn",
            InsightCategory::Growth => "growth",
            InsightCategory::Engagement => "engagement",
            InsightCategory::Moderation => "moderation",
            InsightCategory::Security => "security",
        }
    }
}

/// The estimated value at stake, with how it was computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Impact {
    pub value: f64,
    /// `cents` (USD), `users` or `charts`.
    pub unit: String,
    /// The formula with the numbers put in.
    pub formula: String,
    /// The money equivalent in cents where one can be estimated (users ×
    /// paid conversion × ARPA; orders × ARPA), which the priority ranks by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_cents: Option<f64>,
}

/// What the finding rests on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evidence {
    /// Series names (`signups`, `signups{country=US}`, `mrr`...).
    #[serde(default)]
    pub series: Vec<String>,
    /// Ids of customers, anomalies or other items involved.
    #[serde(default)]
    pub ids: Vec<String>,
    /// The figures quoted in the explanation, by name.
    #[serde(default)]
    pub figures: BTreeMap<String, f64>,
}

/// The API request that shows the finding's numbers again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredQuery {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MeasureDirection {
    Up,
    Down,
}

/// The daily series whose change tells whether acting on the insight
/// worked, and which way is better.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Measure {
    /// A daily series name as `keel_models::series` writes it, e.g.
    /// `signups` or `orders{plan=pro}`.
    pub series: String,
    pub desired: MeasureDirection,
}

/// The measured result of an implemented insight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InsightOutcome {
    pub series: String,
    /// Mean daily value over the `OUTCOME_AFTER_DAYS` before `implemented`.
    pub before: f64,
    /// Mean daily value over the `OUTCOME_AFTER_DAYS` from `implemented`.
    pub after: f64,
    /// (after − before) ÷ before; 0 when before is 0.
    pub relative_change: f64,
    /// One-sided confidence that the series moved the desired way
    /// (Welch's t-test on the daily values), in [0, 1].
    pub confidence: f64,
    pub measured_at: String,
}

/// One operator (or job) status change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusChange {
    pub status: InsightStatus,
    pub at: String,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What the job found, before any lifecycle: the part it rewrites on every
/// refresh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = InsightFinding)]
pub struct Finding {
    /// What the finding is about; the id is derived from it.
    pub key: String,
    pub title: String,
    /// The numbers behind it, in words.
    pub explanation: String,
    pub evidence: Evidence,
    /// In [0, 1], from the statistics (each generator says which).
    pub confidence: f64,
    pub impact: Impact,
    pub category: InsightCategory,
    pub recommendation: String,
    pub query: StoredQuery,
    pub measure: Measure,
}

impl Finding {
    /// |Impact| (its money equivalent where there is one) × confidence:
    /// the ranking.
    pub fn priority(&self) -> f64 {
        self.impact.value_cents.unwrap_or(self.impact.value).abs() * self.confidence
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Insight {
    pub id: String,
    #[serde(flatten)]
    pub finding: Finding,
    pub priority: f64,
    pub status: InsightStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default)]
    pub history: Vec<StatusChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implemented_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<InsightOutcome>,
    pub created_at: String,
    pub updated_at: String,
    /// When a refresh last found it; one that the latest refresh did not
    /// find is `stale` (kept for its history).
    pub found_at: String,
    #[serde(default)]
    pub stale: bool,
    /// Raised by a workflow (`insight.create`), not found by the analytics
    /// job: a refresh that does not find it leaves it as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<InsightOrigin>,
    pub version: u64,
}

/// The workflow run (and step) that raised an insight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InsightOrigin {
    pub workflow_id: String,
    pub run_id: String,
    pub step_id: String,
}

/// The id of the insight about `key`: a UUID (v8) from the key's SHA-256.
pub fn id_for(key: &str) -> InsightId {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    InsightId::parse(&uuid::Uuid::new_v8(bytes).to_string()).expect("a UUID is an insight id")
}

impl Insight {
    /// A new insight for `finding`, found at `now`.
    pub fn found(finding: Finding, now: DateTime<Utc>) -> Insight {
        let at = timestamp(now);
        Insight {
            id: id_for(&finding.key).into_string(),
            priority: finding.priority(),
            finding,
            status: InsightStatus::New,
            note: None,
            history: Vec::new(),
            implemented_at: None,
            outcome: None,
            created_at: at.clone(),
            updated_at: at.clone(),
            found_at: at,
            stale: false,
            origin: None,
            version: 1,
        }
    }

    /// A document item (the insight as JSON in `doc`: its evidence and
    /// history are deep, and the list reads every insight), with its keys
    /// and `version` beside it for the version-checked writes.
    pub fn to_item(&self) -> Result<Item> {
        let mut item = to_doc_item(self)?;
        item.insert("version".into(), crate::store::n(self.version));
        item.insert("pk".into(), s(PARTITION));
        item.insert("sk".into(), s(sort_key(&self.id)));
        item.insert("type".into(), s(ITEM_TYPE));
        Ok(item)
    }

    /// The fields an audit entry records.
    pub fn audit_view(&self) -> serde_json::Value {
        serde_json::json!({
            "status": self.status,
            "note": self.note,
            "priority": self.priority,
            "confidence": self.finding.confidence,
            "implemented_at": self.implemented_at,
            "outcome": self.outcome,
            "stale": self.stale,
        })
    }

    /// This insight with an operator's status change applied.
    pub fn with_status(&self, status: InsightStatus, note: Option<String>, by: &str, now: DateTime<Utc>) -> Result<Insight> {
        if !status.operator_settable() {
            return Err(Error::field("status", format!("{} is set by the outcome measurement, not by hand", status.as_str())));
        }
        if matches!(self.status, InsightStatus::Verified | InsightStatus::NoEffect) {
            return Err(Error::Conflict(format!("the insight's outcome was measured ({}); its status is final", self.status.as_str())));
        }
        if let Some(n) = &note
            && n.chars().count() > MAX_NOTE_CHARS
        {
            return Err(Error::field("note", format!("at most {MAX_NOTE_CHARS} characters")));
        }
        let at = timestamp(now);
        let mut next = self.clone();
        next.status = status;
        if note.is_some() {
            next.note = note.clone();
        }
        // Marking it implemented (again) starts the 30 days over.
        if status == InsightStatus::Implemented {
            next.implemented_at = Some(at.clone());
        } else if self.status == InsightStatus::Implemented {
            next.implemented_at = None;
        }
        next.history.push(StatusChange { status, at: at.clone(), by: by.to_string(), note });
        next.updated_at = at;
        next.version = self.version + 1;
        Ok(next)
    }

    /// This insight with the job's new figures for it (lifecycle kept).
    pub fn refound(&self, finding: Finding, now: DateTime<Utc>) -> Insight {
        let at = timestamp(now);
        let mut next = self.clone();
        next.priority = finding.priority();
        next.finding = finding;
        next.found_at = at.clone();
        next.updated_at = at;
        next.stale = false;
        next.version = self.version + 1;
        next
    }

    /// Whether its outcome is due for measuring at `now`.
    pub fn outcome_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.status != InsightStatus::Implemented {
            return None;
        }
        let at = DateTime::parse_from_rfc3339(self.implemented_at.as_deref()?).ok()?.with_timezone(&Utc);
        (now >= at + chrono::Duration::days(OUTCOME_AFTER_DAYS)).then_some(at)
    }

    /// This insight with its measured outcome: `verified` when the series
    /// moved the desired way with confidence ≥ `threshold`, else `no_effect`.
    pub fn measured(&self, outcome: InsightOutcome, threshold: f64, now: DateTime<Utc>) -> Insight {
        let at = timestamp(now);
        let status = if outcome.confidence >= threshold { InsightStatus::Verified } else { InsightStatus::NoEffect };
        let mut next = self.clone();
        next.status = status;
        next.history.push(StatusChange {
            status,
            at: at.clone(),
            by: "analytics".into(),
            note: Some(format!(
                "{} moved {:+.1}% ({:.2} to {:.2} a day), confidence {:.2}",
                outcome.series,
                outcome.relative_change * 100.0,
                outcome.before,
                outcome.after,
                outcome.confidence
            )),
        });
        next.outcome = Some(outcome);
        next.updated_at = at;
        next.version = self.version + 1;
        next
    }
}

pub async fn get(store: &Store, id: &InsightId) -> Result<Option<Insight>> {
    store.get_doc(PARTITION, &sort_key(id)).await
}

/// Every insight (unranked).
pub async fn all(store: &Store) -> Result<Vec<Insight>> {
    let spec = QuerySpec { key_condition: "pk = :pk", values: vec![(":pk", s(PARTITION))], forward: true, ..Default::default() };
    store.query_all(&spec).await?.into_iter().map(from_doc_item).collect()
}

/// Write `next` over `previous` (version-checked) with its audit entry.
pub async fn save(store: &Journal, previous: Option<&Insight>, next: &Insight, audit: AuditEntry) -> Result<()> {
    let write = match previous {
        Some(p) => Write::put_versioned(store.table(), next.to_item()?, p.version)?,
        None => Write::put_new(store.table(), next.to_item()?, Error::Conflict(format!("insight {} exists", next.id)))?,
    };
    store.commit(vec![write], &audit).await
}

/// An operator's status change, audited as `analytics.insight.status`.
pub async fn set_status(store: &Journal, actor: &Actor, id: &InsightId, status: InsightStatus, note: Option<String>, now: DateTime<Utc>) -> Result<Insight> {
    let current = get(store, id).await?.ok_or_else(|| Error::NotFound(format!("no insight {id}")))?;
    let next = current.with_status(status, note, &actor.id, now)?;
    let audit = AuditEntry::at(now, actor, "analytics.insight.status", "insight", &next.id).changes(Some(&current.audit_view()), Some(&next.audit_view()));
    save(store, Some(&current), &next, audit).await?;
    Ok(next)
}

/// Ranked for display: priority descending, then id.
pub fn rank(mut insights: Vec<Insight>) -> Vec<Insight> {
    insights.sort_by(|a, b| b.priority.total_cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
    insights
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding() -> Finding {
        Finding {
            key: "anomaly:signups:country=US:2026-11-02".into(),
            title: "Signups from US fell".into(),
            explanation: "x".into(),
            evidence: Evidence::default(),
            confidence: 0.9,
            impact: Impact { value: -120.0, unit: "users".into(), formula: "f".into(), value_cents: None },
            category: InsightCategory::Growth,
            recommendation: "r".into(),
            query: StoredQuery { method: "GET".into(), path: "/api/v1/analytics/business".into(), params: BTreeMap::new() },
            measure: Measure { series: "signups{country=US}".into(), desired: MeasureDirection::Up },
        }
    }

    #[test]
    fn ids_are_stable_per_key_and_uuids() {
        assert_eq!(id_for("a"), id_for("a"));
        assert_ne!(id_for("a"), id_for("b"));
        assert!(uuid::Uuid::try_parse(id_for("a").as_str()).is_ok());
    }

    #[test]
    fn lifecycle() {
        let now = Utc::now();
        let found = Insight::found(finding(), now);
        assert_eq!(found.status, InsightStatus::New);
        assert!((found.priority - 108.0).abs() < 1e-9, "|impact| x confidence");
        let done = found.with_status(InsightStatus::Implemented, Some("ran a campaign".into()), "u1", now).unwrap();
        assert_eq!(done.implemented_at.as_deref(), Some(timestamp(now).as_str()));
        assert_eq!(done.version, 2);
        assert!(done.outcome_due(now).is_none());
        assert!(done.outcome_due(now + chrono::Duration::days(30)).is_some());
        assert!(matches!(found.with_status(InsightStatus::Verified, None, "u1", now), Err(Error::Validation(_))));
        let out = InsightOutcome { series: "signups".into(), before: 10.0, after: 12.0, relative_change: 0.2, confidence: 0.97, measured_at: timestamp(now) };
        let verified = done.measured(out.clone(), 0.9, now);
        assert_eq!(verified.status, InsightStatus::Verified);
        assert!(matches!(verified.with_status(InsightStatus::New, None, "u1", now), Err(Error::Conflict(_))));
        let none = done.measured(InsightOutcome { confidence: 0.5, ..out }, 0.9, now);
        assert_eq!(none.status, InsightStatus::NoEffect);
        // A refresh keeps the lifecycle.
        let again = done.refound(finding(), now);
        assert_eq!((again.status, again.history.len()), (InsightStatus::Implemented, 1));
        assert!(found.with_status(InsightStatus::Dismissed, Some("x".repeat(MAX_NOTE_CHARS + 1)), "u1", now).is_err());
    }
}
