//! `gdpr_export` jobs (docs/subject-requests.md): everything Keel holds
//! about one person — profile, sessions, 2FA state, linked identities,
//! charts and their moderation, orders, activity, jobs they ran, their
//! subject requests, audit entries about them, and the files Keel keeps for
//! them — as ONE zip: `<category>.json` and `<category>.csv` per category, a
//! README and a manifest with the size and SHA-256 of every other file. It
//! goes to the exports bucket (SSE-KMS) at a key fixed per job, so a rerun
//! replaces rather than adds; the subject request is marked in progress,
//! then completed with the zip's size and hash (or failed, on the last
//! attempt). Secrets (password hashes, 2FA secrets and recovery codes,
//! tokens) never enter the zip.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use shared::audit::Actor;
use shared::domain::export::{self, Cell, CellKind, CsvEncoder, Encoder, Header};
use shared::domain::jobs::Job;
use shared::domain::subject_requests::{self, ExportJobParams, ExportJobResult, RequestKind, RequestStatus, SubjectRequest};
use shared::platform::error::{Error, Result};
use shared::store::ids::SubjectRequestId;
use shared::store::{Item, QuerySpec, Store, s, timestamp};

use crate::Worker;

/// What the zip is called when downloaded.
fn file_name(asked_at: DateTime<Utc>) -> String {
    format!("keel-personal-data-{}.zip", asked_at.format("%Y%m%dT%H%M%SZ"))
}

/// The S3 key of a subject export: under the subject's own prefix (so the
/// person's files are found in one place), fixed per job.
pub fn object_key(subject_id: &str, job_id: &str) -> String {
    format!("data-exports/{subject_id}/{job_id}.zip")
}

/// One category of the export: its records and the CSV's leading columns.
#[derive(Debug, Clone)]
pub struct Category {
    pub name: &'static str,
    /// What the file holds (README).
    pub about: &'static str,
    /// Columns shown first, in this order (others follow, sorted).
    pub columns: &'static [&'static str],
    pub records: Vec<Map<String, Value>>,
}

pub async fn run(worker: &Worker, job: &Job) -> Result<Value> {
    let params: ExportJobParams = serde_json::from_value(job.params.clone()).map_err(|e| Error::internal(format!("gdpr_export job params: {e}")))?;
    match export(worker, job, &params).await {
        Ok(result) => Ok(result),
        Err(e) => {
            // The last attempt (or a refusal no retry can fix): the request
            // is answered as failed, so it does not wait unseen.
            if job.attempts >= crate::MAX_ATTEMPTS || matches!(e, Error::Unprocessable(_)) {
                let reason = e.to_string();
                let failed = change_request(worker, &params.request_id, "data.subject_request.fail", |r| {
                    if r.status == RequestStatus::Completed {
                        return false;
                    }
                    r.status = RequestStatus::Failed;
                    r.result = Some(json!({ "error": reason }));
                    true
                })
                .await;
                if let Err(mark) = failed {
                    tracing::error!(request_id = %params.request_id, error = %mark, "could not mark the subject request failed");
                }
            }
            Err(e)
        }
    }
}

async fn export(worker: &Worker, job: &Job, params: &ExportJobParams) -> Result<Value> {
    let store = &worker.store;
    let missing = || Error::Unprocessable(format!("no subject request {}", params.request_id));
    let request_id = SubjectRequestId::parse(&params.request_id).ok_or_else(missing)?;
    let request = subject_requests::get(store, &request_id).await?.ok_or_else(missing)?;
    if request.kind != RequestKind::Export {
        return Err(Error::Unprocessable(format!("subject request {} is not an export", request.id)));
    }
    // Erased meanwhile (the subject id is cleared): nothing is left to export.
    if request.subject_id.as_deref() != Some(params.subject_id.as_str()) {
        return Err(Error::Unprocessable(format!("subject request {} no longer names its subject (erased?)", request.id)));
    }
    let request = change_request(worker, &request.id, "data.subject_request.start", |r| {
        if r.status != RequestStatus::Received {
            return false;
        }
        r.status = RequestStatus::InProgress;
        true
    })
    .await?;

    let subject = &params.subject_id;
    let key = object_key(subject, &job.id);
    let categories = gather(worker, subject, &key).await?;
    let now = Utc::now();
    let (zip, files) = build_zip(&request, subject, &categories, now)?;
    let sha256 = hex(&Sha256::digest(&zip));
    let bytes = zip.len() as u64;
    worker.put_export(&key, "application/zip", zip).await?;

    let asked_at = DateTime::parse_from_rfc3339(&job.created_at).map(|t| t.with_timezone(&Utc)).unwrap_or(now);
    let records: BTreeMap<String, u64> = categories.iter().map(|c| (c.name.to_string(), c.records.len() as u64)).collect();
    let result = ExportJobResult {
        request_id: request.id.clone(),
        bucket: worker.config.exports_bucket.clone(),
        key: key.clone(),
        content_type: "application/zip".into(),
        file_name: file_name(asked_at),
        files,
        records: records.clone(),
        bytes,
        sha256: sha256.clone(),
    };
    let summary = json!({ "job_id": job.id, "key": key, "file_name": result.file_name, "bytes": bytes, "sha256": sha256, "files": files, "records": records });
    let job_id = job.id.clone();
    // A rerun (the worker died before recording the job) replaces the
    // object, so the request then names the new one.
    change_request(worker, &request.id, "data.subject_request.complete", |r| {
        if r.status == RequestStatus::Completed && r.result.as_ref() == Some(&summary) {
            return false;
        }
        r.status = RequestStatus::Completed;
        r.completed_at = Some(timestamp(Utc::now()));
        r.job_id = Some(job_id.clone());
        r.result = Some(summary.clone());
        true
    })
    .await?;
    tracing::info!(job_id = %job.id, request_id = %request.id, bytes, "subject export written");
    serde_json::to_value(result).map_err(|e| Error::internal(e.to_string()))
}

/// Apply `change` to the stored request (version-checked, audited as
/// `action` by the jobs worker, with before and after); a concurrent change
/// is read back and `change` applied again. `change` returns false when
/// there is nothing to do.
async fn change_request(worker: &Worker, id: &str, action: &str, change: impl Fn(&mut SubjectRequest) -> bool) -> Result<SubjectRequest> {
    let id = SubjectRequestId::parse(id).ok_or_else(|| Error::internal(format!("subject request {id}: not a request id")))?;
    for _ in 0..3 {
        let current = subject_requests::get(&worker.store, &id).await?.ok_or_else(|| Error::internal(format!("subject request {id} vanished")))?;
        let mut next = current.clone();
        if !change(&mut next) {
            return Ok(current);
        }
        let audit = next.audit(&Actor::system("jobs"), action).changes(Some(&current.audit_view()), Some(&next.audit_view()));
        match subject_requests::update(&worker.store, &next, current.version, audit).await {
            Ok(stored) => return Ok(stored),
            Err(Error::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Conflict(format!("subject request {id} keeps changing")))
}

// ---------------------------------------------------------------------------
// Gathering
// ---------------------------------------------------------------------------

/// Items of a partition (table or index) whose sort key starts with `prefix`,
/// optionally of one `type`.
async fn partition(store: &Store, index: Option<&str>, pk: String, prefix: Option<&str>, item_type: Option<&str>) -> Result<Vec<Item>> {
    let (pk_name, sk_name) = match index {
        Some("gsi1") => ("gsi1pk", "gsi1sk"),
        Some("gsi2") => ("gsi2pk", "gsi2sk"),
        Some(other) => return Err(Error::internal(format!("unexpected index {other}"))),
        None => ("pk", "sk"),
    };
    let mut names = vec![("#pk", pk_name)];
    let mut values = vec![(":pk", s(pk))];
    let condition = match prefix {
        Some(p) => {
            names.push(("#sk", sk_name));
            values.push((":prefix", s(p)));
            "#pk = :pk AND begins_with(#sk, :prefix)"
        }
        None => "#pk = :pk",
    };
    let filter = match item_type {
        Some(t) => {
            names.push(("#type", "type"));
            values.push((":type", s(t)));
            "#type = :type"
        }
        None => "",
    };
    let spec = QuerySpec { index, key_condition: condition, filter, names, values, forward: true, consistent: false };
    store.query_all(&spec).await
}

fn without(mut record: Map<String, Value>, drop: &[&str]) -> Map<String, Value> {
    for key in drop {
        record.remove(*key);
    }
    record
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Gather every category about `subject`; `own_key` is this export's own
/// object (not listed among the person's files).
pub async fn gather(worker: &Worker, subject: &str, own_key: &str) -> Result<Vec<Category>> {
    let store = &worker.store;
    let user_pk = format!("USER#{subject}");

    // Profile: the record without its password hash or other secrets; the
    // day the streams worker last saw them active.
    let mut profile = Vec::new();
    if let Some(item) = store.get_item(&user_pk, "PROFILE").await? {
        let has_password = item.get("password_hash").is_some_and(|v| !v.is_null());
        let mut record = export::record_of(&item);
        record.insert("has_password".into(), Value::Bool(has_password));
        let last_active = store.get_item(&shared::domain::rollups::activity_pk(subject), shared::domain::rollups::ACTIVITY_SK).await?;
        let day = last_active.as_ref().and_then(|i| shared::store::attr_s(i, "day")).map(|d| Value::String(d.to_string()));
        record.insert("last_active_day".into(), day.unwrap_or(Value::Null));
        profile.push(record);
    }

    // Sessions: when, from where, how signed in; token material is never
    // stored in them (refresh tokens live only as hashes elsewhere).
    let sessions = partition(store, None, user_pk.clone(), Some("SESSION#"), None).await?.iter().map(|i| without(export::record_of(i), &["ttl"])).collect();

    // 2FA: whether and since when, never the secret or the recovery codes.
    let mfa = shared::identity::two_factor::get(store, subject).await?;
    let two_factor = vec![object(match &mfa {
        Some(m) => json!({
            "enabled": m.is_active(), "status": m.status, "enrolled_at": m.created_at,
            "activated_at": m.activated_at, "updated_at": m.updated_at, "recovery_codes_left": m.recovery_codes.len(),
        }),
        None => json!({ "enabled": false, "status": null, "enrolled_at": null, "activated_at": null, "updated_at": null, "recovery_codes_left": 0 }),
    })];

    let identities = partition(store, None, user_pk.clone(), Some("IDENTITY#"), None).await?.iter().map(export::record_of).collect();

    // Charts, soft-deleted ones too, and the moderation decisions on them.
    let mut chart_items = partition(store, Some("gsi1"), format!("OWNER#{subject}"), None, Some("chart")).await?;
    chart_items.extend(partition(store, Some("gsi1"), format!("OWNER#{subject}#deleted"), None, Some("chart")).await?);
    let mut moderation = Vec::new();
    for chart in &chart_items {
        if let Some(id) = shared::store::attr_s(chart, "id") {
            let decisions =
                partition(store, None, shared::domain::charts::Chart::pk(id), Some(shared::domain::charts::ModerationEvent::sk_prefix()), None).await?;
            moderation.extend(decisions.iter().map(export::record_of));
        }
    }
    let charts: Vec<Map<String, Value>> = chart_items.iter().map(export::record_of).collect();

    let orders = partition(store, Some("gsi1"), format!("USER#{subject}"), None, Some("order")).await?.iter().map(export::record_of).collect();
    let activity = partition(store, None, user_pk.clone(), Some("EVENT#"), None).await?.iter().map(export::record_of).collect();

    // Jobs they ran (what they asked for and what came of it); the
    // worker's own checkpoint (an upload id) is left out.
    let job_items = partition(store, Some("gsi1"), format!("OWNER#{subject}"), None, Some("job")).await?;
    let jobs: Vec<Map<String, Value>> = job_items.iter().map(|i| without(export::record_of(i), &["checkpoint"])).collect();

    let requests = subject_requests::all_for_subject(store, subject).await?;
    let requests = requests.iter().map(|r| object(serde_json::to_value(r).unwrap_or(Value::Null))).collect();

    let entries = shared::audit::entries_about(store, subject).await?;
    let audit_entries = entries.iter().map(|e| audit_record(e, subject)).collect();

    let files = files_of(worker, subject, &jobs, own_key).await?;

    Ok(vec![
        Category {
            name: "profile",
            about: "Your account: email, name, roles, status, country, when it was created and last signed in, whether a password is set (never the password or its hash), and the last day you were active.",
            columns: &[
                "id",
                "email",
                "name",
                "status",
                "roles",
                "country",
                "created_at",
                "updated_at",
                "last_login_at",
                "deleted_at",
                "has_password",
                "last_active_day",
            ],
            records: profile,
        },
        Category {
            name: "sessions",
            about: "Your sign-in sessions: when they started and were last used, the address and browser (user agent) they came from, how you signed in (amr). Session tokens are not stored by Keel and are not included.",
            columns: &["id", "status", "created_at", "last_used_at", "source_ip", "user_agent", "amr", "scope"],
            records: sessions,
        },
        Category {
            name: "two_factor",
            about: "Your two-factor authentication: whether it is on, since when, and how many recovery codes are left. The secret and the recovery codes are never included.",
            columns: &["enabled", "status", "enrolled_at", "activated_at", "updated_at", "recovery_codes_left"],
            records: two_factor,
        },
        Category {
            name: "identities",
            about: "Accounts at identity providers (OAuth/OIDC) linked to yours: the provider, its id for you, the email it reported, when linked.",
            columns: &["provider", "subject", "email", "linked_at", "user_id"],
            records: identities,
        },
        Category {
            name: "charts",
            about: "Your charts, deleted ones (restorable) included.",
            columns: &["id", "title", "kind", "moderation_status", "created_at", "updated_at", "deleted_at", "owner_id"],
            records: charts,
        },
        Category {
            name: "chart_moderation",
            about: "Moderation decisions on your charts: when, which action, from and to which state, the reason, and the moderator's user id.",
            columns: &["id", "chart_id", "at", "action", "from", "to", "reason", "note", "actor_id"],
            records: moderation,
        },
        Category {
            name: "orders",
            about: "Your orders.",
            columns: &["id", "plan", "billing", "amount_cents", "currency", "country", "status", "created_at", "refunded_at", "user_id"],
            records: orders,
        },
        Category {
            name: "activity",
            about: "Activity events recorded for you (sign-up, sign-ins, charts created, orders placed...).",
            columns: &["id", "ts", "kind", "chart_id", "order_id", "amount_cents", "country", "user_id"],
            records: activity,
        },
        Category {
            name: "jobs",
            about: "Jobs you started (exports, imports, bulk operations...): what was asked, their status and result.",
            columns: &["id", "kind", "status", "created_at", "updated_at", "attempts", "error", "params", "progress", "result", "owner_id"],
            records: jobs,
        },
        Category {
            name: "subject_requests",
            about: "Your GDPR/CCPA requests (this one included): kind, regime, status, when received, due and completed.",
            columns: &[
                "id",
                "kind",
                "regime",
                "status",
                "received_at",
                "due_at",
                "completed_at",
                "requested_by",
                "job_id",
                "result",
                "subject_id",
                "subject_commitment",
            ],
            records: requests,
        },
        Category {
            name: "audit_entries",
            about: "Audit log entries where you are the actor or the target. Where someone else acted, their network address and browser are masked; where you acted on another person, the recorded changes are masked (their data is not yours to receive).",
            columns: &[
                "id",
                "ts",
                "action",
                "outcome",
                "reason",
                "target_type",
                "target_id",
                "actor.id",
                "actor.kind",
                "actor.source_ip",
                "actor.user_agent",
                "actor.request_id",
                "changes",
            ],
            records: audit_entries,
        },
        Category {
            name: "files",
            about: "Files Keel keeps for you in its exports bucket (your exports, audit exports and import files): key, size, SHA-256 and when written. The files themselves are not copied into this zip.",
            columns: &["key", "bytes", "sha256", "last_modified", "source"],
            records: files,
        },
    ])
}

/// An audit entry as the subject receives it: other people's network
/// details masked, and the recorded changes of what they did to another
/// person masked.
fn audit_record(entry: &shared::audit::AuditEntry, subject: &str) -> Map<String, Value> {
    let mut value = serde_json::to_value(entry).unwrap_or(Value::Null);
    if entry.actor.id != subject {
        if let Some(ip) = entry.actor.source_ip.as_deref() {
            value["actor"]["source_ip"] = Value::String(shared::domain::masking::ip(ip));
        }
        if entry.actor.user_agent.is_some() {
            value["actor"]["user_agent"] = Value::String(shared::domain::masking::REDACTED.into());
        }
        if let Some(location) = value["actor"].get_mut("location").and_then(Value::as_object_mut) {
            location.remove("latitude");
            location.remove("longitude");
        }
    }
    let about_someone_else = entry.target_type == "user" && entry.target_id != subject;
    if about_someone_else && entry.changes.is_some() {
        value["changes"] = Value::String(shared::domain::masking::REDACTED.into());
    }
    object(value)
}

/// The person's objects in the exports bucket: everything under their
/// `data-exports/` prefix, and the audit exports and import files of jobs
/// they ran; each hashed as stored now.
async fn files_of(worker: &Worker, subject: &str, jobs: &[Map<String, Value>], own_key: &str) -> Result<Vec<Map<String, Value>>> {
    let bucket = &worker.config.exports_bucket;
    let mut keys: BTreeMap<String, &'static str> = BTreeMap::new();
    for key in list_keys(&worker.s3, bucket, &format!("data-exports/{subject}/")).await? {
        if key != own_key {
            keys.insert(key, "export");
        }
    }
    let mut named: Vec<(String, &'static str)> = Vec::new();
    for job in jobs {
        let (Some(id), Some(kind)) =
            (job.get("id").and_then(Value::as_str), job.get("kind").and_then(|k| serde_json::from_value::<shared::domain::jobs::JobKind>(k.clone()).ok()))
        else {
            continue;
        };
        match kind {
            shared::domain::jobs::JobKind::AuditExport => {
                if let Some(key) = job.get("result").and_then(|r| r.get("key")).and_then(Value::as_str) {
                    named.push((key.to_string(), "audit export"));
                }
            }
            shared::domain::jobs::JobKind::DataImport => {
                named.push((shared::domain::data_jobs::import_object_key(id), "import upload"));
                named.push((shared::domain::data_jobs::import_report_key(id), "import report"));
            }
            _ => {}
        }
    }
    // Listed rather than fetched blindly: without a listing right, S3
    // answers a missing key with 403, not 404.
    for (key, source) in named {
        if list_keys(&worker.s3, bucket, &key).await?.contains(&key) {
            keys.entry(key).or_insert(source);
        }
    }
    let mut files = Vec::new();
    for (key, source) in keys {
        let Some((bytes, sha256, modified)) = hash_object(&worker.s3, bucket, &key).await? else { continue };
        files.push(object(json!({ "key": key, "bytes": bytes, "sha256": sha256, "last_modified": modified, "source": source })));
    }
    Ok(files)
}

/// Every key under `prefix`, all pages.
async fn list_keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(shared::platform::error::aws("s3 ListObjectsV2 (subject files)"))?;
        keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        match out.next_continuation_token() {
            Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_string()),
            _ => return Ok(keys),
        }
    }
}

/// Size, SHA-256 and last modification of an object, read through; `None`
/// when there is no such object (an import never uploaded, an expired export).
async fn hash_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Option<(u64, String, Option<String>)>> {
    let out = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
        Err(e) => return Err(shared::platform::error::aws("s3 GetObject (subject files)")(e)),
    };
    let modified = out.last_modified().and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())).map(timestamp);
    let mut body = out.body;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = body.try_next().await.map_err(|e| Error::internal(format!("reading {key}: {e}")))? {
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
    }
    Ok(Some((bytes, hex(&hasher.finalize()), modified)))
}

// ---------------------------------------------------------------------------
// The zip
// ---------------------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A JSON value as a CSV cell: integers stay numbers, lists of names are
/// joined with commas, anything else nested is its JSON text.
fn cell(value: Option<&Value>) -> Cell {
    match value {
        None | Some(Value::Null) => Cell::Null,
        Some(Value::String(s)) => Cell::Text(s.clone()),
        Some(Value::Number(n)) => n.as_i64().map(Cell::Int).unwrap_or_else(|| Cell::Text(n.to_string())),
        Some(Value::Bool(b)) => Cell::Text(b.to_string()),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Cell::Text(a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")),
        Some(other) => Cell::Text(other.to_string()),
    }
}

/// Records with nested objects opened one level (`actor.id`), for CSV.
fn flatten(record: &Map<String, Value>) -> Map<String, Value> {
    let mut flat = Map::new();
    for (key, value) in record {
        match value {
            Value::Object(inner) if !inner.is_empty() && key != "changes" && key != "params" && key != "result" && key != "progress" => {
                for (k, v) in inner {
                    flat.insert(format!("{key}.{k}"), v.clone());
                }
            }
            other => {
                flat.insert(key.clone(), other.clone());
            }
        }
    }
    flat
}

/// A category as CSV through Keel's CSV encoder (RFC 4180, formula-like
/// text neutralized): the category's leading columns, then any others.
pub fn category_csv(category: &Category) -> Result<Vec<u8>> {
    let rows: Vec<Map<String, Value>> = category.records.iter().map(flatten).collect();
    let present: BTreeSet<&String> = rows.iter().flat_map(|r| r.keys()).collect();
    let mut columns: Vec<String> = category.columns.iter().map(|c| c.to_string()).collect();
    columns.extend(present.into_iter().filter(|k| !category.columns.contains(&k.as_str())).cloned());
    let header = Header {
        table: category.name.to_string(),
        title: format!("Keel subject export: {}", category.name),
        filters: Vec::new(),
        generated_at: String::new(),
        columns: columns.iter().map(|c| (c.clone(), CellKind::Text)).collect(),
    };
    let mut encoder = CsvEncoder::new();
    encoder.begin(&header)?;
    for row in &rows {
        let cells: Vec<Cell> = columns.iter().map(|c| cell(row.get(c))).collect();
        encoder.row(&cells)?;
    }
    encoder.finish()?;
    let mut out = Vec::new();
    encoder.take(&mut out)?;
    Ok(out)
}

fn json_bytes(value: &impl serde::Serialize) -> Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(value).map_err(|e| Error::internal(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

fn zip_error(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("writing the zip: {e}"))
}

/// The zip: README.md, two files per category, manifest.json last (size
/// and SHA-256 of every other file). Returns the bytes and the file count.
pub fn build_zip(request: &SubjectRequest, subject: &str, categories: &[Category], now: DateTime<Utc>) -> Result<(Vec<u8>, u64)> {
    use zip::write::SimpleFileOptions;
    let modified = zip::DateTime::from_date_and_time(
        now.year().clamp(1980, 2107) as u16,
        now.month() as u8,
        now.day() as u8,
        now.hour() as u8,
        now.minute() as u8,
        now.second() as u8,
    )
    .unwrap_or_default();
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).last_modified_time(modified).unix_permissions(0o644);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut manifest: Vec<Value> = Vec::new();
    let mut add = |zip: &mut zip::ZipWriter<std::io::Cursor<Vec<u8>>>, name: &str, bytes: &[u8]| -> Result<()> {
        zip.start_file(name, options).map_err(zip_error)?;
        zip.write_all(bytes).map_err(zip_error)?;
        manifest.push(json!({ "name": name, "bytes": bytes.len(), "sha256": hex(&Sha256::digest(bytes)) }));
        Ok(())
    };
    add(&mut zip, "README.md", readme(request, subject, categories, now).as_bytes())?;
    for category in categories {
        add(&mut zip, &format!("{}.json", category.name), &json_bytes(&category.records)?)?;
        add(&mut zip, &format!("{}.csv", category.name), &category_csv(category)?)?;
    }
    let count = manifest.len() as u64 + 1;
    let manifest = json!({
        "request_id": request.id,
        "subject_id": subject,
        "regime": request.regime,
        "received_at": request.received_at,
        "due_at": request.due_at,
        "generated_at": timestamp(now),
        "algorithm": "sha256",
        "files": manifest,
    });
    zip.start_file("manifest.json", options).map_err(zip_error)?;
    zip.write_all(&json_bytes(&manifest)?).map_err(zip_error)?;
    let bytes = zip.finish().map_err(zip_error)?.into_inner();
    Ok((bytes, count))
}

fn readme(request: &SubjectRequest, subject: &str, categories: &[Category], now: DateTime<Utc>) -> String {
    let (law, rule) = match request.regime {
        subject_requests::Regime::Gdpr => (
            "the EU General Data Protection Regulation (GDPR), articles 15 and 20 (access and portability)",
            "GDPR art. 12(3): one month, which Keel counts as 30 days",
        ),
        subject_requests::Regime::Ccpa => ("the California Consumer Privacy Act (CCPA/CPRA), the right to know", "CCPA: 45 days"),
    };
    let mut text = format!(
        "# Your data in Keel

This archive holds everything Keel keeps about user `{subject}`, produced
for subject request `{request_id}` under {law}.

- Received: {received}
- Due: {due} ({days} days after receipt; {rule})
- Generated: {generated}
- Asked by: user `{requested_by}`

## Files

Each category comes twice: `<category>.json` (an array of records, as
stored, nested values kept) and `<category>.csv` (the same records, one
row each; nested values one level deep become `parent.child` columns,
deeper ones JSON text; text that a spreadsheet would read as a formula
starts with `'`). Times are RFC 3339 in UTC.

| category | records | what it holds |
|---|---|---|
",
        request_id = request.id,
        received = request.received_at,
        due = request.due_at,
        days = request.regime.deadline_days(),
        generated = timestamp(now),
        requested_by = request.requested_by,
    );
    for c in categories {
        text.push_str(&format!("| `{0}.json`, `{0}.csv` | {1} | {2} |\n", c.name, c.records.len(), c.about));
    }
    text.push_str(
        "
`manifest.json` lists every other file of this archive with its size in
bytes and its SHA-256, so you can check nothing was changed or lost
(`sha256sum <file>`). The archive's own SHA-256 is recorded with your
request (`GET /api/v1/data/requests/<request id>`).

## Consents

Keel keeps no consent records (no marketing or cookie consents are
collected), so there is no consents file.

## Not included, and why

- Secrets: your password hash, two-factor secret and recovery codes,
  session and refresh tokens (Keel stores tokens only as hashes).
- Short-lived operational records that expire on their own: pending
  sign-in challenges and OAuth sign-in attempts (minutes), replay
  protection for retried requests (24 hours), rate-limit counters.
- Derived copies of what is included: dashboard counters (no personal
  data) and the recent security events index (a copy of audit entries
  listed in `audit_entries`).
- The contents of your files: `files` lists them (key, size, SHA-256);
  download exports through the API while they are kept (30 days).
- Other people's personal data: in audit entries, the network address
  and browser of other people who acted on your account are masked, and
  so are the recorded changes of your actions on other people's accounts.
",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn category(name: &'static str, records: Vec<Value>) -> Category {
        Category { name, about: "test", columns: &["id"], records: records.into_iter().map(object).collect() }
    }

    #[test]
    fn csv_opens_nested_records_and_neutralizes_formulas() {
        let c = category(
            "audit_entries",
            vec![
                json!({ "id": "e1", "actor": { "id": "u1", "kind": "user" }, "changes": { "after": { "n": 1 } }, "reason": "=cmd", "n": 5, "roles": ["a", "b"] }),
            ],
        );
        let text = String::from_utf8(category_csv(&c).unwrap()).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), "id,actor.id,actor.kind,changes,n,reason,roles");
        assert_eq!(lines.next().unwrap(), r#"e1,u1,user,"{""after"":{""n"":1}}",5,'=cmd,"a,b""#);
        let empty = category("orders", vec![]);
        assert_eq!(String::from_utf8(category_csv(&empty).unwrap()).unwrap(), "id\n");
    }

    #[test]
    fn the_manifest_hashes_every_other_file() {
        let request = SubjectRequest::new(RequestKind::Export, subject_requests::Regime::Ccpa, "u1", "u1");
        let categories = vec![category("profile", vec![json!({ "id": "u1", "email": "ada@example.com" })]), category("orders", vec![])];
        let (bytes, count) = build_zip(&request, "u1", &categories, Utc::now()).unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len() as u64, count);
        let mut manifest = String::new();
        archive.by_name("manifest.json").unwrap().read_to_string(&mut manifest).unwrap();
        let manifest: Value = serde_json::from_str(&manifest).unwrap();
        let listed = manifest["files"].as_array().unwrap();
        assert_eq!(listed.len() as u64, count - 1);
        for file in listed {
            let mut content = Vec::new();
            archive.by_name(file["name"].as_str().unwrap()).unwrap().read_to_end(&mut content).unwrap();
            assert_eq!(file["bytes"], content.len());
            assert_eq!(file["sha256"], hex(&Sha256::digest(&content)));
        }
        let mut readme = String::new();
        archive.by_name("README.md").unwrap().read_to_string(&mut readme).unwrap();
        assert!(readme.contains("CCPA") && readme.contains("45 days") && readme.contains(&request.due_at), "{readme}");
        assert!(readme.contains("no consent records"));
    }

    #[test]
    fn other_peoples_details_are_masked_in_audit_entries() {
        let admin = Actor {
            id: "admin".into(),
            kind: "user".into(),
            source_ip: Some("203.0.113.7".into()),
            user_agent: Some("Firefox".into()),
            request_id: None,
            location: None,
        };
        let about_me =
            shared::audit::AuditEntry::new(&admin, "user.update", "user", "me").changes(Some(&json!({ "name": "A" })), Some(&json!({ "name": "B" })));
        let r = audit_record(&about_me, "me");
        assert_eq!((r["actor"]["source_ip"].as_str(), r["actor"]["user_agent"].as_str()), (Some("203.0.113.x"), Some("[masked]")));
        assert_eq!(r["changes"]["after"]["name"], "B", "changes to me are mine");
        let me = Actor { id: "me".into(), ..admin };
        let by_me = shared::audit::AuditEntry::new(&me, "user.update", "user", "other")
            .changes(Some(&json!({ "email": "o@x.io" })), Some(&json!({ "email": "p@x.io" })));
        let r = audit_record(&by_me, "me");
        assert_eq!(r["actor"]["source_ip"], "203.0.113.7", "my own address is mine");
        assert_eq!(r["changes"], "[masked]");
    }

    #[test]
    fn cells() {
        assert_eq!(cell(Some(&json!(3))), Cell::Int(3));
        assert_eq!(cell(Some(&json!(true))), Cell::Text("true".into()));
        assert_eq!(cell(None), Cell::Null);
        assert_eq!(cell(Some(&json!([1, 2]))), Cell::Text("[1,2]".into()));
    }
}
