//! Where the analytics job stores what its models produced
//! (`keel_models`: forecasts with their backtest cards, anomalies, the churn
//! model and its scores), in the same generation as the rollups
//! (`revenue::RevenueMeta`), so a refresh replaces them all at once.
//!
//! Keys: `MODELS#<gen>` / `FORECAST#<series>` (one per forecast series),
//! `ANOMALY#<date>#<series>` (one per anomaly, by day), `CHURN` (the churn
//! model: features, coefficients, held-out evaluation); `CHURN#<gen>` /
//! `RISK#<rank>` (one per scored customer, riskiest first). Each item keeps
//! the model's output as JSON text in `body`: the API passes it through, and
//! the analytics function does not link the model crate.

use serde::{Deserialize, Serialize};

pub const FORECAST_PREFIX: &str = "FORECAST#";
pub const ANOMALY_PREFIX: &str = "ANOMALY#";
pub const CHURN_SK: &str = "CHURN";
pub const RISK_PREFIX: &str = "RISK#";

pub fn models_pk(generation: &str) -> String {
    format!("MODELS#{generation}")
}

pub fn churn_pk(generation: &str) -> String {
    format!("CHURN#{generation}")
}

/// The sort key of the customer at `rank` (0 = riskiest).
pub fn risk_sk(rank: usize) -> String {
    format!("{RISK_PREFIX}{rank:06}")
}

/// One stored model output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredModel {
    /// The model's output, JSON.
    pub body: String,
}

impl StoredModel {
    pub fn of<T: Serialize>(value: &T) -> crate::platform::error::Result<StoredModel> {
        serde_json::to_string(value).map(|body| StoredModel { body }).map_err(|e| crate::platform::error::Error::internal(e.to_string()))
    }

    /// The output as JSON (an empty object if it no longer parses).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| serde_json::json!({}))
    }
}
