//! Forecast acceptance (issue 12): demo-shaped daily series, AirPassengers,
//! a short monthly series and the edge cases. Every figure is printed
//! (`cargo test -p keel-models --test forecast -- --nocapture`).

use std::time::Instant;

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use keel_models::{Forecast, fit};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Knuth's Poisson sampler: exact, and fast enough for means up to a few
/// hundred (e^-λ stays well above f64's smallest normal).
fn poisson(rng: &mut StdRng, mean: f64) -> f64 {
    let limit = (-mean).exp();
    let mut k = 0u32;
    let mut p: f64 = rng.r#gen();
    while p > limit {
        k += 1;
        p *= rng.r#gen::<f64>();
    }
    f64::from(k)
}

/// 730 days shaped like the demo data: growth from 0.4× to 2.0×, weekends
/// 0.7×, January 1.35×, July and August 0.8×, November and December 1.15×,
/// Poisson counts around `level` a day.
fn demo_series(level: f64, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    (0..730)
        .map(|d| {
            let day = start + Duration::days(d);
            let growth = 0.4 + 1.6 * d as f64 / 729.0;
            let weekly = match day.weekday() {
                Weekday::Sat | Weekday::Sun => 0.7,
                _ => 1.0,
            };
            let yearly = match day.month() {
                1 => 1.35,
                7 | 8 => 0.8,
                11 | 12 => 1.15,
                _ => 1.0,
            };
            poisson(&mut rng, level * growth * weekly * yearly)
        })
        .collect()
}

const AIR_PASSENGERS: [f64; 144] = [
    112.0, 118.0, 132.0, 129.0, 121.0, 135.0, 148.0, 148.0, 136.0, 119.0, 104.0, 118.0, 115.0, 126.0, 141.0, 135.0, 125.0, 149.0, 170.0, 170.0, 158.0, 133.0,
    114.0, 140.0, 145.0, 150.0, 178.0, 163.0, 172.0, 178.0, 199.0, 199.0, 184.0, 162.0, 146.0, 166.0, 171.0, 180.0, 193.0, 181.0, 183.0, 218.0, 230.0, 242.0,
    209.0, 191.0, 172.0, 194.0, 196.0, 196.0, 236.0, 235.0, 229.0, 243.0, 264.0, 272.0, 237.0, 211.0, 180.0, 201.0, 204.0, 188.0, 235.0, 227.0, 234.0, 264.0,
    302.0, 293.0, 259.0, 229.0, 203.0, 229.0, 242.0, 233.0, 267.0, 269.0, 270.0, 315.0, 364.0, 347.0, 312.0, 274.0, 237.0, 278.0, 284.0, 277.0, 317.0, 313.0,
    318.0, 374.0, 413.0, 405.0, 355.0, 306.0, 271.0, 306.0, 315.0, 301.0, 356.0, 348.0, 355.0, 422.0, 465.0, 467.0, 404.0, 347.0, 305.0, 336.0, 340.0, 318.0,
    362.0, 348.0, 363.0, 435.0, 491.0, 505.0, 404.0, 359.0, 310.0, 337.0, 360.0, 342.0, 406.0, 396.0, 420.0, 472.0, 548.0, 559.0, 463.0, 407.0, 362.0, 405.0,
    417.0, 391.0, 419.0, 461.0, 472.0, 535.0, 622.0, 606.0, 508.0, 461.0, 390.0, 432.0,
];

/// Every number finite, bands nested around the point, lengths right.
fn assert_well_formed(f: &Forecast, horizon: usize, non_negative: bool) {
    for v in [&f.point, &f.lower_80, &f.upper_80, &f.lower_95, &f.upper_95] {
        assert_eq!(v.len(), horizon);
        assert!(v.iter().all(|x| x.is_finite()), "{v:?}");
    }
    for i in 0..horizon {
        assert!(f.lower_95[i] <= f.lower_80[i] && f.lower_80[i] <= f.point[i]);
        assert!(f.point[i] <= f.upper_80[i] && f.upper_80[i] <= f.upper_95[i]);
        if non_negative {
            assert!(f.lower_95[i] >= 0.0);
        }
    }
    let card = &f.backtest;
    let numbers = [card.relative_mase, card.coverage_80, card.coverage_95];
    assert!(numbers.iter().all(|x| x.is_finite()));
    assert!(card.scores.iter().all(|s| { [s.mase, s.smape, s.coverage_95, s.msis].iter().all(|x| x.is_finite()) }));
    // Stored as JSON numbers: serde_json writes a NaN as null, so no null
    // may appear, and the JSON must read back.
    let json = serde_json::to_string(f).unwrap();
    assert!(!json.contains("null") || card.season.is_none() && json.matches("null").count() == 1);
    let back: Forecast = serde_json::from_str(&json).unwrap();
    assert_eq!(back.point.len(), f.point.len());
    assert_eq!(back.backtest.scores.len(), card.scores.len());
}

fn mean_mase(f: &Forecast, label: &str) -> f64 {
    let rows: Vec<f64> = f.backtest.scores.iter().filter(|s| s.model == label).map(|s| s.mase).collect();
    assert!(!rows.is_empty(), "no scores for {label}");
    rows.iter().sum::<f64>() / rows.len() as f64
}

fn print_card(name: &str, f: &Forecast, seconds: f64) {
    let c = &f.backtest;
    println!(
        "{name}: chosen {} | relative MASE {:.3} | coverage 95 % {:.3}, 80 % {:.3} over {} held-out points | {} origins every {} | {:.2} s",
        c.chosen, c.relative_mase, c.coverage_95, c.coverage_80, c.held_out_points, c.origins, c.origin_step, seconds
    );
    for s in &c.scores {
        println!("    {:<18} h={:>2}  MASE {:.3}  sMAPE {:6.2}  cov95 {:.3}  MSIS {:.2}", s.model, s.horizon, s.mase, s.smape, s.coverage_95, s.msis);
    }
    if !c.note.is_empty() {
        println!("    note: {}", c.note);
    }
}

#[test]
fn demo_daily_series_beat_seasonal_naive_with_honest_coverage() {
    for (name, level, seed) in [("signups ~4/day", 4.0, 11), ("active users ~20/day", 20.0, 12), ("orders ~150/day", 150.0, 13)] {
        let series = demo_series(level, seed);
        let started = Instant::now();
        let f = fit(&series, Some(7), 30);
        let seconds = started.elapsed().as_secs_f64();
        print_card(name, &f, seconds);
        assert_well_formed(&f, 30, true);
        let c = &f.backtest;
        assert_eq!(c.horizons, vec![3, 6, 12]);
        assert!(c.origins >= 6);
        assert_eq!(c.interval_method, "conformal");
        assert!(c.relative_mase <= 0.85, "{name}: relative MASE {}", c.relative_mase);
        assert!((0.90..=0.98).contains(&c.coverage_95), "{name}: 95 % coverage {}", c.coverage_95);
        assert!(c.held_out_points >= 150, "{name}: {}", c.held_out_points);
        // Every candidate and baseline has a row per horizon.
        for label in ["naive", "seasonal_naive", "drift", "ets", "mstl_ets"] {
            assert_eq!(c.scores.iter().filter(|s| s.model == label).count(), 3, "{name}: {label}");
        }
    }
}

#[test]
fn air_passengers_mstl_ets_on_the_log_scale_beats_seasonal_naive() {
    let started = Instant::now();
    let f = fit(&AIR_PASSENGERS, Some(12), 24);
    print_card("AirPassengers", &f, started.elapsed().as_secs_f64());
    assert_well_formed(&f, 24, true);
    let mstl_log = mean_mase(&f, "mstl_ets(log)");
    let snaive = mean_mase(&f, "seasonal_naive");
    println!("AirPassengers: mstl_ets(log) MASE {mstl_log:.3} vs seasonal naive {snaive:.3} (ratio {:.3})", mstl_log / snaive);
    assert!(mstl_log <= 0.6 * snaive, "{mstl_log} vs {snaive}");
    assert!(f.backtest.relative_mase <= 0.6);
    // The forecast keeps the summer peak: July above the following November.
    let july = f.point[6];
    let november = f.point[10];
    assert!(july > november, "{july} vs {november}");
}

#[test]
fn a_smooth_24_month_mrr_series_forecasts_without_a_season() {
    // MRR in cents growing about 6 % a month with a little wobble.
    let series: Vec<f64> = (0..24).map(|i| (120_000.0 * 1.06f64.powi(i) + 900.0 * f64::from(i % 3)).round()).collect();
    let f = fit(&series, Some(12), 12);
    print_card("MRR 24 months", &f, 0.0);
    assert_well_formed(&f, 12, true);
    let c = &f.backtest;
    assert_eq!(c.season, None);
    assert_eq!(c.horizons, vec![3, 6]);
    assert!(c.origins >= 6);
    assert!(c.note.contains("season 12 dropped"), "{}", c.note);
    // It keeps growing, and beats the naive forecast.
    assert!(f.point[11] > series[23]);
    assert!(c.relative_mase < 1.0, "{}", c.relative_mase);
}

#[test]
fn constant_and_all_zero_series_forecast_themselves() {
    for (value, season) in [(5.0, Some(7)), (0.0, Some(7)), (3.0, None)] {
        let series = vec![value; 100];
        let f = fit(&series, season, 14);
        assert_well_formed(&f, 14, true);
        for v in [&f.point, &f.lower_95, &f.upper_95] {
            assert!(v.iter().all(|&x| (x - value).abs() < 1e-6), "{value}: {v:?}");
        }
        assert_eq!(f.backtest.relative_mase, 1.0);
    }
}

#[test]
fn short_and_empty_series_never_panic() {
    for n in [0usize, 1, 2, 5, 10, 11, 12, 15, 20] {
        let series: Vec<f64> = (0..n).map(|i| 10.0 + i as f64).collect();
        let f = fit(&series, Some(7), 6);
        assert_well_formed(&f, 6, true);
        if n > 0 {
            assert!(f.point[0] >= 10.0, "{n}: {:?}", f.point);
        }
        if n < 11 {
            assert_eq!(f.backtest.origins, 0, "{n}");
            assert!(!f.backtest.note.is_empty());
        }
    }
    // A season longer than the series (or absurdly long) is dropped.
    let series: Vec<f64> = (0..60).map(f64::from).collect();
    for season in [Some(0), Some(1), Some(45), Some(usize::MAX)] {
        let f = fit(&series, season, 3);
        assert_well_formed(&f, 3, true);
        assert_eq!(f.backtest.season, None, "{season:?}");
    }
    let none = fit(&[], None, 0);
    assert!(none.point.is_empty());
}

#[test]
fn non_finite_values_are_interpolated_not_propagated() {
    let mut series = demo_series(20.0, 3);
    series.truncate(200);
    series[50] = f64::NAN;
    series[51] = f64::INFINITY;
    series[199] = f64::NAN;
    let f = fit(&series, Some(7), 7);
    assert_well_formed(&f, 7, true);
    assert_eq!(f.backtest.imputed, 3);
    let all_nan = fit(&[f64::NAN; 40], Some(7), 5);
    assert_well_formed(&all_nan, 5, true);
    assert_eq!(all_nan.backtest.imputed, 40);
}

#[test]
fn series_with_negative_values_skip_the_log_and_the_clamp() {
    // A net flow: seasonal, around zero.
    let series: Vec<f64> = (0..120).map(|i| 10.0 * (i as f64 * std::f64::consts::TAU / 7.0).sin() + (i % 5) as f64 - 2.0).collect();
    let f = fit(&series, Some(7), 14);
    assert_well_formed(&f, 14, false);
    assert_eq!(f.transform, "none");
    assert!(f.lower_95.iter().any(|&x| x < 0.0));
    assert!(f.backtest.scores.iter().all(|s| !s.model.contains("log")));
}

#[test]
fn awkward_shapes_stay_finite() {
    let mut spike = vec![0.0; 200];
    spike[150] = 1000.0;
    let alternating: Vec<f64> = (0..100).map(|i| f64::from(i % 2) * 50.0).collect();
    let huge: Vec<f64> = (0..100).map(|i| 1e250 * (1.0 + f64::from(i % 7))).collect();
    let tiny: Vec<f64> = (0..100).map(|i| 1e-250 * (1.0 + f64::from(i % 7))).collect();
    let negative = vec![-4.0; 50];
    for (name, series) in [("spike", spike), ("alternating", alternating), ("huge", huge), ("tiny", tiny), ("negative constant", negative)] {
        let non_negative = series.iter().all(|&v| v >= 0.0);
        let f = fit(&series, Some(7), 400);
        println!("{name}: chosen {}", f.backtest.chosen);
        assert_well_formed(&f, 400, non_negative);
    }
}
