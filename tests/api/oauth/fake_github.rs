//! A tiny GitHub on loopback: `/login/oauth/authorize` (signs the one
//! account in at once), `/login/oauth/access_token` (client secret, single-
//! use code and PKCE S256 checked; refusals answered with 200 and an error
//! body, as GitHub does), and the REST API's `/user` and `/user/emails`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

pub const CLIENT_ID: &str = "gh-client";
pub const CLIENT_SECRET: &str = "gh-secret";

/// The account that signs in, and its email addresses
/// (`email`, `primary`, `verified`).
#[derive(Clone)]
pub struct Account {
    pub id: u64,
    pub login: String,
    pub name: Option<String>,
    pub emails: Vec<(String, bool, bool)>,
}

#[derive(Default)]
struct Inner {
    account: Option<Account>,
    /// code → (PKCE challenge, redirect URI)
    codes: HashMap<String, (String, String)>,
    tokens: HashMap<String, u64>,
}

#[derive(Clone, Default)]
pub struct FakeGithub {
    inner: Arc<Mutex<Inner>>,
    pub url: String,
}

#[derive(Deserialize)]
struct Authorize {
    client_id: String,
    redirect_uri: String,
    state: String,
    code_challenge: String,
    code_challenge_method: String,
}

#[derive(Deserialize)]
struct Exchange {
    client_id: String,
    client_secret: String,
    code: String,
    code_verifier: String,
}

fn random() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn authorize(State(fake): State<FakeGithub>, Query(q): Query<Authorize>) -> Response {
    if q.client_id != CLIENT_ID || q.code_challenge_method != "S256" {
        return (StatusCode::BAD_REQUEST, "unknown client or no PKCE").into_response();
    }
    let code = random();
    fake.inner.lock().unwrap().codes.insert(code.clone(), (q.code_challenge, q.redirect_uri.clone()));
    let mut target = url::Url::parse(&q.redirect_uri).unwrap();
    target.query_pairs_mut().append_pair("code", &code).append_pair("state", &q.state);
    Redirect::to(target.as_str()).into_response()
}

async fn access_token(State(fake): State<FakeGithub>, body: Bytes) -> Response {
    let Ok(f) = serde_urlencoded::from_bytes::<Exchange>(&body) else {
        return (StatusCode::BAD_REQUEST, "not a token request").into_response();
    };
    let refuse = |error: &str, description: &str| axum::Json(json!({ "error": error, "error_description": description })).into_response();
    if f.client_id != CLIENT_ID || f.client_secret != CLIENT_SECRET {
        return refuse("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.");
    }
    let mut inner = fake.inner.lock().unwrap();
    let Some((challenge, _)) = inner.codes.remove(&f.code) else {
        return refuse("bad_verification_code", "The code passed is incorrect or expired.");
    };
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(f.code_verifier.as_bytes()));
    if computed != challenge {
        return refuse("invalid_grant", "The code_verifier does not match the code_challenge.");
    }
    let token = format!("gho_{}", random());
    let id = inner.account.as_ref().map(|a| a.id).unwrap_or_default();
    inner.tokens.insert(token.clone(), id);
    axum::Json(json!({ "access_token": token, "token_type": "bearer", "scope": "read:user,user:email" })).into_response()
}

fn account_for(fake: &FakeGithub, headers: &HeaderMap) -> Option<Account> {
    let token = headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")?;
    let inner = fake.inner.lock().unwrap();
    inner.tokens.get(token)?;
    inner.account.clone()
}

async fn user(State(fake): State<FakeGithub>, headers: HeaderMap) -> Response {
    match account_for(&fake, &headers) {
        Some(a) => axum::Json(json!({ "id": a.id, "login": a.login, "name": a.name, "email": null })).into_response(),
        None => (StatusCode::UNAUTHORIZED, axum::Json(json!({ "message": "Bad credentials" }))).into_response(),
    }
}

async fn emails(State(fake): State<FakeGithub>, headers: HeaderMap) -> Response {
    match account_for(&fake, &headers) {
        Some(a) => axum::Json(
            a.emails
                .iter()
                .map(|(email, primary, verified)| json!({ "email": email, "primary": primary, "verified": verified, "visibility": null }))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        None => (StatusCode::UNAUTHORIZED, axum::Json(json!({ "message": "Bad credentials" }))).into_response(),
    }
}

impl FakeGithub {
    /// Serve on a free loopback port until the test ends.
    pub async fn start() -> FakeGithub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeGithub { url: format!("http://{}", listener.local_addr().unwrap()), ..Default::default() };
        let router = Router::new()
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(access_token))
            .route("/api/user", get(user))
            .route("/api/user/emails", get(emails))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        fake
    }

    /// Who signs in next.
    pub fn sign_in_as(&self, account: Account) {
        self.inner.lock().unwrap().account = Some(account);
    }

    /// The API base to configure in Keel (`--api-url`).
    pub fn api_url(&self) -> String {
        format!("{}/api", self.url)
    }
}
