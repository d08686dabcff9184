//! Everything the analytics job fits (`keel_models::pipeline::fit_all`), on
//! the `make dev` demo data (3,000 users, seed 2026) read back as the job
//! reads it: the forecasts of the demo series with weekly seasonality reach
//! a relative MASE <= 0.85 x seasonal-naive, their 95 % intervals cover
//! 90-98 % of held-out points (issue 12, "Done when"; every series is
//! printed: docs/analytics.md's backtest table), and the findings carry
//! what an insight needs. Run with `--nocapture` for the table.

use chrono::Utc;
use keel_models::pipeline::fit_all;

/// The demo series generated with a weekly pattern (signups: fewer at
/// weekends; activity and orders follow the signups).
const SEASONAL: &[&str] = &["signups", "active_users", "charts_created"];

#[test]
fn forecasts_and_findings_on_the_demo_data() {
    // A fixed instant: the figures (printed for the docs) do not drift with the clock.
    let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").unwrap().with_timezone(&Utc);
    let (items, _) = keel_local::seed::generate(now, 3000, 2026);
    let source = jobs::analytics_refresh::source_of(items, now).expect("generated items read back");
    let (events, orders) = (source.events, source.orders);
    let fitted = fit_all(&events, &orders, now);

    println!("| series | granularity | chosen | relative MASE | MASE h=3/6/12 | sMAPE h=12 | 95% coverage | 80% coverage | held-out points |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for f in &fitted.forecasts {
        let card = &f.forecast.backtest;
        let chosen: Vec<_> = card.scores.iter().filter(|s| s.model == card.chosen).collect();
        let mase: Vec<String> = chosen.iter().map(|s| format!("{:.2}", s.mase)).collect();
        let smape = chosen.iter().find(|s| s.horizon == 12).or(chosen.last()).map_or(f64::NAN, |s| s.smape);
        println!(
            "| {} | {} | {} | {:.3} | {} | {:.1} | {:.3} | {:.3} | {} |",
            f.series,
            f.granularity,
            card.chosen,
            card.relative_mase,
            mase.join(" / "),
            smape,
            card.coverage_95,
            card.coverage_80,
            card.held_out_points
        );
        // Intervals nest around the point, and nothing is NaN.
        let fc = &f.forecast;
        for i in 0..fc.point.len() {
            assert!(fc.lower_95[i] <= fc.lower_80[i] + 1e-9 && fc.lower_80[i] <= fc.point[i] + 1e-9, "{}", f.series);
            assert!(fc.point[i] <= fc.upper_80[i] + 1e-9 && fc.upper_80[i] <= fc.upper_95[i] + 1e-9, "{}", f.series);
        }
    }
    for name in SEASONAL {
        let f = fitted.forecasts.iter().find(|f| f.series == *name).unwrap_or_else(|| panic!("{name} not forecast"));
        let card = &f.forecast.backtest;
        assert!(card.origins >= 6 && card.horizons == vec![3, 6, 12], "{name}: {card:?}");
        assert!(card.relative_mase <= 0.85, "{name}: relative MASE {:.3}", card.relative_mase);
        assert!((0.90..=0.98).contains(&card.coverage_95), "{name}: 95% coverage {:.3}", card.coverage_95);
    }
    assert!(fitted.forecasts.iter().any(|f| f.series == "mrr" && f.granularity == "month"));

    // Findings: every field an insight shows, confidence in [0, 1], and a
    // churn finding from the churn model.
    assert!(!fitted.findings.is_empty());
    for f in &fitted.findings {
        assert!(!f.title.is_empty() && !f.explanation.is_empty() && !f.recommendation.is_empty() && !f.impact.formula.is_empty(), "{f:?}");
        assert!((0.0..=1.0).contains(&f.confidence) && f.impact.value.is_finite(), "{f:?}");
        assert!(f.query.path.starts_with("/api/v1/analytics/"), "{f:?}");
        assert!(
            fitted.series.iter().any(|s| keel_models::insights::series_name(&s.metric, s.dimension.as_ref()) == f.measure.series),
            "{}: no series {}",
            f.key,
            f.measure.series
        );
        println!("{:>12.0}  {:.2}  {:?}  {}", f.priority(), f.confidence, f.category, f.title);
    }
    assert!(fitted.findings.iter().any(|f| f.key == "churn:top_decile"));
}
