//! Two-factor authentication, the part every function that checks a code
//! needs (auth at sign-in, admin for step-up): the per-user 2FA record
//! (`USER#id / MFA`: TOTP secret envelope-encrypted, last accepted time step,
//! recovery-code hashes), TOTP verification (RFC 6238: SHA-1, 6 digits, 30 s,
//! ±1 step, each step accepted once), single-use recovery codes, and which
//! roles must use 2FA (`CONFIG / mfa_required_roles`).

use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::identity::token::amr;
use crate::identity::users::User;
use crate::platform::crypto::{Envelope, Sealed, sha256_hex};
use crate::platform::error::{Error, Result};
use crate::store::{Item, Store, Write, s, timestamp, to_item};

/// Code length and step: what authenticator apps assume when the
/// provisioning URI does not say otherwise.
pub const DIGITS: u8 = 6;
pub const STEP_SECONDS: u64 = 30;
/// Clock skew accepted, in steps either side of now (RFC 6238 §5.2).
pub const SKEW_STEPS: u64 = 1;
/// 160-bit secrets, as RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;
pub const RECOVERY_CODE_COUNT: usize = 10;
/// The issuer authenticator apps show next to the account.
pub const ISSUER: &str = "Keel";
const SK: &str = "MFA";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MfaStatus {
    /// A secret was issued; the first valid code confirms it.
    Pending,
    Active,
}

/// A user's 2FA, stored as `USER#id / MFA`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MfaRecord {
    pub user_id: String,
    pub status: MfaStatus,
    /// The TOTP secret, sealed under a data key bound to this record.
    pub secret: Sealed,
    /// The newest time step whose code was accepted: codes of that step or
    /// older are refused, so a code works once.
    #[serde(default)]
    pub last_step: Option<u64>,
    /// SHA-256 of each unused recovery code (see [`recovery_code_hash`]).
    #[serde(default)]
    pub recovery_codes: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub activated_at: Option<String>,
    pub version: u64,
}

/// Which second factor a code was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    Totp,
    RecoveryCode,
}

impl SecondFactor {
    /// The `amr` value recorded for a session that used it.
    pub fn amr(self) -> &'static str {
        match self {
            SecondFactor::Totp => amr::OTP,
            SecondFactor::RecoveryCode => amr::RECOVERY_CODE,
        }
    }
}

impl MfaRecord {
    pub fn pk(user_id: &str) -> String {
        User::pk(user_id)
    }

    /// The envelope context of the secret: a sealed secret copied to another
    /// user's record does not open.
    pub fn context(user_id: &str) -> String {
        format!("USER#{user_id}#MFA")
    }

    /// A new pending enrolment with `secret`, replacing `previous` (an
    /// unconfirmed one) if any.
    pub async fn pending(envelope: &Envelope, user_id: &str, secret: &[u8], previous: Option<&MfaRecord>) -> Result<MfaRecord> {
        let now = timestamp(chrono::Utc::now());
        Ok(MfaRecord {
            user_id: user_id.to_string(),
            status: MfaStatus::Pending,
            secret: envelope.seal(secret, &Self::context(user_id)).await?,
            last_step: None,
            recovery_codes: Vec::new(),
            created_at: now.clone(),
            updated_at: now,
            activated_at: None,
            version: previous.map_or(1, |p| p.version + 1),
        })
    }

    pub fn is_active(&self) -> bool {
        self.status == MfaStatus::Active
    }

    pub async fn open_secret(&self, envelope: &Envelope) -> Result<Vec<u8>> {
        envelope.open(&self.secret, &Self::context(&self.user_id)).await
    }

    pub fn to_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(Self::pk(&self.user_id)));
        item.insert("sk".into(), s(SK));
        item.insert("type".into(), s("mfa"));
        Ok(item)
    }

    /// A copy with the next version, for a write conditioned on this one.
    pub fn next(&self) -> MfaRecord {
        MfaRecord { version: self.version + 1, updated_at: timestamp(chrono::Utc::now()), ..self.clone() }
    }

    /// The write that stores this record: a new one (`previous` is None) or
    /// a replacement of `previous` if nobody changed it meanwhile.
    pub fn save(&self, table: &str, previous: Option<&MfaRecord>) -> Result<Write> {
        match previous {
            None => Write::put_new(table, self.to_item()?, Error::Conflict("two-factor enrolment changed concurrently; retry".into())),
            Some(p) => Write::put_versioned(table, self.to_item()?, p.version),
        }
    }

    /// The write that removes this record if nobody changed it meanwhile.
    pub fn delete(&self, table: &str) -> Result<Write> {
        Write::delete_versioned(table, &Self::pk(&self.user_id), SK, self.version)
    }

    /// What audit entries show of the record (never the secret or hashes).
    pub fn audit_view(&self) -> Value {
        json!({ "two_factor": self.status, "recovery_codes_left": self.recovery_codes.len() })
    }

    /// Accept a TOTP code at `now` (seconds): the record with the code's step
    /// remembered, or None if the code is wrong, too far from now, or of a
    /// step already used.
    pub fn accept_totp(&self, secret: &[u8], code: &str, now: u64) -> Option<MfaRecord> {
        let step = accepted_step(secret, DIGITS, code, now, self.last_step)?;
        Some(MfaRecord { last_step: Some(step), ..self.next() })
    }

    /// Accept an unused recovery code: the record without it.
    pub fn accept_recovery_code(&self, code: &str) -> Option<MfaRecord> {
        let hash = recovery_code_hash(&self.user_id, code)?;
        // Look at every stored hash (no early exit), comparing in constant time.
        let found = self.recovery_codes.iter().enumerate().fold(
            None,
            |found, (i, stored)| {
                if bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) { Some(i) } else { found }
            },
        )?;
        let mut next = self.next();
        next.recovery_codes.remove(found);
        Some(next)
    }

    /// Accept either kind of second factor: six digits are a TOTP code,
    /// anything else is tried as a recovery code.
    pub fn accept_code(&self, secret: &[u8], code: &str, now: u64) -> Option<(MfaRecord, SecondFactor)> {
        if looks_like_totp(code) {
            self.accept_totp(secret, code, now).map(|r| (r, SecondFactor::Totp))
        } else {
            self.accept_recovery_code(code).map(|r| (r, SecondFactor::RecoveryCode))
        }
    }
}

pub async fn get(store: &Store, user_id: &str) -> Result<Option<MfaRecord>> {
    store.get(&MfaRecord::pk(user_id), SK).await
}

/// A fresh random TOTP secret.
pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

/// The TOTP generator for `secret`, labelled for authenticator apps.
pub fn totp(secret: &[u8], digits: u8, account: &str) -> Result<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(digits)
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret.to_vec())
        .with_issuer(Some(ISSUER))
        .with_account_name(account)
        .build()
        .map_err(|e| Error::internal(format!("building TOTP: {e}")))
}

/// The `otpauth://totp/...` URI authenticator apps scan.
pub fn provisioning_uri(secret: &[u8], account: &str) -> Result<String> {
    totp(secret, DIGITS, account)?.to_url().map_err(|e| Error::internal(format!("TOTP URI: {e}")))
}

/// Base32 of a secret, as typed into an authenticator by hand.
pub fn secret_base32(secret: &[u8]) -> Result<String> {
    Ok(totp(secret, DIGITS, "")?.secret().to_base32())
}

fn looks_like_totp(code: &str) -> bool {
    code.len() == DIGITS as usize && code.bytes().all(|b| b.is_ascii_digit())
}

/// The step of `code` if it is right within ±[`SKEW_STEPS`] of `now` and
/// newer than `last_step`. The oldest acceptable step wins, so a code that
/// happens to repeat in a later step is not burned early.
pub fn accepted_step(secret: &[u8], digits: u8, code: &str, now: u64, last_step: Option<u64>) -> Option<u64> {
    if code.len() != digits as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret, digits, "").ok()?;
    let origin = now / STEP_SECONDS;
    (origin.saturating_sub(SKEW_STEPS)..=origin + SKEW_STEPS)
        .filter(|step| last_step.is_none_or(|last| *step > last))
        .find(|step| bool::from(totp.generate(step * STEP_SECONDS).to_string().as_bytes().ct_eq(code.as_bytes())))
}

/// Crockford's base32 alphabet (no i, l, o, u): easy to read and type.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const RECOVERY_CHARS: usize = 16;

/// Ten new recovery codes, `xxxx-xxxx-xxxx-xxxx` (80 random bits each).
pub fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODE_COUNT)
        .map(|_| {
            let mut bytes = [0u8; RECOVERY_CHARS];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let chars: Vec<char> = bytes.iter().map(|b| RECOVERY_ALPHABET[(b & 0x1f) as usize] as char).collect();
            chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-")
        })
        .collect()
}

/// The stored form of a recovery code: SHA-256 over the user id and the
/// normalized code (case, dashes and spaces do not matter). The codes carry
/// 80 random bits, so a fast hash is enough. None if it cannot be a code.
pub fn recovery_code_hash(user_id: &str, code: &str) -> Option<String> {
    let normalized: String = code.chars().filter(|c| !matches!(c, '-' | ' ')).map(|c| c.to_ascii_lowercase()).collect();
    if normalized.len() != RECOVERY_CHARS || !normalized.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)) {
        return None;
    }
    Some(sha256_hex(format!("{user_id}:{normalized}").as_bytes()))
}

/// Hashes of `codes` for storage.
pub fn recovery_code_hashes(user_id: &str, codes: &[String]) -> Vec<String> {
    codes.iter().filter_map(|c| recovery_code_hash(user_id, c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B: the SHA-1 seed and its 8-digit codes.
    const RFC_SECRET: &[u8] = b"12345678901234567890";
    const RFC_VECTORS: &[(u64, &str)] =
        &[(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"), (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130")];

    #[test]
    fn rfc_6238_test_vectors_are_accepted_at_their_times() {
        for (time, code) in RFC_VECTORS {
            assert_eq!(accepted_step(RFC_SECRET, 8, code, *time, None), Some(time / 30), "T={time}");
            // Two steps later the same code is refused.
            assert_eq!(accepted_step(RFC_SECRET, 8, code, (time / 30 + 2) * 30, None), None, "T={time} two steps later");
        }
        assert_eq!(accepted_step(RFC_SECRET, 8, "94287083", 59, None), None, "a wrong code");
        assert_eq!(accepted_step(RFC_SECRET, 8, "9428708", 59, None), None, "a short code");
        assert_eq!(accepted_step(RFC_SECRET, 8, "+4287082", 59, None), None, "not digits");
    }

    #[test]
    fn one_step_of_skew_each_way_two_refused() {
        let totp = totp(RFC_SECRET, DIGITS, "").unwrap();
        let now = 1_700_000_015;
        let step = now / 30;
        let code_at = |s: u64| totp.generate(s * 30).to_string();
        for accepted in [step - 1, step, step + 1] {
            assert_eq!(accepted_step(RFC_SECRET, DIGITS, &code_at(accepted), now, None), Some(accepted));
        }
        for refused in [step - 2, step + 2] {
            assert_eq!(accepted_step(RFC_SECRET, DIGITS, &code_at(refused), now, None), None, "step {refused}");
        }
    }

    fn record(last_step: Option<u64>) -> MfaRecord {
        MfaRecord {
            user_id: "u1".into(),
            status: MfaStatus::Active,
            secret: Sealed { key: String::new(), nonce: String::new(), data: String::new() },
            last_step,
            recovery_codes: Vec::new(),
            created_at: String::new(),
            updated_at: String::new(),
            activated_at: None,
            version: 3,
        }
    }

    #[test]
    fn a_code_is_accepted_once_and_never_an_older_one() {
        let totp = totp(RFC_SECRET, DIGITS, "").unwrap();
        let now = 1_700_000_015;
        let step = now / 30;
        let code_at = |s: u64| totp.generate(s * 30).to_string();
        let first = record(None).accept_totp(RFC_SECRET, &code_at(step), now).expect("fresh code");
        assert_eq!((first.last_step, first.version), (Some(step), 4));
        assert!(first.accept_totp(RFC_SECRET, &code_at(step), now).is_none(), "replay of the same step");
        assert!(first.accept_totp(RFC_SECRET, &code_at(step - 1), now).is_none(), "an older step after a newer one");
        let second = first.accept_totp(RFC_SECRET, &code_at(step + 1), now).expect("the next step");
        assert_eq!(second.last_step, Some(step + 1));
    }

    #[test]
    fn recovery_codes_are_random_normalized_and_single_use() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODE_COUNT);
        assert!(codes.iter().all(|c| c.len() == 19 && c.matches('-').count() == 3));
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), codes.len());

        let mut r = record(None);
        r.recovery_codes = recovery_code_hashes("u1", &codes);
        assert!(!r.recovery_codes.iter().any(|h| codes.iter().any(|c| h.contains(c.as_str()))), "stored hashed");
        let typed = format!(" {} ", codes[3].to_uppercase().replace('-', " "));
        let (after, factor) = r.accept_code(RFC_SECRET, &typed, 0).expect("typed loosely");
        assert_eq!((factor, after.recovery_codes.len()), (SecondFactor::RecoveryCode, 9));
        assert!(after.accept_recovery_code(&codes[3]).is_none(), "used once");
        assert!(after.accept_recovery_code(&codes[4]).is_some());
        // Bound to the user: the same code does not open another account.
        assert_ne!(recovery_code_hash("u1", &codes[0]), recovery_code_hash("u2", &codes[0]));
        assert!(recovery_code_hash("u1", "not-a-code").is_none());
    }

    #[test]
    fn provisioning_uri_names_issuer_account_and_secret() {
        let uri = provisioning_uri(RFC_SECRET, "ada@example.com").unwrap();
        let secret = secret_base32(RFC_SECRET).unwrap();
        assert_eq!(secret, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert!(uri.starts_with("otpauth://totp/Keel:ada%40example.com?"), "{uri}");
        assert!(uri.contains(&format!("secret={secret}")) && uri.contains("issuer=Keel"), "{uri}");
    }
}
