//! Each connector's cursor (`INTEGRATION#<name> / CURSOR`): how far in the
//! audit log it has forwarded, and the page in flight.
//!
//! A page is the settled entries `position < sort key <= page_end`; it is
//! fixed before its first batch is sent (entries older than the settle
//! delay no longer change), so after a crash the same page gives the same
//! batches and the run resumes at `batches_sent`. Every write is
//! conditioned on the version read: two runs never both advance it.

use serde::{Deserialize, Serialize};
use shared::platform::error::Result;
use shared::store::{Condition, Item, Store, from_item, n, s, to_item};

pub const SK: &str = "CURSOR";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The sort key (`ts#id`) of the last audit entry forwarded, or the
    /// instant forwarding starts from.
    pub position: String,
    #[serde(default)]
    pub page_end: Option<String>,
    /// When the page in flight was fixed (GA4's age limit is taken from it,
    /// so the page's batches stay the same).
    #[serde(default)]
    pub page_at: Option<String>,
    #[serde(default)]
    pub batches_sent: usize,
    /// No run sends before this (a `Retry-After`, or the backoff).
    #[serde(default)]
    pub retry_at: Option<String>,
    /// A run holds the cursor until this instant (one run at a time).
    #[serde(default)]
    pub lease_until: Option<String>,
    #[serde(default)]
    pub forwarded: u64,
    #[serde(default)]
    pub dropped: u64,
    #[serde(default)]
    pub last_run_at: Option<String>,
    #[serde(default)]
    pub version: u64,
}

pub fn pk(name: &str) -> String {
    shared::domain::integration_health::pk(name)
}

pub async fn load(store: &Store, name: &str) -> Result<Option<Cursor>> {
    store.get_item(&pk(name), SK).await?.map(from_item).transpose()
}

/// The cursor as an item, one version on from the one read.
pub fn item(name: &str, cursor: &Cursor) -> Result<Item> {
    let mut item = to_item(cursor)?;
    item.insert("pk".into(), s(pk(name)));
    item.insert("sk".into(), s(SK));
    item.insert("type".into(), s("connector_cursor"));
    item.insert("version".into(), n(cursor.version + 1));
    Ok(item)
}

/// The condition a write of `cursor` needs: nobody wrote since it was read.
pub fn unchanged(read_version: Option<u64>) -> Condition<'static> {
    match read_version {
        None => Condition::new("attribute_not_exists(pk)"),
        Some(version) => Condition::new("version = :version").value(":version", n(version)),
    }
}

/// Write `cursor` (read at `cursor.version`, or new); false when another
/// run wrote it meanwhile. The cursor's version is moved on.
pub async fn save(store: &Store, name: &str, cursor: &mut Cursor, is_new: bool) -> Result<bool> {
    let condition = unchanged((!is_new).then_some(cursor.version));
    let saved = store.put_if(item(name, cursor)?, &condition).await?;
    if saved {
        cursor.version += 1;
    }
    Ok(saved)
}
