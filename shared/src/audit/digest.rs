//! Tamper evidence for the audit log, after CloudTrail's digest files: the
//! canonical form and hash of a stored entry, the signed digest that seals a
//! period's entries and links to the previous digest, and the check that
//! names the first entry or digest that does not match. Pure: the live
//! (table + bucket) and offline (export file) verifiers both feed it.

use std::fmt::Write as _;
use std::time::Instant;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use p256::ecdsa::signature::Verifier;
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::platform::crypto::sha256_hex;
use crate::platform::error::{Error, Result};
use crate::store::Item;

/// The digest format; also the prefix of the signed statement.
pub const FORMAT: &str = "keel-audit-digest/1";

/// `previous_hash` of the first digest of a chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A stored item as DynamoDB JSON (`{"S": ..}`, `{"N": ..}`, `{"M": ..}`):
/// typed, so `"1"` and `1` never hash alike, and exactly what was stored.
pub fn typed_item(item: &Item) -> Value {
    Value::Object(item.iter().map(|(k, v)| (k.clone(), typed(v))).collect())
}

fn typed(value: &AttributeValue) -> Value {
    let sorted = |mut v: Vec<String>| {
        // Sets have no order in DynamoDB; fix one.
        v.sort();
        v
    };
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(_) => json!({ "NULL": true }),
        AttributeValue::M(m) => json!({ "M": typed_item(m) }),
        AttributeValue::L(l) => json!({ "L": l.iter().map(typed).collect::<Vec<_>>() }),
        AttributeValue::Ss(v) => json!({ "SS": sorted(v.clone()) }),
        AttributeValue::Ns(v) => json!({ "NS": sorted(v.clone()) }),
        AttributeValue::B(b) => json!({ "B": B64.encode(b.as_ref()) }),
        AttributeValue::Bs(v) => json!({ "BS": sorted(v.iter().map(|b| B64.encode(b.as_ref())).collect()) }),
        other => json!({ "UNKNOWN": format!("{other:?}") }),
    }
}

/// Compact JSON with object keys sorted at every level (independent of how
/// serde_json's map is configured): the bytes that are hashed and signed.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => {
            let _ = write!(out, "{scalar}");
        }
    }
}

/// SHA-256 (hex) of an entry's canonical stored form.
pub fn entry_hash(typed_item: &Value) -> String {
    sha256_hex(canonical_json(typed_item).as_bytes())
}

/// An audit entry as the chain knows it: its sort key (`ts#id`), id and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedEntry {
    pub id: String,
    pub sk: String,
    pub hash: String,
}

impl SealedEntry {
    /// From a stored item in DynamoDB JSON.
    pub fn of(typed_item: &Value) -> Result<SealedEntry> {
        let sk = typed_item["sk"]["S"].as_str().ok_or_else(|| Error::internal("audit item without a sort key"))?;
        let id = typed_item["id"]["S"].as_str().map(str::to_string).unwrap_or_else(|| sk.split_once('#').map(|(_, id)| id).unwrap_or("").to_string());
        Ok(SealedEntry { id, sk: sk.to_string(), hash: entry_hash(typed_item) })
    }

    /// The entry's time (the part of the sort key before `#`).
    pub fn ts(&self) -> &str {
        self.sk.split_once('#').map(|(ts, _)| ts).unwrap_or(&self.sk)
    }
}

/// The sealed content of one period: entries with `period_start < ts <=
/// period_end`, in sort-key order, and the hash of the previous digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    pub format: String,
    pub digest_id: String,
    /// 1 for the first digest of the chain, then +1 each.
    pub sequence: u64,
    /// Exclusive (RFC 3339 UTC, microseconds, like entry timestamps).
    pub period_start: String,
    /// Inclusive.
    pub period_end: String,
    pub previous_digest_id: Option<String>,
    /// SHA-256 of the previous digest's canonical form, or [`GENESIS_HASH`].
    pub previous_hash: String,
    /// The KMS key that signed it.
    pub key_id: String,
    pub created_at: String,
    pub count: u64,
    pub entries: Vec<SealedEntry>,
}

impl Digest {
    /// SHA-256 (hex) of the canonical JSON of the digest (without signature).
    pub fn hash(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        sha256_hex(canonical_json(&value).as_bytes())
    }
}

/// The short statement KMS signs (RAW, ECDSA_SHA_256): the format and the
/// digest's hash. Signing the hash rather than the digest keeps the message
/// under KMS's 4 KiB RAW limit whatever the period's size.
pub fn signing_input(digest_hash: &str) -> String {
    format!("{FORMAT}:{digest_hash}")
}

/// A digest object as stored in the audit-digest bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedDigest {
    #[serde(flatten)]
    pub digest: Digest,
    /// DER ECDSA P-256 signature over [`signing_input`], base64.
    pub signature: String,
}

/// The public half of the audit digest key, for local verification (KMS
/// `Verify` is not needed, and the emulator does not fail on bad signatures).
#[derive(Clone)]
pub struct DigestKey {
    key: p256::ecdsa::VerifyingKey,
    der: Vec<u8>,
}

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestKey").field("fingerprint", &self.fingerprint()).finish()
    }
}

impl DigestKey {
    /// From the DER SubjectPublicKeyInfo that KMS `GetPublicKey` returns.
    pub fn from_spki_der(der: &[u8]) -> Result<DigestKey> {
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(der).map_err(|e| Error::internal(format!("audit key is not a P-256 public key: {e}")))?;
        Ok(DigestKey { key, der: der.to_vec() })
    }

    pub fn from_base64(der: &str) -> Result<DigestKey> {
        Self::from_spki_der(&B64.decode(der).map_err(|_| Error::internal("audit public key is not base64"))?)
    }

    /// Fetch the public key from KMS.
    pub async fn load(kms: &aws_sdk_kms::Client, key_id: &str) -> Result<DigestKey> {
        let out = kms.get_public_key().key_id(key_id).send().await.map_err(crate::platform::error::aws("kms GetPublicKey (audit key)"))?;
        let der = out.public_key().ok_or_else(|| Error::internal("kms GetPublicKey returned no key"))?;
        Self::from_spki_der(der.as_ref())
    }

    pub fn der_base64(&self) -> String {
        B64.encode(&self.der)
    }

    /// SHA-256 of the DER public key: compare it with a copy obtained out of
    /// band before trusting an export's embedded key.
    pub fn fingerprint(&self) -> String {
        sha256_hex(&self.der)
    }

    pub fn verifies(&self, signed: &SignedDigest) -> bool {
        let Ok(der) = B64.decode(&signed.signature) else { return false };
        let Ok(signature) = p256::ecdsa::Signature::from_der(&der) else { return false };
        self.key.verify(signing_input(&signed.digest.hash()).as_bytes(), &signature).is_ok()
    }
}

/// What kind of mismatch verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The stored entry's hash differs from the sealed one.
    EntryChanged,
    /// Sealed in a digest but no longer stored.
    EntryDeleted,
    /// Stored inside a sealed period but in no digest.
    EntryInserted,
    /// A digest is missing, or does not link to its predecessor, or its
    /// index item disagrees with the digest object.
    ChainBroken,
    /// The digest's signature does not verify with the audit key.
    BadSignature,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Finding {
    pub kind: FindingKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort_key: Option<String>,
    pub detail: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    /// True when nothing in the checked range mismatched.
    pub ok: bool,
    /// The first mismatch in chain and sort-key order.
    pub first_problem: Option<Finding>,
    /// How many mismatches were found in all.
    pub problems: usize,
    pub digests_checked: usize,
    pub entries_checked: usize,
    /// Entries newer than the last digest (not sealed yet, not an error).
    pub unsealed_entries: usize,
    /// The sealed span that was checked: `(covered_from, covered_to]`.
    pub covered_from: Option<String>,
    pub covered_to: Option<String>,
    /// SHA-256 of the public key the signatures were checked with.
    pub key_fingerprint: String,
    pub elapsed_ms: u64,
    pub entries_per_second: f64,
    /// The range whose entries were compared, `(range_from, range_to]`
    /// (live verification; absent for an export file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_to: Option<String>,
    /// The digest chain checked from the digests alone (signatures, hashes,
    /// links): from this sequence (1: genesis; else the last verified digest,
    /// itself checked back to genesis when it was verified) to the head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_from_sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_to_sequence: Option<u64>,
    /// What is remembered as verified after this check (`AUDITVERIFY#latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified: Option<Verified>,
}

/// What verification has established so far, remembered in the table
/// (`AUDITVERIFY#latest`): the chain is intact from genesis to digest
/// `sequence` (whose hash is kept, so a later check starts from it), and
/// every entry up to `entries_verified_to` matched its digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Verified {
    pub sequence: u64,
    pub digest_id: String,
    /// SHA-256 of that digest's canonical form.
    pub hash: String,
    pub period_end: String,
    pub entries_verified_to: String,
    pub verified_at: String,
}

/// One digest as the verifier found it: what the index says, and the
/// signed object (absent when it could not be read).
#[derive(Debug, Clone)]
pub struct DigestEvidence {
    pub digest_id: String,
    pub sequence: u64,
    pub signed: Option<SignedDigest>,
    /// Why the object is absent or disagrees with its index item.
    pub problem: Option<String>,
}

/// What to check: digests in chain order (the first may be the predecessor
/// of the range, checked only as a link), and the stored entries of the
/// covered span in sort-key order.
pub struct Evidence {
    pub digests: Vec<DigestEvidence>,
    /// Digests before this index are only links (their entries are not checked).
    pub entries_from_digest: usize,
    pub entries: Vec<SealedEntry>,
    /// False for a filtered export: entries absent from it are not deletions.
    pub complete: bool,
    /// A finding the loader made before the digests (e.g. digests missing
    /// after the last one found).
    pub tail_problem: Option<Finding>,
    /// Compare only entries with `after < ts <= until` (a requested range):
    /// `entries` hold just those, and sealed entries outside are skipped.
    /// None: every entry of the checked digests' periods.
    pub window: Option<(String, String)>,
}

fn finding(kind: FindingKind, digest: Option<&str>, entry: Option<&SealedEntry>, detail: impl Into<String>) -> Finding {
    Finding { kind, digest_id: digest.map(str::to_string), entry_id: entry.map(|e| e.id.clone()), sort_key: entry.map(|e| e.sk.clone()), detail: detail.into() }
}

/// Check signatures, links and every entry; report the first mismatch.
pub fn verify(key: &DigestKey, evidence: &Evidence) -> Report {
    check(key, evidence).0
}

/// [`verify`], with every finding (in chain order) besides the report.
pub fn check(key: &DigestKey, evidence: &Evidence) -> (Report, Vec<Finding>) {
    let started = Instant::now();
    let in_window = |ts: &str| evidence.window.as_ref().is_none_or(|(after, until)| ts > after.as_str() && ts <= until.as_str());
    let mut findings: Vec<Finding> = Vec::new();
    let mut previous: Option<(&DigestEvidence, String)> = None;
    let mut entries = evidence.entries.iter().peekable();
    let mut entries_checked = 0;
    let mut covered_from = None;
    let mut covered_to = None;
    let mut digests_checked = 0;

    for (index, ev) in evidence.digests.iter().enumerate() {
        digests_checked += 1;
        let id = Some(ev.digest_id.as_str());
        let Some(signed) = &ev.signed else {
            findings.push(finding(FindingKind::ChainBroken, id, None, ev.problem.clone().unwrap_or_else(|| "digest object missing".into())));
            previous = None;
            continue;
        };
        let digest = &signed.digest;
        let hash = digest.hash();
        // A replaced object fails its signature before anything else.
        if !key.verifies(signed) {
            findings.push(finding(
                FindingKind::BadSignature,
                id,
                None,
                format!("digest {} (sequence {}) does not verify with the audit key", digest.digest_id, digest.sequence),
            ));
        }
        if let Some(problem) = &ev.problem {
            findings.push(finding(FindingKind::ChainBroken, id, None, problem.clone()));
        }
        if digest.digest_id != ev.digest_id || digest.sequence != ev.sequence {
            findings.push(finding(
                FindingKind::ChainBroken,
                id,
                None,
                format!(
                    "the object is digest {} (sequence {}), the index names {} (sequence {})",
                    digest.digest_id, digest.sequence, ev.digest_id, ev.sequence
                ),
            ));
        }
        match &previous {
            Some((prev, prev_hash)) => {
                let prev_digest = &prev.signed.as_ref().expect("previous has an object").digest;
                if digest.sequence != prev_digest.sequence + 1 {
                    findings.push(finding(
                        FindingKind::ChainBroken,
                        id,
                        None,
                        format!("digest sequence {} follows {}: digests are missing", digest.sequence, prev_digest.sequence),
                    ));
                } else if &digest.previous_hash != prev_hash || digest.previous_digest_id.as_deref() != Some(prev_digest.digest_id.as_str()) {
                    findings.push(finding(FindingKind::ChainBroken, id, None, format!("previous_hash does not match digest {}", prev_digest.digest_id)));
                } else if digest.period_start != prev_digest.period_end {
                    findings.push(finding(
                        FindingKind::ChainBroken,
                        id,
                        None,
                        format!("period starts at {} but the previous one ended at {}", digest.period_start, prev_digest.period_end),
                    ));
                }
            }
            None if index == 0 && digest.sequence == 1 && digest.previous_hash != GENESIS_HASH => {
                findings.push(finding(FindingKind::ChainBroken, id, None, "the first digest does not start from the genesis hash"));
            }
            None if index > 0 => {
                // The predecessor was unreadable; already reported.
            }
            None => {}
        }
        if digest.count as usize != digest.entries.len() {
            findings.push(finding(FindingKind::ChainBroken, id, None, format!("count {} but {} entries listed", digest.count, digest.entries.len())));
        }

        if index >= evidence.entries_from_digest {
            match &evidence.window {
                None => {
                    covered_from.get_or_insert_with(|| digest.period_start.clone());
                    covered_to = Some(digest.period_end.clone());
                }
                Some((after, until)) if digest.period_end.as_str() > after.as_str() && digest.period_start.as_str() < until.as_str() => {
                    covered_from.get_or_insert_with(|| std::cmp::max(&digest.period_start, after).clone());
                    covered_to = Some(std::cmp::min(&digest.period_end, until).clone());
                }
                Some(_) => {}
            }
            // Stored entries before this period (and after the previous
            // checked one) are outside every sealed span: skip them.
            while entries.peek().is_some_and(|e| e.ts() <= digest.period_start.as_str()) {
                entries.next();
            }
            let mut sealed = digest.entries.iter().filter(|e| in_window(e.ts())).peekable();
            loop {
                let stored = entries.peek().filter(|e| e.ts() <= digest.period_end.as_str());
                match (sealed.peek(), stored) {
                    (None, None) => break,
                    (Some(s), Some(t)) if s.sk == t.sk => {
                        entries_checked += 1;
                        if s.hash != t.hash {
                            findings.push(finding(
                                FindingKind::EntryChanged,
                                id,
                                Some(t),
                                format!("entry {} differs from what digest {} sealed", t.id, digest.digest_id),
                            ));
                        }
                        sealed.next();
                        entries.next();
                    }
                    (Some(s), t) if t.is_none_or(|t| s.sk < t.sk) => {
                        if evidence.complete {
                            findings.push(finding(
                                FindingKind::EntryDeleted,
                                id,
                                Some(s),
                                format!("entry {} was sealed in digest {} but is missing", s.id, digest.digest_id),
                            ));
                        }
                        sealed.next();
                    }
                    (_, Some(t)) => {
                        entries_checked += 1;
                        findings.push(finding(
                            FindingKind::EntryInserted,
                            id,
                            Some(t),
                            format!("entry {} lies in the period of digest {} but was never sealed", t.id, digest.digest_id),
                        ));
                        entries.next();
                    }
                    (Some(_), None) => unreachable!("handled above"),
                }
            }
        }
        previous = Some((ev, hash));
    }
    if let Some(tail) = &evidence.tail_problem {
        findings.push(tail.clone());
    }
    let unsealed_entries = entries.count();
    let elapsed = started.elapsed();
    let report = Report {
        ok: findings.is_empty(),
        problems: findings.len(),
        first_problem: findings.first().cloned(),
        digests_checked,
        entries_checked,
        unsealed_entries,
        covered_from,
        covered_to,
        key_fingerprint: key.fingerprint(),
        elapsed_ms: elapsed.as_millis() as u64,
        entries_per_second: entries_checked as f64 / elapsed.as_secs_f64().max(1e-9),
        range_from: evidence.window.as_ref().map(|w| w.0.clone()),
        range_to: evidence.window.as_ref().map(|w| w.1.clone()),
        chain_from_sequence: None,
        chain_to_sequence: None,
        last_verified: None,
    };
    (report, findings)
}

/// The lines of an export file (NDJSON): a header, the covering digests
/// (the first may be the predecessor, marked `link_only`), then entries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExportLine {
    Header {
        format: String,
        from: String,
        to: String,
        /// The filters applied; a filtered export cannot show deletions.
        #[serde(default)]
        filters: Value,
        complete: bool,
        key_id: String,
        /// The audit key's DER public key, base64.
        public_key: String,
        public_key_fingerprint: String,
    },
    Digest {
        #[serde(default)]
        link_only: bool,
        digest: SignedDigest,
    },
    /// The stored item in DynamoDB JSON, exactly as hashed.
    Entry { item: Value },
}

pub const EXPORT_FORMAT: &str = "keel-audit-export/1";

/// Verify an export file with the key embedded in it (or `pinned_key`, a
/// base64 DER key obtained out of band). Needs no AWS access.
pub fn verify_export(text: &str, pinned_key: Option<&str>) -> Result<Report> {
    let mut header = None;
    let mut digests = Vec::new();
    let mut links = 0;
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let parsed: ExportLine = serde_json::from_str(line).map_err(|e| Error::BadRequest(format!("line {}: not an export line: {e}", n + 1)))?;
        match parsed {
            ExportLine::Header { public_key, complete, .. } => header = Some((public_key, complete)),
            ExportLine::Digest { link_only, digest } => {
                if link_only {
                    links += 1;
                }
                digests.push(DigestEvidence {
                    digest_id: digest.digest.digest_id.clone(),
                    sequence: digest.digest.sequence,
                    signed: Some(digest),
                    problem: None,
                });
            }
            ExportLine::Entry { item } => entries.push(SealedEntry::of(&item)?),
        }
    }
    let (public_key, complete) = header.ok_or_else(|| Error::BadRequest("the export has no header line".into()))?;
    let key = DigestKey::from_base64(pinned_key.unwrap_or(&public_key))?;
    entries.sort_by(|a, b| a.sk.cmp(&b.sk));
    Ok(verify(&key, &Evidence { digests, entries_from_digest: links, entries, complete, tail_problem: None, window: None }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::{SigningKey, signature::Signer};
    use p256::pkcs8::EncodePublicKey;

    fn key() -> (SigningKey, DigestKey) {
        let signing = SigningKey::from_slice(&[5u8; 32]).unwrap();
        let der = signing.verifying_key().to_public_key_der().unwrap().into_vec();
        (signing, DigestKey::from_spki_der(&der).unwrap())
    }

    fn entry(ts: &str, id: &str, body: &str) -> SealedEntry {
        let item = json!({ "sk": { "S": format!("{ts}#{id}") }, "id": { "S": id }, "action": { "S": body } });
        SealedEntry::of(&item).unwrap()
    }

    fn sign(key: &SigningKey, digest: Digest) -> SignedDigest {
        let sig: p256::ecdsa::Signature = key.sign(signing_input(&digest.hash()).as_bytes());
        SignedDigest { digest, signature: B64.encode(sig.to_der().as_bytes()) }
    }

    fn chain(key: &SigningKey) -> (Vec<DigestEvidence>, Vec<SealedEntry>) {
        let a = entry("2026-01-01T00:00:01.000000Z", "a", "x");
        let b = entry("2026-01-01T00:00:02.000000Z", "b", "y");
        let c = entry("2026-01-01T00:05:01.000000Z", "c", "z");
        let d1 = Digest {
            format: FORMAT.into(),
            digest_id: "d1".into(),
            sequence: 1,
            period_start: "2026-01-01T00:00:00.000000Z".into(),
            period_end: "2026-01-01T00:05:00.000000Z".into(),
            previous_digest_id: None,
            previous_hash: GENESIS_HASH.into(),
            key_id: "k".into(),
            created_at: "t".into(),
            count: 2,
            entries: vec![a.clone(), b.clone()],
        };
        let d2 = Digest {
            digest_id: "d2".into(),
            sequence: 2,
            period_start: d1.period_end.clone(),
            period_end: "2026-01-01T00:10:00.000000Z".into(),
            previous_digest_id: Some("d1".into()),
            previous_hash: d1.hash(),
            count: 1,
            entries: vec![c.clone()],
            ..d1.clone()
        };
        let evidence = [d1, d2]
            .into_iter()
            .map(|d| DigestEvidence { digest_id: d.digest_id.clone(), sequence: d.sequence, signed: Some(sign(key, d)), problem: None })
            .collect();
        (evidence, vec![a, b, c])
    }

    fn run(digests: Vec<DigestEvidence>, entries: Vec<SealedEntry>, key: &DigestKey) -> Report {
        verify(key, &Evidence { digests, entries_from_digest: 0, entries, complete: true, tail_problem: None, window: None })
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = json!({ "b": 1, "a": { "z": [ { "y": "é\"", "x": null } ], "c": true } });
        assert_eq!(canonical_json(&v), r#"{"a":{"c":true,"z":[{"x":null,"y":"é\""}]},"b":1}"#);
    }

    #[test]
    fn typed_form_distinguishes_types_and_orders_sets() {
        let mut item = Item::new();
        item.insert("n".into(), AttributeValue::N("1".into()));
        item.insert("s".into(), AttributeValue::S("1".into()));
        item.insert("ss".into(), AttributeValue::Ss(vec!["b".into(), "a".into()]));
        let t = typed_item(&item);
        assert_eq!(canonical_json(&t), r#"{"n":{"N":"1"},"s":{"S":"1"},"ss":{"SS":["a","b"]}}"#);
    }

    #[test]
    fn clean_chain_verifies_and_each_tampering_is_named() {
        let (signing, key) = key();
        let (digests, entries) = chain(&signing);
        let report = run(digests.clone(), entries.clone(), &key);
        assert!(report.ok, "{report:?}");
        assert_eq!((report.entries_checked, report.digests_checked), (3, 2));

        let mut changed = entries.clone();
        changed[1] = entry("2026-01-01T00:00:02.000000Z", "b", "tampered");
        let r = run(digests.clone(), changed, &key);
        assert_eq!(r.first_problem.as_ref().map(|f| (f.kind, f.entry_id.clone())), Some((FindingKind::EntryChanged, Some("b".into()))));

        let deleted: Vec<_> = entries.iter().filter(|e| e.id != "a").cloned().collect();
        let r = run(digests.clone(), deleted, &key);
        assert_eq!(r.first_problem.map(|f| (f.kind, f.entry_id)), Some((FindingKind::EntryDeleted, Some("a".into()))));

        let mut inserted = entries.clone();
        inserted.insert(2, entry("2026-01-01T00:04:00.000000Z", "forged", "x"));
        let r = run(digests.clone(), inserted, &key);
        assert_eq!(r.first_problem.map(|f| (f.kind, f.entry_id, f.digest_id)), Some((FindingKind::EntryInserted, Some("forged".into()), Some("d1".into()))));

        let mut resigned = digests.clone();
        let (other, _) = (SigningKey::from_slice(&[6u8; 32]).unwrap(), ());
        resigned[1].signed = Some(sign(&other, resigned[1].signed.clone().unwrap().digest));
        let r = run(resigned, entries.clone(), &key);
        assert_eq!(r.first_problem.map(|f| (f.kind, f.digest_id)), Some((FindingKind::BadSignature, Some("d2".into()))));

        let mut relinked = digests.clone();
        let mut d2 = relinked[1].signed.clone().unwrap().digest;
        d2.previous_hash = GENESIS_HASH.into();
        relinked[1].signed = Some(sign(&signing, d2));
        let r = run(relinked, entries.clone(), &key);
        assert_eq!(r.first_problem.map(|f| (f.kind, f.digest_id)), Some((FindingKind::ChainBroken, Some("d2".into()))));

        let r = run(vec![digests[1].clone()], entries.clone(), &key);
        assert!(r.ok, "a range may start mid-chain: {r:?}");
        assert_eq!(r.entries_checked, 1);
        let r =
            verify(&key, &Evidence { digests: vec![digests[0].clone()], entries_from_digest: 0, entries, complete: true, tail_problem: None, window: None });
        assert_eq!(r.unsealed_entries, 1);
    }
}
