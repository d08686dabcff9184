//! Assembles the local application: every API function's router merged on
//! one server (same paths as API Gateway), the workers (jobs, streams, audit
//! sealer), and the bootstrap of the first super admin. Metrics go to an
//! in-memory ring (there is no CloudWatch locally), which the admin
//! function's metrics route reads.

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use axum::Router;
use shared::http::Platform;
use shared::identity::token::TokenVerifier;
use shared::platform::aws::Clients;
use shared::platform::config::Config;

pub struct LocalApp {
    pub router: Router,
    pub platform: Platform,
    pub clients: Clients,
    pub signer: auth::Signer,
    pub worker: jobs::Worker,
    pub streams: streams::Worker,
    /// The admin function's state (for tests that build its router alone).
    pub admin: admin::AdminState,
    /// The data function's state (likewise).
    pub data: data::DataState,
    pub sealer: scheduler::Sealer,
    /// The outbox's sweeper (the scheduler's other duty).
    pub sweeper: scheduler::outbox_sweep::Sweeper,
    /// The search function's state (its published-index holder).
    pub search: search::SearchState,
    /// The search indexer (its own stream reader applies changes).
    pub indexer: Arc<search::indexer::Indexer>,
    /// Where this stack's search instances keep their index files.
    pub search_dir: std::path::PathBuf,
    /// The integrations function's state (tests build its router with
    /// another webhook policy).
    pub integrations: integrations::IntegrationsState,
    /// The webhooks queue's worker (tests swap its clock).
    pub webhooks: integrations::delivery::Worker,
    /// Audit entries to webhook deliveries, from the stream.
    pub webhook_dispatcher: integrations::dispatch::Dispatcher,
    /// Audit entries to workflow runs, step messages to the jobs queue.
    pub workflows_dispatcher: workflows::dispatch::Dispatcher,
}

/// Where `make dev`'s functions append their log lines (relative to the repository root).
pub const LOG_FILE: &str = ".keel/logs/keel.jsonl";

/// Build every function exactly as its `main.rs` would, from the stack's
/// environment.
pub async fn build(sdk: &SdkConfig, env: &HashMap<String, String>) -> anyhow::Result<LocalApp> {
    let config = Arc::new(Config::from_map(env)?);
    let clients = Clients::from_sdk_config(sdk);
    let verifier = TokenVerifier::for_config(&clients.kms, &config).await?;
    let platform = Platform::new(config.clone(), clients.dynamo.clone(), clients.kms.clone(), verifier);
    let signer = auth::Signer::new(clients.kms.clone(), &config.signing_key_id, &platform.verifier);
    let monitoring = admin::monitoring::Monitoring {
        sqs: clients.sqs.clone(),
        s3: crate::s3_client(sdk),
        kms: clients.kms.clone(),
        dynamo: clients.dynamo.clone(),
        metrics: Arc::new(admin::system_metrics::LocalMetrics { ring: shared::platform::telemetry::MetricsRing::installed(), sqs: clients.sqs.clone() }),
        // The file this process's functions all log to (`make dev`:
        // `.keel/logs/keel.jsonl`; tests: one per test process).
        logs: Arc::new(admin::logs::LogSource::File(
            shared::platform::telemetry::log_file().map(Into::into).unwrap_or_else(|| crate::repo_root().join(LOG_FILE)),
        )),
    };
    let admin = admin::AdminState { platform: platform.clone(), sqs: clients.sqs.clone(), monitoring, audit: admin::audit_chain_reader(&platform, &clients) };
    let exports = data::ExportSettings::from_lookup(|name| env.get(name).cloned())?;
    let data = data::DataState { platform: platform.clone(), sqs: clients.sqs.clone(), s3: clients.s3.clone(), exports };
    // The search function and its indexer share nothing but the published
    // index (bucket + version item), as two Lambdas would; each has its own
    // directory, per stack (tests run several stacks in one process).
    let remote = search::index::Remote {
        store: platform.store.store().clone(),
        s3: crate::s3_client(sdk),
        bucket: config.exports_bucket.clone(),
        kms_key_id: config.data_key_id.clone(),
    };
    let search_dir = std::env::temp_dir().join(format!("keel-search-{}", config.table));
    let searchers = search::index::Searchers::new(remote.clone(), search_dir.join("reader"), std::time::Duration::from_secs(1))?;
    let search = search::SearchState { platform: platform.clone(), searchers: Arc::new(searchers) };
    let indexer = Arc::new(search::indexer::Indexer::new(remote, search_dir.join("writer")));
    // Loopback webhook targets only when the stack is started with
    // KEEL_WEBHOOKS_ALLOW_LOOPBACK=1 (local receivers; docs/integrations.md).
    let webhook_policy = integrations::ssrf::Policy::from_lookup(|name| env.get(name).cloned().or_else(|| std::env::var(name).ok()));
    let stripe_webhook_secret = integrations::payments::signature::StripeSecret::from_value(env.get("KEEL_STRIPE_WEBHOOK_SECRET").cloned());
    let integrations =
        integrations::IntegrationsState { platform: platform.clone(), webhook_policy, stripe_webhook_secret, opened_secrets: Default::default() };
    // Workflow steps go out through the webhook guard as deliveries do.
    let workflows_engine = workflows::engine(&platform, aws_sdk_sesv2::Client::new(sdk), webhook_policy, Arc::new(workflows::engine::SystemClock));
    let router = Router::new()
        .merge(as_function("auth", auth::router(auth::AuthState { platform: platform.clone(), signer: signer.clone(), providers: auth::Providers::new() })))
        .merge(as_function("admin", admin::router(admin.clone())))
        .merge(as_function("data", data::router(data.clone())))
        .merge(as_function("analytics", analytics::router(analytics::AnalyticsState { platform: platform.clone() })))
        .merge(as_function("reports", reports::router(reports::ReportsState { platform: platform.clone(), s3: clients.s3.clone() })))
        .merge(as_function("search", search::router(search.clone())))
        .merge(as_function("integrations", integrations::router(integrations.clone())))
        .merge(as_function("compliance", compliance::router(compliance::ComplianceState { platform: platform.clone(), clients: clients.clone() })))
        .merge(as_function("workflows", workflows::router(workflows::WorkflowsState { platform: platform.clone(), engine: workflows_engine.clone() })))
        .fallback(shared::http::not_found);
    let mut worker = jobs::Worker::new(config.clone(), sdk);
    // The workflows engine of this stack (its webhook policy, role cache).
    worker.workflows = workflows_engine.clone();
    let outbox = shared::domain::jobs::Outbox::new(clients.sqs.clone(), config.jobs_queue_url.clone());
    let streams = streams::Worker { store: platform.store.store().clone(), outbox: outbox.clone() };
    let sweeper = scheduler::outbox_sweep::Sweeper::new(platform.store.store().clone(), outbox);
    let webhooks = integrations::delivery::Worker {
        state: integrations.clone(),
        sqs: clients.sqs.clone(),
        queue_url: config.webhooks_queue_url.clone(),
        dlq_url: config.webhooks_dlq_url.clone(),
        clock: Arc::new(integrations::delivery::SystemClock),
    };
    let webhook_dispatcher = integrations::dispatch::Dispatcher {
        store: platform.store.store().clone(),
        sqs: clients.sqs.clone(),
        queue_url: config.webhooks_queue_url.clone(),
        clock: webhooks.clock.clone(),
    };
    let workflows_dispatcher = workflows::dispatch::Dispatcher { engine: workflows_engine, sqs: clients.sqs.clone(), queue_url: config.jobs_queue_url.clone() };
    let sealer = scheduler::Sealer::new(config, &clients);
    Ok(LocalApp {
        router,
        platform,
        clients,
        signer,
        worker,
        streams,
        admin,
        data,
        sealer,
        sweeper,
        search,
        indexer,
        search_dir,
        integrations,
        webhooks,
        webhook_dispatcher,
        workflows_dispatcher,
    })
}

/// Serve a function's router as that function: its metrics carry its name,
/// as they would from its own Lambda.
fn as_function(name: &'static str, router: Router) -> Router {
    router.layer(axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
        shared::platform::telemetry::as_function(name, next.run(request))
    }))
}
