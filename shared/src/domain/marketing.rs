//! Email marketing's records, shared by the integrations function (the
//! subscribe/confirm/unsubscribe API) and the jobs worker (confirmation and
//! campaign emails, SES contacts, SES bounce and complaint notifications).
//! docs/integrations.md, "Email marketing".
//!
//! Addresses never appear in keys or audit entries: they are keyed by
//! `email_key` (SHA-256 of the lower-cased address).
//!
//! Keys: `SUBSCRIBER#<email_key> / META` (the subscriber); `MKLIST#<list> /
//! <email_key>` (a confirmed subscriber's membership, what a campaign
//! reads); `MKTOKEN#sha256(token) / META` (a confirmation or unsubscribe
//! token, only its hash kept, expiring by TTL); `SUPPRESSED#<email_key> /
//! META` (never sent to again: a hard bounce or a complaint);
//! `MKSENT#<campaign_id> / <email_key>` (sent once per campaign, however
//! often its job runs).

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::platform::crypto::sha256_hex;
use crate::platform::error::{Error, Result};
use crate::store::{Item, Store, from_item, s, to_item};

/// The SES contact list confirmed subscribers are added to.
pub const CONTACT_LIST: &str = "keel-marketing";
/// The list a subscription without `lists` joins.
pub const DEFAULT_LIST: &str = "news";
pub const MAX_LISTS: usize = 10;
/// How long a confirmation link works.
pub const CONFIRM_TTL: Duration = Duration::hours(48);
/// A pending address gets at most one confirmation email per this interval,
/// however often it is subscribed.
pub const RESEND_INTERVAL: Duration = Duration::minutes(10);
/// How long an unsubscribe link in a campaign email works.
pub const UNSUBSCRIBE_TTL: Duration = Duration::days(365);

pub fn email_key(email: &str) -> String {
    sha256_hex(email.trim().to_lowercase().as_bytes())
}

pub fn subscriber_pk(email: &str) -> String {
    subscriber_pk_of_key(&email_key(email))
}

pub fn subscriber_pk_of_key(key: &str) -> String {
    format!("SUBSCRIBER#{key}")
}

pub fn suppression_pk(email: &str) -> String {
    format!("SUPPRESSED#{}", email_key(email))
}

pub fn list_pk(list: &str) -> String {
    format!("MKLIST#{list}")
}

pub fn token_pk(token: &str) -> String {
    format!("MKTOKEN#{}", sha256_hex(token.as_bytes()))
}

pub fn sent_pk(campaign_id: &str) -> String {
    format!("MKSENT#{campaign_id}")
}

/// A list name: 1 to 40 of `a-z`, `0-9`, `-`, `_`.
pub fn valid_list(name: &str) -> bool {
    (1..=40).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A new single-use secret for a link: 256 random bits, base64url.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = MarketingSubscriberStatus)]
pub enum SubscriberStatus {
    /// Subscribed, waiting for the address to confirm.
    Pending,
    Confirmed,
    Unsubscribed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = MarketingSubscriber)]
pub struct Subscriber {
    pub email: String,
    pub status: SubscriberStatus,
    pub lists: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation_sent_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsubscribed_at: Option<String>,
    pub version: u64,
}

impl Subscriber {
    pub fn to_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(subscriber_pk(&self.email)));
        item.insert("sk".into(), s("META"));
        item.insert("type".into(), s("marketing_subscriber"));
        Ok(item)
    }

    /// Whether a confirmation email may go out now (none sent within
    /// `RESEND_INTERVAL`).
    pub fn may_resend(&self, now: DateTime<Utc>) -> bool {
        self.confirmation_sent_at.as_deref().and_then(crate::platform::time::parse).is_none_or(|sent| now - sent >= RESEND_INTERVAL)
    }
}

/// A confirmed subscriber's membership of a list.
pub fn member_item(list: &str, email: &str) -> Item {
    Item::from([
        ("pk".to_string(), s(list_pk(list))),
        ("sk".to_string(), s(email_key(email))),
        ("type".to_string(), s("marketing_member")),
        ("email".to_string(), s(email)),
    ])
}

pub async fn get(store: &Store, email: &str) -> Result<Option<Subscriber>> {
    get_by_key(store, &email_key(email)).await
}

/// The subscriber whose address has this `email_key` (what tokens hold).
pub async fn get_by_key(store: &Store, key: &str) -> Result<Option<Subscriber>> {
    store.get_item(&subscriber_pk_of_key(key), "META").await?.map(from_item).transpose()
}

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPurpose {
    Confirm,
    Unsubscribe,
}

/// A link's token as stored (under its hash). It names the subscriber by
/// `email_key`, not the address: erasing the subscriber leaves no address
/// in the tokens still out in emails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub purpose: TokenPurpose,
    pub email_key: String,
    /// The list an unsubscribe link leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
    pub expires_at: String,
}

impl Token {
    /// The item for `token` (its hash is the key), expiring by TTL a day
    /// after it stops working.
    pub fn to_item(&self, token: &str, expires: DateTime<Utc>) -> Result<Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(token_pk(token)));
        item.insert("sk".into(), s("META"));
        item.insert("type".into(), s("marketing_token"));
        item.insert("ttl".into(), crate::store::n((expires + Duration::days(1)).timestamp()));
        Ok(item)
    }

    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        crate::platform::time::parse(&self.expires_at).is_none_or(|until| now >= until)
    }
}

pub async fn token(store: &Store, token: &str) -> Result<Option<Token>> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    store.get_item(&token_pk(token), "META").await?.map(from_item).transpose()
}

/// Why an address is never sent to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suppression {
    /// `bounce` (permanent) or `complaint`.
    pub reason: String,
    /// SES's bounce type/subtype or complaint feedback type.
    pub detail: String,
    pub at: String,
}

impl Suppression {
    pub fn to_item(&self, email: &str) -> Result<Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(suppression_pk(email)));
        item.insert("sk".into(), s("META"));
        item.insert("type".into(), s("marketing_suppression"));
        Ok(item)
    }
}

pub async fn suppression(store: &Store, email: &str) -> Result<Option<Suppression>> {
    store.get_item(&suppression_pk(email), "META").await?.map(from_item).transpose()
}

/// Parameters of a `marketing_confirmation` job: email the pending
/// subscriber a confirmation link (made by the job, only its hash kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmationEmail {
    pub email: String,
}

impl crate::domain::jobs::JobPayload for ConfirmationEmail {
    fn kind(&self) -> crate::domain::jobs::JobKind {
        crate::domain::jobs::JobKind::MarketingConfirmation
    }
}

/// Parameters of a `marketing_campaign` job: one email to each confirmed,
/// unsuppressed member of `list`, each with its own unsubscribe link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    pub campaign_id: String,
    pub list: String,
    pub subject: String,
    pub text: String,
}

impl crate::domain::jobs::JobPayload for Campaign {
    fn kind(&self) -> crate::domain::jobs::JobKind {
        crate::domain::jobs::JobKind::MarketingCampaign
    }
}

/// Parameters of a `marketing_contact` job: put a confirmed subscriber in
/// SES's contact list, or take one who left out of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactSync {
    pub email: String,
    pub subscribed: bool,
}

impl crate::domain::jobs::JobPayload for ContactSync {
    fn kind(&self) -> crate::domain::jobs::JobKind {
        crate::domain::jobs::JobKind::MarketingContact
    }
}

/// The owner of marketing jobs (no person asked for them).
pub const JOB_OWNER: &str = "system:marketing";

/// Everything kept about an address (its subscriber record, list
/// memberships and suppression), for erasure; the keys deleted.
pub async fn erase(store: &Store, email: &str) -> Result<u64> {
    let mut keys = Vec::new();
    if let Some(subscriber) = get(store, email).await? {
        for list in &subscriber.lists {
            keys.push((list_pk(list), email_key(email)));
        }
        keys.push((subscriber_pk(email), "META".to_string()));
    }
    let n = keys.len() as u64;
    store.batch_delete(&keys).await.map_err(|e| Error::internal(format!("erasing the marketing subscriber: {e}")))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_keyed_by_their_hash_case_insensitively() {
        assert_eq!(subscriber_pk("Ada@Example.com"), subscriber_pk(" ada@example.com"));
        assert!(!subscriber_pk("ada@example.com").contains("ada"));
        assert!(valid_list("news") && valid_list("product-updates_2") && !valid_list("News") && !valid_list("") && !valid_list(&"a".repeat(41)));
    }

    #[test]
    fn a_confirmation_is_resent_at_most_once_per_interval() {
        let now = Utc::now();
        let mut subscriber = Subscriber {
            email: "a@example.com".into(),
            status: SubscriberStatus::Pending,
            lists: vec![DEFAULT_LIST.into()],
            created_at: crate::store::timestamp(now),
            updated_at: crate::store::timestamp(now),
            confirmation_sent_at: None,
            confirmed_at: None,
            unsubscribed_at: None,
            version: 1,
        };
        assert!(subscriber.may_resend(now));
        subscriber.confirmation_sent_at = Some(crate::store::timestamp(now - Duration::minutes(3)));
        assert!(!subscriber.may_resend(now));
        assert!(subscriber.may_resend(now + Duration::minutes(8)));
    }
}
