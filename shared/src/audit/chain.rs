//! Where the audit digest chain lives and how it is read: digest objects in
//! the audit-digest bucket, an index item per digest and a chain-head item
//! in the table, entries read back from their day partitions. Feeds the
//! sealer (scheduler), the live verifier (admin, CLI) and exports (jobs).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::digest::{self, DigestEvidence, DigestKey, Evidence, ExportLine, Finding, FindingKind, Report, SealedEntry, SignedDigest, Verified};
use crate::platform::error::{Error, Result};
use crate::store::{Item, QuerySpec, Store, Write, from_item, n, s, timestamp, to_item};

/// Partition of the digest index items; sort key `<period_end>#<digest_id>`.
pub const CHAIN_PK: &str = "DIGEST#CHAIN";
/// The chain head: the last digest; replaced only if its `version` (the
/// last sequence) is unchanged, so two sealers cannot fork the chain.
pub const HEAD_PK: &str = "DIGEST#HEAD";
pub const HEAD_SK: &str = "HEAD";

/// The first digest covers at most this far back.
pub const GENESIS_LOOKBACK_DAYS: i64 = 366;

/// The index item of one digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestIndex {
    pub digest_id: String,
    pub sequence: u64,
    pub period_start: String,
    pub period_end: String,
    pub count: u64,
    /// SHA-256 of the digest's canonical form.
    pub hash: String,
    pub previous_hash: String,
    /// Key of the digest object in the audit-digest bucket.
    pub object_key: String,
    pub created_at: String,
}

impl DigestIndex {
    pub fn to_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(CHAIN_PK));
        item.insert("sk".into(), s(format!("{}#{}", self.period_end, self.digest_id)));
        item.insert("type".into(), s("audit_digest"));
        Ok(item)
    }
}

/// The last digest of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub digest_id: String,
    /// The last sequence number (optimistic lock of the head).
    pub version: u64,
    pub hash: String,
    pub period_end: String,
    /// Where the first digest's period started: nothing before is sealed.
    pub genesis_start: String,
}

impl ChainHead {
    pub fn to_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(HEAD_PK));
        item.insert("sk".into(), s(HEAD_SK));
        item.insert("type".into(), s("audit_chain_head"));
        Ok(item)
    }
}

pub async fn head(store: &Store) -> Result<Option<ChainHead>> {
    store.get(HEAD_PK, HEAD_SK).await
}

/// What verification has established ([`Verified`]): one item, advanced
/// by each clean verification that reaches further.
pub const VERIFIED_PK: &str = "AUDITVERIFY#latest";
pub const VERIFIED_SK: &str = "LATEST";

pub async fn last_verified(store: &Store) -> Result<Option<Verified>> {
    store.get(VERIFIED_PK, VERIFIED_SK).await
}

/// Remember `verified`, unless a concurrent verification already recorded
/// a later digest (then that one stands).
pub async fn remember_verified(store: &Store, verified: &Verified) -> Result<()> {
    let mut item = to_item(verified)?;
    item.insert("pk".into(), s(VERIFIED_PK));
    item.insert("sk".into(), s(VERIFIED_SK));
    item.insert("type".into(), s("audit_verified"));
    let put = aws_sdk_dynamodb::types::Put::builder()
        .table_name(store.table())
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk) OR #sequence <= :sequence")
        .expression_attribute_names("#sequence", "sequence")
        .expression_attribute_values(":sequence", n(verified.sequence))
        .build()
        .map_err(|e| Error::internal(e.to_string()))?;
    let write = Write::raw(aws_sdk_dynamodb::types::TransactWriteItem::builder().put(put).build(), Some(Error::Conflict("verified further already".into())));
    match store.transact(vec![write]).await {
        Ok(()) | Err(Error::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Index items from sort key `from_sk` on (inclusive), in chain order.
pub async fn indexes_from(store: &Store, from_sk: &str) -> Result<Vec<DigestIndex>> {
    let spec = QuerySpec {
        key_condition: "pk = :pk AND sk >= :from",
        values: vec![(":pk", s(CHAIN_PK)), (":from", s(from_sk))],
        forward: true,
        ..QuerySpec::default()
    };
    store.query_all(&spec).await?.into_iter().map(from_item).collect()
}

/// `digests/<yyyy>/<mm>/<dd>/<period_end>-<digest_id>.json`
pub fn object_key(period_end: &str, digest_id: &str) -> String {
    let date = &period_end[..10];
    format!("digests/{}/{}/{}/{period_end}-{digest_id}.json", &date[..4], &date[5..7], &date[8..10])
}

/// Days from the one holding `after` to the one holding `until`.
fn days(after: &str, until: &str) -> Result<Vec<NaiveDate>> {
    let parse = |t: &str| NaiveDate::parse_from_str(t.get(..10).unwrap_or(""), "%Y-%m-%d").map_err(|_| Error::internal(format!("not a timestamp: {t}")));
    let (first, last) = (parse(after)?, parse(until)?);
    Ok(first.iter_days().take_while(|d| *d <= last).collect())
}

/// Stored entries with `after < ts <= until`, in sort-key order, hashed in
/// their canonical form; with `keep_items`, also the stored items (DynamoDB
/// JSON) for exports.
pub async fn load_entries(store: &Store, after: &str, until: &str, keep_items: bool) -> Result<Vec<(SealedEntry, Option<Value>)>> {
    // `~` sorts after every `#id`, so `<after>~` excludes entries at `after`.
    let (lower, upper) = (format!("{after}~"), format!("{until}~"));
    let per_day = futures::stream::iter(days(after, until)?)
        .map(|day| {
            let (lower, upper, store) = (lower.clone(), upper.clone(), store.clone());
            async move {
                let pk = format!("AUDIT#{}", day.format("%Y-%m-%d"));
                let spec = QuerySpec {
                    key_condition: "pk = :pk AND sk BETWEEN :lower AND :upper",
                    values: vec![(":pk", s(pk)), (":lower", s(lower)), (":upper", s(upper))],
                    forward: true,
                    ..QuerySpec::default()
                };
                let mut out = Vec::new();
                for item in &store.query_all(&spec).await? {
                    let typed = digest::typed_item(item);
                    out.push((SealedEntry::of(&typed)?, keep_items.then_some(typed)));
                }
                Ok::<_, Error>(out)
            }
        })
        .buffered(8)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(per_day.into_iter().flatten().collect())
}

/// Index items of the digests whose period overlaps `[from, to]`, in chain
/// order, and the one before them (to check the first link).
pub async fn digest_indexes(store: &Store, from: &str, to: &str) -> Result<(Option<DigestIndex>, Vec<DigestIndex>)> {
    let spec =
        QuerySpec { key_condition: "pk = :pk AND sk >= :from", values: vec![(":pk", s(CHAIN_PK)), (":from", s(from))], forward: true, ..QuerySpec::default() };
    let mut found = Vec::new();
    let mut pages = store.query_pages(&spec, None);
    'pages: while let Some(items) = pages.next(Some(500)).await? {
        for item in items {
            let index: DigestIndex = from_item(item)?;
            if index.period_start.as_str() >= to {
                break 'pages;
            }
            found.push(index);
        }
    }
    let before =
        QuerySpec { key_condition: "pk = :pk AND sk < :from", values: vec![(":pk", s(CHAIN_PK)), (":from", s(from))], forward: false, ..QuerySpec::default() };
    let previous = match found.first() {
        Some(first) if first.sequence > 1 => store.query_page(&before, None, 1).await?.0.into_iter().next().map(from_item).transpose()?,
        _ => None,
    };
    Ok((previous, found))
}

/// Read and parse a digest object; `Err` carries why it is unusable.
pub async fn read_digest(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> std::result::Result<SignedDigest, String> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("digest object {key} cannot be read: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
    let bytes = out.body.collect().await.map_err(|e| format!("reading digest object {key}: {e}"))?.into_bytes();
    serde_json::from_slice(&bytes).map_err(|e| format!("digest object {key} is not a digest: {e}"))
}

/// The chain's reader: table, digest bucket and the audit public key
/// (fetched once, on first use).
#[derive(Clone, Debug)]
pub struct ChainReader {
    pub store: Store,
    pub s3: aws_sdk_s3::Client,
    pub kms: aws_sdk_kms::Client,
    pub bucket: String,
    pub key_id: String,
    key: std::sync::Arc<tokio::sync::OnceCell<DigestKey>>,
}

/// What a live verification loaded: the evidence, and (for exports) the
/// stored entries in DynamoDB JSON.
pub struct Loaded {
    pub evidence: Evidence,
    pub entry_items: Vec<Value>,
}

impl ChainReader {
    pub fn new(store: Store, s3: aws_sdk_s3::Client, kms: aws_sdk_kms::Client, bucket: &str, key_id: &str) -> ChainReader {
        ChainReader { store, s3, kms, bucket: bucket.to_string(), key_id: key_id.to_string(), key: Default::default() }
    }

    pub async fn key(&self) -> Result<&DigestKey> {
        self.key.get_or_try_init(|| DigestKey::load(&self.kms, &self.key_id)).await
    }

    /// Gather digests and entries for `[from, to]`.
    pub async fn load(&self, from: DateTime<Utc>, to: DateTime<Utc>, keep_items: bool) -> Result<Loaded> {
        let (from_ts, to_ts) = (timestamp(from), timestamp(to));
        let (previous, indexes) = digest_indexes(&self.store, &from_ts, &to_ts).await?;
        let links = usize::from(previous.is_some());
        let all: Vec<DigestIndex> = previous.into_iter().chain(indexes).collect();
        let digests = self.evidence(all.clone()).await;

        // Digests missing after the last one found (or none found at all)
        // while the head says the range was sealed.
        let head = head(&self.store).await?;
        let last = all.last();
        let tail_problem = head.as_ref().and_then(|h| {
            let sealed_overlaps = h.genesis_start.as_str() < to_ts.as_str() && h.period_end.as_str() >= from_ts.as_str();
            let missing = match last {
                Some(l) => l.sequence < h.version && l.period_end.as_str() < to_ts.as_str(),
                None => sealed_overlaps,
            };
            missing.then(|| Finding {
                kind: FindingKind::ChainBroken,
                digest_id: Some(h.digest_id.clone()),
                entry_id: None,
                sort_key: None,
                detail: format!(
                    "the chain head is digest {} (sequence {}) but the digests found end at sequence {}",
                    h.digest_id,
                    h.version,
                    last.map(|l| l.sequence).unwrap_or(0)
                ),
            })
        });

        // Every stored entry of the checked periods, and any newer ones up to `to`.
        let checked = &all[links..];
        let (after, until) = match (checked.first(), checked.last()) {
            (Some(first), Some(last)) => (first.period_start.clone(), std::cmp::max(last.period_end.clone(), to_ts.clone())),
            _ => (from_ts.clone(), to_ts.clone()),
        };
        let loaded = load_entries(&self.store, &after, &until, keep_items).await?;
        let mut entries = Vec::with_capacity(loaded.len());
        let mut entry_items = Vec::new();
        for (entry, item) in loaded {
            entries.push(entry);
            entry_items.extend(item);
        }
        Ok(Loaded { evidence: Evidence { digests, entries_from_digest: links, entries, complete: true, tail_problem, window: None }, entry_items })
    }

    /// Read digest objects (16 at a time) as evidence, in the given order
    /// (owned captures: the future must be Send for any caller's lifetime).
    async fn evidence(&self, indexes: Vec<DigestIndex>) -> Vec<DigestEvidence> {
        futures::stream::iter(indexes)
            .map(|index| {
                let (s3, bucket) = (self.s3.clone(), self.bucket.clone());
                async move {
                    let (signed, problem) = match read_digest(&s3, &bucket, &index.object_key).await {
                        Ok(signed) => {
                            let hash = signed.digest.hash();
                            let problem = (hash != index.hash)
                                .then(|| format!("the index item of digest {} records hash {} but the object hashes to {hash}", index.digest_id, index.hash));
                            (Some(signed), problem)
                        }
                        Err(why) => (None, Some(why)),
                    };
                    DigestEvidence { digest_id: index.digest_id.clone(), sequence: index.sequence, signed, problem }
                }
            })
            .buffered(16)
            .collect()
            .await
    }

    /// Verify the entries with `after < ts <= until` against their digests,
    /// and the digest chain from `anchor` (the last verified digest) or from
    /// genesis up to the head, from the digests alone (index items and
    /// objects, no entries). Reads: the head, the index items from the
    /// anchor on, their objects, and the day partitions of the range (plus,
    /// for a range older than the anchor, the digests covering it).
    pub async fn verify_range(&self, after: &str, until: &str, anchor: Option<&Verified>) -> Result<(Report, Option<ChainHead>)> {
        let key = self.key().await?.clone();
        let started = std::time::Instant::now();
        let head = head(&self.store).await?;
        let from_sk = anchor.map(|a| format!("{}#{}", a.period_end, a.digest_id)).unwrap_or_else(|| "0".into());
        let chain_indexes = indexes_from(&self.store, &from_sk).await?;
        let mut findings: Vec<Finding> = Vec::new();
        let broken = |digest_id: &str, detail: String| Finding {
            kind: FindingKind::ChainBroken,
            digest_id: Some(digest_id.to_string()),
            entry_id: None,
            sort_key: None,
            detail,
        };
        match (anchor, chain_indexes.first()) {
            (Some(a), Some(first)) if first.digest_id == a.digest_id && first.sequence == a.sequence && first.hash == a.hash => {}
            (Some(a), _) => findings.push(broken(
                &a.digest_id,
                format!("digest {} (sequence {}), verified at {} with hash {}, is no longer indexed as it was", a.digest_id, a.sequence, a.verified_at, a.hash),
            )),
            (None, Some(first)) if first.sequence != 1 => {
                findings.push(broken(&first.digest_id, format!("the chain starts at sequence {}: earlier digests are missing", first.sequence)))
            }
            (None, _) => {}
        }
        let tail = match (&head, chain_indexes.last()) {
            (Some(h), Some(last)) if last.sequence != h.version || last.digest_id != h.digest_id => Some(broken(
                &h.digest_id,
                format!("the chain head is digest {} (sequence {}) but the digests found end at sequence {}", h.digest_id, h.version, last.sequence),
            )),
            (Some(h), None) => {
                Some(broken(&h.digest_id, format!("the chain head is digest {} (sequence {}) but no digest is indexed", h.digest_id, h.version)))
            }
            _ => None,
        };
        let anchored = usize::from(anchor.is_some() && !chain_indexes.is_empty());
        let first_sequence = chain_indexes.first().map(|i| i.sequence);
        // Digests covering the range that lie before the anchor (an older
        // range than the last verification): checked with their own link.
        let (older, older_links) = match anchor {
            Some(a) if after < a.period_end.as_str() => {
                let (previous, found) = digest_indexes(&self.store, after, until).await?;
                let found: Vec<DigestIndex> = found.into_iter().filter(|i| i.sequence <= a.sequence && i.period_end.as_str() > after).collect();
                if found.is_empty() {
                    (Vec::new(), 0)
                } else {
                    let links = usize::from(previous.is_some());
                    (previous.into_iter().chain(found).collect(), links)
                }
            }
            _ => (Vec::new(), 0),
        };
        let entries: Vec<SealedEntry> = load_entries(&self.store, after, until, false).await?.into_iter().map(|(e, _)| e).collect();
        let window = Some((after.to_string(), until.to_string()));
        let chain_sequences: Vec<(String, u64)> = chain_indexes.iter().chain(older.iter()).map(|i| (i.digest_id.clone(), i.sequence)).collect();
        let chain = self.evidence(chain_indexes).await;
        let older = self.evidence(older).await;

        let mut entries_checked = 0;
        let mut covered: Vec<(Option<String>, Option<String>)> = Vec::new();
        if !older.is_empty() {
            let (report, found) = digest::check(
                &key,
                &Evidence {
                    digests: older,
                    entries_from_digest: older_links,
                    entries: entries.clone(),
                    complete: true,
                    tail_problem: None,
                    window: window.clone(),
                },
            );
            entries_checked += report.entries_checked;
            covered.push((report.covered_from, report.covered_to));
            findings.extend(found);
        }
        let (report, found) =
            digest::check(&key, &Evidence { digests: chain, entries_from_digest: anchored, entries, complete: true, tail_problem: tail, window });
        entries_checked += report.entries_checked;
        covered.push((report.covered_from, report.covered_to));
        findings.extend(found);
        // The same digest may be in both lists (the anchor): one finding each.
        let mut seen = std::collections::HashSet::new();
        findings.retain(|f| seen.insert((f.kind as u8, f.digest_id.clone(), f.entry_id.clone(), f.detail.clone())));
        let order: std::collections::HashMap<String, u64> = chain_sequences.iter().cloned().collect();
        findings.sort_by_key(|f| f.digest_id.as_ref().and_then(|d| order.get(d)).copied().unwrap_or(u64::MAX));
        let digests_checked = chain_sequences.iter().map(|(id, _)| id).collect::<std::collections::HashSet<_>>().len();
        let elapsed = started.elapsed();
        let chain_to_sequence = head.as_ref().map(|h| h.version);
        let report = Report {
            ok: findings.is_empty(),
            problems: findings.len(),
            first_problem: findings.into_iter().next(),
            digests_checked,
            entries_checked,
            unsealed_entries: report.unsealed_entries,
            covered_from: covered.iter().filter_map(|c| c.0.clone()).min(),
            covered_to: covered.iter().filter_map(|c| c.1.clone()).max(),
            key_fingerprint: key.fingerprint(),
            elapsed_ms: elapsed.as_millis() as u64,
            entries_per_second: entries_checked as f64 / elapsed.as_secs_f64().max(1e-9),
            range_from: Some(after.to_string()),
            range_to: Some(until.to_string()),
            chain_from_sequence: first_sequence,
            chain_to_sequence,
            last_verified: None,
        };
        Ok((report, head))
    }

    /// The check `GET /api/v1/admin/audit-logs/verify` makes, remembered when
    /// clean: the entries with `after < ts <= until` when a range is given,
    /// else those since the last verification (the first time, since the
    /// chain's start; while nothing is sealed, the last 24 h); the chain from
    /// the last verified digest, or from genesis with `full_chain`.
    pub async fn verify_and_remember(&self, range: Option<(String, String)>, full_chain: bool, now: DateTime<Utc>) -> Result<Report> {
        let last = last_verified(&self.store).await?;
        let (after, until) = match range {
            Some(range) => range,
            None => {
                let after = match (&last, head(&self.store).await?) {
                    (Some(v), _) => v.entries_verified_to.clone(),
                    (None, Some(head)) => head.genesis_start,
                    (None, None) => timestamp(now - Duration::days(1)),
                };
                (after, timestamp(now))
            }
        };
        let anchor = if full_chain { None } else { last.clone() };
        let (mut report, head) = self.verify_range(&after, &until, anchor.as_ref()).await?;
        report.last_verified = last.clone();
        if let (true, Some(head)) = (report.ok, head) {
            // Entries count as verified up to `until` only when the range
            // joins what was verified before (or the chain's start).
            let before = last.as_ref().map(|v| v.entries_verified_to.clone()).unwrap_or_else(|| head.genesis_start.clone());
            let reached = std::cmp::min(until.clone(), head.period_end.clone());
            let entries_verified_to = if after <= before { std::cmp::max(before, reached) } else { before };
            let verified = Verified {
                sequence: head.version,
                digest_id: head.digest_id,
                hash: head.hash,
                period_end: head.period_end,
                entries_verified_to,
                verified_at: timestamp(now),
            };
            if last.as_ref().is_none_or(|v| v.sequence < verified.sequence || v.entries_verified_to < verified.entries_verified_to) {
                remember_verified(&self.store, &verified).await?;
            }
            report.last_verified = Some(verified);
        }
        Ok(report)
    }

    /// Verify every entry in `[from, to]` against its digests, and the whole
    /// chain from genesis to the head from the digests alone (the CLI: no
    /// remembered state).
    pub async fn verify(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Report> {
        Ok(self.verify_range(&timestamp(from - Duration::microseconds(1)), &timestamp(to), None).await?.0)
    }

    /// The NDJSON export of `[from, to]`: header, covering digests, and the
    /// stored entries. Unfiltered (`keep` None), every entry of the covering
    /// periods is included, so the export is complete and shows deletions;
    /// filtered, only entries in `[from, to]` that pass `keep`.
    pub async fn export(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        filters: Value,
        keep: Option<&(dyn Fn(&Value) -> bool + Sync)>,
    ) -> Result<(Vec<u8>, usize, usize)> {
        let key = self.key().await?.clone();
        let loaded = self.load(from, to, true).await?;
        let line = |l: &ExportLine| serde_json::to_string(l).map_err(|e| Error::internal(e.to_string()));
        let mut out = String::new();
        out.push_str(&line(&ExportLine::Header {
            format: digest::EXPORT_FORMAT.into(),
            from: timestamp(from),
            to: timestamp(to),
            filters,
            complete: keep.is_none(),
            key_id: self.key_id.clone(),
            public_key: key.der_base64(),
            public_key_fingerprint: key.fingerprint(),
        })?);
        out.push('\n');
        let mut digests = 0;
        for (i, d) in loaded.evidence.digests.iter().enumerate() {
            let Some(signed) = &d.signed else {
                return Err(Error::internal(format!("digest {} cannot be exported: {}", d.digest_id, d.problem.clone().unwrap_or_default())));
            };
            out.push_str(&line(&ExportLine::Digest { link_only: i < loaded.evidence.entries_from_digest, digest: signed.clone() })?);
            out.push('\n');
            digests += 1;
        }
        let mut entries = 0;
        let (from_ts, to_ts) = (timestamp(from), timestamp(to));
        for item in loaded.entry_items {
            if let Some(keep) = keep {
                let ts = item["ts"]["S"].as_str().unwrap_or("");
                if ts < from_ts.as_str() || ts > to_ts.as_str() || !keep(&item) {
                    continue;
                }
            }
            out.push_str(&line(&ExportLine::Entry { item })?);
            out.push('\n');
            entries += 1;
        }
        Ok((out.into_bytes(), digests, entries))
    }
}

/// The start of the first digest's period when the chain is empty.
pub fn genesis_start(until: DateTime<Utc>) -> String {
    timestamp(until - Duration::days(GENESIS_LOOKBACK_DAYS))
}
