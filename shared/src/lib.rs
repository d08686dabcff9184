//! The common crate of Keel: everything two functions need — configuration,
//! errors, telemetry, authentication, RBAC and custom roles, two-factor
//! authentication, rate limits, audit, the single-table store, crypto, jobs
//! and HTTP plumbing. Functions depend on this crate, never on each other.

pub mod audit;
pub mod audit_chain;
pub mod audit_digest;
pub mod aws;
pub mod charts;
pub mod config;
pub mod crypto;
pub mod crypto_provider;
pub mod cursor;
pub mod data_jobs;
pub mod error;
pub mod export;
pub mod extract;
pub mod http;
pub mod idempotency;
pub mod jobs;
pub mod masking;
pub mod ratelimit;
pub mod mfa;
pub mod oauth;
pub mod rbac;
pub mod roles;
pub mod rollups;
pub mod settings;
pub mod store;
pub mod subject_requests;
pub mod subjects;
pub mod telemetry;
pub mod token;
pub mod users;

pub use error::{Error, FieldError, Result};
