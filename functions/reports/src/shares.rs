//! Share links: `POST /api/v1/reports/{report_id}/share` makes an
//! unguessable link to a finished report, served without a token until it
//! expires (default 7 days, at most 90: a link always expires) or is
//! revoked (`DELETE …/share/{share_id}`); `GET …/shares` lists them. The
//! link (`/api/v1/reports/shared/{token}`) answers the report's files
//! with short-lived downloads, optionally behind a password; every view
//! is audited.
//!
//! Only the token's SHA-256 is stored (`REPORTSHARE#<hash> / META`), so a
//! table read does not yield working links; gsi1 `SHARES#<report_id>`
//! lists a report's links.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::audit::{AuditEntry, Outcome};
use shared::http::extract::{PathId, ValidJson};
use shared::http::{Caller, RequestMeta};
use shared::platform::crypto::{hash_password, random_token, sha256_hex, verify_password};
use shared::platform::error::{Error, Result};
use shared::store::ids::JobId;
use shared::store::{QuerySpec, Write, from_item, s, to_item};
use utoipa::{IntoParams, ToSchema};

use crate::ReportsState;
use crate::generate::ReportFormat;
use crate::reports::{self, FileView};

pub const DEFAULT_TTL: Duration = Duration::days(7);
pub const MAX_TTL: Duration = Duration::days(90);
/// A share item outlives its expiry by this long (then DynamoDB's TTL
/// removes it): meanwhile the link answers 410 "expired", after it 404.
const KEEP_AFTER_EXPIRY: Duration = Duration::days(30);
const MAX_PASSWORD: usize = 256;

/// A share link as stored (without the token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share {
    pub share_id: String,
    pub report_id: String,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    pub password_hash: Option<String>,
    pub version: u64,
}

impl Share {
    fn pk(token_hash: &str) -> String {
        format!("REPORTSHARE#{token_hash}")
    }

    fn to_item(&self, token_hash: &str) -> Result<shared::store::Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(Share::pk(token_hash)));
        item.insert("sk".into(), s("META"));
        item.insert("gsi1pk".into(), s(format!("SHARES#{}", self.report_id)));
        item.insert("gsi1sk".into(), s(format!("{}#{}", self.created_at, self.share_id)));
        item.insert("token_hash".into(), s(token_hash));
        item.insert("type".into(), s("report_share"));
        let expires = DateTime::parse_from_rfc3339(&self.expires_at).map_err(|e| Error::internal(e.to_string()))?;
        item.insert("ttl".into(), shared::store::n((expires.with_timezone(&Utc) + KEEP_AFTER_EXPIRY).timestamp()));
        Ok(item)
    }

    fn state(&self, now: DateTime<Utc>) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.as_str() <= now.to_rfc3339_opts(SecondsFormat::Secs, true).as_str() {
            "expired"
        } else {
            "active"
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    /// Lifetime: seconds (a number) or `30m`, `12h`, `7d`; default 7 days, at most 90.
    #[schema(value_type = Option<String>, example = "7d")]
    pub expires_in: Option<serde_json::Value>,
    /// Asked for on every view (sent as the `X-Share-Password` header, or in a POST body).
    pub password: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ShareView {
    pub share_id: String,
    pub report_id: String,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    /// active, expired or revoked.
    pub state: String,
    pub password_protected: bool,
}

impl ShareView {
    fn of(share: &Share, now: DateTime<Utc>) -> ShareView {
        ShareView {
            share_id: share.share_id.clone(),
            report_id: share.report_id.clone(),
            created_by: share.created_by.clone(),
            created_at: share.created_at.clone(),
            expires_at: share.expires_at.clone(),
            revoked_at: share.revoked_at.clone(),
            state: share.state(now).into(),
            password_protected: share.password_hash.is_some(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ShareCreated {
    #[serde(flatten)]
    pub share: ShareView,
    /// The link (shown once: only its hash is kept).
    pub url: String,
    pub token: String,
}

/// `30m`, `12h`, `7d` or seconds.
fn lifetime(value: Option<&serde_json::Value>) -> Result<Duration> {
    let bad = || Error::field("expires_in", "seconds, or a number with m, h or d (e.g. 7d), from 1 minute to 90 days");
    let ttl = match value {
        None | Some(serde_json::Value::Null) => DEFAULT_TTL,
        Some(serde_json::Value::Number(n)) => Duration::seconds(n.as_i64().ok_or_else(bad)?),
        Some(serde_json::Value::String(text)) => {
            let (digits, unit) = text.split_at(text.len().saturating_sub(1));
            let n: i64 = digits.parse().map_err(|_| bad())?;
            match unit {
                "m" => Duration::minutes(n),
                "h" => Duration::hours(n),
                "d" => Duration::days(n),
                _ => return Err(bad()),
            }
        }
        Some(_) => return Err(bad()),
    };
    if ttl < Duration::minutes(1) || ttl > MAX_TTL {
        return Err(bad());
    }
    Ok(ttl)
}

/// Store a new link to `report_id` (with its audit entry, by `actor`):
/// the link and its token (shown once).
async fn issue(
    store: &shared::audit::Journal,
    actor: &shared::audit::Actor,
    report_id: &str,
    created_by: &str,
    ttl: Duration,
    password: Option<&str>,
) -> Result<(Share, String)> {
    let now = Utc::now();
    let token = random_token();
    let token_hash = sha256_hex(token.as_bytes());
    let share = Share {
        share_id: uuid::Uuid::now_v7().to_string(),
        report_id: report_id.to_string(),
        created_by: created_by.to_string(),
        created_at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        expires_at: (now + ttl).to_rfc3339_opts(SecondsFormat::Secs, true),
        revoked_at: None,
        password_hash: password.map(hash_password).transpose()?,
        version: 1,
    };
    let write = Write::put_new(store.table(), share.to_item(&token_hash)?, Error::Conflict("share token collision".into()))?;
    let audit = AuditEntry::new(actor, "report.share", "report", report_id).changes::<(), _>(
        None,
        Some(&json!({ "share_id": share.share_id, "expires_at": share.expires_at, "password_protected": share.password_hash.is_some() })),
    );
    store.commit(vec![write], &audit).await?;
    Ok((share, token))
}

/// Make a link to `report_id` for `ttl` (no password): what a scheduled
/// run sends when its files are too large to attach. The absolute URL (on
/// `public_url`) and the expiry.
pub async fn create_for(store: &shared::audit::Journal, report_id: &str, created_by: &str, ttl: Duration, public_url: &str) -> Result<(String, String)> {
    let (share, token) = issue(store, &shared::audit::Actor::system("jobs"), report_id, created_by, ttl, None).await?;
    Ok((format!("{public_url}/api/v1/reports/shared/{token}"), share.expires_at))
}

#[utoipa::path(post, path = "/api/v1/reports/{report_id}/share", tag = "reports", request_body = ShareRequest, security(("bearer" = [])),
    params(("report_id" = String, Path, description = "Report id (UUID)")),
    responses(
        (status = 201, description = "The link (its token shown once), its expiry and whether it asks for a password", body = ShareCreated),
        (status = 400, description = "A bad lifetime or password (the field is named)", body = shared::platform::error::Problem),
        (status = 404, description = "No such report of yours (or shared with you)", body = shared::platform::error::Problem),
        (status = 409, description = "The report is not finished", body = shared::platform::error::Problem),
    ))]
pub async fn create(
    State(state): State<ReportsState>,
    caller: Caller,
    PathId(id): PathId<JobId>,
    ValidJson(body): ValidJson<ShareRequest>,
) -> Result<Response> {
    let ttl = lifetime(body.expires_in.as_ref())?;
    if body.password.as_ref().is_some_and(|p| p.is_empty() || p.len() > MAX_PASSWORD) {
        return Err(Error::field("password", format!("1 to {MAX_PASSWORD} bytes")));
    }
    let (job, _, _) = reports::visible(&state, &caller, id.as_str()).await?;
    if job.status != shared::domain::jobs::JobStatus::Succeeded {
        return Err(Error::Conflict(format!("report {} is {}: only a finished report can be shared", job.id, job.status.as_str())));
    }
    let (share, token) = issue(&state.platform.store, &caller.actor(), &job.id, &caller.principal.user_id, ttl, body.password.as_deref()).await?;
    let now = Utc::now();
    let url = format!("/api/v1/reports/shared/{token}");
    Ok((StatusCode::CREATED, [(header::LOCATION, url.clone())], Json(ShareCreated { share: ShareView::of(&share, now), url, token })).into_response())
}

async fn shares_of(state: &ReportsState, report_id: &str) -> Result<Vec<(Share, String)>> {
    let spec = QuerySpec {
        index: Some("gsi1"),
        key_condition: "gsi1pk = :pk",
        values: vec![(":pk", s(format!("SHARES#{report_id}")))],
        forward: false,
        ..Default::default()
    };
    let items = state.platform.store.query_all(&spec).await?;
    items
        .into_iter()
        .map(|item| {
            let hash = shared::store::attr_s(&item, "token_hash").unwrap_or_default().to_string();
            Ok((from_item::<Share>(item)?, hash))
        })
        .collect()
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ShareList {
    pub shares: Vec<ShareView>,
}

#[utoipa::path(get, path = "/api/v1/reports/{report_id}/shares", tag = "reports", security(("bearer" = [])),
    params(("report_id" = String, Path, description = "Report id (UUID)")),
    responses(
        (status = 200, description = "The report's links, newest first, with their state (tokens are not kept)", body = ShareList),
        (status = 404, description = "No such report of yours (or shared with you)", body = shared::platform::error::Problem),
    ))]
pub async fn list(State(state): State<ReportsState>, caller: Caller, PathId(id): PathId<JobId>) -> Result<Json<ShareList>> {
    reports::visible(&state, &caller, id.as_str()).await?;
    let now = Utc::now();
    Ok(Json(ShareList { shares: shares_of(&state, id.as_str()).await?.iter().map(|(share, _)| ShareView::of(share, now)).collect() }))
}

#[utoipa::path(delete, path = "/api/v1/reports/{report_id}/share/{share_id}", tag = "reports", security(("bearer" = [])),
    params(("report_id" = String, Path, description = "Report id (UUID)"), ("share_id" = String, Path, description = "Share id (UUID)")),
    responses(
        (status = 200, description = "Revoked: the link answers 410 from now on", body = ShareView),
        (status = 404, description = "No such report or link", body = shared::platform::error::Problem),
    ))]
pub async fn revoke(State(state): State<ReportsState>, caller: Caller, Path((report_id, share_id)): Path<(String, String)>) -> Result<Json<ShareView>> {
    let report_id: JobId = report_id.parse().map_err(|_| Error::NotFound(format!("no report {report_id}")))?;
    reports::visible(&state, &caller, report_id.as_str()).await?;
    let (share, hash) = shares_of(&state, report_id.as_str())
        .await?
        .into_iter()
        .find(|(share, _)| share.share_id == share_id)
        .ok_or_else(|| Error::NotFound(format!("no share {share_id} of report {report_id}")))?;
    let now = Utc::now();
    if share.revoked_at.is_some() {
        return Ok(Json(ShareView::of(&share, now)));
    }
    let mut revoked = share.clone();
    revoked.revoked_at = Some(now.to_rfc3339_opts(SecondsFormat::Secs, true));
    revoked.version += 1;
    let store = &state.platform.store;
    let write = Write::put_versioned(store.table(), revoked.to_item(&hash)?, share.version)?;
    let audit = AuditEntry::new(&caller.actor(), "report.share.revoke", "report", report_id.as_str())
        .changes(Some(&json!({ "share_id": share_id, "revoked_at": null })), Some(&json!({ "share_id": share_id, "revoked_at": revoked.revoked_at })));
    store.commit(vec![write], &audit).await?;
    Ok(Json(ShareView::of(&revoked, now)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SharedQuery {
    /// Redirect (303) straight to this format's download.
    pub format: Option<ReportFormat>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SharedReport {
    pub report_id: String,
    pub title: Option<String>,
    pub generated_at: Option<String>,
    pub data_range: Option<(String, String)>,
    pub rows: Option<u64>,
    pub expires_at: String,
    /// Each file with a download valid 5 minutes.
    pub files: Vec<FileView>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SharedPassword {
    pub password: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/reports/shared/{token}", tag = "reports",
    params(("token" = String, Path, description = "The link's token"), SharedQuery,
        ("X-Share-Password" = Option<String>, Header, description = "The link's password, when it has one")),
    responses(
        (status = 200, description = "The shared report's files, with downloads valid 5 minutes (no token needed; every view is audited)", body = SharedReport),
        (status = 303, description = "With `format`: a redirect to that file's download"),
        (status = 401, description = "The link asks for a password, and none or a wrong one was given", body = shared::platform::error::Problem),
        (status = 404, description = "No such link", body = shared::platform::error::Problem),
        (status = 410, description = "The link was revoked, or has expired", body = shared::platform::error::Problem),
    ))]
pub async fn view(
    State(state): State<ReportsState>,
    meta: RequestMeta,
    Path(token): Path<String>,
    Query(query): Query<SharedQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let password = headers.get("x-share-password").and_then(|v| v.to_str().ok()).map(str::to_string);
    serve(&state, &meta, &token, query.format, password).await
}

#[utoipa::path(post, path = "/api/v1/reports/shared/{token}", tag = "reports", request_body = SharedPassword,
    params(("token" = String, Path, description = "The link's token"), SharedQuery),
    responses(
        (status = 200, description = "As GET, with the password in the body (for a form)", body = SharedReport),
        (status = 303, description = "With `format`: a redirect to that file's download"),
        (status = 401, description = "A wrong or missing password", body = shared::platform::error::Problem),
        (status = 404, description = "No such link", body = shared::platform::error::Problem),
        (status = 410, description = "The link was revoked, or has expired", body = shared::platform::error::Problem),
    ))]
pub async fn view_with_password(
    State(state): State<ReportsState>,
    meta: RequestMeta,
    Path(token): Path<String>,
    Query(query): Query<SharedQuery>,
    ValidJson(body): ValidJson<SharedPassword>,
) -> Result<Response> {
    serve(&state, &meta, &token, query.format, body.password).await
}

async fn serve(state: &ReportsState, meta: &RequestMeta, token: &str, format: Option<ReportFormat>, password: Option<String>) -> Result<Response> {
    let missing = || Error::NotFound("no such share link".into());
    // Tokens are 43 base64url characters; anything else names no link.
    if token.len() > 100 || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(missing());
    }
    let store = &state.platform.store;
    let share: Share = store.get(&Share::pk(&sha256_hex(token.as_bytes())), "META").await?.ok_or_else(missing)?;
    let now = Utc::now();
    let actor = meta.actor("anonymous");
    let refuse = |outcome: Outcome, reason: &str| {
        AuditEntry::new(&actor, "report.share.view", "report", &share.report_id)
            .outcome(outcome)
            .reason(reason)
            .changes::<(), _>(None, Some(&json!({ "share_id": share.share_id })))
    };
    match share.state(now) {
        "revoked" => {
            store.record(&refuse(Outcome::Denied, "revoked link")).await?;
            return Err(Error::Gone("this link was revoked".into()));
        }
        "expired" => {
            store.record(&refuse(Outcome::Denied, "expired link")).await?;
            return Err(Error::Gone(format!("this link expired at {}", share.expires_at)));
        }
        _ => {}
    }
    if let Some(hash) = &share.password_hash
        && !password.as_deref().is_some_and(|p| p.len() <= MAX_PASSWORD && verify_password(p, hash))
    {
        store.record(&refuse(Outcome::Denied, "wrong or missing password")).await?;
        return Err(Error::Unauthorized("this link asks for its password (X-Share-Password)".into()));
    }
    let job = shared::domain::jobs::get(store, &share.report_id).await?.ok_or_else(missing)?;
    let (mut view, _) = reports::view_of(&job)?;
    for file in &mut view.files {
        file.download_url = Some(reports::presign(state, &file.file.key, &file.file.file_name).await?);
    }
    let audit = AuditEntry::new(&actor, "report.share.view", "report", &share.report_id)
        .changes::<(), _>(None, Some(&json!({ "share_id": share.share_id, "format": format })));
    store.record(&audit).await?;
    if let Some(format) = format {
        let file =
            view.files.iter().find(|f| f.file.format == format).ok_or_else(|| Error::field("format", format!("the report has no {} file", format.as_str())))?;
        let url = file.download_url.clone().unwrap_or_default();
        return Ok((StatusCode::SEE_OTHER, [(header::LOCATION, url)]).into_response());
    }
    Ok(Json(SharedReport {
        report_id: view.report_id,
        title: view.title,
        generated_at: view.generated_at,
        data_range: view.data_range,
        rows: view.rows,
        expires_at: share.expires_at,
        files: view.files,
    })
    .into_response())
}
