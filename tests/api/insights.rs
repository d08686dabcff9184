//! `/api/v1/analytics/predictions` and `/api/v1/analytics/insights`: what
//! the refresh job's models stored, the insights' fields and ranking, the
//! stored query reproducing a finding's figure, the audited lifecycle, and
//! the outcome measured 30 days after `implemented`.

use axum::http::Method;
use chrono::{Duration, Utc};
use serde_json::{Value, json};

use crate::helpers::TestApp;

async fn refreshed(app: &TestApp, token: &str) -> Value {
    let r = app.call(Method::POST, "/api/v1/analytics/refresh", Some(token), None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let job_id = r.body["job_id"].as_str().unwrap().to_string();
    assert!(app.run_jobs().await >= 1);
    let job = shared::domain::jobs::get(app.store(), &job_id).await.unwrap().unwrap();
    assert_eq!(job.status, shared::domain::jobs::JobStatus::Succeeded, "{job:?}");
    job.result.unwrap()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test]
async fn predictions_and_ranked_insights_with_an_audited_lifecycle() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let (items, _) = keel_local::seed::generate(now, 400, 31);
    keel_local::seed::put(app.store(), &items).await.unwrap();
    let (_, admin) = app.user(&["admin"]).await;
    let (_, analyst) = app.user(&["analyst"]).await;
    let (_, support) = app.user(&["support"]).await;

    // Before any refresh: nothing fitted, no insights.
    let r = app.get("/api/v1/analytics/predictions", &analyst).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["computed_at"].is_null() && r.body["forecasts"].as_array().unwrap().is_empty());
    let r = app.get("/api/v1/analytics/insights", &analyst).await;
    assert_eq!((r.status.as_u16(), r.body["total"].as_u64()), (200, Some(0)), "{}", r.body);

    let result = refreshed(&app, &admin).await;
    assert!(result["forecasts"].as_u64().unwrap() >= 5, "{result}");
    assert!(result["insights"]["found"].as_u64().unwrap() >= 2, "{result}");

    // Forecasts: intervals nest around the point; every card scores the baselines.
    let r = app.get("/api/v1/analytics/predictions?customers=20", &analyst).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let forecasts = r.body["forecasts"].as_array().unwrap();
    let names: Vec<&str> = forecasts.iter().map(|f| f["series"].as_str().unwrap()).collect();
    for want in ["signups", "mrr", "paying_customers"] {
        assert!(names.contains(&want), "{want} forecast missing: {names:?}");
    }
    for f in forecasts {
        let n = f["point"].as_array().unwrap().len();
        assert!(n > 0, "{f}");
        for i in 0..n {
            let (l95, l80, p, u80, u95) = (num(&f["lower_95"][i]), num(&f["lower_80"][i]), num(&f["point"][i]), num(&f["upper_80"][i]), num(&f["upper_95"][i]));
            assert!(l95 <= l80 + 1e-9 && l80 <= p + 1e-9 && p <= u80 + 1e-9 && u80 <= u95 + 1e-9, "{}: {l95} {l80} {p} {u80} {u95}", f["series"]);
        }
        let scored: Vec<&str> = f["backtest"]["scores"].as_array().unwrap().iter().map(|s| s["model"].as_str().unwrap()).collect();
        assert!(["naive", "drift"].iter().all(|b| scored.iter().any(|s| s.starts_with(b))), "{}: {scored:?}", f["series"]);
        for s in f["backtest"]["scores"].as_array().unwrap() {
            for k in ["mase", "smape", "coverage_95", "msis"] {
                assert!(s[k].is_number(), "{k} in {s}");
            }
        }
    }
    let mrr = forecasts.iter().find(|f| f["series"] == "mrr").unwrap();
    assert_eq!(mrr["granularity"], "month");
    // The churn model and the riskiest customers, riskiest first.
    let auc = num(&r.body["churn_model"]["evaluation"]["auc"]);
    assert!((0.0..=1.0).contains(&auc));
    let at_risk = r.body["at_risk"].as_array().unwrap();
    assert!(!at_risk.is_empty() && at_risk.len() <= 20);
    assert!(at_risk.windows(2).all(|w| num(&w[0]["probability"]) >= num(&w[1]["probability"])));
    assert!(at_risk.iter().all(|c| c["reasons"].as_array().is_some_and(|r| !r.is_empty() && r.len() <= 3)), "{at_risk:?}");
    let r = app.get("/api/v1/analytics/predictions?customers=501", &analyst).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["customers".to_string()]), "{}", r.body);
    let r = app.get("/api/v1/analytics/predictions?from=2026-13-01", &analyst).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["from".to_string()]), "{}", r.body);

    // Insights: every field, ranked by priority = |impact| × confidence.
    let r = app.get("/api/v1/analytics/insights", &analyst).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.body["insights"].as_array().unwrap().clone();
    assert!(list.len() >= 2, "{}", r.body);
    for i in &list {
        for k in ["id", "title", "explanation", "evidence", "confidence", "impact", "priority", "category", "recommendation", "query", "status"] {
            assert!(!i[k].is_null(), "{k} missing in {i}");
        }
        let confidence = num(&i["confidence"]);
        assert!((0.0..=1.0).contains(&confidence), "{i}");
        let impact = i["impact"]["value_cents"].as_f64().unwrap_or_else(|| num(&i["impact"]["value"]));
        assert!((num(&i["priority"]) - impact.abs() * confidence).abs() < 1e-6 * (1.0 + impact.abs()), "{i}");
        assert!(!i["impact"]["formula"].as_str().unwrap().is_empty());
        assert_eq!(i["status"], "new");
    }
    assert!(list.windows(2).all(|w| num(&w[0]["priority"]) >= num(&w[1]["priority"])));

    // The stored query shows the quoted figure again, exactly.
    let forecast = list.iter().find(|i| i["evidence"]["series"][0] == "mrr" && i["category"] == "revenue").expect("an MRR forecast insight");
    let q = &forecast["query"];
    let params: Vec<String> = q["params"].as_object().unwrap().iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap())).collect();
    let r = app.get(&format!("{}?{}", q["path"].as_str().unwrap(), params.join("&")), &analyst).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let f = &r.body["forecasts"].as_array().unwrap()[0];
    let k = 3.min(f["point"].as_array().unwrap().len()) - 1;
    assert_eq!(num(&f["point"][k]), num(&forecast["evidence"]["figures"]["forecast"]));

    // Lifecycle: audited, operator statuses only, permission checked.
    let id = list[0]["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/analytics/insights/{id}");
    let r = app.call(Method::PATCH, &path, Some(&analyst), Some(json!({"status": "acknowledged", "note": "looking"}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.body["status"].as_str(), r.body["history"].as_array().unwrap().len()), (Some("acknowledged"), 1));
    let audit = app.audit_for("insight", &id).await;
    let entry = audit.iter().find(|e| e.action == "analytics.insight.status").expect("audited");
    assert_eq!(entry.changes.as_ref().unwrap()["after"]["status"], "acknowledged");
    let r = app.call(Method::PATCH, &path, Some(&analyst), Some(json!({"status": "verified"}))).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["status".to_string()]), "{}", r.body);
    let r = app.call(Method::PATCH, &path, Some(&analyst), Some(json!({"status": "done"}))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = app.call(Method::PATCH, &path, Some(&support), Some(json!({"status": "dismissed"}))).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r =
        app.call(Method::PATCH, &format!("/api/v1/analytics/insights/{}", uuid::Uuid::now_v7()), Some(&analyst), Some(json!({"status": "dismissed"}))).await;
    assert_eq!(r.status, 404, "{}", r.body);

    // Implemented 35 days ago (the clock moved on): the next refresh
    // measures the outcome and settles the status.
    let r = app.call(Method::PATCH, &path, Some(&analyst), Some(json!({"status": "implemented", "note": "shipped"}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut item = app.store().get_item(shared::domain::insights::PARTITION, &shared::domain::insights::sort_key(&id)).await.unwrap().unwrap();
    let mut doc: Value = serde_json::from_str(item[shared::store::DOC].as_s().unwrap()).unwrap();
    doc["implemented_at"] = json!(shared::store::timestamp(now - Duration::days(35)));
    item.insert(shared::store::DOC.into(), shared::store::s(doc.to_string()));
    app.store().put_item_unchecked(item).await.unwrap();
    let result = refreshed(&app, &admin).await;
    assert_eq!(result["insights"]["measured"].as_u64(), Some(1), "{result}");
    let r = app.get(&path, &analyst).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let outcome = &r.body["outcome"];
    let status = r.body["status"].as_str().unwrap();
    assert_eq!(status == "verified", num(&outcome["confidence"]) >= 0.9, "{}", r.body);
    assert!(status == "verified" || status == "no_effect");
    assert!(outcome["before"].is_number() && outcome["after"].is_number());
    assert!(app.audit_for("insight", &id).await.iter().any(|e| e.action == "analytics.insight.measured" && e.actor.id == "analytics"));
    // The measured status is final.
    let r = app.call(Method::PATCH, &path, Some(&analyst), Some(json!({"status": "new"}))).await;
    assert_eq!(r.status, 409, "{}", r.body);
}
