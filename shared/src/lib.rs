//! The common crate of Keel: everything two functions need. It is layered,
//! and imports only point down (a test, `tests/layers.rs`, enforces it):
//!
//! ```text
//! http/       routes + access table, principal, authorize, extractors, idempotency
//! domain/     export, jobs, charts, rollups, system settings, subject requests
//! identity/   tokens, roles, rbac, users, two-factor, oauth, rate limits
//! audit/      entries, the journal (commit-with-audit), pseudonyms, chain, digests
//! store/      the table: typed reads, paging, writes, cursors
//! platform/   config, aws clients, telemetry, errors, crypto
//! ```
//!
//! Functions depend on this crate, never on each other.

pub mod audit;
pub mod domain;
pub mod http;
pub mod identity;
pub mod platform;
pub mod store;

pub use platform::error::{Error, FieldError, Result};
