//! System configuration end to end: defaults, partial typed updates with
//! per-key validation errors, optimistic versioning, history with cursors,
//! rollback, audit, propagation to other readers within the cache TTL, the
//! settings taking effect in moderation, and who may read or change them.

use std::time::Duration;

use http::Method;
use serde_json::json;
use shared::domain::charts::ModerationStatus;
use shared::domain::system_settings::SettingsCache;

use crate::charts::chart;
use crate::helpers::TestApp;

const CONFIG: &str = "/api/v1/admin/system/config";

#[tokio::test]
async fn defaults_then_versioned_partial_updates() {
    let app = TestApp::spawn().await;
    let (admin_user, admin) = app.user(&["admin"]).await;
    let r = app.get(CONFIG, &admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["version"], 0);
    assert_eq!(r.body["settings"]["mfa_required_roles"], json!(["super_admin", "admin"]));
    assert_eq!(r.body["settings"]["limits"]["bulk_cap"], 100);

    let r = app
        .call(
            Method::PUT,
            CONFIG,
            Some(&admin),
            Some(json!({"version": 0, "reason": "launch the new editor", "feature_flags": {"new_editor": true}, "limits": {"max_export_rows": 5000}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["settings"]["feature_flags"], json!({"new_editor": true}));
    assert_eq!(r.body["settings"]["limits"]["max_export_rows"], 5000);
    assert_eq!(r.body["settings"]["limits"]["bulk_cap"], 100, "keys not sent keep their value");
    assert_eq!(r.body["changed_by"], admin_user.id.as_str());
    assert_eq!(r.body["reason"], "launch the new editor");

    // A writer that read version 0 loses.
    let stale = app.call(Method::PUT, CONFIG, Some(&admin), Some(json!({"version": 0, "reason": "x", "oauth_providers": ["google"]}))).await;
    assert_eq!(stale.status, 409, "{}", stale.body);
    let same = app.call(Method::PUT, CONFIG, Some(&admin), Some(json!({"version": 1, "reason": "again", "feature_flags": {"new_editor": true}}))).await;
    assert_eq!((same.status.as_u16(), same.error_fields()), (400, vec!["body".to_string()]), "a change that changes nothing");
    let r = app.call(Method::PUT, CONFIG, Some(&admin), Some(json!({"version": 1, "reason": "drop the flag", "feature_flags": {"new_editor": null}, "mfa_required_roles": ["super_admin", "admin", "moderator"]}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["settings"]["feature_flags"], json!({}));
    let r = app.get(CONFIG, &admin).await;
    assert_eq!((r.body["version"].as_u64(), r.body["settings"]["mfa_required_roles"][2].as_str()), (Some(2), Some("moderator")));

    let audit = app.audit_for("config", "system").await;
    assert_eq!(audit.len(), 2, "one entry per change");
    assert_eq!(audit[0].action, "config.update");
    assert_eq!(audit[0].reason.as_deref(), Some("drop the flag"));
    let changes = audit[0].changes.as_ref().unwrap();
    assert_eq!(changes["after"]["mfa_required_roles"], json!(["super_admin", "admin", "moderator"]));
    assert!(changes["after"].get("limits").is_none(), "only changed keys: {changes}");
}

#[tokio::test]
async fn validation_errors_name_each_key() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["super_admin"]).await;
    let r = app
        .call(
            Method::PUT,
            CONFIG,
            Some(&admin),
            Some(json!({
                "version": 0, "reason": "bad values",
                "feature_flags": {"Bad-Flag": true},
                "limits": {"max_export_rows": 0, "bulk_cap": 500},
                "moderation_reasons": [{"code": "Spam!", "label": "Spam"}, {"code": "ok", "label": ""}],
                "mfa_required_roles": ["root"],
                "retention": {"audit_days": 30},
                "oauth_providers": ["google", "myspace", "google"],
            })),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let mut fields = r.error_fields();
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "feature_flags.Bad-Flag",
            "limits.bulk_cap",
            "limits.max_export_rows",
            "mfa_required_roles[0]",
            "moderation_reasons[0].code",
            "moderation_reasons[1].label",
            "oauth_providers[1]",
            "oauth_providers[2]",
            "retention.audit_days",
        ]
    );
    // Types and unknown keys are named too.
    for (body, field) in [
        (json!({"version": 0, "reason": "x", "limits": {"max_export_rows": "lots"}}), "limits.max_export_rows"),
        (json!({"version": 0, "reason": "x", "limits": {"max_rows": 5}}), "limits.max_rows"),
        (json!({"version": 0, "reason": "x", "feature_flags": {"a": "yes"}}), "feature_flags.a"),
        (json!({"version": 0, "reason": "x", "colour": "blue"}), "colour"),
        (json!({"version": 0, "oauth_providers": ["google"]}), "reason"),
        (json!({"version": 0, "reason": " ", "oauth_providers": ["google"]}), "reason"),
        (json!({"reason": "x", "oauth_providers": ["google"]}), "version"),
    ] {
        let r = app.call(Method::PUT, CONFIG, Some(&admin), Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.error_fields(), vec![field.to_string()], "{body}");
    }
    assert_eq!(app.get(CONFIG, &admin).await.body["version"], 0, "nothing was stored");
}

#[tokio::test]
async fn history_and_rollback() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    for (version, rows) in [(0, 1000), (1, 2000), (2, 3000)] {
        let r = app
            .call(Method::PUT, CONFIG, Some(&admin), Some(json!({"version": version, "reason": format!("rows {rows}"), "limits": {"max_export_rows": rows}})))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let first = app.get(&format!("{CONFIG}/history?limit=2"), &admin).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let versions: Vec<u64> = first.body["items"].as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, vec![3, 2]);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let rest = app.get(&format!("{CONFIG}/history?limit=2&cursor={cursor}"), &admin).await;
    assert_eq!(rest.body["items"][0]["version"], 1);
    assert_eq!(rest.body["items"][0]["reason"], "rows 1000");

    let r = app.call(Method::POST, &format!("{CONFIG}/rollback"), Some(&admin), Some(json!({"version": 1, "reason": "3000 rows overloads exports"}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.body["version"].as_u64(), r.body["rolled_back_to"].as_u64()), (Some(4), Some(1)));
    assert_eq!(r.body["settings"], rest.body["items"][0]["settings"], "the new version equals the old one");
    let audit = app.audit_for("config", "system").await;
    assert_eq!((audit[0].action.as_str(), audit[0].reason.as_deref()), ("config.rollback", Some("3000 rows overloads exports")));

    for (version, status) in [(4, 400), (9, 400)] {
        let r = app.call(Method::POST, &format!("{CONFIG}/rollback"), Some(&admin), Some(json!({"version": version, "reason": "x"}))).await;
        assert_eq!((r.status.as_u16(), r.error_fields()), (status, vec!["version".to_string()]), "{}", r.body);
    }
    let r = app.call(Method::POST, &format!("{CONFIG}/rollback"), Some(&admin), Some(json!({"version": 0, "reason": "back to defaults"}))).await;
    assert_eq!((r.status.as_u16(), r.body["version"].as_u64()), (200, Some(5)));
    assert_eq!(r.body["settings"]["limits"]["max_export_rows"], 1_000_000);
    assert_eq!(app.get(&format!("{CONFIG}/history"), &admin).await.body["items"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn a_change_reaches_other_readers_within_their_ttl() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    // Another function's warm instance, with a short TTL.
    let reader = SettingsCache::new(app.store().store().clone(), Duration::from_millis(700));
    assert_eq!(reader.current().await.unwrap().version, 0);
    let r = app
        .call(
            Method::PUT,
            CONFIG,
            Some(&admin),
            Some(json!({"version": 0, "reason": "2FA for moderators", "mfa_required_roles": ["super_admin", "admin", "moderator"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cached = reader.current().await.unwrap();
    assert_eq!(cached.version, 0, "served from the cache within the TTL");
    assert!(!cached.settings.mfa_required_for(&["moderator"]));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let fresh = reader.current().await.unwrap();
    assert_eq!(fresh.version, 1, "seen after the TTL without a restart");
    assert!(fresh.settings.mfa_required_for(&["moderator"]));
}

#[tokio::test]
async fn settings_take_effect_in_moderation() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user(&["admin"]).await;
    let (owner, _) = app.user(&["user"]).await;
    let mut charts = Vec::new();
    for title in ["c0", "c1", "c2"] {
        charts.push(chart(&app, &owner.id, title, ModerationStatus::Pending, chrono::Utc::now()).await);
    }
    let r = app
        .call(
            Method::PUT,
            CONFIG,
            Some(&admin),
            Some(json!({
                "version": 0, "reason": "new reason code, smaller bulk requests",
                "moderation_reasons": [{"code": "low_quality", "label": "Low-quality content"}],
                "limits": {"bulk_cap": 2, "page_size_max": 10},
            })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let items: Vec<_> = charts.iter().map(|c| json!({"chart_id": c.id, "version": 1})).collect();
    let r =
        app.call(Method::POST, "/api/v1/admin/charts/moderate", Some(&admin), Some(json!({"action": "reject", "reason": "low_quality", "items": items}))).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["items".to_string()]), "{}", r.body);
    let r = app
        .call(Method::POST, "/api/v1/admin/charts/moderate", Some(&admin), Some(json!({"action": "reject", "reason": "low_quality", "items": items[..2]})))
        .await;
    assert_eq!((r.status.as_u16(), r.body["applied"].as_u64()), (200, Some(2)), "{}", r.body);
    let r = app
        .call(
            Method::POST,
            &format!("/api/v1/admin/charts/{}/moderate", charts[2].id),
            Some(&admin),
            Some(json!({"action": "reject", "reason": "spam", "version": 1})),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["reason".to_string()]), "spam is no longer configured");
    assert_eq!(app.get("/api/v1/admin/charts?limit=11", &admin).await.error_fields(), vec!["limit".to_string()]);
    assert_eq!(app.get("/api/v1/admin/charts?limit=10", &admin).await.status, 200);
    assert_eq!(app.run_jobs().await, 2);
    let emails = app.sent_emails(&owner.email).await;
    assert!(emails.len() == 2 && emails.iter().all(|e| e.contains("Low-quality content")), "{emails:?}");
}

#[tokio::test]
async fn moderators_moderate_auditors_read_neither_changes_config() {
    let app = TestApp::spawn().await;
    let (_, moderator) = app.user(&["moderator"]).await;
    let (_, auditor) = app.user(&["auditor"]).await;
    let (owner, _) = app.user(&["user"]).await;
    let c = chart(&app, &owner.id, "Weather", ModerationStatus::Pending, chrono::Utc::now()).await;
    let change = json!({"version": 0, "reason": "x", "oauth_providers": ["github"]});
    let rollback = json!({"version": 0, "reason": "x"});
    let moderate = json!({"action": "approve", "reason": "meets_guidelines", "version": 1});
    let moderate_path = format!("/api/v1/admin/charts/{}/moderate", c.id);

    for (token, method, path, body, missing) in [
        (&moderator, Method::GET, CONFIG.to_string(), None, Some("config:read")),
        (&moderator, Method::PUT, CONFIG.to_string(), Some(change.clone()), Some("config:write")),
        (&moderator, Method::POST, format!("{CONFIG}/rollback"), Some(rollback.clone()), Some("config:write")),
        (&auditor, Method::GET, CONFIG.to_string(), None, None),
        (&auditor, Method::GET, format!("{CONFIG}/history"), None, None),
        (&auditor, Method::PUT, CONFIG.to_string(), Some(change.clone()), Some("config:write")),
        (&auditor, Method::POST, format!("{CONFIG}/rollback"), Some(rollback.clone()), Some("config:write")),
        (&auditor, Method::GET, "/api/v1/admin/charts".to_string(), None, Some("charts:read")),
        (&auditor, Method::POST, moderate_path.clone(), Some(moderate.clone()), Some("charts:moderate")),
        (&moderator, Method::POST, moderate_path.clone(), Some(moderate.clone()), None),
    ] {
        let r = app.call(method.clone(), &path, Some(token), body).await;
        match missing {
            Some(p) => assert_eq!((r.status.as_u16(), r.body["missing_permission"].as_str()), (403, Some(p)), "{method} {path}: {}", r.body),
            None => assert_eq!(r.status, 200, "{method} {path}: {}", r.body),
        }
    }
    assert_eq!(app.get(CONFIG, &auditor).await.body["version"], 0, "no change got through");
}
