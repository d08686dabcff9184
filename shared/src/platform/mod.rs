//! The bottom layer: what every other layer stands on and that knows nothing
//! of Keel's data — configuration from the environment, AWS clients,
//! telemetry, the one error type, and crypto primitives.

pub mod aws;
pub mod config;
pub mod crypto;
pub mod error;
pub mod rate_limit_policy;
pub mod telemetry;
pub mod time;
pub mod tls;
