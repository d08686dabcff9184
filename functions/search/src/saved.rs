//! Saved searches: `POST /api/v1/search/save`, `GET /api/v1/search/saved`
//! and `DELETE /api/v1/search/saved/{id}` — the caller's own (another's
//! reads as missing). A saved search is an advanced request, checked when
//! saved exactly as a search would be, so it can be run again as it is.
//! Saving and deleting are audited with the change.
//!
//! Keys: `SAVEDSEARCH#<owner> / <id>` (one partition per person: listing is
//! one Query, and erasure removes it with the person's other records). One
//! with `notify` is also listed for the alert check (`alerts`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use shared::audit::AuditEntry;
use shared::http::Caller;
use shared::http::extract::ValidJson;
use shared::platform::error::{Error, Result};
use shared::store::{QuerySpec, Write, from_item, s, timestamp, to_item};
use utoipa::ToSchema;

use crate::search::{AdvancedRequest, request_of, scope_of};
use crate::{SearchState, alerts};

/// Saved searches one person may keep.
pub const MAX_SAVED: usize = 100;
pub const MAX_NAME_CHARS: usize = 100;

pub fn pk(owner: &str) -> String {
    format!("SAVEDSEARCH#{owner}")
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveRequest {
    /// 1 to 100 characters.
    pub name: String,
    /// The search, as `POST /api/v1/search/advanced` takes it.
    pub request: AdvancedRequest,
    /// Email the owner the records created from now on that match (checked
    /// every 15 minutes; see docs/search.md, "Saved searches").
    pub notify: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SavedSearch {
    pub id: String,
    pub name: String,
    pub request: AdvancedRequest,
    pub notify: bool,
    pub created_at: String,
    /// With `notify`: the end of the last window checked for new matches
    /// (the next check starts there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked_at: Option<String>,
    /// With `notify`: when new matches were last emailed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_notified_at: Option<String>,
    /// With `notify`: why the last check could not run (e.g. the owner may
    /// no longer read a type the search asks for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SavedList {
    pub saved: Vec<SavedSearch>,
}

async fn own(state: &SearchState, owner: &str) -> Result<Vec<SavedSearch>> {
    let spec = QuerySpec { key_condition: "pk = :pk", values: vec![(":pk", s(pk(owner)))], forward: false, ..Default::default() };
    state.platform.store.query_all(&spec).await?.into_iter().map(from_item).collect()
}

#[utoipa::path(post, path = "/api/v1/search/save", tag = "search", request_body = SaveRequest,
    responses((status = 201, description = "Saved", body = SavedSearch)))]
pub async fn save(State(state): State<SearchState>, caller: Caller, ValidJson(body): ValidJson<SaveRequest>) -> Result<(StatusCode, Json<SavedSearch>)> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::field("name", format!("1 to {MAX_NAME_CHARS} characters")));
    }
    // Checked as a search; errors name their field under `request.`.
    if let Err(e) = request_of(&body.request, &scope_of(&caller.principal)) {
        return Err(match e {
            Error::Validation(errors) => Error::Validation(
                errors
                    .into_iter()
                    .map(|mut f| {
                        f.field = format!("request.{}", f.field);
                        f
                    })
                    .collect(),
            ),
            other => other,
        });
    }
    let owner = caller.principal.user_id.clone();
    if own(&state, &owner).await?.len() >= MAX_SAVED {
        return Err(Error::Conflict(format!("at most {MAX_SAVED} saved searches; delete one first")));
    }
    let now = chrono::Utc::now();
    let notify = body.notify.unwrap_or(false);
    let saved = SavedSearch {
        id: uuid::Uuid::now_v7().to_string(),
        name: name.to_string(),
        request: body.request,
        notify,
        created_at: timestamp(now),
        // New matches are those created from now on.
        last_checked_at: notify.then(|| alerts::window_start(now)),
        last_notified_at: None,
        alert_error: None,
    };
    let mut item = to_item(&saved)?;
    if notify {
        item.extend(alerts::schedule_attributes(now + alerts::CHECK_EVERY));
    }
    item.insert("pk".into(), s(pk(&owner)));
    item.insert("sk".into(), s(saved.id.clone()));
    item.insert("type".into(), s("saved_search"));
    item.insert("owner_id".into(), s(owner));
    let store = &state.platform.store;
    let audit = AuditEntry::new(&caller.actor(), "search.saved", "saved_search", &saved.id).changes::<(), _>(None, Some(&saved));
    store.commit(vec![Write::put_new(store.table(), item, Error::Conflict("saved search exists".into()))?], &audit).await?;
    Ok((StatusCode::CREATED, Json(saved)))
}

#[utoipa::path(get, path = "/api/v1/search/saved", tag = "search",
    responses((status = 200, description = "The caller's saved searches, newest first", body = SavedList)))]
pub async fn list(State(state): State<SearchState>, caller: Caller) -> Result<Json<SavedList>> {
    Ok(Json(SavedList { saved: own(&state, &caller.principal.user_id).await? }))
}

#[utoipa::path(delete, path = "/api/v1/search/saved/{id}", tag = "search", params(("id" = String, Path, description = "Saved search id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(State(state): State<SearchState>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    let owner = &caller.principal.user_id;
    let store = &state.platform.store;
    let Some(item) = store.get_item(&pk(owner), &id).await? else {
        return Err(Error::NotFound(format!("no saved search {id}")));
    };
    let saved: SavedSearch = from_item(item)?;
    let audit = AuditEntry::new(&caller.actor(), "search.saved.delete", "saved_search", &id).changes::<_, ()>(Some(&saved), None);
    let missing = Error::NotFound(format!("no saved search {id}"));
    store.commit(vec![Write::delete_existing(store.table(), &pk(owner), &id, missing)?], &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}
