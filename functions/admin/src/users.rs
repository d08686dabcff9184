//! `/api/v1/admin/users` and `/api/v1/admin/users/{user_id}`: create (with a
//! password or an emailed invitation), list with filters, read, update with a
//! version check, suspend/reactivate, soft delete, and lifting a sign-in
//! lockout (`.../{user_id}/unlock`). Every change is audited in its own
//! transaction.

use aws_sdk_dynamodb::types::AttributeValue;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use shared::audit::AuditEntry;
use shared::domain::jobs::Job;
use shared::http::extract::{PathId, ValidJson, ValidQuery, page_limit, path_id};
use shared::http::{Caller, Principal};
use shared::identity::rbac::Permission;
use shared::identity::users::{self, Email, User, UserStatus, check_name, check_password, check_roles};
use shared::platform::crypto::hash_password;
use shared::platform::error::{Error, FieldError, Result};
use shared::platform::time;
use shared::store::cursor::{KeyPosition, key_of, position_of};
use shared::store::ids::UserId;
use shared::store::{QuerySpec, Write, s, timestamp};
use utoipa::{IntoParams, ToSchema};

use crate::{AdminState, masking, roles};

/// A user as the API shows it (no secrets; personal data masked without
/// `pii:read`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub name: String,
    pub roles: Vec<String>,
    pub status: UserStatus,
    pub country: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_login_at: Option<String>,
    pub deleted_at: Option<String>,
    /// Send this back with an update; a stale value gets 409.
    pub version: u64,
    /// Whether a password is set (the hash itself is never shown).
    pub has_password: bool,
}

impl UserView {
    pub fn of(user: User, principal: &Principal) -> UserView {
        // Data shaping, not access: personal fields are masked without pii:read.
        let pii = principal.can(Permission::PiiRead);
        UserView {
            email: if pii { user.email.clone() } else { masking::email(&user.email) },
            name: if pii { user.name.clone() } else { masking::name(&user.name) },
            has_password: user.password_hash.is_some(),
            id: user.id,
            roles: user.roles,
            status: user.status,
            country: user.country,
            created_at: user.created_at,
            updated_at: user.updated_at,
            last_login_at: user.last_login_at,
            deleted_at: user.deleted_at,
            version: user.version,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(format = "email")]
    pub email: String,
    pub name: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// An initial password (12–128 characters); or set `invite`.
    pub password: Option<String>,
    /// Email the user an invitation link to set their own password.
    #[serde(default)]
    pub invite: bool,
}

#[utoipa::path(post, path = "/api/v1/admin/users", tag = "users", request_body = CreateUser,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 400, description = "Invalid fields", body = shared::platform::error::Problem),
        (status = 403, description = "Missing permission, or granting roles beyond your own", body = shared::platform::error::Problem),
        (status = 409, description = "Email already in use", body = shared::platform::error::Problem),
        (status = 413, description = "Body too large", body = shared::platform::error::Problem),
    ))]
pub async fn create(State(state): State<AdminState>, caller: Caller, ValidJson(body): ValidJson<CreateUser>) -> Result<impl IntoResponse> {
    let mut errors: Vec<FieldError> = Vec::new();
    let email = Email::parse(&body.email).map_err(|m| errors.push(FieldError::new("email", m))).ok();
    errors.extend(check_name("name", &body.name));
    let roles = if body.roles.is_empty() { vec!["user".to_string()] } else { body.roles.clone() };
    let catalog = roles::judging_catalog(&state, &caller, &roles).await?;
    errors.extend(check_roles("roles", &roles, &catalog));
    match (&body.password, body.invite) {
        (Some(p), false) => errors.extend(check_password("password", p)),
        (None, true) => {}
        (Some(_), true) => errors.push(FieldError::new("invite", "give either a password or invite, not both")),
        (None, false) => errors.push(FieldError::new("password", "required unless invite is true")),
    }
    let Some(email) = email.filter(|_| errors.is_empty()) else {
        return Err(Error::Validation(errors));
    };
    let platform = &state.platform;
    let status = if body.invite { UserStatus::Invited } else { UserStatus::Active };
    let mut user = User::new(&email, &body.name, roles, status);
    roles::check_grant(&platform.store, &caller, &catalog, catalog.permissions_of(&user.roles), "user.create", "user", &user.id).await?;
    if let Some(password) = &body.password {
        user.password_hash = Some(hash_password(password)?);
    }
    let mut writes = user.create_writes(platform.store.table())?;
    let invite_job = body.invite.then(|| Job::of(&caller.principal.user_id, &shared::domain::jobs::InviteEmail { user_id: user.id.clone() })).transpose()?;
    if let Some(job) = &invite_job {
        writes.push(job.create_write(platform.store.table())?);
    }
    let audit = AuditEntry::new(&caller.actor(), "user.create", "user", &user.id).changes::<User, User>(None, Some(&user));
    platform.store.commit(writes, &audit).await?;
    let location = format!("/api/v1/admin/users/{}", user.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(UserView::of(user, &caller.principal))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `active`, `invited`, `suspended` or `deleted`; by default every status but deleted.
    pub status: Option<UserStatus>,
    /// Users holding this role.
    pub role: Option<String>,
    /// Emails starting with this (case-insensitive).
    pub email_prefix: Option<String>,
    /// Created at or after (RFC 3339).
    pub created_from: Option<String>,
    /// Created before (RFC 3339).
    pub created_to: Option<String>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<UserView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// At most this many DynamoDB pages are read to fill one response page, so a
/// sparse filter cannot make one request expensive; the cursor continues.
pub(crate) const MAX_READS_PER_PAGE: usize = 10;

#[utoipa::path(get, path = "/api/v1/admin/users", tag = "users", params(ListQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of users, newest first (alphabetical with email_prefix)", body = UserPage),
        (status = 400, description = "Invalid filter or cursor", body = shared::platform::error::Problem),
        (status = 403, description = "Missing users:read", body = shared::platform::error::Problem),
    ))]
pub async fn list(State(state): State<AdminState>, principal: Principal, ValidQuery(q): ValidQuery<ListQuery>) -> Result<Json<UserPage>> {
    let limit = page_limit(q.limit)?;
    let from = time::field("created_from", q.created_from.as_deref())?.map(timestamp);
    let to = time::field("created_to", q.created_to.as_deref())?.map(timestamp);
    if let Some(role) = &q.role {
        let catalog = state.platform.roles.fresh_for(std::slice::from_ref(role)).await?;
        if let Some(e) = check_roles("role", std::slice::from_ref(role), &catalog).into_iter().next() {
            return Err(Error::Validation(vec![FieldError::new("role", e.message)]));
        }
    }
    let prefix = match q.email_prefix.as_deref().map(|p| p.trim().to_lowercase()) {
        Some(p) if p.is_empty() || p.len() > 254 => return Err(Error::field("email_prefix", "must be 1 to 254 characters")),
        other => other,
    };
    let store = &state.platform.store;
    let scope = format!("users|{:?}|{:?}|{:?}|{:?}|{:?}", q.status, q.role, prefix, from, to);
    let start: Option<KeyPosition> = match &q.cursor {
        Some(c) => Some(state.platform.cursors().await?.decode(&scope, c)?),
        None => None,
    };

    let mut filters: Vec<&str> = Vec::new();
    let mut names: Vec<(&str, &str)> = Vec::new();
    let mut values: Vec<(&str, AttributeValue)> = Vec::new();
    let (index, key_condition) = if let Some(prefix) = &prefix {
        values.push((":pk", s(User::email_partition(prefix))));
        values.push((":prefix", s(prefix.clone())));
        if let Some(status) = q.status {
            filters.push("#status = :status");
            values.push((":status", s(status.as_str())));
        }
        if let Some(from) = &from {
            filters.push("created_at >= :from");
            values.push((":from", s(from.clone())));
        }
        if let Some(to) = &to {
            filters.push("created_at < :to");
            values.push((":to", s(to.clone())));
        }
        ("gsi1", "gsi1pk = :pk AND begins_with(gsi1sk, :prefix)")
    } else {
        let (index, pk) = match q.status {
            Some(status) => ("gsi2", format!("USERS#{}", status.as_str())),
            None => {
                filters.push("#status <> :deleted");
                values.push((":deleted", s("deleted")));
                ("gsi3", "USERS".to_string())
            }
        };
        values.push((":pk", s(pk)));
        // Sort keys are `created#id`: a time range is a key range.
        values.push((":from", s(from.clone().unwrap_or_else(|| "0".into()))));
        values.push((":to", s(to.clone().unwrap_or_else(|| "~".into()))));
        let condition = if index == "gsi2" { "gsi2pk = :pk AND gsi2sk BETWEEN :from AND :to" } else { "gsi3pk = :pk AND gsi3sk BETWEEN :from AND :to" };
        (index, condition)
    };
    if let Some(role) = &q.role {
        filters.push("contains(#roles, :role)");
        names.push(("#roles", "roles"));
        values.push((":role", s(role.clone())));
    }
    let filter = filters.join(" AND ");
    if filter.contains("#status") {
        names.push(("#status", "status"));
    }
    let newest_first = prefix.is_none();

    let spec = QuerySpec { index: Some(index), key_condition, filter: &filter, names, values, forward: !newest_first, ..QuerySpec::default() };
    let (page, last) = store.query_filled(&spec, start.as_ref().map(key_of), limit, MAX_READS_PER_PAGE).await?;
    let items = page.into_iter().map(|item| Ok(UserView::of(users::from_user_item(item)?, &principal))).collect::<Result<Vec<_>>>()?;
    let start = last.as_ref().map(position_of).transpose()?;
    let next_cursor = match &start {
        Some(position) => Some(state.platform.cursors().await?.encode(&scope, position)),
        None => None,
    };
    Ok(Json(UserPage { items, next_cursor }))
}

pub(crate) async fn load(state: &AdminState, user_id: &UserId) -> Result<User> {
    users::get(&state.platform.store, user_id).await?.ok_or_else(|| Error::NotFound(format!("no user {user_id}")))
}

#[utoipa::path(get, path = "/api/v1/admin/users/{user_id}", tag = "users", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "User id (UUID)")),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 403, description = "Missing users:read", body = shared::platform::error::Problem),
        (status = 404, description = "No such user", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<AdminState>, principal: Principal, PathId(user_id): PathId<UserId>) -> Result<Json<UserView>> {
    let user = load(&state, &user_id).await?;
    Ok(Json(UserView::of(user, &principal)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// The version you read; the update is refused (409) if it changed since.
    pub version: u64,
    pub name: Option<String>,
    #[schema(format = "email")]
    pub email: Option<String>,
    pub roles: Option<Vec<String>>,
    /// `active` (reactivate) or `suspended`.
    pub status: Option<UserStatus>,
    /// Why (kept in the audit entry).
    pub reason: Option<String>,
}

#[utoipa::path(put, path = "/api/v1/admin/users/{user_id}", tag = "users", request_body = UpdateUser, security(("bearer" = [])),
    params(("user_id" = String, Path, description = "User id (UUID)")),
    responses(
        (status = 200, description = "Updated", body = UserView),
        (status = 400, description = "Invalid fields", body = shared::platform::error::Problem),
        (status = 403, description = "Missing permission", body = shared::platform::error::Problem),
        (status = 404, description = "No such user", body = shared::platform::error::Problem),
        (status = 409, description = "Version conflict, email in use, or user deleted", body = shared::platform::error::Problem),
    ))]
pub async fn update(
    State(state): State<AdminState>,
    caller: Caller,
    Path(user_id): Path<String>,
    ValidJson(body): ValidJson<UpdateUser>,
) -> Result<Json<UserView>> {
    let mut errors = Vec::new();
    if let Some(name) = &body.name {
        errors.extend(check_name("name", name));
    }
    let email = match &body.email {
        Some(e) => Email::parse(e).map_err(|m| errors.push(FieldError::new("email", m))).ok(),
        None => None,
    };
    if matches!(body.status, Some(UserStatus::Deleted | UserStatus::Invited)) {
        errors.push(FieldError::new("status", "may be set to active or suspended (use DELETE to delete)"));
    }
    if body.reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        errors.push(FieldError::new("reason", "at most 500 characters"));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }

    let store = &state.platform.store;
    // Checked after the body, as before ids were typed: a bad body is a 400 whatever the id.
    let user_id: UserId = path_id(&user_id)?;
    let current = load(&state, &user_id).await?;
    if current.status == UserStatus::Deleted {
        return Err(Error::Conflict("the user is deleted".into()));
    }
    if current.version != body.version {
        return Err(Error::Conflict(format!("the user was changed (version {} now, {} sent); reload and retry", current.version, body.version)));
    }
    let mut next = current.next_version();
    if let Some(name) = &body.name {
        next.name = name.trim().to_string();
    }
    let mut holder_writes = Vec::new();
    if let Some(roles) = &body.roles {
        holder_writes = roles::judge_role_change(&state, &caller, &current, roles, "user.update").await?;
        next.roles = roles.clone();
    }
    if let Some(status) = body.status
        && status != current.status
    {
        if user_id == caller.principal.user_id {
            return Err(Error::field("status", "you cannot suspend or reactivate yourself"));
        }
        if current.status == UserStatus::Invited && status == UserStatus::Active {
            return Err(Error::field("status", "an invited user becomes active by accepting the invitation"));
        }
        next.status = status;
    }
    let mut writes = vec![Write::put_versioned(store.table(), next.to_item()?, current.version)?];
    if let Some(email) = &email
        && email.as_str() != current.email
    {
        next.email = email.to_string();
        writes[0] = Write::put_versioned(store.table(), next.to_item()?, current.version)?;
        writes.push(Write::put_new(store.table(), next.guard_item(), User::email_taken())?);
        writes.push(Write::delete_existing(
            store.table(),
            &User::guard_pk(&current.email),
            "GUARD",
            Error::Conflict("the user was changed; reload and retry".into()),
        )?);
    }
    writes.extend(holder_writes);
    let action = match (current.status, next.status) {
        (a, b) if a == b => "user.update",
        (_, UserStatus::Suspended) => "user.suspend",
        _ => "user.reactivate",
    };
    let mut audit = AuditEntry::new(&caller.actor(), action, "user", &user_id).changes(Some(&current), Some(&next));
    if let Some(reason) = &body.reason {
        audit = audit.reason(reason.clone());
    }
    store.commit(writes, &audit).await?;
    Ok(Json(UserView::of(next, &caller.principal)))
}

#[utoipa::path(delete, path = "/api/v1/admin/users/{user_id}", tag = "users", security(("bearer" = [])),
    params(
        ("user_id" = String, Path, description = "User id (UUID)"),
        ("If-Match" = Option<String>, Header, description = "The version you read; 409 if it changed"),
    ),
    responses(
        (status = 204, description = "Soft-deleted: hidden from lists, unable to sign in, kept for audit"),
        (status = 403, description = "Missing users:delete", body = shared::platform::error::Problem),
        (status = 404, description = "No such user", body = shared::platform::error::Problem),
        (status = 409, description = "Version conflict or already deleted", body = shared::platform::error::Problem),
    ))]
pub async fn delete(State(state): State<AdminState>, caller: Caller, PathId(user_id): PathId<UserId>, headers: HeaderMap) -> Result<StatusCode> {
    let store = &state.platform.store;
    let current = load(&state, &user_id).await?;
    if user_id == caller.principal.user_id {
        return Err(Error::Conflict("you cannot delete yourself".into()));
    }
    if current.status == UserStatus::Deleted {
        return Err(Error::Conflict("the user is already deleted".into()));
    }
    if let Some(expected) = headers.get(header::IF_MATCH) {
        let expected = expected
            .to_str()
            .ok()
            .map(|v| v.trim_matches('"'))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| Error::field("If-Match", "must be the user's version number"))?;
        if expected != current.version {
            return Err(Error::Conflict(format!("the user was changed (version {} now, {expected} sent); reload and retry", current.version)));
        }
    }
    let holder_writes = roles::judge_user_removal(&state, &caller, &current).await?;
    let mut next = current.next_version();
    next.status = UserStatus::Deleted;
    next.deleted_at = Some(next.updated_at.clone());
    let mut writes = vec![Write::put_versioned(store.table(), next.to_item()?, current.version)?];
    writes.extend(holder_writes);
    let audit = AuditEntry::new(&caller.actor(), "user.delete", "user", &user_id).changes(Some(&current), Some(&next));
    store.commit(writes, &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockRequest {
    /// Why (kept in the audit entry), e.g. how the person was verified.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UnlockResponse {
    pub user_id: String,
    /// Whether the account was refusing sign-in attempts.
    pub was_locked: bool,
    /// The attempt counters that were cleared: `login`, `refresh`, `two_factor`.
    pub cleared: Vec<String>,
}

/// Lift a brute-force lockout before it expires (see docs/rate-limits.md).
#[utoipa::path(post, path = "/api/v1/admin/users/{user_id}/unlock", tag = "users", request_body = UnlockRequest, security(("bearer" = [])),
    params(("user_id" = String, Path, description = "User id (UUID)")),
    responses(
        (status = 200, description = "The user's failed-attempt counters are cleared (audited as auth.unlock when there were any)", body = UnlockResponse),
        (status = 400, description = "Invalid body", body = shared::platform::error::Problem),
        (status = 403, description = "Missing users:write", body = shared::platform::error::Problem),
        (status = 404, description = "No such user", body = shared::platform::error::Problem),
        (status = 409, description = "An attempt changed the counters meanwhile; retry", body = shared::platform::error::Problem),
    ))]
pub async fn unlock(
    State(state): State<AdminState>,
    caller: Caller,
    Path(user_id): Path<String>,
    ValidJson(body): ValidJson<UnlockRequest>,
) -> Result<Json<UnlockResponse>> {
    if body.reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(Error::field("reason", "at most 500 characters"));
    }
    let user = load(&state, &path_id(&user_id)?).await?;
    let unlocked = shared::identity::rate_limits::unlock_account(
        &state.platform.store,
        &state.platform.config.rate_limits,
        &user,
        &caller.actor(),
        body.reason.as_deref(),
    )
    .await?;
    Ok(Json(UnlockResponse { user_id: user.id, was_locked: unlocked.was_locked, cleared: unlocked.cleared }))
}
