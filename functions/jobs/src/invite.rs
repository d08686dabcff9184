//! `invite_email` jobs: create a single-use invitation token (stored as its
//! SHA-256, valid 7 days) and email the invited user a link to set their
//! password (SES).

use serde_json::{Value, json};
use shared::domain::jobs::Job;
use shared::identity::users::{self, UserStatus};
use shared::platform::crypto::{random_token, sha256_hex};
use shared::platform::error::{Error, Result};
use shared::store::{Item, n, s};

use crate::Worker;

pub const INVITATION_SECONDS: i64 = 7 * 24 * 3600;

pub async fn send(worker: &Worker, job: &Job) -> Result<Value> {
    let user_id = job.params.get("user_id").and_then(Value::as_str).ok_or_else(|| Error::internal("invite_email job has no user_id"))?;
    let Some(user) = users::get(&worker.store, user_id).await? else {
        return Ok(json!({ "skipped": "user no longer exists" }));
    };
    if user.status != UserStatus::Invited {
        return Ok(json!({ "skipped": format!("user is {}", user.status.as_str()) }));
    }
    let token = random_token();
    let expires_at = chrono::Utc::now().timestamp() + INVITATION_SECONDS;
    // A new random token's item: nothing else has its key.
    let invitation = Item::from([
        ("pk".to_string(), s(format!("INVITE#{}", sha256_hex(token.as_bytes())))),
        ("sk".to_string(), s("INVITE")),
        ("user_id".to_string(), s(&user.id)),
        ("expires_at".to_string(), n(expires_at)),
        ("ttl".to_string(), n(expires_at)),
        ("type".to_string(), s("invitation")),
    ]);
    worker.store.put_item_unchecked(invitation).await?;

    let link = format!("{}/accept-invitation?token={token}", worker.config.public_url);
    let text = format!(
        "Hello {name},\n\nYou have been invited to Keel. Set your password here (the link works once and expires in 7 days):\n\n{link}\n\nIf you did not expect this, ignore this email.\n",
        name = user.name
    );
    let message_id = worker.send_email(&user.email, "You are invited to Keel", text).await?;
    Ok(json!({ "message_id": message_id, "invitation_expires_at": expires_at }))
}
