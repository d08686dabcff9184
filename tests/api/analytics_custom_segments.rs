//! `/api/v1/analytics/segments/custom*` against the demo data: the preview
//! count of several rule sets equals a direct count over the table's user
//! items, each user's own events and the orders (written here, not with
//! the profile code); a create / read / replace / delete round trip with
//! its audit entries; rule errors that name their path.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use http::Method;
use serde_json::{Value, json};

use crate::analytics::{month_of, orders, refreshed, time};
use crate::helpers::TestApp;

/// One user as the table says, with the facts the rules read.
#[derive(Debug, Default, Clone)]
struct Facts {
    id: String,
    country: String,
    status: String,
    roles: Vec<String>,
    created: Option<DateTime<Utc>>,
    last_login: Option<DateTime<Utc>>,
    logins: Vec<DateTime<Utc>>,
    charts: Vec<DateTime<Utc>>,
    paid_orders: i64,
    spend: i64,
    mrr: i64,
    plan: String,
    refunded: bool,
}

impl Facts {
    fn in_last(times: &[DateTime<Utc>], days: i64, as_of: DateTime<Utc>) -> i64 {
        times.iter().filter(|t| **t > as_of - Duration::days(days) && **t <= as_of).count() as i64
    }
}

/// Every user item (gsi3), its own events (its partition) and its orders, as of `as_of`.
async fn facts(app: &TestApp, orders: &[Value], as_of: DateTime<Utc>) -> Vec<Facts> {
    let spec = shared::store::QuerySpec {
        index: Some("gsi3"),
        key_condition: "gsi3pk = :pk",
        values: vec![(":pk", shared::store::s("USERS"))],
        forward: true,
        ..Default::default()
    };
    let mut by_user: HashMap<&str, Vec<&Value>> = HashMap::new();
    for o in orders {
        by_user.entry(o["user_id"].as_str().unwrap()).or_default().push(o);
    }
    let mut out = Vec::new();
    for item in app.store().query_all(&spec).await.unwrap() {
        let u: Value = serde_dynamo::from_item(item).unwrap();
        let id = u["id"].as_str().unwrap().to_string();
        let mut f = Facts {
            id: id.clone(),
            country: u["country"].as_str().unwrap_or("ZZ").to_string(),
            status: u["status"].as_str().unwrap().to_string(),
            roles: u["roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect(),
            created: time(&u["created_at"]),
            last_login: time(&u["last_login_at"]),
            plan: "none".into(),
            ..Default::default()
        };
        let events = shared::store::QuerySpec {
            key_condition: "pk = :pk AND begins_with(sk, :ev)",
            values: vec![(":pk", shared::store::s(format!("USER#{id}"))), (":ev", shared::store::s("EVENT#"))],
            forward: true,
            ..Default::default()
        };
        for item in app.store().query_all(&events).await.unwrap() {
            let e: Value = serde_dynamo::from_item(item).unwrap();
            let t = time(&e["ts"]).unwrap();
            match e["kind"].as_str().unwrap() {
                "login" => f.logins.push(t),
                "chart_created" => f.charts.push(t),
                _ => {}
            }
        }
        let mut best: Option<(i64, String)> = None;
        for o in by_user.get(id.as_str()).into_iter().flatten() {
            let created = time(&o["created_at"]).unwrap();
            if created > as_of {
                continue;
            }
            let amount = o["amount_cents"].as_i64().unwrap();
            let refunded = (o["status"] == "refunded" || o.get("refunded_at").is_some()) && time(&o["refunded_at"]).unwrap_or(created) <= as_of;
            if refunded {
                f.refunded = true;
                f.spend += amount - o["refunded_cents"].as_i64().unwrap_or(amount);
            } else {
                f.paid_orders += 1;
                f.spend += amount;
            }
            let months = match o["billing"].as_str() {
                Some("monthly") => 1,
                Some("annual") => 12,
                _ => continue,
            };
            let start = time(&o["period_start"]).unwrap_or(created);
            let mut end = time(&o["period_end"]).unwrap_or_else(|| start.checked_add_months(chrono::Months::new(months)).unwrap());
            if let Some(early) = time(&o["ended_at"]) {
                end = end.min(early);
            }
            let mrr = if months == 12 { (amount * 2 + 12) / 24 } else { amount };
            if start < as_of && as_of <= end && mrr > 0 {
                f.mrr += mrr;
                let plan = o["plan"].as_str().unwrap_or("none").to_string();
                if best.as_ref().is_none_or(|(m, p)| mrr > *m || (mrr == *m && plan < *p)) {
                    best = Some((mrr, plan));
                }
            }
        }
        if let Some((_, plan)) = best {
            f.plan = plan;
        }
        out.push(f);
    }
    out
}

type Check = Box<dyn Fn(&Facts) -> bool>;

fn check(f: impl Fn(&Facts) -> bool + 'static) -> Check {
    Box::new(f)
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

#[tokio::test]
async fn preview_counts_equal_a_direct_count_and_segments_round_trip_audited() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let (items, _) = keel_local::seed::generate(now, 400, 33);
    keel_local::seed::put(app.store(), &items).await.unwrap();
    let (_, admin) = app.user(&["admin"]).await;
    let (_, analyst) = app.user(&["analyst"]).await;
    let (_, moderator) = app.user(&["moderator"]).await;

    // Before any refresh: nothing is profiled.
    let rules = json!({"field": "status", "op": "eq", "value": "active"});
    let r = app.call(Method::POST, "/api/v1/analytics/segments/custom/preview", Some(&analyst), Some(json!({ "rules": rules }))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["computed_at"].is_null() && r.body["count"] == 0 && r.body["users"] == 0, "{}", r.body);

    refreshed(&app, &admin).await;
    let r = app.call(Method::POST, "/api/v1/analytics/segments/custom/preview", Some(&analyst), Some(json!({ "rules": rules }))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let as_of = time(&r.body["computed_at"]).unwrap();
    let orders = orders(&app, &month_of(now - Duration::days(740)), &month_of(now)).await;
    let users = facts(&app, &orders, as_of).await;
    assert_eq!(r.body["users"].as_u64().unwrap() as usize, users.len());

    let d = |days: i64| day(as_of - Duration::days(days));
    let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let (d60, d365, d180) = (date(&d(60)), date(&d(365)), date(&d(180)));
    let cases: Vec<(Value, Check)> = vec![
        (rules.clone(), check(|f: &Facts| f.status == "active")),
        (
            json!({"all": [{"field": "country", "op": "in", "value": ["US", "DE"]}, {"field": "sign_ins", "op": "gte", "value": 1, "days": 90}]}),
            check(move |f: &Facts| ["US", "DE"].contains(&f.country.as_str()) && Facts::in_last(&f.logins, 90, as_of) >= 1),
        ),
        (
            json!({"any": [{"all": [{"field": "mrr_cents", "op": "gt", "value": 0}, {"field": "plan", "op": "eq", "value": "pro"}]}, {"field": "refunded", "op": "eq", "value": true}]}),
            check(|f: &Facts| (f.mrr > 0 && f.plan == "pro") || f.refunded),
        ),
        (
            json!({"all": [
                {"field": "signed_up", "op": "between", "value": [d(365), d(180)]},
                {"field": "charts_created", "op": "gte", "value": 1, "days": 365},
                {"field": "status", "op": "not_in", "value": ["suspended", "deleted"]},
            ]}),
            check(move |f: &Facts| {
                let signed = f.created.unwrap().date_naive();
                (d365..=d180).contains(&signed) && Facts::in_last(&f.charts, 365, as_of) >= 1 && !["suspended", "deleted"].contains(&f.status.as_str())
            }),
        ),
        (
            json!({"all": [{"field": "paid_orders", "op": "gte", "value": 2}, {"field": "total_spend_cents", "op": "between", "value": [5000, 200000]}]}),
            check(|f: &Facts| f.paid_orders >= 2 && (5000..=200000).contains(&f.spend)),
        ),
        (
            json!({"all": [{"field": "last_sign_in", "op": "before", "value": d(60)}, {"field": "role", "op": "eq", "value": "user"}]}),
            check(move |f: &Facts| f.last_login.is_some_and(|t| t.date_naive() < d60) && f.roles.iter().any(|r| r == "user")),
        ),
        (
            json!({"field": "last_sign_in", "op": "after", "value": d(30)}),
            check(move |f: &Facts| f.last_login.is_some_and(|t| t.date_naive() > as_of.date_naive() - Duration::days(30))),
        ),
        (json!({"field": "mrr_cents", "op": "eq", "value": 0}), check(|f: &Facts| f.mrr == 0)),
    ];
    for (rules, matches) in &cases {
        let r = app.call(Method::POST, "/api/v1/analytics/segments/custom/preview", Some(&analyst), Some(json!({ "rules": rules }))).await;
        assert_eq!(r.status, 200, "{rules}: {}", r.body);
        let mut expected: Vec<&str> = users.iter().filter(|f| matches(f)).map(|f| f.id.as_str()).collect();
        expected.sort();
        assert!(!expected.is_empty() && expected.len() < users.len(), "{rules}: the demo data should make this rule select some users, not all");
        assert_eq!(r.body["count"].as_u64().unwrap() as usize, expected.len(), "{rules}");
        let sample: Vec<&str> = r.body["sample"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(sample, expected[..expected.len().min(20)], "{rules}");
    }

    // Create: the answer carries the count; a moderator may not write.
    let (rules, matches) = &cases[2];
    let expected = users.iter().filter(|f| matches(f)).count() as u64;
    let body = json!({"name": "Pro payers or refunded", "description": "for the win-back campaign", "rules": rules});
    let r = app.call(Method::POST, "/api/v1/analytics/segments/custom", Some(&moderator), Some(body.clone())).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = app.call(Method::POST, "/api/v1/analytics/segments/custom", Some(&analyst), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.headers["location"], format!("/api/v1/analytics/segments/custom/{id}"));
    assert_eq!((r.body["count"].as_u64(), r.body["version"].as_u64()), (Some(expected), Some(1)));
    assert_eq!(&r.body["rules"], rules);

    let r = app.get("/api/v1/analytics/segments/custom", &analyst).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = r.body["segments"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0]["id"].as_str(), listed[0]["count"].as_u64()), (Some(id.as_str()), Some(expected)));

    // Replace, with the version read; a stale version is refused.
    let (rules2, matches2) = &cases[1];
    let expected2 = users.iter().filter(|f| matches2(f)).count() as u64;
    let path = format!("/api/v1/analytics/segments/custom/{id}");
    let r = app.call(Method::PUT, &path, Some(&admin), Some(json!({"version": 1, "name": "Recent US and DE", "rules": rules2}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.body["count"].as_u64(), r.body["version"].as_u64(), r.body["description"].is_null()), (Some(expected2), Some(2), true));
    let r = app.call(Method::PUT, &path, Some(&admin), Some(json!({"version": 1, "name": "Late", "rules": rules2}))).await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = app.get(&path, &analyst).await;
    assert_eq!((r.status.as_u16(), r.body["name"].as_str(), r.body["count"].as_u64()), (200, Some("Recent US and DE"), Some(expected2)));

    // Delete; then it is gone.
    let r = app.call(Method::DELETE, &path, Some(&analyst), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(app.get(&path, &analyst).await.status, 404);
    assert_eq!(app.call(Method::DELETE, &path, Some(&analyst), None).await.status, 404);

    // Every change audited, with what changed.
    let entries = app.audit_for("segment", &id).await;
    let mut actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    actions.sort();
    assert_eq!(actions, ["analytics.segment.create", "analytics.segment.delete", "analytics.segment.update"]);
    let update = entries.iter().find(|e| e.action == "analytics.segment.update").unwrap();
    let changes = update.changes.as_ref().unwrap();
    assert_eq!(changes["after"]["name"], "Recent US and DE", "{changes}");
    assert_eq!(changes["before"]["name"], "Pro payers or refunded", "{changes}");
    assert!(changes["after"]["rules"].as_str().unwrap().contains("sign_ins"), "{changes}");
}

#[tokio::test]
async fn bad_rules_name_the_offending_field() {
    let app = TestApp::spawn().await;
    let (_, analyst) = app.user(&["analyst"]).await;
    for (body, fields) in [
        (json!({"rules": {"all": [{"field": "country", "op": "eq", "value": "usa"}]}}), vec!["rules.all[0].value"]),
        (
            json!({"rules": {"all": [{"field": "plan", "op": "eq", "value": "pro"}, {"field": "colour", "op": "eq", "value": "red"}]}}),
            vec!["rules.all[1].field"],
        ),
        (json!({"rules": {"any": [{"field": "sign_ins", "op": "gte", "value": 1}]}}), vec!["rules.any[0].days"]),
        (json!({"rules": {"any": [{"field": "sign_ins", "op": "gte", "value": 1, "days": 400}]}}), vec!["rules.any[0].days"]),
        (json!({"rules": {"all": [{"field": "mrr_cents", "op": "before", "value": 10}]}}), vec!["rules.all[0].op"]),
        (json!({"rules": {"all": [{"field": "last_sign_in", "op": "after", "value": "yesterday"}]}}), vec!["rules.all[0].value"]),
        (json!({"rules": {"all": [{"field": "status", "op": "in", "value": ["active", "sleeping"]}]}}), vec!["rules.all[0].value[1]"]),
        (json!({"rules": {"all": []}}), vec!["rules.all"]),
        (json!({"rules": {"none": []}}), vec!["rules.none", "rules.field"]),
        (json!({}), vec!["rules"]),
    ] {
        let r = app.call(Method::POST, "/api/v1/analytics/segments/custom/preview", Some(&analyst), Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert_eq!(r.error_fields(), fields, "{body}: {}", r.body);
    }
    // Name and rules checked together on create.
    let r = app
        .call(
            Method::POST,
            "/api/v1/analytics/segments/custom",
            Some(&analyst),
            Some(json!({"name": " ", "rules": {"field": "refunded", "op": "eq", "value": "yes"}})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error_fields(), ["name", "rules.value"], "{}", r.body);
    // Not an id: names no segment.
    let r = app.call(Method::GET, "/api/v1/analytics/segments/custom/not-an-id", Some(&analyst), None).await;
    assert_eq!(r.status, 404, "{}", r.body);
}
