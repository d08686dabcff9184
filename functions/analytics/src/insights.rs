//! `GET /api/v1/analytics/insights` (ranked findings of the refresh job),
//! `GET /api/v1/analytics/insights/{id}` and
//! `PATCH /api/v1/analytics/insights/{id}` (an operator moves it through its
//! lifecycle; audited). The model and lifecycle rules are in
//! `shared::domain::insights`; how findings are made, in docs/analytics.md.

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use shared::domain::insights::{self, Insight, InsightCategory, InsightStatus};
use shared::http::Caller;
use shared::http::extract::{PathId, ValidJson, ValidQuery};
use shared::platform::error::{Error, Result};
use shared::store::ids::InsightId;
use utoipa::{IntoParams, ToSchema};

use crate::AnalyticsState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InsightsQuery {
    /// Only insights in this status.
    pub status: Option<InsightStatus>,
    pub category: Option<InsightCategory>,
    /// Include findings the latest refresh no longer made (default false; ones an operator acted on are always listed).
    pub include_stale: Option<bool>,
    /// At most this many (1 to 200; default 50), highest priority first.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InsightList {
    /// Ranked by priority (= |impact| × confidence), highest first.
    pub insights: Vec<Insight>,
    /// How many matched before `limit`.
    pub total: usize,
}

#[utoipa::path(get, path = "/api/v1/analytics/insights", tag = "analytics", params(InsightsQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Insights ranked by priority, with evidence, confidence, impact and lifecycle", body = InsightList),
    ))]
pub async fn list(State(state): State<AnalyticsState>, ValidQuery(query): ValidQuery<InsightsQuery>) -> Result<Json<InsightList>> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(Error::field("limit", "must be 1 to 200"));
    }
    let include_stale = query.include_stale.unwrap_or(false);
    let matching: Vec<Insight> = insights::rank(insights::all(&state.platform.store).await?)
        .into_iter()
        .filter(|i| query.status.is_none_or(|s| i.status == s))
        .filter(|i| query.category.is_none_or(|c| i.finding.category == c))
        .filter(|i| include_stale || !i.stale || i.status != InsightStatus::New)
        .collect();
    let total = matching.len();
    Ok(Json(InsightList { insights: matching.into_iter().take(limit as usize).collect(), total }))
}

#[utoipa::path(get, path = "/api/v1/analytics/insights/{insight_id}", tag = "analytics", security(("bearer" = [])),
    params(("insight_id" = String, Path, description = "Insight id (UUID)")),
    responses(
        (status = 200, description = "The insight with its status history and measured outcome", body = Insight),
        (status = 404, description = "No such insight", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<AnalyticsState>, PathId(id): PathId<InsightId>) -> Result<Json<Insight>> {
    insights::get(&state.platform.store, &id).await?.map(Json).ok_or_else(|| Error::NotFound(format!("no insight {id}")))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InsightUpdate {
    /// new, acknowledged, in_progress, implemented or dismissed (verified and no_effect are set by the outcome measurement).
    pub status: InsightStatus,
    /// Why, or what was done (at most 2000 characters).
    #[schema(max_length = 2000)]
    pub note: Option<String>,
}

#[utoipa::path(patch, path = "/api/v1/analytics/insights/{insight_id}", tag = "analytics", request_body = InsightUpdate, security(("bearer" = [])),
    params(("insight_id" = String, Path, description = "Insight id (UUID)")),
    responses(
        (status = 200, description = "The insight after the change (audited as analytics.insight.status); 30 days after `implemented` its outcome is measured", body = Insight),
        (status = 400, description = "A status only the outcome measurement sets, or a note too long", body = shared::platform::error::Problem),
        (status = 404, description = "No such insight", body = shared::platform::error::Problem),
        (status = 409, description = "Its outcome was measured (final), or it changed meanwhile", body = shared::platform::error::Problem),
    ))]
pub async fn update(
    State(state): State<AnalyticsState>,
    caller: Caller,
    PathId(id): PathId<InsightId>,
    ValidJson(body): ValidJson<InsightUpdate>,
) -> Result<Json<Insight>> {
    let insight = insights::set_status(&state.platform.store, &caller.actor(), &id, body.status, body.note, Utc::now()).await?;
    Ok(Json(insight))
}
