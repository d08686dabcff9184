//! Users: the record, its keys, the validated email type, and the store
//! operations that several functions need (auth reads, admin writes, the CLI
//! and the local stack bootstrap).
//!
//! Keys: `USER#id / PROFILE`; gsi1 `USEREMAIL#<first char> / email` (email
//! prefix search); gsi2 `USERS#<status> / created#id`; gsi3 `USERS /
//! created#id`; uniqueness guard `EMAIL#<email> / GUARD` in the same
//! transaction as the user.

use crate::audit::Journal;
use serde::{Deserialize, Serialize};

use crate::audit::AuditEntry;
use crate::identity::rbac::BuiltinRole;
use crate::identity::roles::{self, Catalog};
use crate::platform::error::{Error, FieldError, Result};
use crate::store::{Item, Store, Write, from_item, s, timestamp, to_item};

/// A syntactically valid, normalized (trimmed, lower-case) email address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> std::result::Result<Email, String> {
        let email = raw.trim().to_lowercase();
        if email.len() > 254 {
            return Err("must be at most 254 characters".into());
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err("must be an email address".into());
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain.split('.').all(|label| !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let local_ok = !local.is_empty() && local.len() <= 64 && !local.contains(char::is_whitespace) && !local.contains('@');
        if !(domain_ok && local_ok) {
            return Err("must be an email address".into());
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = String;
    fn try_from(value: String) -> std::result::Result<Self, String> {
        Email::parse(&value)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Invited,
    Suspended,
    Deleted,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Invited => "invited",
            UserStatus::Suspended => "suspended",
            UserStatus::Deleted => "deleted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub roles: Vec<String>,
    pub status: UserStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    pub version: u64,
}

pub const MIN_PASSWORD: usize = 12;
pub const MAX_PASSWORD: usize = 128;

pub fn check_password(field: &str, password: &str) -> Option<FieldError> {
    let len = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&len) {
        Some(FieldError::new(field, format!("must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")))
    } else {
        None
    }
}

/// Every name must be a built-in role or a custom role in `catalog`, once.
pub fn check_roles(field: &str, roles: &[String], catalog: &Catalog) -> Vec<FieldError> {
    let mut errors: Vec<FieldError> = roles
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            if !catalog.knows(r) {
                Some(FieldError::new(format!("{field}[{i}]"), format!("unknown role {r:?}")))
            } else if roles[..i].contains(r) {
                Some(FieldError::new(format!("{field}[{i}]"), format!("{r:?} is listed twice")))
            } else {
                None
            }
        })
        .collect();
    if roles.len() > 16 {
        errors.push(FieldError::new(field, "at most 16 roles"));
    }
    errors
}

pub fn check_name(field: &str, name: &str) -> Option<FieldError> {
    let len = name.trim().chars().count();
    if len == 0 || len > 200 || name.chars().any(char::is_control) {
        Some(FieldError::new(field, "must be 1 to 200 characters without control characters"))
    } else {
        None
    }
}

impl User {
    pub fn new(email: &Email, name: &str, roles: Vec<String>, status: UserStatus) -> User {
        let now = timestamp(chrono::Utc::now());
        User {
            id: uuid::Uuid::now_v7().to_string(),
            email: email.to_string(),
            name: name.trim().to_string(),
            roles,
            status,
            password_hash: None,
            country: None,
            created_at: now.clone(),
            updated_at: now,
            last_login_at: None,
            deleted_at: None,
            version: 1,
        }
    }

    pub fn pk(id: &str) -> String {
        crate::store::ids::UserId::pk_of(id)
    }

    pub fn guard_pk(email: &str) -> String {
        format!("EMAIL#{email}")
    }

    /// The gsi1 partition for email prefix search: by first character.
    pub fn email_partition(email_or_prefix: &str) -> String {
        format!("USEREMAIL#{}", email_or_prefix.chars().next().unwrap_or('_'))
    }

    pub fn to_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        let order = format!("{}#{}", self.created_at, self.id);
        item.insert("pk".into(), s(User::pk(&self.id)));
        item.insert("sk".into(), s("PROFILE"));
        item.insert("gsi1pk".into(), s(User::email_partition(&self.email)));
        item.insert("gsi1sk".into(), s(self.email.clone()));
        item.insert("gsi2pk".into(), s(format!("USERS#{}", self.status.as_str())));
        item.insert("gsi2sk".into(), s(order.clone()));
        item.insert("gsi3pk".into(), s("USERS"));
        item.insert("gsi3sk".into(), s(order));
        item.insert("type".into(), s("user"));
        Ok(item)
    }

    pub fn guard_item(&self) -> Item {
        Item::from([
            ("pk".to_string(), s(User::guard_pk(&self.email))),
            ("sk".to_string(), s("GUARD")),
            ("user_id".to_string(), s(self.id.clone())),
            ("type".to_string(), s("email_guard")),
        ])
    }

    /// A copy with the next version and a fresh `updated_at`, for a write
    /// conditioned on this version.
    pub fn next_version(&self) -> User {
        User { version: self.version + 1, updated_at: timestamp(chrono::Utc::now()), ..self.clone() }
    }

    pub fn email_taken() -> Error {
        Error::Conflict("a user with this email already exists".into())
    }

    /// The writes that create this user, reserve its email and count it as
    /// a holder of its custom roles (which must still exist).
    pub fn create_writes(&self, table: &str) -> Result<Vec<Write>> {
        let mut writes = vec![
            Write::put_new(table, self.to_item()?, Error::Conflict("user already exists".into()))?,
            Write::put_new(table, self.guard_item(), User::email_taken())?,
        ];
        writes.extend(roles::holder_writes(table, &Catalog::default(), &[], &self.roles)?);
        Ok(writes)
    }
}

pub async fn get(store: &Store, id: &str) -> Result<Option<User>> {
    store.get(&User::pk(id), "PROFILE").await
}

pub async fn find_by_email(store: &Store, email: &Email) -> Result<Option<User>> {
    let Some(guard) = store.get_item(&User::guard_pk(email.as_str()), "GUARD").await? else {
        return Ok(None);
    };
    let Some(id) = crate::store::attr_s(&guard, "user_id") else {
        return Ok(None);
    };
    get(store, id).await
}

/// Create a user (and its email guard) with its audit entry.
pub async fn create(store: &Journal, user: &User, audit: AuditEntry) -> Result<()> {
    let audit = audit.changes::<User, User>(None, Some(user));
    store.commit(user.create_writes(store.table())?, &audit).await
}

pub fn from_user_item(item: Item) -> Result<User> {
    from_item(item)
}

/// Marker written with the first bootstrapped super admin, so a second
/// bootstrap is refused unless it says it is an additional (break-glass) one.
const BOOTSTRAP_PK: &str = "BOOTSTRAP#super_admin";

/// Create a super admin from the operator's command line (no default
/// password exists anywhere). Audited with the `cli` actor.
pub async fn bootstrap_admin(store: &Journal, email: &str, name: &str, password: &str, additional: bool) -> Result<User> {
    let mut errors = Vec::new();
    let email = Email::parse(email).map_err(|m| errors.push(FieldError::new("email", m))).ok();
    errors.extend(check_name("name", name));
    errors.extend(check_password("password", password));
    let Some(email) = email.filter(|_| errors.is_empty()) else {
        return Err(Error::Validation(errors));
    };
    let mut user = User::new(&email, name, vec![BuiltinRole::SuperAdmin.as_str().to_string()], UserStatus::Active);
    user.password_hash = Some(crate::platform::crypto::hash_password(password)?);
    let mut writes = user.create_writes(store.table())?;
    if !additional {
        let marker = Item::from([
            ("pk".to_string(), s(BOOTSTRAP_PK)),
            ("sk".to_string(), s("MARKER")),
            ("user_id".to_string(), s(user.id.clone())),
            ("created_at".to_string(), s(user.created_at.clone())),
        ]);
        writes.push(Write::put_new(
            store.table(),
            marker,
            Error::Conflict("a super admin was already bootstrapped; use --additional for a break-glass admin".into()),
        )?);
    }
    let actor = crate::audit::Actor { id: "cli".into(), kind: "cli".into(), ..Default::default() };
    let audit = AuditEntry::new(&actor, "user.bootstrap_admin", "user", &user.id).changes::<User, User>(None, Some(&user));
    store.commit(writes, &audit).await?;
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_normalize_and_reject_junk() {
        assert_eq!(Email::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        for bad in ["", "ada", "ada@", "@x.io", "a b@x.io", "ada@x", "ada@x..io", "a@b@c.io"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn roles_and_passwords_are_checked() {
        let catalog = Catalog::new(vec![crate::identity::roles::CustomRole::new("billing", "Billing", crate::identity::rbac::PermissionSet::empty(), false)]);
        assert!(check_roles("roles", &["admin".into(), "billing".into()], &catalog).is_empty());
        assert_eq!(check_roles("roles", &["admin".into(), "root".into()], &catalog)[0].field, "roles[1]");
        assert_eq!(check_roles("roles", &["billing".into()], &Catalog::default())[0].field, "roles[0]");
        assert_eq!(check_roles("roles", &["user".into(), "admin".into(), "user".into()], &catalog)[0].field, "roles[2]");
        assert!(check_password("password", "short").is_some());
        assert!(check_password("password", "long enough password").is_none());
    }
}
