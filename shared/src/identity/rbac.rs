//! Role-based access control. Permissions are `resource:action` values;
//! built-in roles map to fixed sets of them (custom roles, stored in the
//! table, are resolved by `roles::RoleCatalog`). Access is denied unless a
//! route's declared permission is held (see `http::Route`).

use serde::{Deserialize, Serialize};

macro_rules! permissions {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// A `resource:action` permission.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Permission { $($variant),+ }

        impl Permission {
            pub const ALL: &'static [Permission] = &[$(Permission::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Permission::$variant => $name),+ }
            }

            pub fn parse(s: &str) -> Option<Permission> {
                match s { $($name => Some(Permission::$variant),)+ _ => None }
            }
        }
    };
}

permissions! {
    UsersRead => "users:read",
    UsersWrite => "users:write",
    UsersDelete => "users:delete",
    PiiRead => "pii:read",
    RolesRead => "roles:read",
    RolesWrite => "roles:write",
    AuditRead => "audit:read",
    ChartsRead => "charts:read",
    ChartsModerate => "charts:moderate",
    ConfigRead => "config:read",
    ConfigWrite => "config:write",
    AnalyticsRead => "analytics:read",
    // Recompute the analytics rollups on demand (a job).
    AnalyticsRefresh => "analytics:refresh",
    // Act on analytics insights: move them through their lifecycle.
    AnalyticsInsightsWrite => "analytics:insights:write",
    // Create, replace and delete custom analytics segments.
    AnalyticsSegmentsWrite => "analytics:segments:write",
    ReportsRead => "reports:read",
    ReportsWrite => "reports:write",
    DataExport => "data:export",
    DataImport => "data:import",
    DataBulk => "data:bulk",
    // See and manage anyone's GDPR/CCPA subject requests (export another
    // user's data, list every request); erase a user.
    DataRequests => "data:requests",
    DataErase => "data:erase",
    GdprManage => "gdpr:manage",
    ComplianceRead => "compliance:read",
    // Acknowledge security events (the detectors' findings), with a note.
    SecurityRespond => "security:respond",
    IntegrationsRead => "integrations:read",
    IntegrationsWrite => "integrations:write",
    SearchRead => "search:read",
    WorkflowsRead => "workflows:read",
    WorkflowsWrite => "workflows:write",
    SystemRead => "system:read",
    // Take, list, verify and restore backups of the whole table.
    BackupsManage => "backups:manage",
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of permissions as a bit set (there are fewer than 64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermissionSet(u64);

impl PermissionSet {
    pub const fn empty() -> Self {
        PermissionSet(0)
    }

    pub fn of(perms: &[Permission]) -> Self {
        perms.iter().fold(Self::empty(), |set, p| set.with(*p))
    }

    pub fn all() -> Self {
        Self::of(Permission::ALL)
    }

    pub const fn with(self, p: Permission) -> Self {
        PermissionSet(self.0 | (1 << p as u8))
    }

    pub const fn contains(self, p: Permission) -> bool {
        self.0 & (1 << p as u8) != 0
    }

    pub const fn union(self, other: Self) -> Self {
        PermissionSet(self.0 | other.0)
    }

    pub const fn intersection(self, other: Self) -> Self {
        PermissionSet(self.0 & other.0)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn is_subset_of(self, other: Self) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL.iter().copied().filter(move |p| self.contains(*p))
    }

    /// The first permission of `self` (in declaration order) that `held`
    /// lacks: what a 403 names when someone reaches beyond their own rights.
    pub fn first_missing_from(self, held: PermissionSet) -> Option<Permission> {
        self.iter().find(|p| !held.contains(*p))
    }

    /// The permissions as `resource:action` strings, in declaration order.
    pub fn names(self) -> Vec<String> {
        self.iter().map(|p| p.as_str().to_string()).collect()
    }
}

/// The built-in roles: constant, readable through the roles API, never
/// editable. Custom roles (`roles::CustomRole`) map to permission sets the
/// same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinRole {
    SuperAdmin,
    Admin,
    Moderator,
    Analyst,
    Support,
    Auditor,
    User,
}

impl BuiltinRole {
    pub const ALL: &'static [BuiltinRole] = &[
        BuiltinRole::SuperAdmin,
        BuiltinRole::Admin,
        BuiltinRole::Moderator,
        BuiltinRole::Analyst,
        BuiltinRole::Support,
        BuiltinRole::Auditor,
        BuiltinRole::User,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BuiltinRole::SuperAdmin => "super_admin",
            BuiltinRole::Admin => "admin",
            BuiltinRole::Moderator => "moderator",
            BuiltinRole::Analyst => "analyst",
            BuiltinRole::Support => "support",
            BuiltinRole::Auditor => "auditor",
            BuiltinRole::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<BuiltinRole> {
        Self::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    /// What the role is for (shown by `GET /api/v1/admin/roles` and in
    /// docs/roles.md).
    pub fn description(self) -> &'static str {
        match self {
            BuiltinRole::SuperAdmin => "Everything, including defining roles and assigning them",
            BuiltinRole::Admin => "Everything but changing roles",
            BuiltinRole::Moderator => "Reviews content; sees users without personal data",
            BuiltinRole::Analyst => "Analytics, reports and exports",
            BuiltinRole::Support => "Helps users: reads and edits their accounts",
            BuiltinRole::Auditor => "Reads evidence (audit log, users, roles, configuration); changes nothing",
            BuiltinRole::User => "An end user of the app: self-service only",
        }
    }

    pub fn permissions(self) -> PermissionSet {
        use Permission::*;
        match self {
            BuiltinRole::SuperAdmin => PermissionSet::all(),
            // Everything but changing roles, which stays with super admins.
            BuiltinRole::Admin => PermissionSet::of(&[
                UsersRead,
                UsersWrite,
                UsersDelete,
                PiiRead,
                RolesRead,
                AuditRead,
                ChartsRead,
                ChartsModerate,
                ConfigRead,
                ConfigWrite,
                AnalyticsRead,
                AnalyticsRefresh,
                AnalyticsInsightsWrite,
                AnalyticsSegmentsWrite,
                ReportsRead,
                ReportsWrite,
                DataExport,
                DataImport,
                DataBulk,
                DataRequests,
                DataErase,
                GdprManage,
                ComplianceRead,
                SecurityRespond,
                IntegrationsRead,
                IntegrationsWrite,
                SearchRead,
                WorkflowsRead,
                WorkflowsWrite,
                SystemRead,
                BackupsManage,
            ]),
            // Moderators see users without personal data, and act on content.
            BuiltinRole::Moderator => PermissionSet::of(&[UsersRead, ChartsRead, ChartsModerate, SearchRead]),
            // Analysts define the custom segments they analyse and act on
            // insights, as they write reports.
            BuiltinRole::Analyst => PermissionSet::of(&[
                AnalyticsRead,
                AnalyticsSegmentsWrite,
                AnalyticsInsightsWrite,
                ReportsRead,
                ReportsWrite,
                ChartsRead,
                SearchRead,
                DataExport,
            ]),
            BuiltinRole::Support => PermissionSet::of(&[UsersRead, UsersWrite, PiiRead, ChartsRead, SearchRead]),
            // Auditors read everything that is evidence, and change nothing.
            BuiltinRole::Auditor => PermissionSet::of(&[AuditRead, UsersRead, RolesRead, ConfigRead, ComplianceRead, SystemRead]),
            // End users act only on themselves (self-service routes).
            BuiltinRole::User => PermissionSet::empty(),
        }
    }
}

/// The union of the permissions of the named built-in roles; other names
/// grant nothing here (deny by default). Custom roles are resolved by
/// `roles::Catalog::permissions_of`.
pub fn permissions_of<S: AsRef<str>>(roles: &[S]) -> PermissionSet {
    roles.iter().filter_map(|r| BuiltinRole::parse(r.as_ref())).fold(PermissionSet::empty(), |set, role| set.union(role.permissions()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_fit_the_bit_set() {
        assert!(Permission::ALL.len() < 64);
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(*p));
            assert!(p.as_str().contains(':'));
        }
    }

    #[test]
    fn unknown_roles_grant_nothing() {
        assert_eq!(permissions_of(&["root", "superadmin"]), PermissionSet::empty());
    }

    #[test]
    fn roles_union() {
        let set = permissions_of(&["moderator", "auditor"]);
        assert!(set.contains(Permission::ChartsModerate));
        assert!(set.contains(Permission::AuditRead));
        assert!(!set.contains(Permission::UsersWrite));
    }

    #[test]
    fn first_missing_names_what_is_not_held() {
        let held = PermissionSet::of(&[Permission::AuditRead, Permission::UsersRead]);
        assert_eq!(PermissionSet::of(&[Permission::AuditRead]).first_missing_from(held), None);
        assert_eq!(PermissionSet::of(&[Permission::UsersRead, Permission::RolesWrite]).first_missing_from(held), Some(Permission::RolesWrite));
        assert_eq!(held.names(), vec!["users:read", "audit:read"]);
    }

    #[test]
    fn super_admin_holds_all_and_admin_cannot_change_roles() {
        assert_eq!(BuiltinRole::SuperAdmin.permissions(), PermissionSet::all());
        assert!(!BuiltinRole::Admin.permissions().contains(Permission::RolesWrite));
        assert!(BuiltinRole::Admin.permissions().is_subset_of(PermissionSet::all()));
        assert!(!BuiltinRole::Auditor.permissions().contains(Permission::UsersWrite));
    }

    #[test]
    fn only_admins_handle_subject_requests_and_erasure() {
        for role in BuiltinRole::ALL {
            let admin = matches!(role, BuiltinRole::SuperAdmin | BuiltinRole::Admin);
            assert_eq!(role.permissions().contains(Permission::DataRequests), admin, "{role:?}");
            assert_eq!(role.permissions().contains(Permission::DataErase), admin, "{role:?}");
        }
        assert_eq!(Permission::parse("data:requests"), Some(Permission::DataRequests));
        assert_eq!(Permission::parse("data:erase"), Some(Permission::DataErase));
    }
}
