//! `erasure` jobs: remove a person from everything Keel keeps
//! (docs/subject-requests.md, "Erasure"), then sign and record a
//! certificate of what was done.
//!
//! The job's parameters name only the request; the person's id is read from
//! the request and cleared from it at the end, in the same transaction that
//! destroys their audit key. Every step is idempotent, so a redelivered
//! message repeats the sweep and finishes (counts add up across attempts in
//! the checkpoint).

use std::collections::{BTreeMap, HashSet};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared::audit::digest::canonical_json;
use shared::audit::pseudonyms::{self, SubjectKeys};
use shared::audit::{Actor, AuditEntry};
use shared::domain::jobs::{self, Job, JobKind, JobStatus};
use shared::domain::subject_requests::{self, RequestKind, RequestStatus};
use shared::platform::crypto::sha256_hex;
use shared::platform::error::{Error, Result};
use shared::store::ids::SubjectRequestId;
use shared::store::{Item, QuerySpec, Store, UpdateSpec, Write, attr_s, s, timestamp};

use crate::Worker;

/// The certificate format; also the prefix of the signed statement.
pub const CERTIFICATE_FORMAT: &str = "keel-erasure-certificate/1";
/// Job statuses, each a `gsi2` partition (`JOBS#<status>`) swept for jobs
/// that mention the person.
const JOB_STATUSES: &[JobStatus] = &[JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded, JobStatus::Failed, JobStatus::Cancelled];
/// Dataset exports that can hold people (the audit dataset holds pseudonyms).
const PERSONAL_DATASETS: &[&str] = &["users", "charts", "orders", "activity"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErasureParams {
    pub request_id: String,
    /// sha256 of the receipt given to the requester: whoever holds it may
    /// fetch the certificate (the person may no longer be able to sign in).
    pub receipt_sha256: String,
}

/// What one location held and what was done with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub location: String,
    pub what: String,
    pub action: String,
    pub count: u64,
}

/// The signed statement of an erasure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    pub format: String,
    pub request_id: String,
    pub regime: String,
    /// sha256("<request id>:<user id>"): whoever knows the person's id can
    /// check the certificate is about them; it names nobody by itself.
    pub subject_commitment: String,
    /// The pseudonym the person's audit entries carry (now linked to nobody).
    pub audit_pseudonym: Option<String>,
    pub requested_at: String,
    pub due_at: String,
    pub completed_at: String,
    pub actions: Vec<Action>,
    /// What was kept, and why.
    pub retained: Vec<String>,
    pub key_id: String,
}

/// A certificate with its signature (KMS, ECDSA P-256 over
/// `keel-erasure-certificate/1:<sha256 of the canonical certificate>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedCertificate {
    pub certificate: Certificate,
    pub sha256: String,
    pub signing_algorithm: String,
    /// DER, base64.
    pub signature: String,
}

pub fn signing_input(certificate_sha256: &str) -> String {
    format!("{CERTIFICATE_FORMAT}:{certificate_sha256}")
}

pub fn certificate_key(request_id: &str) -> String {
    format!("erasure-certificates/{request_id}.json")
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    /// (location, what, action) → count, summed over attempts.
    counts: BTreeMap<String, Action>,
}

impl Checkpoint {
    fn add(&mut self, location: &str, what: &str, action: &str, count: u64) {
        let entry = self.counts.entry(format!("{location}|{what}|{action}")).or_insert_with(|| Action {
            location: location.into(),
            what: what.into(),
            action: action.into(),
            count: 0,
        });
        entry.count += count;
    }
}

pub async fn run(worker: &Worker, job: &Job) -> Result<Value> {
    let params: ErasureParams = serde_json::from_value(job.params.clone()).map_err(|e| Error::internal(format!("erasure job params: {e}")))?;
    let store = &worker.store;
    let missing = || Error::Unprocessable(format!("no subject request {}", params.request_id));
    let request_id = SubjectRequestId::parse(&params.request_id).ok_or_else(missing)?;
    let request = subject_requests::get(store, &request_id).await?.ok_or_else(missing)?;
    if request.kind != RequestKind::Erasure {
        return Err(Error::Unprocessable(format!("subject request {} is not an erasure", request.id)));
    }
    if request.status == RequestStatus::Completed {
        // A redelivery after the end: the certificate already exists.
        return Ok(request.result.clone().unwrap_or(Value::Null));
    }
    let user_id = request.subject_id.clone().ok_or_else(|| Error::Unprocessable(format!("subject request {} names nobody", request.id)))?;
    let mut checkpoint: Checkpoint = job.checkpoint.clone().and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();

    let mut request = request;
    if request.status == RequestStatus::Received {
        let mut next = request.clone();
        next.status = RequestStatus::InProgress;
        request = subject_requests::update(store, &next, request.version, next.audit(&Actor::system("erasure"), "data.erasure_start")).await?;
    }

    let sweep = Sweep { worker, store, user_id: &user_id };
    let email = sweep.profile_email().await?;
    sweep.own_partition(&mut checkpoint).await?;
    sweep.personal_records(&mut checkpoint).await?;
    sweep.searches(&mut checkpoint).await?;
    sweep.owned(&mut checkpoint, &request.id, email.as_deref()).await?;
    sweep.orders(&mut checkpoint).await?;
    sweep.activity(&mut checkpoint).await?;
    sweep.marketing(&mut checkpoint, email.as_deref()).await?;
    sweep.exports_prefix(&mut checkpoint).await?;
    sweep.other_jobs(&mut checkpoint, &job.id, email.as_deref()).await?;
    save_checkpoint(worker, job, &checkpoint).await?;

    // The audit log: the entries stay (the chain must verify), their key goes.
    let keys = store.subject_keys()?;
    let pseudonym = keys.pseudonym_of(store, &user_id).await?;
    let entries = match &pseudonym {
        Some(p) => count_audit(store, p).await?,
        None => 0,
    };
    checkpoint.add(
        "dynamodb:audit log",
        "entries naming the person (by pseudonym), their personal fields sealed under the person's key",
        "key destroyed (crypto-shredded); entries kept so the signed chain verifies",
        entries,
    );

    let now = chrono::Utc::now();
    let certificate = Certificate {
        format: CERTIFICATE_FORMAT.into(),
        request_id: request.id.clone(),
        regime: request.regime.as_str().into(),
        subject_commitment: request.subject_commitment.clone(),
        audit_pseudonym: pseudonym.clone(),
        requested_at: request.received_at.clone(),
        due_at: request.due_at.clone(),
        completed_at: timestamp(now),
        actions: checkpoint.counts.values().cloned().collect(),
        retained: vec![
            "orders: kept for accounting (amount, currency, plan, country, dates), with the person's id removed".into(),
            "audit entries: kept for the integrity of the signed log; the person's id is a pseudonym that now maps to nobody, and their fields can no longer be decrypted".into(),
            "aggregate counters (dashboard rollups): counts only, no person".into(),
            "this request's record: its deadline and this certificate, with the person's id removed (a commitment remains)".into(),
            "short-lived records expire by TTL within minutes to days: 2FA sign-in challenges (5 min), OAuth sign-in attempts and pending links, rate-limit buckets (keyed by a hash)".into(),
            "point-in-time recovery backups of the table roll off after 35 days".into(),
        ],
        key_id: worker.config.audit_key_id.clone(),
    };
    let signed = sign(worker, certificate).await?;
    let body = serde_json::to_vec_pretty(&signed).map_err(|e| Error::internal(e.to_string()))?;
    let key = certificate_key(&request.id);
    worker.put_export(&key, "application/json", body).await?;

    // One transaction: the key destroyed, the request completed without the
    // person's id, and the audit entry that records the certificate.
    let result = json!({
        "certificate_key": key,
        "certificate_sha256": signed.sha256,
        "actions": signed.certificate.actions,
        "completed_at": signed.certificate.completed_at,
    });
    let mut done = request.clone();
    done.status = RequestStatus::Completed;
    done.subject_id = None;
    if done.requested_by == user_id {
        done.requested_by = pseudonyms::ERASED.into();
    }
    done.completed_at = Some(signed.certificate.completed_at.clone());
    done.job_id = Some(job.id.clone());
    done.result = Some(result.clone());
    done.version = request.version + 1;
    let mut writes = SubjectKeys::destroy(store, &user_id, pseudonym.as_deref(), &request.id)?;
    writes.push(Write::put_versioned(store.table(), done.to_item()?, request.version)?);
    let audit =
        AuditEntry::new(&Actor::system("erasure"), "data.erasure_complete", "subject_request", &request.id).changes::<Value, Value>(None, Some(&result));
    store.commit(writes, &audit).await?;
    Ok(result)
}

/// Erase a person again from a restored copy of the table (`store`), whose
/// backup was taken before their erasure (docs/backups.md, "Erasures"):
/// the same sweep of the table as the erasure job, and their audit key
/// items deleted, so the restored audit entries stay sealed. Files were
/// already deleted by the erasure itself (deleting them again is a no-op).
/// Returns how many locations held something of the person.
pub async fn reapply(worker: &Worker, store: &Store, user_id: &str) -> Result<u64> {
    let sweep = Sweep { worker, store, user_id };
    let mut checkpoint = Checkpoint::default();
    let email = sweep.profile_email().await?;
    sweep.own_partition(&mut checkpoint).await?;
    sweep.personal_records(&mut checkpoint).await?;
    sweep.searches(&mut checkpoint).await?;
    // No request is "the current one" here: every request about the person
    // in the copy loses their id, the erasure's own included.
    sweep.owned(&mut checkpoint, "", email.as_deref()).await?;
    sweep.orders(&mut checkpoint).await?;
    sweep.activity(&mut checkpoint).await?;
    sweep.marketing(&mut checkpoint, email.as_deref()).await?;
    sweep.other_jobs(&mut checkpoint, "", email.as_deref()).await?;
    let mut keys = vec![(pseudonyms::subject_pk(user_id), pseudonyms::KEY_SK.to_string())];
    if let Some(pseudonym) = worker.store.subject_keys()?.pseudonym_of(store, user_id).await? {
        keys.push((pseudonyms::pseudonym_pk(&pseudonym), pseudonyms::KEY_SK.to_string()));
    }
    store.batch_delete(&keys).await?;
    Ok(checkpoint.counts.values().filter(|a| a.count > 0).count() as u64)
}

async fn save_checkpoint(worker: &Worker, job: &Job, checkpoint: &Checkpoint) -> Result<()> {
    let Some(mut current) = jobs::get(&worker.store, &job.id).await? else { return Ok(()) };
    current.checkpoint = Some(serde_json::to_value(checkpoint).map_err(|e| Error::internal(e.to_string()))?);
    jobs::save(&worker.store, &current).await?;
    Ok(())
}

async fn sign(worker: &Worker, certificate: Certificate) -> Result<SignedCertificate> {
    let value = serde_json::to_value(&certificate).map_err(|e| Error::internal(e.to_string()))?;
    let sha256 = sha256_hex(canonical_json(&value).as_bytes());
    let der =
        shared::platform::crypto::kms_sign_p256(&worker.kms, &worker.config.audit_key_id, signing_input(&sha256).as_bytes(), "kms Sign (erasure certificate)")
            .await?;
    Ok(SignedCertificate { certificate, sha256, signing_algorithm: "ECDSA_SHA_256".into(), signature: base64::engine::general_purpose::STANDARD.encode(der) })
}

/// Audit entries naming the pseudonym as actor or target (counted, not read).
async fn count_audit(store: &Store, pseudonym: &str) -> Result<u64> {
    let mut total = 0u64;
    for (index, pk_name, pk) in [("gsi1", "gsi1pk", format!("ACTOR#{pseudonym}")), ("gsi2", "gsi2pk", format!("TARGET#user#{pseudonym}"))] {
        let condition = format!("{pk_name} = :pk");
        total += store.query_count(&QuerySpec { index: Some(index), key_condition: &condition, values: vec![(":pk", s(pk))], ..QuerySpec::default() }).await?;
    }
    Ok(total)
}

struct Sweep<'a> {
    worker: &'a Worker,
    store: &'a Store,
    user_id: &'a str,
}

fn key_of(item: &Item) -> (String, String) {
    (attr_s(item, "pk").unwrap_or("").to_string(), attr_s(item, "sk").unwrap_or("").to_string())
}

impl Sweep<'_> {
    /// Every item of a query (all pages).
    async fn all(&self, index: Option<&str>, pk_name: &str, pk: &str) -> Result<Vec<Item>> {
        let condition = format!("{pk_name} = :pk");
        self.store.query_all(&QuerySpec { index, key_condition: &condition, values: vec![(":pk", s(pk))], forward: true, ..QuerySpec::default() }).await
    }

    async fn profile_email(&self) -> Result<Option<String>> {
        Ok(self.store.get_item(&format!("USER#{}", self.user_id), "PROFILE").await?.and_then(|p| attr_s(&p, "email").map(str::to_string)))
    }

    /// `USER#id`: profile, sessions, 2FA, identities, activity events, and
    /// the guard items that point at them (email, identity).
    async fn own_partition(&self, checkpoint: &mut Checkpoint) -> Result<()> {
        let items = self.all(None, "pk", &format!("USER#{}", self.user_id)).await?;
        let mut keys = Vec::new();
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for item in &items {
            let sk = attr_s(item, "sk").unwrap_or("");
            let what = match sk {
                "PROFILE" => {
                    if let Some(email) = attr_s(item, "email") {
                        keys.push((format!("EMAIL#{email}"), "GUARD".to_string()));
                    }
                    "profile (name, email, roles, password hash) and its email guard"
                }
                "MFA" => "two-factor state (sealed TOTP secret, recovery-code hashes)",
                _ if sk.starts_with("SESSION#") => "sessions",
                _ if sk.starts_with("IDENTITY#") => {
                    if let (Some(provider), Some(subject)) = (attr_s(item, "provider"), attr_s(item, "subject")) {
                        keys.push((format!("IDENTITY#{provider}#{subject}"), "GUARD".to_string()));
                    }
                    "linked sign-in identities and their guards"
                }
                _ if sk.starts_with("EVENT#") => "activity events",
                "ERASURE" => "this erasure's in-progress marker",
                _ => "other records of the person",
            };
            *counts.entry(what).or_default() += 1;
            keys.push(key_of(item));
        }
        self.store.batch_delete(&keys).await?;
        for (what, n) in counts {
            checkpoint.add("dynamodb:table", what, "deleted", n);
        }
        Ok(())
    }

    /// `SAVEDSEARCH#id` and `SEARCHHIST#id`: the person's saved searches and
    /// the queries they ran (their suggestions). The team's rollups keep
    /// query texts without the person.
    async fn searches(&self, checkpoint: &mut Checkpoint) -> Result<()> {
        for (pk, what) in
            [(format!("SAVEDSEARCH#{}", self.user_id), "saved searches"), (format!("SEARCHHIST#{}", self.user_id), "search history (suggestions)")]
        {
            let keys: Vec<_> = self.all(None, "pk", &pk).await?.iter().map(key_of).collect();
            self.store.batch_delete(&keys).await?;
            checkpoint.add("dynamodb:table", what, "deleted", keys.len() as u64);
        }
        Ok(())
    }

    /// `gsi2 PERSONAL#id`: refresh tokens and stored idempotent responses.
    async fn personal_records(&self, checkpoint: &mut Checkpoint) -> Result<()> {
        let items = self.all(Some("gsi2"), "gsi2pk", &pseudonyms::personal_pk(self.user_id)).await?;
        let keys: Vec<_> = items.iter().map(key_of).collect();
        self.store.batch_delete(&keys).await?;
        checkpoint.add("dynamodb:table", "refresh tokens and stored request replies (idempotency)", "deleted", keys.len() as u64);
        Ok(())
    }

    /// `gsi1 OWNER#id` (and the soft-deleted `OWNER#id#deleted`): charts with
    /// their moderation history, jobs with their segments and files, and
    /// other subject requests about the person (kept, without the id).
    async fn owned(&self, checkpoint: &mut Checkpoint, current_request: &str, email: Option<&str>) -> Result<()> {
        let mut items = self.all(Some("gsi1"), "gsi1pk", &format!("OWNER#{}", self.user_id)).await?;
        items.extend(self.all(Some("gsi1"), "gsi1pk", &format!("OWNER#{}#deleted", self.user_id)).await?);
        let (mut charts, mut jobs, mut requests, mut files) = (0u64, 0u64, 0u64, 0u64);
        for item in &items {
            let (pk, _) = key_of(item);
            match attr_s(item, "type").unwrap_or("") {
                "chart" => {
                    let keys: Vec<_> = self.all(None, "pk", &pk).await?.iter().map(key_of).collect();
                    self.store.batch_delete(&keys).await?;
                    charts += 1;
                }
                "job" => {
                    files += self.worker.delete_job_files(item).await?;
                    let keys: Vec<_> = self.all(None, "pk", &pk).await?.iter().map(key_of).collect();
                    self.store.batch_delete(&keys).await?;
                    jobs += 1;
                }
                "subject_request" => {
                    if attr_s(item, "id") == Some(current_request) {
                        continue;
                    }
                    // Kept as the record of a request answered, without the
                    // person (their id, and file keys under their prefix).
                    self.redact(item, email, &["subject_id", "gsi1pk", "gsi1sk"]).await?;
                    requests += 1;
                }
                _ => {}
            }
        }
        checkpoint.add("dynamodb:table", "charts and their moderation history", "deleted", charts);
        checkpoint.add("dynamodb:table", "jobs the person ran (exports, their progress)", "deleted", jobs);
        checkpoint.add("dynamodb:table", "earlier subject requests about the person", "anonymized (id removed)", requests);
        checkpoint.add("s3:exports bucket", "files of the person's jobs", "deleted", files);
        Ok(())
    }

    /// Orders are kept for accounting, without the person.
    async fn orders(&self, checkpoint: &mut Checkpoint) -> Result<()> {
        let items = self.all(Some("gsi1"), "gsi1pk", &format!("USER#{}", self.user_id)).await?;
        let mut n = 0;
        for item in items.iter().filter(|i| attr_s(i, "type") == Some("order")) {
            let (pk, sk) = key_of(item);
            let anonymize = UpdateSpec::new("SET user_id = :erased, anonymized_at = :now REMOVE gsi1pk, gsi1sk, email, customer_name, billing_address")
                .value(":erased", s(pseudonyms::ERASED))
                .value(":now", s(timestamp(chrono::Utc::now())));
            self.store.update(&pk, &sk, &anonymize).await?;
            n += 1;
        }
        checkpoint.add("dynamodb:table", "orders", "anonymized (person removed; kept for accounting)", n);
        // The links from Stripe customers to the person: without them, no
        // later Stripe event finds the person again (the facts themselves
        // hold amounts and dates, no one's details).
        let links: Vec<_> = items.iter().filter(|i| attr_s(i, "type") == Some("stripe_customer")).map(key_of).collect();
        self.store.batch_delete(&links).await?;
        checkpoint.add("dynamodb:table", "links from Stripe customers", "deleted", links.len() as u64);
        Ok(())
    }

    /// The person's email-marketing subscription (by their address): the
    /// subscriber and list memberships. A suppression stays: it holds no
    /// address (only its hash) and keeps Keel from mailing it again.
    async fn marketing(&self, checkpoint: &mut Checkpoint, email: Option<&str>) -> Result<()> {
        let n = match email {
            Some(email) => shared::domain::marketing::erase(self.store, email).await?,
            None => 0,
        };
        checkpoint.add("dynamodb:table", "email-marketing subscription and list memberships", "deleted", n);
        Ok(())
    }

    async fn activity(&self, checkpoint: &mut Checkpoint) -> Result<()> {
        let pk = format!("ACTIVITY#{}", self.user_id);
        let found = self.store.get_item(&pk, "LAST").await?.is_some();
        if found {
            self.store.batch_delete(&[(pk, "LAST".into())]).await?;
        }
        checkpoint.add("dynamodb:table", "last-active marker (dashboard)", "deleted", found as u64);
        // What the security detectors learned of the person (countries,
        // last sign-in place, working hours; compliance's
        // `security_events::profile_pk`). Their security events stay,
        // naming the person by a pseudonym nothing links back any more.
        let pk = format!("SECPROFILE#{}", self.user_id);
        let found = self.store.get_item(&pk, "PROFILE").await?.is_some();
        if found {
            self.store.batch_delete(&[(pk, "PROFILE".into())]).await?;
        }
        checkpoint.add("dynamodb:table", "security detectors' profile (sign-in places, habits)", "deleted", found as u64);
        Ok(())
    }

    /// Every object under the person's export prefix (their exports and
    /// subject-export zips, whoever asked for them).
    async fn exports_prefix(&self, checkpoint: &mut Checkpoint) -> Result<()> {
        let n = self.worker.delete_prefix(&format!("data-exports/{}/", self.user_id)).await?;
        checkpoint.add("s3:exports bucket", "the person's exports and personal-data packages", "deleted", n);
        Ok(())
    }

    /// Other people's jobs: files that can hold the person (dataset
    /// exports with people in them, imports) are deleted, and any mention
    /// of the person's id or email in a job record is replaced.
    async fn other_jobs(&self, checkpoint: &mut Checkpoint, this_job_id: &str, email: Option<&str>) -> Result<()> {
        let (mut purged, mut redacted, mut files) = (0u64, 0u64, 0u64);
        let mut seen = HashSet::new();
        for status in JOB_STATUSES {
            for item in self.all(Some("gsi2"), "gsi2pk", &format!("JOBS#{}", status.as_str())).await? {
                let (pk, _) = key_of(&item);
                if !seen.insert(pk.clone()) || pk == format!("JOB#{this_job_id}") {
                    continue;
                }
                let value: Value = serde_dynamo::from_item(item.clone()).map_err(|e| Error::internal(e.to_string()))?;
                let kind = value["kind"].as_str().unwrap_or("");
                let dataset = value["params"]["filters"]["dataset"].as_str().unwrap_or("");
                let holds_people = (kind == JobKind::DataExport.as_str() && PERSONAL_DATASETS.contains(&dataset))
                    || kind == JobKind::DataImport.as_str()
                    || kind == JobKind::GdprExport.as_str();
                let text = value.to_string();
                let mentions = text.contains(self.user_id) || email.is_some_and(|e| text.contains(e));
                if !holds_people && !mentions {
                    continue;
                }
                if holds_people {
                    let n = self.worker.delete_job_files(&item).await?;
                    if n > 0 {
                        files += n;
                        purged += 1;
                    }
                }
                if mentions {
                    self.redact(&item, email, &[]).await?;
                    redacted += 1;
                }
            }
        }
        checkpoint.add("s3:exports bucket", "files of other operators' exports and imports that can hold the person", "deleted", files);
        checkpoint.add("dynamodb:table", "other jobs whose files were deleted", "file removed; job record kept", purged);
        checkpoint.add("dynamodb:table", "other jobs naming the person (e.g. bulk-operation id lists, filters)", "id and email replaced", redacted);
        Ok(())
    }

    /// Rewrite an item with the person's id and email replaced (and some
    /// attributes dropped).
    async fn redact(&self, item: &Item, email: Option<&str>, drop: &[&str]) -> Result<()> {
        let mut value: Value = serde_dynamo::from_item(item.clone()).map_err(|e| Error::internal(e.to_string()))?;
        if let Some(map) = value.as_object_mut() {
            for name in drop {
                map.remove(*name);
            }
        }
        let mut text = value.to_string().replace(self.user_id, pseudonyms::ERASED);
        if let Some(e) = email {
            text = text.replace(e, "[erased]");
        }
        let value: Value = serde_json::from_str(&text).map_err(|e| Error::internal(e.to_string()))?;
        let item: Item = serde_dynamo::to_item(value).map_err(|e| Error::internal(e.to_string()))?;
        // Replaces the item with its redacted copy (same key).
        self.store.put_item_unchecked(item).await?;
        Ok(())
    }
}
