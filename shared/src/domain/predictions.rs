//! Where the analytics job stores what its models produced
//! (`keel_models`: forecasts with their backtest cards, anomalies, the churn
//! model and its scores), in the same generation as the rollups
//! (`revenue::RevenueMeta`), so a refresh replaces them all at once.
//!
//! Keys: `MODELS#<gen>` / `FORECAST#` (every forecast, a `ModelPack`),
//! `ANOMALY#<yyyy-mm>` (a month's anomalies, a `ModelPack`; generations
//! stored before the packs have `FORECAST#<series>` and
//! `ANOMALY#<date>#<series>#<i>`, one model each), `CHURN` (the churn
//! model: features, coefficients, held-out evaluation); `CHURN#<gen>` /
//! `RISK#<rank>` (scored customers riskiest first, `RISKS_PER_CHUNK` an
//! item, a JSON array in `doc`; keyed by the rank of the chunk's first).
//! Each model item keeps the model's output as JSON text in `body`: the API
//! passes it through, and the analytics function does not link the model
//! crate.

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

/// At-risk customers per item of the `CHURN#<gen>` partition.
pub const RISKS_PER_CHUNK: usize = 100;

/// The sort key of the customer at `rank` (0 = riskiest), or of the chunk
/// that starts with that customer.
pub fn risk_sk(rank: usize) -> String {
    format!("{RISK_PREFIX}{rank:06}")
}

/// Model outputs stored together in one document item: every forecast
/// (sort key `FORECAST#`, each keyed by its series) and each month's
/// anomalies (`ANOMALY#yyyy-mm`, keyed by their day), so a read is a few
/// items however many there are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelPack {
    pub models: Vec<KeyedModel>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyedModel {
    pub key: String,
    pub model: serde_json::Value,
}

/// The sort key of the anomalies of the month of `day` (`yyyy-mm-dd` or `yyyy-mm`).
pub fn anomaly_month_sk(day: &str) -> String {
    format!("{ANOMALY_PREFIX}{}", day.get(..7).unwrap_or(day))
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
