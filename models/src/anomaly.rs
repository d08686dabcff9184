//! Anomalies on the daily series (docs/analytics.md, "Anomalies").
//!
//! Each series is put on a scale where its noise is about the same at
//! every level (Anscombe's `2·sqrt(x + 3/8)` for counts, whose variance is
//! then about 1 whatever the mean; `sqrt` of dollars for revenue), so a
//! country with two signups a day is judged as fairly as the total. MSTL
//! (weekly period, robust STL so a spike does not bend the trend towards
//! itself) takes out the trend and the weekly pattern; what is left is
//! scored against a robust scale (1.4826 × the median absolute deviation),
//! which a handful of anomalies cannot inflate as they would a standard
//! deviation. One residual beyond `SPIKE_Z` is a spike or a drop; a run of
//! moderate residuals of one sign is a level shift, found by a two-sided
//! CUSUM and reported once, on the day the run began. The yearly pattern
//! is left to the trend: two years are only two cycles, and the trend
//! window (`TREND_DAYS`) is short enough to follow the monthly swings.

use std::collections::BTreeMap;

use augurs::mstl::stlrs::{MstlParams, StlParams};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::series::{Dimension, REVENUE_CENTS, Series};

/// A day whose residual is this many robust standard deviations out is a
/// spike (above) or a drop (below). High because there are thousands of
/// series-days: at 4.5 a Gaussian residual crosses it once in 150,000.
pub const SPIKE_Z: f64 = 4.5;
/// CUSUM slack per day, in robust standard deviations: a shift smaller
/// than this does not accumulate.
pub const SHIFT_SLACK: f64 = 0.75;
/// CUSUM alarm level: e.g. a shift that leaves residuals of 1.75
/// deviations is found after about 8 days, one of 3 after 4.
pub const SHIFT_ALARM: f64 = 8.0;
/// Days the MSTL trend smooths over: long enough that a level shift stays
/// in the residuals for the CUSUM to see, short enough to follow growth
/// and the months of the year.
pub const TREND_DAYS: usize = 45;
/// Residuals are clamped to this many deviations before the CUSUM, so a
/// lone spike is not also a level shift.
const CUSUM_CLAMP: f64 = 3.0;
/// The smallest robust scale on the transformed axis. Sparse series
/// (mostly zero days) have a MAD near 0, which would make every single
/// event an anomaly; a Poisson count's Anscombe transform has a standard
/// deviation of about 1 at a mean of 1 and no less than this below it.
const MIN_SCALE: f64 = 0.8;
/// The same for revenue, in √dollars: one basic order ($9) on an empty
/// day is 3.
const MIN_REVENUE_SCALE: f64 = 3.0;
/// Revenue is heavy-tailed (one annual team order is ten monthly ones),
/// so its thresholds are this much wider.
const REVENUE_WIDER: f64 = 2.0;
/// A plan's daily revenue is wider still: one annual order of the priciest
/// plan (12 months at once) scores up to 11 robust deviations on a plan's
/// ordinary day, and is not an incident.
pub const REVENUE_SLICE_WIDER: f64 = 2.7;
/// Fewer days than this cannot separate a weekly pattern from noise.
const MIN_DAYS: usize = 28;
const WEEK: usize = 7;

/// One anomalous day (or the first day of a level shift) of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub metric: String,
    pub dimension: Option<Dimension>,
    pub date: NaiveDate,
    /// `spike`, `drop` or `level_shift`.
    pub kind: String,
    /// The value that day; for a level shift, the mean from its start to
    /// the day it was confirmed.
    pub observed: f64,
    /// The fitted value (trend and weekly pattern) on the same days.
    pub expected: f64,
    /// The range of ordinary days around `expected` (± `SPIKE_Z` robust
    /// deviations on the transformed scale, brought back).
    pub lower: f64,
    pub upper: f64,
    /// How far out, in robust deviations: the residual for a spike or a
    /// drop, the mean residual of the run times the square root of its
    /// length for a level shift. Negative below expected.
    pub score: f64,
    /// For a total: the country or plan whose own series was furthest out
    /// in the same direction on that day.
    pub driver: Option<Dimension>,
}

/// The decomposition of one series on its transformed scale.
struct Fitted<'a> {
    series: &'a Series,
    /// Trend plus weekly pattern, transformed scale.
    fitted: Vec<f64>,
    /// Residuals in robust deviations.
    z: Vec<f64>,
    scale: f64,
}

/// The anomalies of every series, oldest first within a series. Series too
/// short to decompose (under four weeks) or that MSTL rejects have none.
pub fn detect(series: &[Series]) -> Vec<Anomaly> {
    let fits: Vec<Fitted> = series.iter().filter_map(fit).collect();
    let mut found = Vec::new();
    for f in &fits {
        for mut anomaly in anomalies_of(f) {
            if f.series.dimension.is_none() {
                anomaly.driver = driver(&fits, f.series, anomaly.date, anomaly.score.signum(), anomaly.kind == "level_shift");
            }
            found.push(anomaly);
        }
    }
    found
}

fn transform(metric: &str, x: f64) -> f64 {
    let x = if x.is_finite() { x.max(0.0) } else { 0.0 };
    if metric == REVENUE_CENTS { (x / 100.0).sqrt() } else { 2.0 * (x + 3.0 / 8.0).sqrt() }
}

fn inverse(metric: &str, y: f64) -> f64 {
    let y = y.max(0.0);
    if metric == REVENUE_CENTS { y * y * 100.0 } else { (y * y / 4.0 - 3.0 / 8.0).max(0.0) }
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 }
}

fn fit(series: &Series) -> Option<Fitted<'_>> {
    if series.values.len() < MIN_DAYS {
        return None;
    }
    let y: Vec<f32> = series.values.iter().map(|x| transform(&series.metric, *x) as f32).collect();
    let mut stl = StlParams::new();
    stl.robust(true).trend_length(TREND_DAYS);
    let decomposition = MstlParams::new().stl_params(stl).fit(&y, &[WEEK]).ok()?;
    let residual: Vec<f64> = decomposition.remainder().iter().map(|r| *r as f64).collect();
    if residual.iter().any(|r| !r.is_finite()) {
        return None;
    }
    // A fit below the transform of 0 (robust STL can dip there on sparse
    // series) would make an ordinary zero or one look far out.
    let floor = transform(&series.metric, 0.0);
    let fitted: Vec<f64> = y.iter().zip(&residual).map(|(y, r)| (*y as f64 - r).max(floor)).collect();
    let residual: Vec<f64> = y.iter().zip(&fitted).map(|(y, f)| *y as f64 - f).collect();
    let center = median(&mut residual.clone());
    let mad = median(&mut residual.iter().map(|r| (r - center).abs()).collect::<Vec<_>>());
    let floor_scale = if series.metric == REVENUE_CENTS { MIN_REVENUE_SCALE } else { MIN_SCALE };
    let scale = (1.4826 * mad).max(floor_scale);
    let z = residual.iter().map(|r| r / scale).collect();
    Some(Fitted { series, fitted, z, scale })
}

fn anomalies_of(f: &Fitted) -> Vec<Anomaly> {
    let metric = f.series.metric.as_str();
    let make = |start: usize, end: usize, kind: &str, score: f64| -> Option<Anomaly> {
        let days = (end - start + 1) as f64;
        let observed = f.series.values[start..=end].iter().sum::<f64>() / days;
        let fitted = f.fitted[start..=end].iter().sum::<f64>() / days;
        Some(Anomaly {
            metric: metric.to_string(),
            dimension: f.series.dimension.clone(),
            date: f.series.date(start)?,
            kind: kind.to_string(),
            observed,
            expected: inverse(metric, fitted),
            lower: inverse(metric, fitted - SPIKE_Z * f.scale),
            upper: inverse(metric, fitted + SPIKE_Z * f.scale),
            score,
            driver: None,
        })
    };
    let wider = match (metric, &f.series.dimension) {
        (REVENUE_CENTS, Some(_)) => REVENUE_SLICE_WIDER,
        (REVENUE_CENTS, None) => REVENUE_WIDER,
        _ => 1.0,
    };
    let shifts = level_shifts(&f.z, SHIFT_ALARM * wider);
    // A shift is one incident: the days of its run and of the trend
    // window after it (while the trend catches up, and when the level
    // comes back) are not reported again one by one.
    let in_shift = |i: usize| shifts.iter().any(|(start, end, _)| i >= *start && i <= end + TREND_DAYS);
    let mut found = Vec::new();
    for (i, z) in f.z.iter().enumerate() {
        if z.abs() >= SPIKE_Z * wider && !in_shift(i) {
            found.extend(make(i, i, if *z > 0.0 { "spike" } else { "drop" }, *z));
        }
    }
    for (start, end, score) in shifts {
        found.extend(make(start, end, "level_shift", score));
    }
    found.sort_by_key(|a| a.date);
    found
}

/// Two-sided CUSUM over the residuals: `(start, confirmed, score)` of each
/// run, where `start` is the day the sum last left zero. After an alarm
/// the same side stays quiet for a trend window, since the trend needs
/// that long to absorb the new level and the rest of the run is the same
/// shift.
fn level_shifts(z: &[f64], alarm: f64) -> Vec<(usize, usize, f64)> {
    let mut found = Vec::new();
    for sign in [1.0, -1.0] {
        let (mut sum, mut start, mut quiet_until) = (0.0_f64, 0, 0);
        for (i, zi) in z.iter().enumerate() {
            let step = sign * zi.clamp(-CUSUM_CLAMP, CUSUM_CLAMP) - SHIFT_SLACK;
            if sum <= 0.0 {
                start = i;
            }
            sum = (sum + step).max(0.0);
            if sum > alarm && i >= quiet_until {
                let run = &z[start..=i];
                let score = run.iter().sum::<f64>() / (run.len() as f64).sqrt();
                found.push((start, i, score));
                sum = 0.0;
                quiet_until = i + TREND_DAYS;
            } else if sum > alarm {
                sum = 0.0;
            }
        }
    }
    found
}

/// The dimension series of `total`'s metric furthest out in `direction`
/// on `date` (for a level shift, over the week from `date`), if any is out
/// at all.
fn driver(fits: &[Fitted], total: &Series, date: NaiveDate, direction: f64, shift: bool) -> Option<Dimension> {
    let mut best: BTreeMap<String, (f64, Dimension)> = BTreeMap::new();
    for f in fits.iter().filter(|f| f.series.metric == total.metric) {
        let Some(dimension) = &f.series.dimension else { continue };
        let Ok(index) = usize::try_from((date - f.series.start).num_days()) else { continue };
        let days = if shift { WEEK } else { 1 };
        let window: Vec<f64> = f.z.iter().skip(index).take(days).copied().collect();
        if window.is_empty() {
            continue;
        }
        let out = direction * window.iter().sum::<f64>() / window.len() as f64;
        let entry = best.entry(dimension.key.clone()).or_insert((0.0, dimension.clone()));
        if out > entry.0 {
            *entry = (out, dimension.clone());
        }
    }
    // Across keys (a metric cut both by country and by plan), the one
    // furthest out explains the most.
    best.into_values().filter(|(out, _)| *out > 0.0).max_by(|a, b| a.0.total_cmp(&b.0)).map(|(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::{ORDERS, SIGNUPS};

    /// A weekly pattern around `level` with deterministic, Poisson-sized
    /// noise (a fixed pseudo-random sequence, so the test is exact).
    fn weekly(level: f64, days: usize) -> Vec<f64> {
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        (0..days)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state % 1000) as f64 / 1000.0 - 0.5;
                let weekday = if i % 7 >= 5 { 0.7 } else { 1.0 };
                (level * weekday + u * 2.0 * level.sqrt()).round().max(0.0)
            })
            .collect()
    }

    fn series(metric: &str, dimension: Option<Dimension>, values: Vec<f64>) -> Series {
        Series { metric: metric.into(), dimension, start: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(), values }
    }

    #[test]
    fn an_ordinary_series_is_silent() {
        let found = detect(&[series(SIGNUPS, None, weekly(20.0, 365)), series(SIGNUPS, None, vec![3.0; 365])]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_spike_is_found_on_its_day_with_its_expected_range() {
        let mut values = weekly(20.0, 365);
        values[200] += 40.0;
        let found = detect(&[series(SIGNUPS, None, values)]);
        assert_eq!(found.len(), 1, "{found:?}");
        let a = &found[0];
        assert_eq!((a.kind.as_str(), a.date), ("spike", NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + chrono::Days::new(200)));
        assert!(a.observed > a.upper && a.lower < a.expected && a.expected < a.upper && a.score > SPIKE_Z, "{a:?}");
        assert!((a.expected - 20.0).abs() < 5.0, "{a:?}");
    }

    #[test]
    fn a_level_shift_is_reported_once_at_its_start() {
        let mut values = weekly(20.0, 365);
        for v in &mut values[150..200] {
            *v += 20.0;
        }
        let found = detect(&[series(ORDERS, None, values)]);
        let shifts: Vec<_> = found.iter().filter(|a| a.kind == "level_shift" && a.score > 0.0).collect();
        assert_eq!(shifts.len(), 1, "{found:?}");
        let start = (shifts[0].date - NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()).num_days();
        assert!((149..=151).contains(&start), "{found:?}");
        assert!(shifts[0].observed > shifts[0].expected);
    }

    #[test]
    fn a_total_is_driven_by_the_dimension_that_moved() {
        let day = 120;
        let mut de = weekly(5.0, 300);
        de[day] += 30.0;
        let mut total = weekly(20.0, 300);
        total[day] += 30.0;
        let found = detect(&[
            series(SIGNUPS, None, total),
            series(SIGNUPS, Some(Dimension::new("country", "DE")), de),
            series(SIGNUPS, Some(Dimension::new("country", "US")), weekly(15.0, 300)),
        ]);
        let total = found.iter().find(|a| a.dimension.is_none()).expect("the total's spike");
        assert_eq!(total.driver, Some(Dimension::new("country", "DE")));
        assert!(found.iter().any(|a| a.dimension == Some(Dimension::new("country", "DE"))));
    }

    #[test]
    fn bad_input_is_no_anomaly_not_a_panic() {
        let mut odd = vec![f64::NAN, f64::INFINITY, -5.0];
        odd.extend(vec![1.0; 60]);
        assert!(detect(&[series(SIGNUPS, None, vec![]), series(SIGNUPS, None, vec![1.0; 5]), series(SIGNUPS, None, odd)]).is_empty());
    }
}
