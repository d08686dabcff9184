//! The outbox's sweeper, on the scheduler's 5-minute schedule: jobs still
//! `queued` five minutes after their last change have lost their message
//! (the stream dispatcher failed for good, or the message was dropped), so
//! they are sent again. A duplicate is harmless: the worker claims a job
//! before running it.

use shared::domain::jobs::{Outbox, STALE_AFTER};
use shared::store::Store;

#[derive(Clone, Debug)]
pub struct Sweeper {
    pub store: Store,
    pub outbox: Outbox,
}

impl Sweeper {
    pub fn new(store: Store, outbox: Outbox) -> Sweeper {
        Sweeper { store, outbox }
    }

    /// Over the sealer's table, sending to the configured jobs queue.
    pub fn from_sealer(sealer: &crate::Sealer) -> Sweeper {
        let sdk = shared::platform::aws::sdk_config();
        Sweeper::new(sealer.store.store().clone(), Outbox::new(aws_sdk_sqs::Client::new(&sdk), sealer.config.jobs_queue_url.clone()))
    }

    /// Send again what is stale; how many jobs.
    pub async fn run(&self) -> shared::Result<usize> {
        self.outbox.resend_stale(&self.store, STALE_AFTER).await
    }
}
