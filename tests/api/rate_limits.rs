//! Brute-force protection: per-account and per-address token buckets on
//! login and refresh (429 with Retry-After), lockouts and unlocks in the
//! audit log (by time and by an administrator), and exactly one winner when
//! concurrent attempts race for the last token.

use std::collections::HashMap;

use axum::body::Body;
use http::Method;
use serde_json::{Value, json};
use shared::audit::{Actor, AuditEntry, Outcome};
use shared::identity::rate_limits::{Action, Limit, Policy, RateLimits, Scope};
use shared::platform::crypto::sha256_hex;
use shared::store::{UpdateSpec, s, timestamp};

use crate::helpers::{PASSWORD, Response, TestApp};

const WRONG: &str = "not the password at all";

/// POST a JSON body as if from `ip` (API Gateway's X-Forwarded-For).
async fn post_from(app: &TestApp, path: &str, forwarded_for: &str, body: Value) -> Response {
    let request = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .header("x-forwarded-for", forwarded_for)
        .body(Body::from(body.to_string()))
        .unwrap();
    app.send(request).await
}

async fn login_from(app: &TestApp, email: &str, password: &str, ip: &str) -> Response {
    post_from(app, "/api/v1/auth/login", ip, json!({ "email": email, "password": password })).await
}

async fn refresh_from(app: &TestApp, token: &str, ip: &str) -> Response {
    post_from(app, "/api/v1/auth/refresh", ip, json!({ "refresh_token": token })).await
}

async fn spawn_with_limits(spec: &str) -> TestApp {
    TestApp::spawn_with(HashMap::from([("RateLimits".to_string(), spec.to_string())])).await
}

fn assert_rate_limited(r: &Response, max_wait: u64) -> u64 {
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.body["status"], 429);
    assert_eq!(r.body["type"], "https://keel.dev/problems/rate-limited");
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().expect("Retry-After in seconds");
    assert!((1..=max_wait).contains(&wait), "Retry-After {wait}");
    wait
}

fn entries<'a>(audit: &'a [AuditEntry], action: &str) -> Vec<&'a AuditEntry> {
    audit.iter().filter(|e| e.action == action).collect()
}

async fn bucket(app: &TestApp, limit: &Limit, action: Action) -> Option<shared::store::Item> {
    app.store().get_item(&limit.key(action), "BUCKET").await.unwrap()
}

#[tokio::test]
async fn sixth_failed_login_is_refused_even_with_the_right_password() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user(&["user"]).await;
    for i in 0..5 {
        assert_eq!(app.login(&user.email, WRONG).await.status, 401, "failure {i} is a plain 401");
    }
    let refused = app.login(&user.email, PASSWORD).await;
    assert_rate_limited(&refused, 60);
    assert_rate_limited(&app.login(&user.email, PASSWORD).await, 60);

    let audit = app.audit_for("user", &user.id).await;
    let lockouts = entries(&audit, "auth.lockout");
    assert_eq!(lockouts.len(), 1, "one entry per lock period, however many refusals: {lockouts:?}");
    let lockout = lockouts[0];
    assert_eq!(lockout.outcome, Outcome::Denied);
    let reason = lockout.reason.as_deref().unwrap();
    assert!(reason.starts_with("login.account: 5 failed attempts allowed, then one every 60 s; locked for "), "{reason}");
    let after = &lockout.changes.as_ref().unwrap()["after"];
    assert_eq!(after["limit"], "login.account");
    assert!((1..=60).contains(&after["lock_seconds"].as_u64().unwrap()), "{after}");
    assert_eq!(lockout.actor.source_ip.as_deref(), Some("203.0.113.9"));
    // Refused attempts never reached the password check, so they are not
    // recorded as failed logins.
    let failures = entries(&audit, "auth.login").into_iter().filter(|e| e.outcome == Outcome::Failure).count();
    assert_eq!(failures, 5);

    // The bucket names the account only by a digest.
    let item = bucket(&app, &Limit::account(&user.email), Action::Login).await.expect("bucket");
    assert_eq!(item["tokens"].as_n().unwrap(), "0");
    assert!(item["ttl"].as_n().unwrap().parse::<i64>().unwrap() > chrono::Utc::now().timestamp());
    let stored = format!("{item:?}");
    assert!(!stored.contains(&user.email) && !stored.contains(&user.id), "{stored}");
    assert!(item["pk"].as_s().unwrap().ends_with(&sha256_hex(user.email.as_bytes())));

    // Other accounts are not affected.
    let (other, _) = app.user(&["user"]).await;
    assert_eq!(app.login(&other.email, PASSWORD).await.status, 200);
}

#[tokio::test]
async fn unknown_emails_are_limited_like_known_ones() {
    let app = TestApp::spawn().await;
    let email = "nobody-here@example.com";
    for _ in 0..5 {
        assert_eq!(app.login(email, WRONG).await.status, 401);
    }
    // A 429 for an unknown email too: the limit reveals nothing about
    // which emails exist.
    assert_rate_limited(&app.login(email, WRONG).await, 60);
    let audit = app.audit_for("email", &sha256_hex(email.as_bytes())).await;
    assert_eq!(entries(&audit, "auth.lockout").len(), 1, "recorded against the email's digest");
}

#[tokio::test]
async fn successes_reset_the_account_and_lock_expiry_is_audited_on_the_next_success() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user(&["user"]).await;
    // Four failures, a success: the slate is clean again.
    for _ in 0..4 {
        assert_eq!(app.login(&user.email, WRONG).await.status, 401);
    }
    assert_eq!(app.login(&user.email, PASSWORD).await.status, 200);
    assert!(bucket(&app, &Limit::account(&user.email), Action::Login).await.is_none(), "a success resets the account");
    for _ in 0..5 {
        assert_eq!(app.login(&user.email, WRONG).await.status, 401);
    }
    assert_rate_limited(&app.login(&user.email, PASSWORD).await, 60);
    assert_rate_limited(&app.login(&user.email, PASSWORD).await, 60);

    // Let a minute pass for the bucket (its last refill tick moves back).
    let store = app.store();
    let key = Limit::account(&user.email).key(Action::Login);
    let back_a_minute = UpdateSpec::new("SET updated_at = :t").value(":t", s(timestamp(chrono::Utc::now() - chrono::Duration::seconds(61))));
    store.update(&key, "BUCKET", &back_a_minute).await.unwrap();
    let back = app.login(&user.email, PASSWORD).await;
    assert_eq!(back.status, 200, "{}", back.body);

    let audit = app.audit_for("user", &user.id).await;
    let unlocks = entries(&audit, "auth.unlock");
    assert_eq!(unlocks.len(), 1, "{unlocks:?}");
    let reason = unlocks[0].reason.as_deref().unwrap();
    assert!(reason.contains("the lock expired"), "{reason}");
    assert!(reason.ends_with(": 2"), "both refused attempts are counted: {reason}");
    assert_eq!((unlocks[0].actor.kind.as_str(), unlocks[0].outcome), ("system", Outcome::Success));
    assert!(bucket(&app, &Limit::account(&user.email), Action::Login).await.is_none());
    // A later plain success records no second unlock.
    assert_eq!(app.login(&user.email, PASSWORD).await.status, 200);
    assert_eq!(entries(&app.audit_for("user", &user.id).await, "auth.unlock").len(), 1);
}

#[tokio::test]
async fn one_address_is_limited_across_many_emails() {
    let app = spawn_with_limits("login.ip=3:60").await;
    let (user, _) = app.user(&["user"]).await;
    let attacker = "198.51.100.66";
    for i in 0..3 {
        assert_eq!(login_from(&app, &format!("victim{i}@example.com"), WRONG, attacker).await.status, 401);
    }
    // The address is spent: even a real account with its right password.
    assert_rate_limited(&login_from(&app, &user.email, PASSWORD, attacker).await, 60);
    // A forged first X-Forwarded-For entry does not help: API Gateway's
    // (the last) is the one that counts.
    assert_rate_limited(&login_from(&app, &user.email, PASSWORD, &format!("192.0.2.77, {attacker}")).await, 60);
    // Elsewhere, the same account signs in.
    assert_eq!(login_from(&app, &user.email, PASSWORD, "198.51.100.7").await.status, 200);

    let audit = app.audit_for("ip", &sha256_hex(attacker.as_bytes())).await;
    let lockouts = entries(&audit, "auth.lockout");
    assert_eq!(lockouts.len(), 1);
    assert!(lockouts[0].reason.as_deref().unwrap().starts_with("login.ip: 3 failed attempts allowed"), "{:?}", lockouts[0].reason);

    // Successes give the address its token back: an office signing in all
    // day is never limited.
    for _ in 0..5 {
        assert_eq!(login_from(&app, &user.email, PASSWORD, "198.51.100.8").await.status, 200);
    }
}

#[tokio::test]
async fn refresh_is_limited_per_address_and_per_account() {
    let app = spawn_with_limits("refresh.ip=3:60,refresh.account=2:60").await;
    let (user, _) = app.user(&["user"]).await;
    let (other, _) = app.user(&["user"]).await;
    let token = |r: &Response| r.body["refresh_token"].as_str().unwrap().to_string();

    // Per address: garbage tokens spend it, then even a good token waits.
    let scanner = "198.51.100.90";
    for garbage in ["a.b", "no-dot", "x.y"] {
        assert_eq!(refresh_from(&app, garbage, scanner).await.status, 401);
    }
    let good = token(&login_from(&app, &other.email, PASSWORD, "198.51.100.1").await);
    assert_rate_limited(&refresh_from(&app, &good, scanner).await, 60);
    let good = token(&refresh_from(&app, &good, "198.51.100.2").await);

    // Per account: two failures on this user's sessions (from different
    // addresses) and the account's refreshes wait, whatever the session.
    let first = token(&login_from(&app, &user.email, PASSWORD, "198.51.100.10").await);
    let second = token(&refresh_from(&app, &first, "198.51.100.11").await);
    assert_eq!(refresh_from(&app, &first, "198.51.100.12").await.status, 401, "reuse: failure 1");
    assert_eq!(refresh_from(&app, &second, "198.51.100.13").await.status, 401, "revoked family: failure 2");
    let fresh = token(&login_from(&app, &user.email, PASSWORD, "198.51.100.14").await);
    assert_rate_limited(&refresh_from(&app, &fresh, "198.51.100.15").await, 60);
    // Another account from the same address is fine, and successes do not
    // count: it refreshes more often than either limit allows.
    let mut other_token = good;
    for _ in 0..4 {
        let r = refresh_from(&app, &other_token, "198.51.100.15").await;
        assert_eq!(r.status, 200, "{}", r.body);
        other_token = token(&r);
    }
    let audit = app.audit_for("user", &user.id).await;
    assert!(entries(&audit, "auth.lockout").iter().any(|e| e.reason.as_deref().is_some_and(|r| r.starts_with("refresh.account"))), "{audit:?}");
}

#[tokio::test]
async fn admin_unlock_clears_the_lock_and_is_audited_with_it() {
    let app = TestApp::spawn().await;
    let (admin_user, admin) = app.user(&["support"]).await; // support holds users:write
    let (user, _) = app.user(&["user"]).await;
    for _ in 0..5 {
        app.login(&user.email, WRONG).await;
    }
    assert_rate_limited(&app.login(&user.email, PASSWORD).await, 60);

    let path = format!("/api/v1/admin/users/{}/unlock", user.id);
    let r = app.call(Method::POST, &path, Some(&admin), Some(json!({ "reason": "identity verified by phone" }))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!({ "user_id": user.id, "was_locked": true, "cleared": ["login"] }));
    assert!(bucket(&app, &Limit::account(&user.email), Action::Login).await.is_none(), "the bucket is gone");

    let audit = app.audit_for("user", &user.id).await;
    let unlocks = entries(&audit, "auth.unlock");
    assert_eq!(unlocks.len(), 1);
    assert_eq!(unlocks[0].actor.id, admin_user.id);
    assert_eq!(unlocks[0].reason.as_deref(), Some("unlocked by an administrator: identity verified by phone"));
    assert_eq!(unlocks[0].changes.as_ref().unwrap()["before"]["login.account.email"]["tokens"], 0);
    assert_eq!(app.login(&user.email, PASSWORD).await.status, 200, "signs in at once");

    // Nothing to clear: answered, and nothing written.
    let again = app.call(Method::POST, &path, Some(&admin), Some(json!({}))).await;
    assert_eq!(again.body, json!({ "user_id": user.id, "was_locked": false, "cleared": [] }));
    assert_eq!(entries(&app.audit_for("user", &user.id).await, "auth.unlock").len(), 1);

    // Bad input names the field; unknown users are 404.
    let long = app.call(Method::POST, &path, Some(&admin), Some(json!({ "reason": "x".repeat(501) }))).await;
    assert_eq!((long.status.as_u16(), long.error_fields()), (400, vec!["reason".to_string()]));
    let unknown_field = app.call(Method::POST, &path, Some(&admin), Some(json!({ "force": true }))).await;
    assert_eq!((unknown_field.status.as_u16(), unknown_field.error_fields()), (400, vec!["force".to_string()]));
    let nobody = app.call(Method::POST, "/api/v1/admin/users/0190a3c5-0000-7000-8000-000000000000/unlock", Some(&admin), Some(json!({}))).await;
    assert_eq!(nobody.status, 404);
    let (_, auditor) = app.user(&["auditor"]).await;
    let denied = app.call(Method::POST, &path, Some(&auditor), Some(json!({}))).await;
    assert_eq!((denied.status.as_u16(), denied.body["missing_permission"].as_str()), (403, Some("users:write")));
}

#[tokio::test]
async fn concurrent_logins_with_one_token_left_let_exactly_one_through() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user(&["user"]).await;
    for _ in 0..4 {
        assert_eq!(app.login(&user.email, WRONG).await.status, 401);
    }
    let racers = (0..8).map(|_| app.login(&user.email, WRONG));
    let mut statuses: Vec<u16> = futures::future::join_all(racers).await.iter().map(|r| r.status.as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, vec![401, 429, 429, 429, 429, 429, 429, 429], "exactly one attempt reaches the password check");
    let failures = entries(&app.audit_for("user", &user.id).await, "auth.login").into_iter().filter(|e| e.outcome == Outcome::Failure).count();
    assert_eq!(failures, 5);
}

#[tokio::test]
async fn concurrent_guards_on_one_token_admit_exactly_one() {
    let app = TestApp::spawn().await;
    let limits = RateLimits::parse("two_factor.account=1:3600").unwrap();
    assert_eq!(limits.policy(Action::TwoFactor, Scope::Account), Policy::new(1, 3600));
    let actor = Actor::system("tests");
    let account = [Limit::account("0190a3c5-1111-7000-8000-000000000000")];
    let now = chrono::Utc::now();
    let racers = (0..10).map(|_| shared::identity::rate_limits::guard_at(app.store(), &limits, &account, Action::TwoFactor, &actor, now));
    let results = futures::future::join_all(racers).await;
    let admitted: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(admitted.len(), 1, "{results:?}");
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, shared::Error::TooManyRequests { retry_after_secs: 3600 })), "{results:?}");

    // An hour later the token is back; the success resets the bucket.
    let later = now + chrono::Duration::hours(1);
    let attempt = shared::identity::rate_limits::guard_at(app.store(), &limits, &account, Action::TwoFactor, &actor, later).await.expect("refilled");
    attempt.succeeded().await.unwrap();
    assert!(bucket(&app, &account[0], Action::TwoFactor).await.is_none());
}

/// Wrong 2FA codes across fresh challenges are limited per account too: the
/// per-challenge lock alone would let an attacker with the password retry
/// forever by logging in again.
#[tokio::test]
async fn two_factor_codes_are_rate_limited_across_challenges() {
    let app = crate::helpers::TestApp::spawn().await;
    let (user, token) = app.user(&["support"]).await;
    let enrolment = app.call(http::Method::POST, "/api/v1/auth/2fa/enable", Some(&token), Some(serde_json::json!({}))).await;
    assert_eq!(enrolment.status, 200, "{}", enrolment.body);
    let secret = enrolment.body["secret"].as_str().unwrap().to_string();
    crate::two_factor::settle().await;
    let step = crate::two_factor::current_step();
    let code = crate::two_factor::pyotp_at(&secret, step).await;
    let confirmed = app.call(http::Method::POST, "/api/v1/auth/2fa/verify", Some(&token), Some(serde_json::json!({ "code": code }))).await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    let wrong = crate::two_factor::wrong_code(&secret, step).await;
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let login = app.login(&user.email, crate::helpers::PASSWORD).await;
        let challenge = login.body["challenge_token"].as_str().expect("a 2FA challenge").to_string();
        let r = app.call(http::Method::POST, "/api/v1/auth/2fa/verify", None, Some(serde_json::json!({ "challenge_token": challenge, "code": wrong }))).await;
        statuses.push(r.status.as_u16());
    }
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert_eq!(statuses[10], 429, "{statuses:?}");
}
