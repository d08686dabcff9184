//! `GET /api/v1/admin/analytics`: the dashboard. Reads only rollups kept by
//! the streams worker (`shared::domain::rollups`) and queue depths: a fixed number of
//! calls — one BatchGetItem of 71 known keys (70 counters and the latest
//! security events item), four GetQueueAttributes — whatever the size of the
//! data.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use shared::domain::rollups::{self, SecurityEvent, day, month, previous_month};
use shared::platform::error::Result;
use shared::store::{Item, Store};
use utoipa::ToSchema;

use crate::AdminState;
use crate::monitoring::QueueDepth;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Dashboard {
    /// When these numbers were read (rollups lag writes by the stream's delay, normally under a second).
    pub generated_at: String,
    pub users: UserStats,
    pub charts: ChartStats,
    pub revenue: RevenueStats,
    pub queues: Vec<QueueDepth>,
    pub security: SecurityStats,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserStats {
    /// Users that are not deleted.
    pub total: i64,
    pub by_status: BTreeMap<String, i64>,
    /// Distinct users active (signed in) today, in the last 7 and 30 days (UTC days, today included).
    pub active_today: i64,
    pub active_7d: i64,
    pub active_30d: i64,
    /// Signups in the last 7 days (today included), and in the 7 days before.
    pub new_this_week: i64,
    pub new_last_week: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChartStats {
    pub created_total: i64,
    pub created_today: i64,
    pub pending_moderation: i64,
    pub rejected: i64,
    pub by_status: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevenueStats {
    pub currency: String,
    /// Gross order amounts by order date, in cents.
    pub today_cents: i64,
    pub this_month_cents: i64,
    pub last_month_cents: i64,
    /// Refunded amounts by refund date, in cents.
    pub refunds_today_cents: i64,
    pub refunds_this_month_cents: i64,
    pub refunds_last_month_cents: i64,
    pub orders_today: i64,
    pub orders_this_month: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SecurityStats {
    pub events_today: i64,
    pub events_7d: i64,
    /// The 20 most recent security-relevant audit events, newest first.
    pub recent: Vec<SecurityEvent>,
}

fn value_of(item: &Item) -> i64 {
    item.get(rollups::VALUE).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn sk_of(item: &Item) -> &str {
    item.get("sk").and_then(|v| v.as_s().ok()).map(String::as_str).unwrap_or("")
}

/// Single counters, by (metric, bucket), and the latest security events, in
/// one BatchGetItem.
async fn rollup_items(store: &Store, keys: &[(&str, String)]) -> Result<(BTreeMap<(String, String), i64>, Vec<SecurityEvent>)> {
    let mut wanted: Vec<(String, String)> = keys.iter().map(|(metric, bucket)| (rollups::pk(metric), bucket.clone())).collect();
    wanted.push((rollups::SECURITY_LATEST_PK.to_string(), rollups::SECURITY_LATEST_SK.to_string()));
    let mut latest = Vec::new();
    let mut found = BTreeMap::new();
    for item in store.batch_get_eventually_consistent(&wanted).await? {
        let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        if pk == rollups::SECURITY_LATEST_PK {
            latest = shared::store::from_item::<rollups::LatestSecurityEvents>(item)?.events;
            continue;
        }
        found.insert((pk.trim_start_matches("METRIC#").to_string(), sk_of(&item).to_string()), value_of(&item));
    }
    // Audit entries name people by pseudonym; show their ids (an erased
    // person stays a pseudonym).
    let pseudonyms = latest.iter().flat_map(|e| [e.actor_id.clone(), e.target_id.clone()]).filter(|id| shared::audit::pseudonyms::is_pseudonym(id)).collect();
    let ids = shared::audit::pseudonyms::SubjectKeys::user_ids(store, &pseudonyms).await?;
    for event in &mut latest {
        for id in [&mut event.actor_id, &mut event.target_id] {
            if let Some(user_id) = ids.get(id.as_str()) {
                *id = user_id.clone();
            }
        }
    }
    Ok((found, latest))
}

/// The counters of `metric` for the days `from_days_ago..=to_days_ago` before `now`, summed.
fn sum_days(counters: &BTreeMap<(String, String), i64>, metric: &str, now: DateTime<Utc>, from_days_ago: i64, to_days_ago: i64) -> i64 {
    (to_days_ago..=from_days_ago).map(|n| counters.get(&(metric.to_string(), day(now - Duration::days(n)))).copied().unwrap_or(0)).sum()
}

/// The counters of `metric` by status; statuses nothing is in are left out.
fn statuses(counters: &BTreeMap<(String, String), i64>, metric: &str, names: &[&str]) -> BTreeMap<String, i64> {
    names.iter().filter_map(|s| counters.get(&(metric.to_string(), format!("status#{s}"))).filter(|v| **v != 0).map(|v| (s.to_string(), *v))).collect()
}

/// Compute the dashboard as of `now`.
pub async fn dashboard(state: &AdminState, now: DateTime<Utc>) -> Result<Dashboard> {
    let store = &state.platform.store;
    let (today, this_month, last_month) = (day(now), month(now), previous_month(now));
    let days_ago = |n: i64| day(now - Duration::days(n));
    // Every counter the dashboard shows, by key: 4 + 5 statuses, 14 + 30 + 7
    // days, 10 single buckets (70 keys, under BatchGetItem's 100).
    let mut keys: Vec<(&str, String)> = Vec::with_capacity(70);
    keys.extend(rollups::USER_STATUSES.iter().map(|s| (rollups::USERS, format!("status#{s}"))));
    keys.extend(rollups::CHART_STATUSES.iter().map(|s| (rollups::CHARTS, format!("status#{s}"))));
    keys.extend((0..14).map(|n| (rollups::SIGNUPS, days_ago(n))));
    keys.extend((0..30).map(|n| (rollups::LAST_ACTIVE, days_ago(n))));
    keys.extend((0..7).map(|n| (rollups::SECURITY_EVENTS, days_ago(n))));
    keys.extend([
        (rollups::CHARTS_CREATED, "all".to_string()),
        (rollups::CHARTS_CREATED, today.clone()),
        (rollups::REVENUE, today.clone()),
        (rollups::REVENUE, this_month.clone()),
        (rollups::REVENUE, last_month.clone()),
        (rollups::REFUNDS, today.clone()),
        (rollups::REFUNDS, this_month.clone()),
        (rollups::REFUNDS, last_month.clone()),
        (rollups::ORDERS, today.clone()),
        (rollups::ORDERS, this_month.clone()),
    ]);
    let ((counters, recent), queues) = tokio::try_join!(rollup_items(store, &keys), state.monitoring.queue_depths(&state.platform.config),)?;
    let one = |metric: &str, bucket: &str| counters.get(&(metric.to_string(), bucket.to_string())).copied().unwrap_or(0);
    let by_status = statuses(&counters, rollups::USERS, rollups::USER_STATUSES);
    let charts_by_status = statuses(&counters, rollups::CHARTS, rollups::CHART_STATUSES);
    Ok(Dashboard {
        generated_at: shared::store::timestamp(now),
        users: UserStats {
            total: by_status.iter().filter(|(s, _)| s.as_str() != "deleted").map(|(_, v)| v).sum(),
            active_today: sum_days(&counters, rollups::LAST_ACTIVE, now, 0, 0),
            active_7d: sum_days(&counters, rollups::LAST_ACTIVE, now, 6, 0),
            active_30d: sum_days(&counters, rollups::LAST_ACTIVE, now, 29, 0),
            new_this_week: sum_days(&counters, rollups::SIGNUPS, now, 6, 0),
            new_last_week: sum_days(&counters, rollups::SIGNUPS, now, 13, 7),
            by_status,
        },
        charts: ChartStats {
            created_total: one(rollups::CHARTS_CREATED, "all"),
            created_today: one(rollups::CHARTS_CREATED, &today),
            pending_moderation: charts_by_status.get("pending").copied().unwrap_or(0),
            rejected: charts_by_status.get("rejected").copied().unwrap_or(0),
            by_status: charts_by_status,
        },
        revenue: RevenueStats {
            currency: "USD".into(),
            today_cents: one(rollups::REVENUE, &today),
            this_month_cents: one(rollups::REVENUE, &this_month),
            last_month_cents: one(rollups::REVENUE, &last_month),
            refunds_today_cents: one(rollups::REFUNDS, &today),
            refunds_this_month_cents: one(rollups::REFUNDS, &this_month),
            refunds_last_month_cents: one(rollups::REFUNDS, &last_month),
            orders_today: one(rollups::ORDERS, &today),
            orders_this_month: one(rollups::ORDERS, &this_month),
        },
        queues,
        security: SecurityStats {
            events_today: sum_days(&counters, rollups::SECURITY_EVENTS, now, 0, 0),
            events_7d: sum_days(&counters, rollups::SECURITY_EVENTS, now, 6, 0),
            recent,
        },
    })
}

#[utoipa::path(get, path = "/api/v1/admin/analytics", tag = "analytics", security(("bearer" = [])),
    responses(
        (status = 200, description = "Dashboard numbers from rollups", body = Dashboard),
        (status = 403, description = "Missing analytics:read", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<AdminState>) -> Result<Json<Dashboard>> {
    dashboard(&state, Utc::now()).await.map(Json)
}
