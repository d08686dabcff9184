//! Reports (docs/reports.md) against the local stack: a builder spec's
//! CSV totals per country equal a recomputation from the table's orders;
//! every template generates in every format, each file read back by a
//! reader that is not Keel's (Python's csv/json/sqlite3, openpyxl with its
//! chart objects, poppler's pdftotext and pdftoppm, the png crate);
//! validation names the bad field; personal fields are masked without
//! `pii:read`; reports list to their owner and, when shared, to others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::Utc;
use http::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

const GENERATE: &str = "/api/v1/reports/generate";

fn python() -> PathBuf {
    keel_local::repo_root().join(".keel/venv/bin/python")
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keel-reports-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Ask for a report and run the jobs until it is done; the finished report.
async fn generated(app: &TestApp, token: &str, body: Value) -> Value {
    let r = app.call(Method::POST, GENERATE, Some(token), Some(body.clone())).await;
    assert_eq!(r.status, 202, "{body}: {}", r.body);
    let id = r.body["report_id"].as_str().unwrap().to_string();
    assert_eq!(r.body["location"], format!("/api/v1/reports/{id}").as_str());
    app.run_jobs().await;
    let report = app.get(&format!("/api/v1/reports/{id}"), token).await;
    assert_eq!(report.status, 200, "{}", report.body);
    assert_eq!(report.body["status"], "succeeded", "{body}: {}", report.body);
    // The job's last stage was storing its files, one a format.
    let progress = &report.body["progress"];
    assert_eq!(
        (progress["stage"].as_str(), progress["total"].as_u64()),
        (Some("storing"), Some(report.body["files"].as_array().unwrap().len() as u64)),
        "{}",
        report.body
    );
    report.body
}

/// A file through its presigned link, checked against its recorded size and SHA-256.
async fn download(file: &Value) -> Vec<u8> {
    let url = file["download_url"].as_str().expect("a download link");
    let response = reqwest::get(url).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let bytes = response.bytes().await.unwrap().to_vec();
    assert_eq!(file["bytes"].as_u64().unwrap(), bytes.len() as u64);
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(file["sha256"], sha.as_str());
    bytes
}

fn file<'a>(report: &'a Value, format: &str) -> &'a Value {
    report["files"].as_array().unwrap().iter().find(|f| f["format"] == format).unwrap_or_else(|| panic!("no {format} file in {report}"))
}

/// Run a Python reader over `path`; its stdout as JSON.
fn read_with_python(script: &str, path: &Path) -> Value {
    let out = std::process::Command::new(python()).arg("-c").arg(script).arg(path).output().expect("the test venv's python");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

const CSV_READER: &str = r#"
import csv, io, json, sys, zipfile
path = sys.argv[1]
def read(text):
    r = list(csv.reader(io.StringIO(text)))
    return {"header": r[0], "rows": r[1:]}
if zipfile.is_zipfile(path):
    z = zipfile.ZipFile(path)
    manifest = json.loads(z.read("manifest.json"))
    out = [read(z.read(f["name"]).decode("utf-8")) for f in manifest["files"]]
else:
    out = [read(open(path, encoding="utf-8", newline="").read())]
print(json.dumps(out))
"#;

const XLSX_READER: &str = r#"
import json, sys, openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
print(json.dumps([{"title": ws.title, "charts": [type(c).__name__ for c in ws._charts], "rows": ws.max_row} for ws in wb.worksheets]))
"#;

const SQL_READER: &str = r#"
import json, sqlite3, sys
db = sqlite3.connect(":memory:")
db.executescript(open(sys.argv[1], encoding="utf-8").read())
tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
print(json.dumps({t: db.execute('SELECT COUNT(*) FROM "%s"' % t).fetchone()[0] for t in tables}))
"#;

fn pdf_text(path: &Path) -> String {
    let out = std::process::Command::new("pdftotext").arg(path).arg("-").output().expect("pdftotext (poppler-utils; `make test` installs it)");
    assert!(out.status.success(), "pdftotext failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Every page of the PDF drawn by poppler at low resolution: how many
/// pages, and whether each has anything but white on it.
fn pdf_pages_inked(path: &Path) -> Vec<bool> {
    let prefix = path.with_extension("page");
    let out = std::process::Command::new("pdftoppm").args(["-r", "20", "-png"]).arg(path).arg(&prefix).output().expect("pdftoppm (poppler-utils)");
    assert!(out.status.success(), "pdftoppm failed: {}", String::from_utf8_lossy(&out.stderr));
    let dir = path.parent().unwrap();
    let stem = prefix.file_name().unwrap().to_string_lossy().to_string();
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&stem))
        .collect();
    pages.sort();
    pages.iter().map(|p| inked(&std::fs::read(p).unwrap())).collect()
}

/// Whether a PNG decodes and has non-white pixels (a blank page or chart has none).
fn inked(png_bytes: &[u8]) -> bool {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    let channels = info.color_type.samples();
    buf[..info.buffer_size()].chunks(channels).filter(|px| px.iter().take(3).any(|&c| c < 200)).count() > 50
}

fn csv_tables(bytes: &[u8]) -> Vec<Value> {
    let dir = scratch();
    let path = dir.join("report.csv");
    std::fs::write(&path, bytes).unwrap();
    read_with_python(CSV_READER, &path).as_array().unwrap().clone()
}

#[tokio::test]
async fn a_spec_by_country_equals_a_recomputation_from_the_orders_and_masks_without_pii_read() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let (items, summary) = keel_local::seed::generate(now, 300, 12);
    keel_local::seed::put(app.store(), &items).await.unwrap();
    let (_, analyst) = app.user(&["analyst"]).await;
    let (_, admin) = app.user(&["admin"]).await;

    let first = crate::analytics::month_of(now - chrono::Duration::days(800));
    let orders = crate::analytics::orders(&app, &first, &crate::analytics::month_of(now)).await;
    assert_eq!(orders.len(), summary.orders);
    let from = format!("{first}-01T00:00:00Z");
    let spec = json!({
        "dataset": "orders",
        "filters": {"from": from},
        "group_by": ["country"],
        "metrics": [{"op": "sum", "field": "amount_cents", "as": "gross_cents"}, {"op": "count", "as": "orders"}, {"op": "count_distinct", "field": "user_id", "as": "customers"}],
        "sort": [{"field": "gross_cents", "order": "desc"}],
        "chart": {"type": "bar", "x": "country", "y": ["gross_cents"]},
        "title": "Gross by country",
    });
    let report = generated(&app, &analyst, json!({"spec": spec, "formats": ["csv", "json"]})).await;
    assert_eq!(report["title"], "Gross by country");
    let tables = csv_tables(&download(file(&report, "csv")).await);
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0]["header"], json!(["country", "gross_cents", "orders", "customers"]));

    // The recomputation, straight from the order items.
    let mut expected: BTreeMap<String, (i64, i64, std::collections::BTreeSet<String>)> = BTreeMap::new();
    for o in &orders {
        let e = expected.entry(o["country"].as_str().unwrap_or("").to_string()).or_default();
        e.0 += o["amount_cents"].as_i64().unwrap();
        e.1 += 1;
        e.2.insert(o["user_id"].as_str().unwrap().to_string());
    }
    let rows = tables[0]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    let mut last = i64::MAX;
    for row in rows {
        let country = row[0].as_str().unwrap();
        let (gross, count, customers) = &expected[country];
        let got: i64 = row[1].as_str().unwrap().parse().unwrap();
        assert_eq!(got, *gross, "{country}");
        assert_eq!(row[2].as_str().unwrap(), count.to_string(), "{country}");
        assert_eq!(row[3].as_str().unwrap(), customers.len().to_string(), "{country}");
        assert!(got <= last, "sorted by gross, descending");
        last = got;
    }
    // The data range is the orders' first and last day.
    // (Refund times are times of the orders too.)
    let days: Vec<&str> = orders.iter().flat_map(|o| [&o["created_at"], &o["refunded_at"]]).filter_map(|t| t.as_str().map(|t| &t[..10])).collect();
    assert_eq!(report["data_range"], json!([days.iter().min().unwrap(), days.iter().max().unwrap()]));
    let generated_entry = app.audit_for("report", report["report_id"].as_str().unwrap()).await;
    assert!(generated_entry.iter().any(|e| e.action == "report.generate"), "{generated_entry:?}");
    let done = generated_entry.iter().find(|e| e.action == "report.generated").expect("the generated files are audited");
    let changes = serde_json::to_value(&done.changes).unwrap();
    assert!(changes.to_string().contains(file(&report, "csv")["sha256"].as_str().unwrap()), "{changes}");

    // Personal fields: masked for the analyst (no pii:read), clear for an admin.
    let users = json!({"spec": {"dataset": "users", "columns": ["id", "email", "country"], "limit": 20}, "format": "json"});
    let masked = generated(&app, &analyst, users.clone()).await;
    let clear = generated(&app, &admin, users).await;
    let emails = |bytes: Vec<u8>| -> Vec<String> {
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        doc["sections"][0]["rows"].as_array().unwrap().iter().map(|r| r["email"].as_str().unwrap().to_string()).collect()
    };
    let masked = emails(download(file(&masked, "json")).await);
    let clear = emails(download(file(&clear, "json")).await);
    assert_eq!(masked.len(), 20);
    assert!(masked.iter().all(|e| e.contains("***@")), "{masked:?}");
    assert!(clear.iter().all(|e| !e.contains("***")), "{clear:?}");
}

#[tokio::test]
async fn validation_names_each_bad_field_and_estimates_rows() {
    let app = TestApp::spawn().await;
    let (_, analyst) = app.user(&["analyst"]).await;
    let validate = |spec: Value| {
        let app = &app;
        let analyst = analyst.clone();
        async move { app.call(Method::POST, "/api/v1/reports/validate", Some(&analyst), Some(json!({ "spec": spec }))).await }
    };
    let r = validate(json!({
        "dataset": "orders",
        "group_by": ["colour", {"field": "created_at", "bucket": "day"}],
        "metrics": [{"op": "sum", "field": "plan"}],
        "sort": [{"field": "nope"}],
    }))
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["valid"], false);
    let fields: Vec<&str> = r.body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    // Unknown field, metric on a non-numeric field, a day bucket over an open (3-year) range, an unknown sort key.
    assert_eq!(fields, ["group_by[0].field", "group_by[1].bucket", "metrics[0].field", "sort[0].field"], "{}", r.body);
    assert!(r.body.to_string().contains("too fine"), "{}", r.body);

    let r = validate(json!({"dataset": "orders", "filters": {"from": "2026-01-01T00:00:00Z", "to": "2026-03-31T23:59:59Z"},
        "group_by": [{"field": "created_at", "bucket": "month"}], "metrics": [{"op": "count"}]}))
    .await;
    assert_eq!(r.body["valid"], true, "{}", r.body);
    assert_eq!(r.body["columns"], json!([{"name": "created_at", "kind": "text", "group": true}, {"name": "count", "kind": "number", "group": false}]));
    assert_eq!(r.body["estimate"]["rows_at_most"], 3, "three months: {}", r.body);

    // Generating an invalid spec is refused before any job, naming the field under `spec`.
    let r = app.call(Method::POST, GENERATE, Some(&analyst), Some(json!({"spec": {"dataset": "invoices"}, "format": "csv"}))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error_fields(), ["spec.dataset"]);
    let r = app
        .call(Method::POST, GENERATE, Some(&analyst), Some(json!({"template": "executive_summary", "parameters": {"from": "March"}, "format": "pdf"})))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error_fields(), ["parameters.from"]);
    let r = app.call(Method::POST, GENERATE, Some(&analyst), Some(json!({"spec": {"dataset": "users"}, "format": "png"}))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error_fields(), ["format"]);
    // The audit log needs audit:read too (the analyst lacks it).
    let r = app.call(Method::POST, GENERATE, Some(&analyst), Some(json!({"template": "security_and_audit", "format": "csv"}))).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.to_string().contains("audit:read"), "{}", r.body);
}

#[tokio::test]
async fn every_template_generates_in_every_format_on_the_demo_data() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    // The demo data's draws depend on `now`: take the first seed whose data
    // has a refund in the templates' default period (the last 90 days), so
    // the refunds section has rows to check whatever the date.
    let since = shared::store::timestamp(now - chrono::Duration::days(90));
    let refunded_lately = |items: &[shared::store::Item]| {
        items.iter().any(|i| {
            shared::store::attr_s(i, "pk").is_some_and(|pk| pk.starts_with("ORDER#"))
                && shared::store::attr_s(i, "refunded_at").is_some_and(|at| at >= since.as_str())
        })
    };
    let (items, _) = (12..).map(|seed| keel_local::seed::generate(now, 300, seed)).find(|(items, _)| refunded_lately(items)).expect("some seed");
    keel_local::seed::put(app.store(), &items).await.unwrap();
    let (me, admin) = app.user(&["admin"]).await;
    crate::analytics::refreshed(&app, &admin).await;
    // A subject request for the request log.
    let r = app.call(Method::POST, "/api/v1/data/export/gdpr", Some(&admin), Some(json!({"user_id": me.id}))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    // A failed sign-in, for the security report.
    let r = app.login(&me.email, "not the password").await;
    assert_eq!(r.status, 401, "{}", r.body);
    // A moderator's decision, for the moderation report's throughput table.
    let pending = crate::charts::chart(&app, &me.id, "Pending chart", shared::domain::charts::ModerationStatus::Pending, now).await;
    let r = app
        .call(
            Method::POST,
            &format!("/api/v1/admin/charts/{}/moderate", pending.id),
            Some(&admin),
            Some(json!({"action": "approve", "reason": "meets_guidelines", "version": 1})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let templates = app.get("/api/v1/reports/templates", &admin).await;
    assert_eq!(templates.status, 200, "{}", templates.body);
    let list = templates.body["templates"].as_array().unwrap();
    assert!(list.len() >= 8, "{}", templates.body);
    for template in list {
        let id = template["id"].as_str().unwrap();
        let formats = template["formats"].clone();
        assert_eq!(formats.as_array().unwrap().len(), 7, "{id}");
        let report = generated(&app, &admin, json!({"template": id, "formats": formats})).await;
        let title = report["title"].as_str().unwrap().to_string();
        assert!(report["rows"].as_u64().unwrap() > 0, "{id}: an empty report on the demo data");
        let dir = scratch();

        // CSV: one table a section (several in a zip with a manifest).
        let tables = csv_tables(&download(file(&report, "csv")).await);
        assert!(tables.iter().any(|t| !t["rows"].as_array().unwrap().is_empty()), "{id}: {tables:?}");
        // JSON and NDJSON parse, and hold the same rows.
        let doc: Value = serde_json::from_slice(&download(file(&report, "json")).await).unwrap();
        assert_eq!(doc["title"], title.as_str());
        let json_rows: usize = doc["sections"].as_array().unwrap().iter().map(|s| s["rows"].as_array().unwrap().len()).sum();
        assert_eq!(json_rows as u64, report["rows"].as_u64().unwrap(), "{id}");
        let ndjson = String::from_utf8(download(file(&report, "ndjson")).await).unwrap();
        let lines: Vec<Value> = ndjson.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), json_rows, "{id}");
        assert!(lines.iter().all(|l| l["section"].is_string()), "{id}: every line names its section");
        // SQL runs in SQLite, one table a section.
        let sql_path = dir.join("report.sql");
        std::fs::write(&sql_path, download(file(&report, "sql")).await).unwrap();
        let counts = read_with_python(SQL_READER, &sql_path);
        assert_eq!(counts.as_object().unwrap().len(), doc["sections"].as_array().unwrap().len(), "{id}: {counts}");
        assert_eq!(counts.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum::<u64>(), json_rows as u64, "{id}");
        // XLSX opens in openpyxl with a native chart for every charted section.
        let xlsx_path = dir.join("report.xlsx");
        std::fs::write(&xlsx_path, download(file(&report, "xlsx")).await).unwrap();
        let sheets = read_with_python(XLSX_READER, &xlsx_path);
        let charts: usize = sheets.as_array().unwrap().iter().map(|s| s["charts"].as_array().unwrap().len()).sum();
        let charted = doc["sections"].as_array().unwrap().iter().filter(|s| s["chart"].is_object() && s["chart"]["kind"] != "table").count();
        for section in doc["sections"].as_array().unwrap() {
            assert!(!section["rows"].as_array().unwrap().is_empty(), "{id}: section {} is empty on the demo data", section["title"]);
        }
        assert_eq!(charts, charted, "{id}: {sheets}");
        // PDF: the title, every section's heading and chart title read back as text; no blank page.
        let pdf_path = dir.join("report.pdf");
        std::fs::write(&pdf_path, download(file(&report, "pdf")).await).unwrap();
        let text = pdf_text(&pdf_path);
        let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let text = squash(&text);
        assert!(text.contains(&squash(&title)), "{id}: title missing from\n{text}");
        for section in doc["sections"].as_array().unwrap() {
            let heading = squash(section["title"].as_str().unwrap());
            assert!(text.contains(&heading), "{id}: section {heading} missing from the PDF text");
        }
        for kpi in doc["kpis"].as_array().unwrap() {
            assert!(text.contains(&squash(kpi["label"].as_str().unwrap())), "{id}: KPI {} missing", kpi["label"]);
        }
        let pages = pdf_pages_inked(&pdf_path);
        assert!(pages.len() >= 2, "{id}: a title page and content");
        assert!(pages.iter().all(|&p| p), "{id}: blank pages {pages:?}");
        // PNG decodes and is drawn on; it is the template's thumbnail in docs/reports.md.
        let png = download(file(&report, "png")).await;
        assert!(inked(&png), "{id}: a blank PNG");
        let thumbnail = keel_local::repo_root().join(format!("docs/reports/{id}.png"));
        if std::env::var_os("KEEL_UPDATE_THUMBNAILS").is_some() {
            std::fs::create_dir_all(thumbnail.parent().unwrap()).unwrap();
            std::fs::write(&thumbnail, &png).unwrap();
        }
        assert!(thumbnail.exists(), "{id}: no thumbnail in docs/reports/ (KEEL_UPDATE_THUMBNAILS=1 writes them)");
    }
}

#[tokio::test]
async fn reports_list_to_their_owner_and_when_shared_to_the_team() {
    let app = TestApp::spawn().await;
    let (_, alice) = app.user(&["analyst"]).await;
    let (_, bob) = app.user(&["analyst"]).await;
    let spec = json!({"dataset": "charts", "group_by": ["moderation_status"], "metrics": [{"op": "count"}]});
    let private = generated(&app, &alice, json!({"spec": spec, "format": "csv"})).await;
    let shared = generated(&app, &alice, json!({"spec": spec, "format": "json", "shared": true, "compress": "gzip"})).await;
    assert!(file(&shared, "json")["file_name"].as_str().unwrap().ends_with(".json.gz"));
    let ids = |list: &Value| -> Vec<String> { list["reports"].as_array().unwrap().iter().map(|r| r["report_id"].as_str().unwrap().to_string()).collect() };
    let own = app.get("/api/v1/reports", &alice).await;
    assert_eq!(ids(&own.body), [shared["report_id"].as_str().unwrap(), private["report_id"].as_str().unwrap()]);
    let others = app.get("/api/v1/reports", &bob).await;
    assert_eq!(ids(&others.body), [shared["report_id"].as_str().unwrap()]);
    assert_eq!(app.get(&format!("/api/v1/reports/{}", private["report_id"].as_str().unwrap()), &bob).await.status, 404);
    assert_eq!(app.get(&format!("/api/v1/reports/{}", shared["report_id"].as_str().unwrap()), &bob).await.status, 200);
}
