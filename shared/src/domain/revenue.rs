//! Subscription revenue from orders, with no I/O (docs/analytics.md): each
//! order is a paid term of a subscription; a customer's MRR is the
//! normalized price of the terms running at an instant; per customer and
//! month, the change of MRR is classified as new, reactivation, expansion,
//! contraction or churn; the rows kept as rollups (`RevenueRow`) sum those
//! per month × country × plan (and each of them as "all"), and the ratios
//! the API answers (`Metrics`) are derived from a row. Money is integer
//! cents throughout.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::periods::Granularity;

/// Billing interval of a subscription order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Billing {
    Monthly,
    Annual,
}

impl Billing {
    pub fn months(self) -> u32 {
        match self {
            Billing::Monthly => 1,
            Billing::Annual => 12,
        }
    }
}

/// An order as stored (`ORDER#id / META`), the fields revenue reads. An
/// order without `billing` is a one-off payment: revenue, no MRR.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub user_id: String,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub billing: Option<Billing>,
    /// Charged for the term: after discounts, before tax.
    pub amount_cents: i64,
    #[serde(default)]
    pub status: Option<String>,
    pub created_at: String,
    /// The paid term: `[period_start, period_end)`; by default from
    /// `created_at` for one billing interval.
    #[serde(default)]
    pub period_start: Option<String>,
    #[serde(default)]
    pub period_end: Option<String>,
    /// The term stopped early at this instant: a plan switch (a new order
    /// starts) or the early cancellation of an annual plan.
    #[serde(default)]
    pub ended_at: Option<String>,
    #[serde(default)]
    pub refunded_at: Option<String>,
    /// Refunded amount; the whole `amount_cents` when absent on a refunded order.
    #[serde(default)]
    pub refunded_cents: Option<i64>,
    /// The Stripe status of the order's dispute (chargeback), if any; a
    /// `lost` one is money taken back, counted as a refund ([`Order::chargeback`]).
    /// (`status: disputed` alone, a dispute still open, changes no figure.)
    #[serde(default)]
    pub dispute_status: Option<String>,
    /// The disputed amount; the whole `amount_cents` when absent.
    #[serde(default)]
    pub disputed_cents: Option<i64>,
    /// When the dispute was opened (when Stripe withdrew the amount).
    #[serde(default)]
    pub disputed_at: Option<String>,
}

/// Country code for orders without one (ISO 3166 user-assigned "unknown").
pub const UNKNOWN_COUNTRY: &str = "ZZ";
/// Plan name for orders without one.
pub const NO_PLAN: &str = "none";
/// "All countries" / "all plans" in a rollup key.
pub const ALL: &str = "*";

/// A slice of MRR: the country and plan of the subscription.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    pub country: String,
    pub plan: String,
}

/// A group of segments a rollup row sums: a country or all (`*`), a plan or all.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Group {
    pub country: String,
    pub plan: String,
}

impl Group {
    pub fn all() -> Group {
        Group { country: ALL.into(), plan: ALL.into() }
    }

    pub fn contains(&self, s: &Segment) -> bool {
        (self.country == ALL || self.country == s.country) && (self.plan == ALL || self.plan == s.plan)
    }

    /// The four groups a segment belongs to.
    pub fn of(s: &Segment) -> [Group; 4] {
        [
            Group { country: s.country.clone(), plan: s.plan.clone() },
            Group { country: s.country.clone(), plan: ALL.into() },
            Group { country: ALL.into(), plan: s.plan.clone() },
            Group::all(),
        ]
    }
}

pub fn parse_time(ts: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(ts).ok().map(|t| t.with_timezone(&Utc))
}

/// `yyyy-mm` of an instant.
pub fn month_key(t: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", t.year(), t.month())
}

/// The first instant of the month `yyyy-mm`.
pub fn month_start(key: &str) -> Option<DateTime<Utc>> {
    let (y, m) = key.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, 1)?;
    Some(Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?))
}

/// The month `n` months after `key` (negative: before).
pub fn add_months(key: &str, n: i32) -> Option<String> {
    let start = month_start(key)?;
    let moved = if n >= 0 { start.checked_add_months(Months::new(n as u32)) } else { start.checked_sub_months(Months::new(n.unsigned_abs())) };
    moved.map(month_key)
}

/// Normalized monthly price of one term: a monthly amount as is, an annual
/// one ÷ 12 rounded half up to the cent.
pub fn normalized_mrr(amount_cents: i64, billing: Billing) -> i64 {
    match billing {
        Billing::Monthly => amount_cents,
        Billing::Annual => (amount_cents + 6).div_euclid(12),
    }
}

impl Order {
    pub fn segment(&self) -> Segment {
        Segment {
            country: self.country.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| UNKNOWN_COUNTRY.into()),
            plan: self.plan.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| NO_PLAN.into()),
        }
    }

    /// The instants MRR runs, `[start, end)`, and its amount; none for a
    /// one-off order or an empty term.
    pub fn term(&self) -> Option<(DateTime<Utc>, DateTime<Utc>, i64)> {
        let billing = self.billing?;
        let start = parse_time(self.period_start.as_deref().unwrap_or(&self.created_at))?;
        let mut end = match self.period_end.as_deref() {
            Some(ts) => parse_time(ts)?,
            None => start.checked_add_months(Months::new(billing.months()))?,
        };
        if let Some(early) = self.ended_at.as_deref().and_then(parse_time) {
            end = end.min(early);
        }
        let mrr = normalized_mrr(self.amount_cents, billing);
        (end > start && mrr > 0).then_some((start, end, mrr))
    }

    /// The refund, if any: amount and instant.
    pub fn refund(&self) -> Option<(i64, DateTime<Utc>)> {
        let refunded = self.status.as_deref() == Some("refunded") || self.refunded_at.is_some() || self.refunded_cents.is_some();
        if !refunded {
            return None;
        }
        let at = parse_time(self.refunded_at.as_deref().unwrap_or(&self.created_at))?;
        Some((self.refunded_cents.unwrap_or(self.amount_cents), at))
    }

    /// A lost dispute: the amount taken back (past what was refunded, so
    /// together at most the order's amount) and when, the dispute's opening
    /// (the amount left then; a dispute won gave it back). Counted as a
    /// refund wherever refunds are subtracted.
    pub fn chargeback(&self) -> Option<(i64, DateTime<Utc>)> {
        if self.dispute_status.as_deref() != Some("lost") {
            return None;
        }
        let refunded = self.refund().map_or(0, |(a, _)| a);
        let amount = self.disputed_cents.unwrap_or(self.amount_cents).min(self.amount_cents - refunded);
        let at = parse_time(self.disputed_at.as_deref().unwrap_or(&self.created_at))?;
        (amount > 0).then_some((amount, at))
    }

    /// What was given back (refunds and lost disputes) up to `as_of`.
    pub fn returned_by(&self, as_of: DateTime<Utc>) -> i64 {
        [self.refund(), self.chargeback()].into_iter().flatten().filter(|(_, t)| *t <= as_of).map(|(a, _)| a).sum()
    }
}

/// A customer's MRR by segment at one instant (segments at 0 left out).
pub type State = BTreeMap<Segment, i64>;

fn total(state: &State) -> i64 {
    state.values().sum()
}

/// How a customer's MRR changed over one month (at the customer level, all
/// subscriptions together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Paying at the start and the end, never at 0 between.
    Steady,
    /// 0 at the start, paying at the end: new, or a reactivation after
    /// `reactivated_after_days` days at 0.
    Started { reactivated_after_days: Option<i64> },
    /// Paying at the start, 0 at the end (churn, dated at the end of the paid term).
    Ended,
    /// 0 at the start and the end, paying in between (`through`: the first
    /// paying state): new or reactivated, and churned, in the same month.
    Passing { through: State, reactivated_after_days: Option<i64> },
    /// Paying at the start and the end, at 0 in between: churned, then
    /// reactivated after `after_days` days.
    Returned { after_days: i64 },
}

/// One customer's month: MRR by segment at its start and its end (the next
/// month's start, or `as_of` for the current month) and how it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerMonth {
    pub month: String,
    pub start: State,
    pub end: State,
    pub change: Change,
}

/// The movements (and customer counts) one customer's month contributes to
/// a group of segments. Invariant: `mrr_end = mrr_start + new +
/// reactivation + expansion − contraction − churn`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movements {
    pub mrr_start: i64,
    pub mrr_end: i64,
    pub new: i64,
    pub reactivation: i64,
    pub expansion: i64,
    pub contraction: i64,
    pub churn: i64,
    pub customers_start: i64,
    pub customers_end: i64,
    pub new_customers: i64,
    pub reactivated_customers: i64,
    /// Customers paying at the start who churned (so not those who joined
    /// and churned within the month).
    pub churned_customers: i64,
    /// Sum over reactivations of the days since the churn they follow.
    pub reactivation_days: i64,
}

impl Movements {
    pub fn add(&mut self, o: &Movements) {
        self.mrr_start += o.mrr_start;
        self.mrr_end += o.mrr_end;
        self.new += o.new;
        self.reactivation += o.reactivation;
        self.expansion += o.expansion;
        self.contraction += o.contraction;
        self.churn += o.churn;
        self.customers_start += o.customers_start;
        self.customers_end += o.customers_end;
        self.new_customers += o.new_customers;
        self.reactivated_customers += o.reactivated_customers;
        self.churned_customers += o.churned_customers;
        self.reactivation_days += o.reactivation_days;
    }

    /// `mrr_start + new + reactivation + expansion − contraction − churn`.
    pub fn balanced_end(&self) -> i64 {
        self.mrr_start + self.new + self.reactivation + self.expansion - self.contraction - self.churn
    }
}

impl CustomerMonth {
    /// This month's movements within `group`.
    pub fn movements(&self, group: &Group) -> Movements {
        let sum = |state: &State| state.iter().filter(|(s, _)| group.contains(s)).map(|(_, v)| v).sum::<i64>();
        let (s, e) = (sum(&self.start), sum(&self.end));
        let mut m = Movements { mrr_start: s, mrr_end: e, customers_start: (s > 0) as i64, customers_end: (e > 0) as i64, ..Default::default() };
        let gained = |m: &mut Movements, amount: i64, reactivated: Option<i64>| {
            if amount > 0 {
                match reactivated {
                    None => {
                        m.new += amount;
                        m.new_customers += 1;
                    }
                    Some(days) => {
                        m.reactivation += amount;
                        m.reactivated_customers += 1;
                        m.reactivation_days += days;
                    }
                }
            }
        };
        match &self.change {
            Change::Steady => {
                m.expansion = (e - s).max(0);
                m.contraction = (s - e).max(0);
            }
            Change::Started { reactivated_after_days } => gained(&mut m, e, *reactivated_after_days),
            Change::Ended => {
                m.churn = s;
                m.churned_customers = (s > 0) as i64;
            }
            Change::Passing { through, reactivated_after_days } => {
                let p = sum(through);
                gained(&mut m, p, *reactivated_after_days);
                m.churn = p;
            }
            Change::Returned { after_days } => {
                m.churn = s;
                m.churned_customers = (s > 0) as i64;
                gained(&mut m, e, Some(*after_days));
            }
        }
        m
    }
}

/// One customer's months, from the first month with MRR through the month
/// of `as_of`, months with no MRR at all left out: [`customer_periods`] by
/// month, steady months included.
pub fn customer_months(orders: &[&Order], as_of: DateTime<Utc>) -> Vec<CustomerMonth> {
    customer_periods(orders, as_of, Granularity::Month, true)
}

/// One customer's periods of granularity `g` (`month` holds the period's
/// key), from the first with MRR through the one holding `as_of` (orders
/// starting after `as_of` are not looked at). A term counts on `(start,
/// end]`: MRR at a period's start is what ran up to that instant, so a
/// term ending at midnight is churn of the period it ends in. With
/// `steady`, periods where nothing changed but MRR ran are included;
/// without, only periods in which the MRR changed (what the rollups need:
/// a steady period's levels are the previous period's end).
pub fn customer_periods(orders: &[&Order], as_of: DateTime<Utc>, g: Granularity, steady: bool) -> Vec<CustomerMonth> {
    let terms: Vec<(DateTime<Utc>, DateTime<Utc>, i64, Segment)> =
        orders.iter().filter_map(|o| o.term().filter(|(start, _, _)| *start < as_of).map(|(a, b, m)| (a, b, m, o.segment()))).collect();
    let Some(first) = terms.iter().map(|t| t.0).min() else {
        return Vec::new();
    };
    // The level up to `t` (terms with start < t <= end) and from `t` on
    // (start <= t < end).
    let state = |t: DateTime<Utc>, after: bool| -> State {
        let mut state = State::new();
        for (a, b, mrr, seg) in &terms {
            let running = if after { *a <= t && t < *b } else { *a < t && t <= *b };
            if running {
                *state.entry(seg.clone()).or_default() += mrr;
            }
        }
        state
    };
    let points: BTreeSet<DateTime<Utc>> = terms.iter().flat_map(|(a, b, _, _)| [*a, *b]).collect();
    let mut out = Vec::new();
    let mut ever_paid = false;
    let mut churned_at: Option<DateTime<Utc>> = None;
    let mut ps = g.start_of(first);
    let last = g.start_of(as_of);
    // The level at the period's start: the previous period's end.
    let mut start = state(ps, false);
    while ps <= last {
        let next = g.next(ps);
        let pe = next.min(as_of);
        if !steady && points.range(ps..pe).next().is_none() {
            // Nothing changes in this period: go to the one of the next change.
            match points.range(pe..).next() {
                Some(&p) if p < as_of => {
                    ps = g.start_of(p);
                    continue;
                }
                _ => break,
            }
        }
        let end = state(pe, false);
        let (s, e) = (total(&start), total(&end));
        // Walk the changes inside the period, in order.
        let mut paying = s > 0;
        let mut first_gain: Option<(State, Option<i64>)> = None;
        let mut dipped: Option<i64> = None;
        for &t in points.range(ps..pe) {
            let level = state(t, true);
            let now_paying = total(&level) > 0;
            if paying && !now_paying {
                churned_at = Some(t);
            } else if !paying && now_paying {
                let after = if ever_paid { churned_at.map(|c| (t - c).num_days()) } else { None };
                if s > 0 && dipped.is_none() {
                    dipped = Some(after.unwrap_or(0));
                }
                if s == 0 && first_gain.is_none() {
                    first_gain = Some((level, after));
                }
            }
            ever_paid |= now_paying;
            paying = now_paying;
        }
        let change = match (s > 0, e > 0) {
            (true, true) => match dipped {
                Some(after_days) => Change::Returned { after_days },
                None => Change::Steady,
            },
            (false, true) => Change::Started { reactivated_after_days: first_gain.and_then(|g| g.1) },
            (true, false) => Change::Ended,
            (false, false) => match first_gain {
                Some((through, reactivated_after_days)) => Change::Passing { through, reactivated_after_days },
                None => Change::Steady,
            },
        };
        if s > 0 || e > 0 || !matches!(change, Change::Steady) {
            out.push(CustomerMonth { month: g.key_of(ps), start: std::mem::take(&mut start), end: end.clone(), change });
        }
        start = end;
        ps = next;
    }
    out
}

/// What a rollup row holds for one month and group: movements and
/// customer counts, and revenue (orders by their date, refunds by theirs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevenueRow {
    #[serde(flatten)]
    pub movements: Movements,
    /// Sum of order amounts (after discounts, before tax) by order date.
    pub gross: i64,
    /// Sum of refunded amounts by refund date, and of amounts lost in
    /// disputes by the dispute's date.
    pub refunds: i64,
    pub orders: i64,
    pub refunded_orders: i64,
}

impl RevenueRow {
    pub fn net(&self) -> i64 {
        self.gross - self.refunds
    }

    pub fn is_empty(&self) -> bool {
        *self == RevenueRow::default()
    }
}

/// Every rollup row: `(group, yyyy-mm) → row`, for every month × country ×
/// plan with anything in it, and the same summed over countries, plans
/// and both (`*`). Movements of each group are classified within the
/// group, so a plan switch is a contraction of the old plan and an
/// expansion of the new one, and an expansion by the difference overall.
pub fn rollups(orders: &[Order], as_of: DateTime<Utc>) -> BTreeMap<(Group, String), RevenueRow> {
    period_rollups(orders, as_of, Granularity::Month)
}

/// [`rollups`] by periods of granularity `g`: each period's movements by
/// the same definitions, applied to the customer's MRR at the period's
/// start and end (so a week's or a day's movements balance its MRR
/// change, as a month's do). Only periods where a customer's MRR changed
/// are walked; the levels in between carry forward per group.
pub fn period_rollups(orders: &[Order], as_of: DateTime<Utc>, g: Granularity) -> BTreeMap<(Group, String), RevenueRow> {
    let mut rows: BTreeMap<(Group, String), RevenueRow> = BTreeMap::new();
    let mut by_customer: HashMap<&str, Vec<&Order>> = HashMap::new();
    for order in orders {
        by_customer.entry(order.user_id.as_str()).or_default().push(order);
        let segment = order.segment();
        if let Some(at) = parse_time(&order.created_at).filter(|t| *t <= as_of) {
            for group in Group::of(&segment) {
                let row = rows.entry((group, g.key_of(at))).or_default();
                row.gross += order.amount_cents;
                row.orders += 1;
            }
        }
        if let Some((amount, at)) = order.refund().filter(|(_, t)| *t <= as_of) {
            for group in Group::of(&segment) {
                let row = rows.entry((group, g.key_of(at))).or_default();
                row.refunds += amount;
                row.refunded_orders += 1;
            }
        }
        if let Some((amount, at)) = order.chargeback().filter(|(_, t)| *t <= as_of) {
            // An order refunded in part and then lost in a dispute counts once.
            let counted = order.refund().is_some_and(|(_, t)| t <= as_of);
            for group in Group::of(&segment) {
                let row = rows.entry((group, g.key_of(at))).or_default();
                row.refunds += amount;
                row.refunded_orders += i64::from(!counted);
            }
        }
    }
    // Movements of the periods with a change; their levels are the changed
    // customers' only, until the carry below adds everyone else's.
    let mut changes: BTreeMap<Group, BTreeMap<String, Movements>> = BTreeMap::new();
    let mut first: Option<NaiveDate> = None;
    for orders in by_customer.values() {
        for cm in customer_periods(orders, as_of, g, false) {
            let mut groups: BTreeSet<Group> = BTreeSet::new();
            let through = match &cm.change {
                Change::Passing { through, .. } => Some(through),
                _ => None,
            };
            for segment in cm.start.keys().chain(cm.end.keys()).chain(through.into_iter().flat_map(|t| t.keys())) {
                groups.extend(Group::of(segment));
            }
            if let Some(day) = g.parse_key(&cm.month) {
                first = Some(first.map_or(day, |f| f.min(day)));
            }
            for group in groups {
                let m = cm.movements(&group);
                changes.entry(group).or_default().entry(cm.month.clone()).or_default().add(&m);
            }
        }
    }
    if let Some(first) = first {
        let keys = g.keys_between(first, as_of.date_naive());
        for (group, changed) in changes {
            let (mut mrr, mut customers) = (0i64, 0i64);
            for key in &keys {
                let mut m = changed.get(key).copied().unwrap_or_default();
                let (mrr_change, customers_change) = (m.mrr_end - m.mrr_start, m.customers_end - m.customers_start);
                (m.mrr_start, m.customers_start) = (mrr, customers);
                (m.mrr_end, m.customers_end) = (mrr + mrr_change, customers + customers_change);
                (mrr, customers) = (m.mrr_end, m.customers_end);
                if m != Movements::default() {
                    rows.entry((group.clone(), key.clone())).or_default().movements.add(&m);
                }
            }
        }
    }
    rows.retain(|_, row| !row.is_empty());
    rows
}

/// The ratios and per-customer figures of one month of one group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// 12 × MRR at the end of the period.
    pub arr: i64,
    /// MRR ÷ paying customers at the end, rounded half up; none without customers.
    pub arpa: Option<i64>,
    /// Churned customers ÷ customers at the start.
    pub customer_churn_rate: Option<f64>,
    /// (churn + contraction) ÷ MRR at the start.
    pub gross_mrr_churn_rate: Option<f64>,
    /// (churn + contraction − expansion − reactivation) ÷ MRR at the start.
    pub net_mrr_churn_rate: Option<f64>,
    /// (start + expansion − contraction − churn) ÷ start.
    pub nrr: Option<f64>,
    /// (start − contraction − churn) ÷ start.
    pub grr: Option<f64>,
    /// (new + expansion + reactivation) ÷ (contraction + churn).
    pub quick_ratio: Option<f64>,
    /// ARPA ÷ the mean customer churn rate of the previous 6 months
    /// (those with a rate); none ("n/a") when that mean is 0 or unknown.
    pub ltv: Option<i64>,
}

fn ratio(a: i64, b: i64) -> Option<f64> {
    (b != 0).then(|| a as f64 / b as f64)
}

/// Metrics of `row`, given the customer churn rates of the months before
/// it (oldest first; only the last 6 count).
pub fn metrics(row: &Movements, previous_churn_rates: &[Option<f64>]) -> Metrics {
    let start = row.mrr_start;
    let arpa = (row.customers_end > 0).then(|| (2 * row.mrr_end + row.customers_end).div_euclid(2 * row.customers_end));
    let recent: Vec<f64> = previous_churn_rates.iter().rev().take(6).rev().filter_map(|r| *r).collect();
    let mean = (!recent.is_empty()).then(|| recent.iter().sum::<f64>() / recent.len() as f64);
    let ltv = match (arpa, mean) {
        (Some(arpa), Some(mean)) if mean > 0.0 => Some((arpa as f64 / mean).round() as i64),
        _ => None,
    };
    Metrics {
        arr: 12 * row.mrr_end,
        arpa,
        customer_churn_rate: ratio(row.churned_customers, row.customers_start),
        gross_mrr_churn_rate: ratio(row.churn + row.contraction, start),
        net_mrr_churn_rate: ratio(row.churn + row.contraction - row.expansion - row.reactivation, start),
        nrr: ratio(start + row.expansion - row.contraction - row.churn, start),
        grr: ratio(start - row.contraction - row.churn, start),
        quick_ratio: ratio(row.new + row.expansion + row.reactivation, row.contraction + row.churn),
        ltv,
    }
}

// Rollup keys. A refresh writes a new generation of rows, then points
// `REVENUE#META / CURRENT` at it, then deletes the previous one, so a
// reader never sees a half-written set.

/// The item naming the generation readers use.
pub const META_PK: &str = "REVENUE#META";
pub const META_SK: &str = "CURRENT";

/// The partition of a group's rows in a generation (sort key: `yyyy-mm`).
pub fn rollup_pk(generation: &str, group: &Group) -> String {
    format!("REVENUE#{generation}#{}#{}", group.country, group.plan)
}

/// What `REVENUE#META / CURRENT` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevenueMeta {
    pub generation: String,
    /// When the refresh ran, and the instant its figures are as of.
    pub computed_at: String,
    pub first_month: Option<String>,
    pub last_month: Option<String>,
    pub orders: u64,
    pub customers: u64,
    /// Every partition of the generation, as metas before the list moved to
    /// its own item ([`partitions_sk`]) held it; empty since. Readers read
    /// this item on every request, so it stays small.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<String>,
    pub version: u64,
    /// The segments (RFM names and custom segment ids) whose members'
    /// rows the generation holds (`segment_pk`).
    #[serde(default)]
    pub segments: Vec<String>,
}

/// The item (under [`META_PK`]) listing every partition of a generation,
/// so the refresh that replaces it can delete them.
pub fn partitions_sk(generation: &str) -> String {
    format!("PARTITIONS#{generation}")
}

/// What the [`partitions_sk`] item holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationPartitions {
    pub partitions: Vec<String>,
}

/// The partition of a segment's revenue rows (all its members' subscriptions;
/// sort key: `yyyy-mm`). No country is `segment`.
pub fn segment_pk(generation: &str, segment: &str) -> String {
    format!("REVENUE#{generation}#segment#{segment}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    fn order(id: &str, plan: &str, billing: Billing, amount: i64, start: &str) -> Order {
        Order {
            id: id.into(),
            user_id: "c1".into(),
            country: Some("US".into()),
            plan: Some(plan.into()),
            billing: Some(billing),
            amount_cents: amount,
            status: Some("paid".into()),
            created_at: start.into(),
            ..Default::default()
        }
    }

    fn months(orders: &[Order], as_of: &str) -> Vec<CustomerMonth> {
        customer_months(&orders.iter().collect::<Vec<_>>(), t(as_of))
    }

    fn all(cm: &CustomerMonth) -> Movements {
        cm.movements(&Group::all())
    }

    fn check_invariant(rows: &BTreeMap<(Group, String), RevenueRow>) {
        for ((group, month), row) in rows {
            assert_eq!(row.movements.mrr_end, row.movements.balanced_end(), "{group:?} {month}: {row:?}");
        }
    }

    #[test]
    fn annual_price_is_divided_by_12_half_up() {
        assert_eq!(normalized_mrr(9000, Billing::Annual), 750);
        assert_eq!(normalized_mrr(29000, Billing::Annual), 2417); // 2416.67
        assert_eq!(normalized_mrr(99000, Billing::Annual), 8250);
        assert_eq!(normalized_mrr(30, Billing::Annual), 3); // 2.5 rounds up
        assert_eq!(normalized_mrr(2900, Billing::Monthly), 2900);
    }

    #[test]
    fn monthly_subscription_new_then_steady_then_churn_at_term_end() {
        // Paid Jan 10, Feb 10, Mar 10 (monthly 2900): MRR from Jan 10 to Apr 10.
        let orders: Vec<Order> = ["2025-01-10T00:00:00Z", "2025-02-10T00:00:00Z", "2025-03-10T00:00:00Z"]
            .iter()
            .enumerate()
            .map(|(i, s)| order(&format!("o{i}"), "pro", Billing::Monthly, 2900, s))
            .collect();
        let ms = months(&orders, "2025-08-01T00:00:00Z");
        let by: BTreeMap<_, _> = ms.iter().map(|m| (m.month.as_str(), all(m))).collect();
        assert_eq!(by.keys().copied().collect::<Vec<_>>(), ["2025-01", "2025-02", "2025-03", "2025-04"]);
        assert_eq!((by["2025-01"].new, by["2025-01"].new_customers, by["2025-01"].mrr_end), (2900, 1, 2900));
        assert_eq!((by["2025-02"].mrr_start, by["2025-02"].mrr_end, by["2025-02"].expansion), (2900, 2900, 0));
        // Churn is dated at the end of the paid term (April 10), not at the last payment.
        assert_eq!((by["2025-04"].churn, by["2025-04"].churned_customers, by["2025-04"].mrr_end), (2900, 1, 0));
    }

    /// Golden case: new and churned in the same month — an annual plan
    /// bought on March 3 and cancelled early on March 20.
    #[test]
    fn golden_new_and_churned_in_the_same_month() {
        let mut o = order("o1", "team", Billing::Annual, 99000, "2025-03-03T00:00:00Z");
        o.ended_at = Some("2025-03-20T00:00:00Z".into());
        o.status = Some("refunded".into());
        o.refunded_at = Some("2025-03-20T00:00:00Z".into());
        let ms = months(&[o.clone()], "2025-06-01T00:00:00Z");
        assert_eq!(ms.len(), 1);
        let m = all(&ms[0]);
        assert_eq!((m.mrr_start, m.new, m.churn, m.mrr_end), (0, 8250, 8250, 0));
        assert_eq!(m.new_customers, 1);
        // Joined and churned in the month: not in the customer churn count.
        assert_eq!((m.customers_start, m.churned_customers), (0, 0));
        let rows = rollups(&[o], t("2025-06-01T00:00:00Z"));
        let row = rows[&(Group::all(), "2025-03".to_string())];
        assert_eq!((row.gross, row.refunds, row.net()), (99000, 99000, 0));
        assert_eq!(metrics(&row.movements, &[]).customer_churn_rate, None);
        check_invariant(&rows);
    }

    /// Golden case: the early cancellation of an annual plan is churn when
    /// it happens; its refund is revenue, not MRR.
    #[test]
    fn golden_annual_cancellation() {
        let mut o = order("o1", "basic", Billing::Annual, 9000, "2025-01-15T00:00:00Z");
        o.ended_at = Some("2025-06-10T00:00:00Z".into());
        o.status = Some("refunded".into());
        o.refunded_at = Some("2025-06-10T00:00:00Z".into());
        o.refunded_cents = Some(4500);
        let ms = months(&[o.clone()], "2025-12-01T00:00:00Z");
        let by: BTreeMap<_, _> = ms.iter().map(|m| (m.month.as_str(), all(m))).collect();
        assert_eq!(by["2025-01"].new, 750);
        for month in ["2025-02", "2025-03", "2025-04", "2025-05"] {
            assert_eq!((by[month].mrr_start, by[month].mrr_end, by[month].churn), (750, 750, 0), "{month}");
        }
        assert_eq!((by["2025-06"].churn, by["2025-06"].churned_customers, by["2025-06"].mrr_end), (750, 1, 0));
        assert!(!by.contains_key("2025-07"));
        let rows = rollups(&[o], t("2025-12-01T00:00:00Z"));
        assert_eq!(rows[&(Group::all(), "2025-01".to_string())].gross, 9000);
        assert_eq!(rows[&(Group::all(), "2025-06".to_string())].refunds, 4500);
        check_invariant(&rows);
    }

    /// Golden case: a refund of a monthly payment changes revenue, not MRR.
    #[test]
    fn golden_refund_leaves_mrr() {
        let mut orders: Vec<Order> = ["2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z"]
            .iter()
            .enumerate()
            .map(|(i, s)| order(&format!("o{i}"), "pro", Billing::Monthly, 2900, s))
            .collect();
        orders[1].status = Some("refunded".into());
        orders[1].refunded_at = Some("2025-02-05T00:00:00Z".into());
        let rows = rollups(&orders, t("2025-03-15T00:00:00Z"));
        let feb = rows[&(Group::all(), "2025-02".to_string())];
        assert_eq!((feb.movements.mrr_start, feb.movements.mrr_end, feb.movements.churn, feb.movements.contraction), (2900, 2900, 0, 0));
        assert_eq!((feb.gross, feb.refunds, feb.net(), feb.refunded_orders), (2900, 2900, 0, 1));
        // The current month ends at as_of: still paying.
        let mar = rows[&(Group::all(), "2025-03".to_string())];
        assert_eq!((mar.movements.mrr_end, mar.movements.churn), (2900, 0));
        check_invariant(&rows);
    }

    /// A dispute: open, it changes nothing; lost, its amount (past what was
    /// refunded) is a refund at its opening; won, nothing. MRR is left.
    #[test]
    fn a_lost_dispute_counts_as_a_refund_and_an_open_or_won_one_does_not() {
        let disputed = |status: &str, refunded: Option<i64>| {
            let mut o = order("o1", "pro", Billing::Monthly, 2900, "2025-01-01T00:00:00Z");
            o.status = Some(if status == "won" { "paid" } else { "disputed" }.into());
            o.dispute_status = Some(status.into());
            o.disputed_cents = (status != "won").then_some(2900);
            o.disputed_at = Some("2025-02-10T00:00:00Z".into());
            if let Some(r) = refunded {
                o.refunded_cents = Some(r);
                o.refunded_at = Some("2025-01-20T00:00:00Z".into());
            }
            o
        };
        let as_of = t("2025-03-15T00:00:00Z");
        let row = |o: &Order, month: &str| rollups(std::slice::from_ref(o), as_of).get(&(Group::all(), month.to_string())).copied().unwrap_or_default();
        for status in ["needs_response", "won"] {
            let o = disputed(status, None);
            assert_eq!(o.chargeback(), None, "{status}");
            assert_eq!((row(&o, "2025-02").refunds, row(&o, "2025-01").net()), (0, 2900), "{status}");
        }
        let lost = disputed("lost", None);
        assert_eq!(lost.chargeback(), Some((2900, t("2025-02-10T00:00:00Z"))));
        let feb = row(&lost, "2025-02");
        assert_eq!((feb.refunds, feb.refunded_orders, row(&lost, "2025-01").gross), (2900, 1, 2900));
        assert_eq!(lost.returned_by(as_of), 2900);
        assert_eq!(lost.returned_by(t("2025-02-01T00:00:00Z")), 0);
        // Refunded in part, then the rest lost: each by its date, never more than the order.
        let both = disputed("lost", Some(900));
        assert_eq!((row(&both, "2025-01").refunds, row(&both, "2025-01").refunded_orders), (900, 1));
        assert_eq!((row(&both, "2025-02").refunds, row(&both, "2025-02").refunded_orders), (2000, 0));
        assert_eq!(both.returned_by(as_of), 2900);
        check_invariant(&rollups(&[both], as_of));
    }

    /// Golden case: a reactivation 91 days after the churn.
    #[test]
    fn golden_reactivation_after_91_days() {
        // Monthly Feb 1 → Mar 1 (churn on Mar 1), back on May 31.
        let orders =
            vec![order("o1", "basic", Billing::Monthly, 900, "2025-02-01T00:00:00Z"), order("o2", "pro", Billing::Monthly, 2900, "2025-05-31T00:00:00Z")];
        let ms = months(&orders, "2025-06-15T00:00:00Z");
        let by: BTreeMap<_, _> = ms.iter().map(|m| (m.month.as_str(), m.clone())).collect();
        assert_eq!(all(&by["2025-03"]).churn, 900);
        assert_eq!(by["2025-03"].start.values().sum::<i64>(), 900);
        assert!(!by.contains_key("2025-04"));
        assert_eq!(by["2025-05"].change, Change::Started { reactivated_after_days: Some(91) });
        let may = all(&by["2025-05"]);
        assert_eq!((may.reactivation, may.reactivated_customers, may.reactivation_days, may.new), (2900, 1, 91, 0));
        check_invariant(&rollups(&orders, t("2025-06-15T00:00:00Z")));
    }

    /// Golden case: a plan switch mid-month. Overall an expansion by the
    /// difference; per plan, a contraction of the old and an expansion of the new.
    #[test]
    fn golden_plan_switch_mid_month() {
        let mut basic_feb = order("o2", "basic", Billing::Monthly, 900, "2025-02-01T00:00:00Z");
        basic_feb.ended_at = Some("2025-02-15T00:00:00Z".into());
        let orders = vec![
            order("o1", "basic", Billing::Monthly, 900, "2025-01-01T00:00:00Z"),
            basic_feb,
            order("o3", "pro", Billing::Monthly, 2900, "2025-02-15T00:00:00Z"),
            order("o4", "pro", Billing::Monthly, 2900, "2025-03-15T00:00:00Z"),
        ];
        let rows = rollups(&orders, t("2025-04-01T00:00:00Z"));
        let row = |country: &str, plan: &str, month: &str| rows[&(Group { country: country.into(), plan: plan.into() }, month.to_string())].movements;
        let feb = row("*", "*", "2025-02");
        assert_eq!((feb.mrr_start, feb.expansion, feb.contraction, feb.mrr_end, feb.new, feb.churn), (900, 2000, 0, 2900, 0, 0));
        let basic = row("US", "basic", "2025-02");
        assert_eq!((basic.mrr_start, basic.contraction, basic.churn, basic.mrr_end, basic.churned_customers), (900, 900, 0, 0, 0));
        let pro = row("US", "pro", "2025-02");
        assert_eq!((pro.mrr_start, pro.expansion, pro.new, pro.mrr_end, pro.customers_end), (0, 2900, 0, 2900, 1));
        assert_eq!(row("*", "*", "2025-03").mrr_end, 2900);
        check_invariant(&rows);
        // A downgrade is a contraction overall.
        let mut pro_m = order("p1", "pro", Billing::Monthly, 2900, "2025-01-01T00:00:00Z");
        pro_m.ended_at = Some("2025-01-20T00:00:00Z".into());
        let down = [pro_m, order("p2", "basic", Billing::Monthly, 900, "2025-01-20T00:00:00Z")];
        let rows = rollups(&down, t("2025-03-01T00:00:00Z"));
        let jan = rows[&(Group::all(), "2025-01".to_string())].movements;
        // Movements are net per customer and month: new at what it ends the month at.
        assert_eq!((jan.new, jan.contraction, jan.mrr_end), (900, 0, 900));
        check_invariant(&rows);
    }

    #[test]
    fn churn_and_return_within_a_month_and_one_off_orders() {
        // Ends Mar 5, back Mar 20: churn and reactivation (15 days) in March.
        let mut a = order("o1", "pro", Billing::Monthly, 2900, "2025-02-05T00:00:00Z");
        a.period_end = Some("2025-03-05T00:00:00Z".into());
        let b = order("o2", "pro", Billing::Monthly, 2900, "2025-03-20T00:00:00Z");
        let one_off = Order { id: "x".into(), user_id: "c1".into(), amount_cents: 500, created_at: "2025-03-02T00:00:00Z".into(), ..Default::default() };
        let orders = vec![a, b, one_off];
        let rows = rollups(&orders, t("2025-04-10T00:00:00Z"));
        let mar = rows[&(Group::all(), "2025-03".to_string())];
        assert_eq!((mar.movements.churn, mar.movements.reactivation, mar.movements.reactivation_days, mar.movements.mrr_end), (2900, 2900, 15, 2900));
        assert_eq!((mar.gross, mar.orders), (2900 + 500, 2));
        let none = rows[&(Group { country: UNKNOWN_COUNTRY.into(), plan: NO_PLAN.into() }, "2025-03".to_string())];
        assert_eq!((none.gross, none.movements.mrr_end), (500, 0));
        check_invariant(&rows);
    }

    #[test]
    fn metrics_follow_their_formulas() {
        let row = Movements {
            mrr_start: 10000,
            mrr_end: 10600,
            new: 1500,
            reactivation: 300,
            expansion: 400,
            contraction: 600,
            churn: 1000,
            customers_start: 20,
            customers_end: 21,
            churned_customers: 2,
            ..Default::default()
        };
        assert_eq!(row.balanced_end(), row.mrr_end);
        let m = metrics(&row, &[Some(0.5), Some(0.1), None, Some(0.1), Some(0.05), Some(0.05), Some(0.1)]);
        assert_eq!(m.arr, 127200);
        assert_eq!(m.arpa, Some(505)); // 504.76
        assert_eq!(m.customer_churn_rate, Some(0.1));
        assert_eq!(m.gross_mrr_churn_rate, Some(0.16));
        assert_eq!(m.net_mrr_churn_rate, Some(0.09));
        assert_eq!(m.nrr, Some(0.88));
        assert_eq!(m.grr, Some(0.84));
        assert_eq!(m.quick_ratio, Some(2200.0 / 1600.0));
        // The last six months (0.5 is older): 0.1, n/a, 0.1, 0.05, 0.05, 0.1 → mean 0.08.
        assert_eq!(m.ltv, Some((505.0f64 / ((0.1 + 0.1 + 0.05 + 0.05 + 0.1) / 5.0)).round() as i64));
        assert_eq!(metrics(&row, &[Some(0.0), Some(0.0)]).ltv, None);
        assert_eq!(metrics(&row, &[]).ltv, None);
        let empty = metrics(&Movements::default(), &[]);
        assert_eq!((empty.arpa, empty.nrr, empty.quick_ratio), (None, None, None));
    }

    #[test]
    fn months_arithmetic() {
        assert_eq!(add_months("2025-01", -1).as_deref(), Some("2024-12"));
        assert_eq!(add_months("2025-11", 3).as_deref(), Some("2026-02"));
        assert_eq!(month_start("2025-13"), None);
        assert_eq!(month_start("25-01"), None);
    }
}
