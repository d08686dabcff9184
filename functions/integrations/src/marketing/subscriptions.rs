//! Subscriptions: `POST /api/v1/integrations/marketing/subscribe` (public,
//! double opt-in), `GET|POST /api/v1/integrations/marketing/confirm/{token}`,
//! the RFC 8058 one-click `POST /api/v1/integrations/marketing/unsubscribe/{token}`
//! and, for support, `GET /api/v1/integrations/marketing/subscribers?email=`.
//!
//! Subscribing answers the same whatever the address's state (new,
//! pending, confirmed, unsubscribed, suppressed), so it tells no one
//! whether an address is known.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::audit::{Actor, AuditEntry};
use shared::domain::jobs::Job;
use shared::domain::marketing::{self, ConfirmationEmail, ContactSync, Subscriber, SubscriberStatus, TokenPurpose};
use shared::http::RequestMeta;
use shared::http::extract::{ValidJson, ValidQuery};
use shared::identity::rate_limits::{self, Action, Limit};
use shared::identity::users::Email;
use shared::platform::error::{Error, FieldError, Result};
use shared::store::{Write, timestamp};
use utoipa::ToSchema;

use crate::IntegrationsState;
use crate::social::html_escape;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MarketingSubscribeRequest)]
pub struct SubscribeRequest {
    pub email: Option<String>,
    /// Lists to join (default `news`); at most 10.
    pub lists: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = MarketingSubscribeAccepted)]
pub struct SubscribeAccepted {
    /// Always `pending`: whether the address was known is not said.
    pub status: String,
    pub detail: String,
}

fn subscriber_audit(actor: &Actor, action: &str, email: &str) -> AuditEntry {
    // Keyed by the address's hash: no address in the audit log.
    AuditEntry::new(actor, action, "marketing_subscriber", &marketing::email_key(email))
}

/// Subscribe an address: a confirmation email is sent (by the jobs worker)
/// unless one went out in the last 10 minutes, the address is already
/// confirmed, or it is suppressed.
#[utoipa::path(
    post,
    path = "/api/v1/integrations/marketing/subscribe",
    tag = "integrations",
    request_body = SubscribeRequest,
    responses(
        (status = 202, description = "The same answer for every valid address", body = SubscribeAccepted),
        (status = 400, description = "`email` or `lists` invalid (named)", body = shared::platform::error::Problem),
        (status = 429, description = "Too many subscriptions from this address or for this email", body = shared::platform::error::Problem)
    )
)]
pub async fn subscribe(
    State(state): State<IntegrationsState>,
    meta: RequestMeta,
    ValidJson(body): ValidJson<SubscribeRequest>,
) -> Result<(StatusCode, Json<SubscribeAccepted>)> {
    let mut errors = Vec::new();
    let email = match body.email.as_deref().map(Email::parse) {
        Some(Ok(email)) => Some(email.as_str().to_string()),
        Some(Err(why)) => {
            errors.push(FieldError::new("email", why));
            None
        }
        None => {
            errors.push(FieldError::new("email", "is required"));
            None
        }
    };
    let mut lists = body.lists.unwrap_or_else(|| vec![marketing::DEFAULT_LIST.to_string()]);
    if lists.is_empty() || lists.len() > marketing::MAX_LISTS {
        errors.push(FieldError::new("lists", format!("1 to {} lists", marketing::MAX_LISTS)));
    }
    for (i, list) in lists.iter().enumerate() {
        if !marketing::valid_list(list) {
            errors.push(FieldError::new(format!("lists[{i}]"), "a list name: 1 to 40 of a-z, 0-9, - and _"));
        }
    }
    let Some(email) = email.filter(|_| errors.is_empty()) else { return Err(Error::Validation(errors)) };
    lists.sort();
    lists.dedup();
    let actor = meta.actor("anonymous");
    let limits = [Limit::ip(meta.source_ip.as_deref()), Limit::account(&email)];
    // Every subscription spends its tokens (dropped, not `succeeded`).
    let _attempt = rate_limits::guard(&state.platform.store, &state.platform.config.rate_limits, &limits, Action::Subscribe, &actor).await?;
    let accepted = SubscribeAccepted { status: "pending".into(), detail: "If the address can receive our email, a confirmation link is on its way.".into() };
    let store = &state.platform.store;
    if marketing::suppression(store.store(), &email).await?.is_some() {
        return Ok((StatusCode::ACCEPTED, Json(accepted)));
    }
    let now = chrono::Utc::now();
    let before = marketing::get(store.store(), &email).await?;
    let after = match &before {
        Some(existing) if existing.status == SubscriberStatus::Confirmed => None,
        Some(existing) if existing.status == SubscriberStatus::Pending && !existing.may_resend(now) => None,
        Some(existing) => Some(Subscriber {
            status: SubscriberStatus::Pending,
            lists: lists.clone(),
            updated_at: timestamp(now),
            confirmation_sent_at: Some(timestamp(now)),
            version: existing.version + 1,
            ..existing.clone()
        }),
        None => Some(Subscriber {
            email: email.clone(),
            status: SubscriberStatus::Pending,
            lists,
            created_at: timestamp(now),
            updated_at: timestamp(now),
            confirmation_sent_at: Some(timestamp(now)),
            confirmed_at: None,
            unsubscribed_at: None,
            version: 1,
        }),
    };
    let Some(after) = after else { return Ok((StatusCode::ACCEPTED, Json(accepted))) };
    let job = Job::of(marketing::JOB_OWNER, &ConfirmationEmail { email: email.clone() })?;
    let write = match &before {
        None => Write::put_new(store.table(), after.to_item()?, Error::Conflict("subscribed meanwhile".into()))?,
        Some(b) => Write::put_versioned(store.table(), after.to_item()?, b.version)?,
    };
    let audit = subscriber_audit(&actor, "marketing.subscribed", &email).changes(before.as_ref().map(status_of).as_ref(), Some(&status_of(&after)));
    match store.commit(vec![write, job.create_write(store.table())?], &audit).await {
        // A concurrent subscription of the same address did the same.
        Ok(()) | Err(Error::Conflict(_)) => Ok((StatusCode::ACCEPTED, Json(accepted))),
        Err(e) => Err(e),
    }
}

/// What audit diffs record of a subscriber: no address.
fn status_of(subscriber: &Subscriber) -> serde_json::Value {
    serde_json::json!({ "status": subscriber.status, "lists": subscriber.lists, "version": subscriber.version })
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = MarketingSubscriptionState)]
pub struct SubscriptionState {
    #[schema(value_type = String)]
    pub status: SubscriberStatus,
    pub lists: Vec<String>,
}

/// The page a confirmation link opens: a button that confirms (a link
/// scanner's GET confirms nothing).
#[utoipa::path(
    get,
    path = "/api/v1/integrations/marketing/confirm/{token}",
    tag = "integrations",
    params(("token" = String, Path, description = "The token from the confirmation email")),
    responses((status = 200, description = "A page with the confirm button", body = String, content_type = "text/html"))
)]
pub async fn confirm_page(Path(token): Path<String>) -> Response {
    let action = format!("/api/v1/integrations/marketing/confirm/{}", html_escape(&token));
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Confirm your subscription</title></head>\n\
         <body><form method=\"post\" action=\"{action}\"><p>Confirm that you want Keel's emails.</p>\
         <button type=\"submit\">Confirm</button></form></body></html>\n"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], page).into_response()
}

/// Confirm a subscription with the emailed token (once; it expires after 48 hours).
#[utoipa::path(
    post,
    path = "/api/v1/integrations/marketing/confirm/{token}",
    tag = "integrations",
    params(("token" = String, Path, description = "The token from the confirmation email")),
    responses(
        (status = 200, description = "Confirmed: the address is on its lists", body = SubscriptionState),
        (status = 404, description = "Unknown or already used", body = shared::platform::error::Problem),
        (status = 410, description = "Expired: subscribe again", body = shared::platform::error::Problem)
    )
)]
pub async fn confirm(State(state): State<IntegrationsState>, meta: RequestMeta, Path(token): Path<String>) -> Result<Json<SubscriptionState>> {
    let invalid = || Error::NotFound("this confirmation link is not valid (unknown, or already used)".into());
    let store = &state.platform.store;
    let found = marketing::token(store.store(), &token).await?.filter(|t| t.purpose == TokenPurpose::Confirm).ok_or_else(invalid)?;
    let now = chrono::Utc::now();
    if found.expired(now) {
        return Err(Error::Gone("this confirmation link has expired: subscribe again".into()));
    }
    let before = marketing::get_by_key(store.store(), &found.email_key).await?.filter(|s| s.status == SubscriberStatus::Pending).ok_or_else(invalid)?;
    let after = Subscriber {
        status: SubscriberStatus::Confirmed,
        confirmed_at: Some(timestamp(now)),
        unsubscribed_at: None,
        updated_at: timestamp(now),
        version: before.version + 1,
        ..before.clone()
    };
    let table = store.table();
    let mut writes = vec![
        Write::put_versioned(table, after.to_item()?, before.version)?,
        // Single use: the token goes in the same transaction.
        Write::delete_existing(table, &marketing::token_pk(&token), "META", invalid())?,
        Job::of(marketing::JOB_OWNER, &ContactSync { email: after.email.clone(), subscribed: true })?.create_write(table)?,
    ];
    for list in &after.lists {
        writes.push(Write::put(table, marketing::member_item(list, &after.email))?);
    }
    let audit = subscriber_audit(&meta.actor("anonymous"), "marketing.confirmed", &after.email).changes(Some(&status_of(&before)), Some(&status_of(&after)));
    store.commit(writes, &audit).await?;
    Ok(Json(SubscriptionState { status: after.status, lists: after.lists }))
}

/// The form RFC 8058 mail clients post (documented as the object it is,
/// so generated requests are forms).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct OneClickUnsubscribe {
    /// `One-Click`.
    #[schema(rename = "List-Unsubscribe", example = "One-Click")]
    pub list_unsubscribe: String,
}

/// RFC 8058 one-click unsubscribe: the mail client POSTs
/// `List-Unsubscribe=One-Click` to the link in the `List-Unsubscribe`
/// header; the address leaves that list at once.
#[utoipa::path(
    post,
    path = "/api/v1/integrations/marketing/unsubscribe/{token}",
    tag = "integrations",
    params(("token" = String, Path, description = "The token in the email's List-Unsubscribe link")),
    request_body(content = OneClickUnsubscribe, description = "`List-Unsubscribe=One-Click`", content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Unsubscribed from the email's list (also when it already was)", body = SubscriptionState),
        (status = 400, description = "The body is not `List-Unsubscribe=One-Click`", body = shared::platform::error::Problem),
        (status = 404, description = "Unknown or expired link", body = shared::platform::error::Problem)
    )
)]
pub async fn unsubscribe(State(state): State<IntegrationsState>, meta: RequestMeta, Path(token): Path<String>, body: Bytes) -> Result<Json<SubscriptionState>> {
    let one_click = url::form_urlencoded::parse(&body).any(|(k, v)| k == "List-Unsubscribe" && v == "One-Click");
    if !one_click {
        return Err(Error::field("List-Unsubscribe", "the body must be List-Unsubscribe=One-Click (RFC 8058)"));
    }
    let invalid = || Error::NotFound("this unsubscribe link is not valid".into());
    let store = &state.platform.store;
    let now = chrono::Utc::now();
    let found = marketing::token(store.store(), &token).await?.filter(|t| t.purpose == TokenPurpose::Unsubscribe && !t.expired(now)).ok_or_else(invalid)?;
    let before = marketing::get_by_key(store.store(), &found.email_key).await?.ok_or_else(invalid)?;
    let leaving = found.list.clone().unwrap_or_default();
    if !before.lists.contains(&leaving) || before.status == SubscriberStatus::Unsubscribed {
        return Ok(Json(SubscriptionState { status: before.status, lists: before.lists }));
    }
    let lists: Vec<String> = before.lists.iter().filter(|l| **l != leaving).cloned().collect();
    let none_left = lists.is_empty();
    let after = Subscriber {
        status: if none_left { SubscriberStatus::Unsubscribed } else { before.status },
        unsubscribed_at: if none_left { Some(timestamp(now)) } else { before.unsubscribed_at.clone() },
        lists,
        updated_at: timestamp(now),
        version: before.version + 1,
        ..before.clone()
    };
    let table = store.table();
    let mut writes = vec![
        Write::put_versioned(table, after.to_item()?, before.version)?,
        // Whether or not it exists: a pending (re-subscribed) address has
        // lists but no memberships yet.
        Write::delete_if(
            table,
            &marketing::list_pk(&leaving),
            &marketing::email_key(&after.email),
            &shared::store::Condition::new("attribute_exists(pk) OR attribute_not_exists(pk)"),
            None,
        )?,
    ];
    if none_left {
        writes.push(Job::of(marketing::JOB_OWNER, &ContactSync { email: after.email.clone(), subscribed: false })?.create_write(table)?);
    }
    let audit = subscriber_audit(&meta.actor("anonymous"), "marketing.unsubscribed", &after.email)
        .changes(Some(&status_of(&before)), Some(&status_of(&after)))
        .reason(format!("one-click unsubscribe from {leaving}"));
    store.commit(writes, &audit).await?;
    Ok(Json(SubscriptionState { status: after.status, lists: after.lists }))
}

#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LookupQuery {
    pub email: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = MarketingSubscriberView)]
pub struct SubscriberView {
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<Subscriber>,
    /// Set when the address is never sent to (a hard bounce or a complaint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<SuppressionView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = MarketingSuppression)]
pub struct SuppressionView {
    pub reason: String,
    pub detail: String,
    pub at: String,
}

/// A person's subscription and suppression, for support.
#[utoipa::path(
    get,
    path = "/api/v1/integrations/marketing/subscribers",
    tag = "integrations",
    params(LookupQuery),
    responses(
        (status = 200, body = SubscriberView),
        (status = 400, description = "`email` missing or invalid", body = shared::platform::error::Problem),
        (status = 404, description = "Neither subscribed nor suppressed", body = shared::platform::error::Problem)
    )
)]
pub async fn lookup(State(state): State<IntegrationsState>, ValidQuery(query): ValidQuery<LookupQuery>) -> Result<Json<SubscriberView>> {
    let email = match query.email.as_deref().map(Email::parse) {
        Some(Ok(email)) => email.as_str().to_string(),
        Some(Err(why)) => return Err(Error::field("email", why)),
        None => return Err(Error::field("email", "is required")),
    };
    let store = state.platform.store.store();
    let subscriber = marketing::get(store, &email).await?;
    let suppressed = marketing::suppression(store, &email).await?.map(|s| SuppressionView { reason: s.reason, detail: s.detail, at: s.at });
    if subscriber.is_none() && suppressed.is_none() {
        return Err(Error::NotFound("no subscriber or suppression for that address".into()));
    }
    Ok(Json(SubscriberView { email, subscriber, suppressed }))
}
