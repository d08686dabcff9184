//! Keel's integration tests: black-box requests against a local stack (the
//! AWS emulator, resources from template.yaml) per test. One binary, shared
//! helpers, an app per test.

mod helpers;

mod audit_integrity;
mod audit_log;
mod lambda_events;
mod openapi;
mod rbac;
mod sessions;
mod stack;
mod tokens;
mod users;
mod validation;
