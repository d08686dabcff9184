//! Fires the scheduled functions locally, as EventBridge would deployed:
//! the audit sealer every 5 minutes (template.yaml `SchedulerFunction`) and
//! the jobs worker's retention sweep every hour (`JobsFunction`'s
//! `RetentionSweep`), and the report schedules every minute (`JobsFunction`'s
//! `ReportSchedules`: EventBridge Scheduler, which the emulator never fires),
//! the saved-search alert check every 15 minutes (`SearchAlertsFunction`),
//! the analytics connectors every minute (`IntegrationsConnectorsFunction`),
//! the daily backup and weekly verification (`run_backups`), and the
//! calendar re-sync every 15 minutes (`IntegrationsCalendarFunction`), the
//! security detectors every minute (`ComplianceReviewFunction`'s
//! `SecurityDetectors`), and the uptime check every 5 minutes
//! (`AdminUptimeFunction`).
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

/// Check saved searches' alerts on their schedule forever (the `make dev`
/// loop); each email goes out as a job through the outbox.
pub async fn run_search_alerts(state: search::SearchState) {
    let every = search::alerts::CHECK_EVERY.to_std().unwrap_or(Duration::from_secs(900));
    let mut every = tokio::time::interval(every);
    loop {
        every.tick().await;
        match search::alerts::check_due(&state.platform.store, &state.searchers, chrono::Utc::now()).await {
            Ok(checked) if checked.checked + checked.stopped > 0 => tracing::info!(?checked, "saved-search alerts"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "saved-search alerts failed"),
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

/// Send the webhook deliveries whose next attempt is due, every minute (as
/// the webhooks worker's EventBridge schedule does).
pub async fn run_webhook_sweep(worker: integrations::delivery::Worker) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        every.tick().await;
        let store = worker.state.platform.store.store();
        if let Err(e) = integrations::dispatch::sweep_due(store, &worker.sqs, &worker.queue_url, integrations::delivery::Clock::now(&*worker.clock), 500).await
        {
            tracing::warn!(error = %e, "webhook sweep failed");
        }
    }
}

/// Forward domain events to the configured analytics connectors every
/// minute (`IntegrationsConnectorsFunction`'s schedule).
pub async fn run_connectors(forwarder: integrations::connectors::Forwarder) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        every.tick().await;
        // Each connector's outcome is logged and recorded in its health.
        forwarder.run().await;
    }
}

/// The calendar re-sync's schedule (`IntegrationsCalendarFunction`, `rate(15 minutes)`).
pub const CALENDAR_RESYNC_EVERY: Duration = Duration::from_secs(900);

/// Sync every connected CalDAV calendar every 15 minutes forever (the
/// `make dev` loop), as `IntegrationsCalendarFunction` does deployed.
pub async fn run_calendar_resync(state: integrations::IntegrationsState) {
    let mut every = tokio::time::interval(CALENDAR_RESYNC_EVERY);
    // The first tick fires at once; the first re-sync is one period later.
    every.tick().await;
    loop {
        every.tick().await;
        match integrations::calendar::sync::resync_all(&state, std::time::Instant::now() + Duration::from_secs(240)).await {
            Ok(resynced) if resynced != Default::default() => tracing::info!(?resynced, "calendar re-sync"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "calendar re-sync failed"),
        }
    }
}

/// The monthly access review: deployed on the 1st at 06:00 UTC
/// (`ComplianceReviewFunction`); here every hour, recording the month's
/// review when it has none (a month is recorded once either way).
pub async fn run_access_review(state: compliance::ComplianceState) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        match compliance::access_review::record_monthly(&state, chrono::Utc::now()).await {
            Ok((review, true)) => tracing::info!(month = %review.month, flagged = review.flagged, "monthly access review recorded"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "monthly access review failed"),
        }
    }
}

/// The security detectors every minute (`ComplianceReviewFunction`'s
/// `SecurityDetectors` schedule, `rate(1 minute)`).
pub async fn run_security_detectors(state: compliance::ComplianceState) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        match compliance::security_events::run(&state, chrono::Utc::now()).await {
            Ok(report) if report.events_recorded > 0 => tracing::warn!(events = report.events_recorded, high = report.high_events, "security events detected"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "security detectors failed"),
        }
    }
}

/// The uptime check's schedule (`AdminUptimeFunction`, `rate(5 minutes)`).
pub const UPTIME_EVERY: Duration = Duration::from_secs(300);

/// Run the uptime check every 5 minutes forever (the `make dev` loop), its
/// lines logged as the `admin-uptime` function's.
pub async fn run_uptime(check: admin::uptime::UptimeCheck) {
    use tracing::Instrument as _;
    let mut every = tokio::time::interval(UPTIME_EVERY);
    loop {
        every.tick().await;
        let span = tracing::info_span!("uptime", function = "admin-uptime");
        match check.run(chrono::Utc::now()).instrument(span.clone()).await {
            Ok(record) => {
                let down: Vec<&str> = record.results.iter().filter(|r| !r.up).map(|r| r.target.as_str()).collect();
                span.in_scope(|| tracing::info!(?down, "uptime check"));
            }
            Err(e) => span.in_scope(|| tracing::warn!(error = %e, "uptime check failed")),
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

/// What the backups' schedules fire (template.yaml, `JobsFunction`'s
/// `DailyBackup` at 03:00 UTC and `WeeklyBackupVerify` on Sundays at 05:00
/// UTC: EventBridge Scheduler, which the emulator never fires).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupEvent {
    Daily,
    WeeklyVerify,
}

/// The next firing of the backups' schedules strictly after `now`.
pub fn next_backup_event(now: chrono::DateTime<chrono::Utc>) -> (chrono::DateTime<chrono::Utc>, BackupEvent) {
    use chrono::{Datelike, Duration as Days, TimeZone, Weekday};
    let at = |day: chrono::NaiveDate, hour: u32| chrono::Utc.from_utc_datetime(&day.and_hms_opt(hour, 0, 0).expect("a valid hour"));
    let mut day = now.date_naive();
    loop {
        let mut due = vec![(at(day, 3), BackupEvent::Daily)];
        if day.weekday() == Weekday::Sun {
            due.push((at(day, 5), BackupEvent::WeeklyVerify));
        }
        if let Some(next) = due.into_iter().find(|(t, _)| *t > now) {
            return next;
        }
        day += Days::days(1);
    }
}

/// Fire the backups' schedules forever (the `make dev` loop): each asks for
/// a job through the outbox, as deployed.
pub async fn run_backups(worker: jobs::Worker) {
    loop {
        let now = chrono::Utc::now();
        let (at, event) = next_backup_event(now);
        tokio::time::sleep((at - now).to_std().unwrap_or_default()).await;
        let outcome = match event {
            BackupEvent::Daily => jobs::backup::daily(&worker, chrono::Utc::now()).await,
            BackupEvent::WeeklyVerify => jobs::backup::weekly_verify(&worker).await,
        };
        match outcome {
            Ok(done) => tracing::info!(?event, %done, "backup schedule"),
            Err(e) => tracing::warn!(?event, error = %e, "backup schedule failed"),
        }
    }
}

/// The workflows tick every minute (template.yaml `WorkflowsTickFunction`):
/// due schedules start runs, due step messages are sent. EventBridge
/// Scheduler never fires in the emulator, so the local stack does.
pub async fn run_workflows_tick(dispatcher: workflows::dispatch::Dispatcher) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        every.tick().await;
        let tick = workflows::tick::Tick { engine: &dispatcher.engine, sqs: &dispatcher.sqs, queue_url: &dispatcher.queue_url };
        match tick.run(chrono::Utc::now()).await {
            Ok(ticked) if ticked.schedules_fired + ticked.messages_sent > 0 => {
                tracing::info!(schedules = ticked.schedules_fired, messages = ticked.messages_sent, "workflows tick")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "workflows tick failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc)
    }

    #[test]
    fn backups_fire_daily_at_three_and_verify_on_sunday_at_five() {
        // 2026-12-05 is a Saturday.
        assert_eq!(next_backup_event(t("2026-12-05T01:00:00Z")), (t("2026-12-05T03:00:00Z"), BackupEvent::Daily));
        assert_eq!(next_backup_event(t("2026-12-05T03:00:00Z")), (t("2026-12-06T03:00:00Z"), BackupEvent::Daily));
        assert_eq!(next_backup_event(t("2026-12-06T03:00:00Z")), (t("2026-12-06T05:00:00Z"), BackupEvent::WeeklyVerify));
        assert_eq!(next_backup_event(t("2026-12-06T06:00:00Z")), (t("2026-12-07T03:00:00Z"), BackupEvent::Daily));
    }
}
