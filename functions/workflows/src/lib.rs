//! The workflows function: `/api/v1/workflows/*` (docs/workflows.md).
//! Definitions with immutable versions, runs executed step by step by the
//! jobs worker (`engine`), started by audit events (`dispatch`, its own
//! reader of the table's stream), schedules (`tick`), signed inbound
//! webhooks and by hand.

pub mod definition;
pub mod dispatch;
pub mod engine;
pub mod expr;
pub mod model;
pub mod routes;
pub mod tick;

use axum::Router;
use axum::http::Method;
use axum::routing::{get, post};
use shared::http::{Access, BearerAuth, Platform, Route};
use shared::identity::rbac::Permission;

#[derive(Clone)]
pub struct WorkflowsState {
    pub platform: Platform,
    /// Dry runs walk a definition with the engine in its dry mode.
    pub engine: engine::Engine,
}

/// Every route and who may call it: reading needs `workflows:read`,
/// defining and running `workflows:write`.
pub static ROUTES: &[Route] = &[
    Route::new(Method::GET, "/api/v1/workflows", Access::Permission(Permission::WorkflowsRead)),
    Route::new(Method::POST, "/api/v1/workflows", Access::Permission(Permission::WorkflowsWrite)),
    Route::new(Method::POST, "/api/v1/workflows/validate", Access::Permission(Permission::WorkflowsWrite)),
    Route::new(Method::GET, "/api/v1/workflows/templates", Access::Permission(Permission::WorkflowsRead)),
    Route::new(Method::POST, "/api/v1/workflows/from-template", Access::Permission(Permission::WorkflowsWrite)),
    // Signed with the workflow's secret instead (Standard Webhooks).
    Route::new(Method::POST, "/api/v1/workflows/{id}/hooks", Access::Public),
    Route::new(Method::GET, "/api/v1/workflows/{id}", Access::Permission(Permission::WorkflowsRead)),
    Route::new(Method::PUT, "/api/v1/workflows/{id}", Access::Permission(Permission::WorkflowsWrite)),
    Route::new(Method::DELETE, "/api/v1/workflows/{id}", Access::Permission(Permission::WorkflowsWrite)),
    Route::new(Method::GET, "/api/v1/workflows/{id}/versions", Access::Permission(Permission::WorkflowsRead)),
    Route::new(Method::GET, "/api/v1/workflows/{id}/versions/{from}/diff/{to}", Access::Permission(Permission::WorkflowsRead)),
    Route::new(Method::POST, "/api/v1/workflows/{id}/rollback", Access::Permission(Permission::WorkflowsWrite)),
    Route::new(Method::POST, "/api/v1/workflows/{id}/enable", Access::Permission(Permission::WorkflowsWrite)),
    Route::new(Method::POST, "/api/v1/workflows/{id}/disable", Access::Permission(Permission::WorkflowsWrite)),
    Route::new(Method::POST, "/api/v1/workflows/{id}/dry-run", Access::Permission(Permission::WorkflowsWrite)),
    Route::new(Method::GET, "/api/v1/workflows/{id}/analytics", Access::Permission(Permission::WorkflowsRead)),
    Route::new(Method::GET, "/api/v1/workflows/{id}/runs", Access::Permission(Permission::WorkflowsRead)),
    Route::new(Method::POST, "/api/v1/workflows/{id}/runs", Access::Permission(Permission::WorkflowsWrite)),
    Route::new(Method::GET, "/api/v1/workflows/{id}/runs/{run_id}", Access::Permission(Permission::WorkflowsRead)),
    Route::new(Method::POST, "/api/v1/workflows/{id}/runs/{run_id}/cancel", Access::Permission(Permission::WorkflowsWrite)),
    Route::new(Method::POST, "/api/v1/workflows/{id}/runs/{run_id}/retry", Access::Permission(Permission::WorkflowsWrite)),
];

pub fn router(state: WorkflowsState) -> Router {
    use routes::{hooks, runs, templates, workflows};
    let platform = state.platform.clone();
    let routes = Router::new()
        .route("/api/v1/workflows", get(workflows::list).post(workflows::create))
        .route("/api/v1/workflows/validate", post(workflows::validate))
        .route("/api/v1/workflows/templates", get(templates::list))
        .route("/api/v1/workflows/from-template", post(templates::create))
        .route("/api/v1/workflows/{id}/hooks", post(hooks::receive))
        .route("/api/v1/workflows/{id}", get(workflows::get).put(workflows::update).delete(workflows::delete))
        .route("/api/v1/workflows/{id}/versions", get(workflows::versions))
        .route("/api/v1/workflows/{id}/versions/{from}/diff/{to}", get(workflows::diff))
        .route("/api/v1/workflows/{id}/rollback", post(workflows::rollback))
        .route("/api/v1/workflows/{id}/enable", post(workflows::enable))
        .route("/api/v1/workflows/{id}/disable", post(workflows::disable))
        .route("/api/v1/workflows/{id}/dry-run", post(runs::dry_run))
        .route("/api/v1/workflows/{id}/analytics", get(runs::analytics))
        .route("/api/v1/workflows/{id}/runs", get(runs::list).post(runs::start))
        .route("/api/v1/workflows/{id}/runs/{run_id}", get(runs::get))
        .route("/api/v1/workflows/{id}/runs/{run_id}/cancel", post(runs::cancel))
        .route("/api/v1/workflows/{id}/runs/{run_id}/retry", post(runs::retry))
        .with_state(state);
    shared::http::secure(routes, &platform, ROUTES)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        routes::workflows::create,
        routes::workflows::list,
        routes::workflows::get,
        routes::workflows::update,
        routes::workflows::versions,
        routes::workflows::diff,
        routes::workflows::rollback,
        routes::workflows::enable,
        routes::workflows::delete,
        routes::workflows::disable,
        routes::workflows::validate,
        routes::runs::start,
        routes::runs::list,
        routes::runs::get,
        routes::runs::cancel,
        routes::runs::retry,
        routes::runs::dry_run,
        routes::runs::analytics,
        routes::templates::list,
        routes::templates::create,
        routes::hooks::receive
    ),
    components(schemas(
        definition::Definition,
        definition::Trigger,
        definition::Step,
        definition::StepType,
        definition::RetryPolicy,
        definition::RetryOn,
        model::Workflow,
        model::Version,
        model::Run,
        model::RunStatus,
        model::StepExecution,
        model::StepStatus,
        engine::DryRun,
        engine::DryRunStep,
        routes::workflows::WorkflowView,
        routes::workflows::WorkflowList,
        routes::workflows::VersionList,
        routes::workflows::Validation,
        routes::workflows::RollbackRequest,
        routes::workflows::VersionDiff,
        routes::workflows::Change,
        routes::runs::RunRequest,
        routes::runs::RunList,
        routes::runs::DryRunRequest,
        routes::runs::Target,
        routes::runs::WorkflowAnalytics,
        routes::runs::StepFigures,
        routes::templates::Template,
        routes::templates::TemplateList,
        routes::templates::FromTemplate,
        routes::hooks::HookAccepted,
        shared::platform::error::Problem,
        shared::platform::error::FieldError
    )),
    modifiers(&BearerAuth, &ERROR_RESPONSES)
)]
pub struct ApiDoc;

static ERROR_RESPONSES: shared::http::openapi::ErrorResponses = shared::http::openapi::ErrorResponses(ROUTES);

/// The engine as every process builds it from its configuration.
pub fn engine(
    platform: &Platform,
    ses: aws_sdk_sesv2::Client,
    webhook_policy: integrations::ssrf::Policy,
    clock: std::sync::Arc<dyn engine::Clock>,
) -> engine::Engine {
    engine::Engine { store: platform.store.clone(), roles: platform.roles.clone(), ses, email_from: platform.config.email_from.clone(), webhook_policy, clock }
}

/// What every workflows binary builds at a cold start: the platform (table,
/// keys, role cache), the AWS clients and the engine on the system clock.
pub async fn from_env() -> Result<(Platform, shared::platform::aws::Clients, engine::Engine), lambda_http::Error> {
    let sdk = shared::platform::aws::sdk_config();
    let clients = shared::platform::aws::Clients::from_env();
    let platform = Platform::with_clients(clients.dynamo.clone(), clients.kms.clone()).await?;
    let policy = integrations::ssrf::Policy::from_lookup(|name| std::env::var(name).ok());
    let engine = engine(&platform, aws_sdk_sesv2::Client::new(&sdk), policy, std::sync::Arc::new(engine::SystemClock));
    Ok((platform, clients, engine))
}

/// The dispatcher (and the tick, which shares its engine, queue and
/// client) as a cold start builds it.
pub async fn dispatcher_from_env() -> Result<dispatch::Dispatcher, lambda_http::Error> {
    let (platform, clients, engine) = from_env().await?;
    Ok(dispatch::Dispatcher { engine, sqs: clients.sqs.clone(), queue_url: platform.config.jobs_queue_url.clone() })
}
