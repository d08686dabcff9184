//! Issues access tokens signed by KMS (`Sign`, ECDSA_SHA_256 over the JWS
//! signing input). The private key never leaves KMS.

use shared::identity::token::{ACCESS_TOKEN_SECONDS, Claims, SessionGrant, TokenVerifier, assemble, signing_input};
use shared::identity::users::User;
use shared::platform::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct Signer {
    kms: aws_sdk_kms::Client,
    key_id: String,
    kid: String,
    issuer: String,
    /// The public key every function verifies with (possibly supplied at
    /// deploy time, `KEEL_SIGNING_PUBLIC_KEY`): each signature is checked
    /// against it, so a key that is not the signing key's fails sign-in
    /// loudly instead of issuing tokens nobody accepts.
    verifier: TokenVerifier,
}

pub struct AccessToken {
    pub token: String,
    pub expires_in: i64,
}

impl Signer {
    pub fn new(kms: aws_sdk_kms::Client, key_id: &str, verifier: &TokenVerifier) -> Signer {
        Signer { kms, key_id: key_id.to_string(), kid: verifier.kid().to_string(), issuer: verifier.issuer().to_string(), verifier: verifier.clone() }
    }

    /// An access token for `user` in session `session_id`, saying how the
    /// session was authenticated and what it may do (`grant`).
    pub async fn access_token(&self, user: &User, session_id: &str, grant: &SessionGrant) -> Result<AccessToken> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: shared::platform::config::AUDIENCE.to_string(),
            sub: user.id.clone(),
            exp: now + ACCESS_TOKEN_SECONDS,
            iat: now,
            jti: uuid::Uuid::now_v7().to_string(),
            sid: session_id.to_string(),
            roles: user.roles.clone(),
            amr: grant.amr.clone(),
            scope: grant.scope,
        };
        self.sign(&claims).await.map(|token| AccessToken { token, expires_in: ACCESS_TOKEN_SECONDS })
    }

    /// Sign arbitrary claims (tests use this to mint edge-case tokens).
    pub async fn sign(&self, claims: &Claims) -> Result<String> {
        let input = signing_input(&self.kid, claims);
        let der = shared::platform::crypto::kms_sign_p256(&self.kms, &self.key_id, input.as_bytes(), "kms Sign").await?;
        let token = assemble(&input, &der).map_err(Error::Internal)?;
        if !self.verifier.signed_by_this_key(&token) {
            return Err(Error::internal(format!(
                "the signature of KMS key {} does not verify with the configured public key (kid {}): KEEL_SIGNING_PUBLIC_KEY is not that key's public key",
                self.key_id, self.kid
            )));
        }
        Ok(token)
    }
}
