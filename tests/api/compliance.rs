//! The compliance function: the GDPR status, the access review and the
//! security recommendations, from the state the other functions left.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;

fn find<'a>(list: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|v| v[key] == value)
}

#[tokio::test]
async fn a_gdpr_export_request_shows_with_its_deadline_30_days_out() {
    let app = TestApp::spawn().await;
    let (_, officer) = app.user(&["super_admin"]).await;
    let (_, person) = app.user(&["user"]).await;
    let r = app.call(Method::POST, "/api/v1/data/export/gdpr", Some(&person), Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let request_id = r.body["request_id"].as_str().unwrap().to_string();
    let r = app.call(Method::POST, "/api/v1/data/export/gdpr", Some(&person), Some(json!({"regime": "ccpa"}))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);

    let r = app.get("/api/v1/compliance/gdpr", &officer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let open = find(&r.body["open_requests"], "id", &request_id).unwrap_or_else(|| panic!("the request is open: {}", r.body));
    assert_eq!(open["regime"], "gdpr");
    assert_eq!(open["overdue"], false);
    assert_eq!(open["days_left"], 29, "30 days from now, less the moments since: {open}");
    let received = chrono::DateTime::parse_from_rfc3339(open["received_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(open["due_at"].as_str().unwrap()).unwrap();
    assert_eq!(due - received, chrono::Duration::days(30));
    let ccpa = r.body["open_requests"].as_array().unwrap().iter().find(|o| o["regime"] == "ccpa").unwrap();
    assert_eq!(ccpa["days_left"], 44);
    assert_eq!(r.body["deadline_days"], json!({"ccpa": 45, "gdpr": 30}));
    assert_eq!(r.body["overdue"], 0);
    // The inventory says where personal data lives and for how long.
    let inventory = r.body["data_inventory"].as_array().unwrap();
    let audit = inventory.iter().find(|e| e["record"] == "audit entries").unwrap();
    assert_eq!(audit["retention"], "2555 days (settings: retention)");

    // Once done, it counts as closed in the period, on time.
    app.run_jobs().await;
    let r = app.get("/api/v1/compliance/gdpr", &officer).await;
    assert!(find(&r.body["open_requests"], "id", &request_id).is_none(), "{}", r.body);
    assert_eq!(r.body["closed"]["completed"], 2, "{}", r.body);
    assert_eq!(r.body["closed"]["late"], 0);
    assert!(r.body["closed"]["median_days_to_close"].as_f64().unwrap() < 0.1);

    // A bad period names its field; a plain user may not look.
    let r = app.get("/api/v1/compliance/gdpr?from=yesterday", &officer).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_fields(), vec!["from"]);
    assert_eq!(app.get("/api/v1/compliance/gdpr", &person).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_access_review_lists_privileged_principals_with_their_last_uses_and_2fa() {
    let app = TestApp::spawn().await;
    let (officer_user, officer) = app.user(&["super_admin"]).await;
    let (admin, _) = app.user(&["admin"]).await;
    let (plain, _) = app.user(&["user"]).await;
    // The officer uses roles:write once.
    let r = app
        .call(Method::PUT, &format!("/api/v1/admin/users/{}/roles", plain.id), Some(&officer), Some(json!({"version": 1, "roles": ["user", "moderator"]})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let r = app.get("/api/v1/compliance/access-review", &officer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let principals = &r.body["principals"];
    let officer_review = find(principals, "user_id", &officer_user.id).unwrap_or_else(|| panic!("{}", r.body));
    let roles_write = find(&officer_review["permissions"], "permission", "roles:write").unwrap();
    assert_eq!(roles_write["last_action"], "user.assign_roles");
    assert!(roles_write["last_used_at"].is_string());
    assert_eq!(roles_write["unused"], false);
    let users_read = find(&officer_review["permissions"], "permission", "users:read").unwrap();
    assert_eq!(users_read["use_recorded"], false, "reads are not audited");
    assert_eq!(officer_review["two_factor"], false);
    assert!(officer_review["flags"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().contains("two-factor")));
    // The admin is listed; the one now a moderator too; nobody holding only `user`.
    assert!(find(principals, "user_id", &admin.id).is_some());
    assert!(find(principals, "user_id", &plain.id).is_some(), "a moderator now");
    let (other, _) = app.user(&["user"]).await;
    let r = app.get("/api/v1/compliance/access-review", &officer).await;
    assert!(find(&r.body["principals"], "user_id", &other.id).is_none());
    assert_eq!(r.body["without_two_factor"], r.body["principals"].as_array().unwrap().len());

    // The recommendations name the accounts without 2FA and say how to fix it.
    let r = app.get("/api/v1/compliance/security-recommendations", &officer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let list = &r.body["recommendations"];
    let no_2fa = find(list, "id", "privileged_without_2fa").unwrap();
    assert_eq!(no_2fa["status"], "action_needed");
    assert_eq!(no_2fa["severity"], "high");
    assert!(no_2fa["evidence"].as_array().unwrap().iter().any(|e| e.as_str().unwrap().starts_with(&admin.id)));
    assert!(no_2fa["fix"].as_str().unwrap().contains("/api/v1/auth/2fa/enable"));
    assert_eq!(find(list, "id", "oauth_pkce").unwrap()["status"], "ok");
    assert_eq!(find(list, "id", "failing_integrations").unwrap()["status"], "ok");
    assert!(find(list, "id", "data_key_rotation").is_some());
    assert!(find(list, "id", "admin_roles_require_2fa").is_some());
    // Action needed comes first.
    assert_eq!(list[0]["status"], "action_needed");
}

/// A GET's status, headers and body bytes (not JSON).
async fn raw(app: &TestApp, path: &str, token: &str) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let response = app.router().oneshot(crate::helpers::request(Method::GET, path, Some(token), None)).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

/// Text of a PDF as poppler reads it.
fn pdftotext(bytes: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("keel-compliance-{}.pdf", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("pdftotext").arg("-layout").arg(&path).arg("-").output().expect("pdftotext (poppler-utils; `make test` installs it)");
    assert!(out.status.success(), "pdftotext failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

const CONTROLS: &[&str] = &[
    "lawful_basis",
    "subject_request_deadlines",
    "erasure_certificates",
    "retention_enforced",
    "encryption_at_rest",
    "audit_chain_verified",
    "privileged_2fa",
    "access_review",
    "export_logs",
    "security_events",
    "backups_restorable",
];

#[tokio::test]
async fn the_report_measures_every_control_and_its_pdf_is_recorded_by_its_sha256() {
    let app = TestApp::spawn().await;
    let (_, officer) = app.user(&["super_admin"]).await;
    let (_, person) = app.user(&["user"]).await;
    let r = app.call(Method::POST, "/api/v1/data/export/gdpr", Some(&person), Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    // The audit chain sealed, and the retention sweep run: their controls pass.
    keel_local::schedule::seal_now(&app.app.sealer).await.unwrap();
    jobs::retention::sweep(&app.app.worker, chrono::Utc::now()).await.unwrap();

    let r = app.get("/api/v1/compliance/report", &officer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let controls = r.body["controls"].as_array().unwrap();
    for id in CONTROLS {
        let control = find(&r.body["controls"], "id", id).unwrap_or_else(|| panic!("{id} in the report: {}", r.body));
        assert!(["pass", "warn", "fail"].contains(&control["status"].as_str().unwrap()), "{control}");
        assert!(control["evidence"].is_object() && !control["evidence"].as_object().unwrap().is_empty(), "{control}");
        assert!(!control["remediation"].as_str().unwrap().is_empty());
    }
    assert_eq!(controls.len(), CONTROLS.len());
    let get = |id: &str| find(&r.body["controls"], "id", id).unwrap().clone();
    assert_eq!(get("subject_request_deadlines")["status"], "pass");
    assert_eq!(get("subject_request_deadlines")["evidence"]["open"], 1);
    assert_eq!(get("retention_enforced")["status"], "pass", "{}", get("retention_enforced"));
    assert_eq!(get("privileged_2fa")["status"], "fail", "the officer has no 2FA");
    assert_eq!(get("encryption_at_rest")["evidence"]["stores"].as_array().unwrap().len(), 8);
    assert!(get("audit_chain_verified")["evidence"]["head"]["hash"].is_string(), "{}", get("audit_chain_verified"));
    assert_eq!(get("backups_restorable")["status"], "fail", "no backup yet");
    let summary = &r.body["summary"];
    assert_eq!(summary["pass"].as_u64().unwrap() + summary["warn"].as_u64().unwrap() + summary["fail"].as_u64().unwrap(), CONTROLS.len() as u64);
    let sha = r.headers["x-keel-report-sha256"].to_str().unwrap().to_string();
    assert_eq!(sha.len(), 64);

    // CCPA alone: its requests only.
    let r = app.get("/api/v1/compliance/report?framework=ccpa", &officer).await;
    assert_eq!(find(&r.body["controls"], "id", "subject_request_deadlines").unwrap()["evidence"]["open"], 0);

    // The PDF: every control's title and status, and its SHA-256 in the audit log.
    let response = raw(&app, "/api/v1/compliance/report?format=pdf", &officer).await;
    assert_eq!(response.0, StatusCode::OK);
    assert_eq!(response.1.get("content-type").unwrap(), "application/pdf");
    let pdf_sha = response.1["x-keel-report-sha256"].to_str().unwrap().to_string();
    assert_eq!(pdf_sha, shared::platform::crypto::sha256_hex(&response.2));
    // Titles and descriptions wrap: compare with whitespace collapsed.
    let text = pdftotext(&response.2).split_whitespace().collect::<Vec<_>>().join(" ");
    for title in [
        "GDPR (General Data Protection Regulation): Subject requests answered within the legal deadline [PASS]",
        "CCPA (California Consumer Privacy Act): Every privileged account uses two-factor authentication [FAIL]",
        "Backups are taken daily and proven to restore [FAIL]",
        "Remediation: Redeploy template.yaml",
    ] {
        assert!(text.contains(title), "{title} in the PDF:\n{text}");
    }
    let audit = app.audit_for("compliance_report", &pdf_sha).await;
    assert_eq!(audit.len(), 1, "the PDF's SHA-256 is recorded");
    assert_eq!(audit[0].action, "compliance.report");
    assert_eq!(app.audit_for("compliance_report", &sha).await.len(), 1);

    // Bad input names its field.
    let r = app.get("/api/v1/compliance/report?framework=hipaa", &officer).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = app.get("/api/v1/compliance/report?format=docx", &officer).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

#[tokio::test]
async fn the_monthly_access_review_is_recorded_once_with_its_audit_entry() {
    let app = TestApp::spawn().await;
    let (officer, token) = app.user(&["super_admin"]).await;
    let state = compliance::ComplianceState { platform: app.app.platform.clone(), clients: app.app.clients.clone() };
    let now = chrono::Utc::now();
    let (review, recorded) = compliance::access_review::record_monthly(&state, now).await.unwrap();
    assert!(recorded);
    assert_eq!(review.month, now.format("%Y-%m").to_string());
    assert_eq!(review.principals, 1);
    assert_eq!(review.flagged, 1, "the officer has no 2FA");
    assert_eq!(review.findings[0]["user_id"], officer.id.as_str());
    // Run again the same month: the recorded one stands, no second entry.
    let (again, recorded) = compliance::access_review::record_monthly(&state, now).await.unwrap();
    assert!(!recorded);
    assert_eq!(again.generated_at, review.generated_at);
    let audit = app.audit_for("access_review", &review.month).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].action, "compliance.access_review");
    assert!(audit[0].reason.as_deref().unwrap().contains("1 flagged"));
    // Next month's is another.
    let (next, recorded) = compliance::access_review::record_monthly(&state, now + chrono::Duration::days(32)).await.unwrap();
    assert!(recorded);
    assert_ne!(next.month, review.month);

    let r = app.get("/api/v1/compliance/access-reviews", &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let months: Vec<&str> = r.body["reviews"].as_array().unwrap().iter().map(|v| v["month"].as_str().unwrap()).collect();
    assert_eq!(months, vec![next.month.as_str(), review.month.as_str()], "newest first");
}
