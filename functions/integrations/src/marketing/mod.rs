//! Email marketing (docs/integrations.md, "Email marketing"): public
//! double opt-in subscriptions with one-click unsubscribe (`subscriptions`)
//! and campaigns sent by the jobs worker (`campaigns`). The records are
//! `shared::domain::marketing`; the emails, SES contacts and SES's bounce
//! and complaint notifications are the jobs worker's (`functions/jobs/src/marketing.rs`).

pub mod campaigns;
pub mod subscriptions;

/// The hub's name for this integration.
pub const HUB_NAME: &str = "ses_marketing";
