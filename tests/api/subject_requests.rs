//! GDPR / CCPA subject requests (docs/subject-requests.md): a user with data
//! in every category gets their export as one zip, opened by Python's
//! `zipfile` (a reader that is not Keel's code) and checked against its
//! manifest and the seeded records; who may ask for whose export; the
//! request listing with its deadlines.

use std::collections::HashMap;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use shared::audit::{Actor, AuditEntry};
use shared::domain::subject_requests::Regime;

use crate::helpers::{PASSWORD, TestApp, request};

const GDPR: &str = "/api/v1/data/export/gdpr";
const REQUESTS: &str = "/api/v1/data/requests";

/// Every category the zip holds (`<name>.json` and `<name>.csv` each).
const CATEGORIES: &[&str] = &[
    "profile",
    "sessions",
    "two_factor",
    "identities",
    "charts",
    "chart_moderation",
    "orders",
    "activity",
    "jobs",
    "subject_requests",
    "audit_entries",
    "files",
];

fn python() -> std::path::PathBuf {
    keel_local::repo_root().join(".keel/venv/bin/python")
}

/// What Python's zipfile found: the file names, whether each manifest entry
/// matched (size and SHA-256 recomputed by Python), and every file's text.
struct Unzipped {
    names: Vec<String>,
    manifest: Value,
    files: HashMap<String, String>,
}

impl Unzipped {
    fn json(&self, name: &str) -> Value {
        serde_json::from_str(&self.files[name]).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
    }
}

fn unzip(bytes: &[u8]) -> Unzipped {
    let dir = std::env::temp_dir().join(format!("keel-gdpr-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("export.zip");
    std::fs::write(&path, bytes).unwrap();
    let script = r#"
import hashlib, json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    assert z.testzip() is None, "a corrupt member"
    names = z.namelist()
    data = {n: z.read(n) for n in names}
manifest = json.loads(data["manifest.json"])
listed = [f["name"] for f in manifest["files"]]
assert sorted(listed) == sorted(n for n in names if n != "manifest.json"), (listed, names)
for f in manifest["files"]:
    content = data[f["name"]]
    assert f["bytes"] == len(content), f["name"]
    assert f["sha256"] == hashlib.sha256(content).hexdigest(), f["name"]
print(json.dumps({"names": names, "manifest": manifest, "files": {n: c.decode("utf-8") for n, c in data.items()}}))
"#;
    let out = std::process::Command::new(python()).arg("-c").arg(script).arg(&path).output().expect("the project's Python (make venv)");
    assert!(out.status.success(), "zipfile check failed: {}", String::from_utf8_lossy(&out.stderr));
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    Unzipped {
        names: parsed["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect(),
        manifest: parsed["manifest"].clone(),
        files: parsed["files"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect(),
    }
}

/// Read a CSV member with Python's csv module: header and rows.
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let script = "import csv, io, json, sys\nprint(json.dumps(list(csv.reader(io.StringIO(sys.stdin.read())))))";
    let mut child =
        std::process::Command::new(python()).arg("-c").arg(script).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

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

fn time(t: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap()).unwrap().with_timezone(&chrono::Utc)
}

/// The deadline is received_at plus the regime's days, to the microsecond.
fn assert_deadline(request: &Value, days: i64) {
    assert_eq!(time(&request["due_at"]) - time(&request["received_at"]), chrono::Duration::days(days), "{request}");
}

#[tokio::test]
async fn a_user_gets_everything_keel_holds_about_them_in_one_zip() {
    let app = TestApp::spawn().await;
    let store = app.store();
    let table = store.table().to_string();
    let (me, token) = app.user(&["user"]).await;
    let (other, _) = app.user(&["user"]).await;
    let (moderator, _) = app.user(&["moderator"]).await;
    let stored_hash = shared::identity::users::get(store, &me.id).await.unwrap().unwrap().password_hash.unwrap();

    // A session (and an auth.login audit entry with me as actor).
    let login = app.login(&me.email, PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let refresh_token = login.body["refresh_token"].as_str().unwrap().to_string();

    // Active 2FA with recovery codes.
    let secret = shared::identity::two_factor::new_secret();
    let codes = shared::identity::two_factor::new_recovery_codes();
    let mut mfa = shared::identity::two_factor::MfaRecord::pending(&app.app.platform.envelope, &me.id, &secret, None).await.unwrap();
    mfa.status = shared::identity::two_factor::MfaStatus::Active;
    mfa.activated_at = Some(shared::store::timestamp(chrono::Utc::now()));
    mfa.recovery_codes = shared::identity::two_factor::recovery_code_hashes(&me.id, &codes);
    store.commit(vec![mfa.save(&table, None).unwrap()], &AuditEntry::new(&Actor::system("tests"), "mfa.activate", "user", &me.id)).await.unwrap();

    // A linked identity.
    let identity = auth::identities::Identity::new(&me.id, "acme", "acme-subject-4711", Some(&me.email));
    store.commit(identity.link_writes(&table).unwrap(), &AuditEntry::new(&Actor::system("tests"), "identity.link", "user", &me.id)).await.unwrap();

    // Charts (one soft-deleted) and a moderation decision on one.
    let chart = shared::domain::charts::Chart::new(&me.id, "Quarterly revenue by region", "bar");
    let mut gone = shared::domain::charts::Chart::new(&me.id, "An old deleted chart", "line");
    gone.deleted_at = Some(shared::store::timestamp(chrono::Utc::now()));
    let theirs = shared::domain::charts::Chart::new(&other.id, "Someone else's chart", "pie");
    let decision = shared::domain::charts::ModerationEvent {
        id: uuid::Uuid::now_v7().to_string(),
        chart_id: chart.id.clone(),
        at: shared::store::timestamp(chrono::Utc::now()),
        actor_id: moderator.id.clone(),
        action: shared::domain::charts::ModerationAction::Approve,
        from: shared::domain::charts::ModerationStatus::Pending,
        to: shared::domain::charts::ModerationStatus::Approved,
        reason: "looks_fine".into(),
        note: None,
        version: 2,
    };
    store.batch_put(vec![chart.to_item().unwrap(), gone.to_item().unwrap(), theirs.to_item().unwrap(), decision.to_item().unwrap()]).await.unwrap();

    // An order and an activity event (as the demo data writes them).
    let order_id = uuid::Uuid::now_v7().to_string();
    let ts = shared::store::timestamp(chrono::Utc::now() - chrono::Duration::days(3));
    let event_id = uuid::Uuid::now_v7().to_string();
    let items = [
        json!({
            "pk": format!("ORDER#{order_id}"), "sk": "META", "gsi1pk": format!("USER#{}", me.id), "gsi1sk": format!("{ts}#{order_id}"),
            "gsi2pk": format!("ORDERS#{}", &ts[..7]), "gsi2sk": format!("{ts}#{order_id}"),
            "type": "order", "id": order_id, "user_id": me.id, "plan": "team", "billing": "annual", "amount_cents": 12900, "currency": "EUR", "country": "DE", "status": "paid", "created_at": ts,
        }),
        json!({
            "pk": format!("USER#{}", me.id), "sk": format!("EVENT#{ts}#{event_id}"), "gsi1pk": format!("EVENTS#{}", &ts[..10]), "gsi1sk": ts,
            "type": "event", "id": event_id, "user_id": me.id, "kind": "order_placed", "ts": ts, "order_id": order_id, "amount_cents": 12900,
        }),
    ];
    store.batch_put(items.iter().map(|i| shared::store::to_item(i).unwrap()).collect()).await.unwrap();

    // A job they ran, which left a file in the exports bucket.
    let r = app.call(Method::POST, "/api/v1/data/export", Some(&token), Some(json!({ "format": "csv", "delivery": "job" }))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let own_export = r.body["job_id"].as_str().unwrap().to_string();
    app.run_jobs().await;
    let own_export_job = shared::domain::jobs::get(store, &own_export).await.unwrap().unwrap();
    let own_export_result = own_export_job.result.clone().unwrap();

    // The request.
    let r = app.call(Method::POST, GDPR, Some(&token), Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let request_id = r.body["request_id"].as_str().unwrap().to_string();
    let job_id = r.body["job_id"].as_str().unwrap().to_string();
    assert_eq!(r.body["status"], "received");
    assert_eq!(r.body["location"], format!("/api/v1/data/jobs/{job_id}").as_str());
    assert_eq!(r.headers["location"], format!("/api/v1/data/jobs/{job_id}").as_str());
    let open = app.get(&format!("{REQUESTS}/{request_id}"), &token).await;
    assert_eq!((open.body["status"].as_str(), open.body["overdue"].as_bool()), (Some("received"), Some(false)), "{}", open.body);
    assert_deadline(&open.body, 30);

    app.run_jobs().await;
    let job = app.get(&format!("/api/v1/data/jobs/{job_id}"), &token).await;
    assert_eq!(job.status, 200, "{}", job.body);
    assert_eq!(
        (job.body["status"].as_str(), job.body["kind"].as_str(), job.body["format"].as_str()),
        (Some("succeeded"), Some("gdpr_export"), Some("zip")),
        "{}",
        job.body
    );
    assert!(job.body["download_url"].as_str().unwrap().contains("X-Amz-Expires=300"), "{}", job.body);
    assert!(app.audit_for("job", &job_id).await.iter().any(|e| e.action == "data.export_download"), "the download link is audited");
    let zip = download(&job.body).await;
    let key = job.body["result"]["key"].as_str().unwrap().to_string();
    assert_eq!(key, format!("data-exports/{}/{job_id}.zip", me.id));

    // Independent reader: every file matches the manifest (checked in Python).
    let unzipped = unzip(&zip);
    for category in CATEGORIES {
        for ext in ["json", "csv"] {
            assert!(unzipped.names.contains(&format!("{category}.{ext}")), "{category}.{ext} missing: {:?}", unzipped.names);
        }
    }
    assert!(unzipped.names.contains(&"README.md".to_string()) && unzipped.names.contains(&"manifest.json".to_string()));
    assert_eq!(unzipped.names.len(), CATEGORIES.len() * 2 + 2, "{:?}", unzipped.names);
    assert_eq!(job.body["result"]["files"], unzipped.names.len());
    assert_eq!((unzipped.manifest["request_id"].as_str(), unzipped.manifest["regime"].as_str()), (Some(request_id.as_str()), Some("gdpr")));

    // The seeded values, each in its category.
    let profile = unzipped.json("profile.json");
    assert_eq!(
        (profile[0]["email"].as_str(), profile[0]["id"].as_str(), profile[0]["has_password"].as_bool()),
        (Some(me.email.as_str()), Some(me.id.as_str()), Some(true)),
        "{profile}"
    );
    let sessions = unzipped.json("sessions.json");
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}");
    assert_eq!((sessions[0]["source_ip"].as_str(), sessions[0]["user_agent"].as_str()), (Some("203.0.113.9"), Some("keel-tests")));
    let two_factor = unzipped.json("two_factor.json");
    assert_eq!((two_factor[0]["enabled"].as_bool(), two_factor[0]["recovery_codes_left"].as_u64()), (Some(true), Some(codes.len() as u64)), "{two_factor}");
    assert_eq!(unzipped.json("identities.json")[0]["subject"], "acme-subject-4711");
    let charts = unzipped.json("charts.json");
    let titles: Vec<&str> = charts.as_array().unwrap().iter().map(|c| c["title"].as_str().unwrap()).collect();
    assert!(titles.contains(&"Quarterly revenue by region") && titles.contains(&"An old deleted chart"), "{titles:?}");
    assert_eq!(titles.len(), 2, "only their own charts: {titles:?}");
    assert_eq!(unzipped.json("chart_moderation.json")[0]["chart_id"], chart.id.as_str());
    assert_eq!(unzipped.json("orders.json")[0]["id"], order_id.as_str());
    let orders_csv = csv_rows(&unzipped.files["orders.csv"]);
    let id_column = orders_csv[0].iter().position(|c| c == "id").unwrap();
    assert_eq!(orders_csv[1][id_column], order_id, "the CSV holds the order too");
    assert_eq!(unzipped.json("activity.json")[0]["id"], event_id.as_str());
    let jobs: Vec<String> = unzipped.json("jobs.json").as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_string()).collect();
    assert!(jobs.contains(&own_export) && jobs.contains(&job_id), "{jobs:?}");
    let requests = unzipped.json("subject_requests.json");
    assert_eq!(requests[0]["id"], request_id.as_str());
    let actions: Vec<String> = unzipped.json("audit_entries.json").as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_string()).collect();
    for action in ["user.create", "auth.login", "mfa.activate", "identity.link", "data.export", "data.subject_request.create"] {
        assert!(actions.contains(&action.to_string()), "{action} missing from {actions:?}");
    }
    let files = unzipped.json("files.json");
    let listed =
        files.as_array().unwrap().iter().find(|f| f["key"] == own_export_result["key"]).unwrap_or_else(|| panic!("the earlier export is listed: {files}"));
    assert_eq!((&listed["sha256"], &listed["bytes"]), (&own_export_result["sha256"], &own_export_result["bytes"]));
    assert!(!files.to_string().contains(&format!("{job_id}.zip")), "the zip does not list itself");
    let readme = &unzipped.files["README.md"];
    assert!(readme.contains("consent") && readme.contains(&request_id) && readme.contains("30 days"), "{readme}");

    // Nothing secret, and nobody else's data, anywhere in the zip.
    let everything: String = unzipped.files.values().cloned().collect::<Vec<_>>().join("\n");
    assert!(!everything.contains(&stored_hash), "the password hash leaked");
    assert!(!everything.contains("$argon2"), "a password hash leaked");
    assert!(!everything.contains(&mfa.secret.data) && !everything.contains(&mfa.secret.key), "the 2FA secret leaked");
    assert!(!everything.contains(&shared::identity::two_factor::secret_base32(&secret).unwrap()), "the 2FA secret leaked");
    for (code, hash) in codes.iter().zip(&mfa.recovery_codes) {
        assert!(!everything.contains(code.as_str()) && !everything.contains(hash.as_str()), "a recovery code leaked");
    }
    let (_, refresh_secret) = refresh_token.split_once('.').unwrap();
    assert!(!everything.contains(refresh_secret), "token material leaked");
    assert!(!everything.contains(&theirs.id) && !everything.contains(&other.email), "another user's data leaked");

    // The request is answered, with the zip's size and hash.
    let done = app.get(&format!("{REQUESTS}/{request_id}"), &token).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!((done.body["status"].as_str(), done.body["overdue"].as_bool()), (Some("completed"), Some(false)), "{}", done.body);
    assert_eq!(done.body["result"]["sha256"], job.body["result"]["sha256"]);
    assert_eq!(done.body["result"]["bytes"], job.body["result"]["bytes"]);
    assert_eq!(done.body["job_id"], job_id.as_str());
    assert!(done.body["completed_at"].is_string());
    let lifecycle: Vec<String> = app.audit_for("user", &me.id).await.into_iter().map(|e| e.action).filter(|a| a.starts_with("data.subject_request.")).collect();
    for action in ["data.subject_request.create", "data.subject_request.start", "data.subject_request.complete"] {
        assert!(lifecycle.contains(&action.to_string()), "{action} not audited: {lifecycle:?}");
    }

    // A redelivered message of the finished job changes nothing.
    let finished = shared::domain::jobs::get(store, &job_id).await.unwrap().unwrap();
    let request_before = shared::domain::subject_requests::get(store, &request_id.parse().unwrap()).await.unwrap().unwrap();
    app.redeliver(&finished).await;
    assert_eq!(app.run_jobs().await, 1);
    assert_eq!(shared::domain::jobs::get(store, &job_id).await.unwrap().unwrap().version, finished.version);
    assert_eq!(shared::domain::subject_requests::get(store, &request_id.parse().unwrap()).await.unwrap().unwrap(), request_before);
    let zips: Vec<String> = objects_under(&app, &format!("data-exports/{}/", me.id)).await.into_iter().filter(|k| k.ends_with(".zip")).collect();
    assert_eq!(zips, vec![key]);
    // A subject export is not withdrawn through the jobs API.
    assert_eq!(app.call(Method::DELETE, &format!("/api/v1/data/jobs/{job_id}"), Some(&token), None).await.status, 409);
}

#[tokio::test]
async fn who_may_ask_for_whose_export_and_the_request_listing() {
    let app = TestApp::spawn().await;
    let (alice, alice_token) = app.user(&["user"]).await;
    let (bob, bob_token) = app.user(&["user"]).await;
    let (admin_user, admin) = app.user(&["admin"]).await;

    // A plain user may not ask for someone else's export (nor learn whether they exist).
    for user_id in [bob.id.clone(), uuid::Uuid::now_v7().to_string(), "not-a-user".to_string()] {
        let r = app.call(Method::POST, GDPR, Some(&alice_token), Some(json!({ "user_id": user_id }))).await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert_eq!(r.body["missing_permission"], "data:requests");
        assert_eq!(r.headers["content-type"], "application/problem+json");
    }
    // Their own, under the CCPA: 45 days.
    let r = app.call(Method::POST, GDPR, Some(&alice_token), Some(json!({ "user_id": alice.id, "regime": "ccpa" }))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let alice_request = r.body["request_id"].as_str().unwrap().to_string();

    // An admin may, for an existing user; a missing one is a 404 problem.
    let r = app.call(Method::POST, GDPR, Some(&admin), Some(json!({ "user_id": uuid::Uuid::now_v7().to_string() }))).await;
    assert_eq!((r.status.as_u16(), r.headers["content-type"].to_str().unwrap()), (404, "application/problem+json"), "{}", r.body);
    // With an Idempotency-Key, a retry answers the same request.
    let keyed = || {
        let mut req = request(Method::POST, GDPR, Some(&admin), Some(json!({ "user_id": bob.id })));
        req.headers_mut().insert("idempotency-key", "bob-export-1".parse().unwrap());
        req
    };
    let first = app.send(keyed()).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let again = app.send(keyed()).await;
    assert_eq!(again.body["request_id"], first.body["request_id"]);
    let bob_request = first.body["request_id"].as_str().unwrap().to_string();
    let bob_job = first.body["job_id"].as_str().unwrap().to_string();

    // Bad bodies name the field.
    for (body, field) in [(json!({ "user": bob.id }), "user"), (json!({ "regime": "lgpd" }), "regime"), (json!({ "user_id": 7 }), "user_id")] {
        let r = app.call(Method::POST, GDPR, Some(&admin), Some(body.clone())).await;
        assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec![field.to_string()]), "{body}: {}", r.body);
    }

    // Admins see every request, soonest deadline first, with the deadline of its regime.
    let all = app.get(REQUESTS, &admin).await;
    assert_eq!(all.status, 200, "{}", all.body);
    let items = all.body["items"].as_array().unwrap();
    let ids: Vec<&str> = items.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![bob_request.as_str(), alice_request.as_str()], "GDPR (30 days) before CCPA (45): {}", all.body);
    assert_deadline(&items[0], Regime::Gdpr.deadline_days());
    assert_deadline(&items[1], 45);
    assert_eq!((items[1]["regime"].as_str(), items[1]["kind"].as_str(), items[1]["overdue"].as_bool()), (Some("ccpa"), Some("export"), Some(false)));
    assert_eq!(items[0]["subject_id"], bob.id.as_str());
    assert_eq!((items[0]["requested_by"].as_str(), items[1]["requested_by"].as_str()), (Some(admin_user.id.as_str()), Some(alice.id.as_str())));
    // A page at a time.
    let page = app.get(&format!("{REQUESTS}?limit=1"), &admin).await;
    let cursor = page.body["next_cursor"].as_str().expect("a second page").to_string();
    let next = app.get(&format!("{REQUESTS}?limit=1&cursor={cursor}"), &admin).await;
    assert_eq!(next.body["items"][0]["id"], alice_request.as_str(), "{}", next.body);
    // Filters.
    let count = |r: &crate::helpers::Response| r.body["items"].as_array().map(Vec::len).unwrap_or(usize::MAX);
    assert_eq!(count(&app.get(&format!("{REQUESTS}?kind=export&status=received"), &admin).await), 2);
    assert_eq!(count(&app.get(&format!("{REQUESTS}?status=completed"), &admin).await), 0);
    assert_eq!(count(&app.get(&format!("{REQUESTS}?kind=erasure"), &admin).await), 0);
    let bad = app.get(&format!("{REQUESTS}?status=lost"), &admin).await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    // Everyone else sees the requests about themselves only.
    let mine = app.get(REQUESTS, &alice_token).await;
    assert_eq!(
        mine.body["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect::<Vec<_>>(),
        vec![alice_request.as_str()],
        "{}",
        mine.body
    );
    let bobs = app.get(REQUESTS, &bob_token).await;
    assert_eq!(
        bobs.body["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect::<Vec<_>>(),
        vec![bob_request.as_str()],
        "made by an admin, about bob: {}",
        bobs.body
    );
    assert_eq!(app.get(&format!("{REQUESTS}/{bob_request}"), &alice_token).await.status, 404);
    assert_eq!(app.get(&format!("{REQUESTS}/{bob_request}"), &bob_token).await.status, 200);
    assert_eq!(app.get(&format!("{REQUESTS}/{alice_request}"), &admin).await.status, 200);
    assert_eq!(app.get(&format!("{REQUESTS}/{}", uuid::Uuid::now_v7()), &admin).await.status, 404);
    assert_eq!(app.get(&format!("{REQUESTS}/not-an-id"), &admin).await.status, 404);

    // The admin who asked downloads bob's zip; bob's data is in it.
    app.run_jobs().await;
    let job = app.get(&format!("/api/v1/data/jobs/{bob_job}"), &admin).await;
    assert_eq!(job.body["status"], "succeeded", "{}", job.body);
    let unzipped = unzip(&download(&job.body).await);
    assert_eq!(unzipped.json("profile.json")[0]["email"], bob.email.as_str());
    assert!(!unzipped.files.values().any(|f| f.contains(&alice.email)));
    assert_eq!(app.get(&format!("/api/v1/data/jobs/{bob_job}"), &bob_token).await.status, 404, "the job is the admin's");
    let answered = app.get(&format!("{REQUESTS}/{bob_request}"), &bob_token).await;
    assert_eq!((answered.body["status"].as_str(), answered.body["result"]["sha256"].as_str()), (Some("completed"), job.body["result"]["sha256"].as_str()));
    let completed = app.get(&format!("{REQUESTS}?status=completed"), &admin).await;
    assert_eq!(count(&completed), 2, "{}", completed.body);
}

#[tokio::test]
async fn an_export_whose_subject_was_erased_meanwhile_fails_and_says_so() {
    let app = TestApp::spawn().await;
    let store = app.store();
    let (me, token) = app.user(&["user"]).await;
    let r = app.call(Method::POST, GDPR, Some(&token), Some(json!({ "regime": "ccpa" }))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let (request_id, job_id) = (r.body["request_id"].as_str().unwrap().to_string(), r.body["job_id"].as_str().unwrap().to_string());
    // As an erasure does: the subject id is cleared, the commitment stays.
    let request = shared::domain::subject_requests::get(store, &request_id.parse().unwrap()).await.unwrap().unwrap();
    let cleared = shared::domain::subject_requests::SubjectRequest { subject_id: None, ..request.clone() };
    let audit = cleared.audit(&Actor::system("tests"), "data.subject_request.erase_subject");
    shared::domain::subject_requests::update(store, &cleared, request.version, audit).await.unwrap();

    app.run_jobs().await;
    let job = shared::domain::jobs::get(store, &job_id).await.unwrap().unwrap();
    assert_eq!(job.status, shared::domain::jobs::JobStatus::Failed, "refused at once, not retried: {job:?}");
    assert_eq!(job.attempts, 1);
    let failed = shared::domain::subject_requests::get(store, &request_id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(failed.status, shared::domain::subject_requests::RequestStatus::Failed);
    assert!(failed.result.as_ref().unwrap()["error"].as_str().unwrap().contains("no longer names its subject"), "{failed:?}");
    assert!(failed.is_about(&me.id));
    assert!(objects_under(&app, &format!("data-exports/{}/", me.id)).await.is_empty(), "no zip");
    // The person's own listing no longer finds it (gsi1 left); the request itself still answers them.
    assert_eq!(app.get(REQUESTS, &token).await.body["items"].as_array().unwrap().len(), 0);
    let seen = app.get(&format!("{REQUESTS}/{request_id}"), &token).await;
    assert_eq!((seen.status.as_u16(), seen.body["status"].as_str(), seen.body["overdue"].as_bool()), (200, Some("failed"), Some(false)), "{}", seen.body);
    assert!(seen.body["subject_id"].is_null());
}
