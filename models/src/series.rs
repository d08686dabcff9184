//! The daily series the anomaly detector watches, built from the raw
//! activity events and orders as of an instant (docs/analytics.md,
//! "Anomalies"). A day is a UTC calendar day; days without activity are 0,
//! so every series of one call has the same start and length.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use shared::domain::business::Event;
use shared::domain::revenue::{Order, parse_time};

/// Signups per day (events of kind `signup`), total and per country.
pub const SIGNUPS: &str = "signups";
/// Distinct users with any event that day, total only.
pub const ACTIVE_USERS: &str = "active_users";
/// Charts created per day (events of kind `chart_created`), total only.
pub const CHARTS_CREATED: &str = "charts_created";
/// Orders placed per day (by `created_at`), total, per plan and per country.
pub const ORDERS: &str = "orders";
/// Gross revenue per day in cents (the orders' `amount_cents`, refunds
/// not deducted), total and per plan.
pub const REVENUE_CENTS: &str = "revenue_cents";

/// Which slice of a metric a series is: `country` or `plan` and its value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dimension {
    pub key: String,
    pub value: String,
}

impl Dimension {
    pub fn new(key: &str, value: &str) -> Self {
        Dimension { key: key.to_string(), value: value.to_string() }
    }
}

/// One daily series: `values[i]` is the metric on `start + i` days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub metric: String,
    /// `None` for the total over every country and plan.
    pub dimension: Option<Dimension>,
    pub start: NaiveDate,
    pub values: Vec<f64>,
}

impl Series {
    pub fn date(&self, index: usize) -> Option<NaiveDate> {
        self.start.checked_add_days(chrono::Days::new(index as u64))
    }

    /// Whether this is the series of `metric` sliced by `dimension`.
    pub fn is(&self, metric: &str, dimension: Option<&Dimension>) -> bool {
        self.metric == metric && self.dimension.as_ref() == dimension
    }
}

/// Accumulates per (metric, dimension) and day index.
struct Builder {
    start: NaiveDate,
    days: usize,
    sums: BTreeMap<(String, Option<Dimension>), Vec<f64>>,
}

impl Builder {
    fn add(&mut self, metric: &str, dimension: Option<Dimension>, day: NaiveDate, amount: f64) {
        let Ok(index) = usize::try_from((day - self.start).num_days()) else { return };
        if index >= self.days {
            return;
        }
        let days = self.days;
        self.sums.entry((metric.to_string(), dimension)).or_insert_with(|| vec![0.0; days])[index] += amount;
    }

    /// Makes sure the series exists even if nothing landed in it.
    fn touch(&mut self, metric: &str, dimension: Option<Dimension>) {
        let days = self.days;
        self.sums.entry((metric.to_string(), dimension)).or_insert_with(|| vec![0.0; days]);
    }
}

/// Every daily series of the events and orders at or before `as_of`, from
/// the day of the earliest of them through the day of `as_of`: the totals
/// of signups, active users, charts created, orders and gross revenue, and
/// signups and orders per country, orders and revenue per plan. Items
/// whose time does not parse are left out. Empty when there is nothing
/// before `as_of`.
pub fn daily_series(events: &[Event], orders: &[Order], as_of: DateTime<Utc>) -> Vec<Series> {
    let events: Vec<(&Event, NaiveDate)> = events.iter().filter_map(|e| parse_time(&e.ts).filter(|t| *t <= as_of).map(|t| (e, t.date_naive()))).collect();
    let orders: Vec<(&Order, NaiveDate)> =
        orders.iter().filter_map(|o| parse_time(&o.created_at).filter(|t| *t <= as_of).map(|t| (o, t.date_naive()))).collect();
    let Some(start) = events.iter().map(|(_, d)| *d).chain(orders.iter().map(|(_, d)| *d)).min() else {
        return Vec::new();
    };
    let days = (as_of.date_naive() - start).num_days() as usize + 1;
    let mut b = Builder { start, days, sums: BTreeMap::new() };
    for metric in [SIGNUPS, ACTIVE_USERS, CHARTS_CREATED, ORDERS, REVENUE_CENTS] {
        b.touch(metric, None);
    }

    let mut active: BTreeSet<(NaiveDate, &str)> = BTreeSet::new();
    for (event, day) in &events {
        active.insert((*day, event.user_id.as_str()));
        match event.kind.as_str() {
            "signup" => {
                b.add(SIGNUPS, None, *day, 1.0);
                if let Some(country) = event.country.as_deref().filter(|c| !c.is_empty()) {
                    b.add(SIGNUPS, Some(Dimension::new("country", country)), *day, 1.0);
                }
            }
            "chart_created" => b.add(CHARTS_CREATED, None, *day, 1.0),
            _ => {}
        }
    }
    for (day, _) in active {
        b.add(ACTIVE_USERS, None, day, 1.0);
    }

    let mut plans: HashSet<&str> = HashSet::new();
    for (order, day) in &orders {
        let amount = order.amount_cents as f64;
        b.add(ORDERS, None, *day, 1.0);
        b.add(REVENUE_CENTS, None, *day, amount);
        if let Some(plan) = order.plan.as_deref().filter(|p| !p.is_empty()) {
            plans.insert(plan);
            b.add(ORDERS, Some(Dimension::new("plan", plan)), *day, 1.0);
            b.add(REVENUE_CENTS, Some(Dimension::new("plan", plan)), *day, amount);
        }
        if let Some(country) = order.country.as_deref().filter(|c| !c.is_empty()) {
            b.add(ORDERS, Some(Dimension::new("country", country)), *day, 1.0);
        }
    }
    // A plan with orders has a revenue series even if all of it was free.
    for plan in plans {
        b.touch(REVENUE_CENTS, Some(Dimension::new("plan", plan)));
    }

    b.sums.into_iter().map(|((metric, dimension), values)| Series { metric, dimension, start, values }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(user: &str, kind: &str, ts: &str, country: Option<&str>) -> Event {
        Event { user_id: user.into(), kind: kind.into(), ts: ts.into(), country: country.map(str::to_string) }
    }

    fn order(user: &str, plan: &str, country: &str, cents: i64, ts: &str) -> Order {
        serde_json::from_value(serde_json::json!({
            "id": format!("{user}{ts}"), "user_id": user, "plan": plan, "country": country,
            "amount_cents": cents, "status": "paid", "created_at": ts,
        }))
        .unwrap()
    }

    fn find<'a>(all: &'a [Series], metric: &str, dimension: Option<(&str, &str)>) -> &'a Series {
        let dimension = dimension.map(|(k, v)| Dimension::new(k, v));
        all.iter().find(|s| s.is(metric, dimension.as_ref())).unwrap_or_else(|| panic!("no {metric} {dimension:?}"))
    }

    #[test]
    fn counts_per_day_with_zero_days_between_and_through_as_of() {
        let events = vec![
            event("a", "signup", "2026-01-01T10:00:00Z", Some("DE")),
            event("a", "login", "2026-01-01T11:00:00Z", None),
            event("b", "signup", "2026-01-03T10:00:00Z", Some("US")),
            event("a", "chart_created", "2026-01-03T12:00:00Z", None),
            event("a", "login", "2026-01-03T13:00:00Z", None),
            event("c", "login", "2026-01-09T13:00:00Z", None),
            event("c", "login", "not a time", None),
        ];
        let orders = vec![
            order("a", "pro", "DE", 2900, "2026-01-02T09:00:00Z"),
            order("b", "basic", "US", 900, "2026-01-03T09:00:00Z"),
            order("a", "pro", "DE", 2900, "2026-01-03T23:59:59Z"),
        ];
        let as_of = "2026-01-05T00:00:00Z".parse().unwrap();
        let all = daily_series(&events, &orders, as_of);
        let start = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        assert!(all.iter().all(|s| s.start == start && s.values.len() == 5), "{all:?}");
        assert_eq!(find(&all, SIGNUPS, None).values, [1.0, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(find(&all, SIGNUPS, Some(("country", "DE"))).values, [1.0, 0.0, 0.0, 0.0, 0.0]);
        // Two events of `a` on the 3rd are one active user; `c` is after as_of.
        assert_eq!(find(&all, ACTIVE_USERS, None).values, [1.0, 0.0, 2.0, 0.0, 0.0]);
        assert_eq!(find(&all, CHARTS_CREATED, None).values, [0.0, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(find(&all, ORDERS, None).values, [0.0, 1.0, 2.0, 0.0, 0.0]);
        assert_eq!(find(&all, ORDERS, Some(("plan", "pro"))).values, [0.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!(find(&all, ORDERS, Some(("country", "US"))).values, [0.0, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(find(&all, REVENUE_CENTS, None).values, [0.0, 2900.0, 3800.0, 0.0, 0.0]);
        assert_eq!(find(&all, REVENUE_CENTS, Some(("plan", "basic"))).values, [0.0, 0.0, 900.0, 0.0, 0.0]);
    }

    #[test]
    fn nothing_before_as_of_is_no_series() {
        let events = vec![event("a", "signup", "2026-01-01T10:00:00Z", Some("DE"))];
        assert!(daily_series(&events, &[], "2025-12-31T00:00:00Z".parse().unwrap()).is_empty());
        assert!(daily_series(&[], &[], "2025-12-31T00:00:00Z".parse().unwrap()).is_empty());
    }
}
