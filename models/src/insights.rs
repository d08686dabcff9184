//! Insights: ranked findings from the fitted models (docs/analytics.md,
//! "Insights"). Each generator states where its confidence comes from:
//! none is a constant. Impact is in the finding's own unit (users, orders,
//! charts, cents) with its money equivalent in `value_cents` where one can
//! be estimated (users × paid conversion × ARPA), so that priority
//! (= |money impact| × confidence) ranks findings of different kinds on one
//! scale.
//!
//! Also the outcome measurement of an implemented insight: its series'
//! mean daily value in the 30 days before vs the 30 days from the change,
//! with Welch's t-test for the confidence that it moved the desired way.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use distrs::{Normal, StudentsT};
use shared::domain::insights::{Evidence, Finding, Impact, InsightCategory, InsightOutcome, Measure, MeasureDirection, OUTCOME_AFTER_DAYS, StoredQuery};
use shared::store::timestamp;

use crate::anomaly::Anomaly;
use crate::churn::ChurnReport;
use crate::forecast::Forecast;
use crate::series::{Dimension, Series};

/// Anomalies this recent (days before the refresh) become insights; older
/// ones are history, shown by the predictions read.
pub const RECENT_ANOMALY_DAYS: i64 = 14;
/// Forecast insights look this many periods ahead: four weeks of a daily
/// series, a quarter of a monthly one.
pub const DAILY_LOOKAHEAD: usize = 28;
pub const MONTHLY_LOOKAHEAD: usize = 3;

/// A series' display name: `signups`, `orders{plan=pro}`.
pub fn series_name(metric: &str, dimension: Option<&Dimension>) -> String {
    match dimension {
        Some(d) => format!("{metric}{{{}={}}}", d.key, d.value),
        None => metric.to_string(),
    }
}

/// A forecast with what it forecasts.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NamedForecast {
    pub series: String,
    /// `day` or `month`.
    pub granularity: String,
    /// The first forecast period (`yyyy-mm-dd` or `yyyy-mm`).
    pub start: String,
    /// The last observed values (up to a lookahead's worth), for the change
    /// the forecast implies.
    pub recent: Vec<f64>,
    #[serde(flatten)]
    pub forecast: Forecast,
}

/// What the generators read.
pub struct Inputs<'a> {
    pub as_of: DateTime<Utc>,
    pub anomalies: &'a [Anomaly],
    pub forecasts: &'a [NamedForecast],
    pub churn: Option<&'a ChurnReport>,
    /// Current MRR ÷ paying customers, cents.
    pub arpa_cents: f64,
    /// Share of the last year's signups who paid.
    pub paid_conversion: f64,
}

fn money(unit: &str, value: f64, inputs: &Inputs<'_>) -> Option<f64> {
    match unit {
        "cents" => Some(value),
        "users" => Some(value * inputs.paid_conversion * inputs.arpa_cents),
        "orders" => Some(value * inputs.arpa_cents),
        _ => None,
    }
}

fn category(metric: &str) -> InsightCategory {
    match metric {
        "signups" => InsightCategory::Growth,
        m if m.contains("revenue") || m.contains("order") || m.contains("mrr") => InsightCategory::Revenue,
        // Active users, charts created.
        _ => InsightCategory::Engagement,
    }
}

fn unit(metric: &str) -> &'static str {
    if metric.contains("revenue") || metric.contains("mrr") {
        "cents"
    } else if metric.contains("order") {
        "orders"
    } else if metric.contains("chart") {
        "charts"
    } else {
        "users"
    }
}

fn query(path: &str, params: &[(&str, String)]) -> StoredQuery {
    StoredQuery { method: "GET".into(), path: path.into(), params: params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() }
}

/// Two-sided confidence of a standard score: P(|Z| < |z|).
fn two_sided(z: f64) -> f64 {
    if !z.is_finite() {
        return 0.0;
    }
    (2.0 * Normal::cdf(z.abs(), 0.0, 1.0) - 1.0).clamp(0.0, 1.0)
}

fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

fn with_money(mut finding: Finding, inputs: &Inputs<'_>) -> Finding {
    finding.impact.value = finite(finding.impact.value);
    finding.impact.value_cents = money(&finding.impact.unit, finding.impact.value, inputs).map(finite);
    finding.confidence = finite(finding.confidence).clamp(0.0, 1.0);
    finding
}

/// Every finding, unranked.
pub fn findings(inputs: &Inputs<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(anomaly_findings(inputs));
    out.extend(forecast_findings(inputs));
    out.extend(churn_finding(inputs));
    out.into_iter().map(|f| with_money(f, inputs)).collect()
}

/// A recent anomaly: what happened, how far from the expected range, and
/// the country or plan driving it. Confidence: two-sided from its robust
/// score (a standard score of the residual). Impact: (observed − expected)
/// per day, times the days it has lasted for a level shift.
fn anomaly_findings(inputs: &Inputs<'_>) -> Vec<Finding> {
    let today = inputs.as_of.date_naive();
    // One finding per series: its strongest recent anomaly (the others are
    // counted in it), so a noisy week does not flood the list.
    let mut strongest: BTreeMap<String, (&Anomaly, usize)> = BTreeMap::new();
    for a in inputs.anomalies.iter().filter(|a| (today - a.date).num_days() <= RECENT_ANOMALY_DAYS && a.date <= today) {
        let entry = strongest.entry(series_name(&a.metric, a.dimension.as_ref())).or_insert((a, 0));
        entry.1 += 1;
        if a.score.abs() > entry.0.score.abs() {
            entry.0 = a;
        }
    }
    strongest
        .into_values()
        .map(|(a, count)| {
            let name = series_name(&a.metric, a.dimension.as_ref());
            let days = if a.kind == "level_shift" { (today - a.date).num_days().max(1) } else { 1 };
            let delta = a.observed - a.expected;
            let unit = unit(&a.metric);
            let direction = if delta >= 0.0 { "above" } else { "below" };
            let driver = a.driver.as_ref().map(|d| format!(", driven by {}={}", d.key, d.value)).unwrap_or_default();
            let mut figures = BTreeMap::from([
                ("observed".to_string(), a.observed),
                ("expected".to_string(), a.expected),
                ("lower".to_string(), a.lower),
                ("upper".to_string(), a.upper),
                ("score".to_string(), a.score),
            ]);
            figures.insert("days".into(), days as f64);
            figures.insert("anomalies_in_window".into(), count as f64);
            let recommendation = match (a.kind.as_str(), delta >= 0.0) {
                ("spike", true) => format!("Find what drove the spike in {name} on {} (a campaign, a partner, a bot) and repeat or block it.", a.date),
                ("level_shift", true) => format!("{name} moved to a higher level from {}: find the change behind it and make it permanent.", a.date),
                (_, false) => format!("Check {name} around {}: an outage, a failing payment or sign-up path, or a lost channel.", a.date),
                _ => format!("Look into {name} on {}.", a.date),
            };
            Finding {
                key: format!("anomaly:{name}:{}", a.date),
                title: format!("{} in {name} on {}", a.kind.replace('_', " "), a.date),
                explanation: format!(
                    "{name} was {:.1} on {} against an expected {:.1} (range {:.1} to {:.1}), {:.1} {direction}{driver}; robust score {:.1}; {count} anomal{} on this series in the last {RECENT_ANOMALY_DAYS} days.",
                    a.observed,
                    a.date,
                    a.expected,
                    a.lower,
                    a.upper,
                    delta.abs(),
                    a.score,
                    if count == 1 { "y" } else { "ies" }
                ),
                evidence: Evidence { series: vec![name.clone()], ids: vec![format!("{}#{}", a.date, name)], figures },
                confidence: two_sided(a.score),
                impact: Impact { value: delta * days as f64, unit: unit.into(), formula: format!("(observed − expected) × days = ({:.1} − {:.1}) × {days}", a.observed, a.expected), value_cents: None },
                category: category(&a.metric),
                recommendation,
                query: query(
                    "/api/v1/analytics/predictions",
                    &[("from", (a.date - Duration::days(1)).to_string()), ("to", (a.date + Duration::days(1)).to_string()), ("customers", "0".into())],
                ),
                measure: Measure { series: name, desired: MeasureDirection::Up },
            }
        })
        .collect()
}

/// The change a forecast implies over the lookahead: for `mrr` (a level)
/// its value at the end against the last month's; for a daily flow
/// (`signups`) the next four weeks' total against the last four weeks'.
/// Confidence: the probability that the change has the forecast's sign,
/// with the spread read from the 95 % interval (σ = width ÷ 3.92, summed in
/// quadrature over the days of a flow).
fn forecast_findings(inputs: &Inputs<'_>) -> Vec<Finding> {
    inputs
        .forecasts
        .iter()
        .filter(|f| f.series == "mrr" || f.series == "signups")
        .filter_map(|named| {
            let f = &named.forecast;
            let level = named.granularity == "month";
            let k = (if level { MONTHLY_LOOKAHEAD } else { DAILY_LOOKAHEAD }).min(f.point.len());
            if k == 0 || named.recent.is_empty() {
                return None;
            }
            let sigma_at = |i: usize| (f.upper_95[i] - f.lower_95[i]) / 3.92;
            let (before, after, sigma) = if level {
                (named.recent[named.recent.len() - 1], f.point[k - 1], sigma_at(k - 1))
            } else {
                let recent = &named.recent[named.recent.len().saturating_sub(k)..];
                let scale = k as f64 / recent.len() as f64;
                (recent.iter().sum::<f64>() * scale, f.point[..k].iter().sum::<f64>(), (0..k).map(|i| sigma_at(i).powi(2)).sum::<f64>().sqrt())
            };
            let delta = after - before;
            let confidence = if sigma > 0.0 { Normal::cdf(delta.abs() / sigma, 0.0, 1.0) } else { 1.0 };
            let relative = if before != 0.0 { delta / before } else { 0.0 };
            let way = if delta >= 0.0 { "grow" } else { "fall" };
            let span = if level { format!("{k} months") } else { format!("{k} days") };
            let figures = BTreeMap::from([
                ("before".to_string(), before),
                ("forecast".to_string(), after),
                ("relative_mase".to_string(), f.backtest.relative_mase),
                ("coverage_95".to_string(), f.backtest.coverage_95),
            ]);
            Some(Finding {
                key: format!("forecast:{}", named.series),
                title: format!("{} forecast to {way} {:.1}% over the next {span}", named.series, relative.abs() * 100.0),
                explanation: format!(
                    "The {} model (chosen by backtest: relative MASE {:.2} vs seasonal naive, 95% interval coverage {:.0}%) forecasts {} {:.0} over the next {span}, against {:.0} {}.",
                    f.backtest.chosen,
                    f.backtest.relative_mase,
                    f.backtest.coverage_95 * 100.0,
                    named.series,
                    after,
                    before,
                    if level { "now" } else { "in the last as many days" }
                ),
                evidence: Evidence { series: vec![named.series.clone()], ids: Vec::new(), figures },
                confidence,
                impact: Impact {
                    value: delta,
                    unit: unit(&named.series).into(),
                    formula: format!("forecast − current = {after:.0} − {before:.0}"),
                    value_cents: None,
                },
                category: if level { InsightCategory::Revenue } else { InsightCategory::Growth },
                recommendation: if delta >= 0.0 {
                    format!("Plan capacity and targets for {} to {way}; the 80% interval is the range to plan within.", named.series)
                } else {
                    format!("{} is heading down: act on acquisition and retention now (see the churn and anomaly insights).", named.series)
                },
                query: query("/api/v1/analytics/predictions", &[("series", named.series.clone()), ("customers", "0".into())]),
                measure: Measure { series: named.series.clone(), desired: MeasureDirection::Up },
            })
        })
        .collect()
}

/// The customers in the churn model's top decile: expected MRR lost within
/// 60 days (Σ probability × MRR). Confidence: the model's Gini on the
/// held-out period (2 × AUC − 1): how well it ranks churners first.
fn churn_finding(inputs: &Inputs<'_>) -> Option<Finding> {
    let report = inputs.churn?;
    let n = report.customers.len().div_ceil(10);
    if n == 0 || report.evaluation.auc <= 0.5 {
        return None;
    }
    let top = &report.customers[..n.min(report.customers.len())];
    let at_stake: f64 = top.iter().map(|c| c.probability * c.mrr_cents as f64).sum();
    let mrr: i64 = top.iter().map(|c| c.mrr_cents).sum();
    let mean_p = top.iter().map(|c| c.probability).sum::<f64>() / top.len() as f64;
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for c in top {
        if let Some(first) = c.reasons.first() {
            // The reason's kind: its words before the first number.
            let kind: String = first.split(|ch: char| ch.is_ascii_digit()).next().unwrap_or(first).trim().to_string();
            *reasons.entry(kind).or_default() += 1;
        }
    }
    let common = reasons.iter().max_by_key(|(_, n)| **n).map(|(r, n)| format!("; the most common first reason ({n} of them): \"{r}…\"")).unwrap_or_default();
    let figures = BTreeMap::from([
        ("customers".to_string(), top.len() as f64),
        ("mrr_cents".to_string(), mrr as f64),
        ("expected_loss_cents".to_string(), at_stake),
        ("mean_probability".to_string(), mean_p),
        ("auc".to_string(), report.evaluation.auc),
        ("top_decile_lift".to_string(), report.evaluation.top_decile_lift),
    ]);
    Some(Finding {
        key: "churn:top_decile".into(),
        title: format!("{} customers at high churn risk, ${:.0} MRR at stake", top.len(), at_stake / 100.0),
        explanation: format!(
            "The riskiest 10% of paying customers ({}) hold ${:.0} of MRR; their mean churn probability within 60 days is {:.0}%, so ${:.0} of MRR is expected to churn. The model ranked churners first with AUC {:.2} and a top-decile lift of {:.1}x on the held-out period{common}.",
            top.len(),
            mrr as f64 / 100.0,
            mean_p * 100.0,
            at_stake / 100.0,
            report.evaluation.auc,
            report.evaluation.top_decile_lift
        ),
        evidence: Evidence { series: vec!["mrr".into()], ids: top.iter().take(50).map(|c| c.user_id.clone()).collect(), figures },
        confidence: (2.0 * report.evaluation.auc - 1.0).clamp(0.0, 1.0),
        impact: Impact { value: -at_stake, unit: "cents".into(), formula: "−Σ probability × MRR over the top decile".into(), value_cents: None },
        category: InsightCategory::Churn,
        recommendation: "Reach out to these customers before their term ends (success call, a plan that fits, a win-back offer), starting with the highest MRR × probability; their top reasons say what to address.".into(),
        query: query("/api/v1/analytics/predictions", &[("customers", n.to_string())]),
        measure: Measure { series: "mrr".into(), desired: MeasureDirection::Up },
    })
}

/// The measured outcome of acting on an insight at `implemented`, from the
/// daily series named `measure.series`: the mean of the 30 days before vs
/// the 30 days from it; the confidence that it moved the desired way is
/// one-sided, Welch's t-test. None when the series is unknown or does not
/// cover both windows.
pub fn measure_outcome(series: &[Series], measure: &Measure, implemented: NaiveDate, now: DateTime<Utc>) -> Option<InsightOutcome> {
    let s = series.iter().find(|s| series_name(&s.metric, s.dimension.as_ref()) == measure.series)?;
    let window = |from: NaiveDate| -> Option<Vec<f64>> {
        let start = (from - s.start).num_days();
        let end = start + OUTCOME_AFTER_DAYS;
        if start < 0 || end as usize > s.values.len() {
            return None;
        }
        Some(s.values[start as usize..end as usize].to_vec())
    };
    let before = window(implemented - Duration::days(OUTCOME_AFTER_DAYS))?;
    let after = window(implemented)?;
    let stats = |v: &[f64]| {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var, n)
    };
    let ((m1, v1, n1), (m2, v2, n2)) = (stats(&before), stats(&after));
    let se2 = v1 / n1 + v2 / n2;
    let diff = if measure.desired == MeasureDirection::Up { m2 - m1 } else { m1 - m2 };
    let confidence = if se2 > 0.0 {
        let df = se2 * se2 / ((v1 / n1).powi(2) / (n1 - 1.0) + (v2 / n2).powi(2) / (n2 - 1.0));
        StudentsT::cdf(diff / se2.sqrt(), df.max(1.0))
    } else if diff > 0.0 {
        1.0
    } else {
        0.0
    };
    Some(InsightOutcome {
        series: measure.series.clone(),
        before: finite(m1),
        after: finite(m2),
        relative_change: if m1 != 0.0 { finite((m2 - m1) / m1) } else { 0.0 },
        confidence: finite(confidence).clamp(0.0, 1.0),
        measured_at: timestamp(now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: Vec<f64>) -> Vec<Series> {
        vec![Series { metric: "signups".into(), dimension: None, start: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(), values }]
    }

    #[test]
    fn outcome_sees_a_real_lift_and_not_noise() {
        let measure = Measure { series: "signups".into(), desired: MeasureDirection::Up };
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + Duration::days(40);
        // 10 a day (±1) before, 13 (±1) after: verified.
        let values: Vec<f64> = (0..100).map(|i| if i < 40 { 10.0 } else { 13.0 } + if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let out = measure_outcome(&series(values), &measure, day, Utc::now()).unwrap();
        assert!((out.before - 10.0).abs() < 0.1 && (out.after - 13.0).abs() < 0.1, "{out:?}");
        assert!(out.confidence > 0.99, "{out:?}");
        // The same level throughout: no confidence either way.
        let flat: Vec<f64> = (0..100).map(|i| 10.0 + if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let out = measure_outcome(&series(flat), &measure, day, Utc::now()).unwrap();
        assert!(out.confidence > 0.2 && out.confidence < 0.8, "{out:?}");
        // A drop when up is desired: confident it did not work.
        let down = Measure { desired: MeasureDirection::Down, ..measure.clone() };
        let values: Vec<f64> = (0..100).map(|i| if i < 40 { 10.0 } else { 13.0 } + if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        assert!(measure_outcome(&series(values.clone()), &down, day, Utc::now()).unwrap().confidence < 0.01);
        // Not enough days after, or an unknown series: nothing to measure.
        assert!(measure_outcome(&series(values.clone()), &measure, day + Duration::days(40), Utc::now()).is_none());
        assert!(measure_outcome(&series(values), &Measure { series: "x".into(), desired: MeasureDirection::Up }, day, Utc::now()).is_none());
    }

    #[test]
    fn confidence_from_scores() {
        assert!((two_sided(1.96) - 0.95).abs() < 0.001);
        assert_eq!(two_sided(f64::NAN), 0.0);
    }
}
