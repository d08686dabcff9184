//! OAuth / OpenID Connect provider configuration: the providers people may
//! sign in with, stored as `OAUTH#<name> / CONFIG` with the client secret
//! sealed under a KMS data key bound to that record. Operators manage them
//! with `keel oauth-provider` (audited with the `cli` actor); the auth
//! function reads them. Nothing here talks to a provider.

use crate::audit::Journal;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::audit::{Actor, AuditEntry};
use crate::platform::crypto::{Envelope, Sealed};
use crate::platform::error::{Error, FieldError, Result};
use crate::store::{Item, QuerySpec, Store, Write, from_item, s, timestamp, to_item};

pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";
pub const GITHUB_WEB_URL: &str = "https://github.com";
pub const GITHUB_API_URL: &str = "https://api.github.com";
/// gsi1 partition listing every configured provider (sorted by name).
const LIST_PARTITION: &str = "OAUTHPROVIDERS";
const SK: &str = "CONFIG";

/// How Keel talks to a provider: the presets fill in issuer or endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenID Connect at `https://accounts.google.com`.
    Google,
    /// OpenID Connect at one Microsoft Entra tenant's v2.0 issuer.
    Microsoft,
    /// OAuth 2.0 without OpenID: profile and verified emails from the REST API.
    Github,
    /// Any OpenID Connect issuer with a discovery document.
    Oidc,
}

impl ProviderKind {
    pub const ALL: &'static [ProviderKind] = &[ProviderKind::Google, ProviderKind::Microsoft, ProviderKind::Github, ProviderKind::Oidc];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Google => "google",
            ProviderKind::Microsoft => "microsoft",
            ProviderKind::Github => "github",
            ProviderKind::Oidc => "oidc",
        }
    }

    pub fn parse(s: &str) -> Option<ProviderKind> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Whether sign-in is OpenID Connect (an id_token, discovery, JWKS).
    pub fn is_oidc(self) -> bool {
        self != ProviderKind::Github
    }

    fn default_scopes(self) -> &'static [&'static str] {
        match self {
            ProviderKind::Github => &["read:user", "user:email"],
            _ => &["openid", "email", "profile"],
        }
    }
}

/// What an operator gives to configure a provider (`keel oauth-provider set`).
#[derive(Debug, Clone, Default)]
pub struct ProviderSettings {
    pub name: String,
    /// `google`, `microsoft`, `github` or `oidc`.
    pub kind: String,
    /// The issuer: required for `oidc`; for `microsoft` instead of `tenant`.
    pub issuer: Option<String>,
    /// Microsoft: the directory (tenant) id.
    pub tenant: Option<String>,
    /// GitHub: the site serving `/login/oauth/*` (default github.com; a
    /// GitHub Enterprise Server's URL).
    pub web_url: Option<String>,
    /// GitHub: the REST API base (default api.github.com, or
    /// `<web_url>/api/v3` when `web_url` is given).
    pub api_url: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    /// Where the provider sends the browser back: Keel's
    /// `/api/v1/auth/oauth/<name>/callback`, or a page that forwards there.
    pub redirect_uri: String,
    /// Empty for the kind's defaults.
    pub scopes: Vec<String>,
}

/// A configured provider as stored. The client secret is sealed; open it
/// with [`ProviderConfig::client_secret`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// The OpenID issuer (OIDC kinds), compared exactly with `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    pub client_id: String,
    /// The client secret, sealed under a KMS data key with the record's key
    /// as context. (Named `secret` so audit diffs redact it.)
    pub secret: Sealed,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub version: u64,
}

impl ProviderConfig {
    pub fn pk(name: &str) -> String {
        format!("OAUTH#{name}")
    }

    fn to_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(ProviderConfig::pk(&self.name)));
        item.insert("sk".into(), s(SK));
        item.insert("gsi1pk".into(), s(LIST_PARTITION));
        item.insert("gsi1sk".into(), s(self.name.clone()));
        item.insert("type".into(), s("oauth_provider"));
        Ok(item)
    }

    /// The plaintext client secret (a KMS Decrypt).
    pub async fn client_secret(&self, envelope: &Envelope) -> Result<String> {
        let bytes = envelope.open(&self.secret, &ProviderConfig::pk(&self.name)).await?;
        String::from_utf8(bytes).map_err(|_| Error::internal("client secret is not UTF-8"))
    }
}

/// Provider names appear in URLs and keys: 1–32 of `a-z 0-9 -`, starting
/// with a letter or digit. `link` is taken by `/oauth/link/confirm`.
pub fn check_name(field: &str, name: &str) -> Option<FieldError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !(first_ok && rest_ok && name.len() <= 32) {
        Some(FieldError::new(field, "must be 1 to 32 characters of a-z, 0-9 and -, starting with a letter or digit"))
    } else if name == "link" {
        Some(FieldError::new(field, "\"link\" is reserved"))
    } else {
        None
    }
}

/// Whether `url` is a loopback address (the only place plain HTTP is
/// allowed: a provider or redirect target on this machine, for tests and
/// `make dev`).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A provider URL Keel will call or send browsers to: HTTPS, or HTTP on
/// loopback only; no credentials or fragment in it.
pub fn check_endpoint(field: &str, raw: &str) -> std::result::Result<Url, FieldError> {
    let url = Url::parse(raw.trim()).map_err(|e| FieldError::new(field, format!("not a URL: {e}")))?;
    let secure = url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url));
    if !secure {
        return Err(FieldError::new(field, "must be https (plain http only on 127.0.0.1 or localhost)"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() || url.host().is_none() {
        return Err(FieldError::new(field, "must not contain credentials or a fragment"));
    }
    Ok(url)
}

/// RFC 6749 scope tokens (printable ASCII without space, `"` or `\`).
fn check_scopes(kind: ProviderKind, scopes: &[String]) -> Vec<FieldError> {
    let mut errors: Vec<FieldError> = scopes
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)))
        .map(|(i, _)| FieldError::new(format!("scopes[{i}]"), "not a valid scope token"))
        .collect();
    if scopes.len() > 20 {
        errors.push(FieldError::new("scopes", "at most 20 scopes"));
    }
    if kind.is_oidc() && !scopes.iter().any(|s| s == "openid") {
        errors.push(FieldError::new("scopes", "an OpenID Connect provider needs the openid scope"));
    }
    errors
}

fn check_tenant(tenant: &str) -> Option<FieldError> {
    let well_formed = !tenant.is_empty() && tenant.len() <= 64 && tenant.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !well_formed {
        Some(FieldError::new("tenant", "must be a tenant id or domain"))
    } else if ["common", "organizations", "consumers"].contains(&tenant.to_ascii_lowercase().as_str()) {
        // These endpoints issue tokens whose `iss` names each user's own
        // tenant, so there is no single issuer to check tokens against.
        Some(FieldError::new("tenant", "multi-tenant endpoints have no fixed issuer; give your tenant id"))
    } else {
        None
    }
}

/// The issuer, GitHub URLs and scopes for validated settings.
struct Resolved {
    kind: ProviderKind,
    issuer: Option<String>,
    web_url: Option<String>,
    api_url: Option<String>,
    scopes: Vec<String>,
}

impl ProviderSettings {
    fn resolve(&self) -> std::result::Result<Resolved, Vec<FieldError>> {
        let mut errors = Vec::new();
        errors.extend(check_name("name", &self.name));
        let kind = ProviderKind::parse(&self.kind);
        if kind.is_none() {
            errors.push(FieldError::new("kind", "must be google, microsoft, github or oidc"));
        }
        let client_id_ok = !self.client_id.trim().is_empty() && self.client_id.len() <= 512 && !self.client_id.chars().any(char::is_control);
        if !client_id_ok {
            errors.push(FieldError::new("client_id", "must be 1 to 512 characters"));
        }
        if self.client_secret.is_empty() || self.client_secret.len() > 2048 {
            errors.push(FieldError::new("client_secret", "must be 1 to 2048 bytes"));
        }
        if let Err(e) = check_endpoint("redirect_uri", &self.redirect_uri) {
            errors.push(e);
        }
        // A checked URL as given (issuers are compared byte for byte).
        let endpoint = |errors: &mut Vec<FieldError>, field: &str, value: &str| match check_endpoint(field, value) {
            Ok(_) => Some(value.trim().to_string()),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let (mut issuer, mut web_url, mut api_url) = (None, None, None);
        let mut misplaced = Vec::new();
        match kind {
            Some(ProviderKind::Google) => {
                if self.issuer.is_some() {
                    misplaced.push("issuer");
                }
                issuer = Some(GOOGLE_ISSUER.to_string());
            }
            Some(ProviderKind::Microsoft) => match (&self.issuer, &self.tenant) {
                (Some(i), None) => issuer = endpoint(&mut errors, "issuer", i),
                (None, Some(t)) => match check_tenant(t) {
                    Some(e) => errors.push(e),
                    None => issuer = Some(format!("https://login.microsoftonline.com/{t}/v2.0")),
                },
                _ => errors.push(FieldError::new("tenant", "give either tenant or issuer")),
            },
            Some(ProviderKind::Oidc) => match &self.issuer {
                Some(i) => issuer = endpoint(&mut errors, "issuer", i),
                None => errors.push(FieldError::new("issuer", "required for an oidc provider")),
            },
            Some(ProviderKind::Github) => {
                if self.issuer.is_some() {
                    misplaced.push("issuer");
                }
                let web = self.web_url.as_deref().unwrap_or(GITHUB_WEB_URL);
                web_url = endpoint(&mut errors, "web_url", web).map(|u| u.trim_end_matches('/').to_string());
                let default_api = match &self.web_url {
                    // GitHub Enterprise Server serves its API under /api/v3.
                    Some(w) => format!("{}/api/v3", w.trim().trim_end_matches('/')),
                    None => GITHUB_API_URL.to_string(),
                };
                api_url = endpoint(&mut errors, "api_url", self.api_url.as_deref().unwrap_or(&default_api)).map(|u| u.trim_end_matches('/').to_string());
            }
            None => {}
        }
        if kind != Some(ProviderKind::Microsoft) && self.tenant.is_some() {
            misplaced.push("tenant");
        }
        if kind != Some(ProviderKind::Github) {
            misplaced.extend(self.web_url.as_ref().map(|_| "web_url"));
            misplaced.extend(self.api_url.as_ref().map(|_| "api_url"));
        }
        for field in misplaced {
            errors.push(FieldError::new(field, format!("does not apply to a {} provider", self.kind)));
        }
        let scopes = match kind {
            Some(k) if self.scopes.is_empty() => k.default_scopes().iter().map(|s| s.to_string()).collect(),
            Some(k) => {
                errors.extend(check_scopes(k, &self.scopes));
                self.scopes.clone()
            }
            None => Vec::new(),
        };
        match kind {
            Some(kind) if errors.is_empty() => Ok(Resolved { kind, issuer, web_url, api_url, scopes }),
            _ => Err(errors),
        }
    }
}

pub async fn get(store: &Store, name: &str) -> Result<Option<ProviderConfig>> {
    store.get(&ProviderConfig::pk(name), SK).await
}

/// Every configured provider, by name.
pub async fn list(store: &Store) -> Result<Vec<ProviderConfig>> {
    let spec =
        QuerySpec { index: Some("gsi1"), key_condition: "gsi1pk = :pk", values: vec![(":pk", s(LIST_PARTITION))], forward: true, ..QuerySpec::default() };
    store.query_all(&spec).await?.into_iter().map(from_item).collect()
}

/// Create or replace a provider: the secret is sealed, and the change is
/// audited (`oauth_provider.create` / `.update`) in the same transaction.
pub async fn set(store: &Journal, envelope: &Envelope, settings: &ProviderSettings, actor: &Actor) -> Result<ProviderConfig> {
    let resolved = settings.resolve().map_err(Error::Validation)?;
    let pk = ProviderConfig::pk(&settings.name);
    let existing = get(store, &settings.name).await?;
    let now = timestamp(chrono::Utc::now());
    let config = ProviderConfig {
        name: settings.name.clone(),
        kind: resolved.kind,
        issuer: resolved.issuer,
        web_url: resolved.web_url,
        api_url: resolved.api_url,
        client_id: settings.client_id.trim().to_string(),
        secret: envelope.seal(settings.client_secret.as_bytes(), &pk).await?,
        redirect_uri: settings.redirect_uri.trim().to_string(),
        scopes: resolved.scopes,
        created_at: existing.as_ref().map(|e| e.created_at.clone()).unwrap_or_else(|| now.clone()),
        updated_at: now,
        version: existing.as_ref().map(|e| e.version + 1).unwrap_or(1),
    };
    let (write, action) = match &existing {
        Some(old) => (Write::put_versioned(store.table(), config.to_item()?, old.version)?, "oauth_provider.update"),
        None => (
            Write::put_new(store.table(), config.to_item()?, Error::Conflict(format!("provider {} was created concurrently", config.name)))?,
            "oauth_provider.create",
        ),
    };
    let audit = AuditEntry::new(actor, action, "oauth_provider", &config.name).changes(existing.as_ref(), Some(&config));
    store.commit(vec![write], &audit).await?;
    Ok(config)
}

/// Remove a provider (audited). Identities linked through it stay on their
/// accounts but can no longer sign in until it is configured again.
pub async fn remove(store: &Journal, name: &str, actor: &Actor) -> Result<()> {
    let missing = || Error::NotFound(format!("no OAuth provider named {name:?}"));
    let existing = get(store, name).await?.ok_or_else(missing)?;
    let write = Write::delete_existing(store.table(), &ProviderConfig::pk(name), SK, missing())?;
    let audit = AuditEntry::new(actor, "oauth_provider.delete", "oauth_provider", name).changes::<ProviderConfig, ProviderConfig>(Some(&existing), None);
    store.commit(vec![write], &audit).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(kind: &str) -> ProviderSettings {
        ProviderSettings {
            name: "acme".into(),
            kind: kind.into(),
            client_id: "id".into(),
            client_secret: "secret".into(),
            redirect_uri: "https://admin.example.com/api/v1/auth/oauth/acme/callback".into(),
            ..Default::default()
        }
    }

    fn fields(result: std::result::Result<Resolved, Vec<FieldError>>) -> Vec<String> {
        match result {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn names_are_url_and_key_safe() {
        for good in ["acme", "google", "a", "corp-sso-2"] {
            assert!(check_name("name", good).is_none(), "{good}");
        }
        for bad in ["", "Acme", "-x", "a#b", "a/b", "link", &"x".repeat(33)] {
            assert!(check_name("name", bad).is_some(), "{bad:?} accepted");
        }
    }

    #[test]
    fn endpoints_are_https_or_loopback_http() {
        assert!(check_endpoint("issuer", "https://idp.example.com").is_ok());
        assert!(check_endpoint("issuer", "http://127.0.0.1:8080").is_ok());
        assert!(check_endpoint("issuer", "http://localhost:8080/realms/x").is_ok());
        assert!(check_endpoint("issuer", "http://[::1]:9000").is_ok());
        for bad in
            ["http://idp.example.com", "http://127.0.0.1.evil.com", "ftp://127.0.0.1", "https://u:p@idp.example.com", "https://idp.example.com/#x", "not a url"]
        {
            assert!(check_endpoint("issuer", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn presets_fill_in_issuers_and_scopes() {
        let google = settings("google").resolve().ok().unwrap();
        assert_eq!(google.issuer.as_deref(), Some(GOOGLE_ISSUER));
        assert_eq!(google.scopes, ["openid", "email", "profile"]);

        let microsoft = ProviderSettings { tenant: Some("9188040d-6c67-4c5b-b112-36a304b66dad".into()), ..settings("microsoft") }.resolve().ok().unwrap();
        assert_eq!(microsoft.issuer.as_deref(), Some("https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"));

        let github = settings("github").resolve().ok().unwrap();
        assert_eq!((github.web_url.as_deref(), github.api_url.as_deref()), (Some(GITHUB_WEB_URL), Some(GITHUB_API_URL)));
        assert_eq!(github.scopes, ["read:user", "user:email"]);
        let ghes = ProviderSettings { web_url: Some("https://git.corp.example/".into()), ..settings("github") }.resolve().ok().unwrap();
        assert_eq!(ghes.api_url.as_deref(), Some("https://git.corp.example/api/v3"));

        let oidc = ProviderSettings { issuer: Some("https://idp.example.com/realms/acme".into()), ..settings("oidc") }.resolve().ok().unwrap();
        assert_eq!(oidc.issuer.as_deref(), Some("https://idp.example.com/realms/acme"));
    }

    #[test]
    fn bad_settings_name_their_fields() {
        assert_eq!(fields(settings("okta").resolve()), ["kind"]);
        assert_eq!(fields(settings("oidc").resolve()), ["issuer"]);
        assert_eq!(fields(settings("microsoft").resolve()), ["tenant"]);
        assert_eq!(fields(ProviderSettings { tenant: Some("common".into()), ..settings("microsoft") }.resolve()), ["tenant"]);
        assert_eq!(fields(ProviderSettings { issuer: Some("http://idp.example.com".into()), ..settings("oidc") }.resolve()), ["issuer"]);
        assert_eq!(fields(ProviderSettings { issuer: Some("https://x.example".into()), ..settings("github") }.resolve()), ["issuer"]);
        assert_eq!(fields(ProviderSettings { web_url: Some("https://x.example".into()), ..settings("google") }.resolve()), ["web_url"]);
        assert_eq!(fields(ProviderSettings { redirect_uri: "http://admin.example.com/cb".into(), ..settings("google") }.resolve()), ["redirect_uri"]);
        assert_eq!(fields(ProviderSettings { scopes: vec!["email".into()], ..settings("google") }.resolve()), ["scopes"]);
        assert_eq!(fields(ProviderSettings { scopes: vec!["openid".into(), "bad scope".into()], ..settings("google") }.resolve()), ["scopes[1]"]);
        assert_eq!(
            fields(ProviderSettings { client_id: " ".into(), client_secret: String::new(), ..settings("google") }.resolve()),
            ["client_id", "client_secret"]
        );
    }
}
