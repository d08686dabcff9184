//! Every route × every built-in role, with the exact outcome the route's
//! rule gives (`Access::need`): 403 naming the missing permission, or the
//! status the route answers a caller it admits (`admitted_status`); rules
//! that look at the body or at whom a request is about are probed once per
//! case. Public routes need no token; the others refuse none. (The same
//! walk for custom roles is in `roles.rs`.)

use http::Method;
use serde_json::{Value, json};
use shared::http::{Facts, Route};
use shared::identity::rbac::{BuiltinRole, PermissionSet};
use shared::identity::users::User;

use crate::helpers::TestApp;

pub fn all_routes() -> Vec<&'static Route> {
    auth::ROUTES
        .iter()
        .chain(admin::ROUTES.iter())
        .chain(data::ROUTES.iter())
        .chain(analytics::ROUTES.iter())
        .chain(reports::ROUTES.iter())
        .chain(search::ROUTES.iter())
        .chain(integrations::ROUTES.iter())
        .chain(compliance::ROUTES.iter())
        .chain(workflows::ROUTES.iter())
        .collect()
}

/// A route's path with its parameters filled in (a chart id that names no
/// chart: access is decided before the handler looks).
pub fn concrete(path: &str, user_id: &str, role_name: &str) -> String {
    fill(path, user_id, role_name).0
}

/// A route's path with its parameters filled in, and the parameters (what
/// the gate sees as the matched path parameters).
pub fn fill(path: &str, user_id: &str, role_name: &str) -> (String, Vec<(&'static str, String)>) {
    let fresh = || uuid::Uuid::now_v7().to_string();
    let values: [(&'static str, String); 18] = [
        ("user_id", user_id.to_string()),
        ("name", role_name.to_string()),
        ("provider", "no-such-provider".to_string()),
        ("chart_id", fresh()),
        // Audit entry ids are UUIDv7; a fresh one names no entry (404 when allowed).
        ("entry_id", fresh()),
        // Job ids are UUIDv7; a fresh one names no job (404 when allowed).
        ("job_id", fresh()),
        // Subject request ids likewise.
        ("request_id", fresh()),
        // Custom analytics segments likewise.
        ("segment_id", fresh()),
        ("insight_id", fresh()),
        ("report_id", fresh()),
        ("share_id", fresh()),
        ("schedule_id", fresh()),
        // A saved search.
        ("id", fresh()),
        // A backup (ids are job ids, UUIDv7).
        ("backup_id", fresh()),
        // A workflow run; two versions of a workflow.
        ("run_id", fresh()),
        ("from", "1".to_string()),
        ("to", "2".to_string()),
        // A share token that names no link.
        ("token", "no-such-share-token".to_string()),
    ];
    let mut filled = path.to_string();
    let mut params = Vec::new();
    for (name, value) in values {
        let placeholder = format!("{{{name}}}");
        if filled.contains(&placeholder) {
            filled = filled.replace(&placeholder, &value);
            params.push((name, value));
        }
    }
    (filled, params)
}

/// What a caller the route admits gets for the walk's default probe: no body
/// for GET and DELETE, `{}` for POST and PUT, path ids that name nothing
/// (except `{user_id}`: a fresh user with role `user`, and `{name}`: a fresh
/// custom role the caller could have granted). Derived from what each route
/// does with that request.
pub fn admitted_status(method: &Method, path: &str) -> u16 {
    match (method.as_str(), path.trim_start_matches("/api/v1")) {
        // auth: `{}` lacks the required fields.
        ("POST", "/auth/login") => 400,
        ("POST", "/auth/refresh") => 400,
        ("POST", "/auth/logout") => 400,
        ("POST", "/auth/invitations/accept") => 400,
        // A new secret for a caller without 2FA.
        ("POST", "/auth/2fa/enable") => 200,
        ("POST", "/auth/2fa/verify") => 400,
        ("POST", "/auth/2fa/disable") => 400,
        ("POST", "/auth/2fa/recovery-codes") => 400,
        // No provider is configured.
        ("POST", "/auth/oauth/{provider}") => 404,
        ("GET", "/auth/oauth/{provider}/callback") => 404,
        // A form post (response_mode=form_post): the JSON probe is the wrong media type.
        ("POST", "/auth/oauth/{provider}/callback") => 415,
        ("POST", "/auth/oauth/link/confirm") => 400,
        ("GET", "/auth/identities") => 200,
        ("DELETE", "/auth/identities/{provider}") => 404,
        ("GET", "/auth/jwks") => 200,
        ("GET", "/openapi.json") => 200,
        // admin: lists and reads answer 200, fresh ids 404, `{}` bodies fail validation.
        ("POST", "/admin/users") => 400,
        ("GET", "/admin/users") => 200,
        ("GET", "/admin/users/{user_id}") => 200,
        ("PUT", "/admin/users/{user_id}") => 400,
        // The target holds only `user`, which grants nothing to bound the delete.
        ("DELETE", "/admin/users/{user_id}") => 204,
        ("POST", "/admin/users/{user_id}/unlock") => 200,
        ("POST", "/admin/users/{user_id}/2fa/reset") => 400,
        ("PUT", "/admin/users/{user_id}/roles") => 400,
        ("GET", "/admin/roles") => 200,
        ("POST", "/admin/roles") => 400,
        ("GET", "/admin/roles/{name}") => 200,
        ("PUT", "/admin/roles/{name}") => 400,
        // Nobody holds the fresh role.
        ("DELETE", "/admin/roles/{name}") => 204,
        ("GET", "/admin/audit-logs") => 200,
        ("GET", "/admin/audit-logs/verify") => 200,
        // Every field is optional: the whole log, as a job.
        ("POST", "/admin/audit-logs/export") => 202,
        ("GET", "/admin/audit-logs/{entry_id}") => 404,
        ("GET", "/admin/charts") => 200,
        ("GET", "/admin/charts/queue") => 200,
        ("GET", "/admin/charts/{chart_id}") => 404,
        ("POST", "/admin/charts/{chart_id}/moderate") => 400,
        ("POST", "/admin/charts/moderate") => 400,
        ("GET", "/admin/system/config") => 200,
        ("PUT", "/admin/system/config") => 400,
        ("GET", "/admin/system/config/history") => 200,
        ("POST", "/admin/system/config/rollback") => 400,
        ("GET", "/admin/analytics") => 200,
        ("GET", "/admin/system/health") => 200,
        ("GET", "/admin/system/metrics") => 200,
        // Every filter is optional: the last hour's lines.
        ("GET", "/admin/logs") => 200,
        ("GET", "/admin/uptime") => 200,
        // backups: `{}` has no kind / no target table; the list answers; a fresh id is missing.
        ("POST", "/admin/backups") => 400,
        ("GET", "/admin/backups") => 200,
        ("GET", "/admin/backups/{backup_id}") => 404,
        ("POST", "/admin/backups/{backup_id}/verify") => 404,
        ("POST", "/admin/backups/{backup_id}/restore") => 400,
        // data
        // `{}`: no dataset (one's own data), but no format.
        ("POST", "/data/export") => 400,
        ("GET", "/data/jobs") => 200,
        ("GET", "/data/jobs/{job_id}") => 404,
        ("DELETE", "/data/jobs/{job_id}") => 404,
        ("POST", "/data/import") => 400,
        ("GET", "/data/import/{job_id}") => 404,
        ("POST", "/data/import/{job_id}/start") => 404,
        ("POST", "/data/bulk/update") => 400,
        ("POST", "/data/bulk/delete") => 400,
        ("POST", "/data/bulk/restore") => 400,
        ("GET", "/data/bulk/{job_id}") => 404,
        // `{}`: an export of one's own data, recorded and queued.
        ("POST", "/data/export/gdpr") => 202,
        ("GET", "/data/requests") => 200,
        ("GET", "/data/requests/{request_id}") => 404,
        // The target is another user (a plain `user`): recorded and queued.
        ("DELETE", "/data/user/{user_id}") => 202,
        ("GET", "/data/requests/{request_id}/certificate") => 404,
        // analytics: zero figures before the first refresh; a refresh is queued.
        ("GET", "/analytics/revenue") => 200,
        ("GET", "/analytics/business") => 200,
        ("GET", "/analytics/segments") => 200,
        ("POST", "/analytics/refresh") => 202,
        // `{}`: no rules.
        ("POST", "/analytics/segments/custom/preview") => 400,
        ("GET", "/analytics/segments/custom") => 200,
        ("POST", "/analytics/segments/custom") => 400,
        ("GET", "/analytics/segments/custom/{segment_id}") => 404,
        // `{}`: no version, name or rules.
        ("PUT", "/analytics/segments/custom/{segment_id}") => 400,
        ("DELETE", "/analytics/segments/custom/{segment_id}") => 404,
        // Nothing fitted yet: empty predictions and insights, no such insight.
        ("GET", "/analytics/predictions") => 200,
        ("GET", "/analytics/insights") => 200,
        ("GET", "/analytics/insights/{insight_id}") => 404,
        // reports: `{}` names no template or spec; lists and the catalog answer; a fresh id is missing.
        ("POST", "/reports/generate") => 400,
        ("POST", "/reports/validate") => 400,
        ("GET", "/reports/templates") => 200,
        ("GET", "/reports") => 200,
        ("GET", "/reports/{report_id}") => 404,
        ("POST", "/reports/{report_id}/share") => 404,
        ("GET", "/reports/{report_id}/shares") => 404,
        ("DELETE", "/reports/{report_id}/share/{share_id}") => 404,
        ("GET", "/reports/shared/{token}") => 404,
        ("POST", "/reports/shared/{token}") => 404,
        // schedules: `{}` lacks cron and recipients; a fresh id is missing.
        ("POST", "/reports/schedules") => 400,
        ("GET", "/reports/schedules") => 200,
        ("GET", "/reports/schedules/{schedule_id}") => 404,
        ("PUT", "/reports/schedules/{schedule_id}") => 400,
        ("DELETE", "/reports/schedules/{schedule_id}") => 404,
        ("GET", "/reports/schedules/{schedule_id}/runs") => 404,
        // `{}`: no status.
        ("PATCH", "/analytics/insights/{insight_id}") => 400,
        // search: `{}` has no query (the advanced form lists what the caller
        // may see), no name, no click; lists answer; a fresh id is missing.
        ("POST", "/search") => 400,
        ("POST", "/search/advanced") => 200,
        ("GET", "/search/suggestions") => 400,
        ("POST", "/search/save") => 400,
        ("GET", "/search/saved") => 200,
        ("DELETE", "/search/saved/{id}") => 404,
        ("POST", "/search/click") => 400,
        ("GET", "/search/analytics") => 200,
        // integrations: `{}` has no url; a fresh id names no webhook (an
        // update's fields are all optional, so `{}` reaches the lookup).
        ("POST", "/integrations/webhooks") => 400,
        ("GET", "/integrations/webhooks") => 200,
        ("GET", "/integrations/webhooks/{id}") => 404,
        ("PUT", "/integrations/webhooks/{id}") => 404,
        ("DELETE", "/integrations/webhooks/{id}") => 404,
        ("POST", "/integrations/webhooks/{id}/rotate-secret") => 404,
        ("GET", "/integrations/webhooks/{id}/deliveries") => 404,
        ("POST", "/integrations/webhooks/deliveries/{id}/replay") => 404,
        // The hub: `{name}` is filled with a role's name, no integration;
        // `{}` has no `values`.
        ("GET", "/integrations/available") => 200,
        ("PUT", "/integrations/{name}/config") => 400,
        ("POST", "/integrations/{name}/test") => 404,
        // Calendar sync: `{}` has no target; the caller has no feed and no
        // connected calendar; a made-up feed token is no feed.
        ("POST", "/integrations/calendar/sync") => 400,
        ("DELETE", "/integrations/calendar/feeds") => 404,
        ("DELETE", "/integrations/calendar/caldav") => 404,
        ("GET", "/integrations/calendar/feeds/{token}") => 404,
        // Public: the probe carries no Stripe-Signature header.
        ("POST", "/integrations/payments/stripe/webhook") => 400,
        // Social sharing: `{}` names no chart or network; the token names
        // no link; stats need `chart_id`.
        ("POST", "/integrations/social/share") => 400,
        ("GET", "/integrations/social/s/{token}") => 404,
        ("GET", "/integrations/social/stats") => 400,
        // Email marketing: `{}` has no email (subscribe) or list
        // (campaigns); the token names nothing (the confirm page is shown
        // for any); `{}` is not a one-click body; the lookup needs `email`.
        ("POST", "/integrations/marketing/subscribe") => 400,
        ("GET", "/integrations/marketing/confirm/{token}") => 200,
        ("POST", "/integrations/marketing/confirm/{token}") => 404,
        ("POST", "/integrations/marketing/unsubscribe/{token}") => 400,
        ("GET", "/integrations/marketing/subscribers") => 400,
        ("POST", "/integrations/marketing/campaigns") => 400,
        // compliance: evidence read from state.
        ("GET", "/compliance/gdpr") => 200,
        ("GET", "/compliance/access-review") => 200,
        ("GET", "/compliance/access-reviews") => 200,
        ("GET", "/compliance/security-recommendations") => 200,
        ("GET", "/compliance/report") => 200,
        ("GET", "/compliance/security-events") => 200,
        // A fresh id names no event; `{}` has no note.
        ("GET", "/compliance/security-events/{id}") => 404,
        ("POST", "/compliance/security-events/{id}/acknowledge") => 400,
        // workflows: `{}` is no definition; a fresh id names no workflow.
        ("GET", "/workflows") => 200,
        ("POST", "/workflows") => 400,
        ("POST", "/workflows/validate") => 400,
        ("GET", "/workflows/templates") => 200,
        ("POST", "/workflows/from-template") => 400,
        ("POST", "/workflows/{id}/hooks") => 404,
        ("GET", "/workflows/{id}") => 404,
        ("PUT", "/workflows/{id}") => 400,
        ("DELETE", "/workflows/{id}") => 404,
        ("GET", "/workflows/{id}/versions") => 404,
        ("GET", "/workflows/{id}/versions/{from}/diff/{to}") => 404,
        ("POST", "/workflows/{id}/rollback") => 400,
        ("POST", "/workflows/{id}/enable") => 404,
        ("POST", "/workflows/{id}/disable") => 404,
        ("POST", "/workflows/{id}/dry-run") => 404,
        ("GET", "/workflows/{id}/analytics") => 404,
        ("GET", "/workflows/{id}/runs") => 404,
        ("POST", "/workflows/{id}/runs") => 404,
        ("GET", "/workflows/{id}/runs/{run_id}") => 404,
        ("POST", "/workflows/{id}/runs/{run_id}/cancel") => 404,
        ("POST", "/workflows/{id}/runs/{run_id}/retry") => 404,
        (method, path) => panic!("the walk has no expected status for {method} {path}: add it to admitted_status"),
    }
}

/// One request of the walk, and the status a caller the route admits gets.
#[derive(Debug)]
pub struct Probe {
    pub label: String,
    pub path: String,
    pub params: Vec<(&'static str, String)>,
    pub body: Option<Value>,
    pub admitted: u16,
}

/// The requests the walk sends to `route` as `me`: the default probe, and
/// for rules that look at the body or at who the request is about, one per
/// case (`{user_id}` is `target`, another user, unless said otherwise).
pub fn probes(route: &Route, me: &User, target: &str, role_name: &str) -> Vec<Probe> {
    let (path, params) = fill(route.path, target, role_name);
    let body = matches!(route.method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
    let mut probes = vec![Probe { label: "default".into(), path, params, body, admitted: admitted_status(&route.method, route.path) }];
    let mut add = |label: &str, body: Value, admitted: u16| {
        let (path, params) = fill(route.path, target, role_name);
        probes.push(Probe { label: label.into(), path, params, body: Some(body), admitted });
    };
    match (route.method.as_str(), route.path) {
        // As a job, so the answer does not depend on the dataset's size.
        ("POST", "/api/v1/data/export") => {
            add("own data", json!({"format": "json", "delivery": "job"}), 202);
            add("dataset users", json!({"dataset": "users", "format": "csv", "delivery": "job"}), 202);
            add("dataset audit", json!({"dataset": "audit", "format": "csv", "delivery": "job"}), 202);
        }
        ("POST", "/api/v1/reports/generate") => {
            add("spec on orders", json!({"spec": {"dataset": "orders", "group_by": ["country"], "metrics": [{"op": "count"}]}, "format": "csv"}), 202);
            add("spec on audit", json!({"spec": {"dataset": "audit", "group_by": ["action"], "metrics": [{"op": "count"}]}, "format": "csv"}), 202);
            add("audit template", json!({"template": "security_and_audit", "format": "json"}), 202);
        }
        ("POST", "/api/v1/data/export/gdpr") => {
            add("own user_id", json!({"user_id": me.id}), 202);
            add("another user_id", json!({"user_id": target}), 202);
        }
        ("DELETE", "/api/v1/data/user/{user_id}") => {
            // Oneself: recorded and queued, but a super admin is never erased.
            let (path, params) = fill(route.path, &me.id, role_name);
            let admitted = if me.roles.iter().any(|r| r == "super_admin") { 409 } else { 202 };
            probes.push(Probe { label: "oneself".into(), path, params, body: None, admitted });
        }
        _ => {}
    }
    probes
}

/// Send `probe` as `me` (holding `held`) and check the exact outcome the
/// route's rule gives: 403 naming the missing permission, or the status a
/// caller it admits gets. A mismatch is described in `failures`.
#[allow(clippy::too_many_arguments)] // one probe's whole context; a struct would only rename it
pub async fn check_probe(app: &TestApp, route: &Route, probe: &Probe, me: &User, token: &str, held: PermissionSet, who: &str, failures: &mut Vec<String>) {
    let params: Vec<(&str, &str)> = probe.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let need = route.access.need(&Facts { caller: &me.id, path: &params, body: probe.body.as_ref() });
    let Some(need) = need else {
        failures.push(format!("{} {} ({}): the walk's body is not JSON the rule can read", route.method, route.path, probe.label));
        return;
    };
    let response = app.call(route.method.clone(), &probe.path, Some(token), probe.body.clone()).await;
    let context = format!("{} {} ({}) as {who}: {} {}", route.method, route.path, probe.label, response.status, response.body);
    match need.missing(held) {
        Some(missing) => {
            if response.status != 403
                || response.body["missing_permission"] != missing.as_str()
                || response.headers["content-type"] != "application/problem+json"
            {
                failures.push(format!("expected 403 missing {missing}: {context}"));
            }
        }
        None => {
            if response.status != probe.admitted {
                failures.push(format!("expected {}: {context}", probe.admitted));
            }
        }
    }
}

#[tokio::test]
async fn every_route_and_role() {
    let app = TestApp::spawn().await;
    let mut checked = 0;
    let mut failures = Vec::new();
    for role in BuiltinRole::ALL {
        let (me, token) = app.user(&[role.as_str()]).await;
        for route in all_routes() {
            // A fresh target per call, so a delete by one role does not
            // change what the next role sees.
            let (target, _) = app.user(&["user"]).await;
            let probe_role = if route.path.contains("{name}") { app.role(&["audit:read"]).await.name } else { String::new() };
            for probe in probes(route, &me, &target.id, &probe_role) {
                check_probe(&app, route, &probe, &me, &token, role.permissions(), role.as_str(), &mut failures).await;
                checked += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} probes went wrong:\n{}", failures.len(), failures.join("\n"));
    // Every route once per role, the export route four times (no body
    // fields, own data, users, audit), the subject export three times, the
    // erasure twice (another user, oneself) and report generation four
    // times (no body fields, a spec on orders, on audit, an audit template).
    assert_eq!(checked, BuiltinRole::ALL.len() * (all_routes().len() + 3 + 2 + 1 + 3));
}

#[tokio::test]
async fn protected_routes_need_a_token() {
    let app = TestApp::spawn().await;
    let (target, _) = app.user(&["user"]).await;
    for route in all_routes().into_iter().filter(|r| r.access.needs_token()) {
        let response = app.call(route.method.clone(), &concrete(route.path, &target.id, "some_role"), None, Some(json!({}))).await;
        assert_eq!(response.status, 401, "{} {}", route.method, route.path);
    }
}

#[tokio::test]
async fn moderators_see_users_without_personal_data() {
    let app = TestApp::spawn().await;
    let (target, _) = app.user(&["user"]).await;
    let (_, moderator) = app.user(&["moderator"]).await;
    let (_, support) = app.user(&["support"]).await;
    let masked = app.get(&format!("/api/v1/admin/users/{}", target.id), &moderator).await;
    assert_eq!(masked.status, 200);
    assert_ne!(masked.body["email"], target.email.as_str());
    assert!(masked.body["email"].as_str().unwrap().contains("***@example.com"));
    let clear = app.get(&format!("/api/v1/admin/users/{}", target.id), &support).await;
    assert_eq!(clear.body["email"], target.email.as_str());
}

#[tokio::test]
async fn no_privilege_escalation_through_roles() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    // roles:write belongs to super_admin only, so an admin may not grant it.
    let r = app
        .call(
            Method::POST,
            "/api/v1/admin/users",
            Some(&admin),
            Some(json!({"email": "x@example.com", "name": "X", "roles": ["super_admin"], "password": "a long enough password"})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["missing_permission"], "roles:write");
    let (victim, _) = app.user(&["super_admin"]).await;
    let r = app.call(Method::PUT, &format!("/api/v1/admin/users/{}", victim.id), Some(&admin), Some(json!({"version": 1, "roles": ["user"]}))).await;
    assert_eq!(r.status, 403, "{}", r.body);
}

#[tokio::test]
async fn a_body_rule_leaves_malformed_bodies_to_the_handler() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user(&["user"]).await;
    let raw = |body: &str, content_type: &str| {
        http::Request::builder()
            .method(Method::POST)
            .uri("/api/v1/data/export")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", content_type)
            .body(axum::body::Body::from(body.to_string()))
            .unwrap()
    };
    // Not JSON (or not an object): the handler's own 400, never a 403.
    for body in [r#"{"dataset": "audit""#, "dataset=audit", r#"["audit"]"#, ""] {
        let r = app.send(raw(body, "application/json")).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
    }
    // JSON the rule reads is judged, whatever the content type says.
    let r = app.send(raw(r#"{"dataset": "audit", "format": "csv"}"#, "text/plain")).await;
    assert_eq!((r.status.as_u16(), r.body["missing_permission"].as_str()), (403, Some("data:export")), "{}", r.body);
    // An unknown dataset gets the strict answer.
    let r = app.call(Method::POST, "/api/v1/data/export", Some(&token), Some(json!({"dataset": "secrets", "format": "csv"}))).await;
    assert_eq!((r.status.as_u16(), r.body["missing_permission"].as_str()), (403, Some("data:export")), "{}", r.body);
    // The body reaches the handler intact after the gate read it.
    let r = app.call(Method::POST, "/api/v1/data/export", Some(&token), Some(json!({"format": "json", "delivery": "job"}))).await;
    assert_eq!(r.status, 202, "{}", r.body);
}

#[tokio::test]
async fn a_known_path_with_an_undeclared_method_is_405_with_allow() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    // Signed in or not: the method is wrong before anything else is.
    for token in [Some(admin.as_str()), None] {
        let r = app.call(Method::DELETE, "/api/v1/admin/users", token, None).await;
        assert_eq!(r.status, 405, "{}", r.body);
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert_eq!(r.headers["allow"], "GET, POST", "{:?}", r.headers);
        assert_eq!(r.body["type"], "https://keel.dev/problems/method-not-allowed", "{}", r.body);
    }
    // HEAD is GET without a body, under GET's rule.
    let r = app.call(Method::HEAD, "/api/v1/admin/users", Some(&admin), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(app.call(Method::HEAD, "/api/v1/admin/users", None, None).await.status, 401);
}
