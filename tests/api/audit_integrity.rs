//! Verifiable audit log: the sealer signs digests that chain; verify finds
//! an untouched log clean and names the first changed, deleted or inserted
//! entry, replaced digest object or index item; sealing is idempotent and
//! never forks the chain; entries are readable by id; exports verify
//! offline and show tampering.

use http::Method;
use serde_json::{Value, json};
use shared::audit::chain::{self, CHAIN_PK, DigestIndex};
use shared::audit::digest::{SignedDigest, verify_export};
use shared::audit::{Actor, AuditEntry};
use shared::store::{Item, s};

use crate::helpers::{PASSWORD, TestApp};

async fn seal(app: &TestApp) -> scheduler::SealOutcome {
    keel_local::schedule::seal_now(&app.app.sealer).await.expect("seal")
}

/// Verify the last day's entries (an explicit range: the default range
/// starts after the last verification, so a re-check of the same entries
/// names them by range).
async fn verify(app: &TestApp, token: &str) -> Value {
    let from = shared::store::timestamp(chrono::Utc::now() - chrono::Duration::days(1));
    verify_query(app, token, &format!("from={from}")).await
}

async fn verify_query(app: &TestApp, token: &str, query: &str) -> Value {
    let r = app.get(&format!("/api/v1/admin/audit-logs/verify?{query}"), token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn first(report: &Value) -> (String, Option<String>, Option<String>) {
    let f = &report["first_problem"];
    (f["kind"].as_str().unwrap_or("none").to_string(), f["entry_id"].as_str().map(String::from), f["digest_id"].as_str().map(String::from))
}

async fn create_users(app: &TestApp, token: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
        let r = app.call(Method::POST, "/api/v1/admin/users", Some(token), Some(json!({"email": email, "name": "Sealed", "password": PASSWORD}))).await;
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_string());
    }
    ids
}

async fn raw_entry(app: &TestApp, entry: &AuditEntry) -> Item {
    app.store().get_item(&format!("AUDIT#{}", entry.day()), &entry.sort_key()).await.unwrap().expect("entry stored")
}

async fn put_raw(app: &TestApp, item: Item) {
    let store = app.store();
    store.put_item_unchecked(item).await.unwrap();
}

async fn indexes(app: &TestApp) -> Vec<DigestIndex> {
    let (_, found) = chain::digest_indexes(app.store(), "0", "9").await.unwrap();
    found
}

#[tokio::test]
async fn untouched_log_verifies_and_each_tampering_is_named() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let (_, auditor) = app.user(&["auditor"]).await;
    let users = create_users(&app, &admin, 3).await;
    assert!(matches!(seal(&app).await, scheduler::SealOutcome::Sealed { sequence: 1, .. }));
    create_users(&app, &admin, 2).await;
    let second = seal(&app).await;
    let scheduler::SealOutcome::Sealed { sequence: 2, count, .. } = second else { panic!("{second:?}") };
    assert!(count >= 3, "the second period holds the new entries and the first seal's own entry: {count}");

    let clean = verify(&app, &auditor).await;
    assert_eq!(clean["ok"], true, "{clean}");
    assert!(clean["entries_checked"].as_u64().unwrap() >= 8, "{clean}");
    assert_eq!(clean["digests_checked"], 2);

    // 1. An entry's field edited in the table.
    let target = app.audit_for("user", &users[1]).await.remove(0);
    let original = raw_entry(&app, &target).await;
    let mut edited = original.clone();
    edited.insert("action".into(), s("user.read"));
    put_raw(&app, edited).await;
    let r = verify(&app, &auditor).await;
    assert_eq!(r["ok"], false);
    assert_eq!(first(&r).0, "entry_changed", "{r}");
    assert_eq!(first(&r).1.as_deref(), Some(target.id.as_str()));
    put_raw(&app, original.clone()).await;
    assert_eq!(verify(&app, &auditor).await["ok"], true, "restoring the stored form restores the proof");

    // 2. An entry deleted.
    let store = app.store();
    store.delete(&format!("AUDIT#{}", target.day()), &target.sort_key()).await.unwrap();
    let r = verify(&app, &auditor).await;
    assert_eq!((first(&r).0.as_str(), first(&r).1.as_deref()), ("entry_deleted", Some(target.id.as_str())), "{r}");
    put_raw(&app, original).await;

    // 3. A forged entry inserted inside a sealed period.
    let sealed_at = chrono::DateTime::parse_from_rfc3339(&target.ts).unwrap().with_timezone(&chrono::Utc) + chrono::Duration::microseconds(1);
    let forged = AuditEntry::at(sealed_at, &Actor::system("tests"), "user.update", "user", &users[0]);
    put_raw(&app, store.seal_audit(&forged).await.unwrap()).await;
    let r = verify(&app, &auditor).await;
    assert_eq!((first(&r).0.as_str(), first(&r).1.as_deref()), ("entry_inserted", Some(forged.id.as_str())), "{r}");
    store.delete(&format!("AUDIT#{}", forged.day()), &forged.sort_key()).await.unwrap();
    assert_eq!(verify(&app, &auditor).await["ok"], true);

    // 4. A digest object replaced (a new version over the locked one).
    let digests = indexes(&app).await;
    let d1 = &digests[0];
    let bucket = &app.stack.env["KEEL_AUDIT_BUCKET"];
    let object = chain::read_digest(&app.app.clients.s3, bucket, &d1.object_key).await.unwrap();
    let mut doctored: SignedDigest = object.clone();
    doctored.digest.entries.retain(|e| e.id != target.id);
    doctored.digest.count -= 1;
    let put = |body: &SignedDigest| app.app.clients.s3.put_object().bucket(bucket).key(&d1.object_key).body(serde_json::to_vec(body).unwrap().into()).send();
    put(&doctored).await.unwrap();
    let r = verify(&app, &auditor).await;
    assert_eq!((first(&r).0.as_str(), first(&r).2.as_deref()), ("bad_signature", Some(d1.digest_id.as_str())), "{r}");
    put(&object).await.unwrap();
    assert_eq!(verify(&app, &auditor).await["ok"], true);

    // 5. A digest's index item replaced (recording another hash), then removed.
    let d2 = &digests[1];
    let index_key = |d: &DigestIndex| (CHAIN_PK.to_string(), format!("{}#{}", d.period_end, d.digest_id));
    let mut forged_index = d2.clone();
    forged_index.hash = "f".repeat(64);
    put_raw(&app, forged_index.to_item().unwrap()).await;
    let r = verify(&app, &auditor).await;
    assert_eq!((first(&r).0.as_str(), first(&r).2.as_deref()), ("chain_broken", Some(d2.digest_id.as_str())), "{r}");
    let (pk, sk) = index_key(d2);
    store.delete(&pk, &sk).await.unwrap();
    let r = verify(&app, &auditor).await;
    assert_eq!(first(&r).0, "chain_broken", "a missing digest breaks the chain: {r}");
}

#[tokio::test]
async fn sealing_is_idempotent_and_never_forks() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let until = chrono::Utc::now();
    let sealer = &app.app.sealer;
    // Two concurrent runs for the same period: one digest wins.
    let (a, b) = tokio::join!(sealer.seal_until(until), sealer.seal_until(until));
    let outcomes = [a.unwrap(), b.unwrap()];
    let sealed = outcomes.iter().filter(|o| matches!(o, scheduler::SealOutcome::Sealed { .. })).count();
    assert_eq!(sealed, 1, "{outcomes:?}");
    // Re-running the same period is a no-op.
    assert!(matches!(sealer.seal_until(until).await.unwrap(), scheduler::SealOutcome::UpToDate { .. }));
    let head = chain::head(app.store()).await.unwrap().unwrap();
    assert_eq!(head.version, 1);
    assert_eq!(indexes(&app).await.len(), 1);
    // The scheduled run leaves the settle delay alone.
    assert!(matches!(sealer.seal_due().await.unwrap(), scheduler::SealOutcome::UpToDate { .. }));

    // The digest object is locked, at the documented key.
    let d = &indexes(&app).await[0];
    assert!(
        d.object_key.starts_with(&format!("digests/{}/", &d.period_end[..4])) && d.object_key.ends_with(&format!("{}-{}.json", d.period_end, d.digest_id)),
        "{}",
        d.object_key
    );
    let head_object = app.app.clients.s3.head_object().bucket(&app.stack.env["KEEL_AUDIT_BUCKET"]).key(&d.object_key).send().await.unwrap();
    assert_eq!(head_object.object_lock_mode().map(|m| m.as_str()), Some("COMPLIANCE"));
    // The seal is audited, and the chain still verifies after more sealing.
    assert_eq!(app.audit_for("audit_digest", &d.digest_id).await[0].action, "audit.seal");
    seal(&app).await;
    assert_eq!(verify(&app, &admin).await["ok"], true);
}

#[tokio::test]
async fn entries_read_by_id_and_verify_validates_its_range() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let (_, auditor) = app.user(&["auditor"]).await;
    let created = create_users(&app, &admin, 1).await;
    let entry = app.audit_for("user", &created[0]).await.remove(0);
    let r = app.get(&format!("/api/v1/admin/audit-logs/{}", entry.id), &admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["id"], entry.id.as_str());
    assert_eq!(r.body["action"], "user.create");
    assert_eq!(r.body["actor"]["source_ip"], "203.0.113.9");
    let masked = app.get(&format!("/api/v1/admin/audit-logs/{}", entry.id), &auditor).await;
    assert_eq!(masked.body["actor"]["source_ip"], "203.0.113.x");
    assert_eq!(app.get(&format!("/api/v1/admin/audit-logs/{}", uuid::Uuid::now_v7()), &admin).await.status, 404);
    let bad = app.get(&format!("/api/v1/admin/audit-logs/{}", uuid::Uuid::new_v4()), &admin).await;
    assert_eq!((bad.status.as_u16(), bad.error_fields()), (400, vec!["entry_id".to_string()]));

    let bad = app.get("/api/v1/admin/audit-logs/verify?from=yesterday", &admin).await;
    assert_eq!((bad.status.as_u16(), bad.error_fields()), (400, vec!["from".to_string()]));
    let bad = app.get("/api/v1/admin/audit-logs/verify?from=2020-01-01T00:00:00Z", &admin).await;
    assert_eq!(bad.error_fields(), vec!["from".to_string()], "{}", bad.body);
    let bad = app.get("/api/v1/admin/audit-logs/verify?since=1", &admin).await;
    assert_eq!(bad.status, 400);
    // Nothing sealed yet: clean, everything unsealed.
    let r = verify_query(&app, &admin, "").await;
    assert_eq!((r["ok"].as_bool(), r["digests_checked"].as_u64()), (Some(true), Some(0)), "{r}");
    assert!(r["unsealed_entries"].as_u64().unwrap() >= 3);
}

#[tokio::test]
async fn exports_verify_offline_and_show_tampering() {
    let app = TestApp::spawn().await;
    let (admin_user, admin) = app.user(&["admin"]).await;
    let (_, auditor) = app.user(&["auditor"]).await;
    create_users(&app, &admin, 3).await;
    seal(&app).await;
    create_users(&app, &admin, 1).await;
    seal(&app).await;

    let bad = app.call(Method::POST, "/api/v1/admin/audit-logs/export", Some(&auditor), Some(json!({"from": "x", "format": "csv"}))).await;
    assert_eq!((bad.status.as_u16(), bad.error_fields()), (400, vec!["format".to_string()]));
    let r = app.call(Method::POST, "/api/v1/admin/audit-logs/export", Some(&auditor), Some(json!({}))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let job_id = r.body["job_id"].as_str().unwrap().to_string();
    assert_eq!(app.audit_for("job", &job_id).await[0].action, "audit.export", "exports are audited");
    app.run_jobs().await;
    let job = shared::domain::jobs::get(app.store(), &job_id).await.unwrap().unwrap();
    assert_eq!(job.status, shared::domain::jobs::JobStatus::Succeeded, "{job:?}");
    let result = job.result.unwrap();
    let (bucket, key) = (result["bucket"].as_str().unwrap(), result["key"].as_str().unwrap());
    let object = app.app.clients.s3.get_object().bucket(bucket).key(key).send().await.unwrap();
    assert_eq!(object.server_side_encryption().map(|e| e.as_str()), Some("aws:kms"));
    let bytes = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(shared::platform::crypto::sha256_hex(&bytes), result["sha256"].as_str().unwrap());
    let text = String::from_utf8(bytes.to_vec()).unwrap();

    let report = verify_export(&text, None).unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.digests_checked, 2);
    assert!(report.entries_checked >= 7 && report.unsealed_entries >= 1, "{report:?}");

    // Change one entry's action in the file: named offline.
    let line = text.lines().find(|l| l.contains("\"user.create\"")).unwrap();
    let tampered = text.replacen(line, &line.replacen("\"user.create\"", "\"user.read\"", 1), 1);
    let report = verify_export(&tampered, None).unwrap();
    let problem = report.first_problem.unwrap();
    assert_eq!(problem.kind, shared::audit::digest::FindingKind::EntryChanged);
    let id: Value = serde_json::from_str(line).unwrap();
    assert_eq!(problem.entry_id.as_deref(), id["item"]["id"]["S"].as_str());
    // Dropping an entry from a complete export is a deletion.
    let dropped: String = text.lines().filter(|l| *l != line).map(|l| format!("{l}\n")).collect();
    assert_eq!(verify_export(&dropped, None).unwrap().first_problem.unwrap().kind, shared::audit::digest::FindingKind::EntryDeleted);

    // A filtered export verifies what it holds.
    let r = app.call(Method::POST, "/api/v1/admin/audit-logs/export", Some(&admin), Some(json!({"actor_id": admin_user.id, "action": "user."}))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    app.run_jobs().await;
    let job = shared::domain::jobs::get(app.store(), r.body["job_id"].as_str().unwrap()).await.unwrap().unwrap();
    let result = job.result.unwrap();
    assert_eq!((result["entries"].as_u64(), result["complete"].as_bool()), (Some(4), Some(false)), "{result}");
    let object = app.app.clients.s3.get_object().bucket(result["bucket"].as_str().unwrap()).key(result["key"].as_str().unwrap()).send().await.unwrap();
    let text = String::from_utf8(object.body.collect().await.unwrap().into_bytes().to_vec()).unwrap();
    let report = verify_export(&text, None).unwrap();
    assert!(report.ok && report.entries_checked == 4, "{report:?}");
}

#[tokio::test]
async fn verification_is_remembered_and_continues_from_there() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let (_, auditor) = app.user(&["auditor"]).await;
    create_users(&app, &admin, 2).await;
    seal(&app).await;
    create_users(&app, &admin, 1).await;
    seal(&app).await;
    assert!(chain::last_verified(app.store()).await.unwrap().is_none());

    // The first default verification: every entry since the chain's start,
    // the chain from genesis; then remembered.
    let initial = verify_query(&app, &auditor, "").await;
    assert_eq!(
        (initial["ok"].as_bool(), initial["digests_checked"].as_u64(), initial["chain_from_sequence"].as_u64(), initial["chain_to_sequence"].as_u64()),
        (Some(true), Some(2), Some(1), Some(2)),
        "{initial}"
    );
    assert!(initial["entries_checked"].as_u64().unwrap() >= 6, "{initial}");
    let head = chain::head(app.store()).await.unwrap().unwrap();
    assert_eq!(initial["range_from"].as_str(), Some(head.genesis_start.as_str()));
    let remembered = chain::last_verified(app.store()).await.unwrap().expect("AUDITVERIFY#latest");
    assert_eq!((remembered.sequence, remembered.digest_id.as_str(), remembered.hash.as_str()), (2, head.digest_id.as_str(), head.hash.as_str()));
    assert_eq!(remembered.entries_verified_to, head.period_end);
    assert_eq!(initial["last_verified"]["sequence"], 2);

    // Again: only what is new since (nothing sealed), the chain from digest 2.
    let again = verify_query(&app, &auditor, "").await;
    assert_eq!((again["ok"].as_bool(), again["entries_checked"].as_u64(), again["chain_from_sequence"].as_u64()), (Some(true), Some(0), Some(2)), "{again}");
    assert_eq!(again["range_from"].as_str(), Some(head.period_end.as_str()));

    // New entries and a third digest: checked, and the memory moves on.
    create_users(&app, &admin, 1).await;
    seal(&app).await;
    let third = verify_query(&app, &auditor, "").await;
    assert_eq!(
        (third["ok"].as_bool(), third["digests_checked"].as_u64(), third["chain_from_sequence"].as_u64(), third["chain_to_sequence"].as_u64()),
        (Some(true), Some(2), Some(2), Some(3)),
        "{third}"
    );
    assert!(third["entries_checked"].as_u64().unwrap() >= 2, "{third}");
    assert_eq!(chain::last_verified(app.store()).await.unwrap().unwrap().sequence, 3);

    // A digest object after the last verified one replaced: named from the
    // digests alone; a digest before it is found with full_chain.
    let digests = indexes(&app).await;
    let bucket = &app.stack.env["KEEL_AUDIT_BUCKET"];
    create_users(&app, &admin, 1).await;
    seal(&app).await;
    let d4 = &indexes(&app).await[3];
    let object = chain::read_digest(&app.app.clients.s3, bucket, &d4.object_key).await.unwrap();
    let mut doctored = object.clone();
    doctored.digest.created_at = "2000-01-01T00:00:00.000000Z".into();
    let put = |key: &str, body: &SignedDigest| app.app.clients.s3.put_object().bucket(bucket).key(key).body(serde_json::to_vec(body).unwrap().into()).send();
    put(&d4.object_key, &doctored).await.unwrap();
    let r = verify_query(&app, &auditor, "").await;
    assert_eq!((first(&r).0.as_str(), first(&r).2.as_deref()), ("bad_signature", Some(d4.digest_id.as_str())), "{r}");
    assert_eq!(chain::last_verified(app.store()).await.unwrap().unwrap().sequence, 3, "a failed check is not remembered");
    put(&d4.object_key, &object).await.unwrap();
    let d1 = &digests[0];
    let object = chain::read_digest(&app.app.clients.s3, bucket, &d1.object_key).await.unwrap();
    let mut doctored = object.clone();
    doctored.digest.created_at = "2000-01-01T00:00:00.000000Z".into();
    put(&d1.object_key, &doctored).await.unwrap();
    let r = verify_query(&app, &auditor, "").await;
    assert_eq!(r["ok"], true, "digest 1 was verified before; the default check starts after it: {r}");
    let r = verify_query(&app, &auditor, "full_chain=true").await;
    assert_eq!((first(&r).0.as_str(), first(&r).2.as_deref()), ("bad_signature", Some(d1.digest_id.as_str())), "{r}");
    put(&d1.object_key, &object).await.unwrap();
    assert_eq!(verify_query(&app, &auditor, "full_chain=true").await["ok"], true);
}
