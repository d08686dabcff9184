//! Typed configuration, read once at start from the environment that
//! template.yaml sets. A missing or malformed value stops the start with a
//! message naming the variable.

use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct Config {
    pub table: String,
    pub data_key_id: String,
    pub signing_key_id: String,
    /// KMS ECC P-256 key that signs audit digests (only the scheduler signs).
    pub audit_key_id: String,
    pub jobs_queue_url: String,
    pub exports_bucket: String,
    pub audit_bucket: String,
    /// `iss` of the access tokens; `aud` is always [`AUDIENCE`].
    pub issuer: String,
    pub email_from: String,
    /// Base URL of the admin UI, used in links sent by email.
    pub public_url: String,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
}

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
        let public_url = required("KEEL_PUBLIC_URL")?;
        if !(public_url.starts_with("https://") || public_url.starts_with("http://")) {
            return Err(ConfigError(format!("KEEL_PUBLIC_URL must be an http(s) URL: {public_url:?}")));
        }
        Ok(Config {
            table: required("KEEL_TABLE")?,
            data_key_id: required("KEEL_DATA_KEY_ID")?,
            signing_key_id: required("KEEL_SIGNING_KEY_ID")?,
            audit_key_id: required("KEEL_AUDIT_KEY_ID")?,
            jobs_queue_url: required("KEEL_JOBS_QUEUE_URL")?,
            exports_bucket: required("KEEL_EXPORTS_BUCKET")?,
            audit_bucket: required("KEEL_AUDIT_BUCKET")?,
            issuer: required("KEEL_ISSUER")?,
            email_from: required("KEEL_EMAIL_FROM")?,
            public_url: public_url.trim_end_matches('/').to_string(),
            max_body_bytes,
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
}
