//! `/api/v1/analytics/revenue` against the demo data: every figure of every
//! month equals a recomputation written here from the table's orders
//! (a sweep over each customer's paid terms, not the rollup code), for
//! everyone and for filters; and for every month × country × plan the MRR
//! movements sum to the change of MRR.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Months, TimeZone, Utc};
use http::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// A paid term as the docs define it: `(start, end]`, its MRR and segment.
#[derive(Debug, Clone)]
struct Term {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    mrr: i64,
    country: String,
    plan: String,
}

pub(crate) fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

pub(crate) fn month_of(t: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", t.year(), t.month())
}

pub(crate) fn first_of(month: &str) -> DateTime<Utc> {
    let (y, m) = month.split_once('-').unwrap();
    Utc.with_ymd_and_hms(y.parse().unwrap(), m.parse().unwrap(), 1, 0, 0, 0).unwrap()
}

/// Every order in the table, read from its month partitions.
pub(crate) async fn orders(app: &TestApp, first: &str, last: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut month = first_of(first);
    while month_of(month).as_str() <= last {
        let spec = shared::store::QuerySpec {
            index: Some("gsi2"),
            key_condition: "gsi2pk = :pk",
            values: vec![(":pk", shared::store::s(format!("ORDERS#{}", month_of(month))))],
            forward: true,
            ..Default::default()
        };
        for item in app.store().query_all(&spec).await.unwrap() {
            out.push(serde_dynamo::from_item::<_, Value>(item).unwrap());
        }
        month = month.checked_add_months(Months::new(1)).unwrap();
    }
    out
}

/// The expected integer figures of one month of one group.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Expected {
    gross: i64,
    refunds: i64,
    orders: i64,
    refunded_orders: i64,
    mrr_start: i64,
    mrr_end: i64,
    new: i64,
    reactivation: i64,
    expansion: i64,
    contraction: i64,
    churn: i64,
    customers_start: i64,
    customers_end: i64,
    new_customers: i64,
    reactivated_customers: i64,
    churned_customers: i64,
    reactivation_days: i64,
}

type Filter = (Option<String>, Option<String>);

fn matches(filter: &Filter, country: &str, plan: &str) -> bool {
    filter.0.as_deref().is_none_or(|c| c == country) && filter.1.as_deref().is_none_or(|p| p == plan)
}

/// Reporting periods, written here from the docs (UTC; ISO weeks from Monday).
#[derive(Debug, Clone, Copy, PartialEq)]
enum By {
    Day,
    Week,
    Month,
    Quarter,
}

impl By {
    fn name(self) -> &'static str {
        match self {
            By::Day => "day",
            By::Week => "week",
            By::Month => "month",
            By::Quarter => "quarter",
        }
    }

    /// The first instant of the period holding `t`.
    fn start(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let day = Utc.with_ymd_and_hms(t.year(), t.month(), t.day(), 0, 0, 0).unwrap();
        match self {
            By::Day => day,
            By::Week => day - chrono::Duration::days(t.weekday().num_days_from_monday() as i64),
            By::Month => first_of(&month_of(t)),
            By::Quarter => Utc.with_ymd_and_hms(t.year(), (t.month() - 1) / 3 * 3 + 1, 1, 0, 0, 0).unwrap(),
        }
    }

    fn next(self, start: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            By::Day => start + chrono::Duration::days(1),
            By::Week => start + chrono::Duration::days(7),
            By::Month => start.checked_add_months(Months::new(1)).unwrap(),
            By::Quarter => start.checked_add_months(Months::new(3)).unwrap(),
        }
    }

    fn key(self, t: DateTime<Utc>) -> String {
        let s = self.start(t);
        match self {
            By::Day => s.format("%Y-%m-%d").to_string(),
            By::Week => format!("{}-W{:02}", s.iso_week().year(), s.iso_week().week()),
            By::Month => month_of(s),
            By::Quarter => format!("{}-Q{}", s.year(), (s.month() - 1) / 3 + 1),
        }
    }
}

/// Recompute every month from `first` to the month of `as_of` for `filter`.
fn recompute(orders: &[Value], as_of: DateTime<Utc>, first: &str, filter: &Filter) -> BTreeMap<String, Expected> {
    recompute_by(orders, as_of, first_of(first), filter, By::Month)
}

/// Recompute every period of `by` from the one holding `first` to the one of `as_of` for `filter`.
fn recompute_by(orders: &[Value], as_of: DateTime<Utc>, first: DateTime<Utc>, filter: &Filter, by: By) -> BTreeMap<String, Expected> {
    let mut out: BTreeMap<String, Expected> = BTreeMap::new();
    let months: Vec<(String, DateTime<Utc>)> = {
        let mut v = vec![];
        let mut m = by.start(first);
        while m <= as_of {
            v.push((by.key(m), m));
            m = by.next(m);
        }
        v
    };
    // Revenue by order date and refund date.
    let mut terms: HashMap<String, Vec<Term>> = HashMap::new();
    for o in orders {
        let country = o["country"].as_str().filter(|c| !c.is_empty()).unwrap_or("ZZ").to_string();
        let plan = o["plan"].as_str().filter(|p| !p.is_empty()).unwrap_or("none").to_string();
        let amount = o["amount_cents"].as_i64().unwrap();
        let created = time(&o["created_at"]).unwrap();
        if created > as_of {
            continue;
        }
        if matches(filter, &country, &plan) {
            let e = out.entry(by.key(created)).or_default();
            e.gross += amount;
            e.orders += 1;
            if o["status"] == "refunded" || o.get("refunded_at").is_some() {
                let at = time(&o["refunded_at"]).unwrap_or(created);
                if at <= as_of {
                    let e = out.entry(by.key(at)).or_default();
                    e.refunds += o["refunded_cents"].as_i64().unwrap_or(amount);
                    e.refunded_orders += 1;
                }
            }
        }
        let months = match o["billing"].as_str() {
            Some("monthly") => 1,
            Some("annual") => 12,
            _ => continue,
        };
        let start = time(&o["period_start"]).unwrap_or(created);
        let mut end = time(&o["period_end"]).unwrap_or_else(|| start.checked_add_months(Months::new(months)).unwrap());
        if let Some(early) = time(&o["ended_at"]) {
            end = end.min(early);
        }
        // Annual: a twelfth, to the nearest cent, halves up.
        let mrr = if months == 12 { (amount * 2 + 12) / 24 } else { amount };
        if end > start && mrr > 0 && start < as_of {
            terms.entry(o["user_id"].as_str().unwrap().to_string()).or_default().push(Term { start, end, mrr, country, plan });
        }
    }
    for terms in terms.values() {
        // A sweep: +MRR at each start, −MRR at each end, per segment; the
        // level after each instant.
        let mut deltas: BTreeMap<DateTime<Utc>, Vec<(String, i64)>> = BTreeMap::new();
        for t in terms {
            let key = format!("{}/{}", t.country, t.plan);
            deltas.entry(t.start).or_default().push((key.clone(), t.mrr));
            deltas.entry(t.end).or_default().push((key, -t.mrr));
        }
        let mut steps: Vec<(DateTime<Utc>, BTreeMap<String, i64>)> = Vec::new();
        let mut level: BTreeMap<String, i64> = BTreeMap::new();
        for (t, ds) in deltas {
            for (k, d) in ds {
                *level.entry(k).or_default() += d;
            }
            level.retain(|_, v| *v != 0);
            steps.push((t, level.clone()));
        }
        let in_filter = |l: &BTreeMap<String, i64>| -> i64 {
            l.iter()
                .filter(|(k, _)| {
                    let (c, p) = k.split_once('/').unwrap();
                    matches(filter, c, p)
                })
                .map(|(_, v)| v)
                .sum()
        };
        let everything = |l: &BTreeMap<String, i64>| l.values().sum::<i64>();
        let empty = BTreeMap::new();
        // The level in force just before `t` (what ran up to `t`).
        let before = |t: DateTime<Utc>| steps.iter().rev().find(|(at, _)| *at < t).map_or(&empty, |(_, l)| l);
        let mut paid_before = false;
        let mut last_churn: Option<DateTime<Utc>> = None;
        for (month, ms) in &months {
            let (ms, me) = (*ms, by.next(*ms).min(as_of));
            let (start, end) = (before(ms), before(me));
            let (s_all, e_all) = (everything(start), everything(end));
            let (s, e) = (in_filter(start), in_filter(end));
            // Inside the month: the first gain from 0 (its level and the
            // days since the last churn), and whether a payer dipped to 0.
            let mut paying = s_all > 0;
            let mut gain: Option<(i64, Option<i64>)> = None;
            let mut dip_days: Option<i64> = None;
            for (t, l) in steps.iter().filter(|(t, _)| *t >= ms && *t < me) {
                let now = everything(l) > 0;
                if paying && !now {
                    last_churn = Some(*t);
                }
                if !paying && now {
                    let days = if paid_before { last_churn.map(|c| (*t - c).num_days()) } else { None };
                    if s_all > 0 && dip_days.is_none() {
                        dip_days = Some(days.unwrap_or(0));
                    }
                    if s_all == 0 && gain.is_none() {
                        gain = Some((in_filter(l), days));
                    }
                }
                paid_before |= now;
                paying = now;
            }
            let x = out.entry(month.clone()).or_default();
            x.mrr_start += s;
            x.mrr_end += e;
            x.customers_start += (s > 0) as i64;
            x.customers_end += (e > 0) as i64;
            let joined = |x: &mut Expected, amount: i64, days: Option<i64>| {
                if amount <= 0 {
                    return;
                }
                if let Some(d) = days {
                    x.reactivation += amount;
                    x.reactivated_customers += 1;
                    x.reactivation_days += d;
                } else {
                    x.new += amount;
                    x.new_customers += 1;
                }
            };
            if s_all > 0 && e_all > 0 {
                if let Some(d) = dip_days {
                    x.churn += s;
                    x.churned_customers += (s > 0) as i64;
                    joined(x, e, Some(d));
                } else if e > s {
                    x.expansion += e - s;
                } else {
                    x.contraction += s - e;
                }
            } else if s_all == 0 && e_all > 0 {
                joined(x, e, gain.and_then(|g| g.1));
            } else if s_all > 0 {
                x.churn += s;
                x.churned_customers += (s > 0) as i64;
            } else if let Some((p, days)) = gain {
                joined(x, p, days);
                x.churn += p;
            }
        }
    }
    out
}

fn rate(a: i64, b: i64) -> Value {
    if b == 0 { Value::Null } else { json!(a as f64 / b as f64) }
}

/// Check every figure of `period` against `x` (and `history`: the expected
/// months before it, for LTV).
fn check_period(period: &Value, x: &Expected, history: &[Expected], context: &str) {
    let int = |k: &str| period[k].as_i64().unwrap_or_else(|| panic!("{context}: {k} missing in {period}"));
    let mv = |k: &str| period["movements"][k].as_i64().unwrap();
    let pairs = [
        ("gross_cents", int("gross_cents"), x.gross),
        ("refunds_cents", int("refunds_cents"), x.refunds),
        ("net_cents", int("net_cents"), x.gross - x.refunds),
        ("orders", int("orders"), x.orders),
        ("refunded_orders", int("refunded_orders"), x.refunded_orders),
        ("mrr_start_cents", int("mrr_start_cents"), x.mrr_start),
        ("mrr_cents", int("mrr_cents"), x.mrr_end),
        ("arr_cents", int("arr_cents"), 12 * x.mrr_end),
        ("new", mv("new_cents"), x.new),
        ("reactivation", mv("reactivation_cents"), x.reactivation),
        ("expansion", mv("expansion_cents"), x.expansion),
        ("contraction", mv("contraction_cents"), x.contraction),
        ("churn", mv("churn_cents"), x.churn),
        ("customers_start", int("customers_start"), x.customers_start),
        ("customers", int("customers"), x.customers_end),
        ("new_customers", int("new_customers"), x.new_customers),
        ("reactivated_customers", int("reactivated_customers"), x.reactivated_customers),
        ("churned_customers", int("churned_customers"), x.churned_customers),
    ];
    for (name, got, want) in pairs {
        assert_eq!(got, want, "{context}: {name}");
    }
    let arpa = (x.customers_end > 0).then(|| ((x.mrr_end as f64) / (x.customers_end as f64)).round() as i64);
    assert_eq!(period["arpa_cents"].as_i64(), arpa, "{context}: arpa");
    let s = x.mrr_start;
    let close = |name: &str, want: Value| {
        let got = &period[name];
        match (got.as_f64(), want.as_f64()) {
            (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{context}: {name} {g} != {w}"),
            _ => assert_eq!(got, &want, "{context}: {name}"),
        }
    };
    close("customer_churn_rate", rate(x.churned_customers, x.customers_start));
    close("gross_mrr_churn_rate", rate(x.churn + x.contraction, s));
    close("net_mrr_churn_rate", rate(x.churn + x.contraction - x.expansion - x.reactivation, s));
    close("nrr", rate(s + x.expansion - x.contraction - x.churn, s));
    close("grr", rate(s - x.contraction - x.churn, s));
    close("quick_ratio", rate(x.new + x.expansion + x.reactivation, x.contraction + x.churn));
    close("avg_days_since_churn", rate(x.reactivation_days, x.reactivated_customers));
    // LTV: ARPA ÷ the mean customer churn rate of the previous 6 months.
    let rates: Vec<f64> =
        history.iter().rev().take(6).filter(|h| h.customers_start > 0).map(|h| h.churned_customers as f64 / h.customers_start as f64).collect();
    let mean = if rates.is_empty() { 0.0 } else { rates.iter().sum::<f64>() / rates.len() as f64 };
    match (arpa, mean > 0.0) {
        (Some(a), true) => {
            let want = a as f64 / mean;
            let got = period["ltv_cents"].as_i64().unwrap_or_else(|| panic!("{context}: ltv missing"));
            // Rounded to the cent; the mean's summation order may differ in the last bit.
            assert!((got as f64 - want).abs() <= 0.5 + 1e-6, "{context}: ltv {got} vs {want}");
        }
        _ => assert!(period["ltv_cents"].is_null(), "{context}: ltv should be n/a: {}", period["ltv_cents"]),
    }
}

pub(crate) async fn refreshed(app: &TestApp, token: &str) {
    let r = app.call(Method::POST, "/api/v1/analytics/refresh", Some(token), None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let job_id = r.body["job_id"].as_str().unwrap().to_string();
    assert!(app.run_jobs().await >= 1);
    let job = shared::domain::jobs::get(app.store(), &job_id).await.unwrap().unwrap();
    assert_eq!(job.status, shared::domain::jobs::JobStatus::Succeeded, "{job:?}");
    // The job saved its steps as it went; the last is the insights'.
    assert_eq!((job.progress.stage.as_deref(), job.progress.processed, job.progress.total), (Some("insights"), 1, 1), "{job:?}");
    assert_eq!(app.audit_for("job", &job_id).await.first().map(|e| e.action.clone()).as_deref(), Some("analytics.refresh"));
}

#[tokio::test]
async fn revenue_equals_a_recomputation_from_the_orders() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    // The demo data's draws depend on `now`: take the first seed whose data
    // has every kind of movement (a downgrade is the rarest), so the checks
    // below always have each to check.
    let (items, summary) = (12..)
        .map(|seed| keel_local::seed::generate(now, 400, seed))
        .find(|(_, s)| s.downgrades > 0 && s.upgrades > 0 && s.reactivations > 0 && s.refunds > 0)
        .expect("some seed");
    keel_local::seed::put(app.store(), &items).await.unwrap();
    let (_, admin) = app.user(&["admin"]).await;
    let (_, analyst) = app.user(&["analyst"]).await;

    // Before any refresh: zeros, and no computation time.
    let r = app.get("/api/v1/analytics/revenue", &analyst).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["computed_at"].is_null() && r.body["totals"]["gross_cents"] == 0);

    refreshed(&app, &admin).await;
    let first = month_of(now - chrono::Duration::days(740));
    let last = month_of(now);
    let orders = orders(&app, &first, &last).await;
    assert_eq!(orders.len(), summary.orders);

    let query = |filter: &Filter| {
        let mut q = format!("/api/v1/analytics/revenue?from={first}&to={last}&granularity=month");
        if let Some(c) = &filter.0 {
            q += &format!("&country={c}");
        }
        if let Some(p) = &filter.1 {
            q += &format!("&plan={p}");
        }
        q
    };
    let segments: BTreeSet<(String, String)> =
        orders.iter().map(|o| (o["country"].as_str().unwrap().to_string(), o["plan"].as_str().unwrap().to_string())).collect();
    let mut filters: Vec<Filter> = vec![(None, None), (Some("US".into()), None), (None, Some("pro".into())), (Some("DE".into()), Some("team".into()))];
    filters.extend(segments.iter().map(|(c, p)| (Some(c.clone()), Some(p.clone()))));
    let mut checked = 0;
    let mut moved = BTreeMap::<&str, i64>::new();
    for filter in &filters {
        let r = app.get(&query(filter), &analyst).await;
        assert_eq!(r.status, 200, "{filter:?}: {}", r.body);
        let as_of = time(&r.body["computed_at"]).unwrap();
        let expected = recompute(&orders, as_of, &first, filter);
        let periods = r.body["periods"].as_array().unwrap();
        let months: Vec<String> = expected.keys().cloned().collect();
        assert_eq!(periods.iter().map(|p| p["period"].as_str().unwrap().to_string()).collect::<Vec<_>>(), months);
        let mut history: Vec<Expected> = Vec::new();
        for (i, period) in periods.iter().enumerate() {
            let x = expected[&months[i]];
            check_period(period, &x, &history, &format!("{filter:?} {}", months[i]));
            // The invariant, to the cent, for every month of every group.
            let m = &period["movements"];
            let balanced = x.mrr_start + m["new_cents"].as_i64().unwrap() + m["reactivation_cents"].as_i64().unwrap() + m["expansion_cents"].as_i64().unwrap()
                - m["contraction_cents"].as_i64().unwrap()
                - m["churn_cents"].as_i64().unwrap();
            assert_eq!(period["mrr_cents"].as_i64().unwrap(), balanced, "{filter:?} {}: movements do not sum to the MRR change", months[i]);
            if let Some(prev) = history.last() {
                assert_eq!(x.mrr_start, prev.mrr_end, "{filter:?} {}: MRR start is last month's end", months[i]);
            }
            if filter.0.is_none() && filter.1.is_none() {
                for k in ["new_cents", "reactivation_cents", "expansion_cents", "contraction_cents", "churn_cents"] {
                    *moved.entry(k).or_default() += m[k].as_i64().unwrap();
                }
            }
            history.push(x);
            checked += 1;
        }
        // Totals sum the months.
        let totals = &r.body["totals"];
        assert_eq!(totals["gross_cents"].as_i64().unwrap(), history.iter().map(|h| h.gross).sum::<i64>(), "{filter:?}");
        assert_eq!(totals["mrr_end_cents"].as_i64().unwrap(), history.last().unwrap().mrr_end, "{filter:?}");
    }
    assert!(checked > 24 * filters.len());
    // The demo data exercises every kind of movement.
    for (k, v) in &moved {
        assert!(*v > 0, "no {k} in the demo data: {moved:?}");
    }

    // By week, quarter and day: every period's figures equal the same
    // recomputation over those periods, LTV from the months before the one
    // the period ends in.
    for (by, from, days) in [
        (By::Week, now - chrono::Duration::days(740), 740),
        (By::Quarter, now - chrono::Duration::days(740), 740),
        (By::Day, now - chrono::Duration::days(120), 120),
    ] {
        for filter in &filters[..4] {
            let mut q = format!("/api/v1/analytics/revenue?from={}&granularity={}", from.format("%Y-%m-%d"), by.name());
            if let Some(c) = &filter.0 {
                q += &format!("&country={c}");
            }
            if let Some(p) = &filter.1 {
                q += &format!("&plan={p}");
            }
            let r = app.get(&q, &analyst).await;
            assert_eq!(r.status, 200, "{q}: {}", r.body);
            assert_eq!(r.body["granularity"], by.name());
            let as_of = time(&r.body["computed_at"]).unwrap();
            let monthly = recompute(&orders, as_of, &first, filter);
            // From the first orders: whether a gain is new or a reactivation
            // depends on every period before.
            let expected = recompute_by(&orders, as_of, first_of(&first), filter, by);
            let periods = r.body["periods"].as_array().unwrap();
            assert!(periods.len() as i64 >= days / 92, "{q}: {} periods", periods.len());
            let mut starts = BTreeMap::new();
            let mut t = by.start(from);
            while t <= as_of {
                starts.insert(by.key(t), t);
                t = by.next(t);
            }
            assert_eq!(periods.iter().map(|p| p["period"].as_str().unwrap()).collect::<Vec<_>>(), starts.keys().map(|k| k.as_str()).collect::<Vec<_>>(), "{q}");
            let mut total_gross = 0;
            for period in periods {
                let key = period["period"].as_str().unwrap();
                let x = expected.get(key).copied().unwrap_or_default();
                // The month the period ends in, and the expected months before it.
                let end_month = month_of(by.next(starts[key]) - chrono::Duration::seconds(1));
                let history: Vec<Expected> = monthly.iter().filter(|(m, _)| **m < end_month).map(|(_, x)| *x).collect();
                check_period(period, &x, &history, &format!("{} {filter:?} {key}", by.name()));
                total_gross += x.gross;
            }
            assert_eq!(r.body["totals"]["gross_cents"].as_i64().unwrap(), total_gross, "{q}");
        }
    }
}

/// `segment=`: the RFM segments partition every customer, so their
/// revenue sums to everyone's, period by period; a custom segment of one
/// country's users has that country's revenue and business figures.
#[tokio::test]
async fn segment_filters_partition_revenue_and_match_a_country() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let (items, _) = keel_local::seed::generate(now, 300, 5);
    keel_local::seed::put(app.store(), &items).await.unwrap();
    let (_, admin) = app.user(&["admin"]).await;
    let (_, analyst) = app.user(&["analyst"]).await;
    let body = json!({"name": "Germany", "rules": {"field": "country", "op": "eq", "value": "DE"}});
    let r = app.call(Method::POST, "/api/v1/analytics/segments/custom", Some(&analyst), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let germany = r.body["id"].as_str().unwrap().to_string();
    refreshed(&app, &admin).await;
    let first = month_of(now - chrono::Duration::days(740));
    let r = app.get(&format!("/api/v1/analytics/segments?from={first}"), &analyst).await;
    let named: Vec<String> = r.body["rfm"]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["customers"].as_i64().unwrap() > 0)
        .map(|s| s["segment"].as_str().unwrap().to_string())
        .collect();
    assert!(named.len() >= 4, "{named:?}");
    for granularity in ["month", "quarter", "week"] {
        let range = if granularity == "week" {
            "from=".to_string() + &(now - chrono::Duration::days(200)).format("%Y-%m-%d").to_string()
        } else {
            format!("from={first}")
        };
        let all = app.get(&format!("/api/v1/analytics/revenue?{range}&granularity={granularity}"), &analyst).await;
        assert_eq!(all.status, 200, "{}", all.body);
        let mut sums: BTreeMap<String, [i64; 6]> = BTreeMap::new();
        for name in &named {
            let r = app.get(&format!("/api/v1/analytics/revenue?{range}&granularity={granularity}&segment={name}"), &analyst).await;
            assert_eq!(r.status, 200, "{name}: {}", r.body);
            assert_eq!(r.body["segment"], name.as_str());
            for p in r.body["periods"].as_array().unwrap() {
                let e = sums.entry(p["period"].as_str().unwrap().to_string()).or_default();
                for (i, k) in ["gross_cents", "refunds_cents", "mrr_cents", "customers", "new_customers"].iter().enumerate() {
                    e[i] += p[k].as_i64().unwrap();
                }
                e[5] += p["movements"]["churn_cents"].as_i64().unwrap();
            }
        }
        for p in all.body["periods"].as_array().unwrap() {
            let key = p["period"].as_str().unwrap();
            let want = [
                p["gross_cents"].as_i64().unwrap(),
                p["refunds_cents"].as_i64().unwrap(),
                p["mrr_cents"].as_i64().unwrap(),
                p["customers"].as_i64().unwrap(),
                p["new_customers"].as_i64().unwrap(),
                p["movements"]["churn_cents"].as_i64().unwrap(),
            ];
            assert_eq!(sums.get(key).copied().unwrap_or_default(), want, "{granularity} {key}: the RFM segments sum to everyone");
        }
    }
    // A custom segment of Germany's users: Germany's figures.
    for path in ["revenue", "business"] {
        let by_segment = app.get(&format!("/api/v1/analytics/{path}?from={first}&segment={germany}"), &analyst).await;
        let by_country = app.get(&format!("/api/v1/analytics/{path}?from={first}&country=DE"), &analyst).await;
        assert_eq!(by_segment.status, 200, "{}", by_segment.body);
        assert_eq!(by_segment.body["periods"], by_country.body["periods"], "{path}: segment Germany = country DE");
        assert!(by_segment.body["totals"]["signups"].as_i64().unwrap_or(1) > 0 && by_segment.body["totals"]["gross_cents"].as_i64().unwrap_or(1) > 0);
    }
    for (query, field) in [
        ("revenue?segment=whales", "segment"),
        ("revenue?segment=champions&country=US", "segment"),
        ("business?segment=champions&country=US", "segment"),
        ("business?segment=At_Risk", "segment"),
    ] {
        let r = app.get(&format!("/api/v1/analytics/{query}"), &analyst).await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert_eq!(r.error_fields(), [field], "{query}: {}", r.body);
    }
}

#[tokio::test]
async fn bad_queries_name_the_field() {
    let app = TestApp::spawn().await;
    let (_, analyst) = app.user(&["analyst"]).await;
    for (query, field) in [
        ("from=2025-13", "from"),
        ("to=2999-01", "to"),
        ("from=2026-02&to=2026-01", "from"),
        ("granularity=fortnight", "granularity"),
        ("granularity=week&from=2026-W60", "from"),
        ("granularity=day&from=2020-01-01", "from"),
        ("country=usa", "country"),
        ("plan=PRO", "plan"),
        ("colour=blue", "colour"),
    ] {
        let r = app.get(&format!("/api/v1/analytics/revenue?{query}"), &analyst).await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert_eq!(r.error_fields(), [field], "{query}: {}", r.body);
    }
}

/// What one user's events say, read from the user's own partition (not
/// the day partitions the refresh reads).
#[derive(Debug, Default)]
struct Activity {
    signed_up: Option<DateTime<Utc>>,
    country: String,
    charts: Vec<DateTime<Utc>>,
    days: BTreeSet<chrono::NaiveDate>,
}

async fn activities(app: &TestApp) -> HashMap<String, Activity> {
    let users = shared::store::QuerySpec {
        index: Some("gsi3"),
        key_condition: "gsi3pk = :pk",
        values: vec![(":pk", shared::store::s("USERS"))],
        forward: true,
        ..Default::default()
    };
    let mut out = HashMap::new();
    for user in app.store().query_all(&users).await.unwrap() {
        let id = shared::store::attr_s(&user, "id").unwrap().to_string();
        let spec = shared::store::QuerySpec {
            key_condition: "pk = :pk AND begins_with(sk, :ev)",
            values: vec![(":pk", shared::store::s(format!("USER#{id}"))), (":ev", shared::store::s("EVENT#"))],
            forward: true,
            ..Default::default()
        };
        let mut a = Activity { country: "ZZ".into(), ..Default::default() };
        for item in app.store().query_all(&spec).await.unwrap() {
            let e: Value = serde_dynamo::from_item(item).unwrap();
            let t = time(&e["ts"]).unwrap();
            a.days.insert(t.date_naive());
            match e["kind"].as_str().unwrap() {
                "signup" => {
                    a.signed_up = Some(t);
                    a.country = e["country"].as_str().unwrap_or("ZZ").to_string();
                }
                "chart_created" => a.charts.push(t),
                _ => {}
            }
        }
        out.insert(id, a);
    }
    out
}

/// MRR of each customer's terms at an instant: terms with start < t ≤ end.
fn mrr_at(orders: &[Value], user: &str, t: DateTime<Utc>, as_of: DateTime<Utc>) -> i64 {
    let mut sum = 0;
    for o in orders.iter().filter(|o| o["user_id"] == user) {
        let months = match o["billing"].as_str() {
            Some("monthly") => 1,
            Some("annual") => 12,
            _ => continue,
        };
        let amount = o["amount_cents"].as_i64().unwrap();
        let start = time(&o["period_start"]).unwrap_or_else(|| time(&o["created_at"]).unwrap());
        let mut end = time(&o["period_end"]).unwrap_or_else(|| start.checked_add_months(Months::new(months)).unwrap());
        if let Some(early) = time(&o["ended_at"]) {
            end = end.min(early);
        }
        let mrr = if months == 12 { (amount * 2 + 12) / 24 } else { amount };
        if start < as_of && start < t && t <= end {
            sum += mrr;
        }
    }
    sum
}

/// The docs' RFM map: rows R = 5..1, columns FM = 1..5.
fn rfm_segment(r: i64, f: i64, m: i64) -> &'static str {
    const MAP: [[&str; 5]; 5] = [
        ["new", "potential_loyalist", "potential_loyalist", "champions", "champions"],
        ["new", "potential_loyalist", "potential_loyalist", "loyal", "champions"],
        ["hibernating", "hibernating", "loyal", "loyal", "loyal"],
        ["lost", "hibernating", "at_risk", "at_risk", "cant_lose"],
        ["lost", "lost", "at_risk", "at_risk", "cant_lose"],
    ];
    let fm = (f + m + 1) / 2;
    MAP[(5 - r) as usize][(fm - 1) as usize]
}

#[tokio::test]
async fn business_and_segments_equal_a_recomputation_from_the_items() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let (items, _) = keel_local::seed::generate(now, 400, 21);
    keel_local::seed::put(app.store(), &items).await.unwrap();
    let (_, admin) = app.user(&["admin"]).await;
    let (_, analyst) = app.user(&["analyst"]).await;
    let r = app.get("/api/v1/analytics/segments", &analyst).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["computed_at"].is_null() && r.body["rfm"]["customers"] == 0);
    refreshed(&app, &admin).await;

    let first = month_of(now - chrono::Duration::days(740));
    let last = month_of(now);
    let orders = orders(&app, &first, &last).await;
    let users = activities(&app).await;

    // Business, for everyone and two countries.
    for country in [None, Some("US"), Some("DE")] {
        let mut q = format!("/api/v1/analytics/business?from={first}&to={last}&granularity=month");
        if let Some(c) = country {
            q += &format!("&country={c}");
        }
        let r = app.get(&q, &analyst).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let as_of = time(&r.body["computed_at"]).unwrap();
        let payers: BTreeSet<&str> = orders.iter().filter(|o| time(&o["created_at"]).unwrap() <= as_of).map(|o| o["user_id"].as_str().unwrap()).collect();
        let mine: Vec<(&String, &Activity)> = users.iter().filter(|(_, a)| country.is_none_or(|c| a.country == c)).collect();
        let mut total_signups = 0;
        for p in r.body["periods"].as_array().unwrap() {
            let month = p["period"].as_str().unwrap();
            let f = &p["figures"];
            let cohort: Vec<&(&String, &Activity)> = mine.iter().filter(|(_, a)| a.signed_up.is_some_and(|t| month_of(t) == month)).collect();
            let activated: Vec<&&(&String, &Activity)> =
                cohort.iter().filter(|(_, a)| a.charts.iter().min().is_some_and(|c| *c - a.signed_up.unwrap() <= chrono::Duration::days(7))).collect();
            let paid = activated.iter().filter(|(id, _)| payers.contains(id.as_str())).count();
            let mau = mine.iter().filter(|(_, a)| a.days.iter().any(|d| format!("{:04}-{:02}", d.year(), d.month()) == month)).count();
            let charts: usize = mine.iter().map(|(_, a)| a.charts.iter().filter(|c| month_of(**c) == month).count()).sum();
            let mut days = 0;
            let (mut dau, mut wau) = (0, 0);
            let mut day = first_of(month).date_naive();
            while month_of(first_of(month)) == format!("{:04}-{:02}", day.year(), day.month()) && day <= as_of.date_naive() {
                days += 1;
                dau += mine.iter().filter(|(_, a)| a.days.contains(&day)).count();
                wau += mine.iter().filter(|(_, a)| a.days.range(day - chrono::Duration::days(6)..=day).next().is_some()).count();
                day = day.succ_opt().unwrap();
            }
            let ctx = format!("{country:?} {month}");
            assert_eq!(f["signups"], cohort.len(), "{ctx}: signups");
            assert_eq!(f["activations"], activated.len(), "{ctx}: activations");
            assert_eq!(f["paid"], paid, "{ctx}: paid");
            assert_eq!(f["mau"].as_f64().unwrap(), mau as f64, "{ctx}: mau");
            assert_eq!(f["charts_created"], charts, "{ctx}: charts");
            assert_eq!(f["days"], days, "{ctx}: days");
            for (name, n) in [("dau_avg", dau), ("wau_avg", wau)] {
                match f[name].as_f64() {
                    Some(got) => assert!((got - n as f64 / days as f64).abs() < 1e-9, "{ctx}: {name} {got} vs {n} / {days}"),
                    None => assert_eq!(days, 0, "{ctx}: {name}"),
                }
            }
            if mau > 0 {
                assert!((f["stickiness"].as_f64().unwrap() - dau as f64 / days as f64 / mau as f64).abs() < 1e-9, "{ctx}: stickiness");
            }
            total_signups += cohort.len();
        }
        assert_eq!(r.body["totals"]["signups"], total_signups, "{country:?}: totals");
        if country.is_none() {
            assert!(total_signups >= 390, "the seeded users signed up in the range: {total_signups}");
        }
    }

    // By week, quarter and day, for everyone and the US: signups, active
    // users of the period, the days' DAU and the rolling 30-day MAU.
    for (by, back) in [(By::Week, 100), (By::Quarter, 400), (By::Day, 20)] {
        for country in [None, Some("US")] {
            let from = now - chrono::Duration::days(back);
            let mut q = format!("/api/v1/analytics/business?from={}&granularity={}", from.format("%Y-%m-%d"), by.name());
            if let Some(c) = country {
                q += &format!("&country={c}");
            }
            let r = app.get(&q, &analyst).await;
            assert_eq!(r.status, 200, "{q}: {}", r.body);
            let as_of = time(&r.body["computed_at"]).unwrap();
            let mine: Vec<&Activity> = users.values().filter(|a| country.is_none_or(|c| a.country == c)).collect();
            let periods = r.body["periods"].as_array().unwrap();
            let mut start = by.start(from);
            assert!(periods.len() >= 3, "{q}");
            for p in periods {
                let key = p["period"].as_str().unwrap();
                assert_eq!(key, by.key(start), "{q}");
                let end = by.next(start);
                let f = &p["figures"];
                let signups = mine.iter().filter(|a| a.signed_up.is_some_and(|t| t >= start && t < end && t <= as_of)).count();
                let active = mine.iter().filter(|a| a.days.range(start.date_naive()..end.date_naive()).next().is_some()).count();
                let (mut days, mut dau, mut mau) = (0, 0, 0);
                let mut day = start.date_naive();
                while day < end.date_naive() && day <= as_of.date_naive() {
                    days += 1;
                    dau += mine.iter().filter(|a| a.days.contains(&day)).count();
                    mau += mine.iter().filter(|a| a.days.range(day - chrono::Duration::days(29)..=day).next().is_some()).count();
                    day = day.succ_opt().unwrap();
                }
                let ctx = format!("{} {country:?} {key}", by.name());
                assert_eq!(f["signups"], signups, "{ctx}: signups");
                assert_eq!(f["active_users"].as_f64().unwrap(), active as f64, "{ctx}: active users");
                assert_eq!(f["days"], days, "{ctx}: days");
                assert!((f["dau_avg"].as_f64().unwrap() - dau as f64 / days as f64).abs() < 1e-9, "{ctx}: dau");
                assert!((f["mau"].as_f64().unwrap() - mau as f64 / days as f64).abs() < 1e-9, "{ctx}: rolling mau");
                start = end;
            }
        }
    }

    // Cohorts: every row equals a direct count.
    let r = app.get(&format!("/api/v1/analytics/segments?from={first}&to={last}"), &analyst).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let as_of = time(&r.body["computed_at"]).unwrap();
    let cohorts = r.body["cohorts"].as_array().unwrap();
    assert!(cohorts.len() >= 24, "{}", cohorts.len());
    for c in cohorts {
        let month = c["cohort"].as_str().unwrap();
        let members: Vec<(&String, &Activity)> = users.iter().filter(|(_, a)| a.signed_up.is_some_and(|t| month_of(t) == month)).collect();
        assert_eq!(c["size"], members.len(), "{month}");
        let months = c["months"].as_array().unwrap();
        let mut m = first_of(month);
        for (k, cm) in months.iter().enumerate() {
            assert_eq!(cm["months_since"], k, "{month}");
            let key = month_of(m);
            let active = members.iter().filter(|(_, a)| a.days.iter().any(|d| format!("{:04}-{:02}", d.year(), d.month()) == key)).count();
            assert_eq!(cm["active_users"], active, "{month} +{k}: active");
            let end = m.checked_add_months(Months::new(1)).unwrap().min(as_of);
            let mrr: i64 = members.iter().map(|(id, _)| mrr_at(&orders, id, end, as_of)).sum();
            assert_eq!(cm["mrr_cents"], mrr, "{month} +{k}: mrr");
            m = m.checked_add_months(Months::new(1)).unwrap();
        }
        assert_eq!(month_of(m), month_of(as_of.checked_add_months(Months::new(1)).unwrap()), "{month}: months through the current one");
    }

    // RFM: every customer's scores, recomputed, give the same cells and segments.
    let mut customers: BTreeMap<&str, (DateTime<Utc>, i64, i64)> = BTreeMap::new();
    for o in &orders {
        let created = time(&o["created_at"]).unwrap();
        let amount = o["amount_cents"].as_i64().unwrap();
        let refunded =
            if o["status"] == "refunded" && time(&o["refunded_at"]).is_none_or(|t| t <= as_of) { o["refunded_cents"].as_i64().unwrap_or(amount) } else { 0 };
        let e = customers.entry(o["user_id"].as_str().unwrap()).or_insert((created, 0, 0));
        e.0 = e.0.max(created);
        e.1 += 1;
        e.2 += amount - refunded;
    }
    let facts: Vec<(i64, i64, i64)> = customers.values().map(|(last, n, money)| ((as_of - *last).num_days(), *n, *money)).collect();
    let n = facts.len() as i64;
    let score = |worse: usize| 1 + 5 * worse as i64 / n;
    let mut cells: BTreeMap<(i64, i64, i64), (i64, i64)> = BTreeMap::new();
    let mut segments: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    // Each customer's segment, for the country filter below.
    let mut segment_of: BTreeMap<&str, &str> = BTreeMap::new();
    for ((id, _), (rec, freq, money)) in customers.iter().zip(&facts) {
        let r = score(facts.iter().filter(|x| x.0 > *rec).count());
        let f = score(facts.iter().filter(|x| x.1 < *freq).count());
        let m = score(facts.iter().filter(|x| x.2 < *money).count());
        segment_of.insert(*id, rfm_segment(r, f, m));
    }
    for (rec, freq, money) in &facts {
        let r = score(facts.iter().filter(|x| x.0 > *rec).count());
        let f = score(facts.iter().filter(|x| x.1 < *freq).count());
        let m = score(facts.iter().filter(|x| x.2 < *money).count());
        let c = cells.entry((r, f, m)).or_default();
        c.0 += 1;
        c.1 += money;
        let s = segments.entry(rfm_segment(r, f, m)).or_default();
        s.0 += 1;
        s.1 += money;
    }
    let rfm = &r.body["rfm"];
    assert_eq!(rfm["customers"], n);
    let got: BTreeMap<(i64, i64, i64), (i64, i64)> = rfm["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                (c["r"].as_i64().unwrap(), c["f"].as_i64().unwrap(), c["m"].as_i64().unwrap()),
                (c["customers"].as_i64().unwrap(), c["revenue_cents"].as_i64().unwrap()),
            )
        })
        .collect();
    assert_eq!(got, cells);
    let sizes = rfm["segments"].as_array().unwrap();
    assert_eq!(sizes.len(), 8);
    for s in sizes {
        let want = segments.get(s["segment"].as_str().unwrap()).copied().unwrap_or_default();
        assert_eq!((s["customers"].as_i64().unwrap(), s["revenue_cents"].as_i64().unwrap()), want, "{s}");
    }
    assert!(segments.len() >= 5, "the demo data fills most segments: {segments:?}");

    // A country: its users' cohorts, and its customers in the segments
    // scored among all customers.
    let r = app.get(&format!("/api/v1/analytics/segments?from={first}&to={last}&country=US"), &analyst).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["country"], "US");
    let cohorts = r.body["cohorts"].as_array().unwrap();
    assert!(!cohorts.is_empty());
    for c in cohorts {
        let month = c["cohort"].as_str().unwrap();
        let members: Vec<&Activity> = users.values().filter(|a| a.country == "US" && a.signed_up.is_some_and(|t| month_of(t) == month)).collect();
        assert_eq!(c["size"], members.len(), "US {month}");
        let first_active = members.iter().filter(|a| a.days.iter().any(|d| format!("{:04}-{:02}", d.year(), d.month()) == month)).count();
        assert_eq!(c["months"][0]["active_users"], first_active, "US {month}: active in the signup month");
    }
    let mut us_segments: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for ((id, _), (_, _, money)) in customers.iter().zip(&facts) {
        if users.get(*id).is_some_and(|a| a.country == "US") {
            let e = us_segments.entry(segment_of[*id]).or_default();
            e.0 += 1;
            e.1 += money;
        }
    }
    let rfm = &r.body["rfm"];
    assert_eq!(rfm["customers"], us_segments.values().map(|v| v.0).sum::<i64>());
    for s in rfm["segments"].as_array().unwrap() {
        let want = us_segments.get(s["segment"].as_str().unwrap()).copied().unwrap_or_default();
        assert_eq!((s["customers"].as_i64().unwrap(), s["revenue_cents"].as_i64().unwrap()), want, "US {s}");
    }
}

#[tokio::test]
async fn bad_business_and_segments_queries_name_the_field() {
    let app = TestApp::spawn().await;
    let (_, analyst) = app.user(&["analyst"]).await;
    for (path, query, field) in [
        ("business", "from=2025-13", "from"),
        ("business", "to=2999-01", "to"),
        ("business", "granularity=hour", "granularity"),
        ("business", "granularity=quarter&to=2999-Q1", "to"),
        ("business", "country=usa", "country"),
        ("business", "plan=pro", "plan"),
        ("segments", "from=2026-02&to=2026-01", "from"),
        ("segments", "to=1", "to"),
        ("segments", "country=usa", "country"),
        ("segments", "plan=pro", "plan"),
    ] {
        let r = app.get(&format!("/api/v1/analytics/{path}?{query}"), &analyst).await;
        assert_eq!(r.status, 400, "{path}?{query}: {}", r.body);
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert_eq!(r.error_fields(), [field], "{path}?{query}: {}", r.body);
    }
}
