//! Identities: provider accounts linked to a user, one per provider.
//! `GET /api/v1/auth/identities` lists the caller's (and whether a password
//! is set); `DELETE /api/v1/auth/identities/{provider}` unlinks one, unless
//! it is the last way to sign in.
//!
//! Keys: `USER#id / IDENTITY#<provider>` (at most one per provider per user)
//! and the guard `IDENTITY#<provider>#<subject> / GUARD` → user id, so a
//! provider account belongs to at most one user. Both are written in one
//! transaction with the audit entry.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use shared::audit::AuditEntry;
use shared::http::Caller;
use shared::identity::users::{self, User};
use shared::platform::error::{Error, Result};
use shared::store::{Item, QuerySpec, Store, Write, attr_s, from_item, s, timestamp, to_item};
use utoipa::ToSchema;

use crate::AuthState;

/// A provider account linked to a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Identity {
    pub user_id: String,
    /// The configured provider's name.
    pub provider: String,
    /// The provider's stable id for the account (`sub`).
    pub subject: String,
    /// The verified email the provider reported when it was linked.
    pub email: Option<String>,
    pub linked_at: String,
}

impl Identity {
    pub fn new(user_id: &str, provider: &str, subject: &str, email: Option<&str>) -> Identity {
        Identity {
            user_id: user_id.to_string(),
            provider: provider.to_string(),
            subject: subject.to_string(),
            email: email.map(str::to_string),
            linked_at: timestamp(chrono::Utc::now()),
        }
    }

    pub fn sk(provider: &str) -> String {
        format!("IDENTITY#{provider}")
    }

    pub fn guard_pk(provider: &str, subject: &str) -> String {
        format!("IDENTITY#{provider}#{subject}")
    }

    fn to_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(User::pk(&self.user_id)));
        item.insert("sk".into(), s(Identity::sk(&self.provider)));
        item.insert("type".into(), s("identity"));
        Ok(item)
    }

    fn guard_item(&self) -> Item {
        Item::from([
            ("pk".to_string(), s(Identity::guard_pk(&self.provider, &self.subject))),
            ("sk".to_string(), s("GUARD")),
            ("user_id".to_string(), s(self.user_id.clone())),
            ("type".to_string(), s("identity_guard")),
        ])
    }

    /// The writes that link this identity; commit them with the audit entry.
    pub fn link_writes(&self, table: &str) -> Result<Vec<Write>> {
        Ok(vec![
            Write::put_new(table, self.to_item()?, Error::Conflict(format!("the account already has a linked {} identity; unlink it first", self.provider)))?,
            Write::put_new(table, self.guard_item(), Error::Conflict(format!("this {} account is already linked to another user", self.provider)))?,
        ])
    }
}

/// The user a provider account is linked to, if any.
pub async fn linked_user(store: &Store, provider: &str, subject: &str) -> Result<Option<String>> {
    let guard = store.get_item(&Identity::guard_pk(provider, subject), "GUARD").await?;
    Ok(guard.as_ref().and_then(|g| attr_s(g, "user_id")).map(str::to_string))
}

/// Every identity linked to a user.
pub async fn of_user(store: &Store, user_id: &str) -> Result<Vec<Identity>> {
    // A user has at most one identity per configured provider: one page.
    let spec = QuerySpec {
        key_condition: "pk = :pk AND begins_with(sk, :prefix)",
        values: vec![(":pk", s(User::pk(user_id))), (":prefix", s("IDENTITY#"))],
        forward: true,
        consistent: true,
        ..QuerySpec::default()
    };
    store.query_all(&spec).await?.into_iter().map(from_item).collect()
}

/// The caller's ways to sign in.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SignInMethods {
    /// Whether the account has a password.
    pub has_password: bool,
    pub identities: Vec<Identity>,
}

#[utoipa::path(get, path = "/api/v1/auth/identities", tag = "oauth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's linked identities and whether a password is set", body = SignInMethods),
        (status = 401, description = "Not signed in", body = shared::platform::error::Problem),
    ))]
pub async fn list(State(state): State<AuthState>, caller: Caller) -> Result<Json<SignInMethods>> {
    let store = &state.platform.store;
    let user = users::get(store, &caller.principal.user_id).await?.ok_or_else(|| Error::NotFound("no such user".into()))?;
    let identities = of_user(store, &user.id).await?;
    Ok(Json(SignInMethods { has_password: user.password_hash.is_some(), identities }))
}

#[utoipa::path(delete, path = "/api/v1/auth/identities/{provider}", tag = "oauth", security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider whose identity to unlink")),
    responses(
        (status = 204, description = "Unlinked"),
        (status = 401, description = "Not signed in", body = shared::platform::error::Problem),
        (status = 404, description = "No identity of this provider is linked", body = shared::platform::error::Problem),
        (status = 409, description = "It is the last way to sign in (no password, no other identity)", body = shared::platform::error::Problem),
    ))]
pub async fn unlink(State(state): State<AuthState>, caller: Caller, Path(provider): Path<String>) -> Result<StatusCode> {
    let store = &state.platform.store;
    let user = users::get(store, &caller.principal.user_id).await?.ok_or_else(|| Error::NotFound("no such user".into()))?;
    let identities = of_user(store, &user.id).await?;
    let missing = || Error::NotFound(format!("no {provider} identity is linked to this account"));
    let identity = identities.iter().find(|i| i.provider == provider).ok_or_else(missing)?;
    let last_way = || Error::Conflict("this is the account's last way to sign in: set a password or link another provider first".into());
    let user_pk = User::pk(&user.id);
    // What keeps the account reachable is asserted in the same transaction,
    // so two concurrent unlinks cannot both succeed and leave none.
    let remaining = if user.password_hash.is_some() {
        Write::check(store.table(), &user_pk, "PROFILE", "attribute_exists(password_hash)", Vec::new(), last_way())?
    } else if let Some(other) = identities.iter().find(|i| i.provider != provider) {
        Write::check(store.table(), &user_pk, &Identity::sk(&other.provider), "attribute_exists(pk)", Vec::new(), last_way())?
    } else {
        let audit = AuditEntry::new(&caller.actor(), "identity.unlink", "user", &user.id)
            .outcome(shared::audit::Outcome::Denied)
            .reason(format!("{provider} is the last way to sign in"));
        store.record(&audit).await?;
        return Err(last_way());
    };
    let writes = vec![
        Write::delete_existing(store.table(), &user_pk, &Identity::sk(&provider), missing())?,
        Write::delete_existing(store.table(), &Identity::guard_pk(&provider, &identity.subject), "GUARD", missing())?,
        remaining,
    ];
    let audit = AuditEntry::new(&caller.actor(), "identity.unlink", "user", &user.id).changes::<Identity, Identity>(Some(identity), None);
    store.commit(writes, &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}
