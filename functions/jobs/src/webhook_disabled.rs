//! `webhook_disabled_email` jobs: tell a webhook endpoint's owner that
//! Keel stopped delivering to it (it failed for five days with no success,
//! docs/integrations.md), what it was and how to turn it back on. Sent to
//! the owner's current address; an owner who is gone is skipped.

use serde_json::{Value, json};
use shared::domain::jobs::{Job, WebhookDisabledEmail};
use shared::identity::users::{self, UserStatus};
use shared::platform::error::Result;

use crate::Worker;

pub async fn send(worker: &Worker, job: &Job) -> Result<Value> {
    let notice: WebhookDisabledEmail = job.payload()?;
    let Some(owner) = users::get(&worker.store, &notice.owner_id).await? else {
        return Ok(json!({ "skipped": "owner no longer exists" }));
    };
    if owner.status == UserStatus::Deleted {
        return Ok(json!({ "skipped": "owner is deleted" }));
    }
    let (subject, text) = email_of(&notice, &owner.name, &worker.config.public_url);
    let message_id = worker.send_email(&owner.email, &subject, text).await?;
    Ok(json!({ "message_id": message_id, "endpoint_id": notice.endpoint_id }))
}

/// The subject and text of the email.
pub fn email_of(notice: &WebhookDisabledEmail, owner_name: &str, public_url: &str) -> (String, String) {
    let subject = format!("Keel disabled your webhook endpoint {}", notice.url);
    let text = format!(
        "Hello {owner_name},\n\n\
         Keel stopped sending events to your webhook endpoint\n\n  {url}\n\n\
         because {reason}. Every attempt since {since} failed; it was disabled at {at}.\n\n\
         Events that happened meanwhile are kept in its deliveries log: \
         GET {public_url}/api/v1/integrations/webhooks/{id}/deliveries, and each can be replayed.\n\
         When the receiver works again, turn the endpoint back on: \
         PUT {public_url}/api/v1/integrations/webhooks/{id} with \"enabled\": true.\n",
        url = notice.url,
        reason = notice.reason,
        since = notice.failing_since,
        at = notice.disabled_at,
        id = notice.endpoint_id,
    );
    (subject, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_email_names_the_endpoint_the_cause_and_the_way_back() {
        let notice = WebhookDisabledEmail {
            endpoint_id: "0192".into(),
            url: "https://hooks.example.com/keel".into(),
            owner_id: "u1".into(),
            reason: "it failed for 5 days".into(),
            failing_since: "2026-11-01T00:00:00Z".into(),
            disabled_at: "2026-11-06T00:00:01Z".into(),
        };
        let (subject, text) = email_of(&notice, "Ada", "https://keel.example");
        assert_eq!(subject, "Keel disabled your webhook endpoint https://hooks.example.com/keel");
        assert!(text.contains("because it failed for 5 days. Every attempt since 2026-11-01T00:00:00Z failed"), "{text}");
        assert!(text.contains("PUT https://keel.example/api/v1/integrations/webhooks/0192"), "{text}");
    }
}
