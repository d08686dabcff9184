//! `chart_moderation_email` jobs: tell a chart's owner (SES) that a
//! moderator rejected or hid their chart, and why (the configured reason's
//! label; the moderator's internal note is not sent).

use serde_json::{Value, json};
use shared::domain::charts;
use shared::domain::jobs::{ChartModerationEmail, Job};
use shared::identity::users::{self, UserStatus};
use shared::platform::error::{Error, Result};
use shared::store::ids::ChartId;

use crate::Worker;

pub async fn send(worker: &Worker, job: &Job) -> Result<Value> {
    let params: ChartModerationEmail = job.payload()?;
    let (chart_id, action, reason) = (params.chart_id.as_str(), params.action.as_str(), params.reason_label.as_str());
    let chart = match ChartId::parse(chart_id) {
        Some(chart_id) => charts::get(&worker.store, &chart_id).await?,
        None => None,
    };
    let Some(chart) = chart else {
        return Ok(json!({ "skipped": "chart no longer exists" }));
    };
    let Some(owner) = users::get(&worker.store, &chart.owner_id).await? else {
        return Ok(json!({ "skipped": "owner no longer exists" }));
    };
    if owner.status == UserStatus::Deleted {
        return Ok(json!({ "skipped": "owner is deleted" }));
    }
    let (subject, what) = match action {
        "reject" => ("Your chart was not approved", "was reviewed and not approved"),
        "hide" => ("Your chart was hidden", "was hidden by a moderator"),
        other => return Err(Error::internal(format!("{} job for action {other:?}, which does not notify", job.kind))),
    };
    let text = format!(
        "Hello {name},\n\nYour chart \"{title}\" {what}.\n\nReason: {reason}\n\nIf you think this is a mistake, reply to this email.\n",
        name = owner.name,
        title = chart.title,
    );
    let message_id = worker.send_email(&owner.email, subject, text).await?;
    Ok(json!({ "message_id": message_id, "chart_id": chart.id }))
}
