//! The uptime check against the functions served over real HTTP (as the
//! local stack serves them): all up, then one function unreachable (its
//! target on a port nothing listens on: a real failed connection), then back.

use chrono::{Duration, Utc};
use http::StatusCode;
use serde_json::Value;

use crate::helpers::TestApp;

/// Serve the stack's functions on a loopback port, as `make dev` does.
async fn serve(app: &TestApp) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let service = app.router().into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    url
}

/// A loopback address nothing listens on (bound, then released).
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

fn result<'a>(record: &'a admin::uptime::CheckRecord, target: &str) -> &'a admin::uptime::ProbeResult {
    record.results.iter().find(|r| r.target == target).unwrap_or_else(|| panic!("no result for {target}"))
}

#[tokio::test]
async fn incidents_open_on_failure_and_close_on_recovery() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["super_admin"]).await;
    let base = serve(&app).await;
    let check = admin::uptime::UptimeCheck::new(app.store().clone(), app.app.platform.envelope.clone(), &base).unwrap();
    let t0 = Utc::now() - Duration::hours(1);

    // All up: the probe signs in and every function answers as serving.
    let first = check.run(t0).await.unwrap();
    assert!(first.results.iter().all(|r| r.up), "{:?}", first.results);
    assert_eq!(result(&first, "sign-in").status, Some(200));
    assert_eq!(result(&first, "data").status, Some(200));
    assert_eq!(result(&first, "admin").status, Some(401), "asked without a token: the probe's refusals would fill the audit log");
    assert_eq!(first.results.len(), 9);
    let report = app.get("/api/v1/admin/uptime", &admin).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    assert_eq!(report.body["overall"]["availability"], 100.0);
    assert_eq!(report.body["targets"]["search"]["checks"], 1);
    assert_eq!(report.body["incidents"], Value::Array(vec![]));

    // The probe account was made once, audited, its password sealed.
    let probe: Vec<_> = app
        .audit_for("user", &{
            let item = app.store().get_item("UPTIME#PROBE", "ACCOUNT").await.unwrap().expect("probe account");
            assert!(item.contains_key("password"));
            item["user_id"].as_s().unwrap().clone()
        })
        .await;
    let created: Vec<_> = probe.iter().filter(|e| e.action == "user.create").collect();
    assert_eq!(created.len(), 1, "{probe:?}");

    // The search function unreachable: a connection nothing accepts.
    let mut down = check.clone();
    let search = down.targets.iter_mut().find(|t| t.name == "search").unwrap();
    search.url = format!("{}/api/v1/search/saved", closed_port().await);
    let second = down.run(t0 + Duration::minutes(5)).await.unwrap();
    let failed = result(&second, "search");
    assert!(!failed.up);
    assert_eq!(failed.status, None);
    assert_eq!(failed.error.as_deref(), Some("could not connect"));
    assert!(second.results.iter().filter(|r| r.target != "search").all(|r| r.up));
    let report = app.get("/api/v1/admin/uptime", &admin).await;
    let incidents = report.body["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{}", report.body);
    assert_eq!(incidents[0]["target"], "search");
    assert_eq!(incidents[0]["ended_at"], Value::Null);
    assert_eq!(incidents[0]["error"], "could not connect");

    // Still down at the next check: the same incident, not a second one.
    down.run(t0 + Duration::minutes(10)).await.unwrap();
    let report = app.get("/api/v1/admin/uptime", &admin).await;
    assert_eq!(report.body["incidents"].as_array().unwrap().len(), 1);

    // Back: the incident closes at the first success.
    let fourth = check.run(t0 + Duration::minutes(15)).await.unwrap();
    assert!(result(&fourth, "search").up);
    let report = app.get("/api/v1/admin/uptime", &admin).await;
    let incidents = report.body["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{}", report.body);
    assert_eq!(incidents[0]["target"], "search");
    assert_eq!(incidents[0]["duration_seconds"], 600, "from the first failed check to the next success");
    assert!(incidents[0]["ended_at"].is_string());
    assert_eq!(report.body["targets"]["search"]["checks"], 4);
    assert_eq!(report.body["targets"]["search"]["up"], 2);
    assert_eq!(report.body["targets"]["search"]["availability"], 50.0);
    assert_eq!(report.body["targets"]["data"]["availability"], 100.0);
    assert_eq!(report.body["overall"]["availability"], 50.0);
    let days = report.body["days"].as_array().unwrap();
    let checks: u64 = days.iter().map(|d| d["overall"]["checks"].as_u64().unwrap()).sum();
    assert_eq!(checks, 4);

    // A period before the outage holds no incident; one during it does.
    let before = app.get(&format!("/api/v1/admin/uptime?from={}&to={}", ts(t0 - Duration::minutes(1)), ts(t0 + Duration::minutes(1))), &admin).await;
    assert_eq!(before.body["incidents"], Value::Array(vec![]));
    assert_eq!(before.body["overall"]["availability"], 100.0);
    let during = app.get(&format!("/api/v1/admin/uptime?from={}&to={}", ts(t0 + Duration::minutes(7)), ts(t0 + Duration::minutes(12))), &admin).await;
    assert_eq!(during.body["incidents"].as_array().unwrap().len(), 1);
    assert_eq!(during.body["overall"]["availability"], 0.0);

    // Sign-in unreachable: one incident (sign-in); the functions, called
    // without a token, answer 401 from their gates and count as up.
    let mut no_sign_in = check.clone();
    no_sign_in.base_url = closed_port().await;
    let fifth = no_sign_in.run(t0 + Duration::minutes(20)).await.unwrap();
    assert!(!result(&fifth, "sign-in").up);
    assert_eq!(result(&fifth, "auth").status, Some(401));
    assert!(fifth.results.iter().filter(|r| r.target != "sign-in").all(|r| r.up), "{:?}", fifth.results);
    let later = app.get(&format!("/api/v1/admin/uptime?from={}", ts(t0 + Duration::minutes(19))), &admin).await;
    let incidents = later.body["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{}", later.body);
    assert_eq!(incidents[0]["target"], "sign-in");
    assert_eq!(incidents[0]["ended_at"], Value::Null);

    // Bad input and permission.
    let bad = app.get("/api/v1/admin/uptime?from=soon", &admin).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.error_fields(), ["from"]);
    let (_, user) = app.user(&["user"]).await;
    let refused = app.get("/api/v1/admin/uptime", &user).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["missing_permission"], "system:read");
}

fn ts(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
