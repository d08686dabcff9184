//! Keel's logical backups of the table (docs/backups.md): what a backup is
//! (its record, its manifest), the item line format of its files, and the
//! requests that ask for a backup, a verification or a restore (each a job,
//! committed with its audit entry and sent through the outbox). The jobs
//! worker writes and reads the files (`functions/jobs/src/backup.rs`).
//!
//! Files (gzip NDJSON, in the backups bucket under `backups/<id>/`):
//! - `data-<segment>.ndjson.gz`: one line per item written, `{"put": <item
//!   in DynamoDB JSON>}` (every item, or for an incremental backup those
//!   changed since the previous backup);
//! - `state-<segment>.ndjson.gz`: every item of the table at the backup as
//!   `[pk, sk, sha256]`: what a restore must yield, what a verification
//!   compares with and what the next incremental backup is a diff against;
//! - `manifest.json`: the files with their SHA-256, sizes and item counts,
//!   item counts per type, and the previous backup's id and manifest digest;
//! - `deletes.ndjson.gz` (incremental backups): one line per item deleted
//!   since the previous backup, `{"delete": {"pk": .., "sk": ..}}`.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::digest::{canonical_json, typed_item};
use crate::audit::{Actor, AuditEntry, Journal};
use crate::domain::jobs::{Job, JobKind, JobPayload};
use crate::platform::crypto::sha256_hex;
use crate::platform::error::{Error, Result};
use crate::store::{Item, QuerySpec, Store, Write, s, to_item};

/// The manifest format.
pub const FORMAT: &str = "keel-backup/1";
/// The gsi1 partition that lists every backup, newest first.
pub const LIST_PK: &str = "BACKUPS";
/// Restores go to new tables named `<live table>-restore-<suffix>` (IAM
/// allows the jobs worker nothing else), scratch tables of verifications
/// are `<live table>-verify-<backup id>`.
pub const RESTORE_INFIX: &str = "-restore-";
pub const VERIFY_INFIX: &str = "-verify-";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackupKind {
    /// Every item of the table.
    Full,
    /// The items changed or deleted since the previous backup.
    Incremental,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

/// One file of a backup, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupFile {
    /// The object key's last part (`data-0003.ndjson.gz`).
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
    /// Lines in the file (items put, or deleted, or state entries).
    pub items: u64,
}

/// The link to the previous backup of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChainLink {
    pub id: String,
    pub manifest_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub id: String,
    pub kind: BackupKind,
    pub table: String,
    pub started_at: String,
    pub completed_at: String,
    pub duration_ms: u64,
    /// The full backup this chain starts from (itself for a full backup).
    pub base_id: String,
    /// The backup this one is a diff against (none for a full backup).
    pub previous: Option<ChainLink>,
    /// Segments of the parallel Scan (one data file each).
    pub segments: u32,
    /// Every file: `data-<segment>`, `state-<segment>` and, for an
    /// incremental backup, `deletes`.
    pub files: Vec<BackupFile>,
    /// Items in the table at the backup (the state's entries).
    pub item_count: u64,
    /// Items written to the data files (all of them for a full backup).
    pub changed_items: u64,
    pub deleted_items: u64,
    /// Items in the table per type (the key prefix: `USER`, `JOB`...).
    pub counts_by_type: BTreeMap<String, u64>,
}

/// The outcome of a verification, kept on the backup's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupVerifyOutcome {
    pub job_id: String,
    pub ok: bool,
    pub verified_at: String,
    /// Items restored into the scratch table and compared.
    pub items_checked: u64,
    pub duration_ms: u64,
    /// What did not match, each naming the file or the item.
    pub problems: Vec<String>,
}

/// A backup's record (`BACKUP#<id> / META`, listed under gsi1 `BACKUPS`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Backup {
    /// The id of the job that writes it.
    pub id: String,
    pub kind: BackupKind,
    pub status: BackupStatus,
    /// Who asked (a user id, or `system:backups` for the schedule).
    pub requested_by: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The manifest's object key and SHA-256 (the chain's digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<String>,
    /// Items in the table at the backup.
    #[serde(default)]
    pub item_count: u64,
    #[serde(default)]
    pub changed_items: u64,
    #[serde(default)]
    pub deleted_items: u64,
    /// Bytes of all its files (compressed), the manifest included.
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub duration_ms: u64,
    #[serde(default)]
    pub counts_by_type: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verify: Option<BackupVerifyOutcome>,
    /// Deleted by the retention policy (files gone; the record stays as history).
    #[serde(default)]
    pub expired: bool,
    pub version: u64,
}

impl Backup {
    pub fn new(id: &str, kind: BackupKind, requested_by: &str, created_at: &str) -> Backup {
        Backup {
            id: id.to_string(),
            kind,
            status: BackupStatus::Queued,
            requested_by: requested_by.to_string(),
            created_at: created_at.to_string(),
            completed_at: None,
            error: None,
            manifest_key: None,
            manifest_sha256: None,
            base_id: None,
            previous_id: None,
            item_count: 0,
            changed_items: 0,
            deleted_items: 0,
            bytes: 0,
            duration_ms: 0,
            counts_by_type: BTreeMap::new(),
            last_verify: None,
            expired: false,
            version: 1,
        }
    }

    pub fn pk(id: &str) -> String {
        format!("BACKUP#{id}")
    }

    pub fn to_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(Backup::pk(&self.id)));
        item.insert("sk".into(), s("META"));
        item.insert("gsi1pk".into(), s(LIST_PK));
        item.insert("gsi1sk".into(), s(format!("{}#{}", self.created_at, self.id)));
        item.insert("type".into(), s("backup"));
        Ok(item)
    }

    /// The write that stores the next version of this record (checked
    /// against the version read).
    pub fn save_write(&self, table: &str, expected: u64) -> Result<Write> {
        Write::put_versioned(table, self.to_item()?, expected)
    }

    /// Where its files are.
    pub fn prefix(id: &str) -> String {
        format!("backups/{id}/")
    }
}

/// Parameters of a `backup` job (the backup's id is the job's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupJob {
    pub kind: BackupKind,
}

impl JobPayload for BackupJob {
    fn kind(&self) -> JobKind {
        JobKind::Backup
    }
}

/// Parameters of a `backup_verify` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyJob {
    pub backup_id: String,
}

impl JobPayload for VerifyJob {
    fn kind(&self) -> JobKind {
        JobKind::BackupVerify
    }
}

/// Parameters of a `backup_restore` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreJob {
    pub backup_id: String,
    pub target_table: String,
    /// The newest backup of the chain taken at or before this time is
    /// restored (default: `backup_id` itself).
    pub point_in_time: Option<String>,
}

impl JobPayload for RestoreJob {
    fn kind(&self) -> JobKind {
        JobKind::BackupRestore
    }
}

/// Ask for a backup: its record (queued) and its job, committed with the
/// audit entry; the outbox sends the job. Returns the record.
pub async fn request_backup(journal: &Journal, kind: BackupKind, requested_by: &str, actor: &Actor) -> Result<Backup> {
    let job = Job::of(requested_by, &BackupJob { kind })?;
    commit_backup(journal, &job, kind, requested_by, actor).await
}

/// A backup the caller runs itself (the CLI, `by`): its job is created
/// running and claimed, so the outbox never sends it. Returns the record
/// and the job to run.
pub async fn start_backup_here(journal: &Journal, kind: BackupKind, requested_by: &str, actor: &Actor, by: &str) -> Result<(Backup, Job)> {
    let job = claimed(Job::of(requested_by, &BackupJob { kind })?, by);
    Ok((commit_backup(journal, &job, kind, requested_by, actor).await?, job))
}

async fn commit_backup(journal: &Journal, job: &Job, kind: BackupKind, requested_by: &str, actor: &Actor) -> Result<Backup> {
    let backup = Backup::new(&job.id, kind, requested_by, &job.created_at);
    let table = journal.table();
    let audit = AuditEntry::new(actor, "backup.create", "backup", &backup.id).changes::<(), _>(None, Some(&json!({ "kind": kind })));
    journal.commit(vec![job.create_write(table)?, Write::put_new(table, backup.to_item()?, Error::Conflict("backup exists".into()))?], &audit).await?;
    Ok(backup)
}

/// A job created running and claimed by `by`, who runs it (the outbox
/// sends only queued jobs).
fn claimed(mut job: Job, by: &str) -> Job {
    job.status = crate::domain::jobs::JobStatus::Running;
    job.attempts = 1;
    job.claimed_by = Some(by.to_string());
    job
}

/// Ask for a job about an existing backup (`action` is `backup.verify` or
/// `backup.restore`), committed with its audit entry; `run_here` names the
/// caller that runs it itself (the CLI), otherwise the outbox sends it.
pub async fn request_job<P: JobPayload>(
    journal: &Journal,
    owner: &str,
    payload: &P,
    actor: &Actor,
    (action, backup_id): (&str, &str),
    run_here: Option<&str>,
) -> Result<Job> {
    let mut job = Job::of(owner, payload)?;
    if let Some(by) = run_here {
        job = claimed(job, by);
    }
    let audit = AuditEntry::new(actor, action, "backup", backup_id).changes::<(), _>(None, Some(&job.params));
    journal.commit(vec![job.create_write(journal.table())?], &audit).await?;
    Ok(job)
}

pub async fn get(store: &Store, id: &str) -> Result<Option<Backup>> {
    store.get(&Backup::pk(id), "META").await
}

/// Every backup record, newest first (one a day and a year of history is a
/// few hundred items: read whole, for the list and the retention policy).
pub async fn list(store: &Store) -> Result<Vec<Backup>> {
    let spec = QuerySpec { index: Some("gsi1"), key_condition: "gsi1pk = :pk", values: vec![(":pk", s(LIST_PK))], forward: false, ..QuerySpec::default() };
    store.query_all(&spec).await?.into_iter().map(crate::store::from_item).collect()
}

/// A restore's target: a new table named `<live>-restore-<suffix>`, never
/// the live table (a 400 naming `target_table` otherwise).
pub fn check_target_table(live: &str, target: &str) -> Result<()> {
    let prefix = format!("{live}{RESTORE_INFIX}");
    if target == live {
        return Err(Error::field("target_table", "must not be the live table: restores go to a new table"));
    }
    if !target.starts_with(&prefix) || target.len() == prefix.len() {
        return Err(Error::field("target_table", format!("must start with {prefix:?} (a new table)")));
    }
    if target.len() > 255 || !target.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return Err(Error::field("target_table", "must be at most 255 letters, digits, '_', '-' or '.'"));
    }
    Ok(())
}

/// An item's type: its partition key's prefix (`USER#..` → `USER`).
pub fn type_of(item: &Item) -> String {
    let pk = crate::store::attr_s(item, "pk").unwrap_or("");
    pk.split_once('#').map(|(t, _)| t).unwrap_or(pk).to_string()
}

/// SHA-256 of an item's canonical DynamoDB JSON: equal exactly when the
/// stored items are (types included; sets in any order).
pub fn item_hash(item: &Item) -> String {
    sha256_hex(canonical_json(&typed_item(item)).as_bytes())
}

/// A data file's line for an item written.
pub fn put_line(item: &Item) -> String {
    json!({ "put": typed_item(item) }).to_string()
}

/// A data file's line for an item deleted.
pub fn delete_line(pk: &str, sk: &str) -> String {
    json!({ "delete": { "pk": pk, "sk": sk } }).to_string()
}

/// One line of a data file, read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Put(Item),
    Delete { pk: String, sk: String },
}

pub fn parse_line(line: &str) -> Result<Change> {
    let value: Value = serde_json::from_str(line).map_err(|e| Error::internal(format!("not JSON: {e}")))?;
    if let Some(item) = value.get("put") {
        return Ok(Change::Put(item_of(item)?));
    }
    if let Some(key) = value.get("delete") {
        let field = |name: &str| key.get(name).and_then(Value::as_str).map(str::to_string).ok_or_else(|| Error::internal(format!("delete without {name}")));
        return Ok(Change::Delete { pk: field("pk")?, sk: field("sk")? });
    }
    Err(Error::internal("a line that is neither a put nor a delete"))
}

/// An item from DynamoDB JSON (what `typed_item` writes).
pub fn item_of(value: &Value) -> Result<Item> {
    let map = value.as_object().ok_or_else(|| Error::internal("an item that is not an object"))?;
    map.iter().map(|(k, v)| Ok((k.clone(), attribute_of(v)?))).collect()
}

fn attribute_of(value: &Value) -> Result<AttributeValue> {
    let bad = || Error::internal(format!("not a DynamoDB JSON attribute: {value}"));
    let map = value.as_object().filter(|m| m.len() == 1).ok_or_else(bad)?;
    let (tag, inner) = map.iter().next().ok_or_else(bad)?;
    let text = || inner.as_str().map(str::to_string).ok_or_else(bad);
    let texts = || -> Result<Vec<String>> { inner.as_array().ok_or_else(bad)?.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(bad)).collect() };
    let blob = |t: &str| B64.decode(t).map(aws_sdk_dynamodb::primitives::Blob::new).map_err(|_| bad());
    Ok(match tag.as_str() {
        "S" => AttributeValue::S(text()?),
        "N" => AttributeValue::N(text()?),
        "BOOL" => AttributeValue::Bool(inner.as_bool().ok_or_else(bad)?),
        "NULL" => AttributeValue::Null(true),
        "M" => AttributeValue::M(item_of(inner)?),
        "L" => AttributeValue::L(inner.as_array().ok_or_else(bad)?.iter().map(attribute_of).collect::<Result<_>>()?),
        "SS" => AttributeValue::Ss(texts()?),
        "NS" => AttributeValue::Ns(texts()?),
        "B" => AttributeValue::B(blob(&text()?)?),
        "BS" => AttributeValue::Bs(texts()?.iter().map(|t| blob(t)).collect::<Result<_>>()?),
        _ => return Err(bad()),
    })
}

/// The retention policy (docs/backups.md): every backup of the last
/// `daily_days` days, and the first full backup of each of the last
/// `monthly_months` months. A kept incremental keeps its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub daily_days: i64,
    pub monthly_months: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { daily_days: 35, monthly_months: 12 }
    }
}

impl Retention {
    /// The ids of the succeeded backups past the policy at `now`.
    pub fn expired(&self, backups: &[Backup], now: chrono::DateTime<chrono::Utc>) -> Vec<String> {
        use chrono::Datelike;
        let daily_from = crate::store::timestamp(now - chrono::Duration::days(self.daily_days));
        let months = |t: &str| -> Option<i64> {
            let t = crate::platform::time::parse(t)?;
            Some(i64::from(now.year()) * 12 + i64::from(now.month()) - (i64::from(t.year()) * 12 + i64::from(t.month())))
        };
        let done: Vec<&Backup> = backups.iter().filter(|b| b.status == BackupStatus::Succeeded && !b.expired).collect();
        let mut keep: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut monthly: BTreeMap<i64, &Backup> = BTreeMap::new();
        for b in &done {
            if b.created_at >= daily_from {
                keep.insert(&b.id);
            } else if b.kind == BackupKind::Full
                && let Some(age) = months(&b.created_at)
                && age < i64::from(self.monthly_months)
            {
                let first = monthly.entry(age).or_insert(b);
                if b.created_at < first.created_at {
                    *first = b;
                }
            }
        }
        keep.extend(monthly.values().map(|b| b.id.as_str()));
        // The chains of the kept backups.
        let by_id: BTreeMap<&str, &Backup> = done.iter().map(|b| (b.id.as_str(), *b)).collect();
        for id in keep.clone() {
            let mut at = by_id.get(id).and_then(|b| b.previous_id.as_deref());
            while let Some(previous) = at {
                keep.insert(previous);
                at = by_id.get(previous).and_then(|b| b.previous_id.as_deref());
            }
        }
        done.iter().filter(|b| !keep.contains(b.id.as_str())).map(|b| b.id.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: Vec<(&str, AttributeValue)>) -> Item {
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    #[test]
    fn every_attribute_type_round_trips_through_a_line() {
        let original = item(vec![
            ("pk", s("USER#1")),
            ("sk", s("PROFILE")),
            ("n", AttributeValue::N("1.50".into())),
            ("text_number", s("1")),
            ("flag", AttributeValue::Bool(true)),
            ("nothing", AttributeValue::Null(true)),
            ("list", AttributeValue::L(vec![s("a"), AttributeValue::N("2".into())])),
            ("map", AttributeValue::M(item(vec![("inner", AttributeValue::Ss(vec!["x".into(), "y".into()]))]))),
            ("ns", AttributeValue::Ns(vec!["1".into(), "2".into()])),
            ("bin", AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![0u8, 255, 7]))),
            ("bins", AttributeValue::Bs(vec![aws_sdk_dynamodb::primitives::Blob::new(vec![1u8])])),
        ]);
        let Change::Put(back) = parse_line(&put_line(&original)).unwrap() else { panic!("not a put") };
        assert_eq!(back, original);
        assert_eq!(item_hash(&back), item_hash(&original));
        assert_eq!(parse_line(&delete_line("A#1", "B")).unwrap(), Change::Delete { pk: "A#1".into(), sk: "B".into() });
    }

    #[test]
    fn the_hash_tells_a_number_from_a_string() {
        let a = item(vec![("pk", s("X#1")), ("v", AttributeValue::N("1".into()))]);
        let b = item(vec![("pk", s("X#1")), ("v", s("1"))]);
        assert_ne!(item_hash(&a), item_hash(&b));
        assert_eq!(type_of(&a), "X");
    }

    #[test]
    fn a_restore_never_targets_the_live_table() {
        let field = |r: Result<()>| match r {
            Err(Error::Validation(errors)) => errors[0].field.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(field(check_target_table("keel-Table", "keel-Table")), "target_table");
        assert_eq!(field(check_target_table("keel-Table", "other")), "target_table");
        assert_eq!(field(check_target_table("keel-Table", "keel-Table-restore-")), "target_table");
        assert_eq!(field(check_target_table("keel-Table", "keel-Table-restore-a b")), "target_table");
        assert!(check_target_table("keel-Table", "keel-Table-restore-2026-12-03").is_ok());
    }

    fn backup(id: &str, kind: BackupKind, created_at: &str, previous: Option<&str>) -> Backup {
        let mut b = Backup::new(id, kind, "system", created_at);
        b.status = BackupStatus::Succeeded;
        b.previous_id = previous.map(str::to_string);
        b
    }

    #[test]
    fn retention_keeps_recent_days_monthly_fulls_and_their_chains() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-03T04:00:00Z").unwrap().with_timezone(&chrono::Utc);
        let backups = vec![
            backup("recent-inc", BackupKind::Incremental, "2026-12-02T03:00:00.000000Z", Some("old-full")),
            backup("old-full", BackupKind::Full, "2026-10-25T03:00:00.000000Z", None),
            backup("old-inc", BackupKind::Incremental, "2026-10-26T03:00:00.000000Z", Some("old-full")),
            backup("oct-first", BackupKind::Full, "2026-10-04T03:00:00.000000Z", None),
            backup("oct-second", BackupKind::Full, "2026-10-11T03:00:00.000000Z", None),
            backup("too-old", BackupKind::Full, "2025-11-02T03:00:00.000000Z", None),
        ];
        let mut expired = Retention::default().expired(&backups, now);
        expired.sort();
        // old-full stays for the recent incremental's chain, oct-first as
        // October's monthly; too-old is 13 months back.
        assert_eq!(expired, vec!["oct-second", "old-inc", "too-old"]);
    }
}
