//! The contract between the `data` API function and the `jobs` worker for
//! imports and bulk operations: job kinds, their parameters, the segment
//! messages bulk jobs fan out over SQS, and where import files and reports
//! live in the exports bucket. See docs/imports-and-bulk.md.

use serde::{Deserialize, Serialize};

use crate::audit::Actor;

/// Kind of the SQS messages that each run one segment of a bulk job
/// (`JobKind::BulkUpdate`, `BulkDelete`, `BulkRestore`).
pub const SEGMENT_KIND: &str = "bulk_segment";
/// How long a bulk job's plan is kept: longer than any run, and the
/// plan of a job whose commit failed vanishes by itself.
pub const PLAN_TTL_SECONDS: i64 = 7 * 86_400;
/// Most targets in one segment message (one worker invocation's share).
pub const SEGMENT_SIZE: usize = 100;
/// Rows written per transaction by an import.
pub const IMPORT_BATCH: usize = 25;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dataset {
    Users,
    Charts,
}

impl Dataset {
    pub fn as_str(self) -> &'static str {
        match self {
            Dataset::Users => "users",
            Dataset::Charts => "charts",
        }
    }

    /// The audit target type of one item.
    pub fn target_type(self) -> &'static str {
        match self {
            Dataset::Users => "user",
            Dataset::Charts => "chart",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportFormat {
    /// A header row naming the columns, then one row per item (RFC 4180).
    Csv,
    /// One JSON object per line.
    Ndjson,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    /// gzip; the decompressed size counts against `limits.max_import_bytes`.
    Gzip,
}

/// Parameters of a `data_import` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportParams {
    pub dataset: Dataset,
    pub format: ImportFormat,
    #[serde(default)]
    pub compression: Compression,
    pub dry_run: bool,
    /// Where the file is uploaded (exports bucket).
    pub object_key: String,
    /// Permissions of the importer when the job was created: imported users
    /// may not get roles beyond them.
    pub granter_permissions: Vec<String>,
    /// Set by `start`: who started it (the audit actor of every created
    /// item), and the uploaded object's ETag, so a file replaced after
    /// start is refused rather than imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

impl crate::domain::jobs::JobPayload for ImportParams {
    fn kind(&self) -> crate::domain::jobs::JobKind {
        crate::domain::jobs::JobKind::DataImport
    }
}

pub fn import_object_key(job_id: &str) -> String {
    format!("imports/{job_id}/upload")
}

pub fn import_report_key(job_id: &str) -> String {
    format!("import-reports/{job_id}.csv")
}

/// A deterministic UUIDv7 for the item created from `row` of import
/// `job_id`: time-ordered by the job's creation, the same on every attempt,
/// so a re-run finds what an earlier attempt wrote instead of writing it again.
pub fn import_item_id(job_created_at: &str, job_id: &str, row: usize) -> String {
    let millis = chrono::DateTime::parse_from_rfc3339(job_created_at).map(|t| t.timestamp_millis().max(0) as u64).unwrap_or(0);
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{job_id}:{row}").as_bytes());
    let mut bytes = [0u8; 10];
    bytes.copy_from_slice(&digest[..10]);
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid().to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkOp {
    Update,
    Delete,
    Restore,
}

impl BulkOp {
    pub fn kind(self) -> crate::domain::jobs::JobKind {
        use crate::domain::jobs::JobKind;
        match self {
            BulkOp::Update => JobKind::BulkUpdate,
            BulkOp::Delete => JobKind::BulkDelete,
            BulkOp::Restore => JobKind::BulkRestore,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BulkOp::Update => "update",
            BulkOp::Delete => "delete",
            BulkOp::Restore => "restore",
        }
    }
}

/// What a bulk update sets on each user; absent fields are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChanges {
    /// `active` or `suspended`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::identity::users::UserStatus>,
    /// ISO 3166-1 alpha-2 country code, e.g. `DE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// What a bulk update sets on each chart; absent fields are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartChanges {
    /// One of `line`, `bar`, `area`, `pie`, `scatter`, `heatmap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Transfer the charts to this (existing, not deleted) user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
}

/// Parameters of a bulk job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkParams {
    pub op: BulkOp,
    pub dataset: Dataset,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_changes: Option<UserChanges>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart_changes: Option<ChartChanges>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asked (the actor of every item's audit entry).
    pub actor: Actor,
    /// Their permissions when they asked: nobody deletes or restores a user
    /// holding permissions beyond their own.
    pub granter_permissions: Vec<String>,
    pub segments: usize,
    /// Soft deletes can be restored for this many days.
    pub restore_window_days: u32,
}

impl crate::domain::jobs::JobPayload for BulkParams {
    fn kind(&self) -> crate::domain::jobs::JobKind {
        self.op.kind()
    }
}

/// One item a bulk job targets, with the version the caller read (a
/// different stored version is reported as a conflict for that item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BulkTarget {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// The SQS message of one segment (its `job_id` and `kind` also parse as a
/// plain `jobs::JobMessage`). Its targets are in the job's plan
/// (`SegmentPlan`); messages sent before plans existed carry them inline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMessage {
    pub job_id: String,
    pub kind: String,
    pub segment: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<BulkTarget>,
}

impl SegmentMessage {
    /// The messages that run every segment of a bulk job (the outbox sends
    /// them when the job is committed).
    pub fn all(job_id: &str, segments: usize) -> Vec<SegmentMessage> {
        (0..segments).map(|segment| SegmentMessage { job_id: job_id.to_string(), kind: SEGMENT_KIND.into(), segment, targets: Vec::new() }).collect()
    }
}

/// One segment of a bulk job's plan (`JOB#id / PLAN#n`): its targets,
/// written before the job is committed (a plan can be larger than one
/// transaction), read by the worker that runs the segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentPlan {
    pub job_id: String,
    pub segment: usize,
    pub targets: Vec<BulkTarget>,
    pub ttl: i64,
}

pub fn plan_sk(segment: usize) -> String {
    format!("PLAN#{segment:06}")
}

impl SegmentPlan {
    pub fn to_item(&self) -> crate::Result<crate::store::Item> {
        use crate::store::s;
        let mut item = crate::store::to_item(self)?;
        item.insert("pk".into(), s(crate::domain::jobs::Job::pk(&self.job_id)));
        item.insert("sk".into(), s(plan_sk(self.segment)));
        item.insert("type".into(), s("bulk_plan"));
        Ok(item)
    }

    pub async fn load(store: &crate::store::Store, job_id: &str, segment: usize) -> crate::Result<Option<SegmentPlan>> {
        store.get(&crate::domain::jobs::Job::pk(job_id), &plan_sk(segment)).await
    }
}

/// What happened to one item of a bulk job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemOutcome {
    /// Changed, with its own audit entry.
    Succeeded,
    /// Already as asked (e.g. already deleted): nothing written.
    Unchanged,
    /// Not changed; `reason` says why.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemResult {
    pub id: String,
    pub outcome: ItemOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Sort key of a bulk job's segment record (`JOB#id / SEG#n`): written once,
/// with the item outcomes, in the transaction that counts the segment into
/// the job's progress, so a redelivered segment is counted once.
pub fn segment_sk(segment: usize) -> String {
    format!("SEG#{segment:06}")
}

/// The record of a finished segment (`JOB#id / SEG#n`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRecord {
    pub job_id: String,
    pub segment: usize,
    pub succeeded: u64,
    pub unchanged: u64,
    pub failed: u64,
    /// The items that were not changed, and why.
    pub failures: Vec<ItemResult>,
    pub done_at: String,
}

impl SegmentRecord {
    pub fn to_item(&self) -> crate::Result<crate::store::Item> {
        use crate::store::s;
        let mut item = crate::store::to_item(self)?;
        item.insert("pk".into(), s(crate::domain::jobs::Job::pk(&self.job_id)));
        item.insert("sk".into(), s(segment_sk(self.segment)));
        item.insert("type".into(), s("bulk_segment"));
        Ok(item)
    }
}

/// The per-item failures of a bulk job's finished segments, in segment order.
pub async fn segment_failures(store: &crate::store::Store, job_id: &str, limit: usize) -> crate::Result<Vec<ItemResult>> {
    use crate::store::s;
    let spec = crate::store::QuerySpec {
        key_condition: "pk = :pk AND begins_with(sk, :seg)",
        values: vec![(":pk", s(crate::domain::jobs::Job::pk(job_id))), (":seg", s("SEG#"))],
        forward: true,
        ..Default::default()
    };
    let mut failures = Vec::new();
    let mut pages = store.query_pages(&spec, None);
    while failures.len() < limit
        && let Some(items) = pages.next(None).await?
    {
        for item in items {
            let record: SegmentRecord = crate::store::from_item(item)?;
            failures.extend(record.failures);
        }
    }
    failures.truncate(limit);
    Ok(failures)
}

/// The size and ETag of an uploaded import file, or `None` when nothing
/// was uploaded yet (a HEAD: nothing of the file is read).
pub async fn head_upload(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> crate::Result<Option<(u64, Option<String>)>> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(head) => Ok(Some((head.content_length().unwrap_or(0).max(0) as u64, head.e_tag().map(str::to_string)))),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
        Err(e) => Err(crate::platform::error::aws("s3 HeadObject (import)")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_ids_are_deterministic_v7() {
        let a = import_item_id("2026-01-02T03:04:05.000006Z", "job-1", 7);
        assert_eq!(a, import_item_id("2026-01-02T03:04:05.000006Z", "job-1", 7));
        assert_ne!(a, import_item_id("2026-01-02T03:04:05.000006Z", "job-1", 8));
        assert_ne!(a, import_item_id("2026-01-02T03:04:05.000006Z", "job-2", 7));
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 7);
    }
}
