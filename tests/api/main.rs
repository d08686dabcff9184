//! Keel's integration tests: black-box requests against a local stack (the
//! AWS emulator, resources from template.yaml) per test. One binary, shared
//! helpers, an app per test.

mod helpers;
mod radicale;

mod analytics;
mod analytics_custom_segments;
mod analytics_moderation;
mod audit_integrity;
mod audit_log;
mod backups;
mod calendar;
mod charts;
mod compliance;
mod connectors;
mod dashboard;
mod data_bulk;
mod data_import;
mod erasure;
mod exports;
mod health;
mod insights;
mod integrations;
mod integrations_hub;
mod lambda_events;
mod logs;
mod marketing;
mod oauth;
mod openapi;
mod outbox;
mod payments;
mod rate_limits;
mod rbac;
mod report_schedules;
mod reports;
mod roles;
mod search;
mod security_events;
mod sessions;
mod social;
mod stack;
mod subject_requests;
mod system_config;
mod tokens;
mod two_factor;
mod uptime;
mod users;
mod validation;
mod workflows;
