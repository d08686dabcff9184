//! `GET /api/v1/analytics/predictions`: what the refresh job's models
//! produced (`shared::domain::predictions`): forecasts with 80 % and 95 %
//! intervals and each one's backtest card, anomalies on the daily series
//! with their expected range and driver, and the churn model (held-out
//! evaluation) with the riskiest customers and their top reasons. One
//! Query of the models partition and one of the churn scores. Methods:
//! docs/analytics.md.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::domain::predictions::{self, ModelPack, StoredModel};
use shared::domain::revenue::{self, RevenueMeta};
use shared::http::extract::ValidQuery;
use shared::platform::error::{Error, Result};
use shared::store::{DOC, QuerySpec, attr_s, from_doc_item, from_item, s};
use utoipa::{IntoParams, ToSchema};

use crate::AnalyticsState;

/// Days of anomalies listed when `from` is not given.
pub const DEFAULT_ANOMALY_DAYS: i64 = 90;

/// The most at-risk customers one response lists.
pub const MAX_CUSTOMERS: u32 = 500;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PredictionsQuery {
    /// Only the forecast of this series (e.g. `signups`, `mrr`, `orders{plan=pro}`); default all.
    #[param(max_length = 100)]
    pub series: Option<String>,
    /// Anomalies on or after this day (`yyyy-mm-dd`); default 90 days before the refresh (the read stays a few items whatever the history).
    #[param(pattern = r"^\d{4}-\d{2}-\d{2}$", example = "2026-01-01")]
    pub from: Option<String>,
    /// Anomalies on or before this day (`yyyy-mm-dd`).
    #[param(pattern = r"^\d{4}-\d{2}-\d{2}$", example = "2026-12-31")]
    pub to: Option<String>,
    /// At-risk customers to list, riskiest first (0 to 500; default 50).
    #[param(minimum = 0, maximum = 500)]
    pub customers: Option<u32>,
}

fn day(field: &str, value: &Option<String>) -> Result<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) if chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok() => Ok(Some(v.clone())),
        Some(_) => Err(Error::field(field, "must be a date, yyyy-mm-dd")),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Predictions {
    /// When the models were fitted; null before the first refresh.
    pub computed_at: Option<String>,
    /// Per series: `series`, `granularity`, `start` (first forecast period), `model`, `transform`, `point`, `lower_80`, `upper_80`, `lower_95`, `upper_95`, and `backtest` (origins, horizons, per model and horizon MASE, sMAPE, 95 % coverage, MSIS; `relative_mase` = chosen ÷ seasonal-naive).
    #[schema(value_type = Vec<Object>)]
    pub forecasts: Vec<Value>,
    /// Per anomaly: `metric`, `dimension`, `date`, `kind` (spike, drop, level_shift), `observed`, `expected`, `lower`, `upper`, `score`, `driver`.
    #[schema(value_type = Vec<Object>)]
    pub anomalies: Vec<Value>,
    /// The churn model: `features`, `coefficients`, `trained_to`, `evaluated_at`, `evaluation` (AUC, top-decile lift, Brier, calibration on the held-out period); null before the first refresh.
    #[schema(value_type = Option<Object>)]
    pub churn_model: Option<Value>,
    /// Customers scored at the refresh, riskiest first: `user_id`, `probability` (churn within 60 days), `reasons` (top 3), `mrr_cents`, `plan`.
    #[schema(value_type = Vec<Object>)]
    pub at_risk: Vec<Value>,
}

#[utoipa::path(get, path = "/api/v1/analytics/predictions", tag = "analytics", params(PredictionsQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Forecasts with intervals and backtest cards, anomalies, churn model and at-risk customers, as of the last refresh", body = Predictions),
    ))]
pub async fn read(State(state): State<AnalyticsState>, ValidQuery(query): ValidQuery<PredictionsQuery>) -> Result<Json<Predictions>> {
    Ok(Json(compute(&state.platform.store, &query).await?))
}

/// The answer to `query` from the rollups: the route's body, and what
/// report templates read (`reports`), so both give the same figures.
pub async fn compute(store: &shared::store::Store, query: &PredictionsQuery) -> Result<Predictions> {
    let (from, to) = (day("from", &query.from)?, day("to", &query.to)?);
    if let (Some(f), Some(t)) = (&from, &to)
        && f > t
    {
        return Err(Error::field("from", "must not be after `to`"));
    }
    let customers = query.customers.unwrap_or(50);
    if customers > MAX_CUSTOMERS {
        return Err(Error::field("customers", format!("at most {MAX_CUSTOMERS}")));
    }
    let Some(meta) = store.get::<RevenueMeta>(revenue::META_PK, revenue::META_SK).await? else {
        return Ok(Predictions::default());
    };
    let pk = predictions::models_pk(&meta.generation);
    let mut out = Predictions { computed_at: Some(meta.computed_at.clone()), ..Default::default() };
    let from = from
        .or_else(|| revenue::parse_time(&meta.computed_at).map(|t| (t - chrono::Duration::days(DEFAULT_ANOMALY_DAYS)).format("%Y-%m-%d").to_string()))
        .unwrap_or_default();
    // Three key ranges of the models partition: the forecasts, the churn
    // model, and only the anomalies of the days asked for.
    let range = |lo: String, hi: String| QuerySpec {
        key_condition: "pk = :pk AND sk BETWEEN :lo AND :hi",
        values: vec![(":pk", s(pk.clone())), (":lo", s(lo)), (":hi", s(hi))],
        forward: true,
        ..Default::default()
    };
    let forecasts_spec = range(predictions::FORECAST_PREFIX.to_string(), format!("{}\u{10ffff}", predictions::FORECAST_PREFIX));
    let wanted = |series: &str| query.series.as_deref().is_none_or(|want| want == series);
    // The months of the days asked for, then only those days.
    let to_key =
        to.as_deref().map_or_else(|| format!("{}\u{10ffff}", predictions::ANOMALY_PREFIX), |t| format!("{}\u{10ffff}", predictions::anomaly_month_sk(t)));
    let anomalies_spec = range(predictions::anomaly_month_sk(&from), to_key);
    let in_range = |day: &str| day >= from.as_str() && to.as_deref().is_none_or(|t| day <= t);
    let churn_spec =
        QuerySpec { key_condition: "pk = :pk", values: vec![(":pk", s(predictions::churn_pk(&meta.generation)))], forward: true, ..Default::default() };
    // The four reads at once: the latency is the slowest one's.
    let forecasts = async {
        let mut found = Vec::new();
        for item in store.query_all(&forecasts_spec).await? {
            if item.contains_key(DOC) {
                let pack: ModelPack = from_doc_item(item)?;
                found.extend(pack.models.into_iter().filter(|m| wanted(&m.key)).map(|m| m.model));
            } else {
                // A generation stored before the packs: a forecast an item.
                let sk = attr_s(&item, "sk").unwrap_or_default().to_string();
                if wanted(sk.strip_prefix(predictions::FORECAST_PREFIX).unwrap_or_default()) {
                    found.push(from_item::<StoredModel>(item)?.json());
                }
            }
        }
        Ok::<_, Error>(found)
    };
    let anomalies = async {
        let mut found = Vec::new();
        for item in store.query_all(&anomalies_spec).await? {
            if item.contains_key(DOC) {
                let pack: ModelPack = from_doc_item(item)?;
                found.extend(pack.models.into_iter().filter(|m| in_range(&m.key)).map(|m| m.model));
            } else {
                let sk = attr_s(&item, "sk").unwrap_or_default().to_string();
                let day = sk.strip_prefix(predictions::ANOMALY_PREFIX).and_then(|rest| rest.get(..10)).unwrap_or_default();
                if in_range(day) {
                    found.push(from_item::<StoredModel>(item)?.json());
                }
            }
        }
        Ok::<_, Error>(found)
    };
    let churn_model = async { Ok::<_, Error>(store.get::<StoredModel>(&pk, predictions::CHURN_SK).await?.map(|m| m.json())) };
    let at_risk = async {
        let mut found = Vec::new();
        if customers == 0 {
            return Ok::<_, Error>(found);
        }
        let chunks = (customers as usize).div_ceil(predictions::RISKS_PER_CHUNK);
        let (mut items, _) = store.query_page(&churn_spec, None, chunks as i32).await?;
        if items.first().is_some_and(|item| !item.contains_key(DOC)) {
            // A generation stored before the chunks: a customer an item.
            items = store.query_page(&churn_spec, None, customers as i32).await?.0;
        }
        for item in items {
            if item.contains_key(DOC) {
                found.extend(from_doc_item::<Vec<serde_json::Value>>(item)?);
            } else {
                found.push(from_item::<StoredModel>(item)?.json());
            }
        }
        found.truncate(customers as usize);
        Ok(found)
    };
    (out.forecasts, out.anomalies, out.churn_model, out.at_risk) = tokio::try_join!(forecasts, anomalies, churn_model, at_risk)?;
    Ok(out)
}
