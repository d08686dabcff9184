//! Forecasts that carry their own accuracy: every candidate model is
//! backtested on the series (rolling origin, `backtest`), the one with the
//! lowest mean MASE is refitted on the whole series, and its 80 % and 95 %
//! intervals are conformal, calibrated from the backtest's errors.
//! Method and formulas: docs/analytics.md, "Forecasts".

use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::{Fit, Predict};
use serde::{Deserialize, Serialize};

use crate::backtest::{self, Plan};

/// Standard normal quantiles for two-sided 80 % and 95 % intervals.
pub(crate) const Z80: f64 = 1.281_551_565_544_600_4;
pub(crate) const Z95: f64 = 1.959_963_984_540_054;

/// A fitted forecast with its backtest card.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Forecast {
    /// The chosen method: `naive`, `seasonal_naive`, `drift`, `ets`,
    /// `mstl_ets`, or `none` when there is no data at all.
    pub model: String,
    /// The transform the model was fitted on: `none`, `log` or `log1p`.
    pub transform: String,
    /// Point forecasts (the back-transformed median for log models).
    pub point: Vec<f64>,
    pub lower_80: Vec<f64>,
    pub upper_80: Vec<f64>,
    pub lower_95: Vec<f64>,
    pub upper_95: Vec<f64>,
    pub backtest: BacktestCard,
}

/// How accurate each candidate was on this series, and what was chosen.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BacktestCard {
    /// Rolling origins actually used (0 when the series is too short).
    pub origins: usize,
    /// The season used (`None` when none was given or the series has too
    /// few seasons for it).
    pub season: Option<usize>,
    /// Horizons scored (3, 6, 12, or fewer on short series).
    pub horizons: Vec<usize>,
    /// One row per candidate and horizon, baselines included.
    pub scores: Vec<ModelScore>,
    /// Label of the chosen candidate, e.g. `mstl_ets(log)`.
    pub chosen: String,
    /// Chosen MASE ÷ seasonal-naive MASE (÷ naive without a season),
    /// averaged over the horizons; 1 when both are 0 or there is no
    /// backtest.
    pub relative_mase: f64,
    /// Share of held-out points inside the chosen model's 95 % / 80 %
    /// intervals, over the scored origins and steps 1..=max horizon.
    pub coverage_95: f64,
    pub coverage_80: f64,
    /// Points behind the two coverages.
    pub held_out_points: usize,
    /// `conformal` (calibrated from earlier origins' errors) or `model`
    /// (the model's own Gaussian intervals, when the series is too short to
    /// calibrate).
    pub interval_method: String,
    /// Distance between consecutive origins, in periods.
    pub origin_step: usize,
    /// Non-finite input values replaced by interpolation.
    pub imputed: usize,
    /// What was shortened or dropped, and why (empty when nothing was).
    pub note: String,
}

/// One candidate's backtest figures at one horizon (means over origins).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ModelScore {
    pub model: String,
    pub horizon: usize,
    pub mase: f64,
    pub smape: f64,
    pub coverage_95: f64,
    pub msis: f64,
}

/// A transform applied before fitting, undone on the forecasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transform {
    None,
    Log,
    Log1p,
}

/// exp() above this overflows towards infinity; transformed bounds are
/// capped here so every output stays finite.
const MAX_LOG: f64 = 700.0;

impl Transform {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Transform::None => "none",
            Transform::Log => "log",
            Transform::Log1p => "log1p",
        }
    }

    pub(crate) fn forward(self, y: f64) -> f64 {
        match self {
            Transform::None => y,
            Transform::Log => y.ln(),
            Transform::Log1p => y.ln_1p(),
        }
    }

    pub(crate) fn inverse(self, z: f64) -> f64 {
        match self {
            Transform::None => z,
            Transform::Log => z.min(MAX_LOG).exp(),
            Transform::Log1p => z.min(MAX_LOG).exp_m1(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Naive,
    SeasonalNaive,
    Drift,
    Ets,
    MstlEts,
}

impl Method {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Method::Naive => "naive",
            Method::SeasonalNaive => "seasonal_naive",
            Method::Drift => "drift",
            Method::Ets => "ets",
            Method::MstlEts => "mstl_ets",
        }
    }
}

/// A method on a transform of the series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub method: Method,
    pub transform: Transform,
}

impl Candidate {
    pub(crate) fn label(self) -> String {
        match self.transform {
            Transform::None => self.method.name().to_string(),
            t => format!("{}({})", self.method.name(), t.name()),
        }
    }
}

/// A candidate's forecast in its own (transformed) space: the point and
/// the standard deviation of the forecast error at each step.
#[derive(Clone, Debug)]
pub(crate) struct RawForecast {
    pub point: Vec<f64>,
    pub sigma: Vec<f64>,
}

/// What the series is: decides the transform and whether bounds are
/// clamped at 0.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    /// Every value ≥ 0: forecasts and bounds are clamped at 0.
    pub non_negative: bool,
    /// The transform used by the transformed candidates, if any applies.
    pub transform: Option<Transform>,
}

impl Shape {
    fn of(values: &[f64]) -> Shape {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let transform = if min > 0.0 {
            Some(Transform::Log)
        } else if min == 0.0 && values.iter().any(|&v| v > 0.0) {
            Some(Transform::Log1p)
        } else {
            None
        };
        Shape { non_negative: min >= 0.0, transform }
    }

    pub(crate) fn clamp(self, y: f64) -> f64 {
        if self.non_negative { y.max(0.0) } else { y }
    }
}

/// The candidates for a series: the three baselines, then ETS on the raw
/// and the transformed series, then (with a season) MSTL + ETS on both.
pub(crate) fn candidates(season: Option<usize>, shape: Shape) -> Vec<Candidate> {
    let raw = |method| Candidate { method, transform: Transform::None };
    let mut list = vec![raw(Method::Naive)];
    if season.is_some() {
        list.push(raw(Method::SeasonalNaive));
    }
    list.push(raw(Method::Drift));
    let mut models = vec![Method::Ets];
    if season.is_some() {
        models.push(Method::MstlEts);
    }
    for method in models {
        list.push(raw(method));
        if let Some(transform) = shape.transform {
            list.push(Candidate { method, transform });
        }
    }
    list
}

/// Fit a forecast for `horizon` periods after `values`, choosing the model
/// by backtest. `season` is the seasonal period (7 for daily data with a
/// weekly cycle, 12 for monthly); it is dropped when the series is too
/// short for it. Non-finite values are interpolated. Never panics, never
/// returns NaN or infinity.
pub fn fit(values: &[f64], season: Option<usize>, horizon: usize) -> Forecast {
    let (series, imputed) = impute(values);
    let shape = Shape::of(&series);
    let plan = backtest::plan(series.len(), season.filter(|&m| m >= 2));
    let list = candidates(plan.season, shape);
    let result = backtest::run(&series, &plan, &list, shape);

    // Refit on the whole series, falling back down the backtest ranking if
    // the chosen model cannot be fitted on it.
    let mut fitted = None;
    for &index in &result.ranking {
        let candidate = list[index];
        if let Some(raw) = forecast_candidate(candidate, &series, plan.season, horizon) {
            fitted = Some((index, raw));
            break;
        }
    }
    let Some((index, raw)) = fitted else {
        return empty_forecast(&series, plan, horizon, imputed);
    };
    let candidate = list[index];
    let (q80, q95) = result.quantiles[index];
    let bounds = |q: f64, sign: f64| -> Vec<f64> {
        raw.point.iter().zip(&raw.sigma).map(|(p, s)| finite_or(shape.clamp(candidate.transform.inverse(p + sign * q * s)), 0.0)).collect()
    };
    let point: Vec<f64> = raw.point.iter().map(|&p| finite_or(shape.clamp(candidate.transform.inverse(p)), 0.0)).collect();
    let mut lower_80 = bounds(q80, -1.0);
    let mut upper_80 = bounds(q80, 1.0);
    let mut lower_95 = bounds(q95, -1.0);
    let mut upper_95 = bounds(q95, 1.0);
    // Keep the bands nested around the point even after clamping or a
    // degenerate sigma.
    for i in 0..point.len() {
        lower_80[i] = lower_80[i].min(point[i]);
        upper_80[i] = upper_80[i].max(point[i]);
        lower_95[i] = lower_95[i].min(lower_80[i]);
        upper_95[i] = upper_95[i].max(upper_80[i]);
    }
    let mut card = result.card;
    card.imputed = imputed;
    Forecast {
        model: candidate.method.name().to_string(),
        transform: candidate.transform.name().to_string(),
        point,
        lower_80,
        upper_80,
        lower_95,
        upper_95,
        backtest: card,
    }
}

/// No data at all: a flat forecast at 0 and an empty card.
fn empty_forecast(series: &[f64], plan: Plan, horizon: usize, imputed: usize) -> Forecast {
    let level = series.last().copied().unwrap_or(0.0);
    let flat = vec![level; horizon];
    Forecast {
        model: "none".to_string(),
        transform: "none".to_string(),
        point: flat.clone(),
        lower_80: flat.clone(),
        upper_80: flat.clone(),
        lower_95: flat.clone(),
        upper_95: flat,
        backtest: BacktestCard {
            origins: 0,
            season: plan.season,
            horizons: Vec::new(),
            scores: Vec::new(),
            chosen: "none".to_string(),
            relative_mase: 1.0,
            coverage_95: 0.0,
            coverage_80: 0.0,
            held_out_points: 0,
            interval_method: "none".to_string(),
            origin_step: 0,
            imputed,
            note: "no finite values: nothing to forecast".to_string(),
        },
    }
}

pub(crate) fn finite_or(x: f64, fallback: f64) -> f64 {
    if x.is_finite() { x } else { fallback }
}

/// Replace non-finite values: linear interpolation between finite
/// neighbours, the nearest finite value at either end. Keeps the length so
/// the forecast stays aligned with the caller's calendar.
fn impute(values: &[f64]) -> (Vec<f64>, usize) {
    let known: Vec<usize> = (0..values.len()).filter(|&i| values[i].is_finite()).collect();
    let imputed = values.len() - known.len();
    if known.is_empty() {
        return (Vec::new(), imputed);
    }
    let mut out = values.to_vec();
    for (i, slot) in out.iter_mut().enumerate() {
        if slot.is_finite() {
            continue;
        }
        let after = known.partition_point(|&k| k < i);
        *slot = match (after.checked_sub(1).map(|b| known[b]), known.get(after)) {
            (Some(a), Some(&b)) => {
                let w = (i - a) as f64 / (b - a) as f64;
                values[a] + w * (values[b] - values[a])
            }
            (Some(a), None) => values[a],
            (None, Some(&b)) => values[b],
            (None, None) => 0.0,
        };
    }
    (out, imputed)
}

/// One candidate's forecast of `h` steps after `train`, in its transformed
/// space; `None` when it cannot be fitted (too short, optimiser failure,
/// non-finite output).
pub(crate) fn forecast_candidate(candidate: Candidate, train: &[f64], season: Option<usize>, h: usize) -> Option<RawForecast> {
    if train.is_empty() || h == 0 {
        return None;
    }
    let z: Vec<f64> = train.iter().map(|&y| candidate.transform.forward(y)).collect();
    if z.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let n = z.len();
    let last = z[n - 1];
    let raw = match candidate.method {
        Method::Naive => {
            let sigma = rms(z.windows(2).map(|w| w[1] - w[0]));
            RawForecast { point: vec![last; h], sigma: (1..=h).map(|k| sigma * (k as f64).sqrt()).collect() }
        }
        Method::SeasonalNaive => {
            let m = season?;
            if n <= m {
                return None;
            }
            let sigma = rms((m..n).map(|t| z[t] - z[t - m]));
            RawForecast { point: (0..h).map(|i| z[n - m + i % m]).collect(), sigma: (0..h).map(|i| sigma * ((i / m + 1) as f64).sqrt()).collect() }
        }
        Method::Drift => {
            if n < 2 {
                return None;
            }
            let slope = (last - z[0]) / (n - 1) as f64;
            let sigma = rms(z.windows(2).map(|w| w[1] - w[0] - slope));
            let t = n as f64;
            RawForecast {
                point: (1..=h).map(|k| last + slope * k as f64).collect(),
                sigma: (1..=h)
                    .map(|k| {
                        let k = k as f64;
                        sigma * (k * (1.0 + k / t)).sqrt()
                    })
                    .collect(),
            }
        }
        Method::Ets => {
            let fitted = ets_search(candidate.transform != Transform::None).fit(&z).ok()?;
            let out = fitted.predict(h, 0.95).ok()?;
            from_augurs(out, h)?
        }
        Method::MstlEts => {
            let m = season?;
            if n < m.saturating_mul(2) {
                return None;
            }
            // The trend of a deseasonalised series: additive errors only.
            let model = MSTLModel::new(vec![m], ets_search(true).into_trend_model());
            let fitted = model.fit(&z).ok()?;
            let out = fitted.predict(h, 0.95).ok()?;
            from_augurs(out, h)?
        }
    };
    let ok = raw.point.len() == h && raw.sigma.len() == h && raw.point.iter().chain(&raw.sigma).all(|v| v.is_finite());
    ok.then_some(raw)
}

/// The ETS models searched (by AICc): trend none, additive or damped,
/// never seasonal (augurs' ETS is not; MSTL takes the season out first);
/// additive or multiplicative error, or additive only where multiplicative
/// adds little (a log scale, where additive errors already are
/// multiplicative ones, and MSTL's deseasonalised trend) and would double
/// the cost.
fn ets_search(additive_only: bool) -> AutoETS {
    if additive_only { AutoETS::new(1, "AZN").unwrap_or_else(|_| AutoETS::non_seasonal()) } else { AutoETS::non_seasonal() }
}

/// The point and the per-step sigma implied by augurs' 95 % interval.
fn from_augurs(out: augurs::Forecast, h: usize) -> Option<RawForecast> {
    let intervals = out.intervals?;
    let sigma = intervals.lower.iter().zip(&intervals.upper).map(|(l, u)| ((u - l) / (2.0 * Z95)).max(0.0)).collect::<Vec<_>>();
    (out.point.len() == h && sigma.len() == h).then_some(RawForecast { point: out.point, sigma })
}

/// Root mean square (0 for no values): the baselines' one-step error
/// scale.
fn rms(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v * v, c + 1));
    if count == 0 { 0.0 } else { (sum / count as f64).sqrt() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impute_interpolates_inside_and_holds_the_ends() {
        let (out, n) = impute(&[f64::NAN, 2.0, f64::NAN, 4.0, f64::INFINITY]);
        assert_eq!(n, 3);
        assert_eq!(out, vec![2.0, 2.0, 3.0, 4.0, 4.0]);
    }

    #[test]
    fn transforms_round_trip() {
        for t in [Transform::None, Transform::Log, Transform::Log1p] {
            let y = 37.5;
            assert!((t.inverse(t.forward(y)) - y).abs() < 1e-9, "{t:?}");
        }
        assert!(Transform::Log.inverse(1e6).is_finite());
    }

    #[test]
    fn candidates_follow_the_shape() {
        let counts = Shape::of(&[0.0, 3.0, 5.0]);
        let labels: Vec<String> = candidates(Some(7), counts).into_iter().map(Candidate::label).collect();
        assert_eq!(labels, ["naive", "seasonal_naive", "drift", "ets", "ets(log1p)", "mstl_ets", "mstl_ets(log1p)"]);
        let signed = Shape::of(&[-1.0, 3.0]);
        assert!(!signed.non_negative);
        assert_eq!(candidates(None, signed).len(), 3);
    }

    #[test]
    fn seasonal_naive_repeats_the_last_season() {
        let c = Candidate { method: Method::SeasonalNaive, transform: Transform::None };
        let raw = forecast_candidate(c, &[1.0, 2.0, 3.0, 1.0, 2.0, 4.0], Some(3), 5).unwrap();
        assert_eq!(raw.point, vec![1.0, 2.0, 4.0, 1.0, 2.0]);
        // One-step errors 0, 0, 1: rms = sqrt(1/3); the second season's
        // steps carry two seasons of error.
        let s = (1.0f64 / 3.0).sqrt();
        assert!((raw.sigma[0] - s).abs() < 1e-12);
        assert!((raw.sigma[3] - s * 2f64.sqrt()).abs() < 1e-12);
    }
}
