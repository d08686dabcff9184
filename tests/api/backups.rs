//! Backups and restore (docs/backups.md) against the local stack: a full
//! and an incremental backup verify; an item deleted from the live table
//! comes back in a restore, exactly as stored; a person erased after a
//! backup is erased again in the restored table; a tampered file fails
//! verification naming the file.

use aws_sdk_dynamodb::types::AttributeValue;
use http::Method;
use serde_json::{Value, json};
use shared::store::{Item, Store, s};

use crate::helpers::{PASSWORD, TestApp};

fn item(pairs: Vec<(&str, AttributeValue)>) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Ask for a backup, run the jobs, and return its record (succeeded).
async fn backup(app: &TestApp, token: &str, kind: &str) -> Value {
    let r = app.call(Method::POST, "/api/v1/admin/backups", Some(token), Some(json!({ "kind": kind }))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["status"], "queued");
    let id = r.body["id"].as_str().unwrap().to_string();
    app.run_jobs().await;
    let r = app.get(&format!("/api/v1/admin/backups/{id}"), token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "succeeded", "{}", r.body);
    r.body
}

/// Verify a backup, run the jobs, and return its recorded outcome.
async fn verify(app: &TestApp, token: &str, id: &str) -> Value {
    let r = app.call(Method::POST, &format!("/api/v1/admin/backups/{id}/verify"), Some(token), None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    app.run_jobs().await;
    let r = app.get(&format!("/api/v1/admin/backups/{id}"), token).await;
    r.body["last_verify"].clone()
}

/// Restore a backup into `target`, run the jobs, and return the job's result.
async fn restore(app: &TestApp, token: &str, id: &str, target: &str) -> Value {
    let r = app.call(Method::POST, &format!("/api/v1/admin/backups/{id}/restore"), Some(token), Some(json!({ "target_table": target }))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let job_id = r.body["job_id"].as_str().unwrap().to_string();
    app.run_jobs().await;
    let job = shared::domain::jobs::get(app.store(), &job_id).await.unwrap().unwrap();
    assert_eq!(job.status, shared::domain::jobs::JobStatus::Succeeded, "{:?}", job.error);
    job.result.unwrap()
}

/// An item with its sets sorted: DynamoDB keeps no order in a set.
fn normalized(item: Option<Item>) -> Option<Item> {
    let mut item = item?;
    for value in item.values_mut() {
        match value {
            AttributeValue::Ss(v) | AttributeValue::Ns(v) => v.sort(),
            _ => {}
        }
    }
    Some(item)
}

fn restored_store(app: &TestApp, table: &str) -> Store {
    Store::new(aws_sdk_dynamodb::Client::new(&app.sdk), table)
}

#[tokio::test]
async fn full_and_incremental_backups_verify_and_a_restore_brings_back_a_deleted_item() {
    let app = TestApp::spawn().await;
    let store = app.store();
    let live = store.table().to_string();
    let (_, admin) = app.user(&["admin"]).await;
    let (_, support) = app.user(&["support"]).await;

    // Backups are for backups:manage (admins), and an incremental one
    // needs a backup to build on.
    let r = app.call(Method::POST, "/api/v1/admin/backups", Some(&support), Some(json!({ "kind": "full" }))).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["missing_permission"], "backups:manage");
    let r = app.call(Method::POST, "/api/v1/admin/backups", Some(&admin), Some(json!({ "kind": "incremental" }))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error_fields(), vec!["kind"]);

    // Items of every attribute type Keel stores, so the round trip is
    // exact. (Binary attributes round-trip too, shared::domain::backups's
    // unit test; none goes in the live table, whose stream readers read
    // images as JSON and would refuse it.)
    let kept = item(vec![
        ("pk", s("BACKUPTEST#kept")),
        ("sk", s("META")),
        ("amount", AttributeValue::N("12.50".into())),
        ("code", s("0042")),
        ("flags", AttributeValue::Ss(vec!["b".into(), "a".into()])),
        ("sizes", AttributeValue::Ns(vec!["3".into(), "1".into()])),
        ("nested", AttributeValue::M(item(vec![("on", AttributeValue::Bool(true)), ("none", AttributeValue::Null(true))]))),
        ("list", AttributeValue::L(vec![s("x"), AttributeValue::N("-7".into())])),
    ]);
    let changed = item(vec![("pk", s("BACKUPTEST#changed")), ("sk", s("META")), ("v", AttributeValue::N("1".into()))]);
    let dropped = item(vec![("pk", s("BACKUPTEST#dropped")), ("sk", s("META")), ("v", s("soon gone"))]);
    store.batch_put(vec![kept.clone(), changed.clone(), dropped.clone()]).await.unwrap();

    let full = backup(&app, &admin, "full").await;
    let full_id = full["id"].as_str().unwrap();
    assert_eq!(full["kind"], "full");
    assert!(full["item_count"].as_u64().unwrap() >= 5, "{full}");
    assert_eq!(full["changed_items"], full["item_count"], "a full backup writes every item");
    assert_eq!(full["counts_by_type"]["BACKUPTEST"], 3, "{full}");
    assert!(full["counts_by_type"]["USER"].as_u64().unwrap() >= 2, "{full}");
    assert_eq!(full["manifest_sha256"].as_str().unwrap().len(), 64);
    assert!(full["bytes"].as_u64().unwrap() > 0);
    assert!(full.get("previous_id").is_none());

    // Changes after the full backup: one item changed, one deleted, one new.
    let changed_now = item(vec![("pk", s("BACKUPTEST#changed")), ("sk", s("META")), ("v", AttributeValue::N("2".into()))]);
    let added = item(vec![("pk", s("BACKUPTEST#added")), ("sk", s("META")), ("v", s("new"))]);
    store.batch_put(vec![changed_now.clone(), added.clone()]).await.unwrap();
    store.batch_delete(&[("BACKUPTEST#dropped".into(), "META".into())]).await.unwrap();

    let incremental = backup(&app, &admin, "incremental").await;
    let incremental_id = incremental["id"].as_str().unwrap();
    assert_eq!(incremental["kind"], "incremental");
    assert_eq!(incremental["previous_id"], full_id);
    assert_eq!(incremental["base_id"], full_id);
    assert!(incremental["deleted_items"].as_u64().unwrap() >= 1, "{incremental}");
    assert!(incremental["changed_items"].as_u64().unwrap() < incremental["item_count"].as_u64().unwrap(), "only what changed: {incremental}");
    assert_eq!(incremental["counts_by_type"]["BACKUPTEST"], 3, "{incremental}");

    let list = app.get("/api/v1/admin/backups", &admin).await;
    assert_eq!(list.status, 200);
    let ids: Vec<&str> = list.body["items"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![incremental_id, full_id], "newest first");

    // Both verify: restored into a scratch table, compared item by item.
    for (id, record) in [(full_id, &full), (incremental_id, &incremental)] {
        let outcome = verify(&app, &admin, id).await;
        assert_eq!(outcome["ok"], true, "{outcome}");
        assert_eq!(outcome["items_checked"], record["item_count"], "{outcome}");
    }
    // The scratch tables are gone.
    let tables = aws_sdk_dynamodb::Client::new(&app.sdk).list_tables().send().await.unwrap();
    assert!(!tables.table_names().iter().any(|t| t.starts_with(&format!("{live}-verify-"))), "{:?}", tables.table_names());

    // Lost from the live table after the backup; the restore brings it back.
    store.batch_delete(&[("BACKUPTEST#kept".into(), "META".into())]).await.unwrap();
    let r = app.call(Method::POST, &format!("/api/v1/admin/backups/{incremental_id}/restore"), Some(&admin), Some(json!({ "target_table": live }))).await;
    assert_eq!(r.status, 400, "never over the live table: {}", r.body);
    assert_eq!(r.error_fields(), vec!["target_table"]);
    let target = format!("{live}-restore-1");
    let result = restore(&app, &admin, incremental_id, &target).await;
    assert_eq!(result["backups_applied"], json!([full_id, incremental_id]), "{result}");
    let restored = restored_store(&app, &target);
    assert_eq!(normalized(restored.get_item("BACKUPTEST#kept", "META").await.unwrap()), normalized(Some(kept)), "every attribute as stored");
    assert_eq!(restored.get_item("BACKUPTEST#changed", "META").await.unwrap(), Some(changed_now));
    assert_eq!(restored.get_item("BACKUPTEST#added", "META").await.unwrap(), Some(added));
    assert_eq!(restored.get_item("BACKUPTEST#dropped", "META").await.unwrap(), None, "deleted before the incremental backup");
    assert_eq!(restored.scan_all().await.unwrap().len() as u64, incremental["item_count"].as_u64().unwrap());
    // The restored table has the live table's indexes: users list from gsi3.
    let users = restored
        .query_all(&shared::store::QuerySpec { index: Some("gsi3"), key_condition: "gsi3pk = :pk", values: vec![(":pk", s("USERS"))], ..Default::default() })
        .await
        .unwrap();
    assert!(users.len() >= 2);

    // A restore from the full backup alone is its own point in time.
    let result = restore(&app, &admin, full_id, &format!("{live}-restore-2")).await;
    assert_eq!(result["backups_applied"], json!([full_id]));
    let old = restored_store(&app, &format!("{live}-restore-2"));
    assert_eq!(old.get_item("BACKUPTEST#changed", "META").await.unwrap(), Some(changed));
    assert_eq!(old.get_item("BACKUPTEST#dropped", "META").await.unwrap(), Some(dropped));

    // Every request was audited.
    let audit = app.audit_for("backup", full_id).await;
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    for action in ["backup.create", "backup.verify", "backup.restore"] {
        assert!(actions.contains(&action), "{actions:?}");
    }
}

#[tokio::test]
async fn a_person_erased_after_a_backup_is_erased_again_in_the_restored_table() {
    let app = TestApp::spawn().await;
    let store = app.store();
    let live = store.table().to_string();
    let (_, admin) = app.user(&["admin"]).await;
    let (person, token) = app.user(&["user"]).await;
    let (bystander, _) = app.user(&["user"]).await;
    // A session (refresh token), a chart and an order of the person.
    assert_eq!(app.login(&person.email, PASSWORD).await.status, 200);
    let chart = shared::domain::charts::Chart::new(&person.id, "Chart of the erased", "bar");
    let order_id = uuid::Uuid::now_v7().to_string();
    let ts = shared::store::timestamp(chrono::Utc::now());
    let order: Item = serde_dynamo::to_item(json!({
        "pk": format!("ORDER#{order_id}"), "sk": "META", "gsi1pk": format!("USER#{}", person.id), "gsi1sk": format!("{ts}#{order_id}"),
        "type": "order", "id": order_id, "user_id": person.id, "email": person.email.as_str(), "amount_cents": 4200, "currency": "EUR", "created_at": ts,
    }))
    .unwrap();
    store.batch_put(vec![chart.to_item().unwrap(), order]).await.unwrap();

    let full = backup(&app, &admin, "full").await;
    let full_id = full["id"].as_str().unwrap();

    // The person erases themself after the backup.
    let r = app.call(Method::DELETE, &format!("/api/v1/data/user/{}", person.id), Some(&token), None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    app.run_jobs().await;
    assert!(store.get_item(&format!("USER#{}", person.id), "PROFILE").await.unwrap().is_none(), "erased from the live table");

    let target = format!("{live}-restore-erased");
    let result = restore(&app, &admin, full_id, &target).await;
    assert_eq!(result["erasures_reapplied"], 1, "{result}");
    let restored = restored_store(&app, &target).scan_all().await.unwrap();
    let text: Vec<String> = restored.iter().map(|i| shared::audit::digest::canonical_json(&shared::audit::digest::typed_item(i))).collect();
    let about: Vec<&String> = text.iter().filter(|t| t.contains(&person.id) || t.contains(person.email.as_str())).collect();
    assert!(about.is_empty(), "the restored table holds the erased person: {about:#?}");
    // The order is kept for accounting, anonymized; the tombstone came along,
    // the bystander is restored.
    let order = restored.iter().find(|i| shared::store::attr_s(i, "pk") == Some(&format!("ORDER#{order_id}"))).expect("the order is kept");
    assert_eq!(shared::store::attr_s(order, "user_id"), Some("erased"));
    let tombstone = shared::audit::pseudonyms::tombstone_pk(&person.id);
    assert!(restored.iter().any(|i| shared::store::attr_s(i, "pk") == Some(tombstone.as_str())));
    assert!(restored.iter().any(|i| shared::store::attr_s(i, "pk") == Some(format!("USER#{}", bystander.id).as_str())));
}

#[tokio::test]
async fn a_tampered_backup_file_fails_verification_naming_the_file() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let full = backup(&app, &admin, "full").await;
    let id = full["id"].as_str().unwrap();
    let manifest_key = full["manifest_key"].as_str().unwrap();
    let bucket = &app.stack.env["KEEL_BACKUPS_BUCKET"];
    let s3 = &app.app.clients.s3;
    // The bucket as the template makes it: Object Lock (which needs
    // versioning) in governance mode for 35 days, SSE-KMS.
    let lock = s3.get_object_lock_configuration().bucket(bucket).send().await.unwrap().object_lock_configuration.unwrap();
    let retention = lock.rule().unwrap().default_retention().unwrap();
    assert_eq!(retention.mode(), Some(&aws_sdk_s3::types::ObjectLockRetentionMode::Governance));
    assert_eq!(retention.days(), Some(35));
    let encryption = s3.get_bucket_encryption().bucket(bucket).send().await.unwrap();
    let rule = &encryption.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(rule.apply_server_side_encryption_by_default().unwrap().sse_algorithm(), &aws_sdk_s3::types::ServerSideEncryption::AwsKms);

    // The manifest names the files; rewrite the data file holding the most
    // items with one item changed (valid gzip NDJSON, different content).
    let manifest: Value =
        serde_json::from_slice(&s3.get_object().bucket(bucket).key(manifest_key).send().await.unwrap().body.collect().await.unwrap().into_bytes()).unwrap();
    let file = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"].as_str().unwrap().starts_with("data-"))
        .max_by_key(|f| f["items"].as_u64().unwrap())
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let key = format!("backups/{id}/{file}");
    let original = s3.get_object().bucket(bucket).key(&key).send().await.unwrap().body.collect().await.unwrap().into_bytes();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&original[..]), &mut text).unwrap();
    let mut lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    lines[0]["put"]["tampered"] = json!({ "S": "yes" });
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for line in &lines {
        std::io::Write::write_all(&mut encoder, format!("{line}\n").as_bytes()).unwrap();
    }
    let tampered = encoder.finish().unwrap();
    // Object Lock keeps the original version; the tampered one is the current.
    s3.put_object().bucket(bucket).key(&key).body(tampered.into()).send().await.unwrap();

    let outcome = verify(&app, &admin, id).await;
    assert_eq!(outcome["ok"], false, "{outcome}");
    let problems: Vec<&str> = outcome["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains(&key), "{problems:?}");
    // A restore refuses it too, naming the file.
    let r = app
        .call(
            Method::POST,
            &format!("/api/v1/admin/backups/{id}/restore"),
            Some(&admin),
            Some(json!({ "target_table": format!("{}-restore-x", app.store().table()) })),
        )
        .await;
    assert_eq!(r.status, 202);
    app.run_jobs().await;
    let job = shared::domain::jobs::get(app.store(), r.body["job_id"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(job.status, shared::domain::jobs::JobStatus::Failed);
    assert!(job.error.unwrap_or_default().contains(&key));
}
