//! Product and business metrics from activity events and orders, with no
//! I/O (docs/analytics.md): signups, activations, the signup → activated →
//! paid funnel, daily/weekly/monthly active users and charts created per
//! month and country (`BusinessRow`); cohort retention by signup month
//! (`CohortRow`); and RFM scores with their named segments (`RfmSummary`).
//! The analytics refresh job stores them as rollups beside the revenue rows.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::periods::Granularity;
use super::revenue::{self, ALL, Order, UNKNOWN_COUNTRY};

/// A signup activates when the user's first chart is created within this many days.
pub const ACTIVATION_DAYS: i64 = 7;
/// Event kinds (`USER#id / EVENT#ts#id`) the metrics read.
pub const SIGNUP: &str = "signup";
pub const CHART_CREATED: &str = "chart_created";

/// An activity event as stored, the fields read here.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Event {
    pub user_id: String,
    pub kind: String,
    pub ts: String,
    /// On `signup` events: the user's country.
    #[serde(default)]
    pub country: Option<String>,
}

/// One month of one country (or `*`). Funnel counts are of the month's
/// signups (a cohort); activity counts are of the month's days.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessRow {
    pub signups: i64,
    /// Signups of the month whose first chart came within 7 days of signing up.
    pub activations: i64,
    /// Activated signups of the month who placed an order (up to the refresh).
    pub paid: i64,
    /// Distinct users with any event in the month (MAU).
    pub active_users: i64,
    /// Σ over the month's days of distinct users active that day.
    pub dau_sum: i64,
    /// Σ over the month's days of distinct users active in the 7 days ending that day.
    pub wau_sum: i64,
    /// Σ over the month's days of distinct users active in the 30 days ending that day.
    #[serde(default)]
    pub mau_sum: i64,
    pub charts_created: i64,
}

impl BusinessRow {
    pub fn add(&mut self, o: &BusinessRow) {
        self.signups += o.signups;
        self.activations += o.activations;
        self.paid += o.paid;
        self.active_users += o.active_users;
        self.dau_sum += o.dau_sum;
        self.wau_sum += o.wau_sum;
        self.mau_sum += o.mau_sum;
        self.charts_created += o.charts_created;
    }
}

/// What the events say about one user.
#[derive(Debug, Clone, Default)]
pub struct UserActivity {
    /// The first `signup` event.
    pub signed_up: Option<DateTime<Utc>>,
    /// From the signup event; `ZZ` when unknown.
    pub country: String,
    pub charts: Vec<DateTime<Utc>>,
    /// Days (UTC) with any event.
    pub days: BTreeSet<NaiveDate>,
}

impl UserActivity {
    /// First chart within [`ACTIVATION_DAYS`] of signing up.
    pub fn activated(&self) -> bool {
        match (self.signed_up, self.charts.iter().min()) {
            (Some(s), Some(c)) => *c - s <= Duration::days(ACTIVATION_DAYS),
            _ => false,
        }
    }

    pub fn active_months(&self) -> BTreeSet<String> {
        self.days.iter().map(|d| day_month(*d)).collect()
    }
}

pub fn day_month(d: NaiveDate) -> String {
    format!("{:04}-{:02}", d.year(), d.month())
}

/// Days of `month` counted for averages: all of them, or up to and
/// including the day of `as_of` in its month (0 for later months).
pub fn days_counted(month: &str, as_of: DateTime<Utc>) -> i64 {
    let (Some(start), Some(next)) = (revenue::month_start(month), revenue::add_months(month, 1).and_then(|m| revenue::month_start(&m))) else {
        return 0;
    };
    let last = (next - Duration::days(1)).date_naive().min(as_of.date_naive());
    ((last - start.date_naive()).num_days() + 1).max(0)
}

/// Each user's activity from the events up to `as_of`.
pub fn activity(events: &[Event], as_of: DateTime<Utc>) -> HashMap<String, UserActivity> {
    let mut users: HashMap<String, UserActivity> = HashMap::new();
    let mut sorted: Vec<(DateTime<Utc>, &Event)> = events.iter().filter_map(|e| revenue::parse_time(&e.ts).filter(|t| *t <= as_of).map(|t| (t, e))).collect();
    sorted.sort_by_key(|(t, _)| *t);
    for (t, e) in sorted {
        let u = users.entry(e.user_id.clone()).or_insert_with(|| UserActivity { country: UNKNOWN_COUNTRY.into(), ..Default::default() });
        u.days.insert(t.date_naive());
        match e.kind.as_str() {
            SIGNUP if u.signed_up.is_none() => {
                u.signed_up = Some(t);
                if let Some(c) = e.country.as_deref().filter(|c| !c.is_empty()) {
                    u.country = c.to_string();
                }
            }
            CHART_CREATED => u.charts.push(t),
            _ => {}
        }
    }
    users
}

/// Customers: users with an order placed up to `as_of`.
pub fn payers(orders: &[Order], as_of: DateTime<Utc>) -> HashSet<&str> {
    orders.iter().filter(|o| revenue::parse_time(&o.created_at).is_some_and(|t| t <= as_of)).map(|o| o.user_id.as_str()).collect()
}

/// Every business row: `(country | *, yyyy-mm) → row`, for months with anything in them.
pub fn rollups(users: &HashMap<String, UserActivity>, payers: &HashSet<&str>, as_of: DateTime<Utc>) -> BTreeMap<(String, String), BusinessRow> {
    period_rollups(users, payers, as_of, Granularity::Month)
}

/// [`rollups`] by periods of granularity `g`: `(country | *, period key) → row`.
pub fn period_rollups(
    users: &HashMap<String, UserActivity>,
    payers: &HashSet<&str>,
    as_of: DateTime<Utc>,
    g: Granularity,
) -> BTreeMap<(String, String), BusinessRow> {
    let mut rows: BTreeMap<(String, String), BusinessRow> = BTreeMap::new();
    let today = as_of.date_naive();
    for (id, u) in users {
        let mut add = |key: String, f: &dyn Fn(&mut BusinessRow)| {
            for c in [u.country.as_str(), ALL] {
                f(rows.entry((c.to_string(), key.clone())).or_default());
            }
        };
        if let Some(t) = u.signed_up {
            let activated = u.activated();
            let paid = activated && payers.contains(id.as_str());
            add(g.key_of(t), &|r| {
                r.signups += 1;
                r.activations += activated as i64;
                r.paid += paid as i64;
            });
        }
        for c in &u.charts {
            add(g.key_of(*c), &|r| r.charts_created += 1);
        }
        // Days active per period (the days are in order): one active user
        // and that many daily actives.
        let mut run: Option<(NaiveDate, i64)> = None;
        for d in &u.days {
            let first = g.first_day(*d);
            match &mut run {
                Some((f, n)) if *f == first => *n += 1,
                _ => {
                    if let Some((f, n)) = run.replace((first, 1)) {
                        add(g.key_of_day(f), &|r| {
                            r.active_users += 1;
                            r.dau_sum += n;
                        });
                    }
                }
            }
        }
        if let Some((f, n)) = run {
            add(g.key_of_day(f), &|r| {
                r.active_users += 1;
                r.dau_sum += n;
            });
        }
        for (window, field) in [(7, Window::Weekly), (30, Window::Monthly)] {
            for (a, b) in covered(&u.days, window, today) {
                // Split [a, b] at the periods' boundaries.
                let mut day = a;
                while day <= b {
                    let end = (g.next_day(g.first_day(day)) - Duration::days(1)).min(b);
                    let n = (end - day).num_days() + 1;
                    add(g.key_of_day(day), &|r| match field {
                        Window::Weekly => r.wau_sum += n,
                        Window::Monthly => r.mau_sum += n,
                    });
                    day = end + Duration::days(1);
                }
            }
        }
    }
    rows
}

#[derive(Clone, Copy)]
enum Window {
    Weekly,
    Monthly,
}

/// The days on which a user counts as active within a trailing window of
/// `window` days (each active day and the `window - 1` after it, up to
/// `today`), as merged inclusive ranges in order.
fn covered(days: &BTreeSet<NaiveDate>, window: i64, today: NaiveDate) -> Vec<(NaiveDate, NaiveDate)> {
    let mut out: Vec<(NaiveDate, NaiveDate)> = Vec::new();
    for d in days {
        let end = (*d + Duration::days(window - 1)).min(today);
        if *d > end {
            continue;
        }
        match out.last_mut() {
            Some((_, b)) if *d <= *b + Duration::days(1) => *b = (*b).max(end),
            _ => out.push((*d, end)),
        }
    }
    out
}

/// A signup month's cohort: its size and, for each month since (0 = the
/// signup month, through the month of the refresh), how many of its users
/// were active and the cohort's MRR at the end of that month.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohortRow {
    pub size: i64,
    pub active: Vec<i64>,
    pub mrr_cents: Vec<i64>,
}

/// The end of `month` for MRR: the start of the next month, or `as_of` if earlier.
fn month_end(month: &str, as_of: DateTime<Utc>) -> Option<DateTime<Utc>> {
    revenue::add_months(month, 1).and_then(|m| revenue::month_start(&m)).map(|t| t.min(as_of))
}

/// A paid term: `(start, end]` and its MRR.
type Term = (DateTime<Utc>, DateTime<Utc>, i64);

/// Cohorts by signup month, of every country (`*`) and of each (the
/// user's): `(country | *, yyyy-mm) → row`.
pub fn cohorts(users: &HashMap<String, UserActivity>, orders: &[Order], as_of: DateTime<Utc>) -> BTreeMap<(String, String), CohortRow> {
    let mut terms: HashMap<&str, Vec<Term>> = HashMap::new();
    for o in orders {
        if let Some(term) = o.term().filter(|(start, _, _)| *start < as_of) {
            terms.entry(o.user_id.as_str()).or_default().push(term);
        }
    }
    let last = revenue::month_key(as_of);
    let mut rows: BTreeMap<(String, String), CohortRow> = BTreeMap::new();
    for (id, u) in users {
        let Some(signed_up) = u.signed_up else { continue };
        let cohort = revenue::month_key(signed_up);
        let active = u.active_months();
        // The user's months since signing up: active, and MRR at the month's end.
        let mut life: Vec<(bool, i64)> = Vec::new();
        let mut month = cohort.clone();
        while month <= last {
            let mrr = match (month_end(&month, as_of), terms.get(id.as_str())) {
                (Some(t), Some(terms)) => terms.iter().filter(|(a, b, _)| *a < t && t <= *b).map(|(_, _, m)| m).sum::<i64>(),
                _ => 0,
            };
            life.push((active.contains(&month), mrr));
            let Some(next) = revenue::add_months(&month, 1) else { break };
            month = next;
        }
        for country in [u.country.as_str(), ALL] {
            let row = rows.entry((country.to_string(), cohort.clone())).or_default();
            row.size += 1;
            if row.active.len() < life.len() {
                row.active.resize(life.len(), 0);
                row.mrr_cents.resize(life.len(), 0);
            }
            for (k, (was_active, mrr)) in life.iter().enumerate() {
                row.active[k] += *was_active as i64;
                row.mrr_cents[k] += mrr;
            }
        }
    }
    rows
}

/// The standard RFM segments (docs/analytics.md has the score map).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RfmSegment {
    Champions,
    Loyal,
    PotentialLoyalist,
    New,
    AtRisk,
    CantLose,
    Hibernating,
    Lost,
}

impl RfmSegment {
    pub const ALL: [RfmSegment; 8] = [
        RfmSegment::Champions,
        RfmSegment::Loyal,
        RfmSegment::PotentialLoyalist,
        RfmSegment::New,
        RfmSegment::AtRisk,
        RfmSegment::CantLose,
        RfmSegment::Hibernating,
        RfmSegment::Lost,
    ];

    /// The serialized name (`champions`, `at_risk`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RfmSegment::Champions => "champions",
            RfmSegment::Loyal => "loyal",
            RfmSegment::PotentialLoyalist => "potential_loyalist",
            RfmSegment::New => "new",
            RfmSegment::AtRisk => "at_risk",
            RfmSegment::CantLose => "cant_lose",
            RfmSegment::Hibernating => "hibernating",
            RfmSegment::Lost => "lost",
        }
    }
}

/// The segment of a customer's scores: by recency `r` and `fm`, the mean
/// of frequency and monetary rounded half up.
pub fn segment(r: u8, f: u8, m: u8) -> RfmSegment {
    use RfmSegment::*;
    let fm = (f + m).div_ceil(2);
    match (r, fm) {
        (5, 4..=5) | (4, 5) => Champions,
        (4, 4) | (3, 3..=5) => Loyal,
        (4..=5, 2..=3) => PotentialLoyalist,
        (4..=5, _) => New,
        (3, _) | (2, 2) => Hibernating,
        (1..=2, 5) => CantLose,
        (1..=2, 3..=4) => AtRisk,
        _ => Lost,
    }
}

/// Quintile score 1–5 of `x` among `sorted` (ascending): 1 + ⌊5 × (number
/// of values worse than x) ÷ n⌋, so ties share a score; `higher_better`
/// says which way is worse.
pub fn quintile(x: i64, sorted: &[i64], higher_better: bool) -> u8 {
    let n = sorted.len();
    if n == 0 {
        return 1;
    }
    let worse = if higher_better { sorted.partition_point(|y| *y < x) } else { n - sorted.partition_point(|y| *y <= x) };
    (1 + 5 * worse / n).min(5) as u8
}

/// One paying customer's RFM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RfmCustomer {
    pub user_id: String,
    /// Whole days from the last order to `as_of`.
    pub recency_days: i64,
    /// Orders placed.
    pub frequency: i64,
    /// Σ amounts − Σ refunds (up to `as_of`), cents.
    pub monetary_cents: i64,
    pub r: u8,
    pub f: u8,
    pub m: u8,
    pub segment: RfmSegment,
}

/// RFM of every customer with an order placed up to `as_of`.
pub fn rfm(orders: &[Order], as_of: DateTime<Utc>) -> Vec<RfmCustomer> {
    let mut by: BTreeMap<&str, (DateTime<Utc>, i64, i64)> = BTreeMap::new();
    for o in orders {
        let Some(at) = revenue::parse_time(&o.created_at).filter(|t| *t <= as_of) else { continue };
        let refund = o.returned_by(as_of);
        let e = by.entry(o.user_id.as_str()).or_insert((at, 0, 0));
        e.0 = e.0.max(at);
        e.1 += 1;
        e.2 += o.amount_cents - refund;
    }
    let facts: Vec<(&str, i64, i64, i64)> = by.into_iter().map(|(id, (last, n, money))| (id, (as_of - last).num_days(), n, money)).collect();
    let sorted = |f: fn(&(&str, i64, i64, i64)) -> i64| {
        let mut v: Vec<i64> = facts.iter().map(f).collect();
        v.sort_unstable();
        v
    };
    let (rs, fs, ms) = (sorted(|x| x.1), sorted(|x| x.2), sorted(|x| x.3));
    facts
        .iter()
        .map(|(id, recency, frequency, monetary)| {
            let (r, f, m) = (quintile(*recency, &rs, false), quintile(*frequency, &fs, true), quintile(*monetary, &ms, true));
            RfmCustomer {
                user_id: id.to_string(),
                recency_days: *recency,
                frequency: *frequency,
                monetary_cents: *monetary,
                r,
                f,
                m,
                segment: segment(r, f, m),
            }
        })
        .collect()
}

/// A segment's size and revenue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSize {
    pub segment: RfmSegment,
    pub customers: i64,
    pub revenue_cents: i64,
}

/// Customers with one combination of scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RfmCell {
    pub r: u8,
    pub f: u8,
    pub m: u8,
    pub customers: i64,
    pub revenue_cents: i64,
}

/// What the rollups keep of RFM: every segment (empty ones too) and every
/// non-empty score combination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RfmSummary {
    pub customers: i64,
    pub segments: Vec<SegmentSize>,
    pub cells: Vec<RfmCell>,
}

pub fn rfm_summary(customers: &[RfmCustomer]) -> RfmSummary {
    let mut segments: BTreeMap<RfmSegment, SegmentSize> =
        RfmSegment::ALL.iter().map(|s| (*s, SegmentSize { segment: *s, customers: 0, revenue_cents: 0 })).collect();
    let mut cells: BTreeMap<(u8, u8, u8), RfmCell> = BTreeMap::new();
    for c in customers {
        let s = segments.get_mut(&c.segment).expect("every segment");
        s.customers += 1;
        s.revenue_cents += c.monetary_cents;
        let cell = cells.entry((c.r, c.f, c.m)).or_insert(RfmCell { r: c.r, f: c.f, m: c.m, customers: 0, revenue_cents: 0 });
        cell.customers += 1;
        cell.revenue_cents += c.monetary_cents;
    }
    RfmSummary { customers: customers.len() as i64, segments: segments.into_values().collect(), cells: cells.into_values().collect() }
}

// Rollup keys, in the revenue rollups' generation (`REVENUE#META / CURRENT`
// names it, and its `partitions` list these so they go with it).

/// Business rows of a country or `*` (sort key `yyyy-mm`).
pub fn business_pk(generation: &str, country: &str) -> String {
    format!("BUSINESS#{generation}#{country}")
}

/// Business rows of a segment's members (sort key `yyyy-mm`).
pub fn segment_pk(generation: &str, segment: &str) -> String {
    format!("BUSINESS#{generation}#segment#{segment}")
}

/// Cohort rows of a country or `*` (sort key: the signup month `yyyy-mm`).
pub fn cohorts_pk(generation: &str, country: &str) -> String {
    format!("COHORTS#{generation}#{country}")
}

/// The RFM summaries, one per country and one of all (sort key [`rfm_sk`]).
pub fn rfm_pk(generation: &str) -> String {
    format!("RFM#{generation}")
}

/// The sort key of the RFM summary of a country's customers or `*`.
pub fn rfm_sk(country: &str) -> String {
    format!("SUMMARY#{country}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, d, h, 0, 0).unwrap()
    }

    fn ev(user: &str, kind: &str, t: DateTime<Utc>) -> Event {
        Event { user_id: user.into(), kind: kind.into(), ts: t.to_rfc3339(), country: (kind == SIGNUP).then(|| "DE".to_string()) }
    }

    #[test]
    fn quintiles_share_ties_and_reach_five() {
        let v = [1, 1, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(quintile(1, &v, true), 1);
        assert_eq!(quintile(8, &v, true), 5);
        assert_eq!(quintile(3, &v, true), 3);
        assert_eq!(quintile(1, &v, false), 4);
        assert_eq!(quintile(8, &v, false), 1);
    }

    #[test]
    fn segment_names_are_their_serialized_names() {
        for segment in RfmSegment::ALL {
            assert_eq!(serde_json::to_value(segment).unwrap(), segment.as_str());
        }
    }

    #[test]
    fn every_score_has_a_segment_and_the_corners_are_right() {
        assert_eq!(segment(5, 5, 5), RfmSegment::Champions);
        assert_eq!(segment(5, 1, 1), RfmSegment::New);
        assert_eq!(segment(1, 1, 1), RfmSegment::Lost);
        assert_eq!(segment(1, 5, 5), RfmSegment::CantLose);
        assert_eq!(segment(2, 3, 4), RfmSegment::AtRisk);
        assert_eq!(segment(2, 2, 2), RfmSegment::Hibernating);
        assert_eq!(segment(4, 2, 3), RfmSegment::PotentialLoyalist);
        assert_eq!(segment(3, 4, 4), RfmSegment::Loyal);
        let mut seen = BTreeSet::new();
        for r in 1..=5 {
            for f in 1..=5 {
                for m in 1..=5 {
                    seen.insert(segment(r, f, m));
                }
            }
        }
        assert_eq!(seen.len(), 8);
    }

    #[test]
    fn activation_funnel_and_active_users() {
        let events = vec![
            ev("a", SIGNUP, at(1, 0)),
            ev("a", CHART_CREATED, at(8, 0)), // exactly 7 days: activated
            ev("b", SIGNUP, at(2, 0)),
            ev("b", CHART_CREATED, at(9, 1)), // 7 days and an hour: not
            ev("b", "login", at(9, 2)),
        ];
        let users = activity(&events, at(20, 0));
        let orders = vec![Order { id: "o".into(), user_id: "a".into(), amount_cents: 900, created_at: at(3, 0).to_rfc3339(), ..Default::default() }];
        let rows = rollups(&users, &payers(&orders, at(20, 0)), at(20, 0));
        let r = rows[&("*".to_string(), "2026-01".to_string())];
        assert_eq!((r.signups, r.activations, r.paid, r.active_users, r.charts_created), (2, 1, 1, 2, 2));
        // a: days 1, 8; b: days 2, 9.
        assert_eq!(r.dau_sum, 4);
        // a covers 1..=14 (14 days), b 2..=15 (14 days).
        assert_eq!(r.wau_sum, 28);
        assert_eq!(rows[&("DE".to_string(), "2026-01".to_string())], r);
        assert_eq!(days_counted("2026-01", at(20, 5)), 20);
        assert_eq!(days_counted("2025-12", at(20, 5)), 31);
    }
}
