//! Custom roles: the stored record, its validation, the writes that keep each
//! role's holder count, and the role catalog that turns the role names in an
//! access token into permissions on every request.
//!
//! Keys: every custom role is `ROLES / ROLE#<name>`, one small partition, so a
//! single consistent Query loads them all (and IAM can confine a function's
//! Query to that partition). Built-in roles are constants (`rbac::BuiltinRole`)
//! and are never stored.
//!
//! Propagation: tokens carry role *names*; each function instance caches the
//! custom roles for at most `Config::role_cache_ttl` (≤ 60 s) and reloads them
//! lazily with one Query, so an edited or deleted role changes what
//! already-issued tokens can do within that time, and a warm cache costs no
//! DynamoDB call. Decisions that grant (role edits and assignments) read the
//! roles fresh instead, so they never act on a stale definition.

use crate::audit::Journal;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::time::Instant;

use crate::audit::AuditEntry;
use crate::identity::rbac::{BuiltinRole, Permission, PermissionSet};
use crate::platform::error::{Error, FieldError, Result};
use crate::store::{Item, Store, Write, from_item, n, s, to_item};

/// The partition holding every custom role.
pub const PARTITION: &str = "ROLES";
/// At most this many custom roles exist, so the catalog is always one Query
/// page (a role item is well under 2 KB; a page is 1 MB).
pub const MAX_CUSTOM_ROLES: usize = 100;
/// Longest description of a role.
pub const MAX_DESCRIPTION: usize = 500;

/// A custom role as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomRole {
    pub name: String,
    pub description: String,
    /// `resource:action` strings in declaration order.
    pub permissions: Vec<String>,
    /// Holders must use two-factor authentication (enforced at sign-in).
    pub require_2fa: bool,
    /// Users (not deleted) holding the role; kept in the same transaction as
    /// every change of a user's roles, so a held role cannot be deleted.
    pub holders: u64,
    pub created_at: String,
    pub updated_at: String,
    pub version: u64,
}

impl CustomRole {
    pub fn new(name: &str, description: &str, permissions: PermissionSet, require_2fa: bool) -> CustomRole {
        let now = crate::store::timestamp(chrono::Utc::now());
        CustomRole {
            name: name.to_string(),
            description: description.trim().to_string(),
            permissions: permissions.names(),
            require_2fa,
            holders: 0,
            created_at: now.clone(),
            updated_at: now,
            version: 1,
        }
    }

    pub fn sort_key(name: &str) -> String {
        format!("ROLE#{name}")
    }

    /// The permissions as a set. A stored name the code no longer knows
    /// grants nothing (deny by default).
    pub fn permission_set(&self) -> PermissionSet {
        PermissionSet::of(&self.permissions.iter().filter_map(|p| Permission::parse(p)).collect::<Vec<_>>())
    }

    pub fn to_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(PARTITION));
        item.insert("sk".into(), s(CustomRole::sort_key(&self.name)));
        item.insert("type".into(), s("role"));
        Ok(item)
    }

    /// A copy with the next version and a fresh `updated_at`.
    pub fn next_version(&self) -> CustomRole {
        CustomRole { version: self.version + 1, updated_at: crate::store::timestamp(chrono::Utc::now()), ..self.clone() }
    }

    /// Seconds since the epoch when this role (this incarnation of the name)
    /// was created.
    fn created_epoch(&self) -> i64 {
        chrono::DateTime::parse_from_rfc3339(&self.created_at).map(|t| t.timestamp()).unwrap_or(i64::MAX)
    }
}

/// Read one custom role (consistent).
pub async fn get(store: &Store, name: &str) -> Result<Option<CustomRole>> {
    store.get(PARTITION, &CustomRole::sort_key(name)).await
}

/// Store a new custom role with its audit entry (refused if the name exists).
pub async fn create(store: &Journal, role: &CustomRole, audit: AuditEntry) -> Result<()> {
    let audit = audit.changes::<CustomRole, CustomRole>(None, Some(role));
    let exists = Error::Conflict(format!("a role named {} already exists", role.name));
    store.commit(vec![Write::put_new(store.table(), role.to_item()?, exists)?], &audit).await
}

/// Every custom role, with one consistent Query.
pub async fn load_all(store: &Store) -> Result<Vec<CustomRole>> {
    // Never more than one page while MAX_CUSTOM_ROLES holds; all pages are
    // read anyway so a larger catalog is never silently cut short.
    let spec = crate::store::QuerySpec {
        key_condition: "pk = :pk AND begins_with(sk, :prefix)",
        values: vec![(":pk", s(PARTITION)), (":prefix", s("ROLE#"))],
        forward: true,
        consistent: true,
        ..Default::default()
    };
    store.query_all(&spec).await?.into_iter().map(from_item::<CustomRole>).collect()
}

/// A custom role name: a lower-case identifier that is not a built-in name.
pub fn check_name(field: &str, name: &str) -> Option<FieldError> {
    let well_formed = (2..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !well_formed {
        Some(FieldError::new(field, "must be 2 to 40 characters: a lower-case letter, then lower-case letters, digits or _"))
    } else if BuiltinRole::parse(name).is_some() {
        Some(FieldError::new(field, format!("{name:?} is a built-in role; choose another name")))
    } else {
        None
    }
}

pub fn check_description(field: &str, description: &str) -> Option<FieldError> {
    let len = description.trim().chars().count();
    if len == 0 || len > MAX_DESCRIPTION || description.chars().any(char::is_control) {
        Some(FieldError::new(field, format!("must be 1 to {MAX_DESCRIPTION} characters without control characters")))
    } else {
        None
    }
}

/// Parse `resource:action` strings; every bad or repeated entry is named by
/// its index (`permissions[2]`).
pub fn parse_permissions(field: &str, names: &[String]) -> std::result::Result<PermissionSet, Vec<FieldError>> {
    let mut set = PermissionSet::empty();
    let mut errors = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match Permission::parse(name) {
            Some(p) if set.contains(p) => errors.push(FieldError::new(format!("{field}[{i}]"), format!("{name:?} is listed twice"))),
            Some(p) => set = set.with(p),
            None => errors.push(FieldError::new(
                format!("{field}[{i}]"),
                format!("unknown permission {name:?}; expected resource:action such as audit:read (see GET /api/v1/admin/roles)"),
            )),
        }
    }
    if names.is_empty() {
        errors.push(FieldError::new(field, "at least one permission"));
    }
    if errors.is_empty() { Ok(set) } else { Err(errors) }
}

/// The built-in roles and the custom roles as loaded at one moment.
#[derive(Debug, Default)]
pub struct Catalog {
    custom: HashMap<String, Resolved>,
}

#[derive(Debug)]
struct Resolved {
    role: CustomRole,
    permissions: PermissionSet,
    created_epoch: i64,
}

impl Catalog {
    pub fn new(roles: Vec<CustomRole>) -> Catalog {
        let custom = roles
            .into_iter()
            .map(|role| (role.name.clone(), Resolved { permissions: role.permission_set(), created_epoch: role.created_epoch(), role }))
            .collect();
        Catalog { custom }
    }

    pub fn custom(&self, name: &str) -> Option<&CustomRole> {
        self.custom.get(name).map(|r| &r.role)
    }

    /// Custom roles by name.
    pub fn custom_roles(&self) -> Vec<&CustomRole> {
        let mut roles: Vec<&CustomRole> = self.custom.values().map(|r| &r.role).collect();
        roles.sort_by(|a, b| a.name.cmp(&b.name));
        roles
    }

    pub fn custom_count(&self) -> usize {
        self.custom.len()
    }

    /// A built-in or an existing custom role.
    pub fn knows(&self, name: &str) -> bool {
        BuiltinRole::parse(name).is_some() || self.custom.contains_key(name)
    }

    /// The permissions of one role; unknown names grant nothing.
    pub fn permissions_of_role(&self, name: &str) -> PermissionSet {
        match BuiltinRole::parse(name) {
            Some(builtin) => builtin.permissions(),
            None => self.custom.get(name).map(|r| r.permissions).unwrap_or_default(),
        }
    }

    /// The union of the named roles' permissions; unknown names grant nothing.
    pub fn permissions_of<S: AsRef<str>>(&self, roles: &[S]) -> PermissionSet {
        roles.iter().fold(PermissionSet::empty(), |set, r| set.union(self.permissions_of_role(r.as_ref())))
    }

    /// What an access token issued at `issued_at` (its `iat`) may do. A
    /// custom role created after the token was issued is another role that
    /// reuses a deleted one's name: the token's claim cannot mean it, so it
    /// grants nothing (a recreated name does not revive old tokens).
    pub fn permissions_of_token<S: AsRef<str>>(&self, roles: &[S], issued_at: i64) -> PermissionSet {
        roles.iter().fold(PermissionSet::empty(), |set, r| {
            let name = r.as_ref();
            let granted = match (BuiltinRole::parse(name), self.custom.get(name)) {
                (Some(builtin), _) => builtin.permissions(),
                (None, Some(custom)) if custom.created_epoch <= issued_at => custom.permissions,
                _ => PermissionSet::empty(),
            };
            set.union(granted)
        })
    }

    /// Whether any of the named roles requires two-factor authentication
    /// (built-in roles do not, on their own).
    pub fn requires_2fa<S: AsRef<str>>(&self, roles: &[S]) -> bool {
        roles.iter().any(|r| self.custom.get(r.as_ref()).is_some_and(|c| c.role.require_2fa))
    }
}

/// Custom role names among `roles`, deduplicated.
fn custom_names<S: AsRef<str>>(roles: &[S]) -> BTreeSet<&str> {
    roles.iter().map(AsRef::as_ref).filter(|r| BuiltinRole::parse(r).is_none()).collect()
}

/// The writes that keep holder counts right when a user's roles go from
/// `before` to `after` (both empty-able): +1 on each custom role gained — it
/// must still exist when the transaction lands — and −1 on each lost one the
/// catalog knows. Counts change without a version bump, so assignments never
/// make a pending role edit conflict.
pub fn holder_writes(table: &str, catalog: &Catalog, before: &[String], after: &[String]) -> Result<Vec<Write>> {
    let (before, after) = (custom_names(before), custom_names(after));
    let gained = after.difference(&before).map(|name| (*name, 1i64));
    let lost = before.difference(&after).filter(|name| catalog.custom(name).is_some()).map(|name| (*name, -1i64));
    gained
        .chain(lost)
        .map(|(name, delta)| {
            let update = Update::builder()
                .table_name(table)
                .key("pk", s(PARTITION))
                .key("sk", s(CustomRole::sort_key(name)))
                .update_expression("ADD holders :delta")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":delta", n(delta))
                .build()
                .map_err(|e| Error::internal(e.to_string()))?;
            let conflict = Error::Conflict(format!("the role {name} no longer exists; reload the roles and retry"));
            Ok(Write::raw(TransactWriteItem::builder().update(update).build(), Some(conflict)))
        })
        .collect()
}

type Loader = Arc<dyn Fn() -> BoxFuture<'static, Result<Vec<CustomRole>>> + Send + Sync>;
type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// The per-instance cache of the catalog (cheap to clone; clones share it).
#[derive(Clone)]
pub struct RoleCatalog {
    inner: Arc<Inner>,
}

struct Inner {
    ttl: Duration,
    load: Loader,
    clock: Clock,
    cached: RwLock<Option<(Instant, Arc<Catalog>)>>,
    /// One load at a time: concurrent requests on a cold or stale cache wait
    /// for the same Query instead of each sending one.
    loading: tokio::sync::Mutex<()>,
    loads: AtomicU64,
}

impl std::fmt::Debug for RoleCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleCatalog").field("ttl", &self.inner.ttl).field("loads", &self.loads()).finish()
    }
}

impl RoleCatalog {
    /// The catalog of the roles in `store`, reused for `ttl`.
    pub fn new(store: Store, ttl: Duration) -> RoleCatalog {
        let load: Loader = Arc::new(move || {
            let store = store.clone();
            Box::pin(async move { load_all(&store).await })
        });
        Self::with(ttl, load, Arc::new(Instant::now))
    }

    /// With a given source of roles and clock (unit tests).
    fn with(ttl: Duration, load: Loader, clock: Clock) -> RoleCatalog {
        let inner = Inner { ttl, load, clock, cached: RwLock::new(None), loading: tokio::sync::Mutex::new(()), loads: AtomicU64::new(0) };
        RoleCatalog { inner: Arc::new(inner) }
    }

    /// How many times this instance has read the roles from the table.
    pub fn loads(&self) -> u64 {
        self.inner.loads.load(Ordering::Relaxed)
    }

    fn cached_if_fresh(&self) -> Option<Arc<Catalog>> {
        let cached = self.inner.cached.read().unwrap_or_else(|e| e.into_inner());
        let now = (self.inner.clock)();
        cached.as_ref().filter(|(loaded, _)| now.saturating_duration_since(*loaded) < self.inner.ttl).map(|(_, c)| c.clone())
    }

    /// The catalog, at most `ttl` old (for resolving tokens). Fails closed:
    /// if the roles cannot be read, the request fails rather than use a
    /// definition older than promised.
    pub async fn current(&self) -> Result<Arc<Catalog>> {
        if let Some(catalog) = self.cached_if_fresh() {
            return Ok(catalog);
        }
        let _loading = self.inner.loading.lock().await;
        if let Some(catalog) = self.cached_if_fresh() {
            return Ok(catalog);
        }
        self.load_now().await
    }

    /// The catalog read from the table now (for decisions that grant, and
    /// the roles API); it also becomes the cached one.
    pub async fn fresh(&self) -> Result<Arc<Catalog>> {
        let _loading = self.inner.loading.lock().await;
        self.load_now().await
    }

    /// Forget the cached catalog (after this instance changed a role), so
    /// the next request here reads the roles again. Other instances follow
    /// within their TTL.
    pub fn invalidate(&self) {
        *self.inner.cached.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The catalog needed to judge `roles`: none is read when they are all
    /// built-in (their permissions are constants), else a fresh one.
    pub async fn fresh_for<S: AsRef<str>>(&self, roles: &[S]) -> Result<Arc<Catalog>> {
        if custom_names(roles).is_empty() { Ok(Arc::new(Catalog::default())) } else { self.fresh().await }
    }

    async fn load_now(&self) -> Result<Arc<Catalog>> {
        // Age is counted from before the read, so a slow read never
        // stretches the promised staleness.
        let started = (self.inner.clock)();
        let roles = (self.inner.load)().await?;
        self.inner.loads.fetch_add(1, Ordering::Relaxed);
        let catalog = Arc::new(Catalog::new(roles));
        *self.inner.cached.write().unwrap_or_else(|e| e.into_inner()) = Some((started, catalog.clone()));
        Ok(catalog)
    }

    /// The permissions of an access token's roles, issued at `issued_at`.
    /// Tokens naming only built-in roles never touch the table.
    pub async fn permissions_of_token(&self, roles: &[String], issued_at: i64) -> Result<PermissionSet> {
        if custom_names(roles).is_empty() {
            return Ok(Catalog::default().permissions_of_token(roles, issued_at));
        }
        Ok(self.current().await?.permissions_of_token(roles, issued_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn role(name: &str, perms: &[Permission], require_2fa: bool) -> CustomRole {
        CustomRole::new(name, "test role", PermissionSet::of(perms), require_2fa)
    }

    #[test]
    fn names_are_lower_case_identifiers_and_not_built_in() {
        assert!(check_name("name", "billing_viewer").is_none());
        assert!(check_name("name", "ops2").is_none());
        for bad in ["", "a", "Billing", "2fast", "has-dash", "has space", "_x", &"x".repeat(41)] {
            assert!(check_name("name", bad).is_some(), "{bad:?} accepted");
        }
        assert!(check_name("name", "admin").unwrap().message.contains("built-in"));
    }

    #[test]
    fn permissions_are_checked_one_by_one() {
        let ok = parse_permissions("permissions", &["audit:read".into(), "users:read".into()]).unwrap();
        assert_eq!(ok, PermissionSet::of(&[Permission::AuditRead, Permission::UsersRead]));
        let errors = parse_permissions("permissions", &["audit:read".into(), "users:read".into(), "users:fly".into(), "audit:read".into()]).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["permissions[2]", "permissions[3]"]);
        assert_eq!(parse_permissions("permissions", &[]).unwrap_err()[0].field, "permissions");
    }

    #[test]
    fn catalog_resolves_built_in_and_custom_roles() {
        let catalog = Catalog::new(vec![role("auditor_lite", &[Permission::AuditRead], true)]);
        assert!(catalog.knows("auditor_lite") && catalog.knows("admin") && !catalog.knows("root"));
        let set = catalog.permissions_of(&["auditor_lite", "moderator", "root"]);
        assert!(set.contains(Permission::AuditRead) && set.contains(Permission::ChartsModerate));
        assert!(!set.contains(Permission::UsersWrite));
        assert!(catalog.requires_2fa(&["user", "auditor_lite"]));
        assert!(!catalog.requires_2fa(&["super_admin"]));
        // A stored permission the code no longer knows grants nothing.
        let mut legacy = role("legacy", &[Permission::AuditRead], false);
        legacy.permissions.push("reactor:launch".into());
        assert_eq!(legacy.permission_set(), PermissionSet::of(&[Permission::AuditRead]));
    }

    #[test]
    fn a_recreated_name_does_not_revive_older_tokens() {
        let mut r = role("ops", &[Permission::UsersDelete], false);
        r.created_at = "2026-03-01T12:00:00.500000Z".into();
        let created = chrono::DateTime::parse_from_rfc3339(&r.created_at).unwrap().timestamp();
        let catalog = Catalog::new(vec![r]);
        assert!(catalog.permissions_of_token(&["ops"], created - 60).is_empty());
        // Issued in the second the role was created, or later: granted.
        assert!(catalog.permissions_of_token(&["ops"], created).contains(Permission::UsersDelete));
        assert!(catalog.permissions_of_token(&["ops", "auditor"], created - 60).contains(Permission::AuditRead));
    }

    #[test]
    fn holder_writes_touch_only_custom_roles_that_changed() {
        let catalog = Catalog::new(vec![role("a_role", &[], false), role("b_role", &[], false)]);
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let writes = holder_writes("t", &catalog, &names(&["user", "a_role"]), &names(&["admin", "a_role", "c_role", "c_role"])).unwrap();
        assert_eq!(writes.len(), 1, "only c_role gained; built-ins are not counted");
        let writes = holder_writes("t", &catalog, &names(&["a_role", "b_role", "gone"]), &names(&[])).unwrap();
        assert_eq!(writes.len(), 2, "an unknown name has no count to lower");
        let update = writes[0].item.update().unwrap();
        assert_eq!(update.key()["sk"].as_s().unwrap(), "ROLE#a_role");
        assert_eq!(update.expression_attribute_values().unwrap()[":delta"].as_n().unwrap(), "-1");
    }

    /// A catalog over an in-memory table, with a clock the test moves.
    fn counting_catalog(ttl: Duration, roles: Arc<Mutex<Vec<CustomRole>>>) -> (RoleCatalog, Arc<AtomicU64>) {
        let load: Loader = Arc::new(move || {
            let roles = roles.clone();
            Box::pin(async move {
                // A read takes a while, so concurrent callers overlap.
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(roles.lock().unwrap().clone())
            })
        });
        let (start, seconds) = (Instant::now(), Arc::new(AtomicU64::new(0)));
        let offset = seconds.clone();
        let clock: Clock = Arc::new(move || start + Duration::from_secs(offset.load(Ordering::SeqCst)));
        (RoleCatalog::with(ttl, load, clock), seconds)
    }

    fn advance(clock: &AtomicU64, seconds: u64) {
        clock.fetch_add(seconds, Ordering::SeqCst);
    }

    #[tokio::test]
    async fn cache_is_reused_within_the_ttl_and_reloaded_after() {
        let roles = Arc::new(Mutex::new(vec![role("viewer", &[Permission::AuditRead], false)]));
        let (catalog, clock) = counting_catalog(Duration::from_secs(30), roles.clone());
        let now = chrono::Utc::now().timestamp();
        let token = vec!["viewer".to_string()];

        // Built-in-only tokens never load anything.
        assert!(catalog.permissions_of_token(&["admin".to_string()], now).await.unwrap().contains(Permission::UsersRead));
        assert_eq!(catalog.loads(), 0);

        // Many concurrent requests on a cold cache: one load.
        let results = futures::future::join_all((0..8).map(|_| catalog.permissions_of_token(&token, now))).await;
        assert!(results.iter().all(|r| r.as_ref().unwrap().contains(Permission::AuditRead)));
        assert_eq!(catalog.loads(), 1);

        // The role changes in the table; within the TTL the cache answers.
        roles.lock().unwrap()[0].permissions = vec!["users:read".into()];
        advance(&clock, 29);
        assert!(catalog.permissions_of_token(&token, now).await.unwrap().contains(Permission::AuditRead));
        assert_eq!(catalog.loads(), 1, "a warm cache costs no read");

        // Past the TTL the next request reloads and sees the change.
        advance(&clock, 2);
        let after = catalog.permissions_of_token(&token, now).await.unwrap();
        assert!(after.contains(Permission::UsersRead) && !after.contains(Permission::AuditRead));
        assert_eq!(catalog.loads(), 2);

        // Deleting the role removes its grants once the cache turns over.
        roles.lock().unwrap().clear();
        advance(&clock, 31);
        assert!(catalog.permissions_of_token(&token, now).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn fresh_reads_now_and_refreshes_the_cache() {
        let roles = Arc::new(Mutex::new(vec![]));
        let (catalog, _) = counting_catalog(Duration::from_secs(30), roles.clone());
        assert_eq!(catalog.current().await.unwrap().custom_count(), 0);
        roles.lock().unwrap().push(role("late", &[Permission::AuditRead], false));
        assert_eq!(catalog.current().await.unwrap().custom_count(), 0, "cached");
        assert!(catalog.fresh().await.unwrap().knows("late"));
        assert!(catalog.current().await.unwrap().knows("late"), "fresh replaced the cache");
        assert_eq!(catalog.fresh_for(&["admin", "user"]).await.unwrap().custom_count(), 0, "built-ins need no read");
        assert_eq!(catalog.loads(), 2);
        roles.lock().unwrap().clear();
        catalog.invalidate();
        assert!(!catalog.current().await.unwrap().knows("late"), "invalidated: read again");
        assert_eq!(catalog.loads(), 3);
    }

    #[tokio::test]
    async fn an_unreadable_catalog_fails_closed() {
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fail = failing.clone();
        let load: Loader = Arc::new(move || {
            let fail = fail.load(Ordering::SeqCst);
            Box::pin(async move { if fail { Err(Error::internal("table unavailable")) } else { Ok(vec![role("viewer", &[Permission::AuditRead], false)]) } })
        });
        let (start, offset) = (Instant::now(), Arc::new(AtomicU64::new(0)));
        let seconds = offset.clone();
        let catalog = RoleCatalog::with(Duration::from_secs(30), load, Arc::new(move || start + Duration::from_secs(seconds.load(Ordering::SeqCst))));
        let token = vec!["viewer".to_string()];
        assert!(catalog.permissions_of_token(&token, i64::MAX).await.unwrap().contains(Permission::AuditRead));
        failing.store(true, Ordering::SeqCst);
        advance(&offset, 31);
        // The stale definition is not used past its TTL...
        assert!(catalog.permissions_of_token(&token, i64::MAX).await.is_err());
        // ...while built-in roles keep working without the table.
        assert!(catalog.permissions_of_token(&["auditor".to_string()], i64::MAX).await.unwrap().contains(Permission::AuditRead));
    }
}
