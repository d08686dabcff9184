//! The deliveries log and replays: `GET /api/v1/integrations/webhooks/{id}/deliveries`
//! (each delivery with its attempts: status, latency, response snippet)
//! and `POST /api/v1/integrations/webhooks/deliveries/{id}/replay`, which
//! delivers the same message (same `webhook-id`, so receivers can tell) as
//! a new delivery with a fresh schedule, sent through the outbox.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use shared::audit::AuditEntry;
use shared::http::Caller;
use shared::http::extract::PathId;
use shared::platform::error::{Error, Result};
use shared::store::Write;
use utoipa::ToSchema;

use crate::IntegrationsState;
use crate::delivery::{self, Delivery};
use crate::webhooks::WebhookId;

/// The newest deliveries a listing shows.
pub const LIST_LIMIT: i32 = 100;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = WebhookDeliveryList)]
pub struct DeliveryList {
    /// Newest first, at most 100.
    pub deliveries: Vec<Delivery>,
}

#[utoipa::path(get, path = "/api/v1/integrations/webhooks/{id}/deliveries", tag = "integrations", params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, description = "The endpoint's newest deliveries with their attempts", body = DeliveryList)))]
pub async fn list(State(state): State<IntegrationsState>, PathId(id): PathId<WebhookId>) -> Result<Json<DeliveryList>> {
    let store = state.platform.store.store();
    // A deleted endpoint's log is gone with it (its deliveries expire).
    if store.get_item(&crate::webhooks::pk(id.as_str()), "META").await?.is_none() {
        return Err(Error::NotFound(format!("no webhook {}", id.as_str())));
    }
    Ok(Json(DeliveryList { deliveries: delivery::of_endpoint(store, id.as_str(), LIST_LIMIT).await? }))
}

/// A delivery id (UUID) in a path.
pub struct DeliveryId(String);

impl shared::store::ids::Id for DeliveryId {
    const WHAT: &'static str = "delivery";
    fn parse(value: &str) -> Option<Self> {
        uuid::Uuid::try_parse(value).ok().map(|_| DeliveryId(value.to_string()))
    }
}

#[utoipa::path(post, path = "/api/v1/integrations/webhooks/deliveries/{id}/replay", tag = "integrations", params(("id" = String, Path, description = "Delivery id")),
    responses((status = 202, description = "A new delivery of the same message, queued", body = Delivery)))]
pub async fn replay(
    State(state): State<IntegrationsState>,
    caller: Caller,
    PathId(DeliveryId(id)): PathId<DeliveryId>,
) -> Result<(StatusCode, Json<Delivery>)> {
    let store = &state.platform.store;
    let original = delivery::get(store.store(), &id).await?.ok_or_else(|| Error::NotFound(format!("no delivery {id}")))?;
    let endpoint_exists = store.get_item(&crate::webhooks::pk(&original.endpoint_id), "META").await?.is_some();
    if !endpoint_exists {
        return Err(Error::NotFound(format!("no delivery {id}")));
    }
    let mut replayed =
        Delivery::new(uuid::Uuid::now_v7().to_string(), &original.endpoint_id, &original.event_type, original.payload.clone(), chrono::Utc::now());
    // The same message: receivers deduplicate on `webhook-id`.
    replayed.msg_id = original.msg_id.clone();
    replayed.replay_of = Some(original.id.clone());
    let audit = AuditEntry::new(&caller.actor(), "webhook.delivery_replayed", "webhook", &original.endpoint_id);
    store.commit(vec![Write::put_new(store.table(), replayed.to_item()?, Error::Conflict("delivery exists".into()))?], &audit).await?;
    Ok((StatusCode::ACCEPTED, Json(replayed)))
}
