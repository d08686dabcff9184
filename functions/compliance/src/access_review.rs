//! `GET /api/v1/compliance/access-review`: every principal holding
//! privileged permissions (anything beyond the built-in `user` role), when
//! they last signed in, when they last used each privileged permission
//! (from their own audit entries), and whether they have 2FA; each flagged
//! when a privilege has gone unused for `UNUSED_AFTER_DAYS` or the
//! account has not signed in for as long.
//!
//! Reads are not audited (only reads of personal data are), so a read-only
//! permission has no recorded use: it shows `last_used_at: null` with
//! `use_recorded: false`, and is not flagged on that ground alone.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use shared::identity::rbac::{BuiltinRole, Permission, PermissionSet};
use shared::identity::roles::Catalog;
use shared::identity::two_factor::{self, MfaStatus};
use shared::identity::users::{User, from_user_item};
use shared::platform::error::Result;
use shared::store::{QuerySpec, Store, attr_s, s, timestamp};
use utoipa::ToSchema;

use crate::ComplianceState;

/// A privilege unused (or an account not signed in) this long is flagged.
pub const UNUSED_AFTER_DAYS: i64 = 90;
/// How many of a principal's latest audit entries are read for last uses.
const ENTRIES_READ: i32 = 2000;

/// The audited action that uses `permission`, by action name. Only writes
/// are audited: read permissions map to nothing.
pub fn permission_of_action(action: &str) -> Option<Permission> {
    let (resource, verb) = action.split_once('.').unwrap_or((action, ""));
    Some(match (resource, verb) {
        ("user", "assign_roles") | ("role", _) => Permission::RolesWrite,
        ("user", "delete") => Permission::UsersDelete,
        ("user", _) | ("auth", "unlock") | ("mfa", "reset") => Permission::UsersWrite,
        ("chart", "approve" | "reject" | "hide" | "moderate" | "unflag" | "purge") => Permission::ChartsModerate,
        ("config", _) | ("oauth_provider", _) => Permission::ConfigWrite,
        ("audit", "export") => Permission::AuditRead,
        ("data", v) if v.starts_with("export") => Permission::DataExport,
        ("data", v) if v.starts_with("import") => Permission::DataImport,
        ("data", v) if v.starts_with("bulk") => Permission::DataBulk,
        ("data", v) if v.starts_with("erasure") => Permission::DataErase,
        ("request", _) => Permission::DataRequests,
        ("backup", _) => Permission::BackupsManage,
        ("webhook" | "integration", _) => Permission::IntegrationsWrite,
        ("report", v) if !v.starts_with("share.view") => Permission::ReportsWrite,
        ("analytics", "refresh") => Permission::AnalyticsRefresh,
        ("analytics", v) if v.starts_with("segment") => Permission::AnalyticsSegmentsWrite,
        ("analytics", v) if v.starts_with("insight") => Permission::AnalyticsInsightsWrite,
        _ => return None,
    })
}

/// Whether any audited action uses `permission`.
fn use_is_recorded(permission: Permission) -> bool {
    const ACTIONS: &[&str] = &[
        "user.assign_roles",
        "user.delete",
        "user.update",
        "chart.approve",
        "config.update",
        "audit.export",
        "data.export",
        "data.import.start",
        "data.bulk_update",
        "data.erasure_complete",
        "request.create",
        "backup.create",
        "webhook.created",
        "report.generate",
        "analytics.refresh",
        "analytics.segment.create",
        "analytics.insight.status",
    ];
    ACTIONS.iter().any(|a| permission_of_action(a) == Some(permission))
}

/// Permissions beyond what every signed-up user holds.
pub fn privileged(set: PermissionSet) -> Vec<Permission> {
    let baseline = BuiltinRole::User.permissions();
    set.iter().filter(|p| !baseline.contains(*p)).collect()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PermissionUse {
    pub permission: String,
    /// The last audited action that used it.
    pub last_used_at: Option<String>,
    pub last_action: Option<String>,
    /// Whether using this permission leaves an audit entry at all.
    pub use_recorded: bool,
    /// Unused for `UNUSED_AFTER_DAYS` (only where use is recorded).
    pub unused: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PrincipalReview {
    pub user_id: String,
    pub email: String,
    pub roles: Vec<String>,
    pub status: String,
    pub created_at: String,
    pub last_sign_in_at: Option<String>,
    pub two_factor: bool,
    pub permissions: Vec<PermissionUse>,
    /// Why this principal needs a look (empty: nothing to act on).
    pub flags: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ComplianceAccessReview)]
pub struct AccessReview {
    pub generated_at: String,
    pub unused_after_days: i64,
    pub principals: Vec<PrincipalReview>,
    /// Principals with at least one flag.
    pub flagged: u64,
    pub without_two_factor: u64,
}

/// Every active or suspended user holding a role other than `user` (gsi3
/// `USERS`, filtered: the review reads every user once).
pub async fn privileged_users(store: &Store) -> Result<Vec<User>> {
    let spec = QuerySpec {
        index: Some("gsi3"),
        key_condition: "gsi3pk = :pk",
        filter: "(size(#roles) > :one OR NOT contains(#roles, :user)) AND attribute_not_exists(deleted_at)",
        names: vec![("#roles", "roles")],
        values: vec![(":pk", s("USERS")), (":one", shared::store::n(1)), (":user", s("user"))],
        ..QuerySpec::default()
    };
    store.query_all(&spec).await?.into_iter().map(from_user_item).collect()
}

/// Each action's latest time among a principal's newest audit entries.
async fn last_actions(state: &ComplianceState, user_id: &str) -> Result<BTreeMap<String, String>> {
    let journal = &state.platform.store;
    let Some(pseudonym) = journal.subject_keys()?.pseudonym_of(journal.store(), user_id).await? else { return Ok(BTreeMap::new()) };
    let pk = format!("ACTOR#{pseudonym}");
    let spec = QuerySpec { index: Some("gsi1"), key_condition: "gsi1pk = :pk", values: vec![(":pk", s(pk))], forward: false, ..QuerySpec::default() };
    let (items, _) = journal.store().query_filled(&spec, None, ENTRIES_READ, 20).await?;
    let mut last = BTreeMap::new();
    for item in &items {
        if attr_s(item, "outcome") != Some("success") {
            continue;
        }
        if let (Some(action), Some(ts)) = (attr_s(item, "action"), attr_s(item, "ts")) {
            last.entry(action.to_string()).or_insert_with(|| ts.to_string());
        }
    }
    Ok(last)
}

fn older_than(at: Option<&str>, now: DateTime<Utc>, days: i64) -> bool {
    at.and_then(|t| DateTime::parse_from_rfc3339(t).ok()).is_none_or(|t| now - t.with_timezone(&Utc) > Duration::days(days))
}

/// One principal's review.
pub fn review(user: &User, catalog: &Catalog, two_factor: bool, actions: &BTreeMap<String, String>, now: DateTime<Utc>) -> Option<PrincipalReview> {
    let permissions = privileged(catalog.permissions_of(&user.roles));
    if permissions.is_empty() {
        return None;
    }
    let mut flags = Vec::new();
    let uses: Vec<PermissionUse> = permissions
        .into_iter()
        .map(|permission| {
            let last = actions.iter().filter(|(a, _)| permission_of_action(a) == Some(permission)).max_by(|a, b| a.1.cmp(b.1));
            let recorded = use_is_recorded(permission);
            let unused = recorded && older_than(last.map(|(_, t)| t.as_str()), now, UNUSED_AFTER_DAYS);
            PermissionUse {
                permission: permission.as_str().to_string(),
                last_used_at: last.map(|(_, t)| t.clone()),
                last_action: last.map(|(a, _)| a.clone()),
                use_recorded: recorded,
                unused,
            }
        })
        .collect();
    // A new account has had no time to use anything yet.
    let established = older_than(Some(&user.created_at), now, UNUSED_AFTER_DAYS);
    if !two_factor {
        flags.push("privileged without two-factor authentication: enable it (POST /api/v1/auth/2fa/enable) or require it for the role".to_string());
    }
    if established && older_than(user.last_login_at.as_deref(), now, UNUSED_AFTER_DAYS) {
        flags.push(format!("no sign-in for {UNUSED_AFTER_DAYS} days: suspend the account or remove its roles"));
    }
    let unused: Vec<&str> = uses.iter().filter(|u| u.unused).map(|u| u.permission.as_str()).collect();
    if established && !unused.is_empty() {
        flags.push(format!("unused for {UNUSED_AFTER_DAYS} days: {}; remove the roles granting them", unused.join(", ")));
    }
    Some(PrincipalReview {
        user_id: user.id.clone(),
        email: user.email.clone(),
        roles: user.roles.clone(),
        status: user.status.as_str().to_string(),
        created_at: user.created_at.clone(),
        last_sign_in_at: user.last_login_at.clone(),
        two_factor,
        permissions: uses,
        flags,
    })
}

/// The review of every privileged principal, at `now`.
pub async fn access_review(state: &ComplianceState, now: DateTime<Utc>) -> Result<AccessReview> {
    let store = state.platform.store.store();
    let catalog = state.platform.roles.current().await?;
    let users = privileged_users(store).await?;
    let mut principals: Vec<PrincipalReview> = futures::stream::iter(users)
        .map(|user| {
            let catalog = catalog.clone();
            async move {
                let mfa = two_factor::get(store, &user.id).await?;
                let actions = last_actions(state, &user.id).await?;
                Ok::<_, shared::Error>(review(&user, &catalog, mfa.is_some_and(|m| m.status == MfaStatus::Active), &actions, now))
            }
        })
        .buffered(8)
        .try_filter_map(|r| async move { Ok(r) })
        .try_collect()
        .await?;
    principals.sort_by(|a, b| b.flags.len().cmp(&a.flags.len()).then_with(|| a.email.cmp(&b.email)));
    Ok(AccessReview {
        generated_at: timestamp(now),
        unused_after_days: UNUSED_AFTER_DAYS,
        flagged: principals.iter().filter(|p| !p.flags.is_empty()).count() as u64,
        without_two_factor: principals.iter().filter(|p| !p.two_factor).count() as u64,
        principals,
    })
}

/// Who holds privileged permissions, and whether they still use them.
#[utoipa::path(get, path = "/api/v1/compliance/access-review", tag = "compliance", responses((status = 200, body = AccessReview)))]
pub async fn get(State(state): State<ComplianceState>) -> Result<Json<AccessReview>> {
    Ok(Json(access_review(&state, Utc::now()).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audited_actions_map_to_the_permissions_they_use() {
        assert_eq!(permission_of_action("user.assign_roles"), Some(Permission::RolesWrite));
        assert_eq!(permission_of_action("user.update"), Some(Permission::UsersWrite));
        assert_eq!(permission_of_action("chart.approve"), Some(Permission::ChartsModerate));
        assert_eq!(permission_of_action("data.bulk_update"), Some(Permission::DataBulk));
        assert_eq!(permission_of_action("backup.restore"), Some(Permission::BackupsManage));
        assert_eq!(permission_of_action("auth.login"), None);
        assert_eq!(permission_of_action("chart.create"), None, "every user may create charts");
        assert!(use_is_recorded(Permission::RolesWrite));
        assert!(!use_is_recorded(Permission::UsersRead));
    }

    #[test]
    fn the_baseline_user_holds_nothing_privileged() {
        assert!(privileged(BuiltinRole::User.permissions()).is_empty());
        assert!(privileged(BuiltinRole::SuperAdmin.permissions()).contains(&Permission::RolesWrite));
    }
}

/// A month's recorded review (`ACCESSREVIEW#<yyyy-mm> / REVIEW`, listed on
/// gsi1 `ACCESSREVIEWS`): what the monthly run found, kept as evidence.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
#[schema(as = ComplianceRecordedAccessReview)]
pub struct RecordedReview {
    /// `yyyy-mm`.
    pub month: String,
    pub generated_at: String,
    pub principals: u64,
    pub flagged: u64,
    pub without_two_factor: u64,
    /// The flagged principals and their flags.
    #[schema(value_type = Vec<Object>)]
    pub findings: Vec<serde_json::Value>,
}

pub const REVIEWS_LIST_PK: &str = "ACCESSREVIEWS";

fn review_pk(month: &str) -> String {
    format!("ACCESSREVIEW#{month}")
}

/// The monthly review: computed and recorded once per calendar month (with
/// its audit entry, in one transaction); run again in the same month, it
/// returns the one recorded. The schedule fires it on the 1st; the local
/// stack whenever a month has none.
pub async fn record_monthly(state: &ComplianceState, now: DateTime<Utc>) -> Result<(RecordedReview, bool)> {
    let month = now.format("%Y-%m").to_string();
    let store = &state.platform.store;
    if let Some(item) = store.get_item(&review_pk(&month), "REVIEW").await? {
        return Ok((shared::store::from_item(item)?, false));
    }
    let review = access_review(state, now).await?;
    let recorded = RecordedReview {
        month: month.clone(),
        generated_at: review.generated_at.clone(),
        principals: review.principals.len() as u64,
        flagged: review.flagged,
        without_two_factor: review.without_two_factor,
        findings: review
            .principals
            .iter()
            .filter(|p| !p.flags.is_empty())
            .map(|p| serde_json::json!({"user_id": p.user_id, "roles": p.roles, "flags": p.flags}))
            .collect(),
    };
    let mut item = shared::store::to_item(&recorded)?;
    item.insert("pk".into(), s(review_pk(&month)));
    item.insert("sk".into(), s("REVIEW"));
    item.insert("gsi1pk".into(), s(REVIEWS_LIST_PK));
    item.insert("gsi1sk".into(), s(month.clone()));
    item.insert("type".into(), s("access_review"));
    let write = shared::store::Write::put_new(store.table(), item, shared::Error::Conflict(format!("the access review of {month} was recorded meanwhile")))?;
    let audit = shared::audit::AuditEntry::at(now, &shared::audit::Actor::system("access-review"), "compliance.access_review", "access_review", &month)
        .reason(format!("{} privileged principals, {} flagged, {} without 2FA", recorded.principals, recorded.flagged, recorded.without_two_factor));
    match store.commit(vec![write], &audit).await {
        Ok(()) => Ok((recorded, true)),
        // A concurrent run recorded it first: that one stands.
        Err(shared::Error::Conflict(_)) => {
            let item = store.get_item(&review_pk(&month), "REVIEW").await?.ok_or_else(|| shared::Error::internal("access review vanished"))?;
            Ok((shared::store::from_item(item)?, false))
        }
        Err(e) => Err(e),
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ComplianceAccessReviewHistory)]
pub struct ReviewHistory {
    /// Newest first, at most 24.
    pub reviews: Vec<RecordedReview>,
}

/// The recorded monthly reviews, newest first.
#[utoipa::path(get, path = "/api/v1/compliance/access-reviews", tag = "compliance", responses((status = 200, body = ReviewHistory)))]
pub async fn history(State(state): State<ComplianceState>) -> Result<Json<ReviewHistory>> {
    let spec =
        QuerySpec { index: Some("gsi1"), key_condition: "gsi1pk = :pk", values: vec![(":pk", s(REVIEWS_LIST_PK))], forward: false, ..QuerySpec::default() };
    let (items, _) = state.platform.store.query_filled(&spec, None, 24, 5).await?;
    Ok(Json(ReviewHistory { reviews: items.into_iter().map(shared::store::from_item).collect::<Result<_>>()? }))
}
