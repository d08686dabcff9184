//! The indexer: applies table changes (the DynamoDB stream's records) to the
//! index and publishes each batch's commit (`index::Remote::publish`). It
//! runs as its own function with reserved concurrency 1: one writer, so
//! versions follow each other; the conditional version write catches a
//! second one anyway (a reindex publishing meanwhile), and the indexer then
//! starts over from what was published.
//!
//! Each batch is one tantivy commit, so one small segment; past
//! `MAX_SEGMENTS` they are merged into one. A merge is also when deleted
//! documents (an erased person, a removed chart) leave the index files;
//! from results they leave at the commit.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde_json::Value;
use shared::platform::error::{Error, Result};
use shared::store::{ScanSpec, Store, s};
use tantivy::indexer::NoMergePolicy;
use tantivy::{Index, IndexWriter, Term};

use crate::documents::{self, Change, SearchDoc};
use crate::index::{self, Remote, tantivy_error};
use crate::schema::Fields;

/// How long files no commit names any more stay in the bucket: an instance
/// that read an older version item a moment ago may still be fetching them.
pub const RETIRED_FILES_KEPT: std::time::Duration = std::time::Duration::from_secs(600);
/// Segments kept before they are merged into one.
pub const MAX_SEGMENTS: usize = 8;
/// The writer's indexing memory (tantivy's floor is 15 MB).
const WRITER_HEAP: usize = 64 * 1024 * 1024;

struct Writer {
    index: Index,
    writer: IndexWriter,
    fields: Fields,
    version: u64,
    uploaded: HashSet<String>,
    /// Files merged away, and since when: deleted from the bucket after
    /// `RETIRED_FILES_KEPT`.
    retired: Vec<(std::time::Instant, Vec<String>)>,
}

pub struct Indexer {
    remote: Remote,
    dir: PathBuf,
    writer: tokio::sync::Mutex<Option<Writer>>,
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub upserts: u64,
    pub deletes: u64,
    pub version: u64,
}

fn writer_for(index: &Index) -> Result<IndexWriter> {
    let writer: IndexWriter = index.writer_with_num_threads(1, WRITER_HEAP).map_err(tantivy_error)?;
    // Merges happen when this module asks (`merge_if_many`), inside the
    // invocation: a Lambda may freeze before a background merge ends.
    writer.set_merge_policy(Box::new(NoMergePolicy));
    Ok(writer)
}

fn apply_to(writer: &IndexWriter, fields: &Fields, changes: &[Change]) -> Result<(u64, u64)> {
    let (mut upserts, mut deletes) = (0, 0);
    for change in changes {
        match change {
            Change::Upsert(doc) => {
                writer.delete_term(Term::from_field_text(fields.key, &doc.key()));
                writer.add_document(doc.to_tantivy(fields)).map_err(tantivy_error)?;
                upserts += 1;
            }
            Change::Delete(key) => {
                writer.delete_term(Term::from_field_text(fields.key, key));
                deletes += 1;
            }
            Change::Ignore => {}
        }
    }
    Ok((upserts, deletes))
}

/// Merge every segment into one once there are more than `MAX_SEGMENTS`
/// (or always, with `force`), then drop the files no commit names.
async fn merge_if_many(index: &Index, writer: &mut IndexWriter, force: bool) -> Result<()> {
    let ids = index.searchable_segment_ids().map_err(tantivy_error)?;
    if ids.len() > MAX_SEGMENTS || (force && ids.len() > 1) {
        writer.merge(&ids).await.map_err(tantivy_error)?;
    }
    writer.garbage_collect_files().await.map_err(tantivy_error)?;
    Ok(())
}

impl Indexer {
    pub fn new(remote: Remote, dir: PathBuf) -> Indexer {
        Indexer { remote, dir, writer: tokio::sync::Mutex::new(None) }
    }

    /// The writer on the published index (fetched into a clean `dir`), or a
    /// new empty index when none is published.
    async fn open(&self) -> Result<Writer> {
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
        let (version, uploaded) = match self.remote.current().await? {
            Some((version, key)) => {
                let manifest = self.remote.manifest(&key).await?;
                self.remote.fetch_into(&manifest, &self.dir).await?;
                (version, manifest.files.into_iter().collect())
            }
            None => (0, HashSet::new()),
        };
        let (index, fields) = index::open_or_create(&self.dir)?;
        let writer = writer_for(&index)?;
        Ok(Writer { index, writer, fields, version, uploaded, retired: Vec::new() })
    }

    /// Apply `changes` as one commit and publish it.
    pub async fn apply(&self, changes: &[Change]) -> Result<Applied> {
        if changes.iter().all(|c| matches!(c, Change::Ignore)) {
            return Ok(Applied::default());
        }
        let mut held = self.writer.lock().await;
        // Someone else published (a reindex): start from theirs.
        let published = self.remote.current().await?.map(|(v, _)| v).unwrap_or(0);
        if held.as_ref().is_none_or(|w| w.version != published) {
            *held = None;
            *held = Some(self.open().await?);
        }
        let w = held.as_mut().ok_or_else(|| Error::internal("search writer"))?;
        let (upserts, deletes) = apply_to(&w.writer, &w.fields, changes)?;
        w.writer.commit().map_err(tantivy_error)?;
        merge_if_many(&w.index, &mut w.writer, false).await?;
        let before = w.uploaded.clone();
        match self.remote.publish(&w.index, &self.dir, w.version, &mut w.uploaded).await {
            Ok(version) => {
                w.version = version;
                // What the merge made obsolete: no longer in the directory.
                let gone: Vec<String> = before.into_iter().filter(|f| !self.dir.join(f).exists()).collect();
                if !gone.is_empty() {
                    w.uploaded.retain(|f| !gone.contains(f));
                    w.retired.push((std::time::Instant::now(), gone));
                }
                let (due, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut w.retired).into_iter().partition(|(at, _)| at.elapsed() >= RETIRED_FILES_KEPT);
                w.retired = kept;
                let due: Vec<String> = due.into_iter().flat_map(|(_, files)| files).collect();
                if let Err(e) = self.remote.delete_files(&due).await {
                    // Left for a reindex's cleanup; the index itself is fine.
                    tracing::warn!(error = %e, files = due.len(), "deleting retired search index files failed");
                }
                Ok(Applied { upserts, deletes, version })
            }
            Err(e) => {
                // What this writer holds is not what is published: reopen next time.
                *held = None;
                Err(e)
            }
        }
    }

    /// A batch of stream records: applied as one commit. On failure the
    /// whole batch is reported for retry (applying a change twice is
    /// harmless: it replaces the document by key).
    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        let mut changes = Vec::with_capacity(event.records.len());
        for record in &event.records {
            let image = |item: &serde_dynamo::Item| -> Option<Value> { if item.is_empty() { None } else { serde_dynamo::from_item(item.clone()).ok() } };
            let (old, new) = (image(&record.change.old_image), image(&record.change.new_image));
            changes.push(documents::change_of(old.as_ref(), new.as_ref()));
        }
        let mut response = DynamoDbEventResponse::default();
        if let Err(e) = self.apply(&changes).await {
            tracing::warn!(error = %e, records = event.records.len(), "search index batch failed; it will be retried");
            if let Some(first) = event.records.first() {
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = first.change.sequence_number.clone();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }
}

/// What a rebuild published.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rebuilt {
    pub documents: u64,
    pub version: u64,
    /// Adding the documents, committing and merging into one segment.
    pub indexed: std::time::Duration,
    /// Uploading the files and bumping the version.
    pub published: std::time::Duration,
}

/// Build a whole new index from `docs` in `dir` (emptied first) and
/// publish it over whatever is published: `keel search reindex`, the local
/// stack's start, the bench.
pub async fn rebuild(remote: &Remote, dir: &Path, docs: impl Iterator<Item = SearchDoc>, progress: &(dyn Fn(u64) + Send + Sync)) -> Result<Rebuilt> {
    let _ = tokio::fs::remove_dir_all(dir).await;
    let started = std::time::Instant::now();
    let (index, fields) = index::open_or_create(dir)?;
    let mut writer = writer_for(&index)?;
    let mut documents = 0;
    for doc in docs {
        writer.add_document(doc.to_tantivy(&fields)).map_err(tantivy_error)?;
        documents += 1;
        if documents % 10_000 == 0 {
            progress(documents);
        }
    }
    progress(documents);
    writer.commit().map_err(tantivy_error)?;
    merge_if_many(&index, &mut writer, true).await?;
    let indexed = started.elapsed();
    let previous = remote.current().await?.map(|(v, _)| v).unwrap_or(0);
    let version = remote.publish(&index, dir, previous, &mut HashSet::new()).await?;
    Ok(Rebuilt { documents, version, indexed, published: started.elapsed() - indexed })
}

/// Every searched document in the table: a parallel Scan of four segments,
/// filtered to the item types search holds.
pub async fn documents_in(store: &Store, progress: &(dyn Fn(u64) + Send + Sync)) -> Result<Vec<SearchDoc>> {
    let spec = ScanSpec {
        filter: "#type IN (:user, :chart, :order, :audit)",
        names: vec![("#type", "type")],
        values: vec![(":user", s("user")), (":chart", s("chart")), (":order", s("order")), (":audit", s("audit"))],
        ..Default::default()
    };
    let read = std::sync::atomic::AtomicU64::new(0);
    let parts = store
        .scan_parallel(&spec, 4, |docs: &mut Vec<SearchDoc>, page| {
            let n = page.len() as u64;
            for item in page {
                let value: Value = serde_dynamo::from_item(item).map_err(|e| Error::internal(format!("scan item: {e}")))?;
                docs.extend(documents::document_of(&value));
            }
            progress(read.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n);
            Ok(())
        })
        .await?;
    Ok(parts.into_iter().flatten().collect())
}
