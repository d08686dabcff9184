//! Crypto helpers: argon2id password hashes, random opaque tokens and their
//! digests, and KMS envelope encryption (a data key per secret, AES-256-GCM,
//! the key's KMS ciphertext stored beside the data).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64STD, URL_SAFE_NO_PAD as B64};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::platform::error::{Error, Result};

/// Hash a password with argon2id (the crate's OWASP-recommended defaults).
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| Error::internal(format!("hashing password: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash that never matches, verified against when the account does not
/// exist so that timing does not reveal which emails are registered.
pub fn dummy_password_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("keel-dummy-password-never-matches").expect("hash"))
}

/// 32 random bytes, base64url: refresh tokens, invitation tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    B64.encode(bytes)
}

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// KMS `Sign` with an ECC P-256 key: ECDSA_SHA_256 over `message` as RAW
/// (KMS hashes it; RAW takes at most 4096 bytes, and every Keel signing
/// input is a short statement). Returns the DER signature. `what` names the
/// signature in errors ("audit digest", "erasure certificate"...).
pub async fn kms_sign_p256(kms: &aws_sdk_kms::Client, key_id: &str, message: &[u8], what: &'static str) -> Result<Vec<u8>> {
    let out = kms
        .sign()
        .key_id(key_id)
        .message(aws_sdk_kms::primitives::Blob::new(message))
        .message_type(aws_sdk_kms::types::MessageType::Raw)
        .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .map_err(crate::platform::error::aws(what))?;
    let der = out.signature.ok_or_else(|| Error::internal(format!("{what} returned no signature")))?;
    Ok(der.into_inner())
}

/// A secret sealed under a KMS data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The data key, encrypted by KMS (base64).
    pub key: String,
    /// 96-bit GCM nonce (base64).
    pub nonce: String,
    /// AES-256-GCM ciphertext with tag (base64).
    pub data: String,
}

/// Envelope encryption with a KMS key. `context` is bound both as the KMS
/// encryption context and as GCM associated data, so a sealed value cannot be
/// moved to another record and still open.
#[derive(Clone, Debug)]
pub struct Envelope {
    kms: aws_sdk_kms::Client,
    key_id: String,
}

impl Envelope {
    pub fn new(kms: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Envelope { kms, key_id: key_id.into() }
    }

    pub async fn seal(&self, plaintext: &[u8], context: &str) -> Result<Sealed> {
        let out = self
            .kms
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .encryption_context("keel", context)
            .send()
            .await
            .map_err(crate::platform::error::aws("kms GenerateDataKey"))?;
        let key = out.plaintext().ok_or_else(|| Error::internal("GenerateDataKey returned no plaintext"))?;
        let encrypted_key = out.ciphertext_blob().ok_or_else(|| Error::internal("GenerateDataKey returned no ciphertext"))?;
        let (nonce, data) = seal_with_key(key.as_ref(), plaintext, context)?;
        Ok(Sealed { key: B64STD.encode(encrypted_key.as_ref()), nonce: B64STD.encode(nonce), data: B64STD.encode(data) })
    }

    pub async fn open(&self, sealed: &Sealed, context: &str) -> Result<Vec<u8>> {
        let decode = |s: &str| B64STD.decode(s).map_err(|_| Error::internal("sealed value is not base64"));
        let out = self
            .kms
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(decode(&sealed.key)?))
            .encryption_context("keel", context)
            .send()
            .await
            .map_err(crate::platform::error::aws("kms Decrypt"))?;
        let key = out.plaintext().ok_or_else(|| Error::internal("Decrypt returned no plaintext"))?;
        open_with_key(key.as_ref(), &decode(&sealed.nonce)?, &decode(&sealed.data)?, context)
    }
}

pub(crate) fn seal_with_key(key: &[u8], plaintext: &[u8], aad: &str) -> Result<([u8; 12], Vec<u8>)> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| Error::internal("data key is not 256 bits"))?;
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let data =
        cipher.encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: aad.as_bytes() }).map_err(|_| Error::internal("AES-GCM encryption failed"))?;
    Ok((nonce, data))
}

pub(crate) fn open_with_key(key: &[u8], nonce: &[u8], data: &[u8], aad: &str) -> Result<Vec<u8>> {
    let nonce: [u8; 12] = nonce.try_into().map_err(|_| Error::internal("sealed nonce is not 96 bits"))?;
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| Error::internal("data key is not 256 bits"))?;
    cipher.decrypt(&Nonce::from(nonce), Payload { msg: data, aad: aad.as_bytes() }).map_err(|_| Error::internal("sealed value failed authentication"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterz", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn gcm_round_trip_and_binding() {
        let key = [3u8; 32];
        let (nonce, data) = seal_with_key(&key, b"seed", "USER#1").unwrap();
        assert_eq!(open_with_key(&key, &nonce, &data, "USER#1").unwrap(), b"seed");
        assert!(open_with_key(&key, &nonce, &data, "USER#2").is_err(), "context not bound");
        let mut flipped = data.clone();
        flipped[0] ^= 1;
        assert!(open_with_key(&key, &nonce, &flipped, "USER#1").is_err());
    }

    #[test]
    fn tokens_are_unique_and_digests_hex() {
        assert_ne!(random_token(), random_token());
        assert_eq!(sha256_hex(b"abc").len(), 64);
    }
}
