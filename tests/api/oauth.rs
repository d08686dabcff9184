//! OAuth / OpenID Connect sign-in end to end. Keel is served on a loopback
//! port; a real OpenID provider (oidc-provider from npm, tests/oidc) runs on
//! another and is driven as a browser would (cookie jar, redirects by hand,
//! its login form); GitHub is a tiny fake API. Nothing on Keel's side is
//! mocked: providers are configured in the table as `keel oauth-provider`
//! does, and every refusal is checked for its problem+json and audit entry.

mod browser;
mod fake_github;
mod oidc_provider;
mod tamper_proxy;

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use http::Method;
use serde_json::{Value, json};
use shared::audit::{Actor, AuditEntry, Outcome};
use shared::identity::oauth::ProviderSettings;
use shared::identity::users::{Email, User, UserStatus};
use url::Url;

use self::browser::{Answer, AtLogin, Browser, param, with_param};
use self::fake_github::{Account, FakeGithub};
use self::oidc_provider::{ADA, ADA_EMAIL, EVE, EVE_EMAIL, OidcProvider, Options};
use self::tamper_proxy::TamperProxy;
use crate::helpers::{PASSWORD, TestApp};

/// Serve the app on a loopback port (the browser reaches Keel's callback
/// over HTTP, as it would in production). Stops when the test ends.
async fn serve(app: &TestApp) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let service = app.router().into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    base
}

fn cli() -> Actor {
    Actor { id: "cli".into(), kind: "cli".into(), ..Default::default() }
}

/// Configure a provider exactly as `keel oauth-provider set` does.
async fn configure(app: &TestApp, settings: ProviderSettings) {
    shared::identity::oauth::set(app.store(), &app.app.platform.envelope, &settings, &cli()).await.unwrap();
}

fn callback_url(keel: &str, provider: &str) -> String {
    format!("{keel}/api/v1/auth/oauth/{provider}/callback")
}

/// The user id an access token was issued to.
fn subject(access_token: &str) -> String {
    let payload = access_token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["sub"].as_str().unwrap().to_string()
}

/// A user with a password, as an operator would create one.
async fn existing_user(app: &TestApp, email: &str) -> User {
    let mut user = User::new(&Email::parse(email).unwrap(), "Existing User", vec!["user".into()], UserStatus::Active);
    user.password_hash = Some(shared::platform::crypto::hash_password(PASSWORD).unwrap());
    shared::identity::users::create(app.store(), &user, AuditEntry::new(&Actor::system("tests"), "user.create", "user", &user.id)).await.unwrap();
    user
}

/// Sign-ins through the provider named `name`, with one browser, against
/// one Keel.
struct Flow {
    app: Arc<TestApp>,
    keel: String,
    name: String,
    browser: Browser,
}

impl Flow {
    async fn new(name: &str) -> Flow {
        let app = TestApp::spawn().await;
        let keel = serve(&app).await;
        Flow { app: Arc::new(app), keel, name: name.to_string(), browser: Browser::new() }
    }

    /// Sign-ins through another provider of the same Keel (a new browser).
    fn through(&self, name: &str) -> Flow {
        Flow { app: self.app.clone(), keel: self.keel.clone(), name: name.to_string(), browser: Browser::new() }
    }

    fn callback(&self) -> String {
        callback_url(&self.keel, &self.name)
    }

    fn oidc_settings(&self, issuer: &str) -> ProviderSettings {
        ProviderSettings {
            name: self.name.clone(),
            kind: "oidc".into(),
            issuer: Some(issuer.to_string()),
            client_id: oidc_provider::CLIENT_ID.into(),
            client_secret: oidc_provider::CLIENT_SECRET.into(),
            redirect_uri: self.callback(),
            ..Default::default()
        }
    }

    /// An OpenID provider (started by the caller) configured as `oidc`.
    async fn with_oidc(self, issuer: &str) -> Flow {
        configure(&self.app, self.oidc_settings(issuer)).await;
        self
    }

    /// `POST /api/v1/auth/oauth/{name}`: the authorization URL and state.
    async fn begin(&self) -> (Url, String) {
        let r = self.app.call(Method::POST, &format!("/api/v1/auth/oauth/{}", self.name), None, None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["expires_in"], 600);
        (Url::parse(r.body["authorization_url"].as_str().unwrap()).unwrap(), r.body["state"].as_str().unwrap().to_string())
    }

    /// Through the provider to Keel's callback URL (not yet visited).
    async fn authorize(&self, url: &Url, at_login: AtLogin<'_>) -> Url {
        self.browser.authorize(url.as_str(), &self.callback(), at_login).await
    }

    async fn visit(&self, callback: &Url) -> Answer {
        self.browser.get(callback.as_str()).await
    }

    async fn sign_in(&self, (login, password): (&str, &str)) -> Answer {
        let (url, _) = self.begin().await;
        let callback = self.authorize(&url, AtLogin::SignIn(login, password)).await;
        self.visit(&callback).await
    }

    /// Audit entries about the provider (refused callbacks).
    async fn refusals(&self) -> Vec<AuditEntry> {
        self.app.audit_for("oauth_provider", &self.name).await.into_iter().filter(|e| e.action == "auth.oauth_callback").collect()
    }
}

/// A refused callback: status, a problem+json body whose detail says why.
fn assert_refused(answer: &Answer, status: u16, detail: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["status"], status, "not problem+json: {}", answer.body);
    let text = answer.body["detail"].as_str().unwrap_or("");
    assert!(text.contains(detail), "expected {detail:?} in {text:?}");
}

async fn identities(app: &TestApp, access_token: &str) -> Value {
    let r = app.get("/api/v1/auth/identities", access_token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

#[tokio::test]
async fn oidc_signs_up_then_signs_in_with_the_same_identity() {
    let flow = Flow::new("acme").await;
    let provider = OidcProvider::start(Options { redirect_uri: flow.callback(), ..Default::default() }).await;
    let flow = flow.with_oidc(&provider.issuer).await;

    let first = flow.sign_in(ADA).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["token_type"], "Bearer");
    let access = first.body["access_token"].as_str().unwrap();
    let user = shared::identity::users::find_by_email(flow.app.store(), &Email::parse(ADA_EMAIL).unwrap()).await.unwrap().expect("a user was created");
    assert_eq!(
        (user.roles.clone(), user.status, user.password_hash.is_none(), user.name.as_str()),
        (vec!["user".to_string()], UserStatus::Active, true, "Ada Lovelace")
    );
    assert_eq!(subject(access), user.id);
    let methods = identities(&flow.app, access).await;
    assert_eq!(methods["has_password"], false);
    assert_eq!(methods["identities"][0]["provider"], "acme");
    assert_eq!(methods["identities"][0]["subject"], "ada");
    assert_eq!(methods["identities"][0]["email"], ADA_EMAIL);

    // Again (the provider remembers the browser): the identity is reused.
    let second = flow.sign_in(ADA).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(subject(second.body["access_token"].as_str().unwrap()), user.id);
    assert_eq!(identities(&flow.app, access).await["identities"].as_array().unwrap().len(), 1);

    // Sessions are those of a password login: the refresh token rotates.
    let refreshed = flow.app.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({ "refresh_token": second.body["refresh_token"] }))).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);

    let audit = flow.app.audit_for("user", &user.id).await;
    assert!(audit.iter().any(|e| e.action == "user.create" && e.reason.as_deref() == Some("signed up with acme") && e.actor.id == user.id));
    assert_eq!(audit.iter().filter(|e| e.action == "auth.login" && e.reason.as_deref() == Some("signed in with oauth:acme")).count(), 2);
    assert_eq!(provider.events().iter().filter(|e| e["event"] == "grant.success").count(), 2);

    // The only way in: unlinking it is refused.
    let r = flow.app.call(Method::DELETE, "/api/v1/auth/identities/acme", Some(access), None).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("last way to sign in"));
}

#[tokio::test]
async fn oidc_refuses_wrong_replayed_and_foreign_state_and_provider_errors() {
    let flow = Flow::new("acme").await;
    let provider = OidcProvider::start(Options { redirect_uri: flow.callback(), ..Default::default() }).await;
    let flow = flow.with_oidc(&provider.issuer).await;

    let (url, state) = flow.begin().await;
    let callback = flow.authorize(&url, AtLogin::SignIn(ADA.0, ADA.1)).await;
    assert_eq!(param(&callback, "state").as_deref(), Some(state.as_str()));
    assert_eq!(param(&callback, "iss").as_deref(), Some(provider.issuer.as_str()), "RFC 9207 iss is sent");

    assert_refused(&flow.visit(&with_param(&callback, "state", "forged-state")).await, 400, "unknown OAuth state");
    let mut no_state = callback.clone();
    no_state.set_query(Some(&format!("code={}", param(&callback, "code").unwrap())));
    let missing = flow.visit(&no_state).await;
    assert_eq!((missing.status, missing.body["errors"][0]["field"].as_str()), (400, Some("state")));

    // Neither touched the real state: the genuine callback signs in, once;
    // its replay is refused before the code reaches the provider again.
    assert_eq!(flow.visit(&callback).await.status, 200);
    assert_refused(&flow.visit(&callback).await, 400, "already used");
    assert_eq!(
        provider.events().iter().filter(|e| e["event"].as_str().unwrap().starts_with("grant")).count(),
        1,
        "the replayed code never reached the provider"
    );

    // A response claiming another issuer (RFC 9207 mix-up) is refused, and
    // spends its state: the first callback carrying a state uses it up.
    let (url, _) = flow.begin().await;
    let callback = flow.authorize(&url, AtLogin::SignIn(ADA.0, ADA.1)).await;
    assert_refused(&flow.visit(&with_param(&callback, "iss", "https://evil.example")).await, 400, "another issuer");
    assert_refused(&flow.visit(&callback).await, 400, "already used");

    // Someone cancels at the provider's login page (a browser without a
    // provider session): error=access_denied comes back.
    let stranger = flow.through("acme");
    let (url, _) = stranger.begin().await;
    let cancelled = stranger.authorize(&url, AtLogin::Cancel).await;
    assert_eq!(param(&cancelled, "error").as_deref(), Some("access_denied"));
    assert_refused(&stranger.visit(&cancelled).await, 400, "access_denied");

    // A state issued for another provider is refused by this one.
    let other = ProviderSettings { name: "other".into(), ..flow.oidc_settings(&provider.issuer) };
    configure(&flow.app, other).await;
    let r = flow.app.call(Method::POST, "/api/v1/auth/oauth/other", None, None).await;
    let foreign = with_param(&callback, "state", r.body["state"].as_str().unwrap());
    assert_refused(&flow.visit(&foreign).await, 400, "another provider");

    // Unknown providers are 404s.
    let r = flow.app.call(Method::POST, "/api/v1/auth/oauth/nope", None, None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_refused(&flow.browser.get(&format!("{}?code=c&state=s", callback_url(&flow.keel, "nope"))).await, 404, "no OAuth provider");

    let reasons: Vec<(Outcome, String)> = flow.refusals().await.into_iter().map(|e| (e.outcome, e.reason.unwrap_or_default())).collect();
    for expected in ["unknown state", "issuer mismatch", "replayed state", "state of another provider"] {
        assert!(reasons.iter().any(|(o, r)| *o == Outcome::Denied && r == expected), "{expected} not audited: {reasons:?}");
    }
    assert!(reasons.iter().any(|(o, r)| *o == Outcome::Failure && r.contains("access_denied")), "{reasons:?}");
}

#[tokio::test]
async fn oidc_refuses_a_tampered_nonce_and_a_pkce_mismatch() {
    let flow = Flow::new("acme").await;
    let provider = OidcProvider::start(Options { redirect_uri: flow.callback(), ..Default::default() }).await;
    let flow = flow.with_oidc(&provider.issuer).await;

    // The nonce is changed in the authorization request on its way to the
    // provider (as an attacker injecting a request would); the provider
    // signs that nonce into the id_token, which Keel then refuses.
    let (url, _) = flow.begin().await;
    let callback = flow.authorize(&with_param(&url, "nonce", "attacker-chosen-nonce"), AtLogin::SignIn(ADA.0, ADA.1)).await;
    assert_refused(&flow.visit(&callback).await, 401, "nonce does not match");

    // Sign-in A's code, presented with sign-in B's state: Keel sends B's
    // PKCE verifier, which does not match A's challenge.
    let (url_a, _) = flow.begin().await;
    let callback_a = flow.authorize(&url_a, AtLogin::SignIn(ADA.0, ADA.1)).await;
    let (url_b, _) = flow.begin().await;
    let callback_b = flow.authorize(&url_b, AtLogin::SignIn(ADA.0, ADA.1)).await;
    let mixed = with_param(&callback_a, "state", &param(&callback_b, "state").unwrap());
    assert_refused(&flow.visit(&mixed).await, 401, "invalid_grant");
    assert!(provider.last_grant_error().await.contains("code_verifier does not match"), "{:?}", provider.events());

    assert!(shared::identity::users::find_by_email(flow.app.store(), &Email::parse(ADA_EMAIL).unwrap()).await.unwrap().is_none(), "nobody signed up");
    let reasons: Vec<String> = flow.refusals().await.into_iter().filter(|e| e.outcome == Outcome::Denied).filter_map(|e| e.reason).collect();
    assert!(reasons.iter().any(|r| r.contains("nonce")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("code refused: invalid_grant")), "{reasons:?}");
}

#[tokio::test]
async fn oidc_refuses_an_expired_code() {
    let flow = Flow::new("acme").await;
    let provider = OidcProvider::start(Options { redirect_uri: flow.callback(), code_ttl: Some(1), ..Default::default() }).await;
    let flow = flow.with_oidc(&provider.issuer).await;
    let (url, _) = flow.begin().await;
    let callback = flow.authorize(&url, AtLogin::SignIn(ADA.0, ADA.1)).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_refused(&flow.visit(&callback).await, 401, "invalid_grant");
    assert!(provider.last_grant_error().await.contains("authorization code is expired"), "{:?}", provider.events());
}

#[tokio::test]
async fn oidc_refuses_an_id_token_altered_in_transit() {
    let flow = Flow::new("acme").await;
    let proxy = TamperProxy::bind().await;
    let provider = OidcProvider::start(Options { redirect_uri: flow.callback(), issuer: Some(proxy.url.clone()), ..Default::default() }).await;
    let issuer = provider.issuer.clone();
    proxy.serve(format!("http://127.0.0.1:{}", provider.port));
    let flow = flow.with_oidc(&issuer).await;

    let answer = flow.sign_in(ADA).await;
    assert_refused(&answer, 401, "invalid id_token: bad signature");
    for email in ["mallory@example.com", ADA_EMAIL] {
        assert!(shared::identity::users::find_by_email(flow.app.store(), &Email::parse(email).unwrap()).await.unwrap().is_none(), "{email} signed up");
    }
    assert_eq!(provider.events().iter().filter(|e| e["event"] == "grant.success").count(), 1, "the provider did issue the (genuine) token");
    assert!(flow.refusals().await.iter().any(|e| e.reason.as_deref() == Some("invalid id_token: bad signature")));
}

#[tokio::test]
async fn oidc_unverified_emails_never_match_or_create_accounts() {
    let flow = Flow::new("acme").await;
    let provider = OidcProvider::start(Options { redirect_uri: flow.callback(), ..Default::default() }).await;
    let flow = flow.with_oidc(&provider.issuer).await;
    let eve = existing_user(&flow.app, EVE_EMAIL).await;

    let answer = flow.sign_in(EVE).await;
    assert_refused(&answer, 422, "verified email");
    assert!(answer.body.get("link_token").is_none());
    let grant = shared::identity::token::SessionGrant::new(&[shared::identity::token::amr::PASSWORD], None);
    let token = flow.app.app.signer.access_token(&eve, "s", &grant).await.unwrap().token;
    assert_eq!(identities(&flow.app, &token).await["identities"], json!([]));
    assert!(flow.refusals().await.iter().any(|e| e.reason.as_deref() == Some("no verified email")));
}

#[tokio::test]
async fn oidc_takes_the_email_from_userinfo_when_the_id_token_has_none() {
    let flow = Flow::new("acme").await;
    let provider = OidcProvider::start(Options { redirect_uri: flow.callback(), claims_in_userinfo: true, ..Default::default() }).await;
    let flow = flow.with_oidc(&provider.issuer).await;
    let answer = flow.sign_in(ADA).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let user = shared::identity::users::find_by_email(flow.app.store(), &Email::parse(ADA_EMAIL).unwrap()).await.unwrap().unwrap();
    assert_eq!(subject(answer.body["access_token"].as_str().unwrap()), user.id);
}

#[tokio::test]
async fn oidc_links_an_existing_account_once_its_owner_confirms_with_the_password() {
    let flow = Flow::new("acme").await;
    let provider = OidcProvider::start(Options { redirect_uri: flow.callback(), ..Default::default() }).await;
    let flow = flow.with_oidc(&provider.issuer).await;
    let ada = existing_user(&flow.app, ADA_EMAIL).await;
    let confirm = |body: Value| flow.app.call(Method::POST, "/api/v1/auth/oauth/link/confirm", None, Some(body));

    let offer = flow.sign_in(ADA).await;
    assert_eq!(offer.status, 200, "{}", offer.body);
    assert_eq!(
        (offer.body["link_required"].as_bool(), offer.body["email"].as_str(), offer.body["provider"].as_str()),
        (Some(true), Some(ADA_EMAIL), Some("acme"))
    );
    assert!(offer.body.get("access_token").is_none(), "no session before the owner confirms");
    let link_token = offer.body["link_token"].as_str().unwrap();

    let r = confirm(json!({ "link_token": link_token })).await;
    assert_eq!((r.status.as_u16(), r.error_fields()), (400, vec!["password".to_string()]));
    let r = confirm(json!({ "link_token": link_token, "password": "not the password" })).await;
    assert_eq!(r.status, 401, "{}", r.body);
    // A wrong password spends the link: one guess per provider sign-in.
    let r = confirm(json!({ "link_token": link_token, "password": PASSWORD })).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("unknown, used or expired link token"));

    let offer = flow.sign_in(ADA).await;
    let r = confirm(json!({ "link_token": offer.body["link_token"], "password": PASSWORD })).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let access = r.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(subject(&access), ada.id);
    let methods = identities(&flow.app, &access).await;
    assert_eq!((methods["has_password"].as_bool(), methods["identities"][0]["provider"].as_str()), (Some(true), Some("acme")));

    // Linked: the next provider sign-in is a sign-in.
    let direct = flow.sign_in(ADA).await;
    assert_eq!(subject(direct.body["access_token"].as_str().unwrap()), ada.id);

    let audit = flow.app.audit_for("user", &ada.id).await;
    assert!(audit.iter().any(|e| e.action == "identity.link_offered"));
    assert!(audit.iter().any(|e| e.action == "identity.link" && e.outcome == Outcome::Failure && e.reason.as_deref() == Some("wrong password")));
    assert!(
        audit
            .iter()
            .any(|e| e.action == "identity.link" && e.outcome == Outcome::Success && e.reason.as_deref() == Some("confirmed with the account's password"))
    );

    // With a password left, unlinking is allowed; the next sign-in asks again.
    let r = flow.app.call(Method::DELETE, "/api/v1/auth/identities/acme", Some(&access), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(flow.app.audit_for("user", &ada.id).await.iter().any(|e| e.action == "identity.unlink" && e.outcome == Outcome::Success));
    assert_eq!(identities(&flow.app, &access).await["identities"], json!([]));
    assert_eq!(flow.sign_in(ADA).await.body["link_required"], true);
}

/// A fake GitHub configured in Keel as `name`.
async fn github(flow: &Flow, name: &str) -> FakeGithub {
    let fake = FakeGithub::start().await;
    let settings = ProviderSettings {
        name: name.into(),
        kind: "github".into(),
        web_url: Some(fake.url.clone()),
        api_url: Some(fake.api_url()),
        client_id: fake_github::CLIENT_ID.into(),
        client_secret: fake_github::CLIENT_SECRET.into(),
        redirect_uri: callback_url(&flow.keel, name),
        ..Default::default()
    };
    configure(&flow.app, settings).await;
    fake
}

fn octocat(id: u64, emails: &[(&str, bool, bool)]) -> Account {
    Account { id, login: format!("octo{id}"), name: Some("Octo Cat".into()), emails: emails.iter().map(|(e, p, v)| (e.to_string(), *p, *v)).collect() }
}

#[tokio::test]
async fn github_signs_up_with_the_verified_primary_email_only() {
    let flow = Flow::new("github").await;
    let fake = github(&flow, "github").await;

    fake.sign_in_as(octocat(42, &[("octo@example.com", true, true), ("old@example.com", false, false)]));
    let first = flow.sign_in(("", "")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let user = shared::identity::users::find_by_email(flow.app.store(), &Email::parse("octo@example.com").unwrap()).await.unwrap().unwrap();
    assert_eq!((user.name.as_str(), subject(first.body["access_token"].as_str().unwrap())), ("Octo Cat", user.id.clone()));
    assert_eq!(identities(&flow.app, first.body["access_token"].as_str().unwrap()).await["identities"][0]["subject"], "42");

    // response_mode=form_post: the same callback as a form POST.
    let (url, _) = flow.begin().await;
    let callback = flow.authorize(&url, AtLogin::SignIn("", "")).await;
    let form = http::Request::builder()
        .method("POST")
        .uri("/api/v1/auth/oauth/github/callback")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(callback.query().unwrap().to_string()))
        .unwrap();
    let second = flow.app.send(form).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(subject(second.body["access_token"].as_str().unwrap()), user.id);
    let json_body = flow.app.call(Method::POST, "/api/v1/auth/oauth/github/callback", None, Some(json!({}))).await;
    assert_eq!((json_body.status.as_u16(), json_body.error_fields()), (415, vec!["content-type".to_string()]));

    // The primary address is unverified; a verified secondary one is not used.
    fake.sign_in_as(octocat(43, &[("unverified@example.com", true, false), ("other@example.com", false, true)]));
    assert_refused(&flow.sign_in(("", "")).await, 422, "verified email");

    // GitHub refuses a wrong code with 200 and an error body.
    let (url, _) = flow.begin().await;
    let callback = flow.authorize(&url, AtLogin::SignIn("", "")).await;
    assert_refused(&flow.visit(&with_param(&callback, "code", "wrong-code")).await, 401, "bad_verification_code");
}

#[tokio::test]
async fn github_link_confirmed_by_the_signed_in_owner() {
    let flow = Flow::new("github").await;
    let fake = github(&flow, "github").await;
    let (owner, owner_token) = flow.app.user(&["support"]).await;
    let (_, stranger_token) = flow.app.user(&["user"]).await;
    fake.sign_in_as(octocat(7, &[(&owner.email, true, true)]));

    let offer = flow.sign_in(("", "")).await;
    assert_eq!(offer.body["link_required"], true, "{}", offer.body);
    let body = json!({ "link_token": offer.body["link_token"] });
    let r = flow.app.call(Method::POST, "/api/v1/auth/oauth/link/confirm", Some(&stranger_token), Some(body.clone())).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("another account"));
    let r = flow.app.call(Method::POST, "/api/v1/auth/oauth/link/confirm", Some(&owner_token), Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(subject(r.body["access_token"].as_str().unwrap()), owner.id);
    assert!(
        flow.app
            .audit_for("user", &owner.id)
            .await
            .iter()
            .any(|e| e.action == "identity.link" && e.reason.as_deref() == Some("confirmed with the owner's session"))
    );
}

#[tokio::test]
async fn unlinking_keeps_a_way_to_sign_in() {
    let flow = Flow::new("github").await;
    let github_com = github(&flow, "github").await;
    let enterprise = github(&flow, "ghe").await;
    // Signed up through GitHub: no password.
    github_com.sign_in_as(octocat(1, &[("dev@example.com", true, true)]));
    let signed_up = flow.sign_in(("", "")).await;
    let access = signed_up.body["access_token"].as_str().unwrap().to_string();

    // Link a second provider, confirmed by the signed-in owner.
    enterprise.sign_in_as(octocat(900, &[("dev@example.com", true, true)]));
    let ghe = flow.through("ghe");
    let offer = ghe.sign_in(("", "")).await;
    let r = ghe.app.call(Method::POST, "/api/v1/auth/oauth/link/confirm", Some(&access), Some(json!({ "link_token": offer.body["link_token"] }))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let methods = identities(&ghe.app, &access).await;
    assert_eq!((methods["has_password"].as_bool(), methods["identities"].as_array().unwrap().len()), (Some(false), 2));

    let unlink = |provider: &str| {
        let path = format!("/api/v1/auth/identities/{provider}");
        let (app, access) = (ghe.app.clone(), access.clone());
        async move { app.call(Method::DELETE, &path, Some(&access), None).await }
    };
    assert_eq!(unlink("nope").await.status, 404);
    assert_eq!(unlink("github").await.status, 204);
    let last = unlink("ghe").await;
    assert_eq!(last.status, 409, "{}", last.body);
    let methods = identities(&ghe.app, &access).await;
    assert_eq!(methods["identities"][0]["provider"], "ghe");
    // The unlinked GitHub account is free again: signing in with it offers a link.
    assert_eq!(flow.through("github").sign_in(("", "")).await.body["link_required"], true);
}
