//! `GET /api/v1/compliance/security-recommendations`: checks derived from
//! the deployment's state as it is now, each with what was found (the
//! evidence: ids, names, counts) and the exact fix. A check that passes is
//! listed too (`ok`), so the page shows what was looked at.

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use serde::Serialize;
use shared::domain::integration_health;
use shared::identity::rbac::{BuiltinRole, Permission};
use shared::platform::error::Result;
use shared::store::{QuerySpec, attr_s, s, timestamp};
use utoipa::ToSchema;

use crate::ComplianceState;
use crate::access_review::{self, AccessReview};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = SecurityRecommendationSeverity)]
pub enum Severity {
    High,
    Medium,
    Low,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SecurityRecommendation)]
pub struct Recommendation {
    /// Stable id of the check.
    pub id: &'static str,
    pub title: &'static str,
    /// `ok` or `action_needed`.
    pub status: &'static str,
    pub severity: Severity,
    /// What was found.
    pub finding: String,
    /// The ids, names or values the finding rests on.
    pub evidence: Vec<String>,
    /// The exact fix.
    pub fix: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SecurityRecommendations)]
pub struct Recommendations {
    pub generated_at: String,
    /// Checks needing action first (by severity), then the passing ones.
    pub recommendations: Vec<Recommendation>,
    pub action_needed: u64,
}

fn check(id: &'static str, title: &'static str, severity: Severity, evidence: Vec<String>, finding: String, fix: String, ok: String) -> Recommendation {
    let status = if evidence.is_empty() { "ok" } else { "action_needed" };
    Recommendation { id, title, status, severity, finding: if evidence.is_empty() { ok } else { finding }, evidence, fix }
}

/// Every check, from the access review and the stored state.
pub async fn recommendations(state: &ComplianceState, review: &AccessReview) -> Result<Recommendations> {
    let store = state.platform.store.store();
    let mut out = Vec::new();

    let no_2fa: Vec<String> = review.principals.iter().filter(|p| !p.two_factor).map(|p| format!("{} ({})", p.user_id, p.roles.join(", "))).collect();
    out.push(check(
        "privileged_without_2fa",
        "Privileged accounts without two-factor authentication",
        Severity::High,
        no_2fa.clone(),
        format!("{} privileged accounts sign in with a password alone", no_2fa.len()),
        "Have each enable 2FA (POST /api/v1/auth/2fa/enable, then /2fa/verify), or add their roles to the system setting mfa_required_roles (PUT /api/v1/admin/config) so sign-in requires it.".into(),
        "every privileged account has 2FA".into(),
    ));

    let required = shared::domain::two_factor_policy::required_roles(store).await?;
    let catalog = state.platform.roles.current().await?;
    let unprotected: Vec<String> = BuiltinRole::ALL
        .iter()
        .filter(|r| {
            let perms = r.permissions();
            (perms.contains(Permission::RolesWrite) || perms.contains(Permission::UsersWrite) || perms.contains(Permission::ConfigWrite))
                && !required.iter().any(|q| q == r.as_str())
        })
        .map(|r| r.as_str().to_string())
        .chain(
            shared::identity::roles::load_all(store)
                .await?
                .into_iter()
                .filter(|c| {
                    let perms = catalog.permissions_of_role(&c.name);
                    (perms.contains(Permission::RolesWrite) || perms.contains(Permission::UsersWrite)) && !c.require_2fa && !required.contains(&c.name)
                })
                .map(|c| c.name),
        )
        .collect();
    out.push(check(
        "admin_roles_require_2fa",
        "Roles that can change users, roles or configuration do not require 2FA",
        Severity::High,
        unprotected.clone(),
        format!("holders of {} may sign in without a second factor", unprotected.join(", ")),
        format!(
            "Add {} to mfa_required_roles (PUT /api/v1/admin/config), or set require_2fa on the custom roles (PUT /api/v1/admin/roles/{{name}}).",
            unprotected.join(", ")
        ),
        "every role that can change users, roles or configuration requires 2FA".into(),
    ));

    let stale: Vec<String> = review.principals.iter().filter(|p| p.flags.iter().any(|f| f.starts_with("no sign-in"))).map(|p| p.user_id.clone()).collect();
    out.push(check(
        "stale_privileged_accounts",
        "Privileged accounts not used for 90 days",
        Severity::Medium,
        stale.clone(),
        format!("{} privileged accounts have not signed in for {} days", stale.len(), access_review::UNUSED_AFTER_DAYS),
        "Suspend them (PUT /api/v1/admin/users/{id} {\"status\": \"suspended\"}) or remove their roles (PUT /api/v1/admin/users/{id}/roles).".into(),
        "every privileged account signed in within 90 days".into(),
    ));

    let unused: Vec<String> =
        review.principals.iter().flat_map(|p| p.permissions.iter().filter(|u| u.unused).map(move |u| format!("{}: {}", p.user_id, u.permission))).collect();
    out.push(check(
        "unused_privileges",
        "Privileges held but not used for 90 days",
        Severity::Low,
        unused.clone(),
        format!("{} privileges have gone unused (see GET /api/v1/compliance/access-review)", unused.len()),
        "Remove the roles granting them (PUT /api/v1/admin/users/{id}/roles), or grant a narrower custom role.".into(),
        "every privilege held was used within 90 days".into(),
    ));

    // Keel's OAuth flow always sends a PKCE S256 challenge (functions/auth
    // oauth.rs); listed so the page shows it was checked.
    let providers = shared::identity::oauth::list(store).await?;
    out.push(check(
        "oauth_pkce",
        "OAuth providers signing in without PKCE",
        Severity::High,
        Vec::new(),
        String::new(),
        "None needed: every sign-in uses PKCE (S256).".into(),
        format!("{} providers configured; every authorization request carries a PKCE S256 challenge", providers.len()),
    ));

    let failing: Vec<String> = integration_health::all(store)
        .await?
        .into_iter()
        .filter(|h| h.failing())
        .map(|h| format!("{}: {}", h.name, h.last_error.unwrap_or_default()))
        .collect();
    let failing_endpoints = failing_webhook_endpoints(state).await?;
    let broken: Vec<String> = failing.into_iter().chain(failing_endpoints).collect();
    out.push(check(
        "failing_integrations",
        "Integrations and webhook endpoints failing",
        Severity::Medium,
        broken.clone(),
        format!("{} integrations or endpoints fail (three or more failures in a row)", broken.len()),
        "Check each one's last error (GET /api/v1/integrations/available, GET /api/v1/integrations/webhooks/{id}/deliveries), fix the receiver or its credentials (PUT /api/v1/integrations/{name}/config), and test it (POST /api/v1/integrations/{name}/test).".into(),
        "no integration or webhook endpoint is failing".into(),
    ));

    let data_key = &state.platform.config.data_key_id;
    let rotation = state.clients.kms.get_key_rotation_status().key_id(data_key).send().await;
    let not_rotating = match rotation {
        Ok(status) if status.key_rotation_enabled() => Vec::new(),
        Ok(_) => vec![data_key.clone()],
        // Unknown is not fine: say so rather than pass.
        Err(e) => vec![format!("{data_key}: rotation status unreadable ({})", aws_sdk_kms::error::DisplayErrorContext(&e))],
    };
    out.push(check(
        "data_key_rotation",
        "The data key is not rotated",
        Severity::Medium,
        not_rotating.clone(),
        "automatic yearly rotation of the data key (KMS) is off".into(),
        "Turn it on: aws kms enable-key-rotation --key-id <KeyId> (template.yaml sets EnableKeyRotation: true on DataKey; redeploy restores it).".into(),
        "the data key rotates yearly (KMS automatic rotation)".into(),
    ));

    out.sort_by(|a, b| (a.status == "ok").cmp(&(b.status == "ok")).then(a.severity.cmp(&b.severity)));
    Ok(Recommendations { generated_at: timestamp(Utc::now()), action_needed: out.iter().filter(|r| r.status != "ok").count() as u64, recommendations: out })
}

/// Enabled webhook endpoints whose deliveries all fail (three or more in a
/// row), by id: the integrations function's `WEBHOOK#<id> / HEALTH`.
async fn failing_webhook_endpoints(state: &ComplianceState) -> Result<Vec<String>> {
    let store = state.platform.store.store();
    let spec = QuerySpec { index: Some("gsi1"), key_condition: "gsi1pk = :pk", values: vec![(":pk", s("WEBHOOKS"))], ..QuerySpec::default() };
    let endpoints = store.query_all(&spec).await?;
    let enabled: Vec<(String, String)> = endpoints
        .iter()
        .filter(|e| e.get("enabled").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false))
        .filter_map(|e| Some((attr_s(e, "pk")?.to_string(), "HEALTH".to_string())))
        .collect();
    if enabled.is_empty() {
        return Ok(Vec::new());
    }
    let healths = store.batch_get(&enabled).await?;
    Ok(healths
        .iter()
        .filter(|h| shared::store::from_item::<integration_health::EndpointHealth>((*h).clone()).is_ok_and(|health| health.failing()))
        .filter_map(|h| attr_s(h, "pk").map(|pk| format!("webhook endpoint {}", pk.trim_start_matches("WEBHOOK#"))))
        .collect())
}

/// What to fix in this deployment's security, derived from its state.
#[utoipa::path(get, path = "/api/v1/compliance/security-recommendations", tag = "compliance", responses((status = 200, body = Recommendations)))]
pub async fn get(State(state): State<ComplianceState>) -> Result<Json<Recommendations>> {
    let review = access_review::access_review(&state, Utc::now()).await?;
    Ok(Json(recommendations(&state, &review).await?))
}
