//! The OAuth/OIDC providers the auth function signs people in with: their
//! configuration from the table (cached per instance for at most a minute),
//! OpenID discovery and JWKS (HTTPS; plain HTTP on loopback only), id_token
//! validation, GitHub's profile and verified emails, and the one HTTP client
//! every provider call goes through (no redirects, timeouts, a size cap).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::{self, header};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oauth2::basic::{BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType};
use oauth2::{AuthType, AuthUrl, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RedirectUrl, StandardRevocableToken, StandardTokenResponse, TokenUrl};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shared::http::Platform;
use shared::identity::oauth::{ProviderConfig, ProviderKind, check_endpoint};
use shared::identity::users::Email;
use shared::platform::crypto::sha256_hex;
use shared::platform::error::{Error, Result};
use subtle::ConstantTimeEq;
use url::Url;

/// How long a provider's configuration, discovery document and keys are
/// reused before they are read again.
pub const CACHE_FOR: Duration = Duration::from_secs(60);
/// An unknown `kid` refetches the JWKS (key rotation), at most this often.
const JWKS_REFETCH_AFTER: Duration = Duration::from_secs(10);
/// Largest provider response read (discovery, JWKS, tokens, profiles).
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Clock skew tolerated on `exp` and `iat`.
const LEEWAY_SECONDS: u64 = 60;
/// Signature algorithms accepted on id_tokens: asymmetric only, so a
/// token can never be "signed" with a published key as an HMAC secret.
const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The token endpoint's answer: OAuth 2.0 plus OpenID's `id_token`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl oauth2::ExtraTokenFields for IdTokenField {}

pub type ProviderTokens = StandardTokenResponse<IdTokenField, BasicTokenType>;

/// An `oauth2` client with the authorization and token endpoints set.
pub type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    ProviderTokens,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// A failed call to a provider (transport, status or size), as `oauth2`
/// needs an error type of its own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

/// The HTTP client for provider calls. Redirects are not followed (a
/// provider URL cannot bounce Keel to an address nobody configured).
///
/// Built on the first provider call, not at init: building it reads and
/// parses every root certificate of the system, which a cold start that
/// serves no OAuth sign-in should not pay for. Clones share the one client.
#[derive(Clone, Debug, Default)]
pub struct HttpClient(Arc<OnceLock<reqwest::Client>>);

impl HttpClient {
    fn client(&self) -> std::result::Result<&reqwest::Client, HttpError> {
        if let Some(client) = self.0.get() {
            return Ok(client);
        }
        shared::platform::tls::install();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent("keel-auth")
            .build()
            .map_err(|e| HttpError(format!("building the HTTP client: {e}")))?;
        // Two first calls racing each build one; both are the same, one is kept.
        Ok(self.0.get_or_init(|| client))
    }

    /// Send a request and read the whole (size-capped) response.
    pub async fn send(&self, request: http::Request<Vec<u8>>) -> std::result::Result<http::Response<Vec<u8>>, HttpError> {
        let request = reqwest::Request::try_from(request).map_err(|e| HttpError(format!("building request: {e}")))?;
        let url = request.url().clone();
        let mut response = self.client()?.execute(request).await.map_err(|e| HttpError(format!("{url}: {e}")))?;
        let mut builder = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| HttpError(format!("{url}: {e}")))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(HttpError(format!("{url}: response larger than {MAX_RESPONSE_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        builder.body(body).map_err(|e| HttpError(e.to_string()))
    }

    /// GET a JSON document (with a bearer token for APIs).
    pub async fn get_json<T: DeserializeOwned>(&self, url: &Url, bearer: Option<&str>) -> Result<T> {
        let mut request = http::Request::get(url.as_str()).header(header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Vec::new()).map_err(|e| Error::internal(format!("building request: {e}")))?;
        let response = self.send(request).await.map_err(|e| Error::internal(format!("provider request failed: {e}")))?;
        if !response.status().is_success() {
            return Err(Error::internal(format!("{url} answered {}", response.status())));
        }
        serde_json::from_slice(response.body()).map_err(|e| Error::internal(format!("{url}: unexpected response: {e}")))
    }
}

/// Who the provider says signed in.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalIdentity {
    /// The provider's stable id for the account (`sub`, GitHub's user id).
    pub subject: String,
    /// The address, only when the provider vouches that its owner controls it.
    pub verified_email: Option<Email>,
    pub name: Option<String>,
}

/// Discovery, keys and algorithms of an OpenID Connect provider.
#[derive(Debug)]
pub struct Oidc {
    pub issuer: String,
    pub userinfo_endpoint: Option<Url>,
    jwks_uri: Url,
    algorithms: Vec<Algorithm>,
    keys: tokio::sync::RwLock<(Instant, JwkSet)>,
}

/// A provider ready to use: configuration, secret, endpoints.
#[derive(Debug)]
pub struct Provider {
    pub config: ProviderConfig,
    client_secret: ClientSecret,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    auth_type: AuthType,
    /// `None` for GitHub (OAuth 2.0 only).
    pub oidc: Option<Oidc>,
}

impl Provider {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn kind(&self) -> ProviderKind {
        self.config.kind
    }

    /// The `oauth2` client that builds authorization URLs and redeems codes.
    pub fn oauth_client(&self, redirect_uri: &str) -> Result<OAuthClient> {
        let redirect = RedirectUrl::new(redirect_uri.to_string()).map_err(|e| Error::internal(format!("redirect uri: {e}")))?;
        Ok(oauth2::Client::new(ClientId::new(self.config.client_id.clone()))
            .set_client_secret(self.client_secret.clone())
            .set_auth_uri(AuthUrl::from_url(self.authorization_endpoint.clone()))
            .set_token_uri(TokenUrl::from_url(self.token_endpoint.clone()))
            .set_auth_type(self.auth_type.clone())
            .set_redirect_uri(redirect))
    }

    /// GitHub: the user's id, name and primary email if GitHub verified it.
    pub async fn github_identity(&self, http: &HttpClient, access_token: &str) -> Result<ExternalIdentity> {
        #[derive(Deserialize)]
        struct Profile {
            id: u64,
            login: String,
            name: Option<String>,
        }
        #[derive(Deserialize)]
        struct EmailEntry {
            email: String,
            primary: bool,
            verified: bool,
        }
        let api = self.config.api_url.as_deref().ok_or_else(|| Error::internal("github provider without api_url"))?;
        let url = |path: &str| Url::parse(&format!("{api}{path}")).map_err(|e| Error::internal(format!("github api url: {e}")));
        let profile: Profile = http.get_json(&url("/user")?, Some(access_token)).await?;
        let emails: Vec<EmailEntry> = http.get_json(&url("/user/emails")?, Some(access_token)).await?;
        let verified_email = emails.iter().find(|e| e.primary && e.verified).and_then(|e| Email::parse(&e.email).ok());
        Ok(ExternalIdentity { subject: profile.id.to_string(), verified_email, name: profile.name.or(Some(profile.login)) })
    }
}

/// The claims Keel reads from an id_token (or the userinfo endpoint).
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    #[serde(default)]
    pub aud: Audience,
    #[serde(default)]
    pub azp: Option<String>,
    #[serde(default)]
    pub iat: Option<u64>,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    pub email_verified: bool,
    /// Microsoft Entra's optional "email domain owner verified" claim: its
    /// id_tokens carry no `email_verified`.
    #[serde(default, deserialize_with = "flag")]
    pub xms_edov: bool,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn values(&self) -> Vec<&str> {
        match self {
            Audience::None => Vec::new(),
            Audience::One(a) => vec![a.as_str()],
            Audience::Many(list) => list.iter().map(String::as_str).collect(),
        }
    }
}

/// Some providers send booleans as the strings "true"/"false".
fn flag<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    Ok(match Option::<Flag>::deserialize(deserializer)? {
        Some(Flag::Bool(b)) => b,
        Some(Flag::Text(t)) => t == "true",
        None => false,
    })
}

impl IdClaims {
    /// The identity these claims describe. An email counts only when the
    /// provider says it is verified.
    pub fn identity(&self, kind: ProviderKind) -> ExternalIdentity {
        let verified = self.email_verified || (kind == ProviderKind::Microsoft && self.xms_edov);
        ExternalIdentity {
            subject: self.sub.clone(),
            verified_email: self.email.as_deref().filter(|_| verified).and_then(|e| Email::parse(e).ok()),
            name: self.name.clone(),
        }
    }
}

/// Why an id_token was refused (shown to the caller, audited).
pub fn invalid_id_token(why: &str) -> Error {
    Error::Unauthorized(format!("invalid id_token: {why}"))
}

/// Validate an id_token against a key set: an asymmetric algorithm the
/// provider announced, the signature by the key its `kid` names, the exact
/// issuer, this client as audience (and authorized party when there are
/// several), expiry, issue time, and the nonce of this sign-in (Keel keeps
/// only its SHA-256; compared in constant time). Returns `Ok(None)` when no
/// key has the token's `kid`.
pub fn validate_id_token(token: &str, keys: &JwkSet, algorithms: &[Algorithm], issuer: &str, client_id: &str, nonce_sha256: &str) -> Result<Option<IdClaims>> {
    shared::platform::tls::install();
    let header = jsonwebtoken::decode_header(token).map_err(|_| invalid_id_token("malformed or unsupported algorithm"))?;
    if !algorithms.contains(&header.alg) || !ASYMMETRIC.contains(&header.alg) {
        return Err(invalid_id_token(&format!("algorithm {:?} is not accepted", header.alg)));
    }
    let usable = |jwk: &&Jwk| {
        jwk.common.public_key_use.as_ref().is_none_or(|u| *u == PublicKeyUse::Signature)
            && jwk.common.key_algorithm.is_none_or(|a| a == KeyAlgorithm::from(header.alg))
    };
    let jwk = match &header.kid {
        Some(kid) => keys.keys.iter().filter(usable).find(|k| k.common.key_id.as_deref() == Some(kid)),
        // Without a kid, only an unambiguous key set will do.
        None => {
            let candidates: Vec<&Jwk> = keys.keys.iter().filter(usable).collect();
            if candidates.len() == 1 { Some(candidates[0]) } else { return Err(invalid_id_token("no kid and several keys")) }
        }
    };
    let Some(jwk) = jwk else { return Ok(None) };
    let key = DecodingKey::from_jwk(jwk).map_err(|_| invalid_id_token("the provider's key is unusable"))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.leeway = LEEWAY_SECONDS;
    let claims = jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            invalid_id_token(match e.kind() {
                ErrorKind::InvalidSignature => "bad signature",
                ErrorKind::ExpiredSignature => "expired",
                ErrorKind::InvalidIssuer => "wrong issuer",
                ErrorKind::InvalidAudience => "wrong audience",
                ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
                ErrorKind::InvalidAlgorithm => "the key does not match the algorithm",
                _ => "malformed",
            })
        })?
        .claims;
    let audiences = claims.aud.values();
    if (audiences.len() > 1 || claims.azp.is_some()) && claims.azp.as_deref() != Some(client_id) {
        return Err(invalid_id_token("issued to another authorized party"));
    }
    let latest_iat = jsonwebtoken::get_current_timestamp() + LEEWAY_SECONDS;
    match claims.iat {
        None => return Err(invalid_id_token("a required claim is missing")),
        Some(iat) if iat > latest_iat => return Err(invalid_id_token("issued in the future")),
        Some(_) => {}
    }
    let nonce_ok = claims.nonce.as_deref().is_some_and(|n| bool::from(sha256_hex(n.as_bytes()).as_bytes().ct_eq(nonce_sha256.as_bytes())));
    if !nonce_ok {
        return Err(invalid_id_token("nonce does not match this sign-in"));
    }
    if claims.sub.is_empty() || claims.sub.len() > 255 {
        return Err(invalid_id_token("sub must be 1 to 255 characters"));
    }
    Ok(Some(claims))
}

impl Oidc {
    /// Validate an id_token, refetching the key set once if its `kid` is
    /// new (the provider rotated keys).
    pub async fn verify_id_token(&self, http: &HttpClient, token: &str, client_id: &str, nonce_sha256: &str) -> Result<IdClaims> {
        {
            let keys = self.keys.read().await;
            if let Some(claims) = validate_id_token(token, &keys.1, &self.algorithms, &self.issuer, client_id, nonce_sha256)? {
                return Ok(claims);
            }
            if keys.0.elapsed() < JWKS_REFETCH_AFTER {
                return Err(invalid_id_token("signed with an unknown key"));
            }
        }
        let fresh = fetch_jwks(http, &self.jwks_uri).await?;
        let claims = validate_id_token(token, &fresh, &self.algorithms, &self.issuer, client_id, nonce_sha256)?;
        *self.keys.write().await = (Instant::now(), fresh);
        claims.ok_or_else(|| invalid_id_token("signed with an unknown key"))
    }

    /// Claims from the userinfo endpoint, for providers that keep email out
    /// of the id_token; they must describe the same subject.
    pub async fn userinfo(&self, http: &HttpClient, access_token: &str, subject: &str) -> Result<Option<IdClaims>> {
        #[derive(Deserialize)]
        struct UserInfo {
            sub: String,
            #[serde(default)]
            email: Option<String>,
            #[serde(default, deserialize_with = "flag")]
            email_verified: bool,
            #[serde(default, deserialize_with = "flag")]
            xms_edov: bool,
            #[serde(default)]
            name: Option<String>,
        }
        let Some(endpoint) = &self.userinfo_endpoint else { return Ok(None) };
        let info: UserInfo = http.get_json(endpoint, Some(access_token)).await?;
        if info.sub != subject {
            return Err(Error::Unauthorized("the provider's userinfo describes another subject".into()));
        }
        Ok(Some(IdClaims {
            iss: self.issuer.clone(),
            sub: info.sub,
            aud: Audience::None,
            azp: None,
            iat: None,
            nonce: None,
            email: info.email,
            email_verified: info.email_verified,
            xms_edov: info.xms_edov,
            name: info.name,
        }))
    }
}

/// The fields of a discovery document Keel uses.
#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    id_token_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

fn misconfigured(provider: &str, why: impl std::fmt::Display) -> Error {
    Error::internal(format!("OAuth provider {provider}: {why}"))
}

fn endpoint(provider: &str, field: &str, raw: &str) -> Result<Url> {
    check_endpoint(field, raw).map_err(|e| misconfigured(provider, format!("{field} {raw:?} {}", e.message)))
}

/// A JWKS, keeping the keys Keel can parse (others are skipped, not fatal).
async fn fetch_jwks(http: &HttpClient, url: &Url) -> Result<JwkSet> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let raw: RawSet = http.get_json(url, None).await?;
    let keys = raw.keys.into_iter().filter_map(|k| serde_json::from_value::<Jwk>(k).ok()).collect();
    Ok(JwkSet { keys })
}

async fn discover(http: &HttpClient, config: &ProviderConfig, issuer: &str) -> Result<(Url, Url, AuthType, Oidc)> {
    let name = config.name.as_str();
    let url = endpoint(name, "issuer", &format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/')))?;
    let doc: Discovery = http.get_json(&url, None).await?;
    // The document must describe the issuer we trust, byte for byte (OpenID
    // Connect Discovery §4.3), or it could hand us another issuer's keys.
    if doc.issuer != issuer {
        return Err(misconfigured(name, format!("discovery names issuer {:?}, configured {issuer:?}", doc.issuer)));
    }
    if doc.code_challenge_methods_supported.as_ref().is_some_and(|m| !m.iter().any(|m| m == "S256")) {
        return Err(misconfigured(name, "the provider does not support PKCE S256"));
    }
    let algorithms: Vec<Algorithm> =
        doc.id_token_signing_alg_values_supported.iter().filter_map(|a| a.parse().ok()).filter(|a| ASYMMETRIC.contains(a)).collect();
    if algorithms.is_empty() {
        return Err(misconfigured(name, "no asymmetric id_token signing algorithm supported"));
    }
    // Discovery's default is client_secret_basic.
    let methods = doc.token_endpoint_auth_methods_supported.unwrap_or_else(|| vec!["client_secret_basic".into()]);
    let auth_type = if methods.iter().any(|m| m == "client_secret_basic") {
        AuthType::BasicAuth
    } else if methods.iter().any(|m| m == "client_secret_post") {
        AuthType::RequestBody
    } else {
        return Err(misconfigured(name, "the token endpoint accepts neither client_secret_basic nor client_secret_post"));
    };
    let jwks_uri = endpoint(name, "jwks_uri", &doc.jwks_uri)?;
    let keys = fetch_jwks(http, &jwks_uri).await?;
    let oidc = Oidc {
        issuer: issuer.to_string(),
        userinfo_endpoint: doc.userinfo_endpoint.as_deref().map(|u| endpoint(name, "userinfo_endpoint", u)).transpose()?,
        jwks_uri,
        algorithms,
        keys: tokio::sync::RwLock::new((Instant::now(), keys)),
    };
    Ok((endpoint(name, "authorization_endpoint", &doc.authorization_endpoint)?, endpoint(name, "token_endpoint", &doc.token_endpoint)?, auth_type, oidc))
}

/// Loaded providers by name, with when they were loaded.
type Cache = HashMap<String, (Instant, Arc<Provider>)>;

/// Provider configurations, discovery and keys, cached per instance.
#[derive(Clone, Debug, Default)]
pub struct Providers {
    http: HttpClient,
    cache: Arc<Mutex<Cache>>,
}

impl Providers {
    pub fn new() -> Providers {
        Providers { http: HttpClient::default(), cache: Arc::default() }
    }

    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// The provider named `name`, loaded at most [`CACHE_FOR`] ago; 404 when
    /// none is configured.
    pub async fn get(&self, platform: &Platform, name: &str) -> Result<Arc<Provider>> {
        let cached = self
            .cache
            .lock()
            .map_err(|_| Error::internal("provider cache poisoned"))?
            .get(name)
            .filter(|(at, _)| at.elapsed() < CACHE_FOR)
            .map(|(_, p)| p.clone());
        if let Some(provider) = cached {
            return Ok(provider);
        }
        let unknown = || Error::NotFound(format!("no OAuth provider named {name:?} is configured"));
        if shared::identity::oauth::check_name("provider", name).is_some() {
            return Err(unknown());
        }
        let config = shared::identity::oauth::get(&platform.store, name).await?.ok_or_else(unknown)?;
        let provider = Arc::new(self.load(platform, config).await?);
        self.cache.lock().map_err(|_| Error::internal("provider cache poisoned"))?.insert(name.to_string(), (Instant::now(), provider.clone()));
        Ok(provider)
    }

    async fn load(&self, platform: &Platform, config: ProviderConfig) -> Result<Provider> {
        let client_secret = ClientSecret::new(config.client_secret(&platform.envelope).await?);
        let name = config.name.clone();
        let (authorization_endpoint, token_endpoint, auth_type, oidc) = match (config.kind, &config.issuer, &config.web_url) {
            (ProviderKind::Github, _, Some(web)) => (
                endpoint(&name, "web_url", &format!("{web}/login/oauth/authorize"))?,
                endpoint(&name, "web_url", &format!("{web}/login/oauth/access_token"))?,
                // GitHub documents the secret as a form parameter.
                AuthType::RequestBody,
                None,
            ),
            (kind, Some(issuer), _) if kind.is_oidc() => {
                let (authorize, token, auth_type, oidc) = discover(&self.http, &config, issuer).await?;
                (authorize, token, auth_type, Some(oidc))
            }
            _ => return Err(misconfigured(&name, "incomplete configuration")),
        };
        Ok(Provider { config, client_secret, authorization_endpoint, token_endpoint, auth_type, oidc })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::EncodePrivateKey;

    const ISSUER: &str = "https://idp.example.com";

    fn key(seed: u8, kid: &str) -> (EncodingKey, Jwk) {
        shared::platform::tls::install();
        let signing = SigningKey::from_slice(&[seed; 32]).unwrap();
        let der = signing.to_pkcs8_der().unwrap();
        let encoding = EncodingKey::from_ec_der(der.as_bytes());
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(kid.into());
        (encoding, jwk)
    }

    fn token(key: &EncodingKey, kid: &str, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    fn claims() -> serde_json::Value {
        let now = jsonwebtoken::get_current_timestamp();
        serde_json::json!({"iss": ISSUER, "sub": "u-1", "aud": "keel", "exp": now + 300, "iat": now, "nonce": "n-1", "email": "Ada@Example.com", "email_verified": true})
    }

    fn check(token: &str, keys: &JwkSet) -> Result<Option<IdClaims>> {
        validate_id_token(token, keys, &[Algorithm::ES256, Algorithm::RS256], ISSUER, "keel", &sha256_hex(b"n-1"))
    }

    fn refusal(token: &str, keys: &JwkSet) -> String {
        match check(token, keys) {
            Err(Error::Unauthorized(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_id_token_yields_a_verified_identity() {
        let (encoding, jwk) = key(7, "k1");
        let keys = JwkSet { keys: vec![jwk] };
        let claims = check(&token(&encoding, "k1", claims()), &keys).unwrap().unwrap();
        let identity = claims.identity(ProviderKind::Oidc);
        assert_eq!(identity.subject, "u-1");
        assert_eq!(identity.verified_email.unwrap().as_str(), "ada@example.com");
    }

    #[test]
    fn refuses_forged_expired_misdirected_and_replayed_tokens() {
        let (encoding, jwk) = key(7, "k1");
        let keys = JwkSet { keys: vec![jwk] };
        let with = |patch: serde_json::Value| {
            let mut c = claims();
            c.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
            token(&encoding, "k1", c)
        };
        let now = jsonwebtoken::get_current_timestamp();
        assert!(refusal(&with(serde_json::json!({"iss": "https://evil.example"})), &keys).contains("wrong issuer"));
        assert!(refusal(&with(serde_json::json!({"aud": "someone-else"})), &keys).contains("wrong audience"));
        assert!(refusal(&with(serde_json::json!({"exp": now - 3600})), &keys).contains("expired"));
        assert!(refusal(&with(serde_json::json!({"nonce": "n-2"})), &keys).contains("nonce"));
        assert!(refusal(&with(serde_json::json!({"nonce": null})), &keys).contains("nonce"));
        assert!(refusal(&with(serde_json::json!({"iat": now + 3600})), &keys).contains("future"));
        assert!(refusal(&with(serde_json::json!({"aud": ["keel", "other"]})), &keys).contains("authorized party"));
        assert!(check(&with(serde_json::json!({"aud": ["keel", "other"], "azp": "keel"})), &keys).unwrap().is_some());

        // Signed by another key under the same kid.
        let (other, _) = key(9, "k1");
        assert!(refusal(&token(&other, "k1", claims()), &keys).contains("bad signature"));
        // Payload swapped after signing.
        let good = token(&encoding, "k1", claims());
        let parts: Vec<&str> = good.split('.').collect();
        let mut forged = claims();
        forged["sub"] = "admin".into();
        let body = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, forged.to_string());
        assert!(refusal(&format!("{}.{body}.{}", parts[0], parts[2]), &keys).contains("bad signature"));
        // An unknown kid is not an error yet: the caller refetches the keys.
        assert!(check(&token(&encoding, "k2", claims()), &keys).unwrap().is_none());
    }

    #[test]
    fn refuses_unsigned_and_symmetric_tokens() {
        let (_, jwk) = key(7, "k1");
        let keys = JwkSet { keys: vec![jwk] };
        let b64 = |v: &serde_json::Value| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, v.to_string());
        let none = format!("{}.{}.", b64(&serde_json::json!({"alg": "none", "kid": "k1"})), b64(&claims()));
        assert!(refusal(&none, &keys).contains("algorithm"));
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let hs = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(b"k")).unwrap();
        assert!(refusal(&hs, &keys).contains("algorithm"));
    }

    #[test]
    fn emails_count_only_when_verified() {
        let parse = |v: serde_json::Value| serde_json::from_value::<IdClaims>(v).unwrap();
        let base = serde_json::json!({"iss": ISSUER, "sub": "s", "email": "a@example.com"});
        let mut unverified = base.clone();
        unverified["email_verified"] = false.into();
        assert!(parse(unverified).identity(ProviderKind::Oidc).verified_email.is_none());
        assert!(parse(base.clone()).identity(ProviderKind::Oidc).verified_email.is_none(), "absent means unverified");
        let mut text = base.clone();
        text["email_verified"] = "true".into();
        assert!(parse(text).identity(ProviderKind::Oidc).verified_email.is_some());
        let mut edov = base.clone();
        edov["xms_edov"] = true.into();
        assert!(parse(edov.clone()).identity(ProviderKind::Microsoft).verified_email.is_some());
        assert!(parse(edov).identity(ProviderKind::Oidc).verified_email.is_none(), "xms_edov is Microsoft's alone");
    }
}
