//! Fires the scheduled functions locally, as EventBridge would deployed:
//! the audit sealer every 5 minutes (template.yaml `SchedulerFunction`) and
//! the jobs worker's retention sweep every hour (`JobsFunction`'s
//! `RetentionSweep`), and the report schedules every minute (`JobsFunction`'s
//! `ReportSchedules`: EventBridge Scheduler, which the emulator never fires).
//! Tests run it on demand with [`seal_now`].

use std::time::Duration;

/// The schedule of `SchedulerFunction` (`rate(5 minutes)`).
pub const SEAL_EVERY: Duration = Duration::from_secs(300);

/// The schedule of the retention sweep (`rate(1 hour)`).
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Run the retention sweep on its schedule forever (the `make dev` loop).
pub async fn run_retention(worker: jobs::Worker) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    // The first tick fires at once; the first sweep is one period later, so
    // a fresh `make dev` is not busy erasing the demo's long-deleted users
    // while someone tries the README.
    every.tick().await;
    loop {
        every.tick().await;
        match jobs::retention::sweep(&worker, chrono::Utc::now()).await {
            Ok(swept) => tracing::info!(?swept, "retention sweep"),
            Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
        }
    }
}

/// The report schedules' tick (`rate(1 minute)`).
pub const REPORT_SCHEDULES_EVERY: Duration = Duration::from_secs(60);

/// Fire due report schedules every minute forever (the `make dev` loop);
/// their jobs go out through the outbox like any other.
pub async fn run_report_schedules(worker: jobs::Worker) {
    let mut every = tokio::time::interval(REPORT_SCHEDULES_EVERY);
    loop {
        every.tick().await;
        match reports::schedules::fire_due(&worker.store, chrono::Utc::now()).await {
            Ok(fired) if !fired.runs.is_empty() => tracing::info!(?fired, "report schedules"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "report schedules failed"),
        }
    }
}

/// Seal the audit log up to this instant, without the settle delay (tests
/// and demos: nothing is in flight when they call it).
pub async fn seal_now(sealer: &scheduler::Sealer) -> shared::Result<scheduler::SealOutcome> {
    sealer.seal_until(chrono::Utc::now()).await
}

/// How often the local stack runs the outbox sweeper (deployed: with the
/// sealer, every 5 minutes; locally sooner, so a lost message shows).
pub const SWEEP_OUTBOX_EVERY: Duration = Duration::from_secs(60);

/// Run the outbox sweeper forever (the `make dev` loop).
pub async fn run_outbox_sweep(sweeper: scheduler::outbox_sweep::Sweeper) {
    let mut every = tokio::time::interval(SWEEP_OUTBOX_EVERY);
    loop {
        every.tick().await;
        if let Err(e) = sweeper.run().await {
            tracing::warn!(error = %e, "outbox sweep failed");
        }
    }
}

/// Run the sealer on its schedule forever (the `make dev` loop).
pub async fn run(sealer: scheduler::Sealer) {
    let mut every = tokio::time::interval(SEAL_EVERY);
    // The first tick fires at once; the first real run is one period later.
    every.tick().await;
    loop {
        every.tick().await;
        match sealer.seal_due().await {
            Ok(outcome) => tracing::info!(?outcome, "audit seal run"),
            Err(e) => tracing::warn!(error = %e, "audit seal run failed"),
        }
    }
}
