//! GDPR / CCPA subject requests (docs/subject-requests.md): a tracked request
//! of a person to get (export) or erase their data, with the deadline the
//! law sets (GDPR 30 days, CCPA 45 days after it was received), its status,
//! the job doing the work and what came of it.
//!
//! Keys: `REQUEST#id / REQUEST`; gsi1 `OWNER#<subject user id> /
//! received_at#id` (the person's requests, found by an erasure sweeping the
//! person's `OWNER#` partition; dropped once the subject id is cleared);
//! gsi2 `REQUESTS / due_at#id` (every request, soonest deadline first).
//! Every change is written with its audit entry in one transaction.

use crate::audit::Journal;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::{Actor, AuditEntry};
use crate::platform::crypto::sha256_hex;
use crate::platform::error::{Error, Result};
use crate::store::cursor::{KeyPosition, key_of, position_of};
use crate::store::ids::SubjectRequestId;
use crate::store::{Item, QuerySpec, Store, Write, from_item, s, timestamp, to_item};

/// The parameters of a `gdpr_export` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportJobParams {
    pub request_id: String,
    pub subject_id: String,
    pub regime: Regime,
}

impl crate::domain::jobs::JobPayload for ExportJobParams {
    fn kind(&self) -> crate::domain::jobs::JobKind {
        crate::domain::jobs::JobKind::GdprExport
    }
}

/// What a finished `gdpr_export` job records (its `result`). The request's
/// `result` repeats the key, file name, bytes, SHA-256, files and records,
/// with the job id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExportJobResult {
    pub request_id: String,
    pub bucket: String,
    pub key: String,
    /// `application/zip`.
    pub content_type: String,
    /// The download's file name.
    pub file_name: String,
    /// Files in the zip (README and manifest included).
    pub files: u64,
    /// Records per category (`profile`, `charts`, `audit_entries`...).
    pub records: std::collections::BTreeMap<String, u64>,
    pub bytes: u64,
    /// SHA-256 of the zip, hex.
    pub sha256: String,
}

/// The `type` attribute of request items.
pub const ITEM_TYPE: &str = "subject_request";

/// The gsi2 partition holding every request.
pub const ALL_PARTITION: &str = "REQUESTS";

/// At most this many DynamoDB pages are read to fill one listing page (a
/// sparse filter returns a short page and a cursor).
pub const MAX_READS_PER_PAGE: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// A copy of everything Keel holds about the person (GDPR art. 15 and
    /// 20, CCPA right to know).
    Export,
    /// Removal or anonymization of the person's data (GDPR art. 17, CCPA
    /// right to delete).
    Erasure,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Export => "export",
            RequestKind::Erasure => "erasure",
        }
    }
}

/// The law the request is made under; it sets the deadline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// EU/UK GDPR: 30 days.
    #[default]
    Gdpr,
    /// California CCPA/CPRA: 45 days.
    Ccpa,
}

impl Regime {
    pub fn as_str(self) -> &'static str {
        match self {
            Regime::Gdpr => "gdpr",
            Regime::Ccpa => "ccpa",
        }
    }

    /// Days from receipt within which the request must be answered.
    pub fn deadline_days(self) -> i64 {
        match self {
            Regime::Gdpr => 30,
            Regime::Ccpa => 45,
        }
    }

    /// The deadline of a request received at `received_at`.
    pub fn due(self, received_at: DateTime<Utc>) -> DateTime<Utc> {
        received_at + Duration::days(self.deadline_days())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Recorded; the job has not started.
    Received,
    /// The job is working on it.
    InProgress,
    /// Answered (`completed_at`, `result`).
    Completed,
    /// The job gave up (`result.error`); ask again to retry.
    Failed,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Received => "received",
            RequestStatus::InProgress => "in_progress",
            RequestStatus::Completed => "completed",
            RequestStatus::Failed => "failed",
        }
    }

    /// Still being worked on (its deadline runs).
    pub fn is_open(self) -> bool {
        matches!(self, RequestStatus::Received | RequestStatus::InProgress)
    }
}

/// A tracked subject request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubjectRequest {
    pub id: String,
    pub kind: RequestKind,
    pub regime: Regime,
    pub status: RequestStatus,
    /// The user the request is about, while the request is open; an erasure
    /// clears it (the commitment still lets the person recognise it).
    #[serde(default)]
    pub subject_id: Option<String>,
    /// Hex SHA-256 of `"{id}:{user_id}"`: whoever knows the user id can
    /// check that the request is about them, without the id being stored.
    pub subject_commitment: String,
    /// The user id of who made the request (the subject, or an administrator).
    pub requested_by: String,
    /// RFC 3339.
    pub received_at: String,
    /// `received_at` plus the regime's deadline (30 or 45 days).
    pub due_at: String,
    #[serde(default)]
    pub completed_at: Option<String>,
    /// The job doing the work.
    #[serde(default)]
    pub job_id: Option<String>,
    /// What came of it: e.g. `{"bytes", "sha256", ...}` of an export, or an
    /// erasure certificate's summary; `{"error"}` when it failed.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub version: u64,
}

/// The commitment to a subject: hex SHA-256 of `"{request_id}:{user_id}"`.
pub fn commitment(request_id: &str, user_id: &str) -> String {
    sha256_hex(format!("{request_id}:{user_id}").as_bytes())
}

impl SubjectRequest {
    /// A new request about `user_id`, received now.
    pub fn new(kind: RequestKind, regime: Regime, user_id: &str, requested_by: &str) -> SubjectRequest {
        Self::received_at(Utc::now(), kind, regime, user_id, requested_by)
    }

    pub fn received_at(now: DateTime<Utc>, kind: RequestKind, regime: Regime, user_id: &str, requested_by: &str) -> SubjectRequest {
        let id = uuid::Uuid::now_v7().to_string();
        SubjectRequest {
            subject_commitment: commitment(&id, user_id),
            id,
            kind,
            regime,
            status: RequestStatus::Received,
            subject_id: Some(user_id.to_string()),
            requested_by: requested_by.to_string(),
            received_at: timestamp(now),
            due_at: timestamp(regime.due(now)),
            completed_at: None,
            job_id: None,
            result: None,
            version: 1,
        }
    }

    pub fn pk(id: &str) -> String {
        SubjectRequestId::pk_of(id)
    }

    pub const SK: &'static str = "REQUEST";

    /// Whether this request is about `user_id` (by the commitment, so it
    /// also holds once the subject id is cleared).
    pub fn is_about(&self, user_id: &str) -> bool {
        self.subject_commitment == commitment(&self.id, user_id)
    }

    /// Open and past its deadline at `now`.
    pub fn overdue_at(&self, now: DateTime<Utc>) -> bool {
        self.status.is_open() && DateTime::parse_from_rfc3339(&self.due_at).map(|due| now > due.with_timezone(&Utc)).unwrap_or(false)
    }

    pub fn overdue(&self) -> bool {
        self.overdue_at(Utc::now())
    }

    pub fn to_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(Self::pk(&self.id)));
        item.insert("sk".into(), s(Self::SK));
        if let Some(subject) = &self.subject_id {
            item.insert("gsi1pk".into(), s(format!("OWNER#{subject}")));
            item.insert("gsi1sk".into(), s(format!("{}#{}", self.received_at, self.id)));
        }
        item.insert("gsi2pk".into(), s(ALL_PARTITION));
        item.insert("gsi2sk".into(), s(format!("{}#{}", self.due_at, self.id)));
        item.insert("type".into(), s(ITEM_TYPE));
        Ok(item)
    }

    /// The write that records this (new) request; commit it with its audit entry.
    pub fn create_write(&self, table: &str) -> Result<Write> {
        Write::put_new(table, self.to_item()?, Error::Conflict("subject request already exists".into()))
    }

    /// An audit entry about this request: its target is the subject (so the
    /// entry is among the audit entries about the person), or the request
    /// itself once the subject id is cleared.
    pub fn audit(&self, actor: &Actor, action: &str) -> AuditEntry {
        match &self.subject_id {
            Some(subject) => AuditEntry::new(actor, action, "user", subject),
            None => AuditEntry::new(actor, action, ITEM_TYPE, &self.id),
        }
    }

    /// What audit entries record of a request.
    pub fn audit_view(&self) -> Value {
        json!({
            "request_id": self.id, "kind": self.kind, "regime": self.regime, "status": self.status,
            "requested_by": self.requested_by, "received_at": self.received_at, "due_at": self.due_at,
            "completed_at": self.completed_at, "job_id": self.job_id, "result": self.result,
        })
    }
}

/// A request as the API shows it: the record and whether it is overdue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubjectRequestView {
    #[serde(flatten)]
    pub request: SubjectRequest,
    /// Open (received or in progress) and past `due_at`.
    pub overdue: bool,
}

impl From<SubjectRequest> for SubjectRequestView {
    fn from(request: SubjectRequest) -> Self {
        SubjectRequestView { overdue: request.overdue(), request }
    }
}

/// Record a new request with its audit entry, in one transaction.
pub async fn create(store: &Journal, request: &SubjectRequest, audit: AuditEntry) -> Result<()> {
    create_with(store, request, Vec::new(), audit).await
}

/// Record a new request together with other writes (e.g. the job that does
/// the work) and the audit entry, in one transaction. The entry records the
/// request as created.
pub async fn create_with(store: &Journal, request: &SubjectRequest, more: Vec<Write>, audit: AuditEntry) -> Result<()> {
    let mut writes = vec![request.create_write(store.table())?];
    writes.extend(more);
    let audit = audit.changes::<Value, Value>(None, Some(&request.audit_view()));
    store.commit(writes, &audit).await
}

pub async fn get(store: &Store, id: &SubjectRequestId) -> Result<Option<SubjectRequest>> {
    store.get(&id.pk(), SubjectRequest::SK).await
}

/// Replace a request if its stored version is still `expected_version`
/// (409 otherwise), with `audit` in the same transaction. `request` is
/// stored at version `expected_version + 1`, which is returned. The caller
/// adds what changed to the audit entry.
pub async fn update(store: &Journal, request: &SubjectRequest, expected_version: u64, audit: AuditEntry) -> Result<SubjectRequest> {
    let mut next = request.clone();
    next.version = expected_version + 1;
    store.commit(vec![Write::put_versioned(store.table(), next.to_item()?, expected_version)?], &audit).await?;
    Ok(next)
}

/// Optional listing filters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFilter {
    pub status: Option<RequestStatus>,
    pub kind: Option<RequestKind>,
}

/// One page of requests and where the next one starts (none at the end).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestPage {
    pub items: Vec<SubjectRequest>,
    pub next: Option<KeyPosition>,
}

/// Every request, soonest deadline first.
pub async fn list_all(store: &Store, cursor: Option<KeyPosition>, limit: i32) -> Result<RequestPage> {
    list_all_filtered(store, cursor, limit, RequestFilter::default()).await
}

pub async fn list_all_filtered(store: &Store, cursor: Option<KeyPosition>, limit: i32, filter: RequestFilter) -> Result<RequestPage> {
    list(store, "gsi2", "gsi2pk", ALL_PARTITION.to_string(), true, cursor, limit, filter).await
}

/// The requests about `user_id` (while its id is on them), newest first.
pub async fn list_for_subject(store: &Store, user_id: &str, cursor: Option<KeyPosition>, limit: i32) -> Result<RequestPage> {
    list_for_subject_filtered(store, user_id, cursor, limit, RequestFilter::default()).await
}

pub async fn list_for_subject_filtered(store: &Store, user_id: &str, cursor: Option<KeyPosition>, limit: i32, filter: RequestFilter) -> Result<RequestPage> {
    list(store, "gsi1", "gsi1pk", format!("OWNER#{user_id}"), false, cursor, limit, filter).await
}

/// Every request about `user_id`, all pages.
pub async fn all_for_subject(store: &Store, user_id: &str) -> Result<Vec<SubjectRequest>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = list_for_subject(store, user_id, cursor, 100).await?;
        out.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn list(
    store: &Store,
    index: &str,
    pk_name: &str,
    pk: String,
    forward: bool,
    cursor: Option<KeyPosition>,
    limit: i32,
    filter: RequestFilter,
) -> Result<RequestPage> {
    let mut filters = vec!["#type = :type"];
    let mut values: Vec<(&str, AttributeValue)> = vec![(":pk", s(pk)), (":type", s(ITEM_TYPE))];
    let mut names: Vec<(&str, &str)> = vec![("#pk", pk_name), ("#type", "type")];
    if let Some(status) = filter.status {
        filters.push("#status = :status");
        names.push(("#status", "status"));
        values.push((":status", s(status.as_str())));
    }
    if let Some(kind) = filter.kind {
        filters.push("#kind = :kind");
        names.push(("#kind", "kind"));
        values.push((":kind", s(kind.as_str())));
    }
    let filter_text = filters.join(" AND ");
    let spec = QuerySpec { index: Some(index), key_condition: "#pk = :pk", filter: &filter_text, names, values, forward, ..QuerySpec::default() };
    let (page, last) = store.query_filled(&spec, cursor.as_ref().map(key_of), limit, MAX_READS_PER_PAGE).await?;
    let items = page.into_iter().map(from_item::<SubjectRequest>).collect::<Result<Vec<_>>>()?;
    let start = last.as_ref().map(position_of).transpose()?;
    Ok(RequestPage { items, next: start })
}

/// Erasure jobs belong to no user: the person may be the requester, and the
/// job record must not name them once it is done.
pub const ERASURE_JOB_OWNER: &str = "erasure";

/// One erasure of a person at a time: a guard item in their own partition,
/// so the erasure deletes it with everything else.
pub fn erasure_guard(table: &str, user_id: &str, request_id: &str) -> Result<Write> {
    Write::put_new(
        table,
        Item::from([("pk".to_string(), s(format!("USER#{user_id}"))), ("sk".to_string(), s("ERASURE")), ("request_id".to_string(), s(request_id))]),
        Error::Conflict(format!("an erasure of user {user_id} is already under way")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn deadlines_follow_the_regime() {
        assert_eq!(Regime::default(), Regime::Gdpr);
        let received = at("2026-01-31T10:00:00Z");
        let gdpr = SubjectRequest::received_at(received, RequestKind::Export, Regime::Gdpr, "u1", "u1");
        assert_eq!(gdpr.due_at, "2026-03-02T10:00:00.000000Z");
        let ccpa = SubjectRequest::received_at(received, RequestKind::Export, Regime::Ccpa, "u1", "admin");
        assert_eq!(ccpa.due_at, "2026-03-17T10:00:00.000000Z");
        assert!(!gdpr.overdue_at(at("2026-03-02T10:00:00Z")));
        assert!(gdpr.overdue_at(at("2026-03-02T10:00:01Z")));
        let done = SubjectRequest { status: RequestStatus::Completed, ..gdpr.clone() };
        assert!(!done.overdue_at(at("2027-01-01T00:00:00Z")), "answered requests are not overdue");
    }

    #[test]
    fn the_commitment_names_the_subject_without_the_id() {
        let r = SubjectRequest::new(RequestKind::Erasure, Regime::Gdpr, "u1", "admin");
        assert_eq!(r.subject_commitment, sha256_hex(format!("{}:u1", r.id).as_bytes()));
        let erased = SubjectRequest { subject_id: None, ..r.clone() };
        assert!(erased.is_about("u1") && !erased.is_about("u2"));
        let item = erased.to_item().unwrap();
        assert!(!item.contains_key("gsi1pk"), "a cleared subject leaves the person's partition");
        assert!(!format!("{item:?}").contains("\"u1\""));
        assert_eq!(erased.audit(&Actor::system("t"), "x").target_type, ITEM_TYPE);
    }

    #[test]
    fn keys_and_wire_names() {
        let r = SubjectRequest::received_at(at("2020-01-01T00:00:00Z"), RequestKind::Export, Regime::Ccpa, "u1", "u1");
        let item = r.to_item().unwrap();
        assert_eq!(item["pk"].as_s().unwrap(), &format!("REQUEST#{}", r.id));
        assert_eq!(item["sk"].as_s().unwrap(), "REQUEST");
        assert_eq!(item["gsi1pk"].as_s().unwrap(), "OWNER#u1");
        assert_eq!(item["gsi1sk"].as_s().unwrap(), &format!("{}#{}", r.received_at, r.id));
        assert_eq!(item["gsi2pk"].as_s().unwrap(), "REQUESTS");
        assert_eq!(item["gsi2sk"].as_s().unwrap(), &format!("{}#{}", r.due_at, r.id));
        assert_eq!(from_item::<SubjectRequest>(item).unwrap(), r);
        let view = serde_json::to_value(SubjectRequestView::from(SubjectRequest { status: RequestStatus::InProgress, ..r })).unwrap();
        assert_eq!((view["kind"].as_str(), view["regime"].as_str(), view["status"].as_str()), (Some("export"), Some("ccpa"), Some("in_progress")));
        assert_eq!(view["overdue"], true);
        let parsed: SubjectRequestView = serde_json::from_value(view).unwrap();
        assert!(parsed.overdue);
    }
}
