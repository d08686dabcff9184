//! Email marketing's work (docs/integrations.md, "Email marketing"):
//! `marketing_confirmation` jobs (the double opt-in email, its token made
//! here and kept only hashed), `marketing_campaign` jobs (one email per
//! confirmed, unsuppressed member of a list, each with its own RFC 8058
//! one-click unsubscribe link), `marketing_contact` jobs (SES's contact
//! list) and SES's bounce and complaint notifications, which arrive from
//! SNS through the SES events queue and put addresses on the suppression
//! list. A suppressed address is never sent to, confirmations included.

use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
use serde_json::{Value, json};
use shared::audit::{Actor, AuditEntry};
use shared::domain::jobs::Job;
use shared::domain::marketing::{self, Campaign, ConfirmationEmail, ContactSync, Subscriber, SubscriberStatus, Suppression, Token, TokenPurpose};
use shared::platform::error::{Error, Result};
use shared::store::{QuerySpec, Write, attr_s, s, timestamp};

use crate::Worker;

fn system() -> Actor {
    Actor::system("marketing")
}

pub async fn send_confirmation(worker: &Worker, job: &Job) -> Result<Value> {
    let request: ConfirmationEmail = job.payload()?;
    let store = &worker.store;
    if marketing::suppression(store.store(), &request.email).await?.is_some() {
        return Ok(json!({ "skipped": "suppressed" }));
    }
    let Some(subscriber) = marketing::get(store.store(), &request.email).await?.filter(|s| s.status == SubscriberStatus::Pending) else {
        return Ok(json!({ "skipped": "no longer pending" }));
    };
    let now = chrono::Utc::now();
    let token = marketing::new_token();
    let expires = now + marketing::CONFIRM_TTL;
    let record = Token { purpose: TokenPurpose::Confirm, email_key: marketing::email_key(&subscriber.email), list: None, expires_at: timestamp(expires) };
    store.store().put_item_unchecked(record.to_item(&token, expires)?).await?;
    let link = format!("{}/api/v1/integrations/marketing/confirm/{token}", worker.config.public_url);
    let text = format!(
        "Hello,\n\nSomeone (we hope you) asked to receive Keel's emails ({lists}) at this address.\n\
         Confirm within 48 hours:\n\n  {link}\n\nIf it was not you, ignore this email: nothing will be sent to you.\n",
        lists = subscriber.lists.join(", "),
    );
    let sent = worker.send_email(&subscriber.email, "Confirm your subscription to Keel's emails", text).await;
    let message_id = record_health(worker, sent).await?;
    Ok(json!({ "message_id": message_id }))
}

/// The raw message of one campaign email: plain text with the
/// unsubscribe link at the end, `List-Unsubscribe` (the https link and a
/// mailto to the sender) and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`.
pub fn campaign_message(from: &str, to: &str, campaign: &Campaign, unsubscribe_url: &str) -> Result<Vec<u8>> {
    let mailto = format!("mailto:{from}?subject=unsubscribe");
    let text = format!("{}\n\n--\nYou get this because you subscribed to Keel's {} list. Unsubscribe: {unsubscribe_url}\n", campaign.text, campaign.list);
    mail_builder::MessageBuilder::new()
        .from(from)
        .to(to)
        .subject(campaign.subject.as_str())
        .header("List-Unsubscribe", mail_builder::headers::url::URL::new_list([unsubscribe_url.to_string(), mailto].into_iter()))
        .header("List-Unsubscribe-Post", mail_builder::headers::raw::Raw::new("List-Unsubscribe=One-Click"))
        .text_body(text)
        .write_to_vec()
        .map_err(|e| Error::internal(format!("building the email: {e}")))
}

pub async fn send_campaign(worker: &Worker, job: &Job) -> Result<Value> {
    let campaign: Campaign = job.payload()?;
    let store = worker.store.store();
    let pk = marketing::list_pk(&campaign.list);
    let spec = QuerySpec { key_condition: "pk = :pk", values: vec![(":pk", s(&pk))], forward: true, ..Default::default() };
    let (mut sent, mut suppressed, mut left, mut already) = (0u64, 0u64, 0u64, 0u64);
    for member in store.query_all(&spec).await? {
        let Some(email) = attr_s(&member, "email").map(str::to_string) else { continue };
        if marketing::suppression(store, &email).await?.is_some() {
            suppressed += 1;
            continue;
        }
        let Some(subscriber) = marketing::get(store, &email).await?.filter(|s| s.status == SubscriberStatus::Confirmed && s.lists.contains(&campaign.list))
        else {
            left += 1;
            continue;
        };
        // Once per campaign and address, however often this job runs.
        let marker = shared::store::Item::from([
            ("pk".to_string(), s(marketing::sent_pk(&campaign.campaign_id))),
            ("sk".to_string(), s(marketing::email_key(&email))),
            ("type".to_string(), s("marketing_sent")),
            ("ttl".to_string(), shared::store::n(shared::store::ttl_after(90 * 86_400))),
        ]);
        if !store.put_new(marker).await? {
            already += 1;
            continue;
        }
        send_one(worker, &campaign, &subscriber).await?;
        sent += 1;
    }
    Ok(
        json!({ "campaign_id": campaign.campaign_id, "list": campaign.list, "sent": sent, "skipped_suppressed": suppressed, "skipped_not_subscribed": left, "already_sent": already }),
    )
}

async fn send_one(worker: &Worker, campaign: &Campaign, subscriber: &Subscriber) -> Result<()> {
    let now = chrono::Utc::now();
    let token = marketing::new_token();
    let expires = now + marketing::UNSUBSCRIBE_TTL;
    let record = Token {
        purpose: TokenPurpose::Unsubscribe,
        email_key: marketing::email_key(&subscriber.email),
        list: Some(campaign.list.clone()),
        expires_at: timestamp(expires),
    };
    worker.store.store().put_item_unchecked(record.to_item(&token, expires)?).await?;
    let url = format!("{}/api/v1/integrations/marketing/unsubscribe/{token}", worker.config.public_url);
    let raw = campaign_message(&worker.config.email_from, &subscriber.email, campaign, &url)?;
    let raw = RawMessage::builder().data(aws_sdk_sesv2::primitives::Blob::new(raw)).build().map_err(|e| Error::internal(e.to_string()))?;
    let sent = worker
        .ses
        .send_email()
        .from_email_address(&worker.config.email_from)
        .destination(Destination::builder().to_addresses(&subscriber.email).build())
        .content(EmailContent::builder().raw(raw).build())
        .send()
        .await
        .map(|out| out.message_id().map(str::to_string))
        .map_err(shared::platform::error::aws("ses SendEmail (marketing)"));
    record_health(worker, sent).await?;
    Ok(())
}

/// The hub's health of email marketing follows its sends (three failures
/// in a row: failing).
async fn record_health(worker: &Worker, sent: Result<Option<String>>) -> Result<Option<String>> {
    let outcome = sent.as_ref().map(|_| ()).map_err(|e| format!("SES refused a marketing email: {e}"));
    shared::domain::integration_health::record(worker.store.store(), HUB_NAME, outcome, chrono::Utc::now()).await?;
    sent
}

/// The hub's name for this integration (`integrations::marketing::HUB_NAME`).
pub const HUB_NAME: &str = "ses_marketing";

/// Put a confirmed subscriber in SES's contact list (made on first use),
/// or take one who left out of it.
pub async fn sync_contact(worker: &Worker, job: &Job) -> Result<Value> {
    let request: ContactSync = job.payload()?;
    let ses = &worker.ses;
    if request.subscribed {
        if ses.get_contact_list().contact_list_name(marketing::CONTACT_LIST).send().await.is_err() {
            match ses.create_contact_list().contact_list_name(marketing::CONTACT_LIST).description("Keel's confirmed marketing subscribers").send().await {
                Ok(_) => {}
                Err(e) if e.as_service_error().is_some_and(|e| e.is_already_exists_exception()) => {}
                Err(e) => return Err(shared::platform::error::aws("ses CreateContactList")(e)),
            }
        }
        match ses.create_contact().contact_list_name(marketing::CONTACT_LIST).email_address(&request.email).unsubscribe_all(false).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|e| e.is_already_exists_exception()) => {}
            Err(e) => return Err(shared::platform::error::aws("ses CreateContact")(e)),
        }
        Ok(json!({ "contact_list": marketing::CONTACT_LIST, "added": true }))
    } else {
        match ses.delete_contact().contact_list_name(marketing::CONTACT_LIST).email_address(&request.email).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found_exception()) => {}
            Err(e) => return Err(shared::platform::error::aws("ses DeleteContact")(e)),
        }
        Ok(json!({ "contact_list": marketing::CONTACT_LIST, "removed": true }))
    }
}

/// Whether an SQS message body is an SNS notification (the SES events
/// queue's messages), not a job message.
pub fn is_sns_notification(body: &str) -> bool {
    serde_json::from_str::<Value>(body).is_ok_and(|v| v["Type"] == "Notification" && v["TopicArn"].is_string())
}

/// The addresses an SES notification says must not be sent to again, with
/// why: every recipient of a complaint, and of a permanent bounce
/// (transient bounces, e.g. a full mailbox, are not suppressed). Both of
/// SES's shapes: identity notifications (`notificationType`) and
/// configuration-set events (`eventType`).
pub fn suppressions_of(notification: &Value) -> Vec<(String, &'static str, String)> {
    let kind = notification["notificationType"].as_str().or_else(|| notification["eventType"].as_str()).unwrap_or("");
    let recipients = |list: &Value| -> Vec<String> {
        list.as_array().map(|a| a.iter().filter_map(|r| r["emailAddress"].as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    match kind {
        "Bounce" if notification["bounce"]["bounceType"] == "Permanent" => {
            let detail = format!("Permanent/{}", notification["bounce"]["bounceSubType"].as_str().unwrap_or("General"));
            recipients(&notification["bounce"]["bouncedRecipients"]).into_iter().map(|e| (e, "bounce", detail.clone())).collect()
        }
        "Complaint" => {
            let detail = notification["complaint"]["complaintFeedbackType"].as_str().unwrap_or("complaint").to_string();
            recipients(&notification["complaint"]["complainedRecipients"]).into_iter().map(|e| (e, "complaint", detail.clone())).collect()
        }
        _ => Vec::new(),
    }
}

/// One SNS notification from the SES events topic: suppress what it says
/// (and end the subscriber's subscription), each in one transaction with
/// its audit entry; again for the same address changes nothing.
pub async fn handle_ses_notification(worker: &Worker, body: &str) -> Result<usize> {
    let envelope: Value = serde_json::from_str(body).map_err(|e| Error::internal(format!("not an SNS notification: {e}")))?;
    let message = envelope["Message"].as_str().unwrap_or("");
    let Ok(notification) = serde_json::from_str::<Value>(message) else {
        tracing::warn!("an SES events notification that is not JSON; dropped");
        return Ok(0);
    };
    let now = chrono::Utc::now();
    let store = &worker.store;
    let mut suppressed = 0;
    for (email, reason, detail) in suppressions_of(&notification) {
        let Ok(email) = shared::identity::users::Email::parse(&email) else { continue };
        let email = email.as_str().to_string();
        if marketing::suppression(store.store(), &email).await?.is_some() {
            continue;
        }
        let suppression = Suppression { reason: reason.to_string(), detail: detail.clone(), at: timestamp(now) };
        let table = store.table();
        let mut writes = vec![Write::put(table, suppression.to_item(&email)?)?];
        if let Some(before) = marketing::get(store.store(), &email).await?
            && before.status != SubscriberStatus::Unsubscribed
        {
            let after = Subscriber {
                status: SubscriberStatus::Unsubscribed,
                unsubscribed_at: Some(timestamp(now)),
                lists: Vec::new(),
                updated_at: timestamp(now),
                version: before.version + 1,
                ..before.clone()
            };
            writes.push(Write::put_versioned(table, after.to_item()?, before.version)?);
            for list in &before.lists {
                writes.push(Write::delete_if(
                    table,
                    &marketing::list_pk(list),
                    &marketing::email_key(&email),
                    &shared::store::Condition::new("attribute_exists(pk) OR attribute_not_exists(pk)"),
                    None,
                )?);
            }
            if before.status == SubscriberStatus::Confirmed {
                writes.push(Job::of(marketing::JOB_OWNER, &ContactSync { email: email.clone(), subscribed: false })?.create_write(table)?);
            }
        }
        let audit =
            AuditEntry::new(&system(), "marketing.suppressed", "marketing_subscriber", &marketing::email_key(&email)).reason(format!("SES {reason}: {detail}"));
        store.commit(writes, &audit).await?;
        suppressed += 1;
    }
    Ok(suppressed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_bounces_and_complaints_suppress_transient_bounces_do_not() {
        let bounce = |kind: &str| json!({"notificationType": "Bounce", "bounce": {"bounceType": kind, "bounceSubType": "General", "bouncedRecipients": [{"emailAddress": "a@example.com"}]}});
        assert_eq!(suppressions_of(&bounce("Permanent")), vec![("a@example.com".to_string(), "bounce", "Permanent/General".to_string())]);
        assert!(suppressions_of(&bounce("Transient")).is_empty());
        let complaint =
            json!({"eventType": "Complaint", "complaint": {"complaintFeedbackType": "abuse", "complainedRecipients": [{"emailAddress": "b@example.com"}]}});
        assert_eq!(suppressions_of(&complaint), vec![("b@example.com".to_string(), "complaint", "abuse".to_string())]);
        assert!(suppressions_of(&json!({"notificationType": "Delivery"})).is_empty());
    }

    #[test]
    fn a_campaign_email_carries_both_unsubscribe_headers() {
        let campaign = Campaign { campaign_id: "c".into(), list: "news".into(), subject: "Hello".into(), text: "Body".into() };
        let raw = String::from_utf8(campaign_message("noreply@keel.example", "a@example.com", &campaign, "https://keel.example/u/t").unwrap()).unwrap();
        // Unfolded (RFC 5322 folds long headers).
        let raw = raw.replace("\r\n ", " ");
        assert!(raw.contains("List-Unsubscribe: <https://keel.example/u/t>, <mailto:noreply@keel.example?subject=unsubscribe>"), "{raw}");
        assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"), "{raw}");
    }
}
