//! Private ICS feeds: one per user, at a public URL whose path holds a
//! random token (`kcal_` + 32 random bytes, base64url). Only the token's
//! SHA-256 is stored, so the table does not hold a working URL. Issuing
//! again replaces the token (the old URL is dead in the same transaction);
//! revoking deletes it. A feed answers its owner's events while they are an
//! active user; any other token, revoked or malformed, is a 404.
//!
//! Keys: `CALFEED#<sha256 of the token> / FEED` (the owner and sources,
//! what a feed read looks up) and `CALFEEDUSER#<user id> / FEED` (the
//! user's current feed, listed on gsi1 `CALFEEDS` for the hub).

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::audit::AuditEntry;
use shared::http::Caller;
use shared::identity::users::{self, UserStatus};
use shared::platform::error::{Error, Result};
use shared::store::{Item, QuerySpec, Write, attr_s, from_item, s, timestamp, to_item};
use utoipa::ToSchema;

use super::events::{self, EventSource};
use super::ics;
use crate::IntegrationsState;

pub const LIST_PK: &str = "CALFEEDS";
const TOKEN_PREFIX: &str = "kcal_";
/// `kcal_` and 43 base64url characters.
const TOKEN_CHARS: usize = 5 + 43;

fn token_pk(hash: &str) -> String {
    format!("CALFEED#{hash}")
}

fn owner_pk(user_id: &str) -> String {
    format!("CALFEEDUSER#{user_id}")
}

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A user's feed as stored and audited (no token: only its hash is kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = CalendarFeed)]
pub struct Feed {
    pub user_id: String,
    pub events: Vec<EventSource>,
    pub created_at: String,
    /// Identifies this issue of the feed (its token's hash prefix), so audit
    /// entries tell a re-issue from the feed before.
    pub feed_id: String,
    #[serde(skip)]
    token_hash: String,
    pub version: u64,
}

/// A feed just issued: its URL (with the token) is shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CalendarFeedIssued)]
pub struct Issued {
    /// Subscribe to this URL (Google Calendar: "From URL"; Outlook: "Subscribe from web").
    pub url: String,
    pub events: Vec<EventSource>,
    pub created_at: String,
}

async fn current(state: &IntegrationsState, user_id: &str) -> Result<Option<Feed>> {
    let Some(item) = state.platform.store.get_item(&owner_pk(user_id), "FEED").await? else { return Ok(None) };
    let token_hash = attr_s(&item, "token_hash").unwrap_or_default().to_string();
    let mut feed: Feed = from_item(item)?;
    feed.token_hash = token_hash;
    Ok(Some(feed))
}

/// Issue the caller's feed for `sources`, replacing any feed they had.
pub async fn issue(state: &IntegrationsState, caller: &Caller, sources: Vec<EventSource>) -> Result<Issued> {
    let user_id = caller.principal.user_id.clone();
    let before = current(state, &user_id).await?;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let token_hash = hash(&token);
    let now = timestamp(chrono::Utc::now());
    let feed = Feed {
        user_id: user_id.clone(),
        events: sources.clone(),
        created_at: now.clone(),
        feed_id: token_hash[..16].to_string(),
        token_hash: token_hash.clone(),
        version: before.as_ref().map_or(1, |b| b.version + 1),
    };
    let store = &state.platform.store;
    let mut owner = to_item(&feed)?;
    owner.insert("pk".into(), s(owner_pk(&user_id)));
    owner.insert("sk".into(), s("FEED"));
    owner.insert("type".into(), s("calendar_feed"));
    owner.insert("token_hash".into(), s(token_hash.clone()));
    owner.insert("gsi1pk".into(), s(LIST_PK));
    owner.insert("gsi1sk".into(), s(user_id.clone()));
    let lookup = Item::from([
        ("pk".to_string(), s(token_pk(&token_hash))),
        ("sk".to_string(), s("FEED")),
        ("type".to_string(), s("calendar_feed_token")),
        ("user_id".to_string(), s(user_id.clone())),
        ("feed_id".to_string(), s(feed.feed_id.clone())),
    ]);
    let mut writes = vec![Write::put_new(store.table(), lookup, Error::Conflict("token collision; try again".into()))?];
    match &before {
        None => writes.push(Write::put_new(store.table(), owner, Error::Conflict("a feed was issued meanwhile; try again".into()))?),
        Some(old) => {
            writes.push(Write::put_versioned(store.table(), owner, old.version)?);
            writes.push(Write::delete_existing(
                store.table(),
                &token_pk(&old.token_hash),
                "FEED",
                Error::Conflict("the feed changed meanwhile; try again".into()),
            )?);
        }
    }
    let action = if before.is_some() { "calendar.feed_reissued" } else { "calendar.feed_issued" };
    let audit = AuditEntry::new(&caller.actor(), action, "calendar_feed", &user_id).changes(before.as_ref(), Some(&feed));
    store.commit(writes, &audit).await?;
    let url = format!("{}/api/v1/integrations/calendar/feeds/{token}.ics", state.platform.config.public_url.trim_end_matches('/'));
    Ok(Issued { url, events: sources, created_at: now })
}

/// Revoke the caller's feed: its URL answers 404 from now on.
#[utoipa::path(
    delete,
    path = "/api/v1/integrations/calendar/feeds",
    tag = "integrations",
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "You have no feed", body = shared::platform::error::Problem)
    )
)]
pub async fn revoke(State(state): State<IntegrationsState>, caller: Caller) -> Result<StatusCode> {
    let user_id = caller.principal.user_id.clone();
    let feed = current(&state, &user_id).await?.ok_or_else(|| Error::NotFound("you have no calendar feed".into()))?;
    let store = &state.platform.store;
    let writes = vec![
        Write::delete_versioned(store.table(), &owner_pk(&user_id), "FEED", feed.version)?,
        Write::delete_existing(store.table(), &token_pk(&feed.token_hash), "FEED", Error::Conflict("the feed changed meanwhile; try again".into()))?,
    ];
    let audit = AuditEntry::new(&caller.actor(), "calendar.feed_revoked", "calendar_feed", &user_id).changes::<_, ()>(Some(&feed), None);
    store.commit(writes, &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The feed (RFC 5545), by its private URL; no sign-in: the token is the
/// credential.
#[utoipa::path(
    get,
    path = "/api/v1/integrations/calendar/feeds/{token}",
    tag = "integrations",
    params(("token" = String, Path, description = "The feed's token, as in the URL it was issued with (`kcal_….ics`)")),
    responses(
        (status = 200, description = "The user's events", content_type = "text/calendar", body = String),
        (status = 404, description = "No such feed (revoked, re-issued or never issued)", body = shared::platform::error::Problem)
    )
)]
pub async fn read(State(state): State<IntegrationsState>, Path(token): Path<String>) -> Result<Response> {
    let not_found = || Error::NotFound("no such calendar feed".into());
    let token = token.strip_suffix(".ics").unwrap_or(&token);
    if token.len() != TOKEN_CHARS || !token.starts_with(TOKEN_PREFIX) {
        return Err(not_found());
    }
    let store = state.platform.store.store();
    let lookup = store.get_item(&token_pk(&hash(token)), "FEED").await?.ok_or_else(not_found)?;
    let user_id = attr_s(&lookup, "user_id").ok_or_else(not_found)?.to_string();
    let feed = current(&state, &user_id).await?.ok_or_else(not_found)?;
    // A feed of a suspended or deleted user stops with their account.
    if feed.token_hash != hash(token) || users::get(store, &user_id).await?.is_none_or(|u| u.status != UserStatus::Active) {
        return Err(not_found());
    }
    let now = chrono::Utc::now();
    let list = events::for_user(store, &user_id, &feed.events, now).await?;
    let body = ics::calendar(ics::Purpose::Feed, &list.iter().map(|e| (e, 0)).collect::<Vec<_>>(), now);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (header::CACHE_CONTROL, "private, max-age=300"),
            (header::CONTENT_DISPOSITION, "inline; filename=\"keel.ics\""),
        ],
        body,
    )
        .into_response())
}

/// How many users have a feed (the hub's status).
pub async fn count(state: &IntegrationsState) -> Result<u64> {
    let spec = QuerySpec { index: Some("gsi1"), key_condition: "gsi1pk = :pk", values: vec![(":pk", s(LIST_PK))], ..Default::default() };
    state.platform.store.query_count(&spec).await
}
