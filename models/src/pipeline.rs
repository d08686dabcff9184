//! Everything the analytics job fits, in one call over the events and
//! orders it read: the daily series, the forecasts (with backtest cards),
//! the anomalies, the churn model, and the insights' findings. The job
//! stores the result; the tests call the same function on the demo data.

use std::collections::HashSet;

use chrono::{DateTime, Datelike, Duration, Utc};
use shared::domain::business::{Event, SIGNUP};
use shared::domain::insights::Finding;
use shared::domain::revenue::{Order, parse_time};

use crate::anomaly::{self, Anomaly};
use crate::churn::{self, ChurnReport};
use crate::insights::{self, Inputs, NamedForecast, series_name};
use crate::series::{self, Series};

/// Days ahead the daily series are forecast.
pub const DAILY_HORIZON: usize = 28;
/// Months ahead MRR is forecast.
pub const MONTHLY_HORIZON: usize = 6;
/// Countries (by orders) whose demand is forecast, besides every plan.
pub const DEMAND_COUNTRIES: usize = 3;

#[derive(Debug, Clone)]
pub struct Fitted {
    /// The daily series (`series::daily_series`, plus `mrr` and `paying_customers`).
    pub series: Vec<Series>,
    pub forecasts: Vec<NamedForecast>,
    pub anomalies: Vec<Anomaly>,
    pub churn: ChurnReport,
    pub findings: Vec<Finding>,
}

/// MRR (cents, normalized, after discounts) and paying customers at the
/// end of each day from the first term's day through `as_of`'s day (the
/// last day: at `as_of`), from the same terms the revenue rollups read.
pub fn subscription_series(orders: &[Order], as_of: DateTime<Utc>) -> Vec<Series> {
    let terms: Vec<(&str, DateTime<Utc>, DateTime<Utc>, i64)> =
        orders.iter().filter_map(|o| o.term().map(|(s, e, m)| (o.user_id.as_str(), s, e, m))).filter(|t| t.1 <= as_of).collect();
    let Some(first) = terms.iter().map(|t| t.1.date_naive()).min() else {
        return Vec::new();
    };
    let days = (as_of.date_naive() - first).num_days() as usize + 1;
    // The instant a day is measured at: its end, or `as_of` on the last day.
    let instant = |i: usize| -> DateTime<Utc> {
        if i + 1 == days { as_of } else { (first + Duration::days(i as i64 + 1)).and_hms_opt(0, 0, 0).map_or(as_of, |t| t.and_utc()) }
    };
    let mut mrr = vec![0.0; days];
    let mut paying: Vec<HashSet<&str>> = vec![HashSet::new(); days];
    for (user, start, end, amount) in &terms {
        let from = (start.date_naive() - first).num_days().max(0) as usize;
        for (i, (m, p)) in mrr.iter_mut().zip(paying.iter_mut()).enumerate().skip(from) {
            let t = instant(i);
            if t >= *end {
                break;
            }
            if t >= *start {
                *m += *amount as f64;
                p.insert(user);
            }
        }
    }
    vec![
        Series { metric: "mrr".into(), dimension: None, start: first, values: mrr },
        Series { metric: "paying_customers".into(), dimension: None, start: first, values: paying.iter().map(|p| p.len() as f64).collect() },
    ]
}

/// MRR at each month's end (the current month: at `as_of`) from the daily
/// series, with the first month's key.
fn monthly(daily: &Series) -> (String, Vec<f64>) {
    let mut values: Vec<f64> = Vec::new();
    let mut first_month = None;
    let mut current: Option<(i32, u32)> = None;
    for (i, v) in daily.values.iter().enumerate() {
        let d = daily.start + Duration::days(i as i64);
        let key = (d.year(), d.month());
        if current != Some(key) {
            values.push(*v);
            current = Some(key);
            first_month.get_or_insert(format!("{:04}-{:02}", key.0, key.1));
        } else if let Some(last) = values.last_mut() {
            *last = *v;
        }
    }
    (first_month.unwrap_or_default(), values)
}

fn next_month(start: &str, months: usize) -> String {
    let (y, m) = start.split_once('-').and_then(|(y, m)| Some((y.parse::<i32>().ok()?, m.parse::<i32>().ok()?))).unwrap_or((1970, 1));
    let total = y * 12 + (m - 1) + months as i32;
    format!("{:04}-{:02}", total.div_euclid(12), total.rem_euclid(12) + 1)
}

/// The series forecast: every total, orders per plan, and orders in the
/// `DEMAND_COUNTRIES` countries with the most orders.
fn forecast_targets(all: &[Series]) -> Vec<&Series> {
    let mut countries: Vec<&Series> = all.iter().filter(|s| s.metric == "orders" && s.dimension.as_ref().is_some_and(|d| d.key == "country")).collect();
    countries.sort_by(|a, b| b.values.iter().sum::<f64>().total_cmp(&a.values.iter().sum::<f64>()));
    all.iter()
        .filter(|s| s.metric != "mrr" && (s.dimension.is_none() || (s.metric == "orders" && s.dimension.as_ref().is_some_and(|d| d.key == "plan"))))
        .chain(countries.into_iter().take(DEMAND_COUNTRIES))
        .collect()
}

/// Fit everything as of `as_of`.
pub fn fit_all(events: &[Event], orders: &[Order], as_of: DateTime<Utc>) -> Fitted {
    // Series of whole days: today's partial count would look like a drop.
    let complete = as_of.date_naive().and_hms_opt(0, 0, 0).map_or(as_of, |t| t.and_utc()) - Duration::nanoseconds(1);
    let mut all = series::daily_series(events, orders, complete);
    let subscriptions = subscription_series(orders, complete);
    let mut forecasts: Vec<NamedForecast> = Vec::new();
    for s in forecast_targets(&all).into_iter().chain(subscriptions.iter().filter(|s| s.metric == "paying_customers")) {
        let fitted = crate::forecast::fit(&s.values, Some(7), DAILY_HORIZON);
        forecasts.push(NamedForecast {
            series: series_name(&s.metric, s.dimension.as_ref()),
            granularity: "day".into(),
            start: (s.start + Duration::days(s.values.len() as i64)).to_string(),
            recent: s.values[s.values.len().saturating_sub(DAILY_HORIZON)..].to_vec(),
            forecast: fitted,
        });
    }
    if let Some(mrr) = subscriptions.iter().find(|s| s.metric == "mrr") {
        let (first, months) = monthly(mrr);
        let fitted = crate::forecast::fit(&months, Some(12), MONTHLY_HORIZON);
        forecasts.push(NamedForecast {
            series: "mrr".into(),
            granularity: "month".into(),
            start: next_month(&first, months.len()),
            recent: months[months.len().saturating_sub(MONTHLY_HORIZON)..].to_vec(),
            forecast: fitted,
        });
    }
    let anomalies = anomaly::detect(&all);
    let churn = churn::churn_risk(events, orders, as_of);

    // ARPA now, and the share of the last year's signups who ever paid.
    let (mrr_now, paying_now) = (
        subscriptions.iter().find(|s| s.metric == "mrr").and_then(|s| s.values.last().copied()).unwrap_or(0.0),
        subscriptions.iter().find(|s| s.metric == "paying_customers").and_then(|s| s.values.last().copied()).unwrap_or(0.0),
    );
    let year_ago = as_of - Duration::days(365);
    let signed_up: HashSet<&str> =
        events.iter().filter(|e| e.kind == SIGNUP && parse_time(&e.ts).is_some_and(|t| t > year_ago && t <= as_of)).map(|e| e.user_id.as_str()).collect();
    let payers: HashSet<&str> = orders.iter().filter(|o| o.term().is_some()).map(|o| o.user_id.as_str()).collect();
    let converted = signed_up.intersection(&payers).count();
    let inputs = Inputs {
        as_of,
        anomalies: &anomalies,
        forecasts: &forecasts,
        churn: Some(&churn),
        arpa_cents: if paying_now > 0.0 { mrr_now / paying_now } else { 0.0 },
        paid_conversion: if signed_up.is_empty() { 0.0 } else { converted as f64 / signed_up.len() as f64 },
    };
    let findings = insights::findings(&inputs);
    all.extend(subscriptions);
    Fitted { series: all, forecasts, anomalies, churn, findings }
}
