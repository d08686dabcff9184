//! Imports end to end: create, upload through the presigned URL, start, run
//! the worker from the queue, read the result. The rejected-rows report is
//! read back by Python's `csv` module (not by Keel's own code); dry runs
//! write nothing; a duplicate delivery or a re-run of the same import id
//! applies nothing twice; oversize files and gzip bombs are refused.

use http::Method;
use serde_json::{Value, json};
use shared::domain::data_jobs::import_item_id;

use crate::helpers::{Response, TestApp};

const IMPORT: &str = "/api/v1/data/import";

/// Set system limits through the admin API (the data function shares the
/// settings cache in the local app, so it sees the change at once).
pub async fn set_limits(app: &TestApp, admin: &str, limits: Value) {
    let current = app.get("/api/v1/admin/system/config", admin).await;
    let version = current.body["version"].as_u64().unwrap();
    let r =
        app.call(Method::PUT, "/api/v1/admin/system/config", Some(admin), Some(json!({ "version": version, "reason": "test limits", "limits": limits }))).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Parse CSV with Python's csv module: a list of rows as dicts.
pub fn python_csv(bytes: &[u8]) -> Vec<serde_json::Map<String, Value>> {
    let path = std::env::temp_dir().join(format!("keel-report-{}.csv", uuid::Uuid::new_v4()));
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import csv, json, sys\nwith open(sys.argv[1], newline='', encoding='utf-8') as f:\n    print(json.dumps(list(csv.DictReader(f))))",
            path.to_str().unwrap(),
        ])
        .output()
        .expect("python3");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array().unwrap().iter().map(|r| r.as_object().unwrap().clone()).collect()
}

pub async fn http_put(url: &str, body: Vec<u8>) {
    let r = reqwest::Client::new().put(url).body(body).send().await.unwrap();
    assert!(r.status().is_success(), "upload: {} {}", r.status(), r.text().await.unwrap_or_default());
}

pub async fn http_get(url: &str) -> Vec<u8> {
    let r = reqwest::Client::new().get(url).send().await.unwrap();
    assert!(r.status().is_success(), "download: {}", r.status());
    r.bytes().await.unwrap().to_vec()
}

/// Create an import and upload `file` to it; the import id.
async fn create_and_upload(app: &TestApp, token: &str, request: Value, file: Vec<u8>) -> String {
    let created = app.call(Method::POST, IMPORT, Some(token), Some(request)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["upload"]["method"], "PUT");
    http_put(created.body["upload"]["url"].as_str().unwrap(), file).await;
    created.body["job_id"].as_str().unwrap().to_string()
}

async fn start(app: &TestApp, token: &str, job_id: &str) -> Response {
    app.call(Method::POST, &format!("{IMPORT}/{job_id}/start"), Some(token), None).await
}

/// Upload, start, run the queue; the import's status.
async fn import(app: &TestApp, token: &str, request: Value, file: Vec<u8>) -> (String, Response) {
    let job_id = create_and_upload(app, token, request, file).await;
    let r = start(app, token, &job_id).await;
    assert_eq!(r.status, 202, "{}", r.body);
    app.run_jobs().await;
    let status = app.get(&format!("{IMPORT}/{job_id}"), token).await;
    assert_eq!(status.status, 200, "{}", status.body);
    (job_id, status)
}

async fn job(app: &TestApp, job_id: &str) -> shared::domain::jobs::Job {
    shared::domain::jobs::get(app.store(), job_id).await.unwrap().unwrap()
}

/// How many of the users a job's rows would create exist.
async fn imported_users(app: &TestApp, job_id: &str, rows: impl Iterator<Item = usize>) -> Vec<shared::identity::users::User> {
    let job = job(app, job_id).await;
    let mut found = Vec::new();
    for row in rows {
        if let Some(u) = shared::identity::users::get(app.store(), &import_item_id(&job.created_at, job_id, row)).await.unwrap() {
            found.push(u);
        }
    }
    found
}

#[tokio::test]
async fn ten_percent_bad_rows_are_reported_exactly_and_nothing_is_applied() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let (existing, _) = app.user(&["user"]).await;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let email = |i: usize| format!("imp{tag}-{i}@example.com");
    // Row n (1-based, after the header) → what is wrong with it.
    let bad: Vec<(usize, &str, String)> = vec![
        (3, "email", "not-an-email,Three,user,active,DE".into()),
        (9, "name", format!("{},,user,active,DE", email(9))),
        (14, "email", format!("{},Fourteen,user,active,DE", email(2))),
        (22, "email", format!("{},Taken,user,active,DE", existing.email)),
        (31, "roles", format!("{},Escalator,super_admin,active,DE", email(31))),
        (37, "status", format!("{},Banned,user,banned,DE", email(37))),
        (44, "country", format!("{},Country,user,active,Germany", email(44))),
        (50, "roles", format!("{},Wizard,wizard,active,DE", email(50))),
        (60, "name", format!("{},{},user,active,DE", email(60), "n".repeat(201))),
        (75, "row", email(75)),
    ];
    let mut csv = String::from("email,name,roles,status,country\n");
    for i in 1..=100 {
        match bad.iter().find(|(row, _, _)| *row == i) {
            Some((_, _, line)) => csv.push_str(line),
            None => csv.push_str(&format!("{},\"Person {i}, Esq.\",user;support,active,FR", email(i))),
        }
        csv.push('\n');
    }
    let (job_id, status) = import(&app, &admin, json!({"dataset": "users", "format": "csv"}), csv.into_bytes()).await;
    assert_eq!(status.body["status"], "succeeded", "{}", status.body);
    let result = &status.body["result"];
    assert_eq!(
        (result["outcome"].as_str(), result["rows"].as_u64(), result["rejected"].as_u64(), result["valid"].as_u64()),
        (Some("rejected"), Some(100), Some(10), Some(90)),
        "{result}"
    );
    assert_eq!(status.body["progress"], json!({"processed": 100, "total": 100}));
    // Nothing applied: not even the valid rows.
    assert!(imported_users(&app, &job_id, 1..=100).await.is_empty());

    // The report, read by an independent CSV reader: exactly the bad rows.
    let report = http_get(status.body["report_url"].as_str().unwrap()).await;
    let rows = python_csv(&report);
    let reported: Vec<usize> = rows.iter().map(|r| r["row"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(reported, bad.iter().map(|(row, _, _)| *row).collect::<Vec<_>>());
    for ((row, field, _), line) in bad.iter().zip(&rows) {
        let errors = line["errors"].as_str().unwrap();
        assert!(errors.starts_with(&format!("{field}: ")), "row {row}: {errors}");
    }
    assert_eq!(rows[0]["email"], "not-an-email", "the row's own values come along");
    assert!(rows[2]["errors"].as_str().unwrap().contains("duplicate of row 2"), "{:?}", rows[2]);
    assert!(rows[3]["errors"].as_str().unwrap().contains("already exists"));
    assert!(rows[4]["errors"].as_str().unwrap().contains("beyond yours"));
    // Issuing the download link was audited.
    let audit = app.audit_for("job", &job_id).await;
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.contains(&"data.import.report_download") && actions.contains(&"data.import.start") && actions.contains(&"data.import.create"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn ndjson_charts_check_types_and_owner_references() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let (owner, _) = app.user(&["user"]).await;
    let mut lines = Vec::new();
    for i in 1..=30 {
        let line = match i {
            4 => json!({"owner_id": uuid::Uuid::now_v7().to_string(), "title": "Orphan", "kind": "bar"}),
            12 => json!({"owner_id": owner.id, "title": 12, "kind": "bar"}),
            20 => json!({"owner_id": owner.id, "title": "Donut", "kind": "donut"}),
            _ => json!({"owner_id": owner.id, "title": format!("Chart {i}"), "kind": "line", "moderation_status": "approved"}),
        };
        lines.push(line.to_string());
    }
    let (_, status) = import(&app, &admin, json!({"dataset": "charts", "format": "ndjson"}), lines.join("\n").into_bytes()).await;
    assert_eq!(status.body["result"]["rejected"], 3, "{}", status.body);
    let rows = python_csv(&http_get(status.body["report_url"].as_str().unwrap()).await);
    let summary: Vec<(String, String)> =
        rows.iter().map(|r| (r["row"].as_str().unwrap().to_string(), r["errors"].as_str().unwrap().split(':').next().unwrap().to_string())).collect();
    assert_eq!(summary, vec![("4".into(), "owner_id".into()), ("12".into(), "title".into()), ("20".into(), "kind".into())]);
    assert!(rows[1]["errors"].as_str().unwrap().contains("must be a string"));
    // The NDJSON line itself is kept.
    assert_eq!(serde_json::from_str::<Value>(rows[0]["record"].as_str().unwrap()).unwrap()["title"], "Orphan");
}

#[tokio::test]
async fn dry_run_writes_nothing_then_apply_is_audited_and_never_applied_twice() {
    let app = TestApp::spawn().await;
    let (admin_user, admin) = app.user(&["admin"]).await;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let file = (1..=30)
        .map(|i| json!({"email": format!("dry{tag}-{i}@example.com"), "name": format!("Dry {i}"), "roles": ["user"]}).to_string())
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes();

    let (dry_id, dry) = import(&app, &admin, json!({"dataset": "users", "format": "ndjson", "dry_run": true}), file.clone()).await;
    assert_eq!((dry.body["result"]["outcome"].as_str(), dry.body["result"]["valid"].as_u64()), (Some("validated"), Some(30)), "{}", dry.body);
    assert!(dry.body["report_url"].is_null());
    assert!(imported_users(&app, &dry_id, 1..=30).await.is_empty(), "a dry run writes nothing");
    let taken =
        shared::identity::users::find_by_email(app.store(), &shared::identity::users::Email::parse(&format!("dry{tag}-1@example.com")).unwrap()).await.unwrap();
    assert!(taken.is_none());

    let (job_id, applied) = import(&app, &admin, json!({"dataset": "users", "format": "ndjson"}), file).await;
    assert_eq!((applied.body["result"]["outcome"].as_str(), applied.body["result"]["created"].as_u64()), (Some("applied"), Some(30)), "{}", applied.body);
    let users = imported_users(&app, &job_id, 1..=30).await;
    assert_eq!(users.len(), 30);
    for user in &users {
        let audit = app.audit_for("user", &user.id).await;
        assert_eq!(audit.len(), 1, "one audit entry per created item");
        assert_eq!((audit[0].action.as_str(), audit[0].actor.id.as_str()), ("user.import", admin_user.id.as_str()));
        assert!(audit[0].reason.as_deref().unwrap().starts_with(&format!("import {job_id} row ")));
    }

    // A duplicate SQS delivery of the finished job: acknowledged, nothing applied.
    let done = job(&app, &job_id).await;
    app.redeliver(&done).await;
    assert_eq!(app.run_jobs().await, 1);
    assert_eq!(job(&app, &job_id).await.version, done.version, "the finished job is left alone");
    // Starting a finished import again is refused.
    assert_eq!(start(&app, &admin, &job_id).await.status, 409);

    // A re-run of the same import id, as after a worker crash (the record
    // not final): every row is found already written.
    let mut crashed = job(&app, &job_id).await;
    crashed.status = shared::domain::jobs::JobStatus::Running;
    shared::domain::jobs::save(app.store(), &crashed).await.unwrap();
    let r = start(&app, &admin, &job_id).await;
    assert_eq!(r.status, 202, "{}", r.body);
    app.run_jobs().await;
    let rerun = app.get(&format!("{IMPORT}/{job_id}"), &admin).await;
    assert_eq!((rerun.body["result"]["created"].as_u64(), rerun.body["result"]["already_applied"].as_u64()), (Some(0), Some(30)), "{}", rerun.body);
    for user in &users {
        assert_eq!(app.audit_for("user", &user.id).await.len(), 1, "no second audit entry");
    }
}

#[tokio::test]
async fn oversize_files_and_gzip_bombs_are_refused_before_reading() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    set_limits(&app, &admin, json!({"max_import_bytes": 4096})).await;
    let big = format!("email,name\n{}", "x@example.com,X\n".repeat(400)).into_bytes();
    assert!(big.len() > 4096);

    // At start: a HEAD says it is too big; the job is not queued.
    let job_id = create_and_upload(&app, &admin, json!({"dataset": "users", "format": "csv"}), big.clone()).await;
    let r = start(&app, &admin, &job_id).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["file".to_string()]), "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(app.run_jobs().await, 0);
    assert_eq!(job(&app, &job_id).await.status, shared::domain::jobs::JobStatus::Queued);

    // In the worker: the file replaced by a big one after start is refused
    // from its HEAD, at once (no retries).
    let job_id = create_and_upload(&app, &admin, json!({"dataset": "users", "format": "csv"}), b"email,name\na@example.com,A\n".to_vec()).await;
    assert_eq!(start(&app, &admin, &job_id).await.status, 202);
    let key = shared::domain::data_jobs::import_object_key(&job_id);
    app.app.clients.s3.put_object().bucket(&app.stack.env["KEEL_EXPORTS_BUCKET"]).key(&key).body(big.into()).send().await.unwrap();
    app.run_jobs().await;
    let failed = job(&app, &job_id).await;
    assert_eq!((failed.status, failed.attempts), (shared::domain::jobs::JobStatus::Failed, 1), "{failed:?}");
    assert!(failed.error.as_deref().unwrap().contains("it was not read"), "{failed:?}");

    // A gzip bomb: 10 MB of one byte in a few kilobytes, refused when the
    // decompressed size passes the limit.
    set_limits(&app, &admin, json!({"max_import_bytes": 100_000})).await;
    let out = std::process::Command::new("python3")
        .args(["-c", "import gzip, sys; sys.stdout.buffer.write(gzip.compress(b'email,name\\n' + b'a' * 10_000_000))"])
        .output()
        .unwrap();
    let bomb = out.stdout;
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    let (job_id, status) = import(&app, &admin, json!({"dataset": "users", "format": "csv", "compression": "gzip"}), bomb).await;
    assert_eq!(status.body["status"], "failed", "{}", status.body);
    assert!(status.body["error"].as_str().unwrap().contains("decompresses to more than 100000 bytes"), "{}", status.body);
    assert!(imported_users(&app, &job_id, 1..=2).await.is_empty());
}

#[tokio::test]
async fn bad_requests_name_the_field_and_imports_are_private() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let (_, other) = app.user(&["super_admin"]).await;
    let r = app.call(Method::POST, IMPORT, Some(&admin), Some(json!({"dataset": "orders", "format": "csv"}))).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["dataset".to_string()]));
    let r = app.call(Method::POST, IMPORT, Some(&admin), Some(json!({"dataset": "users", "format": "xlsx"}))).await;
    assert_eq!(r.error_fields(), vec!["format".to_string()]);
    let created = app.call(Method::POST, IMPORT, Some(&admin), Some(json!({"dataset": "users", "format": "csv"}))).await;
    let job_id = created.body["job_id"].as_str().unwrap();
    // Starting before uploading.
    assert_eq!(start(&app, &admin, job_id).await.status, 409);
    // Someone else's import reads as missing.
    assert_eq!(app.get(&format!("{IMPORT}/{job_id}"), &other).await.status, 404);
    assert_eq!(start(&app, &other, job_id).await.status, 404);
}

#[tokio::test]
async fn sample_events_reach_the_data_router() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let router = data::router(app.app.data.clone());
    for (name, expected) in [("data/create-import.json", 201), ("data/bulk-delete-dry-run.json", 200)] {
        let text = std::fs::read_to_string(keel_local::repo_root().join("events").join(name)).unwrap().replace("${ACCESS_TOKEN}", &admin);
        let request = lambda_http::request::from_str(&text).expect("a valid API Gateway event");
        let (parts, body) = request.into_parts();
        let response = crate::helpers::send_to(router.clone(), http::Request::from_parts(parts, axum::body::Body::new(body))).await;
        assert_eq!(response.status, expected, "{name}: {}", response.body);
    }
}
