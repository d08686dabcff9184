//! Login latency in the local stack, with and without 2FA: the median (and
//! p90) of 100 sign-ins each, through the merged router in-process, against
//! the AWS emulator (moto on loopback). Without 2FA: `POST /auth/login` →
//! tokens. With 2FA: `POST /auth/login` → challenge, then
//! `POST /auth/2fa/verify` with a TOTP code → tokens (timed together).
//! Each 2FA user is enrolled beforehand; a code is accepted once per user
//! and time step, so every sign-in uses its own user.
//!
//! `cargo run --release -p keel-bench --bin login` (run by `make bench`).

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const USERS: usize = 100;
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
    let totp = shared::mfa::totp(secret.as_ref(), 6, "bench").map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = chrono::Utc::now().timestamp() as u64;
    Ok(totp.generate(now).to_string())
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    println!("  {name:<24} median {:>7.2} ms   p90 {:>7.2} ms   ({} sign-ins)", ms(p(0.5)), ms(p(0.9)), samples.len());
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let moto = keel_local::moto::Moto::start(None).await?;
    let sdk = keel_local::sdk_config(&moto.endpoint).await;
    let template = keel_local::template::Template::load(&keel_local::repo_root().join("template.yaml"))?;
    let stack = keel_local::provision::provision(&sdk, &template, "login-bench", &Default::default()).await?;
    let app = keel_local::app::build(&sdk, &stack.env).await?;
    let router = app.router.clone();
    eprintln!("stack ready");
    let store = &app.platform.store;
    let user = |i: usize, with_2fa: bool| {
        let email = shared::users::Email::parse(&format!("{}{i}@bench.test", if with_2fa { "mfa" } else { "pwd" })).expect("email");
        let mut user = shared::users::User::new(&email, "Bench User", vec!["support".into()], shared::users::UserStatus::Active);
        user.password_hash = Some(shared::crypto::hash_password(PASSWORD).expect("hash"));
        user
    };

    // Users without 2FA, and users with 2FA enrolled through the API.
    let mut secrets = Vec::new();
    for i in 0..USERS {
        for with_2fa in [false, true] {
            let u = user(i, with_2fa);
            shared::users::create(store, &u, shared::audit::AuditEntry::new(&shared::audit::Actor::system("bench"), "user.create", "user", &u.id)).await?;
            if i % 20 == 0 && !with_2fa {
                eprintln!("creating users: {i}");
            }
            if with_2fa {
                let signed_in = post(&router, "/api/v1/auth/login", None, json!({"email": u.email, "password": PASSWORD})).await?;
                let token = signed_in["access_token"].as_str().unwrap_or_default().to_string();
                let secret = post(&router, "/api/v1/auth/2fa/enable", Some(&token), json!({})).await?["secret"].as_str().unwrap_or_default().to_string();
                post(&router, "/api/v1/auth/2fa/verify", Some(&token), json!({"code": code(&secret)?})).await?;
                secrets.push((u.email.clone(), secret));
            }
        }
    }
    eprintln!("enrolled {} users with 2FA", secrets.len());
    // The enrolment used this time step's code: sign-ins need the next one.
    let into_step = chrono::Utc::now().timestamp() % 30;
    tokio::time::sleep(Duration::from_secs((31 - into_step) as u64)).await;

    let mut without = Vec::new();
    for i in 0..USERS {
        let email = format!("pwd{i}@bench.test");
        let started = Instant::now();
        let r = post(&router, "/api/v1/auth/login", None, json!({"email": email, "password": PASSWORD})).await?;
        without.push(started.elapsed());
        if i % 20 == 0 {
            eprintln!("password sign-ins: {i}");
        }
        anyhow::ensure!(r["access_token"].is_string(), "no tokens: {r}");
    }
    let mut with = Vec::new();
    for (i, (email, secret)) in secrets.iter().enumerate() {
        if i % 20 == 0 {
            eprintln!("2FA sign-ins: {i}");
        }
        let started = Instant::now();
        let challenge = post(&router, "/api/v1/auth/login", None, json!({"email": email, "password": PASSWORD})).await?;
        let r = post(&router, "/api/v1/auth/2fa/verify", None, json!({"challenge_token": challenge["challenge_token"], "code": code(secret)?})).await?;
        with.push(started.elapsed());
        anyhow::ensure!(r["access_token"].is_string(), "no tokens: {r}");
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("Login latency, local stack (in-process router, moto on loopback), load average {}", load.split_whitespace().next().unwrap_or("?"));
    summary("password only", without);
    summary("password + TOTP 2FA", with);
    Ok(())
}
