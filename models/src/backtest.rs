//! The rolling-origin backtest behind every forecast: where the origins go,
//! each candidate's errors at each, the M4 metrics, the choice, and the
//! conformal calibration of the intervals (docs/analytics.md, "Forecasts").

use crate::forecast::{BacktestCard, Candidate, Method, ModelScore, RawForecast, Shape, Z80, Z95, finite_or, forecast_candidate};

/// Horizons scored, when the series is long enough.
pub const HORIZONS: [usize; 3] = [3, 6, 12];
/// Origins aimed for on long series: enough held-out points (168 at 12
/// steps, after two origins that only calibrate) for a coverage figure
/// within a few points, few enough that a two-year daily series fits in
/// about a second.
pub const TARGET_ORIGINS: usize = 16;
/// The minimum; fewer only when the series cannot hold them.
pub const MIN_ORIGINS: usize = 6;
/// Shortest training prefix: AutoETS with a trend needs more than 8 points.
pub const MIN_TRAIN: usize = 10;
/// Earlier errors an origin needs before its intervals are conformal: the
/// 95 % quantile of fewer is just their maximum.
pub const MIN_CALIBRATION: usize = 20;
/// MSIS is for 95 % intervals (α = 0.05).
const MSIS_ALPHA: f64 = 0.05;
/// Cap on a normalised error when the model claimed zero spread.
const MAX_SCORE: f64 = 1e12;

/// Where the origins go for a series of a given length.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub season: Option<usize>,
    /// Longest horizon fitted at each origin; shorter ones are its prefixes.
    pub h_max: usize,
    pub horizons: Vec<usize>,
    /// Training lengths: origin `t` fits `series[..t]` and forecasts
    /// `series[t..t + h_max]`.
    pub origins: Vec<usize>,
    pub step: usize,
    pub note: String,
}

fn origins_possible(n: usize, min_train: usize, h: usize) -> usize {
    (n + 1).saturating_sub(min_train.saturating_add(h))
}

/// Plan the backtest of a series of `n` points: the longest horizon of
/// 12, 6, 3 with at least `MIN_ORIGINS` origins, keeping the season only
/// when every origin trains on two full seasons.
pub fn plan(n: usize, season: Option<usize>) -> Plan {
    let mut notes = Vec::new();
    let longest = |min_train: usize| [12, 6, 3].into_iter().find(|&h| origins_possible(n, min_train, h) >= MIN_ORIGINS);
    let mut chosen = None;
    if let Some(m) = season {
        let min_train = MIN_TRAIN.max(m.saturating_mul(2));
        match longest(min_train) {
            Some(h) => chosen = Some((Some(m), min_train, h)),
            None => notes.push(format!("season {m} dropped: {n} points do not leave {MIN_ORIGINS} origins each training on 2 full seasons")),
        }
    }
    let (season, min_train, h_max) = match chosen {
        Some(c) => c,
        None => match longest(MIN_TRAIN) {
            Some(h) => (None, MIN_TRAIN, h),
            None => {
                // Fewer than MIN_ORIGINS even at 3 steps: as many one- or
                // three-step origins as there are.
                match [3, 1].into_iter().find(|&h| origins_possible(n, MIN_TRAIN, h) >= 1) {
                    Some(h) => {
                        notes.push(format!(
                            "only {} origins: {n} points are fewer than the {} needed for {MIN_ORIGINS}",
                            origins_possible(n, MIN_TRAIN, h),
                            MIN_TRAIN + 3 + MIN_ORIGINS - 1
                        ));
                        (None, MIN_TRAIN, h)
                    }
                    None => {
                        notes.push(format!("no backtest: {n} points, at least {} needed; naive forecast with its own intervals", MIN_TRAIN + 1));
                        return Plan { season: None, h_max: 0, horizons: Vec::new(), origins: Vec::new(), step: 0, note: notes.join("; ") };
                    }
                }
            }
        },
    };
    let horizons: Vec<usize> = if h_max < HORIZONS[0] { vec![h_max] } else { HORIZONS.into_iter().filter(|&h| h <= h_max).collect() };
    if h_max < 12 {
        notes.push(format!("horizons cut to {horizons:?}: {n} points leave too few origins at 12 steps"));
    }
    let first = min_train;
    let last = n - h_max;
    let possible = last - first + 1;
    let (count, step) = if possible <= TARGET_ORIGINS {
        (possible, 1)
    } else {
        // Non-overlapping windows when there is room: each origin's errors
        // then all predate the next origin and can calibrate it.
        let step = ((last - first) / (TARGET_ORIGINS - 1)).clamp(1, h_max);
        (TARGET_ORIGINS.min((last - first) / step + 1), step)
    };
    let origins = (0..count).map(|k| last - (count - 1 - k) * step).collect();
    Plan { season, h_max, horizons, origins, step, note: notes.join("; ") }
}

/// The backtest's result: the card, candidates best first (indices into
/// the candidate list), and each candidate's calibrated (q80, q95)
/// multipliers of its sigma for the final forecast.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub card: BacktestCard,
    pub ranking: Vec<usize>,
    pub quantiles: Vec<(f64, f64)>,
}

/// One candidate's forecasts at every origin.
struct Track {
    index: usize,
    forecasts: Vec<RawForecast>,
}

/// Backtest every candidate over the plan's origins.
pub(crate) fn run(series: &[f64], plan: &Plan, list: &[Candidate], shape: Shape) -> Outcome {
    let gaussian = vec![(Z80, Z95); list.len()];
    if plan.origins.is_empty() {
        return Outcome {
            card: card_without_backtest(plan),
            ranking: (0..list.len()).filter(|&i| list[i].method == Method::Naive).collect(),
            quantiles: gaussian,
        };
    }
    let m = plan.season.unwrap_or(1);
    let scales: Vec<f64> = plan.origins.iter().map(|&t| mase_scale(&series[..t], m)).collect();

    // A candidate that fails at any origin is left out: every candidate is
    // compared on the same points.
    let tracks: Vec<Track> = list
        .iter()
        .enumerate()
        .filter_map(|(index, &candidate)| {
            let forecasts = plan.origins.iter().map(|&t| forecast_candidate(candidate, &series[..t], plan.season, plan.h_max)).collect::<Option<Vec<_>>>()?;
            Some(Track { index, forecasts })
        })
        .collect();

    // Calibration sets: origin k may use the errors of earlier origins at
    // target times before its own start, nothing observed later.
    let calibration_sets: Vec<Vec<(usize, usize)>> = plan
        .origins
        .iter()
        .map(|&t| plan.origins.iter().enumerate().take_while(|&(_, &s)| s < t).flat_map(|(j, &s)| (0..plan.h_max.min(t - s)).map(move |i| (j, i))).collect())
        .collect();
    let conformal = calibration_sets.last().is_some_and(|set| set.len() >= MIN_CALIBRATION);
    // Origins whose coverage is scored: with conformal intervals, those
    // with enough earlier errors; otherwise every origin, with the model's
    // own intervals.
    let scored: Vec<usize> = (0..plan.origins.len()).filter(|&k| !conformal || calibration_sets[k].len() >= MIN_CALIBRATION).collect();

    let mut quantiles = gaussian;
    let mut rows: Vec<(usize, Vec<ModelScore>, Coverage)> = Vec::new();
    for track in &tracks {
        let candidate = list[track.index];
        let normalised: Vec<Vec<f64>> = plan
            .origins
            .iter()
            .zip(&track.forecasts)
            .map(|(&t, f)| (0..plan.h_max).map(|i| score(candidate.transform.forward(series[t + i]), f, i)).collect())
            .collect();
        if conformal {
            let all: Vec<f64> = normalised.iter().flatten().copied().collect();
            quantiles[track.index] = (conformal_quantile(&all, 0.20), conformal_quantile(&all, MSIS_ALPHA));
        }
        let mut acc = vec![Accumulator::default(); plan.horizons.len()];
        let mut coverage = Coverage::default();
        for (k, (&t, f)) in plan.origins.iter().zip(&track.forecasts).enumerate() {
            let actual = &series[t..t + plan.h_max];
            let point: Vec<f64> = f.point.iter().map(|&p| finite_or(shape.clamp(candidate.transform.inverse(p)), 0.0)).collect();
            let intervals = scored.binary_search(&k).is_ok().then(|| {
                let (q80, q95) = if conformal {
                    let set: Vec<f64> = calibration_sets[k].iter().map(|&(j, i)| normalised[j][i]).collect();
                    (conformal_quantile(&set, 0.20), conformal_quantile(&set, MSIS_ALPHA))
                } else {
                    (Z80, Z95)
                };
                let bound = |q: f64, sign: f64| -> Vec<f64> {
                    f.point.iter().zip(&f.sigma).map(|(p, s)| finite_or(shape.clamp(candidate.transform.inverse(p + sign * q * s)), 0.0)).collect()
                };
                (bound(q80, -1.0), bound(q80, 1.0), bound(q95, -1.0), bound(q95, 1.0))
            });
            if let Some((l80, u80, l95, u95)) = &intervals {
                for i in 0..plan.h_max {
                    coverage.points += 1;
                    coverage.in_80 += usize::from(l80[i] <= actual[i] && actual[i] <= u80[i]);
                    coverage.in_95 += usize::from(l95[i] <= actual[i] && actual[i] <= u95[i]);
                }
            }
            for (a, &h) in acc.iter_mut().zip(&plan.horizons) {
                a.origins += 1;
                a.mase += mean_abs_error(&actual[..h], &point[..h]) / scales[k];
                a.smape += smape(&actual[..h], &point[..h]);
                if let Some((_, _, l95, u95)) = &intervals {
                    a.scored += 1;
                    a.msis += msis(&actual[..h], &l95[..h], &u95[..h], MSIS_ALPHA) / scales[k];
                    a.covered += (0..h).filter(|&i| l95[i] <= actual[i] && actual[i] <= u95[i]).count();
                    a.points += h;
                }
            }
        }
        let label = candidate.label();
        let scores = acc.iter().zip(&plan.horizons).map(|(a, &h)| a.score(&label, h)).collect();
        rows.push((track.index, scores, coverage));
    }

    let mean_mase = |scores: &[ModelScore]| scores.iter().map(|s| s.mase).sum::<f64>() / scores.len().max(1) as f64;
    let mut order: Vec<usize> = (0..rows.len()).collect();
    // Stable: on a tie the earlier candidate (the simpler one) wins.
    order.sort_by(|&a, &b| mean_mase(&rows[a].1).total_cmp(&mean_mase(&rows[b].1)));
    let ranking: Vec<usize> = order.iter().map(|&r| rows[r].0).collect();
    let best = &rows[order[0]];
    let reference_method = if plan.season.is_some() { Method::SeasonalNaive } else { Method::Naive };
    let reference = rows.iter().find(|r| list[r.0].method == reference_method);
    let relative_mase = match reference {
        Some(reference) => {
            let ratios: Vec<f64> = best.1.iter().zip(&reference.1).map(|(c, r)| ratio(c.mase, r.mase)).collect();
            ratios.iter().sum::<f64>() / ratios.len().max(1) as f64
        }
        None => 1.0,
    };
    let mut note = plan.note.clone();
    if !conformal {
        push_note(&mut note, &format!("intervals are the models' own: fewer than {MIN_CALIBRATION} earlier errors to calibrate from"));
    }
    let dropped: Vec<String> = list.iter().enumerate().filter(|(i, _)| !tracks.iter().any(|t| t.index == *i)).map(|(_, c)| c.label()).collect();
    if !dropped.is_empty() {
        push_note(&mut note, &format!("not fitted at every origin, left out: {}", dropped.join(", ")));
    }
    let card = BacktestCard {
        origins: plan.origins.len(),
        season: plan.season,
        horizons: plan.horizons.clone(),
        scores: order.iter().flat_map(|&r| rows[r].1.clone()).collect(),
        chosen: list[best.0].label(),
        relative_mase: finite_or(relative_mase, 1.0),
        coverage_95: best.2.share(best.2.in_95),
        coverage_80: best.2.share(best.2.in_80),
        held_out_points: best.2.points,
        interval_method: if conformal { "conformal" } else { "model" }.to_string(),
        origin_step: plan.step,
        imputed: 0,
        note,
    };
    Outcome { card, ranking, quantiles }
}

fn push_note(note: &mut String, text: &str) {
    if !note.is_empty() {
        note.push_str("; ");
    }
    note.push_str(text);
}

fn card_without_backtest(plan: &Plan) -> BacktestCard {
    BacktestCard {
        origins: 0,
        season: plan.season,
        horizons: Vec::new(),
        scores: Vec::new(),
        chosen: "naive".to_string(),
        relative_mase: 1.0,
        coverage_95: 0.0,
        coverage_80: 0.0,
        held_out_points: 0,
        interval_method: "model".to_string(),
        origin_step: 0,
        imputed: 0,
        note: plan.note.clone(),
    }
}

/// Hits of the chosen model's intervals over the scored origins and all
/// steps up to the longest horizon.
#[derive(Clone, Copy, Debug, Default)]
struct Coverage {
    points: usize,
    in_80: usize,
    in_95: usize,
}

impl Coverage {
    fn share(&self, hits: usize) -> f64 {
        if self.points == 0 { 0.0 } else { hits as f64 / self.points as f64 }
    }
}

/// Sums over origins for one horizon.
#[derive(Clone, Copy, Debug, Default)]
struct Accumulator {
    origins: usize,
    mase: f64,
    smape: f64,
    scored: usize,
    msis: f64,
    covered: usize,
    points: usize,
}

impl Accumulator {
    fn score(&self, label: &str, horizon: usize) -> ModelScore {
        let per = |sum: f64, count: usize| {
            if count == 0 { 0.0 } else { finite_or(sum / count as f64, 0.0) }
        };
        ModelScore {
            model: label.to_string(),
            horizon,
            mase: per(self.mase, self.origins),
            smape: per(self.smape, self.origins),
            coverage_95: per(self.covered as f64, self.points),
            msis: per(self.msis, self.scored),
        }
    }
}

/// |error| ÷ the forecast's sigma at step i, in the model's space.
fn score(actual: f64, f: &RawForecast, i: usize) -> f64 {
    let error = (actual - f.point[i]).abs();
    let sigma = f.sigma[i];
    if !error.is_finite() {
        MAX_SCORE
    } else if sigma > 0.0 {
        (error / sigma).min(MAX_SCORE)
    } else if error == 0.0 {
        0.0
    } else {
        MAX_SCORE
    }
}

/// Split-conformal quantile: the ⌈(n+1)(1−α)⌉-th smallest score (their
/// maximum when n is too small for that rank; the Gaussian quantile when
/// there are none).
pub fn conformal_quantile(scores: &[f64], alpha: f64) -> f64 {
    if scores.is_empty() {
        return if alpha <= MSIS_ALPHA { Z95 } else { Z80 };
    }
    let mut sorted = scores.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let rank = (((n + 1) as f64) * (1.0 - alpha)).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// MASE's denominator: the in-sample MAE of the seasonal naive forecast
/// (lag m, or 1 when the training data is shorter than m + 1); the lag-1
/// MAE when that is 0, the mean |y| when that is 0 too, else 1, so a
/// constant series scores 0 for a perfect forecast instead of 0/0.
pub fn mase_scale(train: &[f64], m: usize) -> f64 {
    let lag_mae = |lag: usize| {
        if train.len() <= lag { 0.0 } else { mean_abs_error(&train[lag..], &train[..train.len() - lag]) }
    };
    let lag = if train.len() > m { m } else { 1 };
    [lag_mae(lag), lag_mae(1), mean_abs(train)].into_iter().find(|&s| s > 0.0 && s.is_finite()).unwrap_or(1.0)
}

fn mean_abs(values: &[f64]) -> f64 {
    if values.is_empty() { 0.0 } else { values.iter().map(|v| v.abs()).sum::<f64>() / values.len() as f64 }
}

pub fn mean_abs_error(actual: &[f64], forecast: &[f64]) -> f64 {
    if actual.is_empty() {
        return 0.0;
    }
    actual.iter().zip(forecast).map(|(a, f)| (a - f).abs()).sum::<f64>() / actual.len() as f64
}

/// sMAPE in the M4 form: 200/h · Σ |y − ŷ| / (|y| + |ŷ|), a 0/0 term
/// counting 0.
pub fn smape(actual: &[f64], forecast: &[f64]) -> f64 {
    if actual.is_empty() {
        return 0.0;
    }
    let sum: f64 = actual
        .iter()
        .zip(forecast)
        .map(|(a, f)| {
            let d = a.abs() + f.abs();
            if d == 0.0 { 0.0 } else { (a - f).abs() / d }
        })
        .sum();
    200.0 * sum / actual.len() as f64
}

/// MSIS's numerator in the M4 form (divide by the MASE scale):
/// 1/h · Σ (U − L) + 2/α (L − y)·1{y < L} + 2/α (y − U)·1{y > U}.
pub fn msis(actual: &[f64], lower: &[f64], upper: &[f64], alpha: f64) -> f64 {
    if actual.is_empty() {
        return 0.0;
    }
    let sum: f64 = actual.iter().zip(lower.iter().zip(upper)).map(|(&y, (&l, &u))| (u - l) + 2.0 / alpha * ((l - y).max(0.0) + (y - u).max(0.0))).sum();
    sum / actual.len() as f64
}

/// a ÷ b, 1 when both are 0 (equally perfect).
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else if a == 0.0 {
        1.0
    } else {
        // b is 0 but a is not: cannot happen for the chosen model (it has
        // the lowest MASE); a large finite ratio says "worse" anyway.
        1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smape_is_the_m4_form_with_zero_over_zero_as_zero() {
        // |10-8|/18 + 0 (0/0) + |0-2|/2 = 1/9 + 1, times 200/3.
        let s = smape(&[10.0, 0.0, 0.0], &[8.0, 0.0, 2.0]);
        assert!((s - 200.0 / 3.0 * (1.0 / 9.0 + 1.0)).abs() < 1e-12);
    }

    #[test]
    fn msis_charges_width_and_40_per_unit_outside() {
        // Widths 2 and 2; the second point is 1 above its upper bound.
        let m = msis(&[1.0, 4.0], &[0.0, 1.0], &[2.0, 3.0], 0.05);
        assert!((m - (2.0 + 2.0 + 40.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn mase_scale_is_the_seasonal_naive_mae() {
        let train = [1.0, 5.0, 2.0, 6.0, 4.0];
        // Lag 2: |2-1|, |6-5|, |4-2| → 4/3.
        assert!((mase_scale(&train, 2) - 4.0 / 3.0).abs() < 1e-12);
        assert_eq!(mase_scale(&[3.0; 5], 2), 3.0);
        assert_eq!(mase_scale(&[0.0; 5], 2), 1.0);
    }

    #[test]
    fn conformal_quantile_uses_the_finite_sample_rank() {
        let scores: Vec<f64> = (1..=19).map(f64::from).collect();
        // ⌈20 · 0.95⌉ = 19 → the largest; ⌈20 · 0.8⌉ = 16.
        assert_eq!(conformal_quantile(&scores, 0.05), 19.0);
        assert_eq!(conformal_quantile(&scores, 0.20), 16.0);
        assert_eq!(conformal_quantile(&[], 0.05), Z95);
    }

    #[test]
    fn long_series_get_24_non_overlapping_origins() {
        let p = plan(730, Some(7));
        assert_eq!(p.season, Some(7));
        assert_eq!(p.horizons, vec![3, 6, 12]);
        assert_eq!(p.origins.len(), TARGET_ORIGINS);
        assert_eq!(p.step, 12);
        assert_eq!(p.origins[0], 730 - 12 * TARGET_ORIGINS);
        assert_eq!(*p.origins.last().unwrap(), 730 - 12);
        assert!(p.note.is_empty());
    }

    #[test]
    fn short_series_shorten_and_say_so() {
        let p = plan(24, Some(12));
        assert_eq!(p.season, None);
        assert_eq!(p.horizons, vec![3, 6]);
        assert!(p.origins.len() >= MIN_ORIGINS);
        assert!(p.note.contains("season 12 dropped"), "{}", p.note);
        let tiny = plan(12, None);
        assert_eq!((tiny.h_max, tiny.origins.clone()), (1, vec![10, 11]));
        assert!(tiny.note.contains("only 2 origins"), "{}", tiny.note);
        assert!(plan(5, Some(7)).origins.is_empty());
    }
}
