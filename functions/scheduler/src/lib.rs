//! The scheduler: seals new audit entries into signed digests (CloudTrail's
//! digest files, ARCHITECTURE.md §5). Each run covers the period from the
//! previous digest's end up to now minus a settle delay, lists every entry
//! with the SHA-256 of its canonical stored form, links to the previous
//! digest's hash, signs with the audit digest key (KMS, ECDSA P-256), writes
//! the digest to the Object Lock bucket, then advances the chain head with a
//! conditional write (so concurrent or repeated runs never fork the chain).

pub mod outbox_sweep;

use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use shared::audit::chain::{self, ChainHead, DigestIndex};
use shared::audit::digest::{Digest, FORMAT, GENESIS_HASH, SignedDigest, signing_input};
use shared::audit::{Actor, AuditEntry, Journal};
use shared::platform::config::Config;
use shared::platform::error::{Error, Result};
use shared::store::{Store, Write, timestamp};

/// Entries younger than this are left for the next run. An entry's
/// timestamp is taken just before its transaction commits, and every writer
/// finishes (or fails) well within a minute (API functions time out at
/// 29 s), so after 60 s no transaction can still add an entry to the period.
pub const SETTLE: Duration = Duration::seconds(60);

/// Digest objects are locked (COMPLIANCE) for this long, as the bucket's
/// default retention.
pub const RETENTION_DAYS: i64 = 400;

#[derive(Clone, Debug)]
pub struct Sealer {
    pub store: Journal,
    pub s3: aws_sdk_s3::Client,
    pub kms: aws_sdk_kms::Client,
    pub config: Arc<Config>,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SealOutcome {
    Sealed {
        digest_id: String,
        sequence: u64,
        period_start: String,
        period_end: String,
        count: u64,
        object_key: String,
        hash: String,
    },
    /// Nothing to do: the chain already reaches `period_end`.
    UpToDate {
        period_end: String,
    },
    /// Another run advanced the head first; its digest stands.
    LostRace {
        sequence: u64,
    },
}

impl Sealer {
    pub fn new(config: Arc<Config>, clients: &shared::platform::aws::Clients) -> Sealer {
        Sealer { store: Journal::new(Store::new(clients.dynamo.clone(), config.table.clone())), s3: clients.s3.clone(), kms: clients.kms.clone(), config }
    }

    pub async fn from_env() -> anyhow::Result<Sealer> {
        let config = Arc::new(Config::from_env()?);
        Ok(Sealer::new(config, &shared::platform::aws::Clients::from_env()))
    }

    /// The scheduled run: seal up to now minus [`SETTLE`].
    pub async fn seal_due(&self) -> Result<SealOutcome> {
        self.seal_until(Utc::now() - SETTLE).await
    }

    /// Seal every entry with `previous end < ts <= until`. Running it again
    /// for a period already sealed does nothing.
    pub async fn seal_until(&self, until: DateTime<Utc>) -> Result<SealOutcome> {
        let head = chain::head(&self.store).await?;
        let period_end = timestamp(until);
        let period_start = match &head {
            Some(h) => h.period_end.clone(),
            None => chain::genesis_start(until),
        };
        if period_end <= period_start {
            return Ok(SealOutcome::UpToDate { period_end: period_start });
        }
        let entries: Vec<_> = chain::load_entries(&self.store, &period_start, &period_end, false).await?.into_iter().map(|(e, _)| e).collect();
        let digest = Digest {
            format: FORMAT.into(),
            digest_id: uuid::Uuid::now_v7().to_string(),
            sequence: head.as_ref().map(|h| h.version + 1).unwrap_or(1),
            period_start: period_start.clone(),
            period_end: period_end.clone(),
            previous_digest_id: head.as_ref().map(|h| h.digest_id.clone()),
            previous_hash: head.as_ref().map(|h| h.hash.clone()).unwrap_or_else(|| GENESIS_HASH.into()),
            key_id: self.config.audit_key_id.clone(),
            created_at: timestamp(Utc::now()),
            count: entries.len() as u64,
            entries,
        };
        let hash = digest.hash();
        let signed = SignedDigest { signature: self.sign(&hash).await?, digest };
        let object_key = chain::object_key(&period_end, &signed.digest.digest_id);
        self.put_object(&object_key, &signed).await?;

        let digest = &signed.digest;
        let index = DigestIndex {
            digest_id: digest.digest_id.clone(),
            sequence: digest.sequence,
            period_start: digest.period_start.clone(),
            period_end: digest.period_end.clone(),
            count: digest.count,
            hash: hash.clone(),
            previous_hash: digest.previous_hash.clone(),
            object_key: object_key.clone(),
            created_at: digest.created_at.clone(),
        };
        let new_head = ChainHead {
            digest_id: digest.digest_id.clone(),
            version: digest.sequence,
            hash: hash.clone(),
            period_end: period_end.clone(),
            genesis_start: head.as_ref().map(|h| h.genesis_start.clone()).unwrap_or_else(|| period_start.clone()),
        };
        let table = self.store.table();
        let head_write = match &head {
            Some(h) => Write::put_versioned(table, new_head.to_item()?, h.version)?,
            None => Write::put_new(table, new_head.to_item()?, Error::Conflict("the chain was started concurrently".into()))?,
        };
        let index_write = Write::put_new(table, index.to_item()?, Error::Conflict("digest id collision".into()))?;
        let audit = AuditEntry::new(&Actor::system("scheduler"), "audit.seal", "audit_digest", &digest.digest_id).changes::<(), _>(
            None,
            Some(&serde_json::json!({
                "sequence": digest.sequence, "period_start": digest.period_start, "period_end": digest.period_end,
                "count": digest.count, "hash": hash, "object_key": object_key,
            })),
        );
        match self.store.commit(vec![head_write, index_write], &audit).await {
            Ok(()) => {}
            // The object written above stays as an orphan no index names
            // (Object Lock forbids deleting it); verification ignores it.
            Err(Error::Conflict(_)) => {
                let sequence = chain::head(&self.store).await?.map(|h| h.version).unwrap_or(0);
                return Ok(SealOutcome::LostRace { sequence });
            }
            Err(e) => return Err(e),
        }
        Ok(SealOutcome::Sealed {
            digest_id: digest.digest_id.clone(),
            sequence: digest.sequence,
            period_start: digest.period_start.clone(),
            period_end,
            count: digest.count,
            object_key,
            hash,
        })
    }

    /// KMS `Sign` (RAW, ECDSA_SHA_256) over the short signing statement.
    async fn sign(&self, digest_hash: &str) -> Result<String> {
        let der =
            shared::platform::crypto::kms_sign_p256(&self.kms, &self.config.audit_key_id, signing_input(digest_hash).as_bytes(), "kms Sign (audit digest)")
                .await?;
        Ok(base64::engine::general_purpose::STANDARD.encode(der))
    }

    /// Write the digest object, locked in COMPLIANCE mode.
    async fn put_object(&self, key: &str, signed: &SignedDigest) -> Result<()> {
        let body = serde_json::to_vec(signed).map_err(|e| Error::internal(e.to_string()))?;
        let retain_until = aws_sdk_s3::primitives::DateTime::from_secs((Utc::now() + Duration::days(RETENTION_DAYS)).timestamp());
        self.s3
            .put_object()
            .bucket(&self.config.audit_bucket)
            .key(key)
            .content_type("application/json")
            .object_lock_mode(aws_sdk_s3::types::ObjectLockMode::Compliance)
            .object_lock_retain_until_date(retain_until)
            .body(body.into())
            .send()
            .await
            .map_err(shared::platform::error::aws("s3 PutObject (audit digest)"))?;
        Ok(())
    }
}
