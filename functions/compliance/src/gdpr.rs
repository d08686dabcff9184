//! `GET /api/v1/compliance/gdpr`: the GDPR/CCPA status at a glance, from
//! the subject requests as they stand (not from prose): the open ones with
//! their deadlines and days left, the overdue ones, the ones closed in the
//! period with their median time to close and how many were late, and the
//! data inventory (what holds personal data, where, under which key, for
//! how long).

use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use shared::domain::subject_requests::{ALL_PARTITION, Regime, RequestKind, RequestStatus, SubjectRequest};
use shared::platform::error::{Error, FieldError, Result};
use shared::store::{QuerySpec, Store, from_item, s, timestamp};
use utoipa::{IntoParams, ToSchema};

use crate::ComplianceState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    /// Start of the period (RFC 3339; default 30 days before `to`).
    pub from: Option<String>,
    /// End of the period (RFC 3339; default now).
    pub to: Option<String>,
}

/// The period asked for, checked.
pub fn period(query: &PeriodQuery, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let parse = |field: &str, value: &Option<String>| -> Result<Option<DateTime<Utc>>> {
        value
            .as_deref()
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| Error::field(field, "must be an RFC 3339 time, e.g. 2026-01-31T00:00:00Z"))
            })
            .transpose()
    };
    let to = parse("to", &query.to)?.unwrap_or(now);
    let from = parse("from", &query.from)?.unwrap_or(to - Duration::days(30));
    if from >= to {
        return Err(Error::Validation(vec![FieldError::new("from", "must be before to")]));
    }
    if to - from > Duration::days(3660) {
        return Err(Error::field("from", "the period may be at most 10 years"));
    }
    Ok((from, to))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenRequest {
    pub id: String,
    #[schema(value_type = String)]
    pub kind: RequestKind,
    #[schema(value_type = String)]
    pub regime: Regime,
    #[schema(value_type = String)]
    pub status: RequestStatus,
    pub received_at: String,
    pub due_at: String,
    /// Whole days until `due_at` (negative: overdue by that many).
    pub days_left: i64,
    pub overdue: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClosedRequests {
    /// Completed or failed within the period.
    pub count: u64,
    pub completed: u64,
    pub failed: u64,
    /// Closed after their deadline.
    pub late: u64,
    /// Median days from received to closed (none when nothing closed).
    pub median_days_to_close: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InventoryEntry {
    /// The kind of record.
    pub record: &'static str,
    /// Why Keel may process it (GDPR art. 6; the register of processing,
    /// art. 30).
    pub lawful_basis: &'static str,
    /// Where it is kept (table keys, bucket prefix).
    pub location: &'static str,
    pub personal_data: &'static str,
    /// How it is protected at rest.
    pub protection: &'static str,
    /// How long it is kept (from the settings where they decide).
    pub retention: String,
    /// What erasure does to it.
    pub on_erasure: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ComplianceGdprStatus)]
pub struct GdprStatus {
    pub generated_at: String,
    pub from: String,
    pub to: String,
    /// Days the law allows per regime.
    pub deadline_days: std::collections::BTreeMap<&'static str, i64>,
    /// Open requests, soonest deadline first.
    pub open_requests: Vec<OpenRequest>,
    pub overdue: u64,
    pub closed: ClosedRequests,
    /// Consent held now (email marketing, the processing that relies on it):
    /// subscribers by status, from the streams worker's rollup.
    pub consent: Consent,
    pub data_inventory: Vec<InventoryEntry>,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = ComplianceConsent)]
pub struct Consent {
    /// Asked, waiting for the address to confirm (no mail but the confirmation goes out).
    pub marketing_pending: i64,
    /// Double opt-in given: the only addresses campaigns reach.
    pub marketing_confirmed: i64,
    /// Consent withdrawn.
    pub marketing_unsubscribed: i64,
}

/// The consent counts (rollup counters `METRIC#marketing_consent`).
pub async fn consent(store: &Store) -> Result<Consent> {
    use shared::domain::rollups;
    let keys: Vec<(String, String)> = rollups::CONSENT_STATUSES.iter().map(|s| (rollups::pk(rollups::MARKETING_CONSENT), format!("status#{s}"))).collect();
    let mut consent = Consent::default();
    for item in store.batch_get(&keys).await? {
        let value = item.get(rollups::VALUE).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok()).unwrap_or(0);
        match shared::store::attr_s(&item, "sk") {
            Some("status#pending") => consent.marketing_pending = value,
            Some("status#confirmed") => consent.marketing_confirmed = value,
            Some("status#unsubscribed") => consent.marketing_unsubscribed = value,
            _ => {}
        }
    }
    Ok(consent)
}

/// Every subject request (the `REQUESTS` partition of gsi2, by deadline).
pub async fn all_requests(store: &Store) -> Result<Vec<SubjectRequest>> {
    let spec = QuerySpec { index: Some("gsi2"), key_condition: "gsi2pk = :pk", values: vec![(":pk", s(ALL_PARTITION))], forward: true, ..QuerySpec::default() };
    store.query_all(&spec).await?.into_iter().map(from_item).collect()
}

fn at(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value).ok().map(|t| t.with_timezone(&Utc))
}

pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) { (values[mid - 1] + values[mid]) / 2.0 } else { values[mid] })
}

/// The status from the requests, at `now`, for `[from, to)`.
pub fn status_of(
    requests: &[SubjectRequest],
    now: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    retention: &shared::domain::system_settings::Retention,
) -> GdprStatus {
    let mut open = Vec::new();
    let mut closed = ClosedRequests { count: 0, completed: 0, failed: 0, late: 0, median_days_to_close: None };
    let mut days_to_close = Vec::new();
    for request in requests {
        let (Some(received), Some(due)) = (at(&request.received_at), at(&request.due_at)) else { continue };
        if request.status.is_open() {
            open.push(OpenRequest {
                id: request.id.clone(),
                kind: request.kind,
                regime: request.regime,
                status: request.status,
                received_at: request.received_at.clone(),
                due_at: request.due_at.clone(),
                days_left: (due - now).num_days(),
                overdue: now > due,
            });
        } else if let Some(closed_at) = request.completed_at.as_deref().and_then(at)
            && closed_at >= from
            && closed_at < to
        {
            closed.count += 1;
            if request.status == RequestStatus::Completed {
                closed.completed += 1;
            } else {
                closed.failed += 1;
            }
            if closed_at > due {
                closed.late += 1;
            }
            days_to_close.push((closed_at - received).num_seconds() as f64 / 86_400.0);
        }
    }
    open.sort_by(|a, b| a.due_at.cmp(&b.due_at));
    closed.median_days_to_close = median(days_to_close).map(|d| (d * 100.0).round() / 100.0);
    let overdue = open.iter().filter(|r| r.overdue).count() as u64;
    GdprStatus {
        generated_at: timestamp(now),
        from: timestamp(from),
        to: timestamp(to),
        deadline_days: [(Regime::Gdpr.as_str(), Regime::Gdpr.deadline_days()), (Regime::Ccpa.as_str(), Regime::Ccpa.deadline_days())].into(),
        open_requests: open,
        overdue,
        closed,
        consent: Consent::default(),
        data_inventory: inventory(retention),
    }
}

/// What holds personal data. Kept next to the code that writes it: a new
/// kind of personal record belongs here (docs/compliance.md).
pub fn inventory(retention: &shared::domain::system_settings::Retention) -> Vec<InventoryEntry> {
    let days = |d: u32| format!("{d} days (settings: retention)");
    vec![
        InventoryEntry {
            record: "user profile",
            lawful_basis: "contract (GDPR art. 6(1)(b)): the account the person signed up for",
            location: "table USER#<id> / PROFILE",
            personal_data: "email, name, country, password hash, last sign-in",
            protection: "DynamoDB encryption at rest with the table's KMS key",
            retention: "while the account exists; soft-deleted accounts are purged after the restore window".into(),
            on_erasure: "deleted",
        },
        InventoryEntry {
            record: "two-factor secret and recovery codes",
            lawful_basis: "contract, and security of processing (art. 32)",
            location: "table USER#<id> / MFA",
            personal_data: "TOTP secret, recovery code hashes",
            protection: "secret sealed with the data key (envelope encryption), codes hashed",
            retention: "until 2FA is disabled or the account deleted".into(),
            on_erasure: "deleted",
        },
        InventoryEntry {
            record: "sessions and refresh tokens",
            lawful_basis: "contract (signing in), security of processing (art. 32)",
            location: "table SESSION#<id>",
            personal_data: "user id, IP address, user agent",
            protection: "tokens stored as hashes",
            retention: "until expiry (30 days) or sign-out".into(),
            on_erasure: "deleted",
        },
        InventoryEntry {
            record: "audit entries",
            lawful_basis: "legal obligation (art. 6(1)(c): accountability, art. 5(2)) and legitimate interest (security)",
            location: "table AUDIT#<day>",
            personal_data: "pseudonyms; IP, user agent, location (country, coordinates) and changed values sealed under a per-person key",
            protection: "per-person keys (crypto-shredding), hash-chained signed digests",
            retention: days(retention.audit_days),
            on_erasure: "the person's key is destroyed: their fields become unreadable, the chain stays verifiable",
        },
        InventoryEntry {
            record: "security detectors' profiles",
            lawful_basis: "legitimate interest (art. 6(1)(f), recital 49: network and information security)",
            location: "table SECPROFILE#<user id> / PROFILE",
            personal_data: "countries signed in from, the last sign-in's time and coordinates, privileged actions per hour of day, exports per day",
            protection: "DynamoDB encryption at rest with the table's KMS key",
            retention: "while the account exists (exports: the last 15 days)".into(),
            on_erasure: "deleted",
        },
        InventoryEntry {
            record: "security events",
            lawful_basis: "legitimate interest (art. 6(1)(f), recital 49: network and information security)",
            location: "table SECEVENT#<id> / EVENT",
            personal_data: "the account by audit pseudonym, the source IP address, audit entry ids",
            protection: "DynamoDB encryption at rest; the account named only by pseudonym",
            retention: "400 days (TTL), as evidence for the yearly audit".into(),
            on_erasure: "kept (legitimate interest: security); the pseudonym no longer leads to the person",
        },
        InventoryEntry {
            record: "email-marketing subscription",
            lawful_basis: "consent (art. 6(1)(a), 7): double opt-in, recorded with its time; withdrawn by one-click unsubscribe",
            location: "table SUBSCRIBER#<sha256(email)> / META, MKLIST#<list> / <sha256(email)>",
            personal_data: "email address, lists, when consent was asked, given and withdrawn",
            protection: "DynamoDB encryption at rest; confirmation and unsubscribe tokens stored as hashes",
            retention: "while subscribed; an unsubscribed address is kept only as a hash on the suppression list".into(),
            on_erasure: "deleted (the suppression hash stays, so the address is never mailed again)",
        },
        InventoryEntry {
            record: "charts",
            lawful_basis: "contract: the content the person publishes",
            location: "table CHART#<id>",
            personal_data: "owner id, content the person wrote",
            protection: "DynamoDB encryption at rest",
            retention: "while the account exists".into(),
            on_erasure: "deleted",
        },
        InventoryEntry {
            record: "orders",
            lawful_basis: "contract, and legal obligation (tax and accounting records)",
            location: "table ORDER#<id>",
            personal_data: "user id, country",
            protection: "DynamoDB encryption at rest",
            retention: "kept for accounting, unlinked from the person".into(),
            on_erasure: "anonymized (user id removed)",
        },
        InventoryEntry {
            record: "exports and import files",
            lawful_basis: "the requester's own basis for the dataset (contract or legal obligation); subject exports: art. 15/20",
            location: "S3 exports bucket (SSE-KMS)",
            personal_data: "whatever the export or import held",
            protection: "SSE-KMS with the data key, presigned downloads",
            retention: days(retention.exports_days),
            on_erasure: "the person's own exports deleted",
        },
        InventoryEntry {
            record: "jobs",
            lawful_basis: "as the work they carry out",
            location: "table JOB#<id>",
            personal_data: "owner id, parameters",
            protection: "DynamoDB encryption at rest",
            retention: days(retention.jobs_days),
            on_erasure: "deleted",
        },
        InventoryEntry {
            record: "backups",
            lawful_basis: "legitimate interest and security of processing (art. 32(1)(c): restore availability)",
            location: "S3 backups bucket (SSE-KMS, Object Lock)",
            personal_data: "everything the table held when taken",
            protection: "SSE-KMS, versioning, Object Lock (governance)",
            retention: "daily for 35 days, monthly for 12 months (settings: backups)".into(),
            on_erasure: "kept (locked), and erasures are re-applied on every restore from the ERASED# tombstones",
        },
    ]
}

/// The GDPR/CCPA status at a glance.
#[utoipa::path(
    get,
    path = "/api/v1/compliance/gdpr",
    tag = "compliance",
    params(PeriodQuery),
    responses(
        (status = 200, body = GdprStatus),
        (status = 400, description = "A bad period (named)", body = shared::platform::error::Problem)
    )
)]
pub async fn gdpr(State(state): State<ComplianceState>, Query(query): Query<PeriodQuery>) -> Result<Json<GdprStatus>> {
    let now = Utc::now();
    let (from, to) = period(&query, now)?;
    let store = state.platform.store.store();
    let requests = all_requests(store).await?;
    let settings = state.platform.settings.current().await?;
    let mut status = status_of(&requests, now, from, to, &settings.settings.retention);
    status.consent = consent(state.platform.store.store()).await?;
    Ok(Json(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(status: RequestStatus, received: DateTime<Utc>, closed: Option<DateTime<Utc>>, regime: Regime) -> SubjectRequest {
        SubjectRequest {
            id: uuid(),
            kind: RequestKind::Export,
            regime,
            status,
            subject_id: None,
            subject_commitment: String::new(),
            requested_by: "u".into(),
            received_at: timestamp(received),
            due_at: timestamp(regime.due(received)),
            completed_at: closed.map(timestamp),
            job_id: None,
            result: None,
            version: 1,
        }
    }

    fn uuid() -> String {
        format!("r{}", Utc::now().timestamp_nanos_opt().unwrap_or_default())
    }

    #[test]
    fn open_requests_count_down_and_closed_ones_give_a_median() {
        let now = Utc::now();
        let requests = vec![
            request(RequestStatus::Received, now - Duration::days(2), None, Regime::Gdpr),
            request(RequestStatus::InProgress, now - Duration::days(40), None, Regime::Ccpa),
            request(RequestStatus::Received, now - Duration::days(31), None, Regime::Gdpr),
            request(RequestStatus::Completed, now - Duration::days(10), Some(now - Duration::days(8)), Regime::Gdpr),
            request(RequestStatus::Completed, now - Duration::days(50), Some(now - Duration::days(5)), Regime::Gdpr),
            request(RequestStatus::Failed, now - Duration::days(6), Some(now - Duration::days(2)), Regime::Gdpr),
            request(RequestStatus::Completed, now - Duration::days(100), Some(now - Duration::days(90)), Regime::Gdpr),
        ];
        let status = status_of(&requests, now, now - Duration::days(30), now, &Default::default());
        assert_eq!(status.open_requests.len(), 3);
        let days: Vec<i64> = status.open_requests.iter().map(|r| r.days_left).collect();
        assert_eq!(days, vec![-1, 4, 27], "soonest deadline first");
        assert_eq!(status.overdue, 1);
        assert_eq!(status.closed.count, 3, "the one closed 90 days ago is outside the period");
        assert_eq!((status.closed.completed, status.closed.failed, status.closed.late), (2, 1, 1));
        assert_eq!(status.closed.median_days_to_close, Some(4.0));
    }
}
