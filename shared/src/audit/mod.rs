//! The audit layer, over the store: entries, the journal that commits a
//! change with its entry, pseudonyms and per-person keys (crypto-shredding),
//! and the signed digest chain.

pub mod chain;
pub mod digest;
mod entry;
pub mod journal;
pub mod pseudonyms;

pub use entry::*;
pub use journal::Journal;
