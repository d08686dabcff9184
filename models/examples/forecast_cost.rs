//! What one `fit` costs on a two-year daily series (issue 12's budget:
//! about 30 such series per analytics refresh, ~1–2 s each at most).
//! `cargo run -p keel-models --example forecast_cost`; wall time is
//! printed, run it under `/usr/bin/time` for CPU time on a busy machine.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn main() {
    let mut rng = StdRng::seed_from_u64(7);
    let series: Vec<f64> = (0..730)
        .map(|d| {
            let growth = 0.4 + 1.6 * f64::from(d) / 729.0;
            let weekly = if d % 7 >= 5 { 0.7 } else { 1.0 };
            let mean = 150.0 * growth * weekly;
            // Normal approximation of Poisson noise is enough for timing.
            let u: f64 = rng.r#gen::<f64>().max(1e-12);
            let v: f64 = rng.r#gen();
            let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
            (mean + z * mean.sqrt()).round().max(0.0)
        })
        .collect();
    let runs = 3;
    for _ in 0..runs {
        let started = Instant::now();
        let f = keel_models::fit(&series, Some(7), 30);
        println!("fit of 730 daily points: {:.3} s wall, chosen {}, {} origins", started.elapsed().as_secs_f64(), f.backtest.chosen, f.backtest.origins);
    }
}
