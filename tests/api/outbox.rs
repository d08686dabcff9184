//! The jobs outbox: a request that creates a job commits the job record with
//! its change and sends nothing; the stream dispatcher sends it, the sweeper
//! re-sends what stays queued, and the worker claims a job before running
//! it. With SendMessage failing the request still succeeds, the job runs
//! exactly once afterwards, and an idempotent retry never makes a second job.

use http::Method;
use serde_json::json;
use shared::domain::jobs::{Job, JobStatus, Outbox};

use crate::helpers::{TestApp, request};

async fn owned_jobs(app: &TestApp, owner: &str) -> Vec<Job> {
    let spec = shared::store::QuerySpec {
        index: Some("gsi1"),
        key_condition: "gsi1pk = :owner",
        filter: "#type = :job",
        names: vec![("#type", "type")],
        values: vec![(":owner", shared::store::s(format!("OWNER#{owner}"))), (":job", shared::store::s("job"))],
        forward: true,
        ..Default::default()
    };
    app.store().query_all(&spec).await.unwrap().into_iter().map(|i| shared::store::from_item(i).unwrap()).collect()
}

#[tokio::test]
async fn send_failures_leave_no_stuck_and_no_duplicate_job() {
    let app = TestApp::spawn().await;
    let (admin, token) = app.user(&["admin"]).await;
    let export = || {
        let mut req = request(Method::POST, "/api/v1/data/export", Some(&token), Some(json!({ "dataset": "users", "format": "xlsx" })));
        req.headers_mut().insert("idempotency-key", "outbox-export-1".parse().unwrap());
        req
    };

    // SendMessage fails: the dispatcher's queue does not exist.
    let broken = streams::Worker {
        store: app.app.streams.store.clone(),
        outbox: Outbox::new(app.app.clients.sqs.clone(), format!("{}/000000000000/no-such-queue", app.endpoint)),
    };
    let first = app.send(export()).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let job_id = first.body["job_id"].as_str().unwrap().to_string();
    app.send_outbox_with(&broken).await;
    let job = shared::domain::jobs::get(app.store(), &job_id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued, "the job is committed though nothing could be sent");
    assert_eq!(app.run_jobs_queue_only().await, 0, "nothing reached the queue");

    // The client retries with the same key: the same job, not a second one.
    let retry = app.send(export()).await;
    assert_eq!(retry.status, 202, "{}", retry.body);
    assert_eq!(retry.body["job_id"], job_id.as_str());
    assert_eq!(owned_jobs(&app, &admin.id).await.len(), 1);

    // The sweeper re-sends the job (stale at once here) and the dispatcher,
    // working again, sends it from the stream too: two messages for one job.
    let resent = app.app.sweeper.outbox.resend_stale(app.store(), chrono::Duration::zero()).await.unwrap();
    assert_eq!(resent, 1);
    app.run_jobs().await;

    let jobs = owned_jobs(&app, &admin.id).await;
    assert_eq!(jobs.len(), 1, "one job");
    let job = &jobs[0];
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(job.attempts, 1, "run exactly once: {job:?}");
    let audit = app.audit_for("job", &job_id).await;
    assert_eq!(audit.iter().filter(|e| e.action == "data.export").count(), 1, "{audit:?}");

    // A late duplicate of its message (a redelivery) does not run it again.
    let body = serde_json::to_string(&job.message()).unwrap();
    shared::domain::jobs::send(&app.app.clients.sqs, &app.stack.env["KEEL_JOBS_QUEUE_URL"], &[body]).await.unwrap();
    app.run_jobs().await;
    let again = shared::domain::jobs::get(app.store(), &job_id).await.unwrap().unwrap();
    assert_eq!((again.attempts, again.version), (job.attempts, job.version), "nothing changed");
}

#[tokio::test]
async fn a_job_is_sent_only_when_it_is_asked_to_run() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["admin"]).await;
    // An import waits for its file: created, but not sent.
    let created = app.call(Method::POST, "/api/v1/data/import", Some(&token), Some(json!({ "dataset": "users", "format": "csv" }))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let job_id = created.body["job_id"].as_str().unwrap();
    app.send_outbox().await;
    assert_eq!(app.run_jobs_queue_only().await, 0);
    let job = shared::domain::jobs::get(app.store(), job_id).await.unwrap().unwrap();
    assert_eq!((job.status, job.run_requests), (JobStatus::Queued, 0));
    // Nor does the sweeper send it: nobody asked it to run.
    assert_eq!(app.app.sweeper.outbox.resend_stale(app.store(), chrono::Duration::zero()).await.unwrap(), 0);
}
