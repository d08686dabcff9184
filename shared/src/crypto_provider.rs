//! The process's one cryptography library: `ring`, for TLS (rustls, used by
//! the SDK's HTTPS client and the OAuth client) and for JSON Web Token
//! signatures (jsonwebtoken).
//!
//! Why not aws-lc-rs, the SDK's default: it is about 2 MB of every binary,
//! the largest single part of a function, and Lambda bills and waits for
//! every byte at cold start (issue 2's size goal). `ring` is a few hundred
//! kilobytes and verifies ES256 about as fast (assembly P-256 on x86_64 and
//! aarch64). jsonwebtoken takes its cryptography from a `CryptoProvider`;
//! the one below is its own aws-lc-rs provider ported to ring's API (which
//! aws-lc-rs copies), so the algorithms and key formats are the same.
//!
//! [`install`] must run before the first token is checked or TLS connection
//! made; `TokenVerifier`, `aws::https_client` and the OAuth client call it.

use std::sync::Once;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair};
use ring::{digest, hmac};

/// Install `ring` as the process default for rustls and for jsonwebtoken.
/// Idempotent; cheap after the first call.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Either fails only if a provider is already installed, which is
        // then the one in use (nothing in Keel installs another).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let _ = JWT_PROVIDER.install_default();
    });
}

static JWT_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key,
        rsa_pub_components_from_public_key,
        ec_pub_components_from_private_key,
        ed_pub_components_from_private_key,
        compute_digest,
    },
};

/// A key of another family than the algorithm's is refused here, before
/// any cryptography: e.g. HS256 with a published EC public key as secret.
fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if key.family() != algorithm.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let der = key.as_bytes();
    let with = match algorithm.family() {
        AlgorithmFamily::Hmac => SignWith::Hmac(hmac::Key::new(hmac_algorithm(*algorithm), der)),
        AlgorithmFamily::Ec => {
            let (signing, _) = ecdsa_algorithms(*algorithm);
            SignWith::Ecdsa(sig::EcdsaKeyPair::from_pkcs8(signing, der, &SystemRandom::new()).map_err(|_| ErrorKind::InvalidEcdsaKey)?)
        }
        AlgorithmFamily::Rsa => {
            let pair = sig::RsaKeyPair::from_der(der).map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?;
            SignWith::Rsa(pair, rsa_algorithms(*algorithm).0)
        }
        AlgorithmFamily::Ed => SignWith::Ed25519(sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| ErrorKind::InvalidEddsaKey)?),
    };
    Ok(Box::new(Signing { algorithm: *algorithm, with }))
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if key.family() != algorithm.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(Box::new(Verifying { algorithm: *algorithm, key: key.clone() }))
}

enum SignWith {
    Hmac(hmac::Key),
    Ecdsa(sig::EcdsaKeyPair),
    Rsa(sig::RsaKeyPair, &'static dyn sig::RsaEncoding),
    Ed25519(sig::Ed25519KeyPair),
}

struct Signing {
    algorithm: Algorithm,
    with: SignWith,
}

impl Signer<Vec<u8>> for Signing {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        match &self.with {
            SignWith::Hmac(key) => Ok(hmac::sign(key, message).as_ref().to_vec()),
            SignWith::Ecdsa(pair) => Ok(pair.sign(&SystemRandom::new(), message).map_err(refused)?.as_ref().to_vec()),
            SignWith::Rsa(pair, padding) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(*padding, &SystemRandom::new(), message, &mut signature).map_err(refused)?;
                Ok(signature)
            }
            SignWith::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

/// ring's errors say nothing on purpose; neither does this.
fn refused<E>(_: E) -> signature::Error {
    signature::Error::new()
}

impl JwtSigner for Signing {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

struct Verifying {
    algorithm: Algorithm,
    key: DecodingKey,
}

impl Verifier<Vec<u8>> for Verifying {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let bytes = || self.key.try_get_as_bytes().map_err(refused);
        match self.algorithm.family() {
            AlgorithmFamily::Hmac => hmac::verify(&hmac::Key::new(hmac_algorithm(self.algorithm), bytes()?), message, signature).map_err(refused),
            AlgorithmFamily::Ec => sig::UnparsedPublicKey::new(ecdsa_algorithms(self.algorithm).1, bytes()?).verify(message, signature).map_err(refused),
            AlgorithmFamily::Ed => sig::UnparsedPublicKey::new(&sig::ED25519, bytes()?).verify(message, signature).map_err(refused),
            AlgorithmFamily::Rsa => {
                let (_, parameters) = rsa_algorithms(self.algorithm);
                match self.key.kind() {
                    DecodingKeyKind::SecretOrDer(der) => sig::UnparsedPublicKey::new(parameters, der).verify(message, signature).map_err(refused),
                    DecodingKeyKind::RsaModulusExponent { n, e } => sig::RsaPublicKeyComponents { n, e }.verify(parameters, message, signature).map_err(refused),
                }
            }
        }
    }
}

impl JwtVerifier for Verifying {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn hmac_algorithm(algorithm: Algorithm) -> hmac::Algorithm {
    match algorithm {
        Algorithm::HS384 => hmac::HMAC_SHA384,
        Algorithm::HS512 => hmac::HMAC_SHA512,
        _ => hmac::HMAC_SHA256,
    }
}

/// An ECDSA algorithm's signing and verification halves (ES256 or ES384).
fn ecdsa_algorithms(algorithm: Algorithm) -> (&'static sig::EcdsaSigningAlgorithm, &'static sig::EcdsaVerificationAlgorithm) {
    match algorithm {
        Algorithm::ES384 => (&sig::ECDSA_P384_SHA384_FIXED_SIGNING, &sig::ECDSA_P384_SHA384_FIXED),
        _ => (&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &sig::ECDSA_P256_SHA256_FIXED),
    }
}

/// An RSA algorithm's signing padding and verification parameters.
fn rsa_algorithms(algorithm: Algorithm) -> (&'static dyn sig::RsaEncoding, &'static sig::RsaParameters) {
    match algorithm {
        Algorithm::RS384 => (&sig::RSA_PKCS1_SHA384, &sig::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => (&sig::RSA_PKCS1_SHA512, &sig::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => (&sig::RSA_PSS_SHA256, &sig::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => (&sig::RSA_PSS_SHA384, &sig::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => (&sig::RSA_PSS_SHA512, &sig::RSA_PSS_2048_8192_SHA512),
        _ => (&sig::RSA_PKCS1_SHA256, &sig::RSA_PKCS1_2048_8192_SHA256),
    }
}

fn rsa_pub_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let pair = sig::RsaKeyPair::from_der(der).map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?;
    let components: sig::RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
    Ok((components.n, components.e))
}

/// ring reads RSA public keys only as part of a verification, so a JWK
/// cannot be made from a bare RSA public key (Keel never does).
fn rsa_pub_components_from_public_key(_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    Err(ErrorKind::InvalidRsaKey("extracting RSA public key components is not supported".into()).into())
}

fn ec_pub_components_from_private_key(der: &[u8], algorithm: Algorithm) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    let curve = match algorithm {
        Algorithm::ES256 => EllipticCurve::P256,
        Algorithm::ES384 => EllipticCurve::P384,
        _ => return Err(ErrorKind::InvalidEcdsaKey.into()),
    };
    let pair = sig::EcdsaKeyPair::from_pkcs8(ecdsa_algorithms(algorithm).0, der, &SystemRandom::new()).map_err(|_| ErrorKind::InvalidEcdsaKey)?;
    // An uncompressed point: 0x04 || x || y.
    let point = pair.public_key().as_ref();
    if point.first() != Some(&4) {
        return Err(ErrorKind::InvalidEcdsaKey.into());
    }
    let (x, y) = point[1..].split_at((point.len() - 1) / 2);
    Ok((curve, x.to_vec(), y.to_vec()))
}

fn ed_pub_components_from_private_key(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    match curve {
        EllipticCurve::Ed25519 => Ok(sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| ErrorKind::InvalidEddsaKey)?.public_key().as_ref().to_vec()),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Header, Validation, decode, encode};

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Claims {
        sub: String,
        exp: u64,
    }

    fn claims() -> Claims {
        Claims { sub: "u1".into(), exp: jsonwebtoken::get_current_timestamp() + 60 }
    }

    #[test]
    fn es256_round_trip_and_tamper() {
        install();
        let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
        let decoding = DecodingKey::from_jwk(&jwk).unwrap();
        let token = encode(&Header::new(Algorithm::ES256), &claims(), &encoding).unwrap();
        let validation = Validation::new(Algorithm::ES256);
        assert_eq!(decode::<Claims>(&token, &decoding, &validation).unwrap().claims.sub, "u1");
        let (body, signature) = token.rsplit_once('.').unwrap();
        let mut forged = signature.to_string();
        forged.replace_range(0..1, if forged.starts_with('A') { "B" } else { "A" });
        let err = decode::<Claims>(&format!("{body}.{forged}"), &decoding, &validation).unwrap_err();
        assert_eq!(*err.kind(), ErrorKind::InvalidSignature);
    }

    #[test]
    fn hmac_secret_is_not_an_ec_key() {
        install();
        let token = encode(&Header::new(Algorithm::HS256), &claims(), &EncodingKey::from_secret(b"secret")).unwrap();
        assert!(decode::<Claims>(&token, &DecodingKey::from_secret(b"secret"), &Validation::new(Algorithm::HS256)).is_ok());
        assert!(decode::<Claims>(&token, &DecodingKey::from_secret(b"other"), &Validation::new(Algorithm::HS256)).is_err());
        // An HS256 verifier refuses an EC key outright.
        let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&EncodingKey::from_ec_der(pkcs8.as_ref()), Algorithm::ES256).unwrap();
        assert!(new_verifier(&Algorithm::HS256, &DecodingKey::from_jwk(&jwk).unwrap()).is_err());
    }

    #[test]
    fn rsa_and_eddsa_verify() {
        install();
        // PKCS#8 v1 (header + 32-byte seed), the form jsonwebtoken's JWK
        // conversion expects.
        let mut v1 = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        v1.extend_from_slice(&[7; 32]);
        let encoding = EncodingKey::from_ed_der(&v1);
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, Algorithm::EdDSA).unwrap();
        let token = encode(&Header::new(Algorithm::EdDSA), &claims(), &encoding).unwrap();
        assert!(decode::<Claims>(&token, &DecodingKey::from_jwk(&jwk).unwrap(), &Validation::new(Algorithm::EdDSA)).is_ok());
        // RSA from modulus/exponent (how providers publish keys): a wrong
        // signature is refused, not a panic.
        let key = DecodingKey::from_rsa_raw_components(&[0xc5; 256], &[1, 0, 1]);
        assert!(!jsonwebtoken::crypto::verify("AAAA", b"message", &key, Algorithm::RS256).unwrap_or(false));
    }
}
