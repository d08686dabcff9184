//! Where the index lives (docs/search.md, "Freshness"): the indexer writes
//! it in its `/tmp`, then **publishes** each commit: the segment files it
//! has not uploaded yet go to the exports bucket (SSE-KMS) under
//! `search-index/files/`, a manifest naming every file of that commit goes
//! beside them, and the index version item (`SEARCHINDEX / VERSION`) is
//! bumped with a conditional write, so two writers can never both publish
//! version n+1. A search instance reads the version item (at most once a
//! second), fetches only the files it lacks into its own `/tmp` and opens
//! the index memory-mapped. Segment files never change once written
//! (tantivy's design), which is what makes "fetch only what is new" safe.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use shared::platform::error::{Error, Result};
use shared::store::{Condition, Item, Store, n, s, timestamp};
use tantivy::{Index, IndexReader, ReloadPolicy};

use crate::schema::{self, Fields};

pub const VERSION_PK: &str = "SEARCHINDEX";
pub const VERSION_SK: &str = "VERSION";
pub const PREFIX: &str = "search-index/";
/// Files moved at once to or from S3.
const TRANSFERS_IN_FLIGHT: usize = 8;

pub fn tantivy_error(e: tantivy::TantivyError) -> Error {
    Error::internal(format!("search index: {e}"))
}

fn io_error(e: std::io::Error) -> Error {
    Error::internal(format!("search index files: {e}"))
}

/// One published commit of the index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u64,
    /// Every segment file of this commit (names in `search-index/files/`).
    pub files: Vec<String>,
    /// The commit's `meta.json`, which names the segments.
    pub meta: String,
    pub docs: u64,
    pub published_at: String,
}

/// The published index: the version item and the bucket.
#[derive(Clone, Debug)]
pub struct Remote {
    pub store: Store,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub kms_key_id: String,
}

impl Remote {
    /// The current version and its manifest's key; none before the first publish.
    pub async fn current(&self) -> Result<Option<(u64, String)>> {
        let Some(item) = self.store.get_item(VERSION_PK, VERSION_SK).await? else { return Ok(None) };
        let version = item.get("version").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
        let key = shared::store::attr_s(&item, "manifest").unwrap_or_default().to_string();
        Ok(Some((version, key)))
    }

    pub async fn manifest(&self, key: &str) -> Result<Manifest> {
        let bytes = self.get(key).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::internal(format!("search manifest {key}: {e}")))
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let out = self.s3.get_object().bucket(&self.bucket).key(key).send().await.map_err(|e| Error::internal(format!("s3 GetObject {key}: {e}")))?;
        let body = out.body.collect().await.map_err(|e| Error::internal(format!("s3 GetObject {key}: {e}")))?;
        Ok(body.into_bytes().to_vec())
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(&self.kms_key_id)
            .send()
            .await
            .map_err(|e| Error::internal(format!("s3 PutObject {key}: {e}")))?;
        Ok(())
    }

    /// Delete files of the published index (`search-index/files/<name>`).
    pub async fn delete_files(&self, names: &[String]) -> Result<()> {
        futures::stream::iter(names.to_vec())
            .map(|name: String| async move {
                let key = format!("{PREFIX}files/{name}");
                self.s3.delete_object().bucket(&self.bucket).key(&key).send().await.map_err(|e| Error::internal(format!("s3 DeleteObject {key}: {e}")))
            })
            .buffer_unordered(TRANSFERS_IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    /// Download the files of `manifest` that `dir` lacks, then its
    /// `meta.json`: the bytes fetched.
    pub async fn fetch_into(&self, manifest: &Manifest, dir: &Path) -> Result<u64> {
        tokio::fs::create_dir_all(dir).await.map_err(io_error)?;
        let missing: Vec<String> = manifest.files.iter().filter(|f| !dir.join(f).exists()).cloned().collect();
        let fetched: Vec<u64> = futures::stream::iter(missing)
            .map(|name: String| async move {
                let bytes = self.get(&format!("{PREFIX}files/{name}")).await?;
                let len = bytes.len() as u64;
                // Written under a temporary name first: a file that exists is whole.
                let partial = dir.join(format!("{name}.part"));
                tokio::fs::write(&partial, bytes).await.map_err(io_error)?;
                tokio::fs::rename(&partial, dir.join(&name)).await.map_err(io_error)?;
                Ok::<u64, Error>(len)
            })
            .buffer_unordered(TRANSFERS_IN_FLIGHT)
            .try_collect()
            .await?;
        tokio::fs::write(dir.join("meta.json"), &manifest.meta).await.map_err(io_error)?;
        Ok(fetched.iter().sum())
    }

    /// Publish the last commit of the index in `dir` as the version after
    /// `previous` (0: none yet): upload the files not in `uploaded`, the
    /// manifest, and bump the version item if it still is `previous`.
    /// `Error::Conflict` when another writer published first.
    pub async fn publish(&self, index: &Index, dir: &Path, previous: u64, uploaded: &mut HashSet<String>) -> Result<u64> {
        let metas = index.load_metas().map_err(tantivy_error)?;
        let docs: u64 = metas.segments.iter().map(|s| s.num_docs() as u64).sum();
        // The candidates tantivy lists include components a segment may
        // not have (no deletes yet): the files that exist are the commit.
        let mut files: Vec<String> =
            metas.list_segment_files().into_iter().filter(|p| dir.join(p).exists()).filter_map(|p| p.to_str().map(str::to_string)).collect();
        files.sort();
        let new: Vec<String> = files.iter().filter(|f| !uploaded.contains(*f)).cloned().collect();
        futures::stream::iter(new.clone())
            .map(|name: String| async move {
                let bytes = tokio::fs::read(dir.join(&name)).await.map_err(io_error)?;
                self.put(&format!("{PREFIX}files/{name}"), bytes).await
            })
            .buffer_unordered(TRANSFERS_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        uploaded.extend(new);
        let meta = tokio::fs::read_to_string(dir.join("meta.json")).await.map_err(io_error)?;
        let version = previous + 1;
        let now = timestamp(chrono::Utc::now());
        let manifest = Manifest { version, files, meta, docs, published_at: now.clone() };
        // A unique name: a writer that loses the race below cannot overwrite
        // the winner's manifest.
        let key = format!("{PREFIX}manifests/{version:012}-{}.json", uuid::Uuid::now_v7());
        self.put(&key, serde_json::to_vec(&manifest).map_err(|e| Error::internal(e.to_string()))?).await?;
        let item = Item::from([
            ("pk".to_string(), s(VERSION_PK)),
            ("sk".to_string(), s(VERSION_SK)),
            ("type".to_string(), s("search_index")),
            ("version".to_string(), n(version)),
            ("manifest".to_string(), s(key)),
            ("docs".to_string(), n(docs)),
            ("published_at".to_string(), s(now)),
        ]);
        let condition = Condition::new("attribute_not_exists(pk) OR version = :previous").value(":previous", n(previous));
        if !self.store.put_if(item, &condition).await? {
            return Err(Error::Conflict(format!("search index version {previous} was replaced while this one was written")));
        }
        Ok(version)
    }
}

/// Open (or create) the index in `dir`, with Keel's analyser registered.
pub fn open_or_create(dir: &Path) -> Result<(Index, Fields)> {
    std::fs::create_dir_all(dir).map_err(io_error)?;
    let index = if dir.join("meta.json").exists() {
        Index::open_in_dir(dir).map_err(tantivy_error)?
    } else {
        let (schema, _) = schema::build();
        Index::create_in_dir(dir, schema).map_err(tantivy_error)?
    };
    schema::register(&index);
    let fields = schema::fields_of(&index.schema()).map_err(tantivy_error)?;
    Ok((index, fields))
}

/// An index opened for searching, at one published version.
pub struct Opened {
    pub version: u64,
    pub index: Index,
    pub reader: IndexReader,
    pub fields: Fields,
    pub docs: u64,
}

impl Opened {
    /// No index published yet: an empty one (every search finds nothing).
    pub fn empty() -> Result<Opened> {
        let (schema, _) = schema::build();
        let index = Index::create_in_ram(schema);
        schema::register(&index);
        let fields = schema::fields_of(&index.schema()).map_err(tantivy_error)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(tantivy_error)?;
        Ok(Opened { version: 0, index, reader, fields, docs: 0 })
    }

    /// An index in memory holding `docs` (the relevance set, the bench).
    pub fn in_ram(docs: impl Iterator<Item = crate::documents::SearchDoc>) -> Result<Opened> {
        let (schema, _) = schema::build();
        let index = Index::create_in_ram(schema);
        schema::register(&index);
        let fields = schema::fields_of(&index.schema()).map_err(tantivy_error)?;
        let mut writer: tantivy::IndexWriter = index.writer_with_num_threads(1, 64 * 1024 * 1024).map_err(tantivy_error)?;
        for doc in docs {
            writer.add_document(doc.to_tantivy(&fields)).map_err(tantivy_error)?;
        }
        writer.commit().map_err(tantivy_error)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(tantivy_error)?;
        let docs = reader.searcher().num_docs();
        Ok(Opened { version: 0, index, reader, fields, docs })
    }

    fn open(dir: &Path, version: u64) -> Result<Opened> {
        let (index, fields) = open_or_create(dir)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(tantivy_error)?;
        let docs = reader.searcher().num_docs();
        Ok(Opened { version, index, reader, fields, docs })
    }
}

/// What a search instance holds: the newest published index it has seen,
/// checked against the version item at most once per `check_every`.
pub struct Searchers {
    remote: Remote,
    dir: PathBuf,
    check_every: Duration,
    state: tokio::sync::Mutex<(Arc<Opened>, Option<Instant>)>,
}

/// How a fresh instance came to its index (the bench reports it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Loaded {
    pub version: u64,
    pub bytes_fetched: u64,
    pub took: Duration,
}

impl Searchers {
    pub fn new(remote: Remote, dir: PathBuf, check_every: Duration) -> Result<Searchers> {
        Ok(Searchers { remote, dir, check_every, state: tokio::sync::Mutex::new((Arc::new(Opened::empty()?), None)) })
    }

    /// Where the published index is.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// The index to search: the one held, or the newer one published.
    pub async fn current(&self) -> Result<Arc<Opened>> {
        let mut state = self.state.lock().await;
        if state.1.is_some_and(|at| at.elapsed() < self.check_every) {
            return Ok(state.0.clone());
        }
        let held = state.0.version;
        if let Some((version, key)) = self.remote.current().await?
            && version != held
        {
            state.0 = Arc::new(self.fetch_and_open(version, &key).await?.0);
        }
        state.1 = Some(Instant::now());
        Ok(state.0.clone())
    }

    /// Load the published index now (a fresh instance's first request): how
    /// long it took and how much was fetched.
    pub async fn load(&self) -> Result<Loaded> {
        let started = Instant::now();
        let Some((version, key)) = self.remote.current().await? else { return Ok(Loaded::default()) };
        let (opened, bytes_fetched) = self.fetch_and_open(version, &key).await?;
        *self.state.lock().await = (Arc::new(opened), Some(Instant::now()));
        Ok(Loaded { version, bytes_fetched, took: started.elapsed() })
    }

    /// Fetch the files of `version` (its manifest at `key`) that the
    /// directory lacks, open it, and remove the files no longer named
    /// (searches still running keep theirs mapped until they end).
    async fn fetch_and_open(&self, version: u64, key: &str) -> Result<(Opened, u64)> {
        let manifest = self.remote.manifest(key).await?;
        let bytes_fetched = self.remote.fetch_into(&manifest, &self.dir).await?;
        let dir = self.dir.clone();
        let opened = tokio::task::spawn_blocking(move || Opened::open(&dir, version)).await.map_err(|e| Error::internal(e.to_string()))??;
        let keep: HashSet<&str> = manifest.files.iter().map(String::as_str).collect();
        if let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await {
            while let Ok(Some(entry)) = entries.next_entry().await {
                let name = entry.file_name().to_string_lossy().to_string();
                if !keep.contains(name.as_str()) && !name.starts_with("meta.json") && !name.starts_with('.') {
                    let _ = tokio::fs::remove_file(entry.path()).await;
                }
            }
        }
        Ok((opened, bytes_fetched))
    }
}
