//! Keel's domain modules that two or more functions need: exports and their
//! datasets, jobs and their kinds, charts, rollups, the system settings and
//! subject (GDPR/CCPA) requests.

pub mod backups;
pub mod business;
pub mod charts;
pub mod custom_segments;
pub mod data_jobs;
pub mod export;
pub mod insights;
pub mod integration_health;
pub mod jobs;
pub mod marketing;
pub mod masking;
pub mod moderation;
pub mod moderation_metrics;
pub mod periods;
pub mod predictions;
pub mod revenue;
pub mod rollups;
pub mod security_events;
pub mod subject_requests;
pub mod system_settings;
pub mod two_factor_policy;
