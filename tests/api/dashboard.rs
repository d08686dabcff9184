//! The dashboard (`GET /admin/analytics`) against a known data set written
//! through the real write paths (the API, the seed's BatchWriteItem, a
//! moderation UpdateItem) and rolled up by the streams worker reading the
//! emulator's table stream: every number equals a direct count over the
//! table, redelivered records change nothing, and the one-off backfill
//! computes the same rollups as the stream.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{Duration, Utc};
use http::Method;
use keel_local::stream_reader::{Start, StreamReader};
use serde_json::{Value, json};
use shared::domain::rollups::{self, day, month, previous_month};
use shared::store::{UpdateSpec, s};

use crate::helpers::{PASSWORD, TestApp};

/// Small: the emulator copies the whole table (stream included) for every
/// transaction, so replaying the stream one transaction per record is
/// quadratic locally (DynamoDB itself has no such cost).
const SEED_USERS: usize = 10;

async fn reader(app: &TestApp) -> StreamReader {
    let arn = &app.stack.resources["Table"].attributes["StreamArn"];
    StreamReader::open(aws_sdk_dynamodbstreams::Client::new(&app.sdk), arn, Start::TrimHorizon).await.unwrap()
}

/// Every item of the table, as JSON.
async fn scan(app: &TestApp) -> Vec<Value> {
    let store = app.store();
    // Audit entries as a reader sees them (people's fields are sealed).
    let (audit, other): (Vec<_>, Vec<_>) =
        store.scan_all().await.unwrap().into_iter().partition(|i| i.get("type").and_then(|v| v.as_s().ok()).is_some_and(|t| t == "audit"));
    let mut items: Vec<Value> = other.into_iter().map(|i| serde_dynamo::from_item::<_, Value>(i).unwrap()).collect();
    for entry in store.reveal_audit(audit).await.unwrap() {
        let mut value = serde_json::to_value(&entry).unwrap();
        value["type"] = json!("audit");
        items.push(value);
    }
    items
}

/// Write a small demo data set (users, logins, charts in every state,
/// orders with refunds) with the seed's own BatchWriteItem path, plus
/// activity today so the "today" numbers are not all zero.
async fn seed(app: &TestApp) {
    let now = Utc::now();
    let (mut items, _) = keel_local::seed::generate(now, SEED_USERS, 11);
    let (user, _) = app.user(&["user"]).await;
    let ts = shared::store::timestamp(now);
    let today_items = [
        json!({"pk": "CHART#today1", "sk": "META", "type": "chart", "id": "today1", "owner_id": user.id, "moderation_status": "pending", "created_at": ts, "updated_at": ts, "version": 1}),
        json!({"pk": "CHART#today2", "sk": "META", "type": "chart", "id": "today2", "owner_id": user.id, "moderation_status": "rejected", "created_at": ts, "updated_at": ts, "version": 1}),
        json!({"pk": "ORDER#today1", "sk": "META", "type": "order", "id": "today1", "user_id": user.id, "amount_cents": 2900, "currency": "USD", "status": "paid", "created_at": ts}),
        json!({"pk": "ORDER#today2", "sk": "META", "type": "order", "id": "today2", "user_id": user.id, "amount_cents": 900, "currency": "USD", "status": "refunded", "created_at": ts, "refunded_at": ts}),
        json!({"pk": format!("USER#{}", user.id), "sk": format!("EVENT#{ts}#e1"), "type": "event", "id": "e1", "user_id": user.id, "kind": "login", "ts": ts}),
    ];
    items.extend(today_items.iter().map(|v| shared::store::to_item(v).unwrap()));
    app.store().batch_put(items).await.unwrap();
}

/// Changes through the API: logins (one failed), a suspension, a deletion,
/// a role change, and a chart moved out of moderation.
async fn act(app: &TestApp) {
    let (_, admin) = app.user(&["super_admin"]).await;
    let (ok, _) = app.user(&["user"]).await;
    assert_eq!(app.login(&ok.email, PASSWORD).await.status, 200);
    assert_eq!(app.login(&ok.email, "not the password at all").await.status, 401);
    let (suspend, _) = app.user(&["user"]).await;
    let r = app
        .call(Method::PUT, &format!("/api/v1/admin/users/{}", suspend.id), Some(&admin), Some(json!({"version": 1, "status": "suspended", "reason": "test"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (promote, _) = app.user(&["user"]).await;
    let r = app.call(Method::PUT, &format!("/api/v1/admin/users/{}", promote.id), Some(&admin), Some(json!({"version": 1, "roles": ["support"]}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (delete, _) = app.user(&["user"]).await;
    assert_eq!(app.call(Method::DELETE, &format!("/api/v1/admin/users/{}", delete.id), Some(&admin), None).await.status, 204);
    // A moderation decision (pending → approved) as an UpdateItem.
    let store = app.store();
    let approve = UpdateSpec::new("SET moderation_status = :approved, gsi2pk = :gsi").value(":approved", s("approved")).value(":gsi", s("MODERATION#approved"));
    store.update("CHART#today1", "META", &approve).await.unwrap();
}

/// The dashboard computed by counting the table's items directly.
fn direct_count(items: &[Value]) -> Value {
    let now = Utc::now();
    let today = day(now);
    let (this_month, last_month) = (month(now), previous_month(now));
    let within = |d: &str, from_days_ago: i64| d >= day(now - Duration::days(from_days_ago)).as_str() && d <= today.as_str();
    let of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let kind = |v: &Value| of(v, "type");
    let mut by_status: BTreeMap<String, i64> = BTreeMap::new();
    let mut last_active: HashMap<String, String> = HashMap::new();
    let mut signups_this_week = 0;
    let mut signups_last_week = 0;
    let mut charts: BTreeMap<String, i64> = BTreeMap::new();
    let (mut charts_total, mut charts_today) = (0, 0);
    let mut revenue: HashMap<String, i64> = HashMap::new();
    let mut refunds: HashMap<String, i64> = HashMap::new();
    let mut orders: HashMap<String, i64> = HashMap::new();
    let mut security: Vec<(String, String)> = Vec::new();
    let mut active = |user: String, d: String| {
        let e = last_active.entry(user).or_default();
        if *e < d {
            *e = d;
        }
    };
    for item in items {
        match kind(item).as_str() {
            "user" if of(item, "sk") == "PROFILE" => {
                *by_status.entry(of(item, "status")).or_default() += 1;
                let created = &of(item, "created_at")[..10];
                if within(created, 6) {
                    signups_this_week += 1;
                } else if created >= day(now - Duration::days(13)).as_str() && created <= day(now - Duration::days(7)).as_str() {
                    signups_last_week += 1;
                }
                if let Some(login) = item.get("last_login_at").and_then(Value::as_str) {
                    active(of(item, "id"), login[..10].to_string());
                }
            }
            "event" if of(item, "kind") == "login" => active(of(item, "user_id"), of(item, "ts")[..10].to_string()),
            "chart" => {
                *charts.entry(of(item, "moderation_status")).or_default() += 1;
                charts_total += 1;
                charts_today += i64::from(of(item, "created_at")[..10] == today);
            }
            "order" => {
                let amount = item["amount_cents"].as_i64().unwrap();
                let created = of(item, "created_at");
                for bucket in [&created[..10], &created[..7]] {
                    *revenue.entry(bucket.to_string()).or_default() += amount;
                    *orders.entry(bucket.to_string()).or_default() += 1;
                }
                if of(item, "status") == "refunded" {
                    let refunded = of(item, "refunded_at");
                    for bucket in [&refunded[..10], &refunded[..7]] {
                        *refunds.entry(bucket.to_string()).or_default() += amount;
                    }
                }
            }
            "audit" => {
                let roles = item["changes"]["before"].get("roles").is_some();
                if rollups::is_security_event(&of(item, "action"), &of(item, "outcome"), roles) {
                    security.push((of(item, "ts"), of(item, "id")));
                }
            }
            _ => {}
        }
    }
    security.sort();
    security.reverse();
    let active_in = |days: i64| last_active.values().filter(|d| within(d, days)).count() as i64;
    let get = |m: &HashMap<String, i64>, k: &str| m.get(k).copied().unwrap_or(0);
    json!({
        "users": {
            "total": by_status.iter().filter(|(s, _)| s.as_str() != "deleted").map(|(_, v)| v).sum::<i64>(),
            "by_status": by_status,
            "active_today": active_in(0), "active_7d": active_in(6), "active_30d": active_in(29),
            "new_this_week": signups_this_week, "new_last_week": signups_last_week,
        },
        "charts": {
            "created_total": charts_total, "created_today": charts_today,
            "pending_moderation": charts.get("pending").copied().unwrap_or(0),
            "rejected": charts.get("rejected").copied().unwrap_or(0),
            "by_status": charts,
        },
        "revenue": {
            "currency": "USD",
            "today_cents": get(&revenue, &today), "this_month_cents": get(&revenue, &this_month), "last_month_cents": get(&revenue, &last_month),
            "refunds_today_cents": get(&refunds, &today), "refunds_this_month_cents": get(&refunds, &this_month), "refunds_last_month_cents": get(&refunds, &last_month),
            "orders_today": get(&orders, &today), "orders_this_month": get(&orders, &this_month),
        },
        "security": {
            "events_today": security.iter().filter(|(ts, _)| ts[..10] == today).count(),
            "events_7d": security.iter().filter(|(ts, _)| within(&ts[..10], 6)).count(),
            "recent": security.iter().take(20).map(|(_, id)| id.clone()).collect::<Vec<_>>(),
        },
    })
}

/// The dashboard as the API returns it, in the direct count's shape.
async fn dashboard(app: &TestApp, token: &str) -> Value {
    let r = app.get("/api/v1/admin/analytics", token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut body = r.body;
    let recent: Vec<Value> = body["security"]["recent"].as_array().unwrap().iter().map(|e| e["id"].clone()).collect();
    body["security"]["recent"] = Value::Array(recent);
    json!({ "users": body["users"], "charts": body["charts"], "revenue": body["revenue"], "security": body["security"] })
}

#[tokio::test]
async fn dashboard_numbers_equal_a_direct_count() {
    let app = TestApp::spawn().await;
    let mut stream = reader(&app).await;
    seed(&app).await;
    act(&app).await;
    let processed = stream.drain(&app.app.streams).await.unwrap();
    assert!(processed > 150, "only {processed} stream records");
    let (_, analyst) = app.user(&["analyst"]).await;
    stream.drain(&app.app.streams).await.unwrap();
    let expected = direct_count(&scan(&app).await);
    let actual = dashboard(&app, &analyst).await;
    assert_eq!(actual, expected);
    // The data set exercises every panel.
    assert!(expected["users"]["active_today"].as_i64().unwrap() >= 2, "{expected}");
    assert!(expected["users"]["by_status"]["suspended"].as_i64().unwrap() >= 1);
    assert!(expected["users"]["by_status"]["deleted"].as_i64().unwrap() >= 1);
    assert!(expected["charts"]["rejected"].as_i64().unwrap() >= 1);
    assert!(expected["revenue"]["today_cents"].as_i64().unwrap() >= 3800);
    assert!(expected["revenue"]["refunds_today_cents"].as_i64().unwrap() >= 900);
    let actions: HashSet<String> = {
        let r = app.get("/api/v1/admin/analytics", &analyst).await;
        r.body["security"]["recent"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_string()).collect()
    };
    assert!(actions.contains("auth.login") && actions.contains("user.suspend") && actions.contains("user.update"), "{actions:?}");

    // Queue depths are live.
    let r = app.get("/api/v1/admin/analytics", &analyst).await;
    let names: Vec<&str> = r.body["queues"].as_array().unwrap().iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["jobs", "jobs_dlq", "webhooks", "webhooks_dlq"]);
    let dlq = &app.stack.env["KEEL_JOBS_DLQ_URL"];
    app.app.clients.sqs.send_message().queue_url(dlq).message_body("{}").send().await.unwrap();
    let r = app.get("/api/v1/admin/analytics", &analyst).await;
    assert_eq!(r.body["queues"][1]["visible"], 1, "{}", r.body["queues"]);
}

fn counters(items: &[Value]) -> BTreeMap<(String, String), i64> {
    items
        .iter()
        .filter(|i| i["pk"].as_str().is_some_and(|pk| pk.starts_with("METRIC#")))
        .map(|i| ((i["pk"].as_str().unwrap().to_string(), i["sk"].as_str().unwrap().to_string()), i["value"].as_i64().unwrap()))
        .filter(|(_, v)| *v != 0)
        .collect()
}

#[tokio::test]
async fn redelivered_records_change_nothing_and_backfill_agrees() {
    let app = TestApp::spawn().await;
    let mut first = reader(&app).await;
    seed(&app).await;
    act(&app).await;
    first.drain(&app.app.streams).await.unwrap();
    let once = counters(&scan(&app).await);
    assert!(once.len() > 30, "{once:?}");

    // The whole stream again, as a retried batch would deliver it.
    let mut again = reader(&app).await;
    let redelivered = again.drain(&app.app.streams).await.unwrap();
    assert!(redelivered > 150);
    assert_eq!(counters(&scan(&app).await), once, "redelivery changed a counter");

    // Remove the rollups and recompute them with the backfill's scan.
    let store = app.store();
    let derived: Vec<(String, String)> = scan(&app)
        .await
        .into_iter()
        .filter(|i| ["METRIC#", "ACTIVITY#"].iter().any(|p| i["pk"].as_str().is_some_and(|pk| pk.starts_with(p))))
        .map(|i| (i["pk"].as_str().unwrap().to_string(), i["sk"].as_str().unwrap().to_string()))
        .collect();
    for (pk, sk) in derived {
        store.delete(&pk, &sk).await.unwrap();
    }
    assert!(counters(&scan(&app).await).is_empty());
    let backfilled = streams::backfill::run(store).await.unwrap();
    assert!(backfilled.items_scanned > 150);
    assert_eq!(counters(&scan(&app).await), once, "backfill and stream disagree");
}

#[tokio::test]
async fn analytics_needs_analytics_read() {
    let app = TestApp::spawn().await;
    let (_, support) = app.user(&["support"]).await;
    let r = app.get("/api/v1/admin/analytics", &support).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["missing_permission"], "analytics:read");
}
