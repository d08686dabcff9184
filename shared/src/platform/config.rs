//! Typed configuration, read once at start from the environment that
//! template.yaml sets. A missing or malformed value stops the start with a
//! message naming the variable.

use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct Config {
    pub table: String,
    pub data_key_id: String,
    pub signing_key_id: String,
    /// The signing key's public key (`KEEL_SIGNING_PUBLIC_KEY`: base64 DER
    /// SubjectPublicKeyInfo, or PEM), when supplied at deploy time: cold
    /// starts then make no KMS call. Decoded and checked when the verifier
    /// is built (`TokenVerifier::for_config`); unset or empty, the key is
    /// fetched with `GetPublicKey`.
    pub signing_public_key: Option<String>,
    /// KMS ECC P-256 key that signs audit digests (only the scheduler signs).
    pub audit_key_id: String,
    pub jobs_queue_url: String,
    pub jobs_dlq_url: String,
    pub webhooks_queue_url: String,
    pub webhooks_dlq_url: String,
    pub exports_bucket: String,
    pub audit_bucket: String,
    /// Keel's logical backups of the table (docs/backups.md).
    pub backups_bucket: String,
    /// `iss` of the access tokens; `aud` is always [`AUDIENCE`].
    pub issuer: String,
    pub email_from: String,
    /// Base URL of the admin UI, used in links sent by email.
    pub public_url: String,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Brute-force limits (`KEEL_RATE_LIMITS` overrides the defaults).
    pub rate_limits: crate::platform::rate_limit_policy::RateLimits,
    /// How long a function instance reuses the custom roles it loaded before
    /// reading them again: the longest a role change takes to reach tokens.
    pub role_cache_ttl: std::time::Duration,
    /// How long a function caches the system settings (at most 60 s).
    pub settings_ttl: std::time::Duration,
}

/// Role changes must reach every instance within a minute.
pub const MAX_ROLE_CACHE_SECONDS: u64 = 60;
const DEFAULT_ROLE_CACHE_SECONDS: u64 = 30;

pub const AUDIENCE: &str = "keel-api";

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &str| -> Result<String, ConfigError> {
            match get(name) {
                Some(v) if !v.trim().is_empty() => Ok(v),
                _ => Err(ConfigError(format!("{name} is not set"))),
            }
        };
        let max_body_bytes = match get("KEEL_MAX_BODY_BYTES") {
            None => 256 * 1024,
            Some(v) => v.parse().map_err(|_| ConfigError(format!("KEEL_MAX_BODY_BYTES is not a number: {v:?}")))?,
        };
        let rate_limits = match get("KEEL_RATE_LIMITS") {
            Some(spec) => crate::platform::rate_limit_policy::RateLimits::parse(&spec).map_err(|e| ConfigError(format!("KEEL_RATE_LIMITS: {e}")))?,
            None => crate::platform::rate_limit_policy::RateLimits::default(),
        };
        let role_cache_seconds = match get("KEEL_ROLE_CACHE_SECONDS") {
            None => DEFAULT_ROLE_CACHE_SECONDS,
            Some(v) => v
                .trim()
                .parse()
                .ok()
                .filter(|s| *s <= MAX_ROLE_CACHE_SECONDS)
                .ok_or_else(|| ConfigError(format!("KEEL_ROLE_CACHE_SECONDS must be 0 to {MAX_ROLE_CACHE_SECONDS}: {v:?}")))?,
        };
        let settings_ttl = match get("KEEL_SETTINGS_TTL_SECONDS") {
            None => std::time::Duration::from_secs(30),
            Some(v) => match v.parse::<f64>() {
                Ok(secs) if (0.0..=60.0).contains(&secs) => std::time::Duration::from_secs_f64(secs),
                _ => return Err(ConfigError(format!("KEEL_SETTINGS_TTL_SECONDS must be 0 to 60 seconds: {v:?}"))),
            },
        };
        let public_url = required("KEEL_PUBLIC_URL")?;
        if !(public_url.starts_with("https://") || public_url.starts_with("http://")) {
            return Err(ConfigError(format!("KEEL_PUBLIC_URL must be an http(s) URL: {public_url:?}")));
        }
        Ok(Config {
            table: required("KEEL_TABLE")?,
            data_key_id: required("KEEL_DATA_KEY_ID")?,
            signing_key_id: required("KEEL_SIGNING_KEY_ID")?,
            signing_public_key: get("KEEL_SIGNING_PUBLIC_KEY").filter(|v| !v.trim().is_empty()),
            audit_key_id: required("KEEL_AUDIT_KEY_ID")?,
            jobs_queue_url: required("KEEL_JOBS_QUEUE_URL")?,
            jobs_dlq_url: required("KEEL_JOBS_DLQ_URL")?,
            webhooks_queue_url: required("KEEL_WEBHOOKS_QUEUE_URL")?,
            webhooks_dlq_url: required("KEEL_WEBHOOKS_DLQ_URL")?,
            exports_bucket: required("KEEL_EXPORTS_BUCKET")?,
            audit_bucket: required("KEEL_AUDIT_BUCKET")?,
            backups_bucket: required("KEEL_BACKUPS_BUCKET")?,
            issuer: required("KEEL_ISSUER")?,
            email_from: required("KEEL_EMAIL_FROM")?,
            public_url: public_url.trim_end_matches('/').to_string(),
            max_body_bytes,
            rate_limits,
            role_cache_ttl: std::time::Duration::from_secs(role_cache_seconds),
            settings_ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_variable_is_named() {
        let err = Config::from_lookup(|_| None).unwrap_err();
        assert!(err.to_string().contains("KEEL_PUBLIC_URL"), "{err}");
    }

    #[test]
    fn bad_number_is_named() {
        let err = Config::from_lookup(|n| match n {
            "KEEL_MAX_BODY_BYTES" => Some("lots".into()),
            _ => Some("http://x".into()),
        })
        .unwrap_err();
        assert!(err.to_string().contains("KEEL_MAX_BODY_BYTES"), "{err}");
    }

    #[test]
    fn rate_limits_default_and_bad_ones_are_named() {
        let set = |spec: Option<&'static str>| {
            move |n: &str| match n {
                "KEEL_RATE_LIMITS" => spec.map(String::from),
                "KEEL_MAX_BODY_BYTES" | "KEEL_ROLE_CACHE_SECONDS" | "KEEL_SETTINGS_TTL_SECONDS" => None,
                _ => Some("http://x".into()),
            }
        };
        let defaults = Config::from_lookup(set(None)).unwrap();
        assert_eq!(defaults.rate_limits, crate::platform::rate_limit_policy::RateLimits::default());
        assert_eq!(Config::from_lookup(set(Some(""))).unwrap().rate_limits, defaults.rate_limits, "empty (the template's default) is the defaults");
        let tuned = Config::from_lookup(set(Some("login.account=3:30"))).unwrap();
        use crate::platform::rate_limit_policy::{Action, Policy, Scope};
        assert_eq!(tuned.rate_limits.policy(Action::Login, Scope::Account), Policy::new(3, 30));
        let err = Config::from_lookup(set(Some("login.account=lots"))).unwrap_err();
        assert!(err.to_string().contains("KEEL_RATE_LIMITS"), "{err}");
    }

    #[test]
    fn role_cache_ttl_defaults_and_is_at_most_a_minute() {
        let with = |ttl: Option<&'static str>| {
            Config::from_lookup(move |n| match n {
                "KEEL_ROLE_CACHE_SECONDS" => ttl.map(String::from),
                "KEEL_MAX_BODY_BYTES" | "KEEL_RATE_LIMITS" | "KEEL_SETTINGS_TTL_SECONDS" => None,
                _ => Some("http://x".into()),
            })
        };
        assert_eq!(with(None).unwrap().role_cache_ttl.as_secs(), DEFAULT_ROLE_CACHE_SECONDS);
        assert_eq!(with(Some("0")).unwrap().role_cache_ttl.as_secs(), 0);
        assert_eq!(with(Some("60")).unwrap().role_cache_ttl.as_secs(), 60);
        for bad in ["61", "-1", "soon"] {
            let err = with(Some(bad)).unwrap_err();
            assert!(err.to_string().contains("KEEL_ROLE_CACHE_SECONDS"), "{err}");
        }
    }

    #[test]
    fn settings_ttl_is_at_most_a_minute() {
        let with_ttl = |ttl: &'static str| {
            Config::from_lookup(move |n| match n {
                "KEEL_SETTINGS_TTL_SECONDS" => Some(ttl.into()),
                "KEEL_MAX_BODY_BYTES" | "KEEL_RATE_LIMITS" | "KEEL_ROLE_CACHE_SECONDS" => None,
                _ => Some("http://x".into()),
            })
        };
        assert_eq!(with_ttl("0.5").unwrap().settings_ttl, std::time::Duration::from_millis(500));
        for bad in ["61", "-1", "soon"] {
            assert!(with_ttl(bad).unwrap_err().to_string().contains("KEEL_SETTINGS_TTL_SECONDS"), "{bad}");
        }
        let default = Config::from_lookup(|n| {
            if matches!(n, "KEEL_MAX_BODY_BYTES" | "KEEL_RATE_LIMITS" | "KEEL_ROLE_CACHE_SECONDS" | "KEEL_SETTINGS_TTL_SECONDS") {
                None
            } else {
                Some("http://x".into())
            }
        });
        assert_eq!(default.unwrap().settings_ttl, std::time::Duration::from_secs(30));
    }
}
