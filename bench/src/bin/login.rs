//! Login latency in the local stack, with and without 2FA: the median (and
//! p90) of 100 sign-ins each, through the merged router in-process, against
//! the AWS emulator (moto on loopback). Without 2FA: `POST /auth/login` →
//! tokens. With 2FA: `POST /auth/login` → challenge, then
//! `POST /auth/2fa/verify` with a TOTP code → tokens (timed together).
//! Each phase runs on its own fresh stack with its users written through
//! the domain layer (2FA enrolled and confirmed); a code is accepted once
//! per user and time step, so every sign-in uses its own user.
//!
//! `cargo run --release -p keel-bench --bin login` (run by `make bench`).

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Sign-ins timed per kind (`KEEL_BENCH_LOGINS`, default 100).
fn users() -> usize {
    std::env::var("KEEL_BENCH_LOGINS").ok().and_then(|v| v.parse().ok()).unwrap_or(100)
}
const PASSWORD: &str = "correct horse battery staple";

async fn post(router: &Router, path: &str, token: Option<&str>, body: Value) -> anyhow::Result<Value> {
    let mut request = axum::http::Request::post(path).header("content-type", "application/json");
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    // A stuck call fails the bench instead of hanging it.
    let response = tokio::time::timeout(Duration::from_secs(60), router.clone().oneshot(request.body(Body::from(body.to_string()))?))
        .await
        .map_err(|_| anyhow::anyhow!("{path}: no answer within 60 s"))??;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "{path}: {status} {value}");
    Ok(value)
}

/// The current code for a base32 secret, computed with totp-rs directly.
fn code(secret: &str) -> anyhow::Result<String> {
    let secret = totp_rs::Secret::try_from_base32(secret).map_err(|e| anyhow::anyhow!("secret: {e:?}"))?;
    let totp = shared::identity::two_factor::totp(secret.as_ref(), 6, "bench").map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = chrono::Utc::now().timestamp() as u64;
    Ok(totp.generate(now).to_string())
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    println!("  {name:<24} median {:>7.2} ms   p90 {:>7.2} ms   ({} sign-ins)", ms(p(0.5)), ms(p(0.9)), samples.len());
}

/// A fresh local stack (its own emulator), so one phase's load does not
/// carry into the next.
async fn stack(name: &str) -> anyhow::Result<(keel_local::moto::Moto, keel_local::app::LocalApp)> {
    let moto = keel_local::moto::Moto::start(None).await?;
    let sdk = keel_local::sdk_config(&moto.endpoint).await;
    let template = keel_local::template::Template::load(&keel_local::repo_root().join("template.yaml"))?;
    let stack = keel_local::provision::provision(&sdk, &template, name, &Default::default()).await?;
    let app = keel_local::app::build(&sdk, &stack.env).await?;
    Ok((moto, app))
}

/// A user with a password, and with TOTP 2FA enrolled and confirmed when
/// `secret` is given (written through the domain layer, as
/// `POST /auth/2fa/enable` + `/verify` would leave it).
async fn seed_user(app: &keel_local::app::LocalApp, email: &str, secret: Option<&[u8]>) -> anyhow::Result<()> {
    let store = &app.platform.store;
    let email = shared::identity::users::Email::parse(email).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut user = shared::identity::users::User::new(&email, "Bench User", vec!["support".into()], shared::identity::users::UserStatus::Active);
    user.password_hash = Some(shared::platform::crypto::hash_password(PASSWORD)?);
    let actor = shared::audit::Actor::system("bench");
    shared::identity::users::create(store, &user, shared::audit::AuditEntry::new(&actor, "user.create", "user", &user.id)).await?;
    if let Some(secret) = secret {
        let mut record = shared::identity::two_factor::MfaRecord::pending(&app.platform.envelope, &user.id, secret, None).await?;
        record.status = shared::identity::two_factor::MfaStatus::Active;
        record.activated_at = Some(record.created_at.clone());
        let write = record.save(store.table(), None)?;
        store.commit(vec![write], &shared::audit::AuditEntry::new(&actor, "auth.2fa.enable", "user", &user.id)).await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let logins = users();

    // Password only: POST /auth/login → tokens.
    let (moto, app) = stack("login-bench-pwd").await?;
    for i in 0..logins {
        seed_user(&app, &format!("pwd{i}@bench.test"), None).await?;
    }
    eprintln!("{logins} password users ready");
    let mut without = Vec::new();
    for i in 0..logins {
        let email = format!("pwd{i}@bench.test");
        let started = Instant::now();
        let r = post(&app.router, "/api/v1/auth/login", None, json!({"email": email, "password": PASSWORD})).await?;
        without.push(started.elapsed());
        anyhow::ensure!(r["access_token"].is_string(), "no tokens: {r}");
        if i % 20 == 0 {
            eprintln!("password sign-ins: {i}");
        }
    }
    drop(app);
    drop(moto);

    // With 2FA: POST /auth/login → challenge, POST /auth/2fa/verify with a
    // TOTP code → tokens, timed together.
    let (moto, app) = stack("login-bench-2fa").await?;
    let mut secrets = Vec::new();
    for i in 0..logins {
        let secret = shared::identity::two_factor::new_secret();
        let email = format!("mfa{i}@bench.test");
        seed_user(&app, &email, Some(&secret)).await?;
        secrets.push((email, shared::identity::two_factor::secret_base32(&secret)?));
    }
    eprintln!("{logins} users with 2FA ready");
    let mut with = Vec::new();
    for (i, (email, secret)) in secrets.iter().enumerate() {
        let started = Instant::now();
        let challenge = post(&app.router, "/api/v1/auth/login", None, json!({"email": email, "password": PASSWORD})).await?;
        let r = post(&app.router, "/api/v1/auth/2fa/verify", None, json!({"challenge_token": challenge["challenge_token"], "code": code(secret)?})).await?;
        with.push(started.elapsed());
        anyhow::ensure!(r["access_token"].is_string(), "no tokens: {r}");
        if i % 20 == 0 {
            eprintln!("2FA sign-ins: {i}");
        }
    }
    drop(app);
    drop(moto);

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("Login latency, local stack (in-process router, moto on loopback), load average {}", load.split_whitespace().next().unwrap_or("?"));
    summary("password only", without);
    summary("password + TOTP 2FA", with);
    Ok(())
}
