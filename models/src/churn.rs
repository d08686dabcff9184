//! Churn risk per paying customer (docs/analytics.md, "Churn risk"): will a
//! customer paying at `T` be at 0 MRR at some instant of `(T, T + 60 days]`?
//! An L2-regularized logistic regression over login recency, frequency and
//! decay, tenure, plan, billing, refunds, MRR and charts, trained on
//! earlier origins, measured on a held-out period (AUC, top-decile lift,
//! Brier score, calibration), then used to score every customer paying at
//! `as_of` with the three features that push their risk up the most.
//!
//! Churn means what the revenue metrics mean by it
//! (`shared::domain::revenue`): terms come from `Order::term`, a customer
//! churns when their MRR falls to 0, dated at the end of the paid term, and
//! the early cancellation of an annual plan is churn.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, Months, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use shared::domain::business::{CHART_CREATED, Event};
use shared::domain::revenue::{Billing, Order, parse_time};

/// The label's window: churn within this many days of the origin.
pub const HORIZON_DAYS: i64 = 60;
/// Training origins are stacked this many days apart, the latest one a
/// horizon before the held-out origin so no label window overlaps it.
const ORIGIN_STEP_DAYS: i64 = 30;
/// At most this many training origins (a year of them).
const MAX_TRAINING_ORIGINS: i64 = 12;
/// L2 penalty on the standardized coefficients (not the intercept).
const L2: f64 = 1.0;
/// Event kind of a sign-in.
pub const LOGIN: &str = "login";

/// The model, its measurement on the held-out period, and every paying
/// customer's risk at `as_of`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChurnReport {
    /// End of the last label window the model was trained on (RFC 3339).
    pub trained_to: String,
    /// The held-out origin: `as_of` − 60 days (RFC 3339).
    pub evaluated_at: String,
    /// `intercept`, then the features, in the order of `coefficients`.
    pub features: Vec<String>,
    /// Logistic coefficients on standardized features.
    pub coefficients: Vec<f64>,
    pub evaluation: Evaluation,
    /// Customers paying at `as_of`, riskiest first.
    pub customers: Vec<CustomerRisk>,
    /// Why a figure is missing or a fallback was used (no customers, no churners).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The model's scores at the held-out origin against what happened next.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Evaluation {
    /// Area under the ROC curve (rank-based, ties as half); 0.5 when undefined.
    pub auc: f64,
    /// Churn rate among the top 10 % of scores ÷ overall churn rate; 1.0 when undefined.
    pub top_decile_lift: f64,
    /// Mean of (probability − outcome)².
    pub brier: f64,
    /// Ten bins of equal size by predicted probability.
    pub calibration: Vec<CalibrationBin>,
    /// Customers paying at the held-out origin, and how many of them churned.
    pub customers: usize,
    pub churned: usize,
}

/// One calibration bin: customers whose predicted probability lies in `[lower, upper]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    pub customers: usize,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

/// A paying customer's probability of churning within 60 days of `as_of`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomerRisk {
    pub user_id: String,
    pub probability: f64,
    /// Up to three features raising the risk most, in words.
    pub reasons: Vec<String>,
    pub mrr_cents: i64,
    pub plan: Option<String>,
}

/// One paid term as known: `Order::term` plus what a feature may read of it.
#[derive(Debug, Clone)]
struct Term {
    start: DateTime<Utc>,
    /// Where MRR actually stops (`Order::term`, an early end included).
    end: DateTime<Utc>,
    /// The end before any early stop: what is known before `ended_at` happens.
    scheduled_end: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    mrr: i64,
    plan: Option<String>,
    billing: Billing,
}

impl Term {
    /// The end as known at `t`: an early stop only once it has happened.
    fn end_known_at(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        match self.ended_at {
            Some(e) if e <= t => self.end,
            _ => self.scheduled_end.max(self.end),
        }
    }
}

/// One customer's history: sorted sign-ins and charts, terms, refund instants.
#[derive(Debug, Clone, Default)]
struct History {
    logins: Vec<DateTime<Utc>>,
    charts: Vec<DateTime<Utc>>,
    terms: Vec<Term>,
    refunds: Vec<DateTime<Utc>>,
}

/// The raw features of one customer at one origin, before standardizing.
#[derive(Debug, Clone)]
struct Raw {
    days_since_login: f64,
    logins_30d: f64,
    logins_prev_60d: f64,
    tenure_months: f64,
    plan: Option<String>,
    annual: bool,
    renewal_in_days: f64,
    refunds: f64,
    churned_before: f64,
    mrr_cents: i64,
    charts_90d: f64,
}

/// The days counted before a first sign-in, and the cap on recency.
const RECENCY_CAP_DAYS: f64 = 365.0;

impl History {
    fn count(sorted: &[DateTime<Utc>], from: DateTime<Utc>, to: DateTime<Utc>) -> usize {
        // Events in (from, to].
        sorted.partition_point(|t| *t <= to) - sorted.partition_point(|t| *t <= from)
    }

    /// Terms running just before `t` (start < t ≤ end), as known at `t`.
    fn running(&self, t: DateTime<Utc>) -> impl Iterator<Item = &Term> {
        self.terms.iter().filter(move |x| x.start < t && t <= x.end_known_at(t))
    }

    fn mrr_at(&self, t: DateTime<Utc>) -> i64 {
        self.running(t).map(|x| x.mrr).sum()
    }

    /// Did MRR fall to 0 at some instant of `(t, t + horizon]`? Churn is
    /// dated at the end of a term that nothing continues (a renewal or a
    /// switch starts at that very instant).
    fn churned(&self, t: DateTime<Utc>, horizon: Duration) -> bool {
        let until = t + horizon;
        self.terms.iter().filter(|x| x.start < until).any(|x| {
            let b = x.end;
            b > t && b <= until && !self.terms.iter().any(|y| y.start <= b && b < y.end)
        })
    }

    /// Start of the paid spell running at `t` (continuous MRR back from `t`).
    fn spell_start(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut known: Vec<(DateTime<Utc>, DateTime<Utc>)> = self.terms.iter().filter(|x| x.start < t).map(|x| (x.start, x.end_known_at(t))).collect();
        known.sort();
        let mut spell: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
        let mut found = None;
        for (a, b) in known {
            spell = match spell {
                Some((s, e)) if a <= e => Some((s, e.max(b))),
                _ => Some((a, b)),
            };
            if let Some((s, e)) = spell
                && s < t
                && t <= e
            {
                found = Some(s);
            }
        }
        found
    }

    /// Paid spells that ended (MRR to 0) at or before `t`.
    fn churns_before(&self, t: DateTime<Utc>) -> usize {
        let ends: BTreeSet<DateTime<Utc>> = self.terms.iter().map(|x| x.end_known_at(t)).filter(|b| *b <= t).collect();
        ends.into_iter().filter(|b| !self.terms.iter().any(|y| y.start <= *b && *b < y.end_known_at(t) && y.start < t)).count()
    }

    /// Features at `t` from what is known at `t`; none unless paying.
    fn raw(&self, t: DateTime<Utc>) -> Option<Raw> {
        let mrr_cents = self.mrr_at(t);
        if mrr_cents <= 0 {
            return None;
        }
        let current = self.running(t).max_by_key(|x| x.start)?;
        let spell = self.spell_start(t).unwrap_or(current.start);
        let last_login = self.logins[..self.logins.partition_point(|x| *x <= t)].last().copied();
        let days_since_login = (t - last_login.unwrap_or(spell)).num_seconds() as f64 / 86_400.0;
        let renewal = self.running(t).map(|x| x.end_known_at(t)).max().unwrap_or(t);
        Some(Raw {
            days_since_login: days_since_login.clamp(0.0, RECENCY_CAP_DAYS),
            logins_30d: Self::count(&self.logins, t - Duration::days(30), t) as f64,
            logins_prev_60d: Self::count(&self.logins, t - Duration::days(90), t - Duration::days(30)) as f64,
            tenure_months: (t - spell).num_days() as f64 / 30.44,
            plan: current.plan.clone(),
            annual: current.billing == Billing::Annual,
            renewal_in_days: (renewal - t).num_seconds() as f64 / 86_400.0,
            refunds: self.refunds.iter().filter(|r| **r <= t).count() as f64,
            churned_before: self.churns_before(t) as f64,
            mrr_cents,
            charts_90d: Self::count(&self.charts, t - Duration::days(90), t) as f64,
        })
    }
}

/// Sign-ins in the last 30 days against the previous 60, as a log rate
/// ratio (each count smoothed by half a sign-in so no-activity stays finite).
fn log_decay(r: &Raw) -> f64 {
    ((r.logins_30d + 0.5) / 30.0).ln() - ((r.logins_prev_60d + 0.5) / 60.0).ln()
}

/// What the model reads: names and how each is computed from the raw
/// features (counts and durations on a log scale, where risk bends most
/// near zero).
#[derive(Debug, Clone, PartialEq)]
enum Feature {
    Recency,
    Logins90,
    Decay,
    Tenure,
    Plan(String),
    Annual,
    RenewalDue,
    Refunds,
    ChurnedBefore,
    Mrr,
    Charts90,
}

impl Feature {
    fn name(&self) -> String {
        match self {
            Feature::Recency => "log_days_since_login".into(),
            Feature::Logins90 => "log_logins_90d".into(),
            Feature::Decay => "login_decay_log_ratio".into(),
            Feature::Tenure => "log_tenure_months".into(),
            Feature::Plan(p) => format!("plan_{p}"),
            Feature::Annual => "billing_annual".into(),
            Feature::RenewalDue => "renewal_within_60d".into(),
            Feature::Refunds => "refunds".into(),
            Feature::ChurnedBefore => "churned_before".into(),
            Feature::Mrr => "log_mrr".into(),
            Feature::Charts90 => "log_charts_90d".into(),
        }
    }

    fn value(&self, r: &Raw) -> f64 {
        match self {
            Feature::Recency => r.days_since_login.ln_1p(),
            Feature::Logins90 => (r.logins_30d + r.logins_prev_60d).ln_1p(),
            Feature::Decay => log_decay(r),
            Feature::Tenure => r.tenure_months.max(0.0).ln_1p(),
            Feature::Plan(p) => f64::from(u8::from(r.plan.as_deref() == Some(p.as_str()))),
            Feature::Annual => f64::from(u8::from(r.annual)),
            Feature::RenewalDue => f64::from(u8::from(r.renewal_in_days <= HORIZON_DAYS as f64)),
            Feature::Refunds => r.refunds,
            Feature::ChurnedBefore => r.churned_before,
            Feature::Mrr => (r.mrr_cents.max(0) as f64 / 100.0).ln_1p(),
            Feature::Charts90 => r.charts_90d.ln_1p(),
        }
    }

    /// The feature's value for this customer, in words.
    fn explain(&self, r: &Raw) -> String {
        let plural = |n: f64, one: &str, many: &str| {
            if n < 0.5 {
                format!("no {many}")
            } else if n < 1.5 {
                format!("1 {one}")
            } else {
                format!("{n:.0} {many}")
            }
        };
        match self {
            Feature::Recency => format!("no sign-in for {:.0} days", r.days_since_login.floor()),
            Feature::Logins90 => format!("{} in the last 90 days", plural(r.logins_30d + r.logins_prev_60d, "sign-in", "sign-ins")),
            Feature::Decay => {
                if r.logins_prev_60d == 0.0 {
                    format!("{} in the last 30 days, none in the 60 before", plural(r.logins_30d, "sign-in", "sign-ins"))
                } else {
                    let change = (r.logins_30d / 30.0) / (r.logins_prev_60d / 60.0) - 1.0;
                    let word = if change < 0.0 { "down" } else { "up" };
                    format!("sign-ins {word} {:.0} % vs the previous 60 days", (change.abs() * 100.0).round())
                }
            }
            Feature::Tenure => format!("paying for {:.0} months", r.tenure_months.floor()),
            Feature::Plan(_) => format!("on the {} plan", r.plan.as_deref().unwrap_or("unknown")),
            Feature::Annual => {
                if r.annual {
                    "billed annually".into()
                } else {
                    "billed monthly".into()
                }
            }
            Feature::RenewalDue => {
                if r.renewal_in_days <= HORIZON_DAYS as f64 {
                    format!("renewal due in {:.0} days", r.renewal_in_days.ceil().max(0.0))
                } else {
                    format!("no renewal for {:.0} days", r.renewal_in_days.floor())
                }
            }
            Feature::Refunds => plural(r.refunds, "refund", "refunds"),
            Feature::ChurnedBefore => {
                if r.churned_before == 0.0 {
                    "never churned before".into()
                } else {
                    format!("churned before ({} times)", r.churned_before)
                }
            }
            Feature::Mrr => format!("MRR {:.2}", r.mrr_cents as f64 / 100.0),
            Feature::Charts90 => format!("{} in the last 90 days", plural(r.charts_90d, "chart created", "charts created")),
        }
    }
}

/// Per-feature mean and standard deviation of the training rows.
#[derive(Debug, Clone)]
struct Scaler {
    mean: Vec<f64>,
    sd: Vec<f64>,
}

impl Scaler {
    fn fit(rows: &[Vec<f64>], width: usize) -> Scaler {
        let n = rows.len().max(1) as f64;
        let mean: Vec<f64> = (0..width).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n).collect();
        let sd = (0..width)
            .map(|j| {
                let v = rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n;
                // A constant feature stays at 0 after centering.
                if v.sqrt() > 1e-12 { v.sqrt() } else { 1.0 }
            })
            .collect();
        Scaler { mean, sd }
    }

    fn apply(&self, row: &[f64]) -> Vec<f64> {
        row.iter().zip(self.mean.iter().zip(&self.sd)).map(|(x, (m, s))| (x - m) / s).collect()
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 { 1.0 / (1.0 + (-z).exp()) } else { z.exp() / (1.0 + z.exp()) }
}

/// Linear score of one standardized row: intercept first in `beta`.
fn score(beta: &[f64], z: &[f64]) -> f64 {
    beta[0] + beta[1..].iter().zip(z).map(|(b, x)| b * x).sum::<f64>()
}

/// Solve `a x = b` by Gaussian elimination with partial pivoting; none
/// when `a` is singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (top, below) = a.split_at_mut(col + 1);
        let (pivot_row, (b_top, b_below)) = (&top[col], b.split_at_mut(col + 1));
        for (row, rhs) in below.iter_mut().zip(b_below.iter_mut()) {
            let f = row[col] / pivot_row[col];
            for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            *rhs -= f * b_top[col];
        }
    }
    let mut x = vec![0.0; n];
    for (row, coefficients) in a.iter().enumerate().rev() {
        let s: f64 = coefficients[row + 1..].iter().zip(&x[row + 1..]).map(|(c, v)| c * v).sum();
        x[row] = (b[row] - s) / coefficients[row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// L2-regularized logistic regression by Newton's method (IRLS) on
/// standardized rows: minimizes −log-likelihood + `l2`/2 · ‖w‖² (the
/// intercept unpenalized). Returns `[intercept, w…]`. Both classes must be
/// present; the penalty keeps the Hessian positive definite.
pub fn fit_logistic(rows: &[Vec<f64>], labels: &[bool], l2: f64) -> Vec<f64> {
    let width = rows.first().map_or(0, Vec::len) + 1;
    let mut beta = vec![0.0; width];
    for _ in 0..50 {
        let mut grad = vec![0.0; width];
        let mut hess = vec![vec![0.0; width]; width];
        for (z, &y) in rows.iter().zip(labels) {
            let p = sigmoid(score(&beta, z));
            let w = (p * (1.0 - p)).max(1e-9);
            let x: Vec<f64> = std::iter::once(1.0).chain(z.iter().copied()).collect();
            let r = f64::from(u8::from(y)) - p;
            for (xi, (g, h)) in x.iter().zip(grad.iter_mut().zip(hess.iter_mut())) {
                *g += xi * r;
                for (hij, xj) in h.iter_mut().zip(&x) {
                    *hij += w * xi * xj;
                }
            }
        }
        // Penalize all but the intercept.
        for (i, (g, b)) in grad.iter_mut().zip(&beta).enumerate().skip(1) {
            *g -= l2 * b;
            hess[i][i] += l2;
        }
        let Some(step) = solve(hess, grad) else { break };
        let largest = step.iter().fold(0.0f64, |m, s| m.max(s.abs()));
        for (b, s) in beta.iter_mut().zip(&step) {
            *b += s;
        }
        if largest < 1e-9 {
            break;
        }
    }
    beta
}

/// Area under the ROC curve: the probability that a random churner scores
/// above a random stayer, ties counting half (the Mann–Whitney U with
/// mid-ranks). None without both classes.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|y| **y).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 || scores.len() != labels.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean.
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mid * order[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        i = j + 1;
    }
    Some((rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64)
}

/// Churn rate among the top tenth of scores (⌈n/10⌉ customers) ÷ the
/// overall churn rate. Scores tied at the cut count by the tied group's
/// churn rate (the expectation over orderings of the tie). None without churners.
pub fn top_decile_lift(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let n = scores.len();
    let pos = labels.iter().filter(|y| **y).count();
    if pos == 0 || n != labels.len() {
        return None;
    }
    let k = n.div_ceil(10);
    let mut sorted: Vec<f64> = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let cut = sorted[k - 1];
    let above: Vec<usize> = (0..n).filter(|&i| scores[i] > cut).collect();
    let tied: Vec<usize> = (0..n).filter(|&i| scores[i] == cut).collect();
    let churn = |ix: &[usize]| ix.iter().filter(|&&i| labels[i]).count() as f64;
    let from_tie = if tied.is_empty() { 0.0 } else { (k - above.len()) as f64 * churn(&tied) / tied.len() as f64 };
    let top_rate = (churn(&above) + from_tie) / k as f64;
    Some(top_rate / (pos as f64 / n as f64))
}

/// Mean squared difference between probability and outcome.
pub fn brier(probabilities: &[f64], labels: &[bool]) -> f64 {
    if probabilities.is_empty() {
        return 0.0;
    }
    probabilities.iter().zip(labels).map(|(p, y)| (p - f64::from(u8::from(*y))).powi(2)).sum::<f64>() / probabilities.len() as f64
}

/// Ten bins of (nearly) equal size by predicted probability: fewer when
/// there are fewer than ten customers.
pub fn calibration(probabilities: &[f64], labels: &[bool]) -> Vec<CalibrationBin> {
    let n = probabilities.len().min(labels.len());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]));
    let bins = n.min(10);
    (0..bins)
        .map(|b| {
            let ix = &order[b * n / bins..(b + 1) * n / bins];
            let m = ix.len().max(1) as f64;
            CalibrationBin {
                lower: ix.first().map_or(0.0, |&i| probabilities[i]),
                upper: ix.last().map_or(0.0, |&i| probabilities[i]),
                customers: ix.len(),
                mean_predicted: ix.iter().map(|&i| probabilities[i]).sum::<f64>() / m,
                observed_rate: ix.iter().filter(|&&i| labels[i]).count() as f64 / m,
            }
        })
        .collect()
}

fn histories(events: &[Event], orders: &[Order], as_of: DateTime<Utc>) -> HashMap<String, History> {
    let mut out: HashMap<String, History> = HashMap::new();
    for o in orders {
        if parse_time(&o.created_at).is_none_or(|t| t > as_of) {
            continue;
        }
        let Some((start, end, mrr)) = o.term() else { continue };
        let Some(billing) = o.billing else { continue };
        let scheduled_end = o.period_end.as_deref().and_then(parse_time).or_else(|| start.checked_add_months(Months::new(billing.months()))).unwrap_or(end);
        let h = out.entry(o.user_id.clone()).or_default();
        h.terms.push(Term {
            start,
            end,
            scheduled_end,
            ended_at: o.ended_at.as_deref().and_then(parse_time),
            mrr,
            plan: o.plan.clone().filter(|p| !p.is_empty()),
            billing,
        });
        if let Some((_, at)) = o.refund().filter(|(_, at)| *at <= as_of) {
            h.refunds.push(at);
        }
    }
    for e in events {
        let Some(h) = out.get_mut(&e.user_id) else { continue };
        let Some(t) = parse_time(&e.ts).filter(|t| *t <= as_of) else { continue };
        match e.kind.as_str() {
            LOGIN => h.logins.push(t),
            CHART_CREATED => h.charts.push(t),
            _ => {}
        }
    }
    for h in out.values_mut() {
        h.logins.sort();
        h.charts.sort();
    }
    out
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A finite number, or 0: the report never carries NaN or infinity.
fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// Fit on origins before the held-out period, measure on it, score everyone
/// paying at `as_of`. Never panics: without customers or churners it
/// returns what it can, with `notes` saying why.
pub fn churn_risk(events: &[Event], orders: &[Order], as_of: DateTime<Utc>) -> ChurnReport {
    let horizon = Duration::days(HORIZON_DAYS);
    let held_out = as_of - horizon;
    let histories = histories(events, orders, as_of);
    let mut users: Vec<&String> = histories.keys().collect();
    users.sort();
    let mut notes = Vec::new();

    // Training origins: a horizon before the held-out origin, then a month apart.
    let first_term = histories.values().flat_map(|h| h.terms.iter().map(|t| t.start)).min();
    let origins: Vec<DateTime<Utc>> = (0..MAX_TRAINING_ORIGINS)
        .map(|k| held_out - horizon - Duration::days(ORIGIN_STEP_DAYS * k))
        .take_while(|t| first_term.is_some_and(|f| *t > f))
        .collect();
    let mut train: Vec<(Raw, bool)> = Vec::new();
    for &t in &origins {
        for u in &users {
            if let Some(raw) = histories[*u].raw(t) {
                train.push((raw, histories[*u].churned(t, horizon)));
            }
        }
    }
    let plans: BTreeSet<String> = train.iter().filter_map(|(r, _)| r.plan.clone()).collect();
    // Frequency over 90 days and its trend; the 30-day count would be
    // nearly their sum, and with all three the signs stop meaning anything.
    let mut features = vec![Feature::Recency, Feature::Logins90, Feature::Decay, Feature::Tenure];
    features.extend(plans.into_iter().map(Feature::Plan));
    features.extend([Feature::Annual, Feature::RenewalDue, Feature::Refunds, Feature::ChurnedBefore, Feature::Mrr, Feature::Charts90]);
    let row = |r: &Raw| -> Vec<f64> { features.iter().map(|f| finite(f.value(r))).collect() };

    let x: Vec<Vec<f64>> = train.iter().map(|(r, _)| row(r)).collect();
    let y: Vec<bool> = train.iter().map(|(_, c)| *c).collect();
    let scaler = Scaler::fit(&x, features.len());
    let z: Vec<Vec<f64>> = x.iter().map(|r| scaler.apply(r)).collect();
    let churners = y.iter().filter(|c| **c).count();
    let beta: Vec<f64> = if churners == 0 || churners == y.len() {
        notes.push(format!(
            "training rows: {} customers × origins, {churners} churned: both outcomes are needed to fit, so every customer gets the smoothed base rate",
            y.len()
        ));
        let rate = (churners as f64 + 0.5) / (y.len() as f64 + 1.0);
        std::iter::once((rate / (1.0 - rate)).ln()).chain(std::iter::repeat_n(0.0, features.len())).collect()
    } else {
        fit_logistic(&z, &y, L2).into_iter().map(finite).collect()
    };
    let predict = |r: &Raw| -> (f64, Vec<f64>) {
        let zr = scaler.apply(&row(r));
        (finite(sigmoid(score(&beta, &zr))), zr)
    };

    // The held-out period.
    let mut probabilities = Vec::new();
    let mut outcomes = Vec::new();
    for u in &users {
        if let Some(raw) = histories[*u].raw(held_out) {
            probabilities.push(predict(&raw).0);
            outcomes.push(histories[*u].churned(held_out, horizon));
        }
    }
    let churned = outcomes.iter().filter(|c| **c).count();
    if probabilities.is_empty() {
        notes.push(format!("no customer was paying at the held-out origin {}: nothing to evaluate", rfc3339(held_out)));
    } else if churned == 0 || churned == outcomes.len() {
        notes
            .push(format!("{churned} of {} customers churned in the held-out period: AUC and lift are undefined, shown at chance (0.5 and 1)", outcomes.len()));
    }
    let evaluation = Evaluation {
        auc: finite(auc(&probabilities, &outcomes).unwrap_or(0.5)),
        top_decile_lift: finite(top_decile_lift(&probabilities, &outcomes).unwrap_or(1.0)),
        brier: finite(brier(&probabilities, &outcomes)),
        calibration: calibration(&probabilities, &outcomes),
        customers: outcomes.len(),
        churned,
    };

    // Everyone paying now.
    let mut customers: Vec<CustomerRisk> = users
        .iter()
        .filter_map(|u| {
            let raw = histories[*u].raw(as_of)?;
            let (probability, zr) = predict(&raw);
            let mut pushes: Vec<(f64, &Feature)> = features.iter().enumerate().map(|(j, f)| (beta[j + 1] * zr[j], f)).filter(|(c, _)| *c > 1e-9).collect();
            pushes.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut reasons: Vec<String> = Vec::new();
            for (_, f) in pushes {
                let words = f.explain(&raw);
                if !reasons.contains(&words) {
                    reasons.push(words);
                }
                if reasons.len() == 3 {
                    break;
                }
            }
            Some(CustomerRisk { user_id: (*u).clone(), probability, reasons, mrr_cents: raw.mrr_cents, plan: raw.plan.clone() })
        })
        .collect();
    customers.sort_by(|a, b| b.probability.total_cmp(&a.probability).then_with(|| a.user_id.cmp(&b.user_id)));
    if customers.is_empty() {
        notes.push(format!("no customer is paying at {}: nobody to score", rfc3339(as_of)));
    }

    ChurnReport {
        trained_to: rfc3339(origins.first().map_or(held_out, |t| *t + horizon)),
        evaluated_at: rfc3339(held_out),
        features: std::iter::once("intercept".to_string()).chain(features.iter().map(Feature::name)).collect(),
        coefficients: beta,
        evaluation,
        customers,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    fn order(user: &str, start: DateTime<Utc>, billing: Billing, cents: i64) -> Order {
        let end = start.checked_add_months(Months::new(billing.months())).unwrap();
        Order {
            id: format!("{user}-{start}"),
            user_id: user.into(),
            plan: Some("pro".into()),
            billing: Some(billing),
            amount_cents: cents,
            status: Some("paid".into()),
            created_at: rfc3339(start),
            period_start: Some(rfc3339(start)),
            period_end: Some(rfc3339(end)),
            ..Default::default()
        }
    }

    #[test]
    fn auc_on_known_inputs() {
        // Of the four churner/stayer pairs, three are ordered right.
        assert_eq!(auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]), Some(0.75));
        assert_eq!(auc(&[0.9, 0.8, 0.1], &[true, true, false]), Some(1.0));
        assert_eq!(auc(&[0.1, 0.8, 0.9], &[true, false, false]), Some(0.0));
        // A tie between a churner and a stayer counts half.
        assert_eq!(auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(auc(&[0.2, 0.5, 0.5, 0.9], &[false, true, false, true]), Some(0.875));
        assert_eq!(auc(&[0.2, 0.3], &[false, false]), None);
        assert_eq!(auc(&[], &[]), None);
    }

    #[test]
    fn lift_on_known_inputs() {
        // 20 customers, 2 churners, both in the top 2 (the top decile): rate 1 vs 0.1.
        let scores: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let labels: Vec<bool> = (0..20).map(|i| i >= 18).collect();
        assert_eq!(top_decile_lift(&scores, &labels), Some(10.0));
        // One of the two in the top decile: 0.5 vs 0.1.
        let labels: Vec<bool> = (0..20).map(|i| i == 19 || i == 0).collect();
        assert_eq!(top_decile_lift(&scores, &labels), Some(5.0));
        // All scores tied: the top decile is an average draw.
        assert_eq!(top_decile_lift(&[0.3; 20], &labels), Some(1.0));
        // 11 customers: the top decile is ⌈1.1⌉ = 2 of them.
        let scores: Vec<f64> = (0..11).map(|i| i as f64).collect();
        let labels: Vec<bool> = (0..11).map(|i| i == 10).collect();
        assert_eq!(top_decile_lift(&scores, &labels), Some(0.5 / (1.0 / 11.0)));
        assert_eq!(top_decile_lift(&[0.1, 0.2], &[false, false]), None);
    }

    #[test]
    fn brier_and_calibration_on_known_inputs() {
        assert_eq!(brier(&[0.0, 1.0], &[false, true]), 0.0);
        assert_eq!(brier(&[0.5, 0.5], &[false, true]), 0.25);
        let p: Vec<f64> = (0..25).map(|i| i as f64 / 25.0).collect();
        let y: Vec<bool> = (0..25).map(|i| i % 5 == 0).collect();
        let bins = calibration(&p, &y);
        assert_eq!(bins.len(), 10);
        assert_eq!(bins.iter().map(|b| b.customers).sum::<usize>(), 25);
        assert!(bins.windows(2).all(|w| w[0].upper <= w[1].lower));
        // The first bin holds the two lowest: 0 and 0.04, the first a churner.
        assert_eq!((bins[0].customers, bins[0].mean_predicted, bins[0].observed_rate), (2, 0.02, 0.5));
        assert_eq!(calibration(&[0.3], &[true]).len(), 1);
        assert!(calibration(&[], &[]).is_empty());
    }

    #[test]
    fn logistic_fit_meets_its_optimality_condition() {
        // Deterministic, overlapping classes: the risk rises with x0, x1 is noise.
        let rows: Vec<Vec<f64>> = (0..200).map(|i| vec![(i % 20) as f64 / 10.0 - 1.0, ((i * 7) % 13) as f64 / 6.0 - 1.0]).collect();
        let labels: Vec<bool> = (0..200).map(|i| (i % 20) as f64 + ((i * 3) % 11) as f64 > 16.0).collect();
        let beta = fit_logistic(&rows, &labels, L2);
        assert!(beta[1] > 1.0, "{beta:?}");
        assert!(beta[2].abs() < beta[1] / 4.0, "{beta:?}");
        // The gradient of the penalized log-likelihood vanishes at the fit.
        let mut grad = [0.0; 3];
        for (z, y) in rows.iter().zip(&labels) {
            let r = f64::from(u8::from(*y)) - sigmoid(score(&beta, z));
            grad[0] += r;
            grad[1] += z[0] * r;
            grad[2] += z[1] * r;
        }
        grad[1] -= L2 * beta[1];
        grad[2] -= L2 * beta[2];
        assert!(grad.iter().all(|g| g.abs() < 1e-6), "{grad:?}");
    }

    #[test]
    fn churn_is_the_mrr_falling_to_zero_within_the_window() {
        let orders = vec![order("a", at(2025, 1, 1), Billing::Monthly, 900), order("a", at(2025, 2, 1), Billing::Monthly, 900)];
        let h = &histories(&[], &orders, at(2026, 1, 1))["a"];
        // MRR stops on March 1st: within 60 days of January 15th, not of December 15th.
        assert!(h.churned(at(2025, 1, 15), Duration::days(60)));
        assert!(!h.churned(at(2024, 12, 15), Duration::days(60)));
        // A renewal at the very instant the term ends is no churn.
        let mut renewed = orders.clone();
        renewed.push(order("a", at(2025, 3, 1), Billing::Monthly, 900));
        assert!(!histories(&[], &renewed, at(2026, 1, 1))["a"].churned(at(2025, 1, 15), Duration::days(30)));

        // An annual plan cancelled early churns at the cancellation, which
        // the features at an earlier origin do not know about.
        let mut annual = order("b", at(2025, 1, 1), Billing::Annual, 12_000);
        annual.ended_at = Some(rfc3339(at(2025, 1, 20)));
        annual.status = Some("refunded".into());
        annual.refunded_at = annual.ended_at.clone();
        let h = &histories(&[], &[annual], at(2026, 1, 1))["b"];
        assert!(h.churned(at(2025, 1, 10), Duration::days(60)));
        let before = h.raw(at(2025, 1, 10)).unwrap();
        assert!(before.renewal_in_days > 300.0 && before.refunds == 0.0 && before.mrr_cents == 1000, "{before:?}");
        assert!(h.raw(at(2025, 1, 21)).is_none());
    }

    #[test]
    fn features_read_only_the_past() {
        let orders = vec![order("a", at(2025, 1, 1), Billing::Monthly, 2900), order("a", at(2025, 2, 1), Billing::Monthly, 2900)];
        let login = |d: DateTime<Utc>| Event { user_id: "a".into(), kind: LOGIN.into(), ts: rfc3339(d), country: None };
        let events = vec![login(at(2024, 12, 20)), login(at(2025, 1, 6)), login(at(2025, 1, 25)), login(at(2025, 2, 10))];
        let h = &histories(&events, &orders, at(2026, 1, 1))["a"];
        let r = h.raw(at(2025, 2, 4)).unwrap();
        assert_eq!((r.logins_30d, r.logins_prev_60d), (2.0, 1.0));
        assert!((r.days_since_login - 10.0).abs() < 1e-9);
        assert_eq!(r.mrr_cents, 2900);
        assert_eq!(r.plan.as_deref(), Some("pro"));
        assert_eq!(Feature::Recency.explain(&r), "no sign-in for 10 days");
        // 2 in 30 days vs 1 in 60: the rate quadrupled.
        assert_eq!(Feature::Decay.explain(&r), "sign-ins up 300 % vs the previous 60 days");
    }

    #[test]
    fn degenerate_data_is_explained_not_a_panic() {
        let now = at(2026, 6, 1);
        let empty = churn_risk(&[], &[], now);
        assert!(empty.customers.is_empty() && !empty.notes.is_empty());
        assert_eq!(empty.evaluation.customers, 0);
        assert_eq!(empty.features.len(), empty.coefficients.len());
        serde_json::to_string(&empty).unwrap();

        // Customers who never churn: nothing to learn, everyone scored at the base rate.
        let orders: Vec<Order> = ["a", "b", "c"]
            .iter()
            .flat_map(|u| (0..20).map(move |m| order(u, at(2024, 11, 1).checked_add_months(Months::new(m)).unwrap(), Billing::Monthly, 900)))
            .collect();
        let loyal = churn_risk(&[], &orders, now);
        assert_eq!(loyal.customers.len(), 3);
        assert_eq!((loyal.evaluation.customers, loyal.evaluation.churned), (3, 0));
        assert_eq!(loyal.evaluation.auc, 0.5);
        assert!(loyal.notes.len() >= 2, "{:?}", loyal.notes);
        assert!(loyal.customers.iter().all(|c| c.probability > 0.0 && c.probability < 0.5 && c.mrr_cents == 900));

        // Garbage timestamps are skipped.
        let mut bad = order("d", now, Billing::Monthly, 900);
        bad.created_at = "yesterday".into();
        let events = vec![Event { user_id: "d".into(), kind: LOGIN.into(), ts: "soon".into(), country: None }];
        let r = churn_risk(&events, &[bad], now);
        assert!(r.customers.is_empty());
        assert!(r.coefficients.iter().chain([&r.evaluation.auc, &r.evaluation.brier]).all(|x| x.is_finite()));
    }
}
