//! Keel's logical backups (docs/backups.md; the format is
//! `shared::domain::backups`): `backup` jobs write a full or incremental
//! backup from a parallel Scan, `backup_verify` jobs restore one into a
//! scratch table and compare it with its manifest, `backup_restore` jobs
//! restore a chain into a new table and erase again whoever was erased
//! since. The daily and weekly schedules ask for them (`daily`,
//! `weekly_verify`) and apply the retention policy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use aws_sdk_dynamodb::types as ddb;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use shared::audit::Actor;
use shared::domain::backups::{
    self, Backup, BackupFile, BackupJob, BackupKind, BackupStatus, BackupVerifyOutcome, ChainLink, Change, Manifest, RestoreJob, Retention, VerifyJob,
};
use shared::platform::crypto::sha256_hex;
use shared::platform::error::{Error, Result, aws};
use shared::store::{Item, ScanSpec, Store, attr_s, s, timestamp};

use crate::Worker;

/// The `source` of the daily backup's schedule input (template.yaml).
pub const DAILY_SOURCE: &str = "keel.backups";
/// The `source` of the weekly verification's schedule input.
pub const VERIFY_SOURCE: &str = "keel.backups.verify";
/// Segments of the parallel Scan, read concurrently; one data file each.
pub const SEGMENTS: i32 = 8;
/// Items a restore writes per step (BatchWriteItem calls of 25 in turn),
/// so a file is never held decoded in memory.
const RESTORE_CHUNK: usize = 500;
/// A verification names at most this many mismatched items.
const MAX_PROBLEMS: usize = 20;

/// What a backup, verification or restore reports as it goes: the step
/// under way and its count so far (the CLI draws them as progress bars;
/// jobs pass `quiet`).
pub type Progress<'a> = &'a (dyn Fn(&str, u64) + Sync);

pub fn quiet(_: &str, _: u64) {}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::internal(e.to_string())
}

fn gzip(lines: &[String]) -> Result<Vec<u8>> {
    let mut out = None;
    for line in lines {
        SegmentOut::write(&mut out, line)?;
    }
    SegmentOut::finish(out)
}

/// What one Scan segment of a backup produced.
#[derive(Default)]
struct SegmentOut {
    data: Option<GzEncoder<Vec<u8>>>,
    data_lines: u64,
    state: Option<GzEncoder<Vec<u8>>>,
    state_lines: u64,
    counts: BTreeMap<String, u64>,
}

impl SegmentOut {
    fn write(out: &mut Option<GzEncoder<Vec<u8>>>, line: &str) -> Result<()> {
        let encoder = out.get_or_insert_with(|| GzEncoder::new(Vec::new(), Compression::fast()));
        encoder.write_all(line.as_bytes()).and_then(|_| encoder.write_all(b"\n")).map_err(internal)
    }

    fn finish(out: Option<GzEncoder<Vec<u8>>>) -> Result<Vec<u8>> {
        out.unwrap_or_else(|| GzEncoder::new(Vec::new(), Compression::fast())).finish().map_err(internal)
    }
}

/// The previous backup's state, for an incremental backup: each key's hash
/// and whether the Scan met the key again (the others were deleted).
type PreviousState = HashMap<(String, String), (String, AtomicBool)>;

fn key_of(item: &Item) -> (String, String) {
    (attr_s(item, "pk").unwrap_or("").to_string(), attr_s(item, "sk").unwrap_or("").to_string())
}

impl Worker {
    async fn put_backup_object(&self, key: &str, content_type: &str, body: Vec<u8>) -> Result<()> {
        // The bucket's default Object Lock retention (governance, 35 days)
        // applies to every version.
        self.put_sealed(&self.config.backups_bucket, key, content_type, body).await
    }

    async fn get_backup_object(&self, key: &str) -> Result<Vec<u8>> {
        let object = self.s3.get_object().bucket(&self.config.backups_bucket).key(key).send().await.map_err(aws("s3 GetObject (backups bucket)"))?;
        let body = object.body.collect().await.map_err(|e| Error::internal(format!("reading {key}: {e}")))?;
        Ok(body.into_bytes().to_vec())
    }

    async fn delete_backup_files(&self, id: &str) -> Result<u64> {
        let bucket = &self.config.backups_bucket;
        let listed = self.s3.list_objects_v2().bucket(bucket).prefix(Backup::prefix(id)).send().await.map_err(aws("s3 ListObjectsV2 (backups)"))?;
        let mut n = 0;
        for key in listed.contents().iter().filter_map(|o| o.key()) {
            self.s3.delete_object().bucket(bucket).key(key).send().await.map_err(aws("s3 DeleteObject (backups)"))?;
            n += 1;
        }
        Ok(n)
    }
}

/// Save the next version of a backup's record, reading it again if it
/// changed meanwhile (a verification's outcome and the backup's own
/// completion can race).
async fn update_record(worker: &Worker, id: &str, change: impl Fn(&mut Backup)) -> Result<Backup> {
    for _ in 0..5 {
        let current = backups::get(&worker.store, id).await?.ok_or_else(|| Error::Unprocessable(format!("no backup {id}")))?;
        let mut next = current.clone();
        change(&mut next);
        next.version = current.version + 1;
        match worker.store.transact(vec![next.save_write(worker.store.table(), current.version)?]).await {
            Ok(()) => return Ok(next),
            Err(Error::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::internal(format!("backup {id}: its record kept changing")))
}

/// The newest succeeded backup taken before `before`: what an incremental
/// backup is a diff against.
fn previous_of<'a>(all: &'a [Backup], before: &str) -> Option<&'a Backup> {
    all.iter().filter(|b| b.status == BackupStatus::Succeeded && !b.expired && b.created_at.as_str() < before).max_by(|a, b| a.created_at.cmp(&b.created_at))
}

async fn load_manifest(worker: &Worker, backup: &Backup) -> Result<(Manifest, Vec<u8>)> {
    let key = backup.manifest_key.clone().ok_or_else(|| Error::Unprocessable(format!("backup {} has no manifest (status {:?})", backup.id, backup.status)))?;
    let bytes = worker.get_backup_object(&key).await?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Unprocessable(format!("{key}: not a backup manifest: {e}")))?;
    Ok((manifest, bytes))
}

/// Every (pk, sk) → hash of a backup's state files.
async fn load_state(worker: &Worker, manifest: &Manifest) -> Result<HashMap<(String, String), String>> {
    let mut state = HashMap::with_capacity(manifest.item_count as usize);
    for file in &manifest.files.iter().filter(|f| f.name.starts_with("state-")).collect::<Vec<_>>() {
        let key = format!("{}{}", Backup::prefix(&manifest.id), file.name);
        let bytes = worker.get_backup_object(&key).await?;
        if sha256_hex(&bytes) != file.sha256 {
            return Err(Error::Unprocessable(format!("{key}: SHA-256 differs from the manifest")));
        }
        for line in std::io::BufReader::new(GzDecoder::new(bytes.as_slice())).lines() {
            let line = line.map_err(|e| Error::internal(format!("{key}: {e}")))?;
            let (pk, sk, hash): (String, String, String) = serde_json::from_str(&line).map_err(|e| Error::internal(format!("{key}: {e}")))?;
            state.insert((pk, sk), hash);
        }
    }
    Ok(state)
}

pub async fn run_backup(worker: &Worker, job: &shared::domain::jobs::Job) -> Result<Value> {
    run_backup_with(worker, job, &quiet).await
}

/// A `backup` job's work, reporting progress.
pub async fn run_backup_with(worker: &Worker, job: &shared::domain::jobs::Job, progress: Progress<'_>) -> Result<Value> {
    let params: BackupJob = job.payload()?;
    let outcome = write_backup(worker, &job.id, params.kind, progress).await;
    if let Err(e) = &outcome {
        let message = e.to_string();
        update_record(worker, &job.id, |b| {
            b.status = BackupStatus::Failed;
            b.error = Some(message.clone());
        })
        .await?;
    }
    outcome
}

async fn write_backup(worker: &Worker, id: &str, kind: BackupKind, progress: Progress<'_>) -> Result<Value> {
    let started = Instant::now();
    let started_at = timestamp(chrono::Utc::now());
    let record = update_record(worker, id, |b| {
        b.status = BackupStatus::Running;
        b.error = None;
    })
    .await?;
    let all = backups::list(&worker.store).await?;
    let previous = match kind {
        BackupKind::Full => None,
        BackupKind::Incremental => {
            let previous = previous_of(&all, &record.created_at)
                .ok_or_else(|| Error::Unprocessable("an incremental backup needs an earlier backup: take a full backup first".into()))?;
            let (manifest, bytes) = load_manifest(worker, previous).await?;
            Some((previous.clone(), manifest, sha256_hex(&bytes)))
        }
    };
    let previous_state: PreviousState = match &previous {
        Some((_, manifest, _)) => load_state(worker, manifest).await?.into_iter().map(|(k, h)| (k, (h, AtomicBool::new(false)))).collect(),
        None => HashMap::new(),
    };

    // One parallel Scan: each segment writes its data file (every item, or
    // the changed ones) and its part of the state, compressed as it goes.
    let incremental = previous.is_some();
    let read = std::sync::atomic::AtomicU64::new(0);
    let outs = worker
        .store
        .scan_parallel(&ScanSpec::default(), SEGMENTS, |out: &mut SegmentOut, items| {
            let page = items.len() as u64;
            for item in items {
                let key = key_of(&item);
                let hash = backups::item_hash(&item);
                let changed = match previous_state.get(&key) {
                    Some((before, seen)) => {
                        seen.store(true, Ordering::Relaxed);
                        before != &hash
                    }
                    None => true,
                };
                if changed || !incremental {
                    SegmentOut::write(&mut out.data, &backups::put_line(&item))?;
                    out.data_lines += 1;
                }
                *out.counts.entry(backups::type_of(&item)).or_default() += 1;
                SegmentOut::write(&mut out.state, &json!([key.0, key.1, hash]).to_string())?;
                out.state_lines += 1;
            }
            progress("reading the table (items)", read.fetch_add(page, Ordering::Relaxed) + page);
            Ok(())
        })
        .await?;

    let prefix = Backup::prefix(id);
    let mut files = Vec::new();
    let mut counts_by_type: BTreeMap<String, u64> = BTreeMap::new();
    let (mut item_count, mut changed_items) = (0u64, 0u64);
    for (segment, out) in outs.into_iter().enumerate() {
        for (name, body, lines) in [
            (format!("data-{segment:04}.ndjson.gz"), SegmentOut::finish(out.data)?, out.data_lines),
            (format!("state-{segment:04}.ndjson.gz"), SegmentOut::finish(out.state)?, out.state_lines),
        ] {
            files.push(BackupFile { sha256: sha256_hex(&body), bytes: body.len() as u64, items: lines, name: name.clone() });
            worker.put_backup_object(&format!("{prefix}{name}"), "application/gzip", body).await?;
        }
        item_count += out.state_lines;
        changed_items += out.data_lines;
        for (kind, n) in out.counts {
            *counts_by_type.entry(kind).or_default() += n;
        }
    }
    // Keys of the previous state the Scan did not meet: deleted since.
    let mut deleted: Vec<String> =
        previous_state.iter().filter(|(_, (_, seen))| !seen.load(Ordering::Relaxed)).map(|((pk, sk), _)| backups::delete_line(pk, sk)).collect();
    deleted.sort();
    let deleted_items = deleted.len() as u64;
    if incremental {
        let body = gzip(&deleted)?;
        files.push(BackupFile { name: "deletes.ndjson.gz".into(), sha256: sha256_hex(&body), bytes: body.len() as u64, items: deleted_items });
        worker.put_backup_object(&format!("{prefix}deletes.ndjson.gz"), "application/gzip", body).await?;
    }

    let manifest = Manifest {
        format: backups::FORMAT.into(),
        id: id.to_string(),
        kind,
        table: worker.config.table.clone(),
        started_at,
        completed_at: timestamp(chrono::Utc::now()),
        duration_ms: started.elapsed().as_millis() as u64,
        base_id: previous.as_ref().map(|(p, m, _)| if m.base_id.is_empty() { p.id.clone() } else { m.base_id.clone() }).unwrap_or_else(|| id.to_string()),
        previous: previous.as_ref().map(|(p, _, digest)| ChainLink { id: p.id.clone(), manifest_sha256: digest.clone() }),
        segments: SEGMENTS as u32,
        files,
        item_count,
        changed_items,
        deleted_items,
        counts_by_type,
    };
    let body = serde_json::to_vec_pretty(&manifest).map_err(internal)?;
    let manifest_sha256 = sha256_hex(&body);
    let manifest_key = format!("{prefix}manifest.json");
    let bytes = manifest.files.iter().map(|f| f.bytes).sum::<u64>() + body.len() as u64;
    worker.put_backup_object(&manifest_key, "application/json", body).await?;
    let done = update_record(worker, id, |b| {
        b.status = BackupStatus::Succeeded;
        b.completed_at = Some(manifest.completed_at.clone());
        b.manifest_key = Some(manifest_key.clone());
        b.manifest_sha256 = Some(manifest_sha256.clone());
        b.base_id = Some(manifest.base_id.clone());
        b.previous_id = manifest.previous.as_ref().map(|p| p.id.clone());
        b.item_count = manifest.item_count;
        b.changed_items = manifest.changed_items;
        b.deleted_items = manifest.deleted_items;
        b.bytes = bytes;
        b.duration_ms = started.elapsed().as_millis() as u64;
        b.counts_by_type = manifest.counts_by_type.clone();
    })
    .await?;
    serde_json::to_value(&done).map_err(internal)
}

/// The backups a restore of `target` applies, oldest (the full one) first.
async fn chain_of(worker: &Worker, target: &Backup) -> Result<Vec<Backup>> {
    let mut chain = vec![target.clone()];
    let mut at = target.previous_id.clone();
    while let Some(id) = at {
        let previous =
            backups::get(&worker.store, &id).await?.ok_or_else(|| Error::Unprocessable(format!("backup {}'s chain is broken: no backup {id}", target.id)))?;
        if previous.status != BackupStatus::Succeeded || previous.expired {
            return Err(Error::Unprocessable(format!("backup {}'s chain is broken: backup {id} is not available", target.id)));
        }
        at = previous.previous_id.clone();
        chain.push(previous);
    }
    chain.reverse();
    Ok(chain)
}

/// Check every file of a chain against its manifest: the manifests'
/// digests (the record's, and the next backup's link) and each file's
/// SHA-256. Returns the manifests, oldest first, and the problems, each
/// naming the object.
async fn check_files(worker: &Worker, chain: &[Backup]) -> Result<(Vec<Manifest>, Vec<String>)> {
    let mut problems = Vec::new();
    let mut manifests: Vec<Manifest> = Vec::new();
    for backup in chain {
        let (manifest, bytes) = load_manifest(worker, backup).await?;
        let key = format!("{}manifest.json", Backup::prefix(&backup.id));
        let digest = sha256_hex(&bytes);
        if backup.manifest_sha256.as_deref() != Some(digest.as_str()) {
            problems.push(format!("{key}: SHA-256 differs from the backup's record"));
        }
        if let Some(link) = &manifest.previous
            && let Some(before) = chain.iter().find(|b| b.id == link.id)
            && before.manifest_sha256.as_deref() != Some(link.manifest_sha256.as_str())
        {
            problems.push(format!("{key}: the link to backup {} does not match that backup's manifest", link.id));
        }
        for file in &manifest.files {
            let key = format!("{}{}", Backup::prefix(&backup.id), file.name);
            match worker.get_backup_object(&key).await {
                Ok(body) if sha256_hex(&body) == file.sha256 && body.len() as u64 == file.bytes => {}
                Ok(_) => problems.push(format!("{key}: SHA-256 differs from the manifest")),
                Err(e) => problems.push(format!("{key}: cannot be read ({e})")),
            }
        }
        manifests.push(manifest);
    }
    Ok((manifests, problems))
}

/// A new table with the live table's keys and indexes (on-demand, SSE with
/// the live table's key). Refuses the live table and an existing table.
async fn create_table_like(worker: &Worker, target: &str) -> Result<()> {
    if target == worker.config.table {
        return Err(Error::Unprocessable("refusing to restore over the live table".into()));
    }
    let live = worker.dynamo.describe_table().table_name(&worker.config.table).send().await.map_err(aws("dynamodb DescribeTable (live)"))?;
    let live = live.table.ok_or_else(|| Error::internal("DescribeTable returned no table"))?;
    let mut create = worker
        .dynamo
        .create_table()
        .table_name(target)
        .billing_mode(ddb::BillingMode::PayPerRequest)
        .set_key_schema(Some(live.key_schema().to_vec()))
        .set_attribute_definitions(Some(live.attribute_definitions().to_vec()));
    for index in live.global_secondary_indexes() {
        let built = ddb::GlobalSecondaryIndex::builder()
            .set_index_name(index.index_name().map(str::to_string))
            .set_key_schema(Some(index.key_schema().to_vec()))
            .set_projection(index.projection().cloned())
            .build()
            .map_err(internal)?;
        create = create.global_secondary_indexes(built);
    }
    if let Some(key) = live.sse_description().and_then(|d| d.kms_master_key_arn()) {
        create = create.sse_specification(ddb::SseSpecification::builder().enabled(true).sse_type(ddb::SseType::Kms).kms_master_key_id(key).build());
    }
    match create.send().await {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {
            return Err(Error::Unprocessable(format!("table {target} already exists: restores go to a new table")));
        }
        Err(e) => return Err(aws("dynamodb CreateTable (restore)")(e)),
    }
    // A new table takes seconds to become ACTIVE (the emulator: at once).
    for _ in 0..120 {
        let out = worker.dynamo.describe_table().table_name(target).send().await.map_err(aws("dynamodb DescribeTable (restore)"))?;
        if out.table.and_then(|t| t.table_status).is_some_and(|s| s == ddb::TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    Err(Error::internal(format!("table {target} did not become active")))
}

/// What applying a chain wrote.
#[derive(Debug, Default)]
struct Applied {
    puts: u64,
    deletes: u64,
    /// Ids of people whose items were restored (`USER#<id>`,
    /// `SUBJECT#<id>`) whose tombstone hash is in `watch`.
    watched: HashSet<String>,
}

/// Apply a chain's data files to `store` in order: the full backup's, then
/// each incremental's puts and deletes. Files of one backup go in
/// concurrently (their keys are disjoint).
async fn apply_chain(worker: &Worker, store: &Store, manifests: &[Manifest], watch: &HashSet<String>, progress: Progress<'_>) -> Result<Applied> {
    let mut applied = Applied::default();
    let written = std::sync::atomic::AtomicU64::new(0);
    let written = &written;
    for manifest in manifests {
        let data: Vec<&BackupFile> = manifest.files.iter().filter(|f| !f.name.starts_with("state-")).collect();
        let wrote = |n: u64| progress("writing items", written.fetch_add(n, Ordering::Relaxed) + n);
        let results = futures::future::try_join_all(data.into_iter().map(|file| apply_file(worker, store, &manifest.id, file, watch, &wrote))).await?;
        for part in results {
            applied.puts += part.puts;
            applied.deletes += part.deletes;
            applied.watched.extend(part.watched);
        }
    }
    Ok(applied)
}

async fn apply_file(worker: &Worker, store: &Store, id: &str, file: &BackupFile, watch: &HashSet<String>, wrote: &(dyn Fn(u64) + Sync)) -> Result<Applied> {
    let key = format!("{}{}", Backup::prefix(id), file.name);
    let body = worker.get_backup_object(&key).await?;
    if sha256_hex(&body) != file.sha256 {
        return Err(Error::Unprocessable(format!("{key}: SHA-256 differs from the manifest")));
    }
    let mut applied = Applied::default();
    let (mut puts, mut deletes) = (Vec::new(), Vec::new());
    let mut lines = std::io::BufReader::new(GzDecoder::new(body.as_slice())).lines();
    loop {
        let line = lines.next().transpose().map_err(|e| Error::internal(format!("{key}: {e}")))?;
        if let Some(line) = &line {
            match backups::parse_line(line).map_err(|e| Error::internal(format!("{key}: {e}")))? {
                Change::Put(item) => {
                    let pk = attr_s(&item, "pk").unwrap_or("");
                    if let Some(person) = pk.strip_prefix("USER#").or_else(|| pk.strip_prefix("SUBJECT#"))
                        && watch.contains(&sha256_hex(person.as_bytes()))
                    {
                        applied.watched.insert(person.to_string());
                    }
                    puts.push(item);
                }
                Change::Delete { pk, sk } => deletes.push((pk, sk)),
            }
        }
        if puts.len() + deletes.len() >= RESTORE_CHUNK || line.is_none() {
            let n = (puts.len() + deletes.len()) as u64;
            applied.puts += puts.len() as u64;
            applied.deletes += deletes.len() as u64;
            store.batch_put(std::mem::take(&mut puts)).await?;
            store.batch_delete(&std::mem::take(&mut deletes)).await?;
            wrote(n);
        }
        if line.is_none() {
            return Ok(applied);
        }
    }
}

/// The erasure tombstones of the live table (`ERASED#<sha256(id)>`): a
/// filtered parallel Scan, since nothing lists them (a tombstone names
/// no one).
async fn live_tombstones(worker: &Worker) -> Result<Vec<Item>> {
    let spec = ScanSpec { filter: "begins_with(pk, :erased)", values: vec![(":erased", s("ERASED#"))], ..ScanSpec::default() };
    let parts = worker
        .store
        .scan_parallel(&spec, SEGMENTS, |found: &mut Vec<Item>, items| {
            found.extend(items);
            Ok(())
        })
        .await?;
    Ok(parts.into_iter().flatten().collect())
}

/// The backup a restore or verification names, succeeded.
async fn succeeded(worker: &Worker, id: &str) -> Result<Backup> {
    let backup = backups::get(&worker.store, id).await?.ok_or_else(|| Error::Unprocessable(format!("no backup {id}")))?;
    if backup.status != BackupStatus::Succeeded || backup.expired {
        return Err(Error::Unprocessable(format!("backup {id} is not available (status {:?})", backup.status)));
    }
    Ok(backup)
}

pub async fn run_verify(worker: &Worker, job: &shared::domain::jobs::Job) -> Result<Value> {
    run_verify_with(worker, job, &quiet).await
}

/// A `backup_verify` job's work, reporting progress.
pub async fn run_verify_with(worker: &Worker, job: &shared::domain::jobs::Job, progress: Progress<'_>) -> Result<Value> {
    let params: VerifyJob = job.payload()?;
    let started = Instant::now();
    let backup = succeeded(worker, &params.backup_id).await?;
    let chain = chain_of(worker, &backup).await?;
    let (manifests, mut problems) = check_files(worker, &chain).await?;
    let mut items_checked = 0;
    // A file that differs from its manifest is not restored: the failure
    // names it, which is the answer.
    if problems.is_empty() {
        let scratch = format!("{}{}{}", worker.config.table, backups::VERIFY_INFIX, job.id);
        create_table_like(worker, &scratch).await?;
        let outcome = compare_restored(worker, &scratch, &manifests, progress).await;
        // The scratch table goes whatever the comparison found.
        worker.dynamo.delete_table().table_name(&scratch).send().await.map_err(aws("dynamodb DeleteTable (scratch)"))?;
        let (checked, found) = outcome?;
        items_checked = checked;
        problems.extend(found);
    }
    let outcome = BackupVerifyOutcome {
        job_id: job.id.clone(),
        ok: problems.is_empty(),
        verified_at: timestamp(chrono::Utc::now()),
        items_checked,
        duration_ms: started.elapsed().as_millis() as u64,
        problems,
    };
    update_record(worker, &backup.id, |b| b.last_verify = Some(outcome.clone())).await?;
    let mut result = serde_json::to_value(&outcome).map_err(internal)?;
    result["backup_id"] = json!(backup.id);
    Ok(result)
}

/// Restore the chain into `scratch` and compare every item with the last
/// manifest's state: counts and per-item hashes.
async fn compare_restored(worker: &Worker, scratch: &str, manifests: &[Manifest], progress: Progress<'_>) -> Result<(u64, Vec<String>)> {
    let store = Store::new(worker.dynamo.clone(), scratch);
    apply_chain(worker, &store, manifests, &HashSet::new(), progress).await?;
    let compared = std::sync::atomic::AtomicU64::new(0);
    let last = manifests.last().ok_or_else(|| Error::internal("an empty chain"))?;
    let expected = load_state(worker, last).await?;
    let parts = store
        .scan_parallel(&ScanSpec::default(), SEGMENTS, |acc: &mut (u64, u64, Vec<String>), items| {
            let page = items.len() as u64;
            progress("comparing items", compared.fetch_add(page, Ordering::Relaxed) + page);
            for item in items {
                acc.0 += 1;
                let key = key_of(&item);
                match expected.get(&key) {
                    Some(hash) if *hash == backups::item_hash(&item) => acc.1 += 1,
                    Some(_) => acc.2.push(format!("item {}/{}: its hash differs from the manifest's state", key.0, key.1)),
                    None => acc.2.push(format!("item {}/{}: not in the manifest's state", key.0, key.1)),
                }
            }
            Ok(())
        })
        .await?;
    let (mut restored, mut matched, mut problems) = (0, 0, Vec::new());
    for (n, m, p) in parts {
        restored += n;
        matched += m;
        problems.extend(p);
    }
    problems.sort();
    problems.truncate(MAX_PROBLEMS);
    if restored != last.item_count {
        problems.insert(0, format!("{restored} items restored, the manifest counts {}", last.item_count));
    }
    if matched != expected.len() as u64 && problems.is_empty() {
        problems.push(format!("{} items of the manifest's state were not restored", expected.len() as u64 - matched));
    }
    Ok((restored, problems))
}

pub async fn run_restore(worker: &Worker, job: &shared::domain::jobs::Job) -> Result<Value> {
    run_restore_with(worker, job, &quiet).await
}

/// A `backup_restore` job's work, reporting progress.
pub async fn run_restore_with(worker: &Worker, job: &shared::domain::jobs::Job, progress: Progress<'_>) -> Result<Value> {
    let params: RestoreJob = job.payload()?;
    let started = Instant::now();
    backups::check_target_table(&worker.config.table, &params.target_table)
        .map_err(|_| Error::Unprocessable(format!("{} is not a restore table name", params.target_table)))?;
    let named = succeeded(worker, &params.backup_id).await?;
    // The newest backup of the same chain (base) at or before the point in
    // time; without one, the backup named.
    let target = match &params.point_in_time {
        None => named,
        Some(at) => {
            let base = named.base_id.clone();
            let all = backups::list(&worker.store).await?;
            all.into_iter()
                .filter(|b| {
                    b.status == BackupStatus::Succeeded && !b.expired && b.base_id == base && b.completed_at.as_deref().is_some_and(|c| c <= at.as_str())
                })
                .max_by(|a, b| a.created_at.cmp(&b.created_at))
                .ok_or_else(|| Error::Unprocessable(format!("no backup of backup {}'s chain completed at or before {at}", params.backup_id)))?
        }
    };
    let chain = chain_of(worker, &target).await?;
    let (manifests, problems) = check_files(worker, &chain).await?;
    if !problems.is_empty() {
        return Err(Error::Unprocessable(format!("the backup does not match its manifests: {}", problems.join("; "))));
    }
    // Erasures: every tombstone of the live table, matched against the
    // people the backup holds as their items are written.
    let tombstones = live_tombstones(worker).await?;
    let watch: HashSet<String> = tombstones.iter().filter_map(|t| attr_s(t, "pk")?.strip_prefix("ERASED#").map(str::to_string)).collect();
    create_table_like(worker, &params.target_table).await?;
    let store = Store::new(worker.dynamo.clone(), &params.target_table);
    let applied = apply_chain(worker, &store, &manifests, &watch, progress).await?;
    let mut erased = applied.watched.iter().cloned().collect::<Vec<_>>();
    erased.sort();
    for person in &erased {
        crate::erasure::reapply(worker, &store, person).await?;
    }
    // The tombstones themselves, so the copy never makes a new key for them.
    store.batch_put(tombstones).await?;
    Ok(json!({
        "target_table": params.target_table,
        "backups_applied": chain.iter().map(|b| b.id.clone()).collect::<Vec<_>>(),
        "restored_to": target.completed_at,
        "items_written": applied.puts,
        "items_deleted": applied.deletes,
        "erasures_reapplied": erased.len(),
        "duration_ms": started.elapsed().as_millis() as u64,
    }))
}

/// The daily schedule: a full backup on Sundays (or when there is none to
/// build on), an incremental one otherwise, then the retention policy.
pub async fn daily(worker: &Worker, now: chrono::DateTime<chrono::Utc>) -> Result<Value> {
    use chrono::Datelike;
    let all = backups::list(&worker.store).await?;
    let has_base = all.iter().any(|b| b.status == BackupStatus::Succeeded && !b.expired);
    let kind = if now.weekday() == chrono::Weekday::Sun || !has_base { BackupKind::Full } else { BackupKind::Incremental };
    let actor = Actor::system("backups");
    let requested = backups::request_backup(&worker.store, kind, &actor.id, &actor).await?;
    let expired = apply_retention(worker, &all, Retention::default(), now).await?;
    Ok(json!({ "backup_id": requested.id, "kind": kind, "expired": expired }))
}

/// Delete the files of backups past the policy; their records stay, marked
/// expired (the history of what was taken). Returns their ids.
pub async fn apply_retention(worker: &Worker, all: &[Backup], policy: Retention, now: chrono::DateTime<chrono::Utc>) -> Result<Vec<String>> {
    let expired = policy.expired(all, now);
    for id in &expired {
        worker.delete_backup_files(id).await?;
        let audit = shared::audit::AuditEntry::new(&Actor::system("backups"), "backup.expire", "backup", id);
        let current = backups::get(&worker.store, id).await?.ok_or_else(|| Error::internal(format!("no backup {id}")))?;
        let mut next = current.clone();
        next.expired = true;
        next.version += 1;
        worker.store.commit(vec![next.save_write(worker.store.table(), current.version)?], &audit).await?;
    }
    Ok(expired)
}

/// The weekly schedule: verify the newest backup.
pub async fn weekly_verify(worker: &Worker) -> Result<Value> {
    let all = backups::list(&worker.store).await?;
    let Some(newest) = all.iter().find(|b| b.status == BackupStatus::Succeeded && !b.expired) else {
        return Ok(json!({ "verify": null, "reason": "no backup to verify" }));
    };
    let actor = Actor::system("backups");
    let job = backups::request_job(&worker.store, &actor.id, &VerifyJob { backup_id: newest.id.clone() }, &actor, ("backup.verify", &newest.id), None).await?;
    Ok(json!({ "backup_id": newest.id, "verify_job_id": job.id }))
}
