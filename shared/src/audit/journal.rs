//! The journal: the store as writers of changes see it. Every change is
//! committed with its audit entry in one TransactWriteItems, so a change
//! without its entry cannot exist; entries that name a person are sealed
//! under that person's key first (`pseudonyms`). It reads like the store
//! (`Deref`), so a function holding a journal needs no second handle.

use std::ops::Deref;

use crate::audit::AuditEntry;
use crate::audit::pseudonyms::{SubjectKeys, seal_entry};
use crate::platform::crypto::Envelope;
use crate::platform::error::{Error, Result};
use crate::store::{Item, QuerySpec, Store, Write, s};

#[derive(Clone, Debug)]
pub struct Journal {
    store: Store,
    /// Seals people in audit entries; a journal without them cannot write
    /// or read audit entries that name a user.
    keys: Option<SubjectKeys>,
}

impl Deref for Journal {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl Journal {
    /// A journal without per-person keys: for writers whose entries name no
    /// user (the audit sealer, the stream worker).
    pub fn new(store: Store) -> Journal {
        Journal { store, keys: None }
    }

    /// With the per-person keys of audit entries (every writer of entries
    /// that name a user needs them).
    pub fn with_subject_keys(store: Store, envelope: Envelope) -> Journal {
        Journal { store, keys: Some(SubjectKeys::new(envelope)) }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn subject_keys(&self) -> Result<&SubjectKeys> {
        self.keys.as_ref().ok_or_else(|| Error::internal("this journal has no subject keys: audit entries cannot be sealed or read"))
    }

    /// Stored audit items as readers see them (`SubjectKeys::reveal`).
    pub async fn reveal_audit(&self, items: Vec<Item>) -> Result<Vec<AuditEntry>> {
        self.subject_keys()?.reveal(self, items).await
    }

    /// The stored form of an audit entry (`pseudonyms::seal_entry`); an
    /// entry that names no user needs no keys.
    pub async fn seal_audit(&self, audit: &AuditEntry) -> Result<Item> {
        seal_entry(self.keys.as_ref(), self, audit).await
    }

    /// Apply `writes` and `audit` atomically: either the change and its audit
    /// entry are both stored, or neither is.
    pub async fn commit(&self, writes: Vec<Write>, audit: &AuditEntry) -> Result<()> {
        self.commit_many(vec![(writes, audit.clone())]).await
    }

    /// Apply several changes, each with its own audit entry, in one
    /// transaction (all or none): imports write a batch of rows this way.
    pub async fn commit_many(&self, changes: Vec<(Vec<Write>, AuditEntry)>) -> Result<()> {
        let mut all = Vec::with_capacity(changes.iter().map(|(w, _)| w.len() + 1).sum());
        for (writes, audit) in changes {
            let entry = Write::put_new(self.store.table(), self.seal_audit(&audit).await?, Error::internal("audit entry id collision"))?;
            all.extend(writes);
            all.push(entry);
        }
        self.store.transact(all).await
    }

    /// Store an audit entry that records no change (a denied or failed
    /// attempt, a read of personal data).
    pub async fn record(&self, audit: &AuditEntry) -> Result<()> {
        self.commit(Vec::new(), audit).await
    }
}

/// Audit items with `after < sort key <= until` (`until` a timestamp), in
/// log order, at most `limit`: day partition by day partition.
pub async fn items_after(store: &Store, after: &str, until: &str, limit: usize) -> Result<Vec<Item>> {
    let day = |t: &str| chrono::NaiveDate::parse_from_str(t.get(..10).unwrap_or(""), "%Y-%m-%d").map_err(|_| Error::internal(format!("not a timestamp: {t}")));
    let (first, last) = (day(after)?, day(until)?);
    // `\u{1}` sorts before every later character: excludes `after` itself
    // and nothing else; `~` after every `#id`: includes entries at `until`.
    let (lower, upper) = (format!("{after}\u{1}"), format!("{until}~"));
    let mut out = Vec::new();
    for date in first.iter_days().take_while(|d| *d <= last) {
        let spec = QuerySpec {
            key_condition: "pk = :pk AND sk BETWEEN :lower AND :upper",
            values: vec![(":pk", s(format!("AUDIT#{}", date.format("%Y-%m-%d")))), (":lower", s(lower.clone())), (":upper", s(upper.clone()))],
            forward: true,
            consistent: true,
            ..QuerySpec::default()
        };
        let wanted = limit - out.len();
        let (items, _) = store.query_filled(&spec, None, i32::try_from(wanted).unwrap_or(i32::MAX), 50).await?;
        out.extend(items);
        if out.len() >= limit {
            out.truncate(limit);
            break;
        }
    }
    Ok(out)
}
