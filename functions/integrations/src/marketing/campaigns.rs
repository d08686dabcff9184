//! `POST /api/v1/integrations/marketing/campaigns`: a marketing email to a
//! list, sent by a `marketing_campaign` job to each confirmed subscriber
//! not suppressed, each with its own one-click unsubscribe link.

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use shared::audit::AuditEntry;
use shared::domain::jobs::Job;
use shared::domain::marketing::{self, Campaign};
use shared::http::Caller;
use shared::http::extract::ValidJson;
use shared::platform::error::{Error, FieldError, Result};
use utoipa::ToSchema;

use crate::IntegrationsState;
use axum::extract::State;

pub const MAX_SUBJECT_CHARS: usize = 200;
pub const MAX_TEXT_CHARS: usize = 100_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MarketingCampaignRequest)]
pub struct CampaignRequest {
    /// The list to send to (`a-z`, `0-9`, `-`, `_`).
    pub list: Option<String>,
    /// 1 to 200 characters, one line.
    pub subject: Option<String>,
    /// The plain-text body (1 to 100,000 characters); the unsubscribe link is added.
    pub text: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = MarketingCampaignAccepted)]
pub struct CampaignAccepted {
    pub campaign_id: String,
    /// The job sending it (`GET /api/v1/data/jobs/{id}` shows how many were sent and skipped).
    pub job_id: String,
}

/// Queue a marketing email to a list.
#[utoipa::path(
    post,
    path = "/api/v1/integrations/marketing/campaigns",
    tag = "integrations",
    request_body = CampaignRequest,
    responses(
        (status = 202, description = "Queued", body = CampaignAccepted),
        (status = 400, description = "`list`, `subject` or `text` missing or invalid (named)", body = shared::platform::error::Problem)
    )
)]
pub async fn create(
    State(state): State<IntegrationsState>,
    caller: Caller,
    ValidJson(body): ValidJson<CampaignRequest>,
) -> Result<(StatusCode, Json<CampaignAccepted>)> {
    let mut errors = Vec::new();
    let list = body.list.unwrap_or_default();
    if !marketing::valid_list(&list) {
        errors.push(FieldError::new("list", "a list name: 1 to 40 of a-z, 0-9, - and _"));
    }
    let subject = body.subject.unwrap_or_default().trim().to_string();
    if subject.is_empty() || subject.chars().count() > MAX_SUBJECT_CHARS || subject.chars().any(char::is_control) {
        errors.push(FieldError::new("subject", format!("1 to {MAX_SUBJECT_CHARS} characters, one line")));
    }
    let text = body.text.unwrap_or_default();
    if text.trim().is_empty() || text.chars().count() > MAX_TEXT_CHARS {
        errors.push(FieldError::new("text", format!("1 to {MAX_TEXT_CHARS} characters")));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let campaign = Campaign { campaign_id: uuid::Uuid::now_v7().to_string(), list, subject, text };
    let job = Job::of(&caller.principal.user_id, &campaign)?;
    let store = &state.platform.store;
    let audit = AuditEntry::new(&caller.actor(), "marketing.campaign_created", "marketing_campaign", &campaign.campaign_id)
        .changes::<(), _>(None, Some(&serde_json::json!({ "list": campaign.list, "subject": campaign.subject, "job_id": job.id })));
    store.commit(vec![job.create_write(store.table())?], &audit).await?;
    Ok((StatusCode::ACCEPTED, Json(CampaignAccepted { campaign_id: campaign.campaign_id, job_id: job.id })))
}
