//! The integrations function: `/api/v1/integrations/*` (docs/integrations.md).
//! Outgoing webhooks (Standard Webhooks): endpoints and their secrets
//! (`webhooks`), signatures (`signing`), the SSRF guard every target URL
//! passes (`ssrf`), deliveries from audit entries through the table stream
//! (`dispatch`, its own stream consumer) to the webhooks queue and its
//! worker (`delivery`), and the deliveries log with replays (`deliveries`).
//! Payments: Stripe's signed events to Keel's orders (`payments`). The
//! hub: the catalogue, credentials and connection tests (`hub`). Analytics
//! connectors: domain events to Segment, Mixpanel and GA4 (`connectors`).
//! Calendar sync: a user's renewals and scheduled reports as a private ICS
//! feed or two-way with a CalDAV calendar (`calendar`).
//! Social
//! sharing: share intents, short links with cards, clicks (`social`).
//! Email marketing: double opt-in, one-click unsubscribe, campaigns (`marketing`).

pub mod calendar;
pub mod connectors;
pub mod deliveries;
pub mod delivery;
pub mod dispatch;
pub mod hub;
pub mod marketing;
pub mod payments;
pub mod signing;
pub mod social;
pub mod ssrf;
pub mod webhooks;

use axum::Router;
use axum::http::Method;
use axum::routing::{get, post};
use shared::http::{Access, BearerAuth, Platform, Route};
use shared::identity::rbac::Permission;

#[derive(Clone)]
pub struct IntegrationsState {
    pub platform: Platform,
    /// What webhook targets may be (`KEEL_WEBHOOKS_ALLOW_LOOPBACK`).
    pub webhook_policy: ssrf::Policy,
    /// Stripe's webhook signing secret (`KEEL_STRIPE_WEBHOOK_SECRET`);
    /// none: the Stripe endpoint answers that it is not configured.
    pub stripe_webhook_secret: Option<payments::signature::StripeSecret>,
    /// Webhook secrets this instance has opened, by their sealed form.
    pub opened_secrets: webhooks::OpenedSecrets,
}

/// Every route of this function and who may call it. Webhook endpoints
/// receive audit events, so reading them is `integrations:read` and
/// changing them (which decides where events go) `integrations:write`.
pub static ROUTES: &[Route] = &[
    Route::new(Method::POST, "/api/v1/integrations/webhooks", Access::Permission(Permission::IntegrationsWrite)),
    Route::new(Method::GET, "/api/v1/integrations/webhooks", Access::Permission(Permission::IntegrationsRead)),
    Route::new(Method::GET, "/api/v1/integrations/webhooks/{id}", Access::Permission(Permission::IntegrationsRead)),
    Route::new(Method::PUT, "/api/v1/integrations/webhooks/{id}", Access::Permission(Permission::IntegrationsWrite)),
    Route::new(Method::DELETE, "/api/v1/integrations/webhooks/{id}", Access::Permission(Permission::IntegrationsWrite)),
    Route::new(Method::POST, "/api/v1/integrations/webhooks/{id}/rotate-secret", Access::Permission(Permission::IntegrationsWrite)),
    Route::new(Method::GET, "/api/v1/integrations/webhooks/{id}/deliveries", Access::Permission(Permission::IntegrationsRead)),
    Route::new(Method::POST, "/api/v1/integrations/webhooks/deliveries/{id}/replay", Access::Permission(Permission::IntegrationsWrite)),
    Route::new(Method::GET, "/api/v1/integrations/available", Access::Permission(Permission::IntegrationsRead)),
    Route::new(Method::PUT, "/api/v1/integrations/{name}/config", Access::Permission(Permission::IntegrationsWrite)),
    Route::new(Method::POST, "/api/v1/integrations/{name}/test", Access::Permission(Permission::IntegrationsWrite)),
    // Calendar sync: a signed-in user syncs their own events only (the
    // handlers read the caller's orders and schedules, never a path id).
    Route::new(Method::POST, "/api/v1/integrations/calendar/sync", Access::Authenticated),
    Route::new(Method::DELETE, "/api/v1/integrations/calendar/feeds", Access::Authenticated),
    Route::new(Method::DELETE, "/api/v1/integrations/calendar/caldav", Access::Authenticated),
    // Calendar apps fetch the feed without a sign-in: the unguessable
    // token in the path is the credential.
    Route::new(Method::GET, "/api/v1/integrations/calendar/feeds/{token}", Access::Public),
    // Stripe signs its events with the endpoint's secret: the signature,
    // checked first, is the authentication.
    Route::new(Method::POST, "/api/v1/integrations/payments/stripe/webhook", Access::Public),
    // Anyone signed in may share a public chart (its page is public anyway);
    // the short link is what the shared post points at, so anyone may
    // follow it. Click counts are about charts: `charts:read`.
    Route::new(Method::POST, "/api/v1/integrations/social/share", Access::Authenticated),
    Route::new(Method::GET, "/api/v1/integrations/social/s/{token}", Access::Public),
    Route::new(Method::GET, "/api/v1/integrations/social/stats", Access::Permission(Permission::ChartsRead)),
    // Email marketing: anyone may subscribe (rate limited, same answer
    // whatever the address), and confirm or unsubscribe with the token
    // their email carries. Looking a person up shows their address: PII.
    // A campaign emails people on Keel's behalf: `integrations:write`.
    Route::new(Method::POST, "/api/v1/integrations/marketing/subscribe", Access::Public),
    Route::new(Method::GET, "/api/v1/integrations/marketing/confirm/{token}", Access::Public),
    Route::new(Method::POST, "/api/v1/integrations/marketing/confirm/{token}", Access::Public),
    Route::new(Method::POST, "/api/v1/integrations/marketing/unsubscribe/{token}", Access::Public),
    Route::new(Method::GET, "/api/v1/integrations/marketing/subscribers", Access::Permission(Permission::PiiRead)),
    Route::new(Method::POST, "/api/v1/integrations/marketing/campaigns", Access::Permission(Permission::IntegrationsWrite)),
];

pub fn router(state: IntegrationsState) -> Router {
    let platform = state.platform.clone();
    let routes = Router::new()
        .route("/api/v1/integrations/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/api/v1/integrations/webhooks/{id}", get(webhooks::read).put(webhooks::update).delete(webhooks::delete))
        .route("/api/v1/integrations/webhooks/{id}/rotate-secret", post(webhooks::rotate_secret))
        .route("/api/v1/integrations/webhooks/{id}/deliveries", get(deliveries::list))
        .route("/api/v1/integrations/webhooks/deliveries/{id}/replay", post(deliveries::replay))
        .route("/api/v1/integrations/payments/stripe/webhook", post(payments::stripe_webhook))
        .route("/api/v1/integrations/calendar/sync", post(calendar::sync_now))
        .route("/api/v1/integrations/calendar/feeds", axum::routing::delete(calendar::feeds::revoke))
        .route("/api/v1/integrations/calendar/feeds/{token}", get(calendar::feeds::read))
        .route("/api/v1/integrations/calendar/caldav", axum::routing::delete(calendar::disconnect))
        .route("/api/v1/integrations/available", get(hub::available))
        .route("/api/v1/integrations/{name}/config", axum::routing::put(hub::configure))
        .route("/api/v1/integrations/{name}/test", post(hub::test))
        .route("/api/v1/integrations/social/share", post(social::share))
        .route("/api/v1/integrations/social/s/{token}", get(social::follow))
        .route("/api/v1/integrations/social/stats", get(social::stats))
        .route("/api/v1/integrations/marketing/subscribe", post(marketing::subscriptions::subscribe))
        .route("/api/v1/integrations/marketing/confirm/{token}", get(marketing::subscriptions::confirm_page).post(marketing::subscriptions::confirm))
        .route("/api/v1/integrations/marketing/unsubscribe/{token}", post(marketing::subscriptions::unsubscribe))
        .route("/api/v1/integrations/marketing/subscribers", get(marketing::subscriptions::lookup))
        .route("/api/v1/integrations/marketing/campaigns", post(marketing::campaigns::create))
        .with_state(state);
    shared::http::secure(routes, &platform, ROUTES)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(webhooks::create, webhooks::list, webhooks::read, webhooks::update, webhooks::delete, webhooks::rotate_secret, deliveries::list, deliveries::replay, payments::stripe_webhook, hub::available, hub::configure, hub::test, calendar::sync_now, calendar::feeds::read, calendar::feeds::revoke, calendar::disconnect, social::share, social::follow, social::stats, marketing::subscriptions::subscribe, marketing::subscriptions::confirm_page, marketing::subscriptions::confirm, marketing::subscriptions::unsubscribe, marketing::subscriptions::lookup, marketing::campaigns::create),
    components(schemas(payments::Receipt, hub::Catalogue, hub::Available, hub::Field, hub::Status, hub::ConfigView, hub::ConfigRequest, hub::TestResult, shared::domain::integration_health::IntegrationHealth, calendar::SyncRequest, calendar::Credentials, calendar::SyncResult, calendar::feeds::Issued, calendar::feeds::Feed, calendar::sync::Connection, calendar::sync::Summary, calendar::events::EventSource, social::Network, social::ShareRequest, social::Share, social::ShareStats, social::NetworkClicks, marketing::subscriptions::SubscribeRequest, marketing::subscriptions::SubscribeAccepted, marketing::subscriptions::SubscriptionState, marketing::subscriptions::SubscriberView, marketing::subscriptions::SuppressionView, marketing::campaigns::CampaignRequest, marketing::campaigns::CampaignAccepted, shared::domain::marketing::Subscriber, shared::domain::marketing::SubscriberStatus, shared::platform::error::Problem, shared::platform::error::FieldError)),
    modifiers(&BearerAuth, &ERROR_RESPONSES)
)]
pub struct ApiDoc;

/// The errors every route can answer, from the route table (`shared::http::openapi`).
static ERROR_RESPONSES: shared::http::openapi::ErrorResponses = shared::http::openapi::ErrorResponses(ROUTES);
