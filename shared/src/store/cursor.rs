//! Opaque pagination cursors: a position (usually DynamoDB's
//! LastEvaluatedKey) serialized and authenticated with HMAC-SHA256, and bound
//! to the query it came from, so a client can neither read nor forge keys nor
//! replay a cursor against another filter.
//!
//! The HMAC key is a KMS data key created on first use and stored encrypted
//! in the table; every function decrypts it once per cold start.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

use crate::platform::crypto::{Envelope, Sealed};
use crate::platform::error::{Error, Result};
use crate::store::{Item, Store, s, to_item};

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct CursorCodec {
    key: [u8; 32],
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec(..)")
    }
}

fn invalid() -> Error {
    Error::field("cursor", "invalid or expired cursor; start again without one")
}

impl CursorCodec {
    pub fn new(key: [u8; 32]) -> Self {
        CursorCodec { key }
    }

    fn mac(&self, scope: &str, payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length");
        mac.update(scope.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac
    }

    /// `scope` names the query (route and filters); a cursor only decodes
    /// under the same scope.
    pub fn encode<T: Serialize>(&self, scope: &str, position: &T) -> String {
        let payload = serde_json::to_vec(position).expect("cursor position serializes");
        let tag = self.mac(scope, &payload).finalize().into_bytes();
        format!("{}.{}", B64.encode(&payload), B64.encode(tag))
    }

    pub fn decode<T: DeserializeOwned>(&self, scope: &str, cursor: &str) -> Result<T> {
        if cursor.len() > 4096 {
            return Err(invalid());
        }
        let (payload, tag) = cursor.split_once('.').ok_or_else(invalid)?;
        let payload = B64.decode(payload).map_err(|_| invalid())?;
        let tag = B64.decode(tag).map_err(|_| invalid())?;
        self.mac(scope, &payload).verify_slice(&tag).map_err(|_| invalid())?;
        serde_json::from_slice(&payload).map_err(|_| invalid())
    }
}

/// A LastEvaluatedKey as plain strings (all of Keel's key attributes are S).
pub type KeyPosition = BTreeMap<String, String>;

pub fn position_of(key: &Item) -> Result<KeyPosition> {
    key.iter()
        .map(|(k, v)| match v {
            AttributeValue::S(s) => Ok((k.clone(), s.clone())),
            _ => Err(Error::internal(format!("key attribute {k} is not a string"))),
        })
        .collect()
}

pub fn key_of(position: &KeyPosition) -> Item {
    position.iter().map(|(k, v)| (k.clone(), s(v.clone()))).collect()
}

const CURSOR_KEY_PK: &str = "SECRET#cursor-hmac";

/// Load (or create, on first use in a new stack) the cursor HMAC key.
pub async fn load_key(store: &Store, envelope: &Envelope) -> Result<CursorCodec> {
    #[derive(Serialize, serde::Deserialize)]
    struct SecretItem {
        pk: String,
        sk: String,
        sealed: Sealed,
    }
    let context = CURSOR_KEY_PK;
    let existing: Option<SecretItem> = store.get(CURSOR_KEY_PK, "SECRET").await?;
    let sealed = match existing {
        Some(item) => item.sealed,
        None => {
            let mut key = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
            let sealed = envelope.seal(&key, context).await?;
            let item = to_item(&SecretItem { pk: CURSOR_KEY_PK.into(), sk: "SECRET".into(), sealed: sealed.clone() })?;
            match store.put_new(item).await {
                Ok(true) => sealed,
                // Another cold start won the race: use its key.
                Ok(false) | Err(_) => {
                    let item: SecretItem = store.get(CURSOR_KEY_PK, "SECRET").await?.ok_or_else(|| Error::internal("cursor key vanished"))?;
                    item.sealed
                }
            }
        }
    };
    let plain = envelope.open(&sealed, context).await?;
    let key: [u8; 32] = plain.try_into().map_err(|_| Error::internal("cursor key has the wrong length"))?;
    Ok(CursorCodec::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_forgery_and_other_scopes() {
        let codec = CursorCodec::new([1; 32]);
        let mut pos = KeyPosition::new();
        pos.insert("pk".into(), "USER#1".into());
        let c = codec.encode("users:status=active", &pos);
        assert_eq!(codec.decode::<KeyPosition>("users:status=active", &c).unwrap(), pos);
        assert!(codec.decode::<KeyPosition>("users:status=deleted", &c).is_err());

        // Change the payload and keep the tag: refused.
        let (_, tag) = c.split_once('.').unwrap();
        let mut forged = KeyPosition::new();
        forged.insert("pk".into(), "USER#2".into());
        let forged = format!("{}.{}", B64.encode(serde_json::to_vec(&forged).unwrap()), tag);
        assert!(codec.decode::<KeyPosition>("users:status=active", &forged).is_err());

        // Another key: refused.
        assert!(CursorCodec::new([2; 32]).decode::<KeyPosition>("users:status=active", &c).is_err());
        assert!(codec.decode::<KeyPosition>("users:status=active", "garbage").is_err());
    }
}
