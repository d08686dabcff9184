//! `security_email` jobs: tell a user by email (SES) about a security event
//! on their account — today, an administrator resetting their 2FA — so a
//! change they did not expect does not go unnoticed. The emails carry no
//! secrets and no links.

use serde_json::{Value, json};
use shared::domain::jobs::{Job, SecurityEmail, SecurityEvent};
use shared::identity::users::{self, UserStatus};
use shared::platform::error::{Error, Result};

use crate::Worker;

pub async fn send(worker: &Worker, job: &Job) -> Result<Value> {
    let notice: SecurityEmail = serde_json::from_value(job.params.clone()).map_err(|e| Error::internal(format!("security_email job params: {e}")))?;
    let Some(user) = users::get(&worker.store, &notice.user_id).await? else {
        return Ok(json!({ "skipped": "user no longer exists" }));
    };
    if user.status == UserStatus::Deleted {
        return Ok(json!({ "skipped": "user is deleted" }));
    }
    let (subject, what) = match notice.event {
        SecurityEvent::MfaReset => (
            "Your Keel two-factor authentication was reset",
            "An administrator reset the two-factor authentication of your Keel account. Your authenticator app and recovery codes no longer work for it; set up two-factor authentication again after you next sign in.",
        ),
    };
    let text = format!(
        "Hello {name},\n\n{what}\n\nWhen: {when}\n\nIf you did not ask for this, contact your security team at once.\n",
        name = user.name,
        when = notice.occurred_at,
    );
    let message_id = worker.send_email(&user.email, subject, text).await?;
    Ok(json!({ "message_id": message_id, "event": notice.event }))
}
