//! `security_alert_email` jobs: tell the security contacts (system
//! setting `security_contacts`, as it was when the event was detected)
//! about a new high-severity security event: what was seen, when, and the
//! concrete step to take. Committed with the event (docs/compliance.md), so
//! every such event is emailed once, or retried by the queue until it is.

use serde_json::{Value, json};
use shared::domain::jobs::{Job, SecurityAlertEmail};
use shared::platform::error::Result;

use crate::Worker;

pub async fn send(worker: &Worker, job: &Job) -> Result<Value> {
    let alert: SecurityAlertEmail = job.payload()?;
    let (subject, text) = email_of(&alert, &worker.config.public_url);
    let mut sent = Vec::new();
    for contact in &alert.contacts {
        sent.push(worker.send_email(contact, &subject, text.clone()).await?);
    }
    Ok(json!({ "event_id": alert.event_id, "message_ids": sent }))
}

/// The subject and text of the email.
pub fn email_of(alert: &SecurityAlertEmail, public_url: &str) -> (String, String) {
    let subject = format!("Keel security alert ({}): {}", alert.severity, alert.kind.replace('_', " "));
    let text = format!(
        "Keel detected a {severity}-severity security event.\n\n\
         What: {summary}\nWhen: {at}\n\nWhat to do: {recommendation}\n\n\
         Its evidence (the audit entries) is at GET {public_url}/api/v1/compliance/security-events/{id}; \
         acknowledge it with POST {public_url}/api/v1/compliance/security-events/{id}/acknowledge once handled.\n",
        severity = alert.severity,
        summary = alert.summary,
        at = alert.occurred_at,
        recommendation = alert.recommendation,
        id = alert.event_id,
    );
    (subject, text)
}
