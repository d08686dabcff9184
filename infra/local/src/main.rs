//! `keel-local`: the whole of Keel on this machine. Starts the AWS emulator,
//! creates the stack from template.yaml, seeds demo data, bootstraps the
//! super admin, writes `.keel/local.env`, then serves every API function on
//! one port and runs the workers until Ctrl-C.

use keel_local::{app, moto::Moto, poller, provision, schedule, seed, stream_reader, template::Template};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = keel_local::repo_root();
    // Every function's lines also go to one JSON lines file, which the
    // admin function's log search reads (CloudWatch Logs deployed).
    shared::platform::telemetry::init_with_log_file(Some(root.join(keel_local::app::LOG_FILE)));
    let settings = keel_local::Settings::from_env()?;
    std::fs::create_dir_all(root.join(".keel"))?;
    let booted = std::time::Instant::now();
    println!("Starting the AWS emulator (moto)...");
    let moto = Moto::start(Some(root.join(".keel/moto.log"))).await?;
    let sdk = keel_local::sdk_config(&moto.endpoint).await;
    let template = Template::load(&root.join("template.yaml"))?;
    let stack = provision::provision(&sdk, &template, "keel-local", &settings.parameters()).await?;
    println!(
        "Created {} resources from template.yaml (not emulated: {}) ({:.1} s)",
        stack.resources.len(),
        stack.skipped.len(),
        booted.elapsed().as_secs_f64()
    );
    let local = app::build(&sdk, &stack.env).await?;

    println!("Seeding demo data ({} users)...", settings.demo_users);
    let started = std::time::Instant::now();
    let (items, summary) = seed::generate(chrono::Utc::now(), settings.demo_users, 2026);
    seed::put(&local.platform.store, &items).await?;
    println!(
        "  {} users, {} charts, {} orders ({} refunded), {} activity events ({:.1} s)",
        summary.users,
        summary.charts,
        summary.orders,
        summary.refunds,
        summary.events,
        started.elapsed().as_secs_f64()
    );
    // The stream from where it stands after the seed (the seeded items are
    // counted once, by the backfill).
    let stream_arn = stack.resources["Table"].attributes["StreamArn"].clone();
    let reader = stream_reader::StreamReader::open(aws_sdk_dynamodbstreams::Client::new(&sdk), &stream_arn, stream_reader::Start::Latest).await?;
    // The search indexer reads the stream on its own (its own event source
    // mapping in AWS), from here; the seeded items are indexed at once below.
    let search_reader = stream_reader::StreamReader::open(aws_sdk_dynamodbstreams::Client::new(&sdk), &stream_arn, stream_reader::Start::Latest).await?;
    // And the webhook dispatcher (audit entries to deliveries), likewise.
    let webhook_reader = stream_reader::StreamReader::open(aws_sdk_dynamodbstreams::Client::new(&sdk), &stream_arn, stream_reader::Start::Latest).await?;
    // And the workflows dispatcher (audit entries to runs, steps to the jobs queue).
    let workflows_reader = stream_reader::StreamReader::open(aws_sdk_dynamodbstreams::Client::new(&sdk), &stream_arn, stream_reader::Start::Latest).await?;
    let started = std::time::Instant::now();
    let documents: Vec<search::documents::SearchDoc> = items
        .iter()
        .filter_map(|item| serde_dynamo::from_item::<_, serde_json::Value>(item.clone()).ok())
        .filter_map(|value| search::documents::document_of(&value))
        .collect();
    let total = documents.len() as u64;
    let progress = |done: u64| {
        use std::io::Write as _;
        print!("\r  search index: {done} of {total} documents");
        let _ = std::io::stdout().flush();
    };
    let built = search::indexer::rebuild(local.search.searchers.remote(), &local.search_dir.join("build"), documents.into_iter(), &progress)
        .await
        .map_err(|e| anyhow::anyhow!("building the search index: {e}"))?;
    println!("\r  search index: {} documents, version {} ({:.1} s)", built.documents, built.version, started.elapsed().as_secs_f64());
    tokio::spawn(stream_reader::run(search_reader, local.indexer.clone()));
    // Dashboard rollups: one backfill over the seeded items. The emulator's
    // table was empty before the seed, so folding the items just written
    // gives the same counters as a Scan of the table, without reading
    // 40,000 items back through the emulator (about a minute on 2 cores).
    let started = std::time::Instant::now();
    let backfilled = streams::backfill::run_over(&local.platform.store, &items).await.map_err(|e| anyhow::anyhow!("backfilling rollups: {e}"))?;
    drop(items);
    println!("  dashboard rollups: {} counters from {} items ({:.1} s)", backfilled.counters, backfilled.items_scanned, started.elapsed().as_secs_f64());
    tokio::spawn(stream_reader::run(reader, local.streams.clone()));
    // Analytics rollups and models (the analytics function reads only
    // these), as `POST /api/v1/analytics/refresh` recomputes them.
    let revenue = jobs::analytics_refresh::recompute(&local.platform.store, chrono::Utc::now()).await.map_err(|e| anyhow::anyhow!("revenue rollups: {e}"))?;
    println!(
        "  revenue rollups: {} rows from {} orders of {} customers ({} plan switches, {} reactivations)",
        revenue.rows, revenue.orders, revenue.customers, summary.plan_changes, summary.reactivations
    );
    println!(
        "  models: {} forecasts, {} anomalies, {} customers scored for churn (held-out AUC {:.2}), {} insights found",
        revenue.forecasts, revenue.anomalies, revenue.churn_scored, revenue.churn_auc, revenue.insights.found
    );
    let admin = shared::identity::users::bootstrap_admin(&local.platform.store, &settings.admin_email, "Local Admin", &settings.admin_password, false).await?;
    keel_local::write_env_file(&root.join(".keel/local.env"), &moto.endpoint, &stack)?;
    // Seal the demo's history now (nothing else writes yet, so no settle
    // delay is needed): a new user sees a signed, verifiable chain at once;
    // then every 5 minutes as deployed.
    let started = std::time::Instant::now();
    match schedule::seal_now(&local.sealer).await {
        Ok(scheduler::SealOutcome::Sealed { sequence, count, .. }) => {
            println!("  audit log: digest {sequence} seals its {count} entries so far ({:.1} s)", started.elapsed().as_secs_f64())
        }
        Ok(other) => println!("  audit log: {other:?}"),
        Err(e) => println!("  audit log: the first seal failed ({e}); the scheduled run retries in 5 minutes"),
    }
    // And verify it once (remembered), as an operator would after a
    // deployment: the first check through the API then covers only what
    // came after, not the 367 empty day partitions since the chain's start.
    let started = std::time::Instant::now();
    match local.admin.audit.verify_and_remember(None, false, chrono::Utc::now()).await {
        Ok(report) if report.ok => println!(
            "  audit log: verified, {} entries and {} digests ({:.1} s)",
            report.entries_checked,
            report.digests_checked,
            started.elapsed().as_secs_f64()
        ),
        Ok(report) => println!("  audit log: verification found a problem: {:?}", report.first_problem),
        Err(e) => println!("  audit log: the first verification failed ({e})"),
    }

    let jobs_queue = stack.env["KEEL_JOBS_QUEUE_URL"].clone();
    let jobs_arn = stack.resources["JobsQueue"].attributes["Arn"].clone();
    tokio::spawn(poller::run(local.clients.sqs.clone(), jobs_queue, jobs_arn, local.worker.clone()));
    // SES's bounce and complaint notifications (SNS → SesEventsQueue) go
    // to the jobs worker too, as its second event source does deployed.
    let ses_events = stack.resources["SesEventsQueue"].clone();
    tokio::spawn(poller::run(local.clients.sqs.clone(), ses_events.reference.clone(), ses_events.attributes["Arn"].clone(), local.worker.clone()));
    tokio::spawn(schedule::run(local.sealer.clone()));
    tokio::spawn(stream_reader::run(webhook_reader, local.webhook_dispatcher.clone()));
    tokio::spawn(stream_reader::run(workflows_reader, local.workflows_dispatcher.clone()));
    tokio::spawn(schedule::run_workflows_tick(local.workflows_dispatcher.clone()));
    let webhooks_queue = stack.env["KEEL_WEBHOOKS_QUEUE_URL"].clone();
    let webhooks_arn = stack.resources["WebhooksQueue"].attributes["Arn"].clone();
    tokio::spawn(poller::run(local.clients.sqs.clone(), webhooks_queue, webhooks_arn, local.webhooks.clone()));
    tokio::spawn(schedule::run_webhook_sweep(local.webhooks.clone()));
    tokio::spawn(schedule::run_connectors(integrations::connectors::Forwarder {
        state: local.webhooks.state.clone(),
        clock: std::sync::Arc::new(integrations::delivery::SystemClock),
    }));
    tokio::spawn(schedule::run_outbox_sweep(local.sweeper.clone()));
    tokio::spawn(schedule::run_retention(local.worker.clone()));
    tokio::spawn(schedule::run_report_schedules(local.worker.clone()));
    tokio::spawn(schedule::run_search_alerts(local.search.clone()));
    tokio::spawn(schedule::run_backups(local.worker.clone()));
    tokio::spawn(schedule::run_calendar_resync(local.integrations.clone()));
    tokio::spawn(schedule::run_access_review(compliance::ComplianceState { platform: local.platform.clone(), clients: local.clients.clone() }));
    tokio::spawn(schedule::run_security_detectors(compliance::ComplianceState { platform: local.platform.clone(), clients: local.clients.clone() }));

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", settings.port)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    // The uptime check calls the functions over HTTP, here on this port.
    tokio::spawn(schedule::run_uptime(admin::uptime::UptimeCheck::new(local.platform.store.clone(), local.platform.envelope.clone(), &url)?));
    println!("\nKeel is running at {url}/api/v1 (AWS emulator at {}; ready {:.0} s after start)", moto.endpoint, booted.elapsed().as_secs_f64());
    println!("  admin login: {}  password: {}  (user id {})", settings.admin_email, settings.admin_password, admin.id);
    println!("  try: curl -s {url}/api/v1/auth/login -H 'content-type: application/json' -d '{{\"email\":\"{}\",\"password\":\"...\"}}'", settings.admin_email);
    println!("  the admin's first sign-in is limited to enrolling 2FA (docs/two-factor.md); then sign in again with a code");
    println!("  audit log sealed into signed digests at start and every 5 minutes; check it: GET /api/v1/admin/audit-logs/verify (docs/audit-integrity.md)");
    println!("  resource names: .keel/local.env   Ctrl-C stops everything.\n");
    let service = local.router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    drop(moto);
    println!("Stopped.");
    Ok(())
}
