//! `data_import` jobs: check the uploaded file's size (HEAD) before reading
//! it, read at most the limit (gzip: at most the limit decompressed; zip
//! archives refused), parse CSV or NDJSON, validate every row (types,
//! required fields, email uniqueness in the file and in the table, chart
//! owners exist, roles within the importer's own), then either write a
//! rejected-rows CSV to the exports bucket and apply nothing, or (unless
//! dry_run) apply in transactions of 25 rows, each row with its own audit
//! entry. Item ids are derived from the import id and row number, so a
//! re-run (redelivery, a second `start`) finds rows already written and
//! writes them no second time.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use serde_json::{Value, json};
use shared::audit::{Actor, AuditEntry};
use shared::domain::charts::{self, Chart, ModerationStatus};
use shared::domain::data_jobs::{self, Compression, Dataset, IMPORT_BATCH, ImportFormat, ImportParams};
use shared::domain::jobs::{self, Job};
use shared::identity::rbac::{BuiltinRole, PermissionSet};
use shared::identity::users::{Email, User, UserStatus, check_name};
use shared::platform::error::{Error, FieldError, Result};
use shared::store::ids::UserId;
use shared::store::{Write, attr_s};

use crate::Worker;

/// A refusal that retrying cannot fix: the job fails at once.
fn refuse(message: impl Into<String>) -> Error {
    Error::Unprocessable(message.into())
}

/// One row as read from the file.
#[derive(Debug, Clone)]
struct RawRow {
    /// 1-based: the data row of a CSV (after the header), the line of NDJSON.
    row: usize,
    values: BTreeMap<String, Value>,
    /// The row as it was, for the report (CSV fields in header order, or the NDJSON line).
    raw: Vec<String>,
    errors: Vec<FieldError>,
}

fn columns(dataset: Dataset) -> (&'static [&'static str], &'static [&'static str]) {
    match dataset {
        Dataset::Users => (&["email", "name"], &["email", "name", "roles", "status", "country"]),
        Dataset::Charts => (&["owner_id", "title", "kind"], &["owner_id", "title", "kind", "moderation_status"]),
    }
}

/// Read the object, stopping as soon as it is longer than `limit` (the HEAD
/// said it was not; this guards against a replaced object).
async fn read_object(worker: &Worker, key: &str, etag: Option<&str>, limit: u64) -> Result<Vec<u8>> {
    let mut request = worker.s3.get_object().bucket(&worker.config.exports_bucket).key(key);
    if let Some(etag) = etag {
        request = request.if_match(etag);
    }
    let out = request.send().await.map_err(shared::platform::error::aws("s3 GetObject (import)"))?;
    let mut body = out.body;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::internal(format!("reading the import file: {e}")))?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > limit {
            return Err(refuse(format!("the file is larger than the limit of {limit} bytes (limits.max_import_bytes)")));
        }
    }
    Ok(bytes)
}

/// The file's text: decompressed within the limit, zip refused, UTF-8.
fn decode(bytes: Vec<u8>, compression: Compression, limit: u64) -> Result<String> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(refuse("zip archives are not accepted: upload CSV or NDJSON, optionally gzip-compressed"));
    }
    let gzip_magic = bytes.starts_with(&[0x1f, 0x8b]);
    let plain = match compression {
        Compression::None if gzip_magic => return Err(refuse("the file is gzip-compressed: create the import with compression \"gzip\"")),
        Compression::None => bytes,
        Compression::Gzip if !gzip_magic => return Err(refuse("the file is not gzip-compressed")),
        Compression::Gzip => {
            // Never inflate more than the limit: a small bomb stops here.
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&bytes[..])
                .take(limit + 1)
                .read_to_end(&mut out)
                .map_err(|e| refuse(format!("the gzip data is corrupt: {e}")))?;
            if out.len() as u64 > limit {
                return Err(refuse(format!("the file decompresses to more than {limit} bytes (limits.max_import_bytes); refused")));
            }
            out
        }
    };
    let mut text = String::from_utf8(plain).map_err(|e| refuse(format!("the file is not UTF-8 (invalid byte at offset {})", e.utf8_error().valid_up_to())))?;
    if text.starts_with('\u{feff}') {
        text.remove(0);
    }
    Ok(text)
}

fn parse_csv(text: &str, dataset: Dataset) -> Result<(Vec<String>, Vec<RawRow>)> {
    let (required, known) = columns(dataset);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(text.as_bytes());
    let header: Vec<String> =
        reader.headers().map_err(|e| refuse(format!("the header row cannot be read: {e}")))?.iter().map(|h| h.trim().to_lowercase()).collect();
    for (i, h) in header.iter().enumerate() {
        if !known.contains(&h.as_str()) {
            return Err(refuse(format!("unknown column {h:?} (columns for {}: {})", dataset.as_str(), known.join(", "))));
        }
        if header[..i].contains(h) {
            return Err(refuse(format!("column {h:?} appears twice")));
        }
    }
    if let Some(missing) = required.iter().find(|r| !header.iter().any(|h| h == *r)) {
        return Err(refuse(format!("the required column {missing:?} is missing")));
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 1;
        let mut raw_row = RawRow { row, values: BTreeMap::new(), raw: Vec::new(), errors: Vec::new() };
        match record {
            Err(e) => raw_row.errors.push(FieldError::new("row", format!("cannot be parsed: {e}"))),
            Ok(record) => {
                raw_row.raw = record.iter().map(str::to_string).collect();
                if record.len() != header.len() {
                    raw_row.errors.push(FieldError::new("row", format!("has {} fields; the header has {}", record.len(), header.len())));
                } else {
                    for (name, value) in header.iter().zip(record.iter()) {
                        if !value.trim().is_empty() {
                            raw_row.values.insert(name.clone(), Value::String(value.to_string()));
                        }
                    }
                }
            }
        }
        rows.push(raw_row);
    }
    Ok((header, rows))
}

fn parse_ndjson(text: &str, dataset: Dataset) -> Vec<RawRow> {
    let (_, known) = columns(dataset);
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut raw_row = RawRow { row: i + 1, values: BTreeMap::new(), raw: vec![line.to_string()], errors: Vec::new() };
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(map)) => {
                for (k, v) in map {
                    if !known.contains(&k.as_str()) {
                        raw_row.errors.push(FieldError::new(k, "unknown field"));
                    } else if !v.is_null() {
                        raw_row.values.insert(k, v);
                    }
                }
            }
            Ok(_) => raw_row.errors.push(FieldError::new("row", "must be a JSON object")),
            Err(e) => raw_row.errors.push(FieldError::new("row", format!("is not valid JSON: {e}"))),
        }
        rows.push(raw_row);
    }
    rows
}

/// A string field; `None` when absent (an error when required) or not a string.
fn text(row: &mut RawRow, name: &str, required: bool) -> Option<String> {
    match row.values.get(name) {
        None if required => {
            row.errors.push(FieldError::new(name, "is required"));
            None
        }
        None => None,
        Some(Value::String(v)) if v.trim().is_empty() && required => {
            row.errors.push(FieldError::new(name, "is required"));
            None
        }
        Some(Value::String(v)) => Some(v.clone()),
        Some(_) => {
            row.errors.push(FieldError::new(name, "must be a string"));
            None
        }
    }
}

/// What a valid row creates.
enum Create {
    User(User),
    Chart(Chart),
}

struct Candidate {
    row: usize,
    id: String,
    create: Create,
    /// Written by an earlier attempt of this import.
    already_applied: bool,
}

fn check_user(row: &mut RawRow, granter: PermissionSet) -> Option<User> {
    let email = text(row, "email", true).and_then(|e| Email::parse(&e).map_err(|m| row.errors.push(FieldError::new("email", m))).ok());
    let name = text(row, "name", true);
    if let Some(name) = &name {
        row.errors.extend(check_name("name", name));
    }
    let roles: Vec<String> = match row.values.get("roles") {
        None => vec!["user".into()],
        Some(Value::String(s)) => s.split([';', '|']).map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Some(_) => {
            row.errors.push(FieldError::new("roles", "must be a list of role names (CSV: separated by ';')"));
            Vec::new()
        }
    };
    for role in &roles {
        match BuiltinRole::parse(role) {
            None => row.errors.push(FieldError::new("roles", format!("unknown role {role:?} (custom roles are assigned after the import)"))),
            Some(r) if !r.permissions().is_subset_of(granter) => row.errors.push(FieldError::new("roles", format!("{role:?} grants permissions beyond yours"))),
            Some(_) => {}
        }
    }
    let status = match text(row, "status", false).as_deref() {
        None | Some("active") => UserStatus::Active,
        Some("suspended") => UserStatus::Suspended,
        Some(other) => {
            row.errors.push(FieldError::new("status", format!("must be active or suspended, not {other:?}")));
            UserStatus::Active
        }
    };
    let country = text(row, "country", false);
    if country.as_ref().is_some_and(|c| c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_uppercase())) {
        row.errors.push(FieldError::new("country", "must be an ISO 3166-1 alpha-2 code such as DE"));
    }
    let (email, name) = (email?, name?);
    if !row.errors.is_empty() {
        return None;
    }
    let mut user = User::new(&email, &name, if roles.is_empty() { vec!["user".into()] } else { roles }, status);
    user.country = country;
    Some(user)
}

fn check_chart(row: &mut RawRow) -> Option<Chart> {
    let owner = text(row, "owner_id", true);
    if owner.as_ref().is_some_and(|o| UserId::parse(o).is_none()) {
        row.errors.push(FieldError::new("owner_id", UserId::EXPECTED));
    }
    let title = text(row, "title", true);
    if let Some(title) = &title {
        row.errors.extend(check_name("title", title));
    }
    let kind = text(row, "kind", true);
    if kind.as_ref().is_some_and(|k| !charts::KINDS.contains(&k.as_str())) {
        row.errors.push(FieldError::new("kind", format!("must be one of {}", charts::KINDS.join(", "))));
    }
    let status = match text(row, "moderation_status", false) {
        None => ModerationStatus::Pending,
        Some(s) => match serde_json::from_value::<ModerationStatus>(Value::String(s.clone())) {
            Ok(status) => status,
            Err(_) => {
                row.errors.push(FieldError::new("moderation_status", format!("must be one of approved, pending, rejected, flagged, hidden, not {s:?}")));
                ModerationStatus::Pending
            }
        },
    };
    let (owner, title, kind) = (owner?, title?, kind?);
    if !row.errors.is_empty() {
        return None;
    }
    Some(Chart::new(&owner, title.trim(), &kind).with_status(status))
}

/// Validate every row: fields, then what needs the table (emails taken,
/// owners that exist, rows an earlier attempt already wrote).
async fn validate(worker: &Worker, job: &Job, params: &ImportParams, rows: &mut [RawRow]) -> Result<Vec<Candidate>> {
    let granter = shared::identity::roles::parse_permissions("granter_permissions", &params.granter_permissions).unwrap_or_else(|_| PermissionSet::empty());
    let store = &worker.store;
    let mut candidates = Vec::new();
    for row in rows.iter_mut() {
        if !row.errors.is_empty() {
            continue;
        }
        let id = data_jobs::import_item_id(&job.created_at, &job.id, row.row);
        let create = match params.dataset {
            Dataset::Users => check_user(row, granter).map(|mut u| {
                u.id = id.clone();
                Create::User(u)
            }),
            Dataset::Charts => check_chart(row).map(|mut c| {
                c.id = id.clone();
                Create::Chart(c)
            }),
        };
        if let Some(create) = create {
            candidates.push(Candidate { row: row.row, id, create, already_applied: false });
        }
    }
    let by_row: HashMap<usize, usize> = rows.iter().enumerate().map(|(i, r)| (r.row, i)).collect();
    let reject = |rows: &mut [RawRow], row: usize, field: &str, message: String| {
        rows[by_row[&row]].errors.push(FieldError::new(field, message));
    };
    match params.dataset {
        Dataset::Users => {
            // Unique within the file: the first row with an email keeps it.
            let mut first: HashMap<String, usize> = HashMap::new();
            for c in &candidates {
                let Create::User(u) = &c.create else { continue };
                match first.get(&u.email) {
                    Some(row) => reject(rows, c.row, "email", format!("duplicate of row {row}")),
                    None => {
                        first.insert(u.email.clone(), c.row);
                    }
                }
            }
            // Unique against the table (the email guards).
            let keys: Vec<(String, String)> = first.keys().map(|e| (User::guard_pk(e), "GUARD".to_string())).collect();
            let guards: HashMap<String, String> = store
                .batch_get(&keys)
                .await?
                .iter()
                .filter_map(|g| Some((attr_s(g, "pk")?.trim_start_matches("EMAIL#").to_string(), attr_s(g, "user_id")?.to_string())))
                .collect();
            for c in candidates.iter_mut() {
                let Create::User(u) = &c.create else { continue };
                match guards.get(&u.email) {
                    Some(owner) if *owner == c.id => c.already_applied = true,
                    Some(_) if first.get(&u.email) == Some(&c.row) => reject(rows, c.row, "email", "a user with this email already exists".into()),
                    _ => {}
                }
            }
        }
        Dataset::Charts => {
            let mut owners: Vec<String> =
                candidates.iter().filter_map(|c| if let Create::Chart(ch) = &c.create { Some(ch.owner_id.clone()) } else { None }).collect();
            owners.sort();
            owners.dedup();
            let keys: Vec<(String, String)> = owners.iter().map(|o| (User::pk(o), "PROFILE".to_string())).collect();
            let live: std::collections::HashSet<String> = store
                .batch_get(&keys)
                .await?
                .iter()
                .filter(|u| attr_s(u, "status") != Some("deleted"))
                .filter_map(|u| attr_s(u, "id").map(str::to_string))
                .collect();
            let keys: Vec<(String, String)> = candidates.iter().map(|c| (Chart::pk(&c.id), "META".to_string())).collect();
            let written: std::collections::HashSet<String> = store.batch_get(&keys).await?.iter().filter_map(|c| attr_s(c, "id").map(str::to_string)).collect();
            for c in candidates.iter_mut() {
                let Create::Chart(ch) = &c.create else { continue };
                if written.contains(&c.id) {
                    c.already_applied = true;
                } else if !live.contains(&ch.owner_id) {
                    reject(rows, c.row, "owner_id", "names no user".into());
                }
            }
        }
    }
    let rejected: std::collections::HashSet<usize> = rows.iter().filter(|r| !r.errors.is_empty()).map(|r| r.row).collect();
    candidates.retain(|c| !rejected.contains(&c.row));
    Ok(candidates)
}

/// A cell as written to the report: a leading `=`, `+`, `-`, `@`, tab or CR
/// would be read as a formula by spreadsheets, so it gets a `'` first.
fn cell(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_string() }
}

/// The rejected-rows CSV: `row`, `errors` (`field: message; ...`), then the
/// row's own columns (CSV) or the line itself (`record`, NDJSON).
fn report(header: &[String], rows: &[(usize, String, Vec<String>)]) -> Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut head = vec!["row".to_string(), "errors".to_string()];
    head.extend(header.iter().cloned());
    let map = |e: csv::Error| Error::internal(format!("writing the report: {e}"));
    writer.write_record(&head).map_err(map)?;
    for (row, errors, raw) in rows {
        let mut record = vec![row.to_string(), cell(errors)];
        record.extend(raw.iter().map(|v| cell(v)));
        while record.len() < head.len() {
            record.push(String::new());
        }
        writer.write_record(&record).map_err(map)?;
    }
    writer.into_inner().map_err(|e| Error::internal(format!("writing the report: {e}")))
}

async fn put_report(worker: &Worker, job: &Job, body: Vec<u8>) -> Result<String> {
    let key = data_jobs::import_report_key(&job.id);
    worker.put_export(&key, "text/csv; charset=utf-8", body).await?;
    Ok(key)
}

/// The writes and audit entry that create one row's item.
fn change(table: &str, actor: &Actor, job: &Job, c: &Candidate) -> Result<(Vec<Write>, AuditEntry)> {
    let reason = format!("import {} row {}", job.id, c.row);
    match &c.create {
        Create::User(u) => {
            let audit = AuditEntry::new(actor, "user.import", "user", &u.id).changes::<User, User>(None, Some(u)).reason(reason);
            Ok((u.create_writes(table)?, audit))
        }
        Create::Chart(ch) => {
            let owner = Write::check(
                table,
                &User::pk(&ch.owner_id),
                "PROFILE",
                "attribute_exists(pk)",
                vec![],
                Error::Conflict("owner_id: the owner no longer exists".into()),
            )?;
            let audit = AuditEntry::new(actor, "chart.import", "chart", &ch.id).about(&ch.owner_id).changes::<Chart, Chart>(None, Some(ch)).reason(reason);
            Ok((vec![ch.create_write(table)?, owner], audit))
        }
    }
}

async fn exists(worker: &Worker, c: &Candidate) -> Result<bool> {
    let (pk, sk) = match &c.create {
        Create::User(_) => (User::pk(&c.id), "PROFILE"),
        Create::Chart(_) => (Chart::pk(&c.id), "META"),
    };
    Ok(worker.store.get_item(&pk, sk).await?.is_some())
}

pub async fn run(worker: &Worker, job: &Job) -> Result<Value> {
    let params: ImportParams = serde_json::from_value(job.params.clone()).map_err(|e| refuse(format!("import job params: {e}")))?;
    let actor = params.started_by.clone().ok_or_else(|| refuse("the import was not started"))?;
    let limit = shared::domain::system_settings::load_current(&worker.store).await?.settings.limits.max_import_bytes;
    // Size first, from a HEAD: an oversize file is refused unread.
    let Some((size, etag)) = data_jobs::head_upload(&worker.s3, &worker.config.exports_bucket, &params.object_key).await? else {
        return Err(refuse("the uploaded file is gone"));
    };
    if size > limit {
        return Err(refuse(format!("the file is {size} bytes; the limit is {limit} (limits.max_import_bytes); it was not read")));
    }
    if params.etag.is_some() && etag != params.etag {
        return Err(refuse("the file changed after the import started; create a new import for a new file"));
    }
    let bytes = read_object(worker, &params.object_key, params.etag.as_deref(), limit).await?;
    let text = decode(bytes, params.compression, limit)?;
    let (header, mut rows) = match params.format {
        ImportFormat::Csv => parse_csv(&text, params.dataset)?,
        ImportFormat::Ndjson => (vec!["record".to_string()], parse_ndjson(&text, params.dataset)),
    };
    let total = rows.len() as u64;
    let mut current = job.clone();
    current.progress = jobs::Progress { processed: 0, total, ..Default::default() };
    current = jobs::save(&worker.store, &current).await?;

    let candidates = validate(worker, job, &params, &mut rows).await?;
    let rejected: Vec<(usize, String, Vec<String>)> = rows
        .iter()
        .filter(|r| !r.errors.is_empty())
        .map(|r| (r.row, r.errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "), r.raw.clone()))
        .collect();
    let mut result = json!({ "rows": total, "valid": candidates.len(), "rejected": rejected.len(), "dry_run": params.dry_run, "created": 0, "already_applied": 0, "failed": 0 });
    if !rejected.is_empty() {
        result["report_key"] = json!(put_report(worker, job, report(&header, &rejected)?).await?);
    }
    if !rejected.is_empty() || params.dry_run {
        // Invalid rows: nothing is applied; the report says what to fix.
        result["outcome"] = json!(if rejected.is_empty() { "validated" } else { "rejected" });
        current.progress.processed = total;
        jobs::save(&worker.store, &current).await?;
        return Ok(result);
    }

    let table = worker.store.table().to_string();
    let (mut created, mut already, mut failures) = (0u64, 0u64, Vec::<(usize, String, Vec<String>)>::new());
    for (n, batch) in candidates.chunks(IMPORT_BATCH).enumerate() {
        let pending: Vec<&Candidate> = batch.iter().filter(|c| !c.already_applied).collect();
        already += (batch.len() - pending.len()) as u64;
        let changes = pending.iter().map(|c| change(&table, &actor, job, c)).collect::<Result<Vec<_>>>()?;
        if changes.is_empty() {
        } else if worker.store.commit_many(changes).await.is_ok() {
            created += pending.len() as u64;
        } else {
            // A condition failed (a row written by an earlier attempt, an
            // email taken meanwhile): row by row, each applied or reported.
            for c in pending {
                if exists(worker, c).await? {
                    already += 1;
                    continue;
                }
                let (writes, audit) = change(&table, &actor, job, c)?;
                match worker.store.commit(writes, &audit).await {
                    Ok(()) => created += 1,
                    Err(Error::Conflict(reason)) => {
                        let raw = rows.iter().find(|r| r.row == c.row).map(|r| r.raw.clone()).unwrap_or_default();
                        failures.push((c.row, reason, raw));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        current.progress.processed = (((n + 1) * IMPORT_BATCH).min(candidates.len())) as u64;
        if n % 4 == 3 || current.progress.processed == total {
            current = jobs::save(&worker.store, &current).await?;
        }
    }
    result["outcome"] = json!("applied");
    result["created"] = json!(created);
    result["already_applied"] = json!(already);
    result["failed"] = json!(failures.len());
    if !failures.is_empty() {
        result["failures"] = json!(failures.iter().take(1000).map(|(row, reason, _)| json!({ "row": row, "reason": reason })).collect::<Vec<_>>());
        result["report_key"] = json!(put_report(worker, job, report(&header, &failures)?).await?);
    }
    if current.progress.processed != total {
        current.progress.processed = total;
        jobs::save(&worker.store, &current).await?;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_capped_and_zip_refused() {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b'a'; 1_000_000]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 10_000);
        let err = decode(bomb.clone(), Compression::Gzip, 100_000).unwrap_err();
        assert!(err.to_string().contains("decompresses to more than"), "{err}");
        assert_eq!(decode(bomb, Compression::Gzip, 2_000_000).unwrap().len(), 1_000_000);
        assert!(decode(b"PK\x03\x04rest".to_vec(), Compression::None, 100).unwrap_err().to_string().contains("zip"));
    }

    #[test]
    fn csv_rows_and_header_checks() {
        let (header, rows) = parse_csv("email,name\na@x.io,A\nb@x.io\n", Dataset::Users).unwrap();
        assert_eq!(header, vec!["email", "name"]);
        assert_eq!(rows.len(), 2);
        assert!(rows[0].errors.is_empty());
        assert_eq!(rows[1].errors[0].field, "row");
        assert!(parse_csv("email,nickname\n", Dataset::Users).unwrap_err().to_string().contains("nickname"));
        assert!(parse_csv("email\n", Dataset::Users).unwrap_err().to_string().contains("name"));
    }

    #[test]
    fn report_cells_are_neutralized() {
        let body = report(&["email".into()], &[(3, "email: bad".into(), vec!["=HYPERLINK(1)".into()])]).unwrap();
        assert_eq!(String::from_utf8(body).unwrap(), "row,errors,email\n3,email: bad,'=HYPERLINK(1)\n");
    }
}
