//! Analytics models, fitted by the `analytics_refresh` job and stored as
//! rollup items that `/api/v1/analytics/*` reads (docs/analytics.md).
//!
//! Pure functions over plain series and per-customer histories: no AWS, no
//! store. Its heavy dependencies (augurs: ETS, MSTL) stay out of `shared`,
//! which every function links; only the jobs worker and the bench link
//! this crate.

pub mod anomaly;
pub mod backtest;
pub mod churn;
pub mod forecast;
pub mod insights;
pub mod pipeline;
pub mod series;

pub use forecast::{BacktestCard, Forecast, ModelScore, fit};
