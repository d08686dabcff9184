//! Moderation throughput in `/api/v1/analytics/business` against the demo
//! data: decisions by outcome, the median time from creation to the first
//! decision and the backlog at each month's end equal a recomputation from
//! the chart items and each chart's own history partition (not the index
//! the refresh reads).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Months, Utc};
use serde_json::Value;

use crate::analytics::{month_of, refreshed, time};
use crate::helpers::TestApp;

#[derive(Debug, Default, Clone)]
struct Expected {
    outcomes: BTreeMap<String, i64>,
    seconds: Vec<i64>,
    backlog_end: i64,
}

/// A chart: owner, creation, state, and its decisions `(at, from, to)` in order.
type ChartHistory = (String, DateTime<Utc>, String, Vec<(DateTime<Utc>, String, String)>);

fn median_hours(v: &[i64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort();
    let n = v.len();
    if n == 0 {
        return None;
    }
    let m = if n % 2 == 1 { v[n / 2] as f64 } else { (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0 };
    Some(m / 3600.0)
}

#[tokio::test]
async fn moderation_throughput_equals_a_recomputation_from_the_charts() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let (items, _) = keel_local::seed::generate(now, 400, 44);
    keel_local::seed::put(app.store(), &items).await.unwrap();
    let (_, admin) = app.user(&["admin"]).await;
    let (_, analyst) = app.user(&["analyst"]).await;
    refreshed(&app, &admin).await;

    // Owners' countries, from the user items.
    let query = |pk: &'static str| shared::store::QuerySpec {
        index: Some("gsi3"),
        key_condition: "gsi3pk = :pk",
        values: vec![(":pk", shared::store::s(pk))],
        forward: true,
        ..Default::default()
    };
    let mut country: HashMap<String, String> = HashMap::new();
    for item in app.store().query_all(&query("USERS")).await.unwrap() {
        let u: Value = serde_dynamo::from_item(item).unwrap();
        country.insert(u["id"].as_str().unwrap().into(), u["country"].as_str().unwrap_or("ZZ").into());
    }
    // Each chart and its own decisions.
    let mut charts: Vec<ChartHistory> = Vec::new();
    for item in app.store().query_all(&query("CHARTS")).await.unwrap() {
        let c: Value = serde_dynamo::from_item(item).unwrap();
        let id = c["id"].as_str().unwrap().to_string();
        let spec = shared::store::QuerySpec {
            key_condition: "pk = :pk AND begins_with(sk, :mod)",
            values: vec![(":pk", shared::store::s(format!("CHART#{id}"))), (":mod", shared::store::s("MOD#"))],
            forward: true,
            ..Default::default()
        };
        let mut decisions: Vec<(DateTime<Utc>, String, String)> = Vec::new();
        for item in app.store().query_all(&spec).await.unwrap() {
            let e: Value = serde_dynamo::from_item(item).unwrap();
            decisions.push((time(&e["at"]).unwrap(), e["from"].as_str().unwrap().into(), e["to"].as_str().unwrap().into()));
        }
        decisions.sort();
        charts.push((c["owner_id"].as_str().unwrap().into(), time(&c["created_at"]).unwrap(), c["moderation_status"].as_str().unwrap().into(), decisions));
    }
    assert!(charts.iter().any(|c| c.3.is_empty()) && charts.iter().any(|c| !c.3.is_empty()), "the demo has decided and waiting charts");

    let first = month_of(now - Duration::days(700));
    let last = month_of(now);
    for filter in [None, Some("US")] {
        let mut q = format!("/api/v1/analytics/business?from={first}&to={last}&granularity=month");
        if let Some(c) = filter {
            q += &format!("&country={c}");
        }
        let r = app.get(&q, &analyst).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let as_of = time(&r.body["computed_at"]).unwrap();
        let mut expected: BTreeMap<String, Expected> = BTreeMap::new();
        for (owner, created, status, decisions) in &charts {
            if filter.is_some_and(|c| country.get(owner).map(String::as_str).unwrap_or("ZZ") != c) || *created > as_of {
                continue;
            }
            let decided: Vec<_> = decisions.iter().filter(|d| d.0 <= as_of).collect();
            for (at, _, to) in &decided {
                *expected.entry(month_of(*at)).or_default().outcomes.entry(to.clone()).or_default() += 1;
            }
            if let Some((at, _, _)) = decided.first() {
                expected.entry(month_of(*at)).or_default().seconds.push((*at - *created).num_seconds());
            }
            let initially_pending = decisions.first().map_or(status == "pending", |d| d.1 == "pending");
            let mut month = crate::analytics::first_of(&first);
            while month <= as_of {
                let end = month.checked_add_months(Months::new(1)).unwrap().min(as_of);
                if initially_pending && *created < end && decided.first().is_none_or(|d| d.0 >= end) {
                    expected.entry(month_of(month)).or_default().backlog_end += 1;
                }
                month = month.checked_add_months(Months::new(1)).unwrap();
            }
        }
        let periods = r.body["periods"].as_array().unwrap();
        assert!(periods.len() >= 23);
        let mut decided_total = 0;
        for p in periods {
            let month = p["period"].as_str().unwrap();
            let x = expected.get(month).cloned().unwrap_or_default();
            let m = &p["figures"]["moderation"];
            for outcome in ["approved", "rejected", "flagged", "hidden"] {
                assert_eq!(m[outcome].as_i64().unwrap(), x.outcomes.get(outcome).copied().unwrap_or(0), "{filter:?} {month} {outcome}");
            }
            assert_eq!(m["decisions"].as_i64().unwrap(), x.outcomes.values().sum::<i64>(), "{filter:?} {month}");
            assert_eq!(m["first_decisions"].as_i64().unwrap() as usize, x.seconds.len(), "{filter:?} {month}");
            let median = m["median_hours_to_first_decision"].as_f64();
            match median_hours(&x.seconds) {
                Some(h) => assert!((median.unwrap() - h).abs() < 1e-9, "{filter:?} {month}: {median:?} vs {h}"),
                None => assert!(median.is_none(), "{filter:?} {month}"),
            }
            assert_eq!(m["backlog_end"].as_i64().unwrap(), x.backlog_end, "{filter:?} {month} backlog");
            decided_total += x.seconds.len();
        }
        assert!(decided_total > 0, "{filter:?}: no decisions in the range");
        // Totals: every decision of the range, the median over all its first decisions, the backlog at its end.
        let totals = &r.body["totals"]["moderation"];
        let months: Vec<&str> = periods.iter().map(|p| p["period"].as_str().unwrap()).collect();
        let all: Vec<i64> = months.iter().flat_map(|m| expected.get(*m).map(|x| x.seconds.clone()).unwrap_or_default()).collect();
        assert!((totals["median_hours_to_first_decision"].as_f64().unwrap() - median_hours(&all).unwrap()).abs() < 1e-9);
        assert_eq!(totals["backlog_end"].as_i64().unwrap(), expected.get(*months.last().unwrap()).map_or(0, |x| x.backlog_end));
    }
}
