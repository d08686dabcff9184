//! Exports (docs/exports.md): every format is downloaded through its
//! presigned link and read back by an independent reader — Python's `csv`
//! and `json`, openpyxl, poppler's `pdftotext`, SQLite executing the SQL —
//! and compared with the source rows. Also: inline answers, formula
//! neutralization, masking without `pii:read`, self-service limits, jobs
//! listing and cancellation, duplicate deliveries and a worker killed
//! mid-export.

use std::collections::HashMap;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use shared::audit::{Actor, AuditEntry};
use shared::domain::jobs::JobStatus;
use shared::identity::rbac::{BuiltinRole, Permission};
use shared::identity::users::{Email, User, UserStatus};

use crate::helpers::TestApp;

const EXPORT: &str = "/api/v1/data/export";

/// What an independent reader found: the header and the rows, as text.
#[derive(Debug)]
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn python() -> std::path::PathBuf {
    keel_local::repo_root().join(".keel/venv/bin/python")
}

/// Read an export with a reader that is not Keel's code.
fn read_back(format: &str, bytes: &[u8], table: &str) -> Table {
    let dir = tempfile_dir();
    let path = dir.join(format!("export.{format}"));
    std::fs::write(&path, bytes).unwrap();
    if format == "pdf" {
        let out =
            std::process::Command::new("pdftotext").arg("-layout").arg(&path).arg("-").output().expect("pdftotext (poppler-utils; `make test` installs it)");
        assert!(out.status.success(), "pdftotext failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        return Table { header: vec![], rows: text.lines().map(|l| vec![l.to_string()]).collect() };
    }
    let script = r#"
import csv, json, sqlite3, sys
fmt, path, table = sys.argv[1], sys.argv[2], sys.argv[3]
def s(v):
    if v is None: return ""
    if isinstance(v, bool): return str(v).lower()
    if isinstance(v, float) and v.is_integer(): return str(int(v))
    return str(v)
if fmt == "csv":
    with open(path, newline="", encoding="utf-8") as f:
        r = list(csv.reader(f))
    header, rows = r[0], r[1:]
elif fmt == "json":
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    assert isinstance(d, list)
    header = list(d[0].keys()) if d else []
    rows = [[s(v) for v in o.values()] for o in d]
elif fmt == "ndjson":
    with open(path, encoding="utf-8") as f:
        d = [json.loads(line) for line in f if line.strip()]
    header = list(d[0].keys()) if d else []
    rows = [[s(v) for v in o.values()] for o in d]
elif fmt == "xlsx":
    import openpyxl
    wb = openpyxl.load_workbook(path, read_only=True)
    r = [list(row) for row in wb.worksheets[0].iter_rows(values_only=True)]
    header = [s(v) for v in r[0]]
    rows = [[s(v) for v in row] for row in r[1:]]
elif fmt == "sql":
    db = sqlite3.connect(":memory:")
    with open(path, encoding="utf-8") as f:
        db.executescript(f.read())
    cur = db.execute('SELECT * FROM "%s" ORDER BY rowid' % table)
    header = [c[0] for c in cur.description]
    rows = [[s(v) for v in row] for row in cur.fetchall()]
    # Types survive: integer columns hold integers.
    for name, kind in db.execute('SELECT name, type FROM pragma_table_info("%s")' % table):
        if kind == "INTEGER":
            bad = db.execute('SELECT COUNT(*) FROM "%s" WHERE "%s" IS NOT NULL AND typeof("%s") != \'integer\'' % (table, name, name)).fetchone()[0]
            assert bad == 0, name
print(json.dumps({"header": header, "rows": rows}))
"#;
    let out = std::process::Command::new(python()).arg("-c").arg(script).arg(format).arg(&path).arg(table).output().expect("the project's Python (make venv)");
    assert!(out.status.success(), "{format} reader failed: {}", String::from_utf8_lossy(&out.stderr));
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let strings = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect::<Vec<_>>();
    Table { header: strings(&parsed["header"]), rows: parsed["rows"].as_array().unwrap().iter().map(strings).collect() }
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("keel-export-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Seed an order as the demo data does; returns its id.
async fn seed_order(app: &TestApp, user_id: &str, plan: &str, amount: i64, status: &str, days_ago: i64) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    let ts = shared::store::timestamp(chrono::Utc::now() - chrono::Duration::days(days_ago));
    let order = json!({
        "pk": format!("ORDER#{id}"), "sk": "META",
        "gsi1pk": format!("USER#{user_id}"), "gsi1sk": format!("{ts}#{id}"),
        "gsi2pk": format!("ORDERS#{}", &ts[..7]), "gsi2sk": format!("{ts}#{id}"),
        "type": "order", "id": id, "user_id": user_id, "plan": plan, "billing": "monthly",
        "amount_cents": amount, "currency": "USD", "country": "DE", "status": status, "created_at": ts,
    });
    app.store().batch_put(vec![shared::store::to_item(&order).unwrap()]).await.unwrap();
    id
}

async fn seed_chart(app: &TestApp, owner_id: &str, title: &str) -> String {
    let chart = shared::domain::charts::Chart::new(owner_id, title, "bar");
    app.store().batch_put(vec![chart.to_item().unwrap()]).await.unwrap();
    chart.id
}

/// A user with a chosen name (formula-like names included), created as the system.
async fn named_user(app: &TestApp, name: &str) -> User {
    let email = Email::parse(&format!("{}@example.com", uuid::Uuid::new_v4().simple())).unwrap();
    let mut user = User::new(&email, name, vec!["user".into()], UserStatus::Active);
    // Untrimmed: leading tabs and carriage returns are what CSV injection uses.
    user.name = name.to_string();
    shared::identity::users::create(app.store(), &user, AuditEntry::new(&Actor::system("tests"), "user.create", "user", &user.id)).await.unwrap();
    user
}

/// Ask for an export as a job, run the worker, and return the finished job.
async fn export_job(app: &TestApp, token: &str, body: Value) -> Value {
    let mut body = body;
    body["delivery"] = json!("job");
    let r = app.call(Method::POST, EXPORT, Some(token), Some(body.clone())).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{body}: {}", r.body);
    let job_id = r.body["job_id"].as_str().unwrap().to_string();
    assert_eq!(r.headers["location"], format!("/api/v1/data/jobs/{job_id}").as_str());
    app.run_jobs().await;
    let job = app.get(&format!("/api/v1/data/jobs/{job_id}"), token).await;
    assert_eq!(job.status, 200, "{}", job.body);
    assert_eq!(job.body["status"], "succeeded", "{}", job.body);
    job.body
}

/// Fetch a finished job's file through its presigned link, checking the
/// recorded size and SHA-256.
async fn download(job: &Value) -> Vec<u8> {
    let url = job["download_url"].as_str().expect("a download link");
    let response = reqwest::get(url).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let bytes = response.bytes().await.unwrap().to_vec();
    assert_eq!(job["result"]["bytes"].as_u64().unwrap(), bytes.len() as u64);
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(job["result"]["sha256"], sha.as_str());
    bytes
}

async fn objects_under(app: &TestApp, prefix: &str) -> Vec<String> {
    let out = app.app.clients.s3.list_objects_v2().bucket(&app.stack.env["KEEL_EXPORTS_BUCKET"]).prefix(prefix).send().await.unwrap();
    out.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect()
}

async fn open_uploads(app: &TestApp, prefix: &str) -> usize {
    let out = app.app.clients.s3.list_multipart_uploads().bucket(&app.stack.env["KEEL_EXPORTS_BUCKET"]).prefix(prefix).send().await.unwrap();
    out.uploads().len()
}

#[tokio::test]
async fn every_format_reads_back_with_an_independent_reader() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let buyer = named_user(&app, "Ada").await;
    // Text that needs escaping in every format: quotes, commas, newlines, non-ASCII.
    let plans = ["pro", "team 'annual'", "enterprise, \"gold\"", "Zürich\nplan", "=SUM(A1:A2)"];
    let mut expected: HashMap<String, Vec<String>> = HashMap::new();
    for (i, plan) in plans.iter().enumerate() {
        let amount = 1000 + i as i64 * 250;
        let status = if i % 2 == 0 { "paid" } else { "refunded" };
        let id = seed_order(&app, &buyer.id, plan, amount, status, i as i64 + 1).await;
        expected.insert(id.clone(), vec![id, buyer.id.clone(), plan.to_string(), amount.to_string(), status.to_string()]);
    }
    let columns = json!(["id", "user_id", "plan", "amount_cents", "status"]);
    for format in ["csv", "json", "ndjson", "xlsx", "sql", "pdf"] {
        let job = export_job(&app, &admin, json!({ "dataset": "orders", "columns": columns, "format": format })).await;
        assert_eq!(job["result"]["rows"], plans.len(), "{format}: {job}");
        assert_eq!(job["progress"]["processed"], plans.len(), "{format}");
        assert_eq!(job["progress"]["total"], plans.len(), "{format}");
        let bytes = download(&job).await;
        let table = read_back(format, &bytes, "orders");
        if format == "pdf" {
            let text = table.rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>().join("\n");
            assert!(text.contains("Keel export: orders"), "title: {text}");
            assert!(text.contains("Generated: "), "generation time: {text}");
            assert!(text.contains("Filter: "), "filters: {text}");
            for (id, row) in &expected {
                let line = text.lines().find(|l| l.contains(id.as_str())).unwrap_or_else(|| panic!("{id} missing from the PDF:\n{text}"));
                assert!(line.contains(&row[3]) && line.contains(&row[4]), "{line}");
            }
            let data_lines = text.lines().filter(|l| expected.keys().any(|id| l.contains(id.as_str()))).count();
            assert_eq!(data_lines, plans.len(), "{text}");
            continue;
        }
        assert_eq!(table.header, ["id", "user_id", "plan", "amount_cents", "status"], "{format}");
        assert_eq!(table.rows.len(), plans.len(), "{format}");
        for row in &table.rows {
            let want = &expected[&row[0]];
            let mut want = want.clone();
            // Only CSV neutralizes formula-like text (XLSX stores strings, never formulas).
            if format == "csv" && want[2].starts_with('=') {
                want[2] = format!("'{}", want[2]);
            }
            assert_eq!(row, &want, "{format}");
        }
    }
}

/// PDF text in any script (issue 11): names in Latin with diacritics,
/// Cyrillic, Greek and CJK, and currency signs, read back by `pdftotext`
/// exactly as written (the fonts embedded as subsets with ToUnicode maps).
#[tokio::test]
async fn pdf_exports_read_back_text_in_every_script() {
    let app = TestApp::spawn().await;
    // Admins hold pii:read, so names are not masked.
    let (_, admin) = app.user(&["admin"]).await;
    let names = ["Zoë Łukasz-Öztürk", "Дмитрий", "Ελένη", "山田太郎"];
    let mut ids = Vec::new();
    for name in names {
        ids.push(named_user(&app, name).await.id);
    }
    let job = export_job(&app, &admin, json!({ "dataset": "users", "format": "pdf", "columns": ["id", "name", "status"] })).await;
    let text = read_back("pdf", &download(&job).await, "users").rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>().join("\n");
    for (id, name) in ids.iter().zip(names) {
        let line = text.lines().find(|l| l.contains(id.as_str())).unwrap_or_else(|| panic!("{id} missing from the PDF:\n{text}"));
        assert!(line.contains(name), "{name} not read back exactly: {line}");
        assert!(line.contains("active"), "{line}");
    }

    let buyer = named_user(&app, "Ada").await;
    let plans = ["Pro €12.50", "Team £9.99", "Basic ¥1200", "Starter ₹499", "ő Ö ü ë Ł"];
    let mut orders = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        orders.push(seed_order(&app, &buyer.id, plan, 1250, "paid", i as i64 + 1).await);
    }
    let job = export_job(&app, &admin, json!({ "dataset": "orders", "format": "pdf", "columns": ["id", "plan", "amount_cents"] })).await;
    assert_eq!(job["result"]["rows"], plans.len());
    let text = read_back("pdf", &download(&job).await, "orders").rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>().join("\n");
    for (id, plan) in orders.iter().zip(plans) {
        let line = text.lines().find(|l| l.contains(id.as_str())).unwrap_or_else(|| panic!("{id} missing from the PDF:\n{text}"));
        assert!(line.contains(plan), "{plan} not read back exactly: {line}");
    }
    for sign in ["€", "£", "¥", "₹"] {
        assert_eq!(text.matches(sign).count(), 1, "{sign}: {text}");
    }
    assert!(!text.contains('?'), "a character printed as ?: {text}");
}

#[tokio::test]
async fn small_exports_are_answered_inline_and_audited() {
    let app = TestApp::spawn().await;
    let (admin_user, admin) = app.user(&["admin"]).await;
    let ada = named_user(&app, "Ada Lovelace").await;
    let r = app.call(Method::POST, EXPORT, Some(&admin), Some(json!({ "dataset": "users", "format": "csv", "columns": ["id", "email", "name"] }))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["content-type"], "text/csv; charset=utf-8");
    assert!(r.headers["content-disposition"].to_str().unwrap().starts_with("attachment; filename=\"keel-users-"));
    assert_eq!(r.headers["x-keel-rows"], "2");
    let table = read_back("csv", r.body.as_str().unwrap().as_bytes(), "users");
    assert_eq!(table.header, ["id", "email", "name"]);
    assert!(table.rows.contains(&vec![ada.id.clone(), ada.email.clone(), "Ada Lovelace".into()]), "{table:?}");
    let audit = app.audit_for("dataset", "users").await;
    let entry = audit.iter().find(|e| e.action == "data.export").expect("inline export audited");
    assert_eq!(entry.actor.id, admin_user.id);
    assert_eq!(entry.changes.as_ref().unwrap()["after"]["rows"], 2);
    // XLSX and PDF are always jobs.
    let r = app.call(Method::POST, EXPORT, Some(&admin), Some(json!({ "dataset": "users", "format": "xlsx" }))).await;
    assert_eq!(r.status, 202, "{}", r.body);
}

#[tokio::test]
async fn the_inline_threshold_is_configurable() {
    let app = TestApp::spawn_with(HashMap::from([("ExportInlineRows".to_string(), "1".to_string())])).await;
    let (_, admin) = app.user(&["admin"]).await;
    let r = app.call(Method::POST, EXPORT, Some(&admin), Some(json!({ "dataset": "users", "format": "json" }))).await;
    assert_eq!(r.status, 200, "one user fits: {}", r.body);
    named_user(&app, "Second").await;
    let r = app.call(Method::POST, EXPORT, Some(&admin), Some(json!({ "dataset": "users", "format": "json" }))).await;
    assert_eq!(r.status, 202, "two do not: {}", r.body);
}

/// Set a dashboard rollup counter as the streams worker would keep it.
async fn counter(app: &TestApp, metric: &str, bucket: &str, value: i64) {
    let store = app.store();
    let item = std::collections::HashMap::from([
        ("pk".to_string(), shared::store::s(shared::domain::rollups::pk(metric))),
        ("sk".to_string(), shared::store::s(bucket)),
        ("value".to_string(), shared::store::n(value)),
    ]);
    store.put_item_unchecked(item).await.unwrap();
}

/// The audited decision of a queued export.
async fn decision(app: &TestApp, r: &crate::helpers::Response) -> Value {
    let job_id = r.body["job_id"].as_str().expect("a job").to_string();
    let entry = app.audit_for("job", &job_id).await.into_iter().find(|e| e.action == "data.export").expect("export audited");
    entry.changes.unwrap()["after"]["decision"].clone()
}

#[tokio::test]
async fn inline_or_job_is_decided_from_the_rollups_without_reading_the_dataset() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    named_user(&app, "Small").await;
    // The table holds two active users, the counter says 5,000: the answer
    // is a job, decided from the counter alone (had the dataset been read,
    // two rows would have been answered inline).
    counter(&app, "users", "status#active", 5000).await;
    let body = json!({ "dataset": "users", "format": "csv", "filters": { "status": "active" } });
    let r = app.call(Method::POST, EXPORT, Some(&admin), Some(body)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let d = decision(&app, &r).await;
    assert_eq!((d["by"].as_str(), d["estimate"]["rows"].as_u64(), d["estimate"]["exact"].as_bool()), (Some("estimate"), Some(5000), Some(true)), "{d}");
    // Without a status, the counters of every status are summed.
    let r = app.call(Method::POST, EXPORT, Some(&admin), Some(json!({ "dataset": "users", "format": "json" }))).await;
    assert_eq!((r.status.as_u16(), decision(&app, &r).await["estimate"]["rows"].as_u64()), (202, Some(5000)));

    // A time range narrows what the counter counts: it only bounds the rows,
    // so one page (inline_rows + 1 items at most) is read, and two fit.
    let body = json!({ "dataset": "users", "format": "csv", "filters": { "status": "active", "from": "2000-01-01T00:00:00Z" } });
    let r = app.call(Method::POST, EXPORT, Some(&admin), Some(body)).await;
    assert_eq!((r.status.as_u16(), r.headers["x-keel-rows"].to_str().unwrap()), (200, "2"), "{}", r.body);

    // Counters that say small: answered inline (a bounded read).
    counter(&app, "users", "status#active", 2).await;
    let r = app.call(Method::POST, EXPORT, Some(&admin), Some(json!({ "dataset": "users", "format": "csv", "filters": { "status": "active" } }))).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // No counter for activity, and 30 day partitions exceed the read budget:
    // a job at once, nothing read.
    let r = app.call(Method::POST, EXPORT, Some(&admin), Some(json!({ "dataset": "activity", "format": "csv" }))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let d = decision(&app, &r).await;
    assert_eq!(d["by"], "read_budget", "{d}");
    assert!(d["partitions"].as_u64().unwrap() > 8, "{d}");

    // Orders per month bound a year of orders (13 month partitions).
    counter(&app, "orders", &shared::domain::rollups::month(chrono::Utc::now()), 4000).await;
    let r = app.call(Method::POST, EXPORT, Some(&admin), Some(json!({ "dataset": "orders", "format": "csv" }))).await;
    assert_eq!((r.status.as_u16(), decision(&app, &r).await["by"].as_str().map(str::to_string)), (202, Some("estimate".to_string())));
}

#[tokio::test]
async fn csv_cells_that_look_like_formulas_are_neutralized() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let names = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+1", "-2+3", "@SUM(A1)", "\tTab", "\rReturn", "Plain = fine"];
    let mut ids = HashMap::new();
    for name in names {
        ids.insert(named_user(&app, name).await.id, name);
    }
    let job = export_job(&app, &admin, json!({ "dataset": "users", "format": "csv", "columns": ["id", "name"] })).await;
    let table = read_back("csv", &download(&job).await, "users");
    for row in table.rows.iter().filter(|r| ids.contains_key(&r[0])) {
        let original = ids[&row[0]];
        if original == "Plain = fine" {
            assert_eq!(row[1], original);
        } else {
            assert_eq!(row[1], format!("'{original}"), "{original:?} not neutralized");
        }
    }
    assert_eq!(table.rows.iter().filter(|r| ids.contains_key(&r[0])).count(), names.len());
}

#[tokio::test]
async fn personal_data_is_masked_without_pii_read() {
    let app = TestApp::spawn().await;
    let ada = named_user(&app, "Ada Lovelace").await;
    // Analysts export datasets but hold no pii:read; admins hold both.
    let (_, analyst) = app.user(&["analyst"]).await;
    let (_, admin) = app.user(&["admin"]).await;
    assert!(BuiltinRole::Analyst.permissions().contains(Permission::DataExport));
    assert!(!BuiltinRole::Analyst.permissions().contains(Permission::PiiRead));
    let body = json!({ "dataset": "users", "format": "csv", "columns": ["id", "email", "name"] });
    let masked = app.call(Method::POST, EXPORT, Some(&analyst), Some(body.clone())).await;
    assert_eq!(masked.status, 200, "{}", masked.body);
    let masked = read_back("csv", masked.body.as_str().unwrap().as_bytes(), "users");
    let row = masked.rows.iter().find(|r| r[0] == ada.id).unwrap();
    assert_eq!(row[1], shared::domain::masking::email(&ada.email));
    assert_eq!(row[2], "A***");
    assert!(!masked.rows.iter().any(|r| r[1] == ada.email), "an email leaked");
    // The same through a job (XLSX) is masked too.
    let job = export_job(&app, &analyst, json!({ "dataset": "users", "format": "xlsx", "columns": ["id", "email", "name"] })).await;
    let xlsx = read_back("xlsx", &download(&job).await, "users");
    assert_eq!(xlsx.rows.iter().find(|r| r[0] == ada.id).unwrap()[1], shared::domain::masking::email(&ada.email));
    let clear = app.call(Method::POST, EXPORT, Some(&admin), Some(body)).await;
    let clear = read_back("csv", clear.body.as_str().unwrap().as_bytes(), "users");
    assert_eq!(clear.rows.iter().find(|r| r[0] == ada.id).unwrap()[1], ada.email);
}

#[tokio::test]
async fn a_user_exports_only_their_own_data() {
    let app = TestApp::spawn().await;
    let (me, token) = app.user(&["user"]).await;
    let (other, other_token) = app.user(&["user"]).await;
    let my_chart = seed_chart(&app, &me.id, "My chart").await;
    let their_chart = seed_chart(&app, &other.id, "Their chart").await;
    let my_order = seed_order(&app, &me.id, "pro", 900, "paid", 3).await;
    let their_order = seed_order(&app, &other.id, "pro", 900, "paid", 3).await;

    // Datasets need data:export.
    let r = app.call(Method::POST, EXPORT, Some(&token), Some(json!({ "dataset": "users", "format": "csv" }))).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["missing_permission"], "data:export");

    // No dataset: the caller's own data, nobody else's.
    let r = app.call(Method::POST, EXPORT, Some(&token), Some(json!({ "format": "csv" }))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let table = read_back("csv", r.body.as_str().unwrap().as_bytes(), "own_data");
    assert_eq!(table.header, ["category", "id", "time", "details"]);
    let ids: Vec<&str> = table.rows.iter().map(|r| r[1].as_str()).collect();
    assert!(ids.contains(&me.id.as_str()) && ids.contains(&my_chart.as_str()) && ids.contains(&my_order.as_str()), "{ids:?}");
    for theirs in [&other.id, &their_chart, &their_order] {
        assert!(!r.body.to_string().contains(theirs.as_str()), "{theirs} leaked into another user's export");
    }
    let profile = table.rows.iter().find(|r| r[0] == "profile").unwrap();
    assert!(profile[3].contains(&me.email), "one's own data is not masked");
    assert!(!profile[3].contains("password"), "no secrets: {}", profile[3]);

    // As a job: the worker too reads only the caller's data.
    let job = export_job(&app, &token, json!({ "format": "csv" })).await;
    let text = String::from_utf8(download(&job).await).unwrap();
    assert!(text.contains(&my_chart) && !text.contains(&their_chart));
    let job_id = job["id"].as_str().unwrap();
    // Another user cannot see, download or cancel it, nor list it.
    assert_eq!(app.get(&format!("/api/v1/data/jobs/{job_id}"), &other_token).await.status, 404);
    assert_eq!(app.call(Method::DELETE, &format!("/api/v1/data/jobs/{job_id}"), Some(&other_token), None).await.status, 404);
    let theirs = app.get("/api/v1/data/jobs", &other_token).await;
    assert_eq!(theirs.body["items"].as_array().unwrap().len(), 0, "{}", theirs.body);
    let mine = app.get("/api/v1/data/jobs", &token).await;
    assert_eq!(mine.body["items"][0]["id"], job_id);
    // Filters are for datasets only.
    let r = app.call(Method::POST, EXPORT, Some(&token), Some(json!({ "format": "csv", "filters": { "user_id": other.id } }))).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["filters".to_string()]));
}

#[tokio::test]
async fn datasets_need_data_export_for_every_role() {
    let app = TestApp::spawn().await;
    for role in BuiltinRole::ALL {
        let (_, token) = app.user(&[role.as_str()]).await;
        let r = app.call(Method::POST, EXPORT, Some(&token), Some(json!({ "dataset": "charts", "format": "csv" }))).await;
        if role.permissions().contains(Permission::DataExport) {
            assert_eq!(r.status, 200, "{}: {}", role.as_str(), r.body);
        } else {
            assert_eq!(r.status, 403, "{}", role.as_str());
            assert_eq!(r.body["missing_permission"], "data:export");
        }
        // Everyone may export their own data.
        let own = app.call(Method::POST, EXPORT, Some(&token), Some(json!({ "format": "ndjson" }))).await;
        assert_eq!(own.status, 200, "{}: {}", role.as_str(), own.body);
        // The audit log also needs audit:read (analysts hold data:export only).
        let audit = app.call(Method::POST, EXPORT, Some(&token), Some(json!({ "dataset": "audit", "format": "csv" }))).await;
        let allowed = role.permissions().contains(Permission::DataExport) && role.permissions().contains(Permission::AuditRead);
        assert_eq!(audit.status == 200, allowed, "{}: {}", role.as_str(), audit.body);
    }
}

#[tokio::test]
async fn bad_input_names_the_field() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let cases = [
        (json!({ "dataset": "users" }), "format"),
        (json!({ "dataset": "users", "format": "docx" }), "format"),
        (json!({ "dataset": "people", "format": "csv" }), "dataset"),
        (json!({ "dataset": "users", "format": "csv", "columns": ["id", "password_hash"] }), "columns[1]"),
        (json!({ "dataset": "users", "format": "csv", "filters": { "statuss": "active" } }), "filters.statuss"),
        (json!({ "dataset": "users", "format": "csv", "filters": { "status": "gone" } }), "filters.status"),
        (json!({ "dataset": "audit", "format": "csv", "filters": { "from": "last week" } }), "filters.from"),
        (json!({ "dataset": "activity", "format": "csv", "filters": { "from": "2020-01-01T00:00:00Z", "to": "2024-01-01T00:00:00Z" } }), "filters.from"),
        (json!({ "dataset": "users", "format": "csv", "delivery": "email" }), "delivery"),
        (json!({ "dataset": "users", "format": "csv", "extra": 1 }), "extra"),
    ];
    for (body, field) in cases {
        let r = app.call(Method::POST, EXPORT, Some(&admin), Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert_eq!(r.error_fields(), vec![field.to_string()], "{body}: {}", r.body);
    }
}

#[tokio::test]
async fn download_links_are_audited_and_jobs_listed_with_a_cursor() {
    let app = TestApp::spawn().await;
    let (user, token) = app.user(&["analyst"]).await;
    let mut ids = Vec::new();
    for format in ["csv", "json", "sql"] {
        let r = app.call(Method::POST, EXPORT, Some(&token), Some(json!({ "dataset": "charts", "format": format, "delivery": "job" }))).await;
        assert_eq!(r.status, 202);
        ids.push(r.body["job_id"].as_str().unwrap().to_string());
    }
    let queued = app.get(&format!("/api/v1/data/jobs/{}", ids[0]), &token).await;
    assert_eq!((queued.body["status"].as_str(), queued.body["download_url"].is_null()), (Some("queued"), true));
    app.run_jobs().await;
    let first = app.get("/api/v1/data/jobs?limit=2", &token).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let cursor = first.body["next_cursor"].as_str().expect("a next page").to_string();
    let second = app.get(&format!("/api/v1/data/jobs?limit=2&cursor={cursor}"), &token).await;
    let listed: Vec<String> =
        first.body["items"].as_array().unwrap().iter().chain(second.body["items"].as_array().unwrap()).map(|j| j["id"].as_str().unwrap().to_string()).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);
    assert!(first.body["items"][0]["download_url"].is_null(), "links only from the single-job read");

    let job = app.get(&format!("/api/v1/data/jobs/{}", ids[2]), &token).await;
    assert!(job.body["download_url"].as_str().unwrap().contains("X-Amz-Expires=300"), "{}", job.body);
    let audit = app.audit_for("job", &ids[2]).await;
    let issued = audit.iter().find(|e| e.action == "data.export_download").expect("download link audited");
    assert_eq!(issued.actor.id, user.id);
    assert!(audit.iter().any(|e| e.action == "data.export"), "the request itself is audited");
}

#[tokio::test]
async fn cancelling_a_job() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["admin"]).await;
    // Queued: the worker acknowledges the message and writes nothing.
    let r = app.call(Method::POST, EXPORT, Some(&token), Some(json!({ "dataset": "users", "format": "csv", "delivery": "job" }))).await;
    let job_id = r.body["job_id"].as_str().unwrap().to_string();
    let cancelled = app.call(Method::DELETE, &format!("/api/v1/data/jobs/{job_id}"), Some(&token), None).await;
    assert_eq!((cancelled.status.as_u16(), cancelled.body["status"].as_str()), (200, Some("cancelled")), "{}", cancelled.body);
    app.run_jobs().await;
    let job = shared::domain::jobs::get(app.store(), &job_id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(objects_under(&app, "data-exports/").await.is_empty());
    let again = app.call(Method::DELETE, &format!("/api/v1/data/jobs/{job_id}"), Some(&token), None).await;
    assert_eq!(again.status, 409);
    assert!(app.audit_for("job", &job_id).await.iter().any(|e| e.action == "data.export_cancel"));

    // Running: the worker notices at its next page and discards the upload.
    for i in 0..12 {
        named_user(&app, &format!("Row {i}")).await;
    }
    let r = app.call(Method::POST, EXPORT, Some(&token), Some(json!({ "dataset": "users", "format": "csv", "delivery": "job" }))).await;
    let job_id = r.body["job_id"].as_str().unwrap().to_string();
    let mut job = shared::domain::jobs::get(app.store(), &job_id).await.unwrap().unwrap();
    job.status = JobStatus::Running;
    job.attempts = 1;
    let job = shared::domain::jobs::save(app.store(), &job).await.unwrap();
    let worker = app.app.worker.clone();
    let hooks = jobs::data_export::Hooks { page_size: 1, progress_every: Duration::ZERO, page_delay: Some(Duration::from_millis(150)), ..Default::default() };
    let running = tokio::spawn(async move { jobs::data_export::run_with(&worker, &job, &hooks).await });
    for _ in 0..100 {
        let seen = shared::domain::jobs::get(app.store(), &job_id).await.unwrap().unwrap();
        if seen.progress.processed >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A cancel that races a progress save gets 409 (documented: retry).
    let mut r = app.call(Method::DELETE, &format!("/api/v1/data/jobs/{job_id}"), Some(&token), None).await;
    for _ in 0..5 {
        if r.status != 409 {
            break;
        }
        r = app.call(Method::DELETE, &format!("/api/v1/data/jobs/{job_id}"), Some(&token), None).await;
    }
    assert_eq!(r.status, 200, "{}", r.body);
    let outcome = running.await.unwrap().unwrap();
    assert_eq!(outcome["cancelled"], true);
    assert!(objects_under(&app, "data-exports/").await.is_empty());
    assert_eq!(open_uploads(&app, "data-exports/").await, 0, "the partial upload is aborted");
    assert_eq!(shared::domain::jobs::get(app.store(), &job_id).await.unwrap().unwrap().status, JobStatus::Cancelled);
}

#[tokio::test]
async fn a_duplicate_delivery_does_not_produce_two_exports() {
    let app = TestApp::spawn().await;
    let (owner, token) = app.user(&["admin"]).await;
    for i in 0..5 {
        named_user(&app, &format!("Person {i}")).await;
    }
    let r = app.call(Method::POST, EXPORT, Some(&token), Some(json!({ "dataset": "users", "format": "ndjson", "delivery": "job" }))).await;
    let job_id = r.body["job_id"].as_str().unwrap().to_string();
    let job = shared::domain::jobs::get(app.store(), &job_id).await.unwrap().unwrap();
    // SQS delivers at least once: the same message arrives twice.
    app.redeliver(&job).await;
    app.run_jobs().await;
    // A message that lost the race is retried after the local retry delay.
    tokio::time::sleep(Duration::from_secs(keel_local::poller::LOCAL_RETRY_SECONDS as u64 + 1)).await;
    app.run_jobs().await;
    let done = shared::domain::jobs::get(app.store(), &job_id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    let prefix = format!("data-exports/{}/", owner.id);
    assert_eq!(objects_under(&app, &prefix).await.len(), 1);
    assert_eq!(open_uploads(&app, &prefix).await, 0);

    // A third delivery long after: acknowledged, nothing redone.
    app.redeliver(&job).await;
    assert_eq!(app.run_jobs().await, 1);
    let after = shared::domain::jobs::get(app.store(), &job_id).await.unwrap().unwrap();
    assert_eq!(after.version, done.version, "a finished job is not touched");
    assert_eq!(objects_under(&app, &prefix).await.len(), 1);
    let view = app.get(&format!("/api/v1/data/jobs/{job_id}"), &token).await;
    let rows = read_back("ndjson", &download(&view.body).await, "users");
    assert_eq!(rows.rows.len(), 6);
}

#[tokio::test]
async fn a_worker_killed_mid_export_leaves_no_object_and_redelivery_finishes() {
    let app = TestApp::spawn().await;
    let (owner, token) = app.user(&["admin"]).await;
    let mut expected = vec![owner.id.clone()];
    for i in 0..9 {
        expected.push(named_user(&app, &format!("Person {i}")).await.id);
    }
    let r = app.call(Method::POST, EXPORT, Some(&token), Some(json!({ "dataset": "users", "format": "csv", "columns": ["id"], "delivery": "job" }))).await;
    let job_id = r.body["job_id"].as_str().unwrap().to_string();
    // The first attempt picks the job up (as the worker does) and dies after two pages.
    let mut job = shared::domain::jobs::get(app.store(), &job_id).await.unwrap().unwrap();
    job.status = JobStatus::Running;
    job.attempts = 1;
    let job = shared::domain::jobs::save(app.store(), &job).await.unwrap();
    let hooks = jobs::data_export::Hooks { page_size: 3, progress_every: Duration::ZERO, crash_after_pages: Some(2), ..Default::default() };
    let crashed = jobs::data_export::run_with(&app.app.worker, &job, &hooks).await;
    assert!(crashed.is_err());
    let prefix = format!("data-exports/{}/", owner.id);
    assert!(objects_under(&app, &prefix).await.is_empty(), "no completed object is visible");
    assert_eq!(open_uploads(&app, &prefix).await, 1, "the dead attempt's upload is still open");
    let half = shared::domain::jobs::get(app.store(), &job_id).await.unwrap().unwrap();
    assert_eq!((half.status, half.progress.processed, half.progress.total), (JobStatus::Running, 6, 10));
    assert!(half.checkpoint.is_some());

    // The message comes back (visibility timeout): the job is finished.
    app.run_jobs().await;
    let view = app.get(&format!("/api/v1/data/jobs/{job_id}"), &token).await;
    assert_eq!(view.body["status"], "succeeded", "{}", view.body);
    assert_eq!(view.body["attempts"], 2);
    assert_eq!(open_uploads(&app, &prefix).await, 0, "the dead attempt's upload was aborted");
    assert_eq!(objects_under(&app, &prefix).await.len(), 1);
    let table = read_back("csv", &download(&view.body).await, "users");
    let mut got: Vec<String> = table.rows.into_iter().map(|r| r[0].clone()).collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "every row exactly once");
    assert!(shared::domain::jobs::get(app.store(), &job_id).await.unwrap().unwrap().checkpoint.is_none());
}
