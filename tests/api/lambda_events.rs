//! The sample events in events/ run through the Lambda path: `lambda_http`'s
//! own API Gateway v2 conversion into each function's router (not the merged
//! local one), and the SQS batch into the jobs worker with partial failures.

use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use shared::domain::jobs::Job;
use tower::ServiceExt;

use crate::helpers::{PASSWORD, TestApp};

fn event(name: &str, vars: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(keel_local::repo_root().join("events").join(name)).unwrap();
    for (k, v) in vars {
        text = text.replace(&format!("${{{k}}}"), v);
    }
    text
}

async fn invoke(router: Router, event: &str) -> (u16, Value) {
    let request = lambda_http::request::from_str(event).expect("a valid API Gateway event");
    let (parts, body) = request.into_parts();
    let request = http::Request::from_parts(parts, axum::body::Body::new(body));
    let response = router.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn api_gateway_events_reach_the_function_routers() {
    let app = TestApp::spawn().await;
    let platform = app.app.platform.clone();
    let auth_router = auth::router(auth::AuthState { platform: platform.clone(), signer: app.app.signer.clone(), providers: auth::Providers::new() });
    let admin_router = admin::router(app.app.admin.clone());
    shared::identity::users::bootstrap_admin(app.store(), "admin@keel.local", "Admin", PASSWORD, false).await.unwrap();
    // This test is about the Lambda path, so the admin signs in with the
    // password alone (2FA, required of admins by default: two_factor.rs).
    shared::domain::two_factor_policy::set_required_roles(app.store(), &[], &shared::audit::Actor::system("tests")).await.unwrap();

    let (status, body) = invoke(auth_router.clone(), &event("auth/jwks.json", &[])).await;
    assert_eq!((status, body["keys"][0]["alg"].as_str()), (200, Some("ES256")));
    let (status, login) = invoke(auth_router.clone(), &event("auth/login.json", &[("ADMIN_PASSWORD", PASSWORD)])).await;
    assert_eq!(status, 200, "{login}");
    let token = login["access_token"].as_str().unwrap();
    let refresh = login["refresh_token"].as_str().unwrap();
    let (status, _) = invoke(auth_router, &event("auth/refresh.json", &[("REFRESH_TOKEN", refresh)])).await;
    assert_eq!(status, 200);

    let (status, created) = invoke(admin_router.clone(), &event("admin/create-user.json", &[("ACCESS_TOKEN", token)])).await;
    assert_eq!(status, 201, "{created}");
    let user_id = created["id"].as_str().unwrap();
    let (status, list) = invoke(admin_router.clone(), &event("admin/list-users.json", &[("ACCESS_TOKEN", token)])).await;
    assert_eq!(status, 200, "{list}");
    let (status, updated) = invoke(admin_router.clone(), &event("admin/update-user.json", &[("ACCESS_TOKEN", token), ("USER_ID", user_id)])).await;
    assert_eq!((status, updated["status"].as_str()), (200, Some("suspended")), "{updated}");
    let (status, audit) = invoke(admin_router, &event("admin/audit-logs.json", &[("ACCESS_TOKEN", token)])).await;
    assert_eq!(status, 200);
    let entry = audit["items"].as_array().unwrap().iter().find(|e| e["action"] == "user.suspend").expect("suspension audited");
    // The source address comes from API Gateway's X-Forwarded-For.
    assert_eq!(entry["actor"]["source_ip"], "198.51.100.23");
}

#[tokio::test]
async fn data_events_export_and_follow_the_job() {
    let app = TestApp::spawn().await;
    let data_router = data::router(app.app.data.clone());
    let (user, token) = app.user(&["admin"]).await;
    let (status, accepted) = invoke(data_router.clone(), &event("data/export.json", &[("ACCESS_TOKEN", &token)])).await;
    assert_eq!(status, 202, "{accepted}");
    let job_id = accepted["job_id"].as_str().unwrap();
    // The idempotency key in the event: a retry answers the same job.
    let (_, again) = invoke(data_router.clone(), &event("data/export.json", &[("ACCESS_TOKEN", &token)])).await;
    assert_eq!(again["job_id"], job_id);
    let (status, list) = invoke(data_router.clone(), &event("data/list-jobs.json", &[("ACCESS_TOKEN", &token)])).await;
    assert_eq!((status, list["items"].as_array().unwrap().len()), (200, 1), "{list}");
    app.run_jobs().await;
    let (status, job) = invoke(data_router.clone(), &event("data/job.json", &[("ACCESS_TOKEN", &token), ("JOB_ID", job_id)])).await;
    assert_eq!((status, job["status"].as_str()), (200, Some("succeeded")), "{job}");
    assert_eq!(job["result"]["rows"], 1);
    let (status, _) = invoke(data_router.clone(), &event("data/cancel-job.json", &[("ACCESS_TOKEN", &token), ("JOB_ID", job_id)])).await;
    assert_eq!(status, 409, "a finished job cannot be cancelled");
    // An own-data export answers inline (CSV, not JSON: the body is the file).
    let request = lambda_http::request::from_str(&event("data/export-own-data.json", &[("ACCESS_TOKEN", &token)])).unwrap();
    let (parts, body) = request.into_parts();
    let response = data_router.oneshot(http::Request::from_parts(parts, axum::body::Body::new(body))).await.unwrap();
    assert_eq!(response.status(), 200);
    let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.starts_with("category,id,time,details") && text.contains(&user.id), "{text}");
}

#[tokio::test]
async fn sqs_batch_reports_only_the_failed_message() {
    let app = TestApp::spawn().await;
    let (inviter, _) = app.user(&["admin"]).await;
    let (invitee, _) = app.user(&["user"]).await;
    let mut job = Job::new(shared::domain::jobs::JobKind::InviteEmail, &inviter.id, serde_json::json!({ "user_id": invitee.id }));
    job.id = uuid::Uuid::now_v7().to_string();
    app.store().put_item_unchecked(job.to_item().unwrap()).await.unwrap();

    let text = event("jobs/sqs-batch.json", &[("JOB_ID", &job.id)]);
    // Through the Lambda entry point's dispatch, as deployed.
    let answer = app.app.worker.invoke(serde_json::from_str(&text).unwrap()).await.unwrap();
    assert_eq!(answer["batchItemFailures"].as_array().unwrap().len(), 1, "{answer}");
    let schedule = app.app.worker.invoke(serde_json::from_str(&event("jobs/retention-schedule.json", &[])).unwrap()).await.unwrap();
    assert_eq!(schedule, serde_json::json!({"charts_purged": 0, "users_queued_for_erasure": 0, "export_files_expired": 0, "jobs_removed": 0}));
    let batch: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_str(&text).unwrap();
    let response = app.app.worker.handle(batch.clone()).await;
    let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, vec!["059f36b4-87a3-44ab-83d2-661975830a7d"], "only the message for the missing job fails");
    let done = shared::domain::jobs::get(app.store(), &job.id).await.unwrap().unwrap();
    // The invitee is active (not invited), so the job succeeds with nothing to send.
    assert_eq!(done.status, shared::domain::jobs::JobStatus::Succeeded);
    assert!(done.result.unwrap()["skipped"].is_string());
    // Redelivery of the same batch: the finished job is not run again.
    let again = app.app.worker.handle(batch).await;
    assert_eq!(again.batch_item_failures.len(), 1);
    assert_eq!(shared::domain::jobs::get(app.store(), &job.id).await.unwrap().unwrap().version, done.version);
}
