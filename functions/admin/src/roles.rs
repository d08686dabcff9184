//! `/api/v1/admin/roles` and `/api/v1/admin/users/{user_id}/roles`: the
//! built-in and custom roles, custom role create/read/update/delete with a
//! version check, and replacing a user's roles. Also the one place the admin
//! function judges role changes (no privilege escalation): user create,
//! update and delete use it too.
//!
//! The rule: a caller may create, edit, delete, grant or take away only roles
//! whose permissions they hold themselves (judged against the roles as stored
//! now, not as cached), and may not change their own roles at all.

use shared::audit::Journal;
use std::sync::Arc;

use aws_sdk_dynamodb::types::{Delete, TransactWriteItem, Update};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use shared::audit::{AuditEntry, Outcome};
use shared::http::extract::ValidJson;
use shared::http::{Caller, Principal};
use shared::identity::rbac::{BuiltinRole, PermissionSet};
use shared::identity::roles::{self, Catalog, CustomRole, MAX_CUSTOM_ROLES, PARTITION};
use shared::identity::users::{User, UserStatus, check_roles};
use shared::platform::error::{Error, FieldError, Result};
use shared::store::{Store, Write, n, s};
use utoipa::ToSchema;

use crate::AdminState;
use crate::users::{UserView, load as load_user};

/// A role as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoleView {
    pub name: String,
    pub description: String,
    /// `resource:action` permissions.
    pub permissions: Vec<String>,
    /// Holders must sign in with two-factor authentication.
    pub require_2fa: bool,
    /// Built-in roles are constant: readable, never editable or deletable.
    pub builtin: bool,
    /// Users (not deleted) holding a custom role; not counted for built-ins.
    pub holders: Option<u64>,
    /// Send this back with an update; absent for built-ins.
    pub version: Option<u64>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl RoleView {
    fn builtin(role: BuiltinRole) -> RoleView {
        RoleView {
            name: role.as_str().to_string(),
            description: role.description().to_string(),
            permissions: role.permissions().names(),
            require_2fa: false,
            builtin: true,
            holders: None,
            version: None,
            created_at: None,
            updated_at: None,
        }
    }

    fn custom(role: CustomRole) -> RoleView {
        RoleView {
            // Only permissions the code knows are shown (and granted).
            permissions: role.permission_set().names(),
            name: role.name,
            description: role.description,
            require_2fa: role.require_2fa,
            builtin: false,
            holders: Some(role.holders),
            version: Some(role.version),
            created_at: Some(role.created_at),
            updated_at: Some(role.updated_at),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoleList {
    /// Built-in roles first, then custom roles by name.
    pub items: Vec<RoleView>,
}

// --- Judging role changes -------------------------------------------------

/// The catalog to judge a change with: read fresh whenever the caller's
/// roles or the roles concerned include a custom one, so a grant is never
/// decided on a definition up to a cache TTL old.
pub(crate) async fn judging_catalog<'a>(state: &AdminState, caller: &'a Caller, concerned: impl IntoIterator<Item = &'a String>) -> Result<Arc<Catalog>> {
    let names: Vec<&String> = caller.principal.roles.iter().chain(concerned).collect();
    state.platform.roles.fresh_for(&names).await
}

/// What the caller may pass on: what their token grants *and* their roles
/// grant as stored now (a permission just taken from one of their roles
/// cannot be handed to someone else while their cache catches up).
fn grantable(principal: &Principal, catalog: &Catalog) -> PermissionSet {
    principal.permissions.intersection(catalog.permissions_of(&principal.roles))
}

/// Refuse, and audit as a denial, an action that would hand out or take away
/// `needed` when the caller does not hold all of it. The 403 names the first
/// missing permission. Not route access (the route's rule already admitted
/// the caller): a bound on what the change may grant, which depends on the
/// stored roles it names, so it cannot be decided from the request alone.
pub(crate) async fn check_grant(
    store: &Journal,
    caller: &Caller,
    catalog: &Catalog,
    needed: PermissionSet,
    action: &str,
    target_type: &str,
    target_id: &str,
) -> Result<()> {
    let Some(missing) = needed.first_missing_from(grantable(&caller.principal, catalog)) else {
        return Ok(());
    };
    let audit = AuditEntry::new(&caller.actor(), action, target_type, target_id)
        .outcome(Outcome::Denied)
        .reason(format!("missing permission {missing}: the change reaches beyond the caller's own permissions"));
    store.record(&audit).await?;
    Err(Error::Forbidden { missing: missing.to_string() })
}

/// Judge replacing `user`'s roles with `next` (done as `action`): names
/// must exist, nobody changes their own roles, and every role added or
/// removed must be within the caller's permissions. Returns the writes
/// that keep the custom roles' holder counts.
pub(crate) async fn judge_role_change(state: &AdminState, caller: &Caller, user: &User, next: &[String], action: &str) -> Result<Vec<Write>> {
    let mut errors = Vec::new();
    if next.is_empty() {
        errors.push(FieldError::new("roles", "at least one role"));
    }
    let catalog = judging_catalog(state, caller, user.roles.iter().chain(next)).await?;
    errors.extend(check_roles("roles", next, &catalog));
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    // Both what is added and what is taken away count.
    let changed: Vec<&String> = next.iter().filter(|r| !user.roles.contains(r)).chain(user.roles.iter().filter(|r| !next.contains(r))).collect();
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    if user.id == caller.principal.user_id {
        return Err(Error::field("roles", "you cannot change your own roles; ask another administrator"));
    }
    check_grant(&state.platform.store, caller, &catalog, catalog.permissions_of(&changed), action, "user", &user.id).await?;
    roles::holder_writes(state.platform.store.table(), &catalog, &user.roles, next)
}

/// Judge deleting `user` (taking all its roles away), and return the writes
/// that stop counting it as a holder.
pub(crate) async fn judge_user_removal(state: &AdminState, caller: &Caller, user: &User) -> Result<Vec<Write>> {
    let catalog = judging_catalog(state, caller, &user.roles).await?;
    // Deleting someone who holds a role you could not grant is escalation too.
    check_grant(&state.platform.store, caller, &catalog, catalog.permissions_of(&user.roles), "user.delete", "user", &user.id).await?;
    roles::holder_writes(state.platform.store.table(), &catalog, &user.roles, &[])
}

// --- Roles ----------------------------------------------------------------

fn builtin_refused(role: BuiltinRole, verb: &str) -> Error {
    Error::Conflict(format!("{} is a built-in role and cannot be {verb}; create a custom role instead", role.as_str()))
}

fn no_role(name: &str) -> Error {
    Error::NotFound(format!("no role {name}"))
}

async fn load_custom(store: &Store, name: &str) -> Result<CustomRole> {
    if roles::check_name("name", name).is_some() {
        return Err(no_role(name));
    }
    roles::get(store, name).await?.ok_or_else(|| no_role(name))
}

#[utoipa::path(get, path = "/api/v1/admin/roles", tag = "roles", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every role: built-in ones first, then custom ones by name", body = RoleList),
        (status = 403, description = "Missing roles:read", body = shared::platform::error::Problem),
    ))]
pub async fn list(State(state): State<AdminState>) -> Result<Json<RoleList>> {
    let catalog = state.platform.roles.fresh().await?;
    let items = BuiltinRole::ALL.iter().map(|r| RoleView::builtin(*r)).chain(catalog.custom_roles().into_iter().map(|r| RoleView::custom(r.clone()))).collect();
    Ok(Json(RoleList { items }))
}

#[utoipa::path(get, path = "/api/v1/admin/roles/{name}", tag = "roles", security(("bearer" = [])),
    params(("name" = String, Path, description = "Role name")),
    responses(
        (status = 200, description = "The role", body = RoleView),
        (status = 403, description = "Missing roles:read", body = shared::platform::error::Problem),
        (status = 404, description = "No such role", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Json<RoleView>> {
    if let Some(builtin) = BuiltinRole::parse(&name) {
        return Ok(Json(RoleView::builtin(builtin)));
    }
    Ok(Json(RoleView::custom(load_custom(&state.platform.store, &name).await?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    /// Lower-case identifier (`billing_viewer`), 2–40 characters, not a built-in name.
    pub name: String,
    /// 1–500 characters.
    pub description: String,
    /// `resource:action` values, e.g. `audit:read`; each must be one you hold.
    pub permissions: Vec<String>,
    /// Holders must sign in with two-factor authentication.
    #[serde(default)]
    pub require_2fa: bool,
}

#[utoipa::path(post, path = "/api/v1/admin/roles", tag = "roles", request_body = CreateRole,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = RoleView),
        (status = 400, description = "Invalid fields (e.g. `permissions[2]`)", body = shared::platform::error::Problem),
        (status = 403, description = "Missing roles:write, or a permission you do not hold", body = shared::platform::error::Problem),
        (status = 409, description = "A role with this name exists, or the custom role limit is reached", body = shared::platform::error::Problem),
    ))]
pub async fn create(State(state): State<AdminState>, caller: Caller, ValidJson(body): ValidJson<CreateRole>) -> Result<impl IntoResponse> {
    let mut errors: Vec<FieldError> = Vec::new();
    errors.extend(roles::check_name("name", &body.name));
    errors.extend(roles::check_description("description", &body.description));
    let permissions = roles::parse_permissions("permissions", &body.permissions).map_err(|e| errors.extend(e)).ok();
    let Some(permissions) = permissions.filter(|_| errors.is_empty()) else {
        return Err(Error::Validation(errors));
    };
    let store = &state.platform.store;
    // Fresh: the limit and the caller's own rights are judged as stored now.
    let catalog = state.platform.roles.fresh().await?;
    check_grant(store, &caller, &catalog, permissions, "role.create", "role", &body.name).await?;
    if catalog.custom(&body.name).is_some() {
        return Err(Error::Conflict(format!("a role named {} already exists", body.name)));
    }
    if catalog.custom_count() >= MAX_CUSTOM_ROLES {
        return Err(Error::Conflict(format!("at most {MAX_CUSTOM_ROLES} custom roles can exist; delete one first")));
    }
    let role = CustomRole::new(&body.name, &body.description, permissions, body.require_2fa);
    roles::create(store, &role, AuditEntry::new(&caller.actor(), "role.create", "role", &role.name)).await?;
    state.platform.roles.invalidate();
    let location = format!("/api/v1/admin/roles/{}", role.name);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(RoleView::custom(role))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRole {
    /// The version you read; the update is refused (409) if it changed since.
    pub version: u64,
    pub description: Option<String>,
    /// The new, complete list of permissions.
    pub permissions: Option<Vec<String>>,
    pub require_2fa: Option<bool>,
    /// Why (kept in the audit entry).
    pub reason: Option<String>,
}

#[utoipa::path(put, path = "/api/v1/admin/roles/{name}", tag = "roles", request_body = UpdateRole, security(("bearer" = [])),
    params(("name" = String, Path, description = "Custom role name")),
    responses(
        (status = 200, description = "Updated; tokens naming the role get the new permissions within the role cache TTL (≤ 60 s)", body = RoleView),
        (status = 400, description = "Invalid fields", body = shared::platform::error::Problem),
        (status = 403, description = "Missing roles:write, or the role (before or after) has a permission you do not hold", body = shared::platform::error::Problem),
        (status = 404, description = "No such role", body = shared::platform::error::Problem),
        (status = 409, description = "Version conflict, or a built-in role", body = shared::platform::error::Problem),
    ))]
pub async fn update(
    State(state): State<AdminState>,
    caller: Caller,
    Path(name): Path<String>,
    ValidJson(body): ValidJson<UpdateRole>,
) -> Result<Json<RoleView>> {
    let mut errors: Vec<FieldError> = Vec::new();
    if let Some(description) = &body.description {
        errors.extend(roles::check_description("description", description));
    }
    let permissions = match &body.permissions {
        Some(p) => roles::parse_permissions("permissions", p).map_err(|e| errors.extend(e)).ok(),
        None => None,
    };
    if body.reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        errors.push(FieldError::new("reason", "at most 500 characters"));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    if let Some(builtin) = BuiltinRole::parse(&name) {
        return Err(builtin_refused(builtin, "changed"));
    }
    let store = &state.platform.store;
    let current = load_custom(store, &name).await?;
    if current.version != body.version {
        return Err(Error::Conflict(format!("the role was changed (version {} now, {} sent); reload and retry", current.version, body.version)));
    }
    let mut next = current.next_version();
    if let Some(description) = &body.description {
        next.description = description.trim().to_string();
    }
    if let Some(permissions) = permissions {
        next.permissions = permissions.names();
    }
    if let Some(require_2fa) = body.require_2fa {
        next.require_2fa = require_2fa;
    }
    // Editing touches everyone holding the role: the caller must hold what
    // it grants before and after (so nobody edits a role above their own).
    let catalog = judging_catalog(&state, &caller, []).await?;
    let needed = current.permission_set().union(next.permission_set());
    check_grant(store, &caller, &catalog, needed, "role.update", "role", &name).await?;

    let mut audit = AuditEntry::new(&caller.actor(), "role.update", "role", &name).changes(Some(&current), Some(&next));
    if let Some(reason) = &body.reason {
        audit = audit.reason(reason.clone());
    }
    store.commit(vec![update_write(store.table(), &next, current.version)?], &audit).await?;
    state.platform.roles.invalidate();
    Ok(Json(RoleView::custom(next)))
}

/// Replace a role's definition if its version is still `expected`. An
/// Update, not a Put: the holder count moves independently of edits.
fn update_write(table: &str, next: &CustomRole, expected: u64) -> Result<Write> {
    let permissions = aws_sdk_dynamodb::types::AttributeValue::L(next.permissions.iter().map(|p| s(p.clone())).collect());
    let update = Update::builder()
        .table_name(table)
        .key("pk", s(PARTITION))
        .key("sk", s(CustomRole::sort_key(&next.name)))
        .update_expression(
            "SET #description = :description, #permissions = :permissions, #require_2fa = :require_2fa, #version = :version, #updated_at = :updated_at",
        )
        .condition_expression("#version = :expected")
        .expression_attribute_names("#description", "description")
        .expression_attribute_names("#permissions", "permissions")
        .expression_attribute_names("#require_2fa", "require_2fa")
        .expression_attribute_names("#version", "version")
        .expression_attribute_names("#updated_at", "updated_at")
        .expression_attribute_values(":description", s(next.description.clone()))
        .expression_attribute_values(":permissions", permissions)
        .expression_attribute_values(":require_2fa", aws_sdk_dynamodb::types::AttributeValue::Bool(next.require_2fa))
        .expression_attribute_values(":version", n(next.version))
        .expression_attribute_values(":updated_at", s(next.updated_at.clone()))
        .expression_attribute_values(":expected", n(expected))
        .build()
        .map_err(|e| Error::internal(e.to_string()))?;
    let conflict = Error::Conflict(format!("the role was changed by someone else (expected version {expected}); reload and retry"));
    Ok(Write::raw(TransactWriteItem::builder().update(update).build(), Some(conflict)))
}

#[utoipa::path(delete, path = "/api/v1/admin/roles/{name}", tag = "roles", security(("bearer" = [])),
    params(
        ("name" = String, Path, description = "Custom role name"),
        ("If-Match" = Option<String>, Header, description = "The version you read; 409 if it changed"),
    ),
    responses(
        (status = 204, description = "Deleted; tokens naming it lose its permissions within the role cache TTL"),
        (status = 403, description = "Missing roles:write, or the role has a permission you do not hold", body = shared::platform::error::Problem),
        (status = 404, description = "No such role", body = shared::platform::error::Problem),
        (status = 409, description = "A built-in role, still held by users, or a version conflict", body = shared::platform::error::Problem),
    ))]
pub async fn delete(State(state): State<AdminState>, caller: Caller, Path(name): Path<String>, headers: HeaderMap) -> Result<StatusCode> {
    if let Some(builtin) = BuiltinRole::parse(&name) {
        return Err(builtin_refused(builtin, "deleted"));
    }
    let store = &state.platform.store;
    let current = load_custom(store, &name).await?;
    if let Some(expected) = headers.get(header::IF_MATCH) {
        let expected = expected
            .to_str()
            .ok()
            .map(|v| v.trim_matches('"'))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| Error::field("If-Match", "must be the role's version number"))?;
        if expected != current.version {
            return Err(Error::Conflict(format!("the role was changed (version {} now, {expected} sent); reload and retry", current.version)));
        }
    }
    if current.holders > 0 {
        return Err(Error::Conflict(format!(
            "the role {name} is held by {} user(s); take it away from them first (GET /api/v1/admin/users?role={name})",
            current.holders
        )));
    }
    let catalog = judging_catalog(&state, &caller, []).await?;
    check_grant(store, &caller, &catalog, current.permission_set(), "role.delete", "role", &name).await?;
    // Only if nobody was given the role, and nobody edited it, meanwhile.
    let delete = Delete::builder()
        .table_name(store.table())
        .key("pk", s(PARTITION))
        .key("sk", s(CustomRole::sort_key(&name)))
        .condition_expression("#version = :expected AND holders = :none")
        .expression_attribute_names("#version", "version")
        .expression_attribute_values(":expected", n(current.version))
        .expression_attribute_values(":none", n(0))
        .build()
        .map_err(|e| Error::internal(e.to_string()))?;
    let conflict = Error::Conflict("the role was changed or assigned meanwhile; reload and retry".into());
    let write = Write::raw(TransactWriteItem::builder().delete(delete).build(), Some(conflict));
    let audit = AuditEntry::new(&caller.actor(), "role.delete", "role", &name).changes::<CustomRole, CustomRole>(Some(&current), None);
    store.commit(vec![write], &audit).await?;
    state.platform.roles.invalidate();
    Ok(StatusCode::NO_CONTENT)
}

// --- Assignments ----------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRoles {
    /// The user's version you read; the change is refused (409) if it changed since.
    pub version: u64,
    /// The user's new, complete list of roles (built-in or custom names).
    pub roles: Vec<String>,
    /// Why (kept in the audit entry).
    pub reason: Option<String>,
}

#[utoipa::path(put, path = "/api/v1/admin/users/{user_id}/roles", tag = "roles", request_body = AssignRoles, security(("bearer" = [])),
    params(("user_id" = String, Path, description = "User id (UUID)")),
    responses(
        (status = 200, description = "The user with its new roles (applies to tokens issued from now on)", body = UserView),
        (status = 400, description = "Invalid fields (e.g. `roles[1]`), or your own roles", body = shared::platform::error::Problem),
        (status = 403, description = "Missing roles:write, or adding/removing a role with a permission you do not hold", body = shared::platform::error::Problem),
        (status = 404, description = "No such user", body = shared::platform::error::Problem),
        (status = 409, description = "Version conflict, the user is deleted, or a role was deleted meanwhile", body = shared::platform::error::Problem),
    ))]
pub async fn assign(
    State(state): State<AdminState>,
    caller: Caller,
    Path(user_id): Path<String>,
    ValidJson(body): ValidJson<AssignRoles>,
) -> Result<Json<UserView>> {
    if body.reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(Error::field("reason", "at most 500 characters"));
    }
    let store = &state.platform.store;
    let current = load_user(&state, &shared::http::extract::path_id(&user_id)?).await?;
    if current.status == UserStatus::Deleted {
        return Err(Error::Conflict("the user is deleted".into()));
    }
    if current.version != body.version {
        return Err(Error::Conflict(format!("the user was changed (version {} now, {} sent); reload and retry", current.version, body.version)));
    }
    let holders = judge_role_change(&state, &caller, &current, &body.roles, "user.assign_roles").await?;
    let mut next = current.next_version();
    next.roles = body.roles.clone();
    let mut writes = vec![Write::put_versioned(store.table(), next.to_item()?, current.version)?];
    writes.extend(holders);
    let mut audit = AuditEntry::new(&caller.actor(), "user.assign_roles", "user", &user_id).changes(Some(&current), Some(&next));
    if let Some(reason) = &body.reason {
        audit = audit.reason(reason.clone());
    }
    store.commit(writes, &audit).await?;
    Ok(Json(UserView::of(next, &caller.principal)))
}
