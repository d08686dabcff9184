//! `POST /api/v1/analytics/refresh`: recompute the revenue rollups now. The
//! job record is committed with its audit entry (the outbox sends it; the
//! jobs worker runs `analytics_refresh`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use shared::audit::AuditEntry;
use shared::domain::jobs::{AnalyticsRefresh, Job, JobStatus};
use shared::http::Caller;
use shared::platform::error::Result;
use utoipa::ToSchema;

use crate::AnalyticsState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RefreshAccepted {
    pub job_id: String,
    pub status: JobStatus,
}

#[utoipa::path(post, path = "/api/v1/analytics/refresh", tag = "analytics", security(("bearer" = [])),
    responses(
        (status = 202, description = "The recomputation was queued as an `analytics_refresh` job", body = RefreshAccepted),
    ))]
pub async fn create(State(state): State<AnalyticsState>, caller: Caller) -> Result<(StatusCode, Json<RefreshAccepted>)> {
    let job = Job::of(&caller.principal.user_id, &AnalyticsRefresh {})?;
    let store = &state.platform.store;
    let audit = AuditEntry::new(&caller.actor(), "analytics.refresh", "job", &job.id);
    store.commit(vec![job.create_write(store.table())?], &audit).await?;
    Ok((StatusCode::ACCEPTED, Json(RefreshAccepted { job_id: job.id, status: job.status })))
}
