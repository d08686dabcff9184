//! Access tokens: ES256 JWTs. The auth function signs them with KMS (the only
//! holder of `kms:Sign`); every function verifies them locally with the public
//! key it fetched once at cold start. There is no shared secret anywhere.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::platform::config::AUDIENCE;
use crate::platform::error::{Error, Result};

/// Access token lifetime.
pub const ACCESS_TOKEN_SECONDS: i64 = 15 * 60;

/// Authentication method references (RFC 8176 `amr` values) that Keel
/// records for a session.
pub mod amr {
    /// Password.
    pub const PASSWORD: &str = "pwd";
    /// A TOTP code (RFC 6238).
    pub const OTP: &str = "otp";
    /// A single-use 2FA recovery code (not in the RFC 8176 registry).
    pub const RECOVERY_CODE: &str = "rec";
    /// More than one factor was used (added with `otp` or `rec`).
    pub const MFA: &str = "mfa";
    /// Signed in at an OAuth/OIDC provider (federated; not in the RFC 8176
    /// registry).
    pub const FEDERATED: &str = "fed";
}

/// A restriction on what a token may do beyond its roles; a token without
/// one has the full permissions of its roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// Signed in, but the roles require 2FA and none is active: only the
    /// routes that enrol 2FA accept the token.
    MfaEnrollment,
}

impl TokenScope {
    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::MfaEnrollment => "mfa_enrollment",
        }
    }
}

/// How a session was authenticated and what its tokens may do; kept with
/// the session so refreshed tokens say the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionGrant {
    pub amr: Vec<String>,
    pub scope: Option<TokenScope>,
}

impl SessionGrant {
    pub fn new(amr: &[&str], scope: Option<TokenScope>) -> SessionGrant {
        SessionGrant { amr: amr.iter().map(|m| m.to_string()).collect(), scope }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    /// The session (refresh-token family) this token was issued in.
    pub sid: String,
    pub roles: Vec<String>,
    /// How the session was authenticated (see [`amr`]). Absent in tokens
    /// issued before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// Absent for full access; see [`TokenScope`]. An unknown scope fails
    /// to parse, so the token is refused (deny by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<TokenScope>,
}

/// The public half of the signing key, ready to verify and to publish.
#[derive(Clone)]
pub struct TokenVerifier {
    kid: String,
    issuer: String,
    key: DecodingKey,
    jwk: serde_json::Value,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier").field("kid", &self.kid).field("issuer", &self.issuer).finish()
    }
}

/// The key id published in JWKS and token headers: a digest of the public
/// key, so a rotated key gets a new id by itself.
pub fn key_id(spki_der: &[u8]) -> String {
    B64.encode(&Sha256::digest(spki_der)[..12])
}

impl TokenVerifier {
    /// From the DER SubjectPublicKeyInfo that KMS `GetPublicKey` returns.
    pub fn from_spki_der(spki_der: &[u8], issuer: &str) -> anyhow::Result<Self> {
        let public = p256::PublicKey::from_public_key_der(spki_der).map_err(|e| anyhow::anyhow!("signing key is not a P-256 public key: {e}"))?;
        let point = p256::EncodedPoint::from(public);
        let x = B64.encode(point.x().ok_or_else(|| anyhow::anyhow!("public key has no x"))?);
        let y = B64.encode(point.y().ok_or_else(|| anyhow::anyhow!("public key has no y"))?);
        let key = DecodingKey::from_ec_components(&x, &y)?;
        let kid = key_id(spki_der);
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "kid": kid, "use": "sig", "alg": "ES256",
        });
        Ok(TokenVerifier { kid, issuer: issuer.to_string(), key, jwk })
    }

    /// The verifier for `config`'s signing key: from `KEEL_SIGNING_PUBLIC_KEY`
    /// when it is set (no network call at cold start), else fetched from KMS.
    pub async fn for_config(kms: &aws_sdk_kms::Client, config: &crate::platform::config::Config) -> anyhow::Result<Self> {
        match &config.signing_public_key {
            Some(text) => {
                let der = decode_public_key(text).map_err(|e| anyhow::anyhow!("KEEL_SIGNING_PUBLIC_KEY: {e}"))?;
                Self::from_spki_der(&der, &config.issuer).map_err(|e| anyhow::anyhow!("KEEL_SIGNING_PUBLIC_KEY: {e}"))
            }
            None => Self::load(kms, &config.signing_key_id, &config.issuer).await,
        }
    }

    /// Fetch the public key from KMS (once per cold start).
    pub async fn load(kms: &aws_sdk_kms::Client, key_id: &str, issuer: &str) -> anyhow::Result<Self> {
        let out = kms
            .get_public_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("kms GetPublicKey for {key_id}: {}", aws_sdk_kms::error::DisplayErrorContext(e)))?;
        let der = out.public_key().ok_or_else(|| anyhow::anyhow!("kms GetPublicKey returned no key"))?;
        Self::from_spki_der(der.as_ref(), issuer)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The JSON Web Key Set that `/auth/jwks` publishes.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.jwk] })
    }

    /// Whether `token` carries a valid ES256 signature by this key, claims
    /// unchecked: the signer's proof that the public key it was configured
    /// with belongs to the KMS key that signs.
    pub fn signed_by_this_key(&self, token: &str) -> bool {
        token
            .rsplit_once('.')
            .is_some_and(|(message, signature)| jsonwebtoken::crypto::verify(signature, message.as_bytes(), &self.key, Algorithm::ES256).unwrap_or(false))
    }

    /// Check signature (ES256 only: `none` and HMAC are refused), issuer,
    /// audience, expiry and key id.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        let unauthorized = |why: &str| Error::Unauthorized(format!("invalid access token: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauthorized("malformed"))?;
        if header.alg != Algorithm::ES256 {
            return Err(unauthorized("algorithm must be ES256"));
        }
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(unauthorized("unknown key id"));
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &self.key, &validation).map(|data| data.claims).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => unauthorized("expired"),
                ErrorKind::InvalidAudience => unauthorized("wrong audience"),
                ErrorKind::InvalidIssuer => unauthorized("wrong issuer"),
                ErrorKind::InvalidSignature => unauthorized("bad signature"),
                _ => unauthorized("rejected"),
            }
        })
    }
}

/// The DER SubjectPublicKeyInfo in `text`: PEM (`-----BEGIN PUBLIC KEY-----`)
/// or bare base64, as `aws kms get-public-key --query PublicKey --output
/// text` prints it.
pub fn decode_public_key(text: &str) -> anyhow::Result<Vec<u8>> {
    let body: String = text.lines().filter(|line| !line.trim_start().starts_with("-----")).flat_map(|line| line.split_whitespace()).collect();
    if body.is_empty() {
        anyhow::bail!("no key");
    }
    base64::engine::general_purpose::STANDARD.decode(body).map_err(|e| anyhow::anyhow!("not base64 DER or PEM: {e}"))
}

/// `base64url(header).base64url(claims)`: the bytes that get signed.
pub fn signing_input(kid: &str, claims: &Claims) -> String {
    let header = serde_json::json!({ "alg": "ES256", "typ": "JWT", "kid": kid });
    format!("{}.{}", B64.encode(header.to_string()), B64.encode(serde_json::to_vec(claims).expect("claims serialize")))
}

/// Append a signature given in DER (as KMS returns it) in the JWS form
/// (`r || s`, 64 bytes).
pub fn assemble(signing_input: &str, der_signature: &[u8]) -> anyhow::Result<String> {
    let signature = p256::ecdsa::Signature::from_der(der_signature).map_err(|e| anyhow::anyhow!("signature is not DER ECDSA: {e}"))?;
    Ok(format!("{signing_input}.{}", B64.encode(signature.to_bytes())))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use p256::ecdsa::{SigningKey, signature::Signer};
    use p256::pkcs8::EncodePublicKey;

    pub fn local_key() -> (SigningKey, Vec<u8>) {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let der = key.verifying_key().to_public_key_der().unwrap().into_vec();
        (key, der)
    }

    fn claims(exp_offset: i64, aud: &str) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            iss: "keel".into(),
            aud: aud.into(),
            sub: "u1".into(),
            exp: now + exp_offset,
            iat: now,
            jti: "j".into(),
            sid: "s".into(),
            roles: vec!["admin".into()],
            amr: vec![amr::PASSWORD.into()],
            scope: None,
        }
    }

    fn sign(key: &SigningKey, kid: &str, c: &Claims) -> String {
        let input = signing_input(kid, c);
        let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
        assemble(&input, sig.to_der().as_bytes()).unwrap()
    }

    #[test]
    fn verifies_a_good_token_and_refuses_bad_ones() {
        let (key, der) = local_key();
        let v = TokenVerifier::from_spki_der(&der, "keel").unwrap();
        let good = sign(&key, v.kid(), &claims(60, AUDIENCE));
        assert_eq!(v.verify(&good).unwrap().sub, "u1");

        let expired = sign(&key, v.kid(), &claims(-3600, AUDIENCE));
        assert!(v.verify(&expired).unwrap_err().to_string().contains("expired"));

        let wrong_aud = sign(&key, v.kid(), &claims(60, "other"));
        assert!(v.verify(&wrong_aud).unwrap_err().to_string().contains("audience"));

        let mut parts: Vec<String> = good.split('.').map(String::from).collect();
        let mut body = claims(60, AUDIENCE);
        body.roles = vec!["super_admin".into()];
        parts[1] = B64.encode(serde_json::to_vec(&body).unwrap());
        assert!(v.verify(&parts.join(".")).is_err(), "tampered payload accepted");

        let other = SigningKey::from_slice(&[9u8; 32]).unwrap();
        assert!(v.verify(&sign(&other, v.kid(), &claims(60, AUDIENCE))).is_err());
    }

    /// Sign a raw JSON payload (claims as other versions would write them).
    fn sign_json(key: &SigningKey, kid: &str, payload: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": kid});
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(payload.to_string()));
        let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
        assemble(&input, sig.to_der().as_bytes()).unwrap()
    }

    #[test]
    fn tokens_without_amr_or_scope_still_parse_and_unknown_scopes_do_not() {
        let (key, der) = local_key();
        let v = TokenVerifier::from_spki_der(&der, "keel").unwrap();
        let mut old = serde_json::to_value(claims(60, AUDIENCE)).unwrap();
        old.as_object_mut().unwrap().retain(|k, _| k != "amr" && k != "scope");
        let parsed = v.verify(&sign_json(&key, v.kid(), &old)).unwrap();
        assert_eq!((parsed.amr.len(), parsed.scope), (0, None));

        let mut limited = claims(60, AUDIENCE);
        limited.scope = Some(TokenScope::MfaEnrollment);
        let token = sign(&key, v.kid(), &limited);
        assert!(token.split('.').nth(1).map(|p| String::from_utf8(B64.decode(p).unwrap()).unwrap()).unwrap().contains(r#""scope":"mfa_enrollment""#));
        assert_eq!(v.verify(&token).unwrap().scope, Some(TokenScope::MfaEnrollment));

        let mut unknown = old.clone();
        unknown["scope"] = serde_json::json!("everything");
        assert!(v.verify(&sign_json(&key, v.kid(), &unknown)).is_err(), "an unknown scope must not pass as full access");
    }

    #[test]
    fn public_key_from_base64_or_pem() {
        let (key, der) = local_key();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let wrapped: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", wrapped.join("\n"));
        assert_eq!(decode_public_key(&b64).unwrap(), der);
        assert_eq!(decode_public_key(&pem).unwrap(), der);
        assert!(decode_public_key("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----").is_err());
        assert!(decode_public_key("not a key!").is_err());

        let v = TokenVerifier::from_spki_der(&decode_public_key(&pem).unwrap(), "keel").unwrap();
        let token = sign(&key, v.kid(), &claims(-3600, "other"));
        assert!(v.signed_by_this_key(&token), "the signature alone is checked, not the claims");
        let other = SigningKey::from_slice(&[9u8; 32]).unwrap();
        assert!(!v.signed_by_this_key(&sign(&other, v.kid(), &claims(60, AUDIENCE))));
        assert!(!v.signed_by_this_key("no-dots"));
    }

    #[test]
    fn jwks_publishes_the_key() {
        let (_, der) = local_key();
        let v = TokenVerifier::from_spki_der(&der, "keel").unwrap();
        let jwks = v.jwks();
        assert_eq!(jwks["keys"][0]["kid"], v.kid());
        assert_eq!(jwks["keys"][0]["crv"], "P-256");
    }
}
