//! Who must use two-factor authentication: holders of the roles the system
//! settings name (`mfa_required_roles`), and of custom roles flagged
//! `require_2fa`. The one place this is decided; sign-in asks it for the
//! scope of a new session.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::audit::Actor;
use crate::domain::system_settings;
use crate::identity::rbac::BuiltinRole;
use crate::identity::roles;
use crate::identity::token::TokenScope;
use crate::identity::two_factor::MfaRecord;
use crate::identity::users::{self, User};
use crate::platform::error::{Error, Result};
use crate::store::Store;

/// The roles whose holders must use 2FA are the system setting
/// `mfa_required_roles` (`system_settings`; default super_admin and admin),
/// read at most every 30 s per process.
const REQUIRED_ROLES_CACHE: Duration = Duration::from_secs(30);

/// Per table (tests run many stacks in one process): when read, and what.
type RolesCache = Mutex<HashMap<String, (Instant, Vec<String>)>>;

fn cache() -> &'static RolesCache {
    static CACHE: OnceLock<RolesCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn remember(table: &str, roles: &[String]) {
    if let Ok(mut cache) = cache().lock() {
        cache.insert(table.to_string(), (Instant::now(), roles.to_vec()));
    }
}

/// The roles that require 2FA, read at most every 30 s per process.
pub async fn required_roles(store: &Store) -> Result<Vec<String>> {
    if let Some((at, roles)) = cache().lock().ok().and_then(|c| c.get(store.table()).cloned())
        && at.elapsed() < REQUIRED_ROLES_CACHE
    {
        return Ok(roles);
    }
    let roles = system_settings::load_current(store).await?.settings.mfa_required_roles;
    remember(store.table(), &roles);
    Ok(roles)
}

/// Whether a principal holding `roles` must use 2FA: one of them is in the
/// configured list, or is a custom role flagged `require_2fa`. The one place
/// this is decided. Custom roles are read fresh (sign-in is not a hot path,
/// and users with only built-in roles cause no read).
pub async fn requires_2fa(store: &Store, roles: &[String]) -> Result<bool> {
    let required = required_roles(store).await?;
    if roles.iter().any(|r| required.contains(r)) {
        return Ok(true);
    }
    if roles.iter().all(|r| BuiltinRole::parse(r).is_some()) {
        return Ok(false);
    }
    let catalog = roles::Catalog::new(roles::load_all(store).await?);
    Ok(catalog.requires_2fa(roles))
}

/// The scope of a new session for `user`, whose 2FA record is `mfa`: limited
/// to enrolment when the roles require 2FA and it is not active.
pub async fn session_scope(store: &Store, user: &User, mfa: Option<&MfaRecord>) -> Result<Option<TokenScope>> {
    let active = mfa.is_some_and(MfaRecord::is_active);
    Ok((!active && requires_2fa(store, &user.roles).await?).then_some(TokenScope::MfaEnrollment))
}

/// Set the roles that require 2FA (each a known role): a new version of the
/// system settings, audited. This process sees it at once, others within 30 s.
pub async fn set_required_roles(store: &crate::audit::Journal, roles: &[String], actor: &Actor) -> Result<Vec<String>> {
    let catalog = roles::Catalog::new(roles::load_all(store).await?);
    let errors = users::check_roles("roles", roles, &catalog);
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    let current = system_settings::load_current(store).await?;
    let mut settings = current.settings.clone();
    settings.mfa_required_roles = roles.clone();
    if settings != current.settings {
        system_settings::commit(store, actor, &current, settings, "roles that require 2FA set from the command line", None).await?;
    }
    remember(store.table(), &roles);
    Ok(roles)
}
