//! Stripe's webhook signature (`Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`):
//! HMAC-SHA256, keyed with the whole `whsec_…` secret, over
//! `<t>.<raw body>`. Any `v1` may match (Stripe sends one per active secret
//! while a secret is being rolled); other schemes (`v0`) are ignored. The
//! timestamp must be within `TOLERANCE` of now, either side, so a captured
//! request cannot be replayed later.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Stripe's own libraries' default tolerance.
pub const TOLERANCE_SECONDS: i64 = 300;

/// The webhook signing secret (`whsec_…`); never printed.
#[derive(Clone)]
pub struct StripeSecret(String);

impl std::fmt::Debug for StripeSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StripeSecret(…)")
    }
}

impl StripeSecret {
    /// The configured secret; none when unset or blank (the endpoint then
    /// answers that Stripe is not configured).
    pub fn from_value(value: Option<String>) -> Option<StripeSecret> {
        value.map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).map(StripeSecret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Why a signature was refused (told to the caller: it names no secret).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header has no timestamp (t=) or no v1 signature")]
    Malformed,
    #[error("the Stripe-Signature timestamp is more than {TOLERANCE_SECONDS} s from now")]
    OutsideTolerance,
    #[error("no v1 signature in the Stripe-Signature header matches the payload")]
    Mismatch,
}

fn mac(secret: &StripeSecret, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.0.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header Stripe would send for `body` at `timestamp` (tests, and the
/// local stack's `keel` helpers sign fixtures with it).
pub fn header(secret: &StripeSecret, timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let digest = mac(secret, &t, body).finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// Check `header` against `body` at `now`: Ok(the signed instant).
pub fn verify(secret: &StripeSecret, header: Option<&str>, body: &[u8], now: DateTime<Utc>) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = Some(value),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let (Some(t), false) = (timestamp, signatures.is_empty()) else {
        return Err(SignatureError::Malformed);
    };
    let signed_at: i64 = t.parse().map_err(|_| SignatureError::Malformed)?;
    if (now.timestamp() - signed_at).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::OutsideTolerance);
    }
    let matches = |hex: &&str| decode_hex(hex).is_some_and(|bytes| mac(secret, t, body).verify_slice(&bytes).is_ok());
    if signatures.iter().any(matches) { Ok(signed_at) } else { Err(SignatureError::Mismatch) }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> StripeSecret {
        StripeSecret("whsec_test_secret".into())
    }

    #[test]
    fn a_header_it_makes_verifies_and_any_change_does_not() {
        let now = Utc::now();
        let body = br#"{"id":"evt_1","type":"invoice.paid"}"#;
        let header = header(&secret(), now.timestamp(), body);
        assert_eq!(verify(&secret(), Some(&header), body, now), Ok(now.timestamp()));
        assert_eq!(verify(&secret(), Some(&header), br#"{"id":"evt_2","type":"invoice.paid"}"#, now), Err(SignatureError::Mismatch));
        assert_eq!(verify(&StripeSecret("whsec_other".into()), Some(&header), body, now), Err(SignatureError::Mismatch));
        let late = now + chrono::Duration::seconds(TOLERANCE_SECONDS + 1);
        assert_eq!(verify(&secret(), Some(&header), body, late), Err(SignatureError::OutsideTolerance));
        assert_eq!(verify(&secret(), None, body, now), Err(SignatureError::Missing));
        assert_eq!(verify(&secret(), Some("v1=abc"), body, now), Err(SignatureError::Malformed));
        assert_eq!(verify(&secret(), Some(&format!("t={}", now.timestamp())), body, now), Err(SignatureError::Malformed));
    }

    /// While a secret is rolled Stripe signs with both: either may match,
    /// and a v0 (test-mode legacy) signature is ignored.
    #[test]
    fn any_v1_may_match() {
        let now = Utc::now();
        let body = b"{}";
        let good = header(&secret(), now.timestamp(), body);
        let v1 = good.split_once(",v1=").unwrap().1;
        let several = format!("t={},v0={},v1={},v1={v1}", now.timestamp(), "00".repeat(32), "ab".repeat(32));
        assert_eq!(verify(&secret(), Some(&several), body, now), Ok(now.timestamp()));
    }

    /// Stripe's documented example: the signed payload is `t.body`, the key
    /// the secret as its UTF-8 bytes (checked against an HMAC computed
    /// independently with Python's hmac module).
    #[test]
    fn matches_an_independently_computed_signature() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"whsec_test_secret",b"1700000000.{}",hashlib.sha256).hexdigest())'
        let expected = "t=1700000000,v1=ceb8863f7208fa249a6cd8f951e993c7563412aca65866f6272283debe143ab3";
        assert_eq!(header(&secret(), 1_700_000_000, b"{}"), expected);
    }
}
