//! TOTP 2FA end to end, with codes from an independent implementation
//! (Python's pyotp): enrolment (otpauth URI, QR codes, the secret sealed at
//! rest), sign-in challenges, the replay and skew rules, the lockout after
//! five wrong codes, recovery codes, disabling, roles that require 2FA
//! (enrolment-only tokens), and an admin's reset with step-up.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::Method;
use serde_json::{Value, json};
use shared::audit::{Actor, Outcome};

use crate::helpers::{PASSWORD, Response, TestApp};
use crate::rbac::{all_routes, concrete};

const ENABLE: &str = "/api/v1/auth/2fa/enable";
const VERIFY: &str = "/api/v1/auth/2fa/verify";
const DISABLE: &str = "/api/v1/auth/2fa/disable";
const RECOVERY_CODES: &str = "/api/v1/auth/2fa/recovery-codes";

/// The code pyotp computes for `secret` at the start of time step `step`.
pub(crate) async fn pyotp_at(secret: &str, step: u64) -> String {
    let python = keel_local::repo_root().join(".keel/venv/bin/python");
    let out = tokio::process::Command::new(&python)
        .args(["-c", "import pyotp,sys; print(pyotp.TOTP(sys.argv[1]).at(int(sys.argv[2])))", secret, &(step * 30).to_string()])
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {} (make venv installs pyotp): {e}", python.display()));
    assert!(out.status.success(), "pyotp failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub(crate) fn current_step() -> u64 {
    chrono::Utc::now().timestamp() as u64 / 30
}

/// Wait out the last seconds of a time step, so that "the step now" is
/// still the server's step when the request lands.
pub(crate) async fn settle() {
    let into = chrono::Utc::now().timestamp() as u64 % 30;
    if into >= 27 {
        tokio::time::sleep(std::time::Duration::from_secs(30 - into + 1)).await;
    }
}

/// A six-digit code that is wrong for every step near `step`.
pub(crate) async fn wrong_code(secret: &str, step: u64) -> String {
    let mut near = Vec::new();
    for s in step - 2..=step + 3 {
        near.push(pyotp_at(secret, s).await);
    }
    ["000000", "111111", "222222", "333333", "444444"].into_iter().find(|c| !near.iter().any(|n| n == c)).unwrap().to_string()
}

/// The payload of a JWT.
fn claims(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

fn str_of<'a>(r: &'a Response, key: &str) -> &'a str {
    r.body[key].as_str().unwrap_or_else(|| panic!("no {key} in {}", r.body))
}

struct Enrolled {
    secret: String,
    /// The step whose code confirmed the enrolment (used up).
    step: u64,
    recovery_codes: Vec<String>,
}

/// Enable and confirm 2FA with `token`'s user.
async fn enrol(app: &TestApp, token: &str) -> Enrolled {
    let enable = app.call(Method::POST, ENABLE, Some(token), None).await;
    assert_eq!(enable.status, 200, "{}", enable.body);
    let secret = str_of(&enable, "secret").to_string();
    settle().await;
    let step = current_step();
    let confirm = app.call(Method::POST, VERIFY, Some(token), Some(json!({ "code": pyotp_at(&secret, step).await }))).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let recovery_codes = confirm.body["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    Enrolled { secret, step, recovery_codes }
}

async fn challenge_for(app: &TestApp, email: &str) -> String {
    let login = app.login(email, PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.body["mfa_required"], true, "{}", login.body);
    str_of(&login, "challenge_token").to_string()
}

async fn answer(app: &TestApp, challenge: &str, code: &str) -> Response {
    app.call(Method::POST, VERIFY, None, Some(json!({ "challenge_token": challenge, "code": code }))).await
}

async fn refresh(app: &TestApp, refresh_token: &str) -> Response {
    app.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({ "refresh_token": refresh_token }))).await
}

async fn actions(app: &TestApp, user_id: &str) -> Vec<(String, Outcome)> {
    app.audit_for("user", user_id).await.into_iter().map(|e| (e.action, e.outcome)).collect()
}

#[tokio::test]
async fn enrolment_then_sign_in_with_pyotp_codes_once_each_within_one_step() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user(&["user"]).await;
    // Without 2FA the login answer is exactly as before.
    let plain = app.login(&user.email, PASSWORD).await;
    assert_eq!(plain.status, 200, "{}", plain.body);
    let keys: BTreeSet<&str> = plain.body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["access_token", "expires_in", "refresh_token", "token_type"]));
    let token = str_of(&plain, "access_token").to_string();

    let enable = app.call(Method::POST, ENABLE, Some(&token), None).await;
    assert_eq!(enable.status, 200, "{}", enable.body);
    assert_eq!((enable.body["status"].as_str(), enable.headers["cache-control"].to_str().unwrap()), (Some("pending"), "no-store"));
    let secret = str_of(&enable, "secret").to_string();
    let uri = str_of(&enable, "otpauth_uri");
    let account = user.email.replace('@', "%40");
    assert!(uri.starts_with(&format!("otpauth://totp/Keel:{account}?")) && uri.contains(&format!("secret={secret}")) && uri.contains("issuer=Keel"), "{uri}");
    assert!(str_of(&enable, "qr_svg").contains("<svg"));
    let png = STANDARD.decode(str_of(&enable, "qr_png_base64")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // At rest the secret is sealed (KMS data key + AES-GCM), never plain.
    let item = app.store().get_item(&format!("USER#{}", user.id), "MFA").await.unwrap().unwrap();
    assert!(!format!("{item:?}").contains(&secret), "the secret is stored in the clear");
    let sealed = item["secret"].as_m().unwrap();
    assert!(["key", "nonce", "data"].iter().all(|k| sealed.contains_key(*k)));

    // A pending enrolment changes nothing at sign-in.
    assert!(app.login(&user.email, PASSWORD).await.body["access_token"].is_string());

    settle().await;
    let s = current_step();
    let wrong = app.call(Method::POST, VERIFY, Some(&token), Some(json!({ "code": wrong_code(&secret, s).await }))).await;
    assert_eq!((wrong.status.as_u16(), wrong.error_fields()), (400, vec!["code".to_string()]), "{}", wrong.body);
    let confirm = app.call(Method::POST, VERIFY, Some(&token), Some(json!({ "code": pyotp_at(&secret, s).await }))).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert_eq!(confirm.body["status"], "active");
    assert_eq!(confirm.headers["cache-control"], "no-store");
    let codes = confirm.body["recovery_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    let item = format!("{:?}", app.store().get_item(&format!("USER#{}", user.id), "MFA").await.unwrap().unwrap());
    assert!(codes.iter().all(|c| !item.contains(c.as_str().unwrap())), "recovery codes are stored hashed");

    // With 2FA active, login answers a short-lived challenge, not tokens.
    let login = app.login(&user.email, PASSWORD).await;
    assert_eq!(login.status, 200);
    assert_eq!((login.body["mfa_required"].as_bool(), login.body["expires_in"].as_i64()), (Some(true), Some(300)), "{}", login.body);
    assert!(login.body.get("access_token").is_none());
    let challenge = str_of(&login, "challenge_token").to_string();

    // The code that confirmed the enrolment is used up (replay)...
    let replay = answer(&app, &challenge, &pyotp_at(&secret, s).await).await;
    assert_eq!(replay.status, 401, "{}", replay.body);
    // ...and a code two steps away is refused.
    settle().await;
    let far = answer(&app, &challenge, &pyotp_at(&secret, current_step() + 2).await).await;
    assert_eq!(far.status, 401, "{}", far.body);
    // One step of skew is fine: tokens, recording both factors.
    let done = answer(&app, &challenge, &pyotp_at(&secret, s + 1).await).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.headers["cache-control"], "no-store");
    let access = str_of(&done, "access_token");
    assert_eq!(claims(access)["amr"], json!(["pwd", "otp", "mfa"]));
    assert!(claims(access).get("scope").is_none());
    assert_eq!(app.app.platform.verifier.verify(access).unwrap().sub, user.id);
    assert!(refresh(&app, str_of(&done, "refresh_token")).await.body["access_token"].is_string());
    // The challenge was single use.
    assert_eq!(answer(&app, &challenge, &pyotp_at(&secret, s + 1).await).await.status, 401);

    let audit = actions(&app, &user.id).await;
    for expected in [
        ("mfa.enable", Outcome::Success),
        ("mfa.activate", Outcome::Failure),
        ("mfa.activate", Outcome::Success),
        ("auth.login_challenge", Outcome::Success),
        ("auth.mfa_verify", Outcome::Failure),
        ("auth.login", Outcome::Success),
    ] {
        assert!(audit.iter().any(|(a, o)| (a.as_str(), *o) == expected), "{expected:?} not in {audit:?}");
    }
    let failures = audit.iter().filter(|(a, o)| a == "auth.mfa_verify" && *o == Outcome::Failure).count();
    assert_eq!(failures, 2, "each wrong code is audited");
}

#[tokio::test]
async fn a_challenge_locks_after_five_wrong_codes() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user(&["user"]).await;
    let token = app.login(&user.email, PASSWORD).await.body["access_token"].as_str().unwrap().to_string();
    let enrolled = enrol(&app, &token).await;
    let right = pyotp_at(&enrolled.secret, enrolled.step + 1).await;
    let wrong = wrong_code(&enrolled.secret, enrolled.step).await;

    let challenge = challenge_for(&app, &user.email).await;
    for attempt in 1..=5 {
        let r = answer(&app, &challenge, &wrong).await;
        assert_eq!(r.status, 401, "attempt {attempt}: {}", r.body);
    }
    // The sixth attempt is refused, even with the right code.
    let sixth = answer(&app, &challenge, &right).await;
    assert_eq!(sixth.status, 401, "{}", sixth.body);
    assert!(str_of(&sixth, "detail").contains("too many"), "{}", sixth.body);

    let audit = actions(&app, &user.id).await;
    assert_eq!(audit.iter().filter(|(a, o)| a == "auth.mfa_verify" && *o == Outcome::Failure).count(), 4);
    assert_eq!(audit.iter().filter(|(a, o)| a == "auth.mfa_lockout" && *o == Outcome::Denied).count(), 1, "{audit:?}");
    assert!(audit.iter().any(|(a, o)| a == "auth.mfa_verify" && *o == Outcome::Denied), "the refused sixth attempt is audited");

    // The lock held the right code back unused: a new sign-in takes it.
    let again = challenge_for(&app, &user.email).await;
    let r = answer(&app, &again, &right).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn recovery_codes_work_once_and_regenerating_replaces_them() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user(&["user"]).await;
    let token = app.login(&user.email, PASSWORD).await.body["access_token"].as_str().unwrap().to_string();
    let enrolled = enrol(&app, &token).await;
    let old = &enrolled.recovery_codes;

    // Typed loosely (case, spaces for dashes), a recovery code signs in once.
    let challenge = challenge_for(&app, &user.email).await;
    let r = answer(&app, &challenge, &old[0].to_uppercase().replace('-', " ")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(claims(str_of(&r, "access_token"))["amr"], json!(["pwd", "rec", "mfa"]));
    let full = str_of(&r, "access_token").to_string();
    let challenge = challenge_for(&app, &user.email).await;
    assert_eq!(answer(&app, &challenge, &old[0]).await.status, 401, "a recovery code works once");
    let login = app
        .audit_for("user", &user.id)
        .await
        .into_iter()
        .find(|e| e.action == "auth.login" && e.reason.as_deref().is_some_and(|r| r.contains("recovery code")))
        .expect("audited");
    assert!(login.reason.unwrap().contains("9 left"));

    // New codes need a current code: a used one is refused.
    let replay = app.call(Method::POST, RECOVERY_CODES, Some(&full), Some(json!({ "code": pyotp_at(&enrolled.secret, enrolled.step).await }))).await;
    assert_eq!((replay.status.as_u16(), replay.error_fields()), (400, vec!["code".to_string()]), "{}", replay.body);
    let fresh = app.call(Method::POST, RECOVERY_CODES, Some(&full), Some(json!({ "code": pyotp_at(&enrolled.secret, enrolled.step + 1).await }))).await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    assert_eq!(fresh.headers["cache-control"], "no-store");
    let new: Vec<String> = fresh.body["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    assert_eq!(new.len(), 10);
    assert!(new.iter().all(|c| !old.contains(c)));

    // The old codes died with the regeneration; the new ones work.
    let challenge = challenge_for(&app, &user.email).await;
    assert_eq!(answer(&app, &challenge, &old[1]).await.status, 401, "an old code survived regeneration");
    let r = answer(&app, &challenge, &new[0]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let audit = actions(&app, &user.id).await;
    assert!(audit.contains(&("mfa.recovery_codes_regenerate".to_string(), Outcome::Success)));
    assert!(audit.contains(&("mfa.recovery_codes_regenerate".to_string(), Outcome::Failure)));
}

#[tokio::test]
async fn disable_needs_a_current_code_or_the_password() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user(&["analyst"]).await;
    let token = app.login(&user.email, PASSWORD).await.body["access_token"].as_str().unwrap().to_string();
    let disable = |body: Value| {
        let (app, token) = (&app, token.clone());
        async move { app.call(Method::POST, DISABLE, Some(&token), Some(body)).await }
    };
    assert_eq!(disable(json!({ "password": PASSWORD })).await.status, 404, "nothing to disable yet");
    let enrolled = enrol(&app, &token).await;

    let neither = disable(json!({})).await;
    assert_eq!((neither.status.as_u16(), neither.error_fields()), (400, vec!["code".to_string(), "password".to_string()]));
    let both = disable(json!({ "code": "123456", "password": PASSWORD })).await;
    assert_eq!((both.status.as_u16(), both.error_fields()), (400, vec!["password".to_string()]));
    let bad_password = disable(json!({ "password": "not my password" })).await;
    assert_eq!((bad_password.status.as_u16(), bad_password.error_fields()), (400, vec!["password".to_string()]));
    let used = disable(json!({ "code": pyotp_at(&enrolled.secret, enrolled.step).await })).await;
    assert_eq!((used.status.as_u16(), used.error_fields()), (400, vec!["code".to_string()]), "a used code");
    challenge_for(&app, &user.email).await; // still on

    let off = disable(json!({ "code": pyotp_at(&enrolled.secret, enrolled.step + 1).await })).await;
    assert_eq!(off.status, 204, "{}", off.body);
    assert!(app.login(&user.email, PASSWORD).await.body["access_token"].is_string(), "no challenge once 2FA is off");

    // Again with the password instead of a code.
    enrol(&app, &token).await;
    assert_eq!(disable(json!({ "password": PASSWORD })).await.status, 204);
    assert!(app.login(&user.email, PASSWORD).await.body["access_token"].is_string());
    let audit = actions(&app, &user.id).await;
    assert_eq!(audit.iter().filter(|(a, o)| a == "mfa.disable" && *o == Outcome::Success).count(), 2);
    assert_eq!(audit.iter().filter(|(a, o)| a == "mfa.disable" && *o == Outcome::Failure).count(), 2, "wrong password and used code");
}

#[tokio::test]
async fn roles_that_require_2fa_get_enrolment_only_tokens_until_enrolled() {
    let app = TestApp::spawn().await;
    let (admin, _) = app.user(&["super_admin"]).await;
    let (target, _) = app.user(&["user"]).await;
    let login = app.login(&admin.email, PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.body["scope"], "mfa_enrollment");
    let limited = str_of(&login, "access_token").to_string();
    assert_eq!(claims(&limited)["scope"], "mfa_enrollment");

    // Every route but the enrolment ones refuses the token, whatever the roles.
    let mut refused = 0;
    for route in all_routes().into_iter().filter(|r| r.access != shared::http::Access::Public && !r.enrolment) {
        let body = matches!(route.method, Method::POST | Method::PUT).then(|| json!({}));
        let r = app.call(route.method.clone(), &concrete(route.path, &target.id, "some_role"), Some(&limited), body).await;
        assert_eq!(r.status, 403, "{} {}: {}", route.method, route.path, r.body);
        assert_eq!(r.body["type"], "https://keel.dev/problems/mfa-enrollment-required", "{}", r.body);
        refused += 1;
    }
    assert!(refused >= 8);
    // Refreshing keeps the limit.
    let refreshed = refresh(&app, str_of(&login, "refresh_token")).await;
    assert_eq!((refreshed.status.as_u16(), refreshed.body["scope"].as_str()), (200, Some("mfa_enrollment")), "{}", refreshed.body);
    assert_eq!(claims(str_of(&refreshed, "access_token"))["scope"], "mfa_enrollment");

    // The limited token can enrol.
    let enrolled = enrol(&app, &limited).await;
    // The session stays limited after enrolling (also on refresh): sign in again.
    assert_eq!(app.get("/api/v1/admin/users?limit=1", &limited).await.status, 403);
    let again = refresh(&app, str_of(&refreshed, "refresh_token")).await;
    assert_eq!(again.body["scope"], "mfa_enrollment", "{}", again.body);

    let challenge = challenge_for(&app, &admin.email).await;
    let full = answer(&app, &challenge, &pyotp_at(&enrolled.secret, enrolled.step + 1).await).await;
    assert_eq!(full.status, 200, "{}", full.body);
    assert!(full.body.get("scope").is_none());
    let full = str_of(&full, "access_token").to_string();
    assert_eq!(app.get("/api/v1/admin/users?limit=1", &full).await.status, 200);
    // A role that requires 2FA cannot turn it off.
    let off = app.call(Method::POST, DISABLE, Some(&full), Some(json!({ "password": PASSWORD }))).await;
    assert_eq!(off.status, 409, "{}", off.body);
    let audit = app.audit_for("user", &admin.id).await;
    assert!(audit.iter().any(|e| e.action == "auth.login" && e.reason.as_deref().is_some_and(|r| r.contains("limited to enrolment"))));
}

#[tokio::test]
async fn the_roles_that_require_2fa_are_configurable() {
    let app = TestApp::spawn().await;
    let (analyst, _) = app.user(&["analyst"]).await;
    let (admin, _) = app.user(&["admin"]).await;
    let session = app.login(&analyst.email, PASSWORD).await;
    assert!(session.body.get("scope").is_none(), "analysts need no 2FA by default");
    assert_eq!(app.login(&admin.email, PASSWORD).await.body["scope"], "mfa_enrollment", "admins do by default");

    let bad = shared::domain::two_factor_policy::set_required_roles(app.store(), &["analyst".into(), "root".into()], &Actor::system("tests")).await;
    assert!(matches!(bad, Err(shared::Error::Validation(ref e)) if e[0].field == "roles[1]"), "{bad:?}");
    shared::domain::two_factor_policy::set_required_roles(app.store(), &["analyst".into()], &Actor::system("tests")).await.unwrap();
    assert_eq!(app.login(&analyst.email, PASSWORD).await.body["scope"], "mfa_enrollment");
    assert!(app.login(&admin.email, PASSWORD).await.body.get("scope").is_none());
    // A full session whose roles now require 2FA is limited at its next refresh.
    let refreshed = refresh(&app, str_of(&session, "refresh_token")).await;
    assert_eq!(refreshed.body["scope"], "mfa_enrollment", "{}", refreshed.body);
    let change = app.audit_for("config", "system").await;
    assert_eq!(change[0].action, "config.update");
    assert_eq!(change[0].changes.as_ref().unwrap()["after"]["mfa_required_roles"], json!(["analyst"]));
}

#[tokio::test]
async fn an_admin_reset_needs_the_admins_own_fresh_code_is_audited_and_emails_the_user() {
    let app = TestApp::spawn().await;
    let (admin, password_only) = app.user(&["admin"]).await;
    let (target, _) = app.user(&["user"]).await;
    let target_token = app.login(&target.email, PASSWORD).await.body["access_token"].as_str().unwrap().to_string();
    enrol(&app, &target_token).await;
    let path = format!("/api/v1/admin/users/{}/2fa/reset", target.id);
    let reset = |token: String, body: Value| {
        let (app, path) = (&app, path.clone());
        async move { app.call(Method::POST, &path, Some(&token), Some(body)).await }
    };

    // An admin without 2FA of their own cannot reset anyone's.
    let r = reset(password_only.clone(), json!({ "code": "123456" })).await;
    assert_eq!((r.status.as_u16(), r.body["type"].as_str()), (403, Some("https://keel.dev/problems/mfa-required")), "{}", r.body);

    // The admin enrols (their login is limited to that), then signs in with a
    // recovery code, so no TOTP step is used up before the reset.
    let limited = app.login(&admin.email, PASSWORD).await.body["access_token"].as_str().unwrap().to_string();
    let own = enrol(&app, &limited).await;
    let challenge = challenge_for(&app, &admin.email).await;
    let signed_in = answer(&app, &challenge, &own.recovery_codes[0]).await;
    let full = str_of(&signed_in, "access_token").to_string();

    // A session signed in without a second factor is refused even now.
    let r = reset(password_only, json!({ "code": pyotp_at(&own.secret, own.step + 1).await })).await;
    assert_eq!((r.status.as_u16(), r.body["type"].as_str()), (403, Some("https://keel.dev/problems/mfa-required")), "{}", r.body);
    // Wrong and used codes are refused, and audited.
    let r = reset(full.clone(), json!({ "code": wrong_code(&own.secret, own.step).await })).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["code".to_string()]), "{}", r.body);
    let r = reset(full.clone(), json!({ "code": pyotp_at(&own.secret, own.step).await })).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["code".to_string()]), "the code that confirmed enrolment is used up");
    challenge_for(&app, &target.email).await; // the user still has 2FA

    let fresh = pyotp_at(&own.secret, own.step + 1).await;
    let r = reset(full.clone(), json!({ "code": fresh, "reason": "lost phone, ticket 4711" })).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["user_id"], target.id.as_str());
    // The step-up code works once: it cannot serve a second action.
    let own_self = app.call(Method::POST, RECOVERY_CODES, Some(&full), Some(json!({ "code": fresh }))).await;
    assert_eq!(own_self.status, 400, "{}", own_self.body);

    let audit = app.audit_for("user", &target.id).await;
    let entry = audit.iter().find(|e| e.action == "mfa.reset" && e.outcome == Outcome::Success).expect("reset audited");
    assert_eq!((entry.actor.id.as_str(), entry.reason.as_deref()), (admin.id.as_str(), Some("lost phone, ticket 4711")));
    assert_eq!(entry.changes.as_ref().unwrap()["before"]["two_factor"], "active");
    let denials: Vec<&str> = audit.iter().filter(|e| e.action == "mfa.reset" && e.outcome == Outcome::Denied).filter_map(|e| e.reason.as_deref()).collect();
    assert_eq!(denials.len(), 4, "no own 2FA, no second factor in the session, wrong code, used code: {denials:?}");

    // The user signs in with the password alone again, and is told by email.
    assert!(app.login(&target.email, PASSWORD).await.body["access_token"].is_string());
    assert_eq!(app.run_jobs().await, 1);
    let emails = app.sent_emails(&target.email).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert!(emails[0].contains("reset the two-factor authentication"), "{}", emails[0]);
    let job = shared::domain::jobs::get(app.store(), str_of(&r, "notification_job_id")).await.unwrap().unwrap();
    assert_eq!((job.kind.as_str(), job.status), ("security_email", shared::domain::jobs::JobStatus::Succeeded));
    // Nothing left to reset.
    assert_eq!(reset(full, json!({ "code": "000000" })).await.status, 404);
}

#[tokio::test]
async fn bad_input_is_named_and_secrets_are_never_kept_for_idempotency() {
    let app = TestApp::spawn().await;
    let (user, token) = app.user(&["admin"]).await;
    let post = |path: &'static str, token: Option<String>, body: Value| {
        let app = &app;
        async move { app.call(Method::POST, path, token.as_deref(), Some(body)).await }
    };
    for (body, field) in
        [(json!({}), "code"), (json!({ "code": 5 }), "code"), (json!({ "code": "" }), "code"), (json!({ "code": "123456", "extra": 1 }), "extra")]
    {
        let r = post(VERIFY, Some(token.clone()), body.clone()).await;
        assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec![field.to_string()]), "{body}: {}", r.body);
    }
    assert_eq!(post(VERIFY, None, json!({ "code": "123456" })).await.status, 401, "neither a challenge nor a token");
    assert_eq!(post(VERIFY, None, json!({ "code": "123456", "challenge_token": "forged" })).await.status, 401);
    assert_eq!(post(VERIFY, Some(token.clone()), json!({ "code": "123456" })).await.status, 409, "nothing pending");
    assert_eq!(post(RECOVERY_CODES, Some(token.clone()), json!({ "code": "123456" })).await.status, 409, "2FA not active");
    assert_eq!(post(RECOVERY_CODES, Some(token.clone()), json!({})).await.error_fields(), vec!["code"]);
    assert_eq!(post(DISABLE, Some(token.clone()), json!({ "code": 7 })).await.error_fields(), vec!["code"]);
    assert_eq!(app.call(Method::POST, ENABLE, None, None).await.status, 401);
    let r = app
        .call(Method::POST, &format!("/api/v1/admin/users/{}/2fa/reset", user.id), Some(&token), Some(json!({ "code": "", "reason": "x".repeat(501) })))
        .await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["code".to_string(), "reason".to_string()]));

    // Enabling twice with one Idempotency-Key runs twice: a response holding
    // a secret is never stored for replay.
    let enable = || {
        http::Request::builder()
            .method("POST")
            .uri(ENABLE)
            .header("authorization", format!("Bearer {token}"))
            .header("idempotency-key", "enable-once")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let (first, second) = (app.send(enable()).await, app.send(enable()).await);
    assert_eq!((first.status.as_u16(), second.status.as_u16()), (200, 200));
    assert!(second.headers.get("idempotent-replayed").is_none());
    assert_ne!(first.body["secret"], second.body["secret"]);
}
