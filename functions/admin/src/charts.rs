//! `/api/v1/admin/charts`: list charts with filters, the moderation queue
//! (pending and flagged, oldest first), one chart with its moderation
//! history, and moderation of one chart or up to `limits.bulk_cap` at once.
//! The decision itself lives in `moderation`.

use aws_sdk_dynamodb::types::AttributeValue;
use axum::Json;
use axum::extract::{Path, State};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use shared::domain::charts::{self, Chart, ModerationAction, ModerationEvent, ModerationStatus};
use shared::http::Caller;
use shared::http::extract::{PathId, ValidJson, ValidQuery, page_limit};
use shared::platform::error::{Error, Result};
use shared::platform::time;
use shared::store::cursor::{KeyPosition, key_of, position_of};
use shared::store::ids::{ChartId, UserId};
use shared::store::{Item, QuerySpec, s};
use utoipa::{IntoParams, ToSchema};

use crate::AdminState;
use crate::users::MAX_READS_PER_PAGE;
use shared::domain::moderation::{self, Decision, Refusal};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChartPage {
    pub items: Vec<Chart>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A `limit` within the configured `limits.page_size_max`.
async fn checked_limit(state: &AdminState, limit: Option<i64>) -> Result<(i32, std::sync::Arc<shared::domain::system_settings::SettingsVersion>)> {
    let settings = state.platform.settings.current().await?;
    let limit = page_limit(limit)?;
    let max = settings.settings.limits.page_size_max;
    if limit as u32 > max {
        return Err(Error::field("limit", format!("must be between 1 and {max}")));
    }
    Ok((limit, settings))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `approved`, `pending`, `rejected`, `flagged` or `hidden`.
    pub status: Option<ModerationStatus>,
    /// Charts of this user (UUID).
    pub owner_id: Option<String>,
    /// Only flagged (`true`) or only unflagged (`false`) charts.
    pub flagged: Option<bool>,
    /// Created at or after (RFC 3339).
    pub created_from: Option<String>,
    /// Created before (RFC 3339).
    pub created_to: Option<String>,
    /// Titles containing this text (case-insensitive).
    pub title: Option<String>,
    /// 1–`limits.page_size_max` (200), default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/admin/charts", tag = "charts", params(ListQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of charts, newest first", body = ChartPage),
        (status = 400, description = "Invalid filter or cursor", body = shared::platform::error::Problem),
        (status = 403, description = "Missing charts:read", body = shared::platform::error::Problem),
    ))]
pub async fn list(State(state): State<AdminState>, ValidQuery(q): ValidQuery<ListQuery>) -> Result<Json<ChartPage>> {
    let (limit, _) = checked_limit(&state, q.limit).await?;
    let from = time::field("created_from", q.created_from.as_deref())?.map(time::timestamp);
    let to = time::field("created_to", q.created_to.as_deref())?.map(time::timestamp);
    if q.owner_id.as_deref().is_some_and(|o| UserId::parse(o).is_none()) {
        return Err(Error::field("owner_id", UserId::EXPECTED));
    }
    let title = match q.title.as_deref().map(|t| t.trim().to_lowercase()) {
        Some(t) if t.is_empty() || t.chars().count() > 100 => return Err(Error::field("title", "must be 1 to 100 characters")),
        other => other,
    };
    let scope = format!("charts|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}", q.status, q.owner_id, q.flagged, from, to, title);
    let cursors = state.platform.cursors().await?;
    let start: Option<KeyPosition> = q.cursor.as_deref().map(|c| cursors.decode(&scope, c)).transpose()?;

    // The narrowest index: an owner's charts, one moderation state, or all;
    // sort keys are `created#id`, so the time range is a key range.
    let (index, key_condition, pk) = match (&q.owner_id, q.status) {
        (Some(owner), _) => ("gsi1", "gsi1pk = :pk AND gsi1sk BETWEEN :from AND :to", format!("OWNER#{owner}")),
        (None, Some(status)) => ("gsi2", "gsi2pk = :pk AND gsi2sk BETWEEN :from AND :to", status.partition()),
        (None, None) => ("gsi3", "gsi3pk = :pk AND gsi3sk BETWEEN :from AND :to", "CHARTS".to_string()),
    };
    let mut values = vec![(":pk", s(pk)), (":from", s(from.unwrap_or_else(|| "0".into()))), (":to", s(to.unwrap_or_else(|| "~".into())))];
    let mut names = Vec::new();
    let mut filters = Vec::new();
    if let (Some(_), Some(status)) = (&q.owner_id, q.status) {
        filters.push("moderation_status = :status");
        values.push((":status", s(status.as_str())));
    }
    if let Some(flagged) = q.flagged {
        filters.push("#flagged = :flagged");
        names.push(("#flagged", "flagged"));
        values.push((":flagged", AttributeValue::Bool(flagged)));
    }
    if let Some(title) = &title {
        filters.push("contains(title_lc, :title)");
        values.push((":title", s(title.clone())));
    }
    let filter = filters.join(" AND ");
    let spec = QuerySpec { index: Some(index), key_condition, filter: &filter, names, values, ..QuerySpec::default() };

    let (page, last) = state.platform.store.query_filled(&spec, start.as_ref().map(key_of), limit, MAX_READS_PER_PAGE).await?;
    let items = page.into_iter().map(charts::from_chart_item).collect::<Result<Vec<_>>>()?;
    let start = last.as_ref().map(position_of).transpose()?;
    let next_cursor = start.map(|p| cursors.encode(&scope, &p));
    Ok(Json(ChartPage { items, next_cursor }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// 1–`limits.page_size_max` (200), default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Where the queue continues in one moderation state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Lane {
    after: Option<KeyPosition>,
    done: bool,
}

/// The states whose charts wait for a moderator.
const QUEUED: [ModerationStatus; 2] = [ModerationStatus::Pending, ModerationStatus::Flagged];

/// The index key of a chart item on gsi2 (where its lane continues).
fn gsi2_position(item: &Item) -> Result<KeyPosition> {
    let key: Item = item.iter().filter(|(k, _)| matches!(k.as_str(), "pk" | "sk" | "gsi2pk" | "gsi2sk")).map(|(k, v)| (k.clone(), v.clone())).collect();
    position_of(&key)
}

#[utoipa::path(get, path = "/api/v1/admin/charts/queue", tag = "charts", params(QueueQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Pending and flagged charts, oldest first", body = ChartPage),
        (status = 400, description = "Invalid limit or cursor", body = shared::platform::error::Problem),
        (status = 403, description = "Missing charts:read", body = shared::platform::error::Problem),
    ))]
pub async fn queue(State(state): State<AdminState>, ValidQuery(q): ValidQuery<QueueQuery>) -> Result<Json<ChartPage>> {
    let (limit, _) = checked_limit(&state, q.limit).await?;
    let scope = "charts-queue";
    let cursors = state.platform.cursors().await?;
    let mut lanes: Vec<Lane> = match q.cursor.as_deref() {
        Some(c) => cursors.decode(scope, c)?,
        None => vec![Lane::default(); QUEUED.len()],
    };
    if lanes.len() != QUEUED.len() {
        return Err(Error::field("cursor", "invalid or expired cursor; start again without one"));
    }
    // A merge of the two states' partitions by `created#id`: the next
    // `limit` of each lane hold every chart of the next `limit` overall.
    let mut candidates: Vec<(String, usize, Item)> = Vec::new();
    let mut fetched = [0usize; QUEUED.len()];
    let mut more = [false; QUEUED.len()];
    for (lane_no, status) in QUEUED.iter().enumerate() {
        if lanes[lane_no].done {
            continue;
        }
        let spec =
            QuerySpec { index: Some("gsi2"), key_condition: "gsi2pk = :pk", values: vec![(":pk", s(status.partition()))], forward: true, ..Default::default() };
        let (page, last) = state.platform.store.query_page(&spec, lanes[lane_no].after.as_ref().map(key_of), limit).await?;
        fetched[lane_no] = page.len();
        more[lane_no] = last.is_some();
        for item in page {
            let order = shared::store::attr_s(&item, "gsi2sk").unwrap_or_default().to_string();
            candidates.push((order, lane_no, item));
        }
    }
    candidates.sort_by(|a, b| a.0.cmp(&b.0));
    candidates.truncate(limit as usize);
    let mut taken = [0usize; QUEUED.len()];
    let mut items = Vec::with_capacity(candidates.len());
    for (_, lane_no, item) in candidates {
        taken[lane_no] += 1;
        lanes[lane_no].after = Some(gsi2_position(&item)?);
        items.push(charts::from_chart_item(item)?);
    }
    for (lane_no, lane) in lanes.iter_mut().enumerate() {
        if !lane.done && taken[lane_no] == fetched[lane_no] && !more[lane_no] {
            lane.done = true;
        }
    }
    let next_cursor = (!lanes.iter().all(|l| l.done)).then(|| cursors.encode(scope, &lanes));
    Ok(Json(ChartPage { items, next_cursor }))
}

/// A chart with its moderation history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChartDetail {
    #[serde(flatten)]
    pub chart: Chart,
    /// The latest decisions, newest first (at most 100).
    pub moderation_history: Vec<ModerationEvent>,
}

#[utoipa::path(get, path = "/api/v1/admin/charts/{chart_id}", tag = "charts", security(("bearer" = [])),
    params(("chart_id" = String, Path, description = "Chart id (UUID)")),
    responses(
        (status = 200, description = "The chart and its moderation history", body = ChartDetail),
        (status = 403, description = "Missing charts:read", body = shared::platform::error::Problem),
        (status = 404, description = "No such chart", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<AdminState>, PathId(chart_id): PathId<ChartId>) -> Result<Json<ChartDetail>> {
    let store = &state.platform.store;
    let chart = charts::get(store, &chart_id).await?.ok_or_else(|| Error::NotFound(format!("no chart {chart_id}")))?;
    let moderation_history = charts::history(store, &chart.id, 100).await?;
    Ok(Json(ChartDetail { chart, moderation_history }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModerateChart {
    pub action: ModerationAction,
    /// A configured moderation reason code (see the system configuration).
    pub reason: String,
    /// Free text for other moderators (not sent to the owner).
    pub note: Option<String>,
    /// The chart version you read; a stale one gets 409.
    pub version: u64,
}

#[utoipa::path(post, path = "/api/v1/admin/charts/{chart_id}/moderate", tag = "charts", request_body = ModerateChart, security(("bearer" = [])),
    params(("chart_id" = String, Path, description = "Chart id (UUID)")),
    responses(
        (status = 200, description = "The chart after the decision", body = Chart),
        (status = 400, description = "Invalid fields or unknown reason", body = shared::platform::error::Problem),
        (status = 403, description = "Missing charts:moderate", body = shared::platform::error::Problem),
        (status = 404, description = "No such chart", body = shared::platform::error::Problem),
        (status = 409, description = "Stale version, or the action does not apply in the chart's state", body = shared::platform::error::Problem),
    ))]
pub async fn moderate(
    State(state): State<AdminState>,
    caller: Caller,
    Path(chart_id): Path<String>,
    ValidJson(body): ValidJson<ModerateChart>,
) -> Result<Json<Chart>> {
    let settings = state.platform.settings.current().await?;
    let reason = moderation::check_reason(&settings.settings, &body.reason, body.note.as_deref())?;
    let decision = Decision { action: body.action, reason, note: body.note.as_deref(), version: Some(body.version) };
    let done = moderation::moderate(&state.platform.store, &caller.actor(), &chart_id, &decision).await?;
    Ok(Json(done.chart))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkModerationTarget {
    pub chart_id: String,
    /// The chart version you read.
    pub version: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkModerate {
    pub action: ModerationAction,
    pub reason: String,
    pub note: Option<String>,
    /// 1 to `limits.bulk_cap` (at most 100) charts.
    pub items: Vec<BulkModerationTarget>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkStatus {
    Applied,
    Conflict,
    NotFound,
    Invalid,
    /// An unexpected failure (nothing changed for this chart; retry it).
    Error,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkItemResult {
    pub chart_id: String,
    pub status: BulkStatus,
    pub detail: String,
    /// The chart's version after the decision (when applied).
    pub version: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkResult {
    pub applied: usize,
    pub failed: usize,
    /// One result per requested chart, in request order.
    pub results: Vec<BulkItemResult>,
}

#[utoipa::path(post, path = "/api/v1/admin/charts/moderate", tag = "charts", request_body = BulkModerate, security(("bearer" = [])),
    responses(
        (status = 200, description = "Per-chart results; each applied chart was changed and audited in its own transaction", body = BulkResult),
        (status = 400, description = "Invalid fields, unknown reason, or more charts than limits.bulk_cap", body = shared::platform::error::Problem),
        (status = 403, description = "Missing charts:moderate", body = shared::platform::error::Problem),
    ))]
pub async fn moderate_bulk(State(state): State<AdminState>, caller: Caller, ValidJson(body): ValidJson<BulkModerate>) -> Result<Json<BulkResult>> {
    let settings = state.platform.settings.current().await?;
    let cap = settings.settings.limits.bulk_cap as usize;
    if body.items.is_empty() || body.items.len() > cap {
        return Err(Error::field("items", format!("1 to {cap} charts per request")));
    }
    let reason = moderation::check_reason(&settings.settings, &body.reason, body.note.as_deref())?;
    let actor = caller.actor();
    let store = &state.platform.store;
    let pending: Vec<_> = body
        .items
        .iter()
        .map(|target| {
            let decision = Decision { action: body.action, reason, note: body.note.as_deref(), version: Some(target.version) };
            let actor = &actor;
            async move {
                let result = |status, detail: String, version| BulkItemResult { chart_id: target.chart_id.clone(), status, detail, version };
                match moderation::moderate(store, actor, &target.chart_id, &decision).await {
                    Ok(done) => {
                        let detail = format!("now {}", done.chart.moderation_status.as_str());
                        result(BulkStatus::Applied, detail, Some(done.chart.version))
                    }
                    Err(Refusal::NotFound) => result(BulkStatus::NotFound, "no such chart".into(), None),
                    Err(Refusal::Stale(m)) => result(BulkStatus::Conflict, m, None),
                    Err(Refusal::InvalidTransition(m)) => result(BulkStatus::Invalid, m, None),
                    Err(Refusal::Failed(e)) => {
                        // One chart's infrastructure failure must not hide
                        // what was applied to the others.
                        tracing::error!(error = %e, chart_id = %target.chart_id, "bulk moderation item failed");
                        result(BulkStatus::Error, "unexpected error; nothing was changed for this chart, retry it".into(), None)
                    }
                }
            }
        })
        .collect();
    // A few at a time, results kept in request order.
    let results: Vec<BulkItemResult> = futures::stream::iter(pending).buffered(8).collect().await;
    let applied = results.iter().filter(|r| r.status == BulkStatus::Applied).count();
    Ok(Json(BulkResult { applied, failed: results.len() - applied, results }))
}
