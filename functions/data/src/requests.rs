//! `/api/v1/data/requests` and `/api/v1/data/requests/{request_id}`: GDPR /
//! CCPA subject requests with their deadlines. Holders of `data:requests`
//! see every request, soonest deadline first; anyone else sees the requests
//! about themselves, newest first. Another person's request answers 404
//! (its existence is not revealed).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use shared::domain::subject_requests::{self, RequestFilter, RequestKind, RequestStatus, SubjectRequestView};
use shared::http::Principal;
use shared::http::extract::{PathId, ValidQuery, page_limit};
use shared::identity::rbac::Permission;
use shared::platform::error::{Error, Result};
use shared::store::cursor::KeyPosition;
use shared::store::ids::SubjectRequestId;
use utoipa::{IntoParams, ToSchema};

use crate::DataState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `received`, `in_progress`, `completed` or `failed`.
    pub status: Option<RequestStatus>,
    /// `export` or `erasure`.
    pub kind: Option<RequestKind>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RequestList {
    pub items: Vec<SubjectRequestView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/data/requests", tag = "data", params(ListQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "With data:requests every request, soonest deadline first; otherwise the requests about you, newest first (pages may be short; follow next_cursor)", body = RequestList),
        (status = 400, description = "Invalid filter, limit or cursor", body = shared::platform::error::Problem),
    ))]
pub async fn list(State(state): State<DataState>, principal: Principal, ValidQuery(q): ValidQuery<ListQuery>) -> Result<Json<RequestList>> {
    let limit = page_limit(q.limit)?;
    let filter = RequestFilter { status: q.status, kind: q.kind };
    // Data shaping, not access: with data:requests every request is listed, otherwise the caller's own.
    let everyone = principal.can(Permission::DataRequests);
    // The cursor is bound to who is listed and the filters.
    let scope = format!("subject-requests|{}|{:?}|{:?}", if everyone { "*" } else { principal.user_id.as_str() }, filter.status, filter.kind);
    let cursor: Option<KeyPosition> = match &q.cursor {
        Some(c) => Some(state.platform.cursors().await?.decode(&scope, c)?),
        None => None,
    };
    let store = &state.platform.store;
    let page = if everyone {
        subject_requests::list_all_filtered(store, cursor, limit, filter).await?
    } else {
        subject_requests::list_for_subject_filtered(store, &principal.user_id, cursor, limit, filter).await?
    };
    let next_cursor = match &page.next {
        Some(position) => Some(state.platform.cursors().await?.encode(&scope, position)),
        None => None,
    };
    Ok(Json(RequestList { items: page.items.into_iter().map(SubjectRequestView::from).collect(), next_cursor }))
}

#[utoipa::path(get, path = "/api/v1/data/requests/{request_id}", tag = "data", params(("request_id" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "The request: status, deadline, whether it is overdue, its job and result", body = SubjectRequestView),
        (status = 404, description = "No such request about you (or, with data:requests, at all)", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<DataState>, principal: Principal, PathId(request_id): PathId<SubjectRequestId>) -> Result<Json<SubjectRequestView>> {
    let not_found = || Error::NotFound(format!("no subject request {request_id}"));
    let request = subject_requests::get(&state.platform.store, &request_id).await?.ok_or_else(not_found)?;
    // About the caller: by the commitment, which outlives the subject id.
    // Scoping, not access: a request about someone else reads as missing without data:requests.
    if !request.is_about(&principal.user_id) && !principal.can(Permission::DataRequests) {
        return Err(not_found());
    }
    Ok(Json(request.into()))
}
