//! Per-person keys for crypto-shredding.
//!
//! Audit entries are never changed after they are written (they are sealed
//! by the signed digest chain), yet a person's erasure must leave nothing in
//! them that points back to that person. So audit entries never hold a
//! person in the clear: their user id is replaced by a random **pseudonym**
//! (`psn_…`), and their personal fields (source IP, user agent, the changed
//! values) are encrypted with AES-256-GCM under the person's own **subject
//! key**. Two small items map id ↔ pseudonym and hold that key, wrapped by the
//! keyring key (itself envelope-encrypted with the data CMK, so one KMS call
//! per process). Erasure deletes both items and leaves a tombstone: the
//! entries keep their bytes, so the audit chain still verifies, but nothing
//! can link the pseudonym to the person or decrypt their fields any more.
//!
//! Items (docs/ARCHITECTURE.md, "Key space"):
//! - `SUBJECT#<user id> / KEY`: the pseudonym and the wrapped key (writes);
//! - `PSEUDONYM#<pseudonym> / KEY`: the user id and the wrapped key (reads);
//! - `ERASED#<sha256(user id)> / ERASED`: the person was erased; no new key
//!   is made for that id (the hash of a random id links to nothing);
//! - `SECRET#subject-keyring / SECRET`: the keyring key, envelope-encrypted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::audit::Journal;
use crate::audit::{Actor, AuditEntry, Outcome};
use crate::platform::crypto::{Envelope, Sealed, open_with_key, seal_with_key, sha256_hex};
use crate::platform::error::{Error, Result};
use crate::store::{Item, Store, Transacted, Write, from_item, s, timestamp, to_item};

/// How every pseudonym starts (nothing else in an audit entry does).
pub const PSEUDONYM_PREFIX: &str = "psn_";
/// Stands for a person who had already been erased when the entry was written.
pub const ERASED: &str = "erased";
const KEYRING_PK: &str = "SECRET#subject-keyring";
/// The sort key of both key items (`SUBJECT#<id>` and `PSEUDONYM#<p>`).
pub const KEY_SK: &str = "KEY";

pub fn is_pseudonym(value: &str) -> bool {
    value.starts_with(PSEUDONYM_PREFIX)
}

pub fn subject_pk(user_id: &str) -> String {
    format!("SUBJECT#{user_id}")
}

pub fn pseudonym_pk(pseudonym: &str) -> String {
    format!("PSEUDONYM#{pseudonym}")
}

/// The `gsi2` partition of a person's short-lived records that no other key
/// leads to (refresh tokens, stored idempotent responses): erasure sweeps it.
pub fn personal_pk(user_id: &str) -> String {
    format!("PERSONAL#{user_id}")
}

pub fn tombstone_pk(user_id: &str) -> String {
    format!("ERASED#{}", sha256_hex(user_id.as_bytes()))
}

/// A person's key, unwrapped.
#[derive(Clone)]
pub struct SubjectKey {
    pub user_id: String,
    pub pseudonym: String,
    key: [u8; 32],
}

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectKey").field("user_id", &self.user_id).field("pseudonym", &self.pseudonym).finish_non_exhaustive()
    }
}

/// A person as an audit entry may name them.
#[derive(Clone, Debug)]
pub enum Subject {
    Active(SubjectKey),
    /// Erased before this write: the entry keeps nothing of them.
    Erased,
}

impl Subject {
    fn stored_id(&self) -> &str {
        match self {
            Subject::Active(k) => &k.pseudonym,
            Subject::Erased => ERASED,
        }
    }
}

/// One of the two key items (`SUBJECT#id` or `PSEUDONYM#psn`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyItem {
    pk: String,
    sk: String,
    #[serde(rename = "type")]
    kind: String,
    pseudonym: String,
    /// Only on the `PSEUDONYM#` item: the `SUBJECT#` item is keyed by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    /// nonce ‖ AES-256-GCM(keyring key, subject key), base64.
    key: String,
    created_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyringItem {
    pk: String,
    sk: String,
    sealed: Sealed,
}

/// The subject keys of one table; cheap to clone (the keyring key is
/// loaded once per process and shared).
#[derive(Clone)]
pub struct SubjectKeys {
    envelope: Envelope,
    keyring: Arc<tokio::sync::OnceCell<[u8; 32]>>,
}

impl std::fmt::Debug for SubjectKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectKeys").finish_non_exhaustive()
    }
}

fn wrap(keyring: &[u8; 32], pseudonym: &str, key: &[u8; 32]) -> Result<String> {
    let (nonce, data) = seal_with_key(keyring, key, &format!("subject:{pseudonym}"))?;
    Ok(B64.encode([nonce.as_slice(), &data].concat()))
}

fn unwrap(keyring: &[u8; 32], pseudonym: &str, wrapped: &str) -> Result<[u8; 32]> {
    let raw = B64.decode(wrapped).map_err(|_| Error::internal("wrapped subject key is not base64"))?;
    if raw.len() < 12 {
        return Err(Error::internal("wrapped subject key is too short"));
    }
    let plain = open_with_key(keyring, &raw[..12], &raw[12..], &format!("subject:{pseudonym}"))?;
    plain.try_into().map_err(|_| Error::internal("subject key has the wrong length"))
}

/// Encrypt one entry's personal fields for one person: bound to the entry
/// and the pseudonym, so a ciphertext cannot be moved to another entry.
fn seal_payload(key: &[u8; 32], entry_id: &str, pseudonym: &str, payload: &Value) -> Result<String> {
    let (nonce, data) = seal_with_key(key, payload.to_string().as_bytes(), &format!("audit:{entry_id}:{pseudonym}"))?;
    Ok(B64.encode([nonce.as_slice(), &data].concat()))
}

fn open_payload(key: &[u8; 32], entry_id: &str, pseudonym: &str, sealed: &str) -> Result<Value> {
    let raw = B64.decode(sealed).map_err(|_| Error::internal("sealed audit field is not base64"))?;
    if raw.len() < 12 {
        return Err(Error::internal("sealed audit field is too short"));
    }
    let plain = open_with_key(key, &raw[..12], &raw[12..], &format!("audit:{entry_id}:{pseudonym}"))?;
    serde_json::from_slice(&plain).map_err(|_| Error::internal("sealed audit field is not JSON"))
}

/// An audit entry as stored: people by pseudonym, their fields sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredEntry {
    id: String,
    ts: String,
    actor: Actor,
    action: String,
    target_type: String,
    target_id: String,
    outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    about: Option<String>,
    /// Only when no person's key covers them (e.g. a role's definition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    changes: Option<Value>,
    /// The names of the changed fields, never their values: what the
    /// streams worker and a reader of an erased entry may still know.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    changed_fields: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Pseudonym → that person's sealed fields (`{"actor": {...}, "changes": {...}}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    sealed: BTreeMap<String, String>,
}

/// The field names a `changes` value touches.
pub fn changed_fields(changes: &Value) -> Vec<String> {
    let mut names: Vec<String> =
        ["before", "after"].iter().filter_map(|side| changes.get(side).and_then(Value::as_object)).flat_map(|m| m.keys().cloned()).collect();
    names.sort();
    names.dedup();
    names
}

impl SubjectKeys {
    pub fn new(envelope: Envelope) -> SubjectKeys {
        SubjectKeys { envelope, keyring: Arc::new(tokio::sync::OnceCell::new()) }
    }

    /// The keyring key, made on first use (like the cursor key).
    async fn keyring(&self, store: &Store) -> Result<&[u8; 32]> {
        self.keyring
            .get_or_try_init(|| async {
                let existing: Option<KeyringItem> = store.get(KEYRING_PK, "SECRET").await?;
                let sealed = match existing {
                    Some(item) => item.sealed,
                    None => {
                        let mut key = [0u8; 32];
                        rand::rngs::OsRng.fill_bytes(&mut key);
                        let sealed = self.envelope.seal(&key, KEYRING_PK).await?;
                        let item = to_item(&KeyringItem { pk: KEYRING_PK.into(), sk: "SECRET".into(), sealed: sealed.clone() })?;
                        match store.put_new(item).await {
                            Ok(true) => sealed,
                            // Another process made it first: use theirs.
                            Ok(false) | Err(_) => {
                                store.get::<KeyringItem>(KEYRING_PK, "SECRET").await?.ok_or_else(|| Error::internal("subject keyring vanished"))?.sealed
                            }
                        }
                    }
                };
                let plain = self.envelope.open(&sealed, KEYRING_PK).await?;
                plain.try_into().map_err(|_| Error::internal("subject keyring key has the wrong length"))
            })
            .await
    }

    /// The person's key, if they have one (no key is made).
    pub async fn lookup(&self, store: &Store, user_id: &str) -> Result<Option<SubjectKey>> {
        let Some(item) = store.get::<KeyItem>(&subject_pk(user_id), KEY_SK).await? else {
            return Ok(None);
        };
        let keyring = self.keyring(store).await?;
        Ok(Some(SubjectKey { user_id: user_id.to_string(), key: unwrap(keyring, &item.pseudonym, &item.key)?, pseudonym: item.pseudonym }))
    }

    /// The pseudonym audit entries use for a person (none if they have
    /// never been named in one, or were erased). Needs no key.
    pub async fn pseudonym_of(&self, store: &Store, user_id: &str) -> Result<Option<String>> {
        Ok(store.get::<KeyItem>(&subject_pk(user_id), KEY_SK).await?.map(|i| i.pseudonym))
    }

    /// The person's key for a new audit entry: theirs, a new one on their
    /// first entry, or `Erased`.
    pub async fn for_write(&self, store: &Store, user_id: &str) -> Result<Subject> {
        if let Some(found) = self.lookup(store, user_id).await? {
            return Ok(Subject::Active(found));
        }
        let keyring = self.keyring(store).await?;
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let pseudonym = format!("{PSEUDONYM_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let wrapped = wrap(keyring, &pseudonym, &key)?;
        let now = timestamp(chrono::Utc::now());
        let forward = KeyItem {
            pk: subject_pk(user_id),
            sk: KEY_SK.into(),
            kind: "subject_key".into(),
            pseudonym: pseudonym.clone(),
            user_id: None,
            key: wrapped.clone(),
            created_at: now.clone(),
        };
        let reverse = KeyItem {
            pk: pseudonym_pk(&pseudonym),
            sk: KEY_SK.into(),
            kind: "subject_key".into(),
            pseudonym: pseudonym.clone(),
            user_id: Some(user_id.to_string()),
            key: wrapped,
            created_at: now,
        };
        let absent = || Error::Conflict("subject key exists".into());
        let writes = [
            Write::put_new(store.table(), to_item(&forward)?, absent())?,
            Write::put_new(store.table(), to_item(&reverse)?, absent())?,
            Write::check(store.table(), &tombstone_pk(user_id), "ERASED", "attribute_not_exists(pk)", vec![], Error::Conflict("erased".into()))?,
        ];
        match store.try_transact(&writes).await {
            Ok(Transacted::Done) => Ok(Subject::Active(SubjectKey { user_id: user_id.to_string(), pseudonym, key })),
            // A concurrent first entry made the key, or the person is erased.
            _ => match self.lookup(store, user_id).await? {
                Some(found) => Ok(Subject::Active(found)),
                None if store.get_item(&tombstone_pk(user_id), "ERASED").await?.is_some() => Ok(Subject::Erased),
                None => Err(Error::internal("could not make a subject key")),
            },
        }
    }

    /// Keys of the given pseudonyms that still exist (erased ones are absent).
    pub async fn by_pseudonym(&self, store: &Store, pseudonyms: &HashSet<String>) -> Result<HashMap<String, SubjectKey>> {
        if pseudonyms.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<(String, String)> = pseudonyms.iter().map(|p| (pseudonym_pk(p), KEY_SK.to_string())).collect();
        let items = store.batch_get(&keys).await?;
        let keyring = self.keyring(store).await?;
        let mut out = HashMap::new();
        for item in items {
            let item: KeyItem = from_item(item)?;
            let Some(user_id) = item.user_id else { continue };
            out.insert(item.pseudonym.clone(), SubjectKey { user_id, key: unwrap(keyring, &item.pseudonym, &item.key)?, pseudonym: item.pseudonym });
        }
        Ok(out)
    }

    /// The writes that destroy a person's key, for the erasure's transaction:
    /// both key items go, a tombstone stops a new key for the same id.
    pub fn destroy(store: &Store, user_id: &str, pseudonym: Option<&str>, request_id: &str) -> Result<Vec<Write>> {
        let mut writes = Vec::new();
        if let Some(p) = pseudonym {
            writes.push(Write::delete_existing(
                store.table(),
                &subject_pk(user_id),
                KEY_SK,
                Error::Conflict("the subject key changed during the erasure; retry".into()),
            )?);
            writes.push(Write::delete_existing(
                store.table(),
                &pseudonym_pk(p),
                KEY_SK,
                Error::Conflict("the subject key changed during the erasure; retry".into()),
            )?);
        }
        let tombstone = Item::from([
            ("pk".to_string(), s(tombstone_pk(user_id))),
            ("sk".to_string(), s("ERASED")),
            ("type".to_string(), s("erasure_tombstone")),
            ("request_id".to_string(), s(request_id)),
            ("erased_at".to_string(), s(timestamp(chrono::Utc::now()))),
        ]);
        writes.push(Write::put(store.table(), tombstone)?);
        Ok(writes)
    }

    /// Stored audit items as readers see them: people by id and their
    /// fields decrypted while their key exists; an erased person stays a
    /// pseudonym, their fields gone (listed in `erased`).
    pub async fn reveal(&self, store: &Store, items: Vec<Item>) -> Result<Vec<AuditEntry>> {
        let stored: Vec<StoredEntry> = items.into_iter().map(from_item).collect::<Result<_>>()?;
        let mut wanted = HashSet::new();
        for e in &stored {
            wanted.extend([&e.actor.id, &e.target_id].into_iter().chain(e.about.as_ref()).filter(|id| is_pseudonym(id)).cloned());
            wanted.extend(e.sealed.keys().cloned());
        }
        let keys = self.by_pseudonym(store, &wanted).await?;
        stored.into_iter().map(|e| reveal_one(e, &keys)).collect()
    }

    /// User ids of pseudonyms (erased ones absent); reads no key.
    pub async fn user_ids(store: &Store, pseudonyms: &HashSet<String>) -> Result<HashMap<String, String>> {
        let keys: Vec<(String, String)> = pseudonyms.iter().filter(|p| is_pseudonym(p)).map(|p| (pseudonym_pk(p), KEY_SK.to_string())).collect();
        let mut out = HashMap::new();
        for item in store.batch_get(&keys).await? {
            let item: KeyItem = from_item(item)?;
            if let Some(user_id) = item.user_id {
                out.insert(item.pseudonym, user_id);
            }
        }
        Ok(out)
    }
}

/// The stored form of an audit entry: people named by pseudonym, each
/// person's fields sealed under their key.
pub async fn seal_entry(keys: Option<&SubjectKeys>, store: &Store, entry: &AuditEntry) -> Result<Item> {
    let mut people: HashMap<String, Subject> = HashMap::new();
    let mut subject = async |id: &str| -> Result<Subject> {
        if let Some(found) = people.get(id) {
            return Ok(found.clone());
        }
        let keys = keys.ok_or_else(|| Error::internal("this store has no subject keys: an audit entry naming a user cannot be written"))?;
        let found = keys.for_write(store, id).await?;
        people.insert(id.to_string(), found.clone());
        Ok(found)
    };
    let actor = if entry.actor.kind == "user" { Some(subject(&entry.actor.id).await?) } else { None };
    let target = if entry.target_type == "user" { Some(subject(&entry.target_id).await?) } else { None };
    let about = match &entry.about {
        Some(id) => Some(subject(id).await?),
        None => None,
    };
    let mut payloads: BTreeMap<String, (SubjectKey, Map<String, Value>)> = BTreeMap::new();
    let mut stored_actor = entry.actor.clone();
    if let Some(actor) = &actor {
        stored_actor.id = actor.stored_id().to_string();
        let mut personal = json!({ "source_ip": stored_actor.source_ip.take(), "user_agent": stored_actor.user_agent.take() });
        // Only when known: entries written before locations were recorded
        // keep their exact sealed bytes.
        if let Some(location) = stored_actor.location.take() {
            personal["location"] = serde_json::to_value(location).map_err(|e| Error::internal(format!("actor location: {e}")))?;
        }
        if let Subject::Active(k) = actor {
            payloads.entry(k.pseudonym.clone()).or_insert_with(|| (k.clone(), Map::new())).1.insert("actor".into(), personal);
        }
    }
    let mut changes = entry.changes.clone();
    let changed = changes.as_ref().map(changed_fields).unwrap_or_default();
    // Changed values belong to whom they describe: the named person,
    // else the target user, else the acting user.
    if let Some(owner) = about.as_ref().or(target.as_ref()).or(actor.as_ref())
        && let Some(values) = changes.take()
        && let Subject::Active(k) = owner
    {
        payloads.entry(k.pseudonym.clone()).or_insert_with(|| (k.clone(), Map::new())).1.insert("changes".into(), values);
    }
    let mut sealed = BTreeMap::new();
    for (pseudonym, (key, payload)) in payloads {
        sealed.insert(pseudonym.clone(), seal_payload(&key.key, &entry.id, &pseudonym, &Value::Object(payload))?);
    }
    let stored = StoredEntry {
        id: entry.id.clone(),
        ts: entry.ts.clone(),
        actor: stored_actor,
        action: entry.action.clone(),
        target_type: entry.target_type.clone(),
        target_id: target.as_ref().map(|t| t.stored_id().to_string()).unwrap_or_else(|| entry.target_id.clone()),
        outcome: entry.outcome,
        about: about.as_ref().map(|a| a.stored_id().to_string()),
        changes,
        changed_fields: changed,
        reason: entry.reason.clone(),
        sealed,
    };
    let mut item = to_item(&stored)?;
    let sk = format!("{}#{}", stored.ts, stored.id);
    item.insert("pk".into(), s(format!("AUDIT#{}", &stored.ts[..10])));
    item.insert("sk".into(), s(sk.clone()));
    item.insert("gsi1pk".into(), s(format!("ACTOR#{}", stored.actor.id)));
    item.insert("gsi1sk".into(), s(sk.clone()));
    item.insert("gsi2pk".into(), s(format!("TARGET#{}#{}", stored.target_type, stored.target_id)));
    item.insert("gsi2sk".into(), s(sk));
    item.insert("type".into(), s("audit"));
    Ok(item)
}

fn reveal_one(e: StoredEntry, keys: &HashMap<String, SubjectKey>) -> Result<AuditEntry> {
    let mut erased = Vec::new();
    let mut person = |id: &str, part: &str| -> String {
        if !is_pseudonym(id) && id != ERASED {
            return id.to_string();
        }
        match keys.get(id) {
            Some(k) => k.user_id.clone(),
            None => {
                erased.push(part.to_string());
                id.to_string()
            }
        }
    };
    let mut actor = e.actor.clone();
    if actor.kind == "user" {
        actor.id = person(&e.actor.id, "actor");
    }
    let target_id = if e.target_type == "user" { person(&e.target_id, "target") } else { e.target_id.clone() };
    let about = e.about.as_deref().map(|a| person(a, "about"));
    let mut changes = e.changes;
    for (pseudonym, sealed) in &e.sealed {
        let Some(k) = keys.get(pseudonym) else {
            erased.push("personal_data".into());
            continue;
        };
        let payload = open_payload(&k.key, &e.id, pseudonym, sealed)?;
        if let Some(fields) = payload.get("actor") {
            actor.source_ip = fields["source_ip"].as_str().map(String::from);
            actor.user_agent = fields["user_agent"].as_str().map(String::from);
            actor.location = fields.get("location").and_then(|l| serde_json::from_value(l.clone()).ok());
        }
        if let Some(values) = payload.get("changes") {
            changes = Some(values.clone());
        }
    }
    erased.sort();
    erased.dedup();
    Ok(AuditEntry {
        id: e.id,
        ts: e.ts,
        actor,
        action: e.action,
        target_type: e.target_type,
        target_id,
        outcome: e.outcome,
        about,
        changes,
        changed_fields: e.changed_fields,
        reason: e.reason,
        erased,
    })
}

/// Every audit entry on a target, newest first, as readers see them (a
/// user target is looked up by their pseudonym).
pub async fn entries_for_target(store: &Journal, target_type: &str, target_id: &str) -> Result<Vec<AuditEntry>> {
    let stored_id = match target_type {
        "user" => store.subject_keys()?.pseudonym_of(store, target_id).await?.unwrap_or_else(|| target_id.to_string()),
        _ => target_id.to_string(),
    };
    entries_in(store, "gsi2", "gsi2pk", format!("TARGET#{target_type}#{stored_id}")).await
}

/// Every audit entry by an actor, newest first, as readers see them.
pub async fn entries_by_actor(store: &Journal, actor_id: &str) -> Result<Vec<AuditEntry>> {
    let stored_id = store.subject_keys()?.pseudonym_of(store, actor_id).await?.unwrap_or_else(|| actor_id.to_string());
    entries_in(store, "gsi1", "gsi1pk", format!("ACTOR#{stored_id}")).await
}

async fn entries_in(store: &Journal, index: &str, pk_name: &str, pk: String) -> Result<Vec<AuditEntry>> {
    let condition = format!("{pk_name} = :pk");
    let spec = crate::store::QuerySpec { index: Some(index), key_condition: &condition, values: vec![(":pk", s(pk))], forward: false, ..Default::default() };
    let items = store.query_all(&spec).await?;
    store.reveal_audit(items).await
}
