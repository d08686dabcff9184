//! Erasure (docs/subject-requests.md): a user with data in every category
//! erases themself; afterwards nothing in the table or the exports bucket
//! holds their id, email or name, the audit chain still verifies, their
//! audit entries read as an erased pseudonym, orders are kept anonymized,
//! and the certificate's signature verifies with the audit key's public key
//! (checked with the p256 crate, not Keel's code).

use http::{Method, StatusCode};
use serde_json::json;
use shared::audit::{Actor, AuditEntry};

use crate::helpers::{PASSWORD, TestApp};

/// Every item of the table, as JSON text.
async fn table_text(app: &TestApp) -> Vec<String> {
    let items = app.store().scan_all().await.unwrap();
    items.iter().map(|item| shared::audit::digest::canonical_json(&shared::audit::digest::typed_item(item))).collect()
}

/// Every object of a bucket: (key, content as lossy text).
async fn bucket_text(app: &TestApp, bucket: &str) -> Vec<(String, String)> {
    let s3 = &app.app.clients.s3;
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = s3.list_objects_v2().bucket(bucket).set_continuation_token(token).send().await.unwrap();
        for object in page.contents() {
            let key = object.key().unwrap().to_string();
            let body = s3.get_object().bucket(bucket).key(&key).send().await.unwrap().body.collect().await.unwrap().into_bytes();
            out.push((key, String::from_utf8_lossy(&body).into_owned()));
        }
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => return out,
        }
    }
}

#[tokio::test]
async fn erasure_leaves_nothing_personal_keeps_the_chain_and_signs_a_certificate() {
    let app = TestApp::spawn().await;
    let store = app.store();
    let table = store.table().to_string();
    let (admin, admin_token) = app.user(&["admin"]).await;
    let (_, auditor_token) = app.user(&["auditor"]).await;
    let (me, token) = app.user(&["user"]).await;
    let (other, other_token) = app.user(&["user"]).await;
    let name = format!("Zebulon Quixote {}", &uuid::Uuid::new_v4().simple().to_string()[..8]);

    // Profile changed by an admin (an audit entry holding the name).
    let r = app.call(Method::PUT, &format!("/api/v1/admin/users/{}", me.id), Some(&admin_token), Some(json!({"version": 1, "name": name}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A session (refresh token) and sign-in entries with me as actor.
    let login = app.login(&me.email, PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.body);
    // 2FA, a linked identity.
    let secret = shared::identity::two_factor::new_secret();
    let mut mfa = shared::identity::two_factor::MfaRecord::pending(&app.app.platform.envelope, &me.id, &secret, None).await.unwrap();
    mfa.status = shared::identity::two_factor::MfaStatus::Active;
    store.commit(vec![mfa.save(&table, None).unwrap()], &AuditEntry::new(&Actor::system("tests"), "mfa.activate", "user", &me.id)).await.unwrap();
    let identity = auth::identities::Identity::new(&me.id, "acme", "acme-subject-erase", Some(&me.email));
    store.commit(identity.link_writes(&table).unwrap(), &AuditEntry::new(&Actor::system("tests"), "identity.link", "user", &me.id)).await.unwrap();
    // Charts (one moderated by a moderator: an entry `about` me), an order, an activity event.
    let chart = shared::domain::charts::Chart::new(&me.id, "My secret chart", "bar");
    store.batch_put(vec![chart.to_item().unwrap()]).await.unwrap();
    let (_, moderator_token) = app.user(&["moderator"]).await;
    let r = app
        .call(
            Method::POST,
            &format!("/api/v1/admin/charts/{}/moderate", chart.id),
            Some(&moderator_token),
            Some(json!({"action": "approve", "reason": "meets_guidelines", "version": chart.version})),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let order_id = uuid::Uuid::now_v7().to_string();
    let ts = shared::store::timestamp(chrono::Utc::now());
    let seeded = [
        json!({"pk": format!("ORDER#{order_id}"), "sk": "META", "gsi1pk": format!("USER#{}", me.id), "gsi1sk": format!("{ts}#{order_id}"), "gsi2pk": format!("ORDERS#{}", &ts[..7]), "gsi2sk": format!("{ts}#{order_id}"),
               "type": "order", "id": order_id, "user_id": me.id, "plan": "team", "amount_cents": 12900, "currency": "EUR", "country": "DE", "status": "paid", "created_at": ts}),
        json!({"pk": format!("USER#{}", me.id), "sk": format!("EVENT#{ts}#e1"), "gsi1pk": format!("EVENTS#{}", &ts[..10]), "gsi1sk": ts, "type": "event", "id": "e1", "user_id": me.id, "kind": "login", "ts": ts}),
    ];
    store.batch_put(seeded.iter().map(|i| shared::store::to_item(i).unwrap()).collect()).await.unwrap();
    // Their own export, their personal-data package, an Idempotency-Key'd
    // POST (a stored reply), and an admin's users export holding their email.
    let r = app.call(Method::POST, "/api/v1/data/export", Some(&token), Some(json!({"format": "csv", "delivery": "job"}))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let mut keyed = crate::helpers::request(Method::POST, "/api/v1/data/export/gdpr", Some(&token), Some(json!({})));
    keyed.headers_mut().insert("idempotency-key", "erase-me-1".parse().unwrap());
    assert_eq!(app.send(keyed).await.status, StatusCode::ACCEPTED);
    let r = app.call(Method::POST, "/api/v1/data/export", Some(&admin_token), Some(json!({"dataset": "users", "format": "csv", "delivery": "job"}))).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let admin_export = r.body["job_id"].as_str().unwrap().to_string();
    app.run_jobs().await;
    let users_export = shared::domain::jobs::get(store, &admin_export).await.unwrap().unwrap();
    assert_eq!(users_export.status, shared::domain::jobs::JobStatus::Succeeded);

    // Audit entries never held me in the clear, even before the erasure.
    let before = table_text(&app).await;
    let audit_rows: Vec<&String> = before.iter().filter(|t| t.contains("\"type\":{\"S\":\"audit\"}")).collect();
    assert!(audit_rows.len() > 5);
    assert!(
        audit_rows.iter().all(|t| !t.contains(&me.id) && !t.contains(me.email.as_str()) && !t.contains(&name)),
        "an audit entry holds the person in the clear"
    );
    // ...but readers see them (the admin's change with its values).
    let audit = app.audit_for("user", &me.id).await;
    let renamed = audit.iter().find(|e| e.action == "user.update").expect("rename audited");
    assert_eq!(renamed.changes.as_ref().unwrap()["after"]["name"], name.as_str());
    assert_eq!(renamed.actor.id, admin.id);

    // Seal what exists, so the verify below covers entries about me.
    keel_local::schedule::seal_now(&app.app.sealer).await.unwrap();

    // Someone else cannot erase me; I can.
    let r = app.call(Method::DELETE, &format!("/api/v1/data/user/{}", me.id), Some(&other_token), None).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.to_string().contains("data:erase"), "{}", r.body);
    let r = app.call(Method::DELETE, &format!("/api/v1/data/user/{}", me.id), Some(&token), None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let request_id = r.body["request_id"].as_str().unwrap().to_string();
    let receipt = r.body["receipt"].as_str().unwrap().to_string();
    let again = app.call(Method::DELETE, &format!("/api/v1/data/user/{}", me.id), Some(&token), None).await;
    assert_eq!(again.status, 409, "one erasure at a time: {}", again.body);
    let r = app.call(Method::GET, &format!("/api/v1/data/requests/{request_id}/certificate?receipt={receipt}"), None, None).await;
    assert_eq!(r.status, 409, "not done yet: {}", r.body);
    app.run_jobs().await;
    // A redelivered message changes nothing.
    let request = shared::domain::subject_requests::get(store, &request_id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(request.status, shared::domain::subject_requests::RequestStatus::Completed, "{request:?}");
    let job = shared::domain::jobs::get(store, request.job_id.as_deref().unwrap()).await.unwrap().unwrap();
    assert_eq!(jobs::erasure::run(&app.app.worker, &job).await.unwrap(), request.result.clone().unwrap());

    // Nothing personal remains: the table and both buckets.
    let after = table_text(&app).await;
    for needle in [me.id.as_str(), me.email.as_str(), name.as_str()] {
        let hits: Vec<&String> = after.iter().filter(|t| t.contains(needle)).collect();
        assert!(hits.is_empty(), "{needle} remains in the table: {hits:#?}");
    }
    for bucket in ["KEEL_EXPORTS_BUCKET", "KEEL_AUDIT_BUCKET"] {
        for (key, text) in bucket_text(&app, &app.stack.env[bucket]).await {
            for needle in [me.id.as_str(), me.email.as_str(), name.as_str()] {
                assert!(!key.contains(needle) && !text.contains(needle), "{needle} remains in {bucket} object {key}");
            }
        }
    }
    // The admin's users export that held me is gone; other people remain.
    assert!(shared::identity::users::get(store, &other.id).await.unwrap().is_some());
    // The order is kept for accounting, without me.
    let order = store.get_item(&format!("ORDER#{order_id}"), "META").await.unwrap().expect("order kept");
    assert_eq!(order["user_id"].as_s().unwrap(), "erased");
    assert_eq!(order["amount_cents"].as_n().unwrap(), "12900");
    // I cannot sign in.
    assert_eq!(app.login(&me.email, PASSWORD).await.status, 401);

    // The audit chain still verifies, old and new entries alike.
    keel_local::schedule::seal_now(&app.app.sealer).await.unwrap();
    let report = app.get("/api/v1/admin/audit-logs/verify", &auditor_token).await;
    assert_eq!(report.status, 200, "{}", report.body);
    assert_eq!(report.body["ok"], true, "{}", report.body);

    // The certificate: by receipt (I cannot sign in), by an operator, not by others.
    let cert = app.call(Method::GET, &format!("/api/v1/data/requests/{request_id}/certificate?receipt={receipt}"), None, None).await;
    assert_eq!(cert.status, 200, "{}", cert.body);
    assert_eq!(app.call(Method::GET, &format!("/api/v1/data/requests/{request_id}/certificate"), Some(&admin_token), None).await.status, 200);
    assert_eq!(app.call(Method::GET, &format!("/api/v1/data/requests/{request_id}/certificate"), Some(&other_token), None).await.status, 404);
    assert_eq!(app.call(Method::GET, &format!("/api/v1/data/requests/{request_id}/certificate?receipt=wrong"), None, None).await.status, 404);
    let signed = cert.body;
    let certificate = &signed["certificate"];
    assert_eq!(certificate["request_id"], request_id.as_str());
    assert_eq!(certificate["subject_commitment"], shared::domain::subject_requests::commitment(&request_id, &me.id).as_str());
    let count = |location: &str, what: &str| -> u64 {
        certificate["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["location"].as_str().unwrap().contains(location) && a["what"].as_str().unwrap().contains(what))
            .map(|a| a["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(count("table", "profile"), 1, "{certificate}");
    assert_eq!(count("table", "orders"), 1, "{certificate}");
    assert_eq!(count("table", "charts"), 1, "{certificate}");
    assert!(count("table", "sessions") >= 1 && count("table", "refresh tokens") >= 2, "{certificate}");
    assert!(count("s3", "the person's") >= 2, "own export and the zip: {certificate}");
    assert!(count("s3", "other operators") >= 1, "the admin's users export: {certificate}");
    assert!(count("audit log", "entries") >= 5, "{certificate}");
    // The signature, checked with p256 against the key KMS publishes.
    let public = app.app.clients.kms.get_public_key().key_id(&app.stack.env["KEEL_AUDIT_KEY_ID"]).send().await.unwrap();
    use p256::pkcs8::DecodePublicKey;
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(public.public_key().unwrap().as_ref()).unwrap();
    use sha2::Digest;
    let canonical = shared::audit::digest::canonical_json(certificate);
    let sha: String = sha2::Sha256::digest(canonical.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(signed["sha256"], sha.as_str());
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD.decode(signed["signature"].as_str().unwrap()).unwrap();
    let signature = p256::ecdsa::Signature::from_der(&der).unwrap();
    use p256::ecdsa::signature::Verifier;
    key.verify(format!("keel-erasure-certificate/1:{sha}").as_bytes(), &signature).expect("the certificate verifies with the public key");
    let mut forged = certificate.clone();
    forged["actions"][0]["count"] = json!(999);
    let forged_sha: String = sha2::Sha256::digest(shared::audit::digest::canonical_json(&forged).as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert!(key.verify(format!("keel-erasure-certificate/1:{forged_sha}").as_bytes(), &signature).is_err());

    // The audit log records the certificate; my old entries read as erased.
    let recorded = app.audit_for("subject_request", &request_id).await;
    let complete = recorded.iter().find(|e| e.action == "data.erasure_complete").expect("certificate recorded");
    assert_eq!(complete.changes.as_ref().unwrap()["after"]["certificate_sha256"], sha.as_str());
    let pseudonym = certificate["audit_pseudonym"].as_str().unwrap();
    let r = app.get(&format!("/api/v1/admin/audit-logs?target_type=user&target_id={pseudonym}&from=2000-01-01T00:00:00Z"), &admin_token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let entries = r.body["items"].as_array().unwrap();
    let rename = entries.iter().find(|e| e["action"] == "user.update").expect("the rename is still there");
    assert_eq!(rename["target_id"], pseudonym);
    assert!(rename.get("changes").is_none(), "{rename}");
    assert_eq!(rename["changed_fields"], json!(["name"]));
    assert!(rename["erased"].as_array().unwrap().iter().any(|p| p == "target"), "{rename}");
    assert_eq!(rename["actor"]["id"], admin.id.as_str(), "the admin is not erased");
}
