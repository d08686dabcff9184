//! Keel's domain events, as the analytics connectors forward them: read
//! from the audit log (the record of every change, committed with it), so
//! a connector sees exactly what happened, once, in order.
//!
//! People are named by their audit pseudonym (stable per person, neither
//! their id nor their email): the analytics services hold no direct
//! identifier, and an erasure (which destroys the pseudonym's key) leaves
//! them nothing that leads back to the person.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use shared::platform::error::Result;
use shared::store::{Item, Store, attr_s};

/// What happened, in the words of each service's conventions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SignedUp,
    SignedIn,
    OrderCompleted,
    ChartCreated,
    ChartUpdated,
    ChartDeleted,
    ChartRestored,
    ChartFlagged,
}

impl Kind {
    /// The audit actions that are domain events (successful ones only).
    pub fn of_action(action: &str) -> Option<Kind> {
        Some(match action {
            "user.create" | "user.import" => Kind::SignedUp,
            "auth.login" => Kind::SignedIn,
            "order.created" => Kind::OrderCompleted,
            "chart.create" => Kind::ChartCreated,
            "chart.update" => Kind::ChartUpdated,
            "chart.delete" => Kind::ChartDeleted,
            "chart.restore" => Kind::ChartRestored,
            "chart.flag" => Kind::ChartFlagged,
            _ => return None,
        })
    }

    /// Segment's and Mixpanel's name (Segment's spec: "Object Action").
    pub fn title(self) -> &'static str {
        match self {
            Kind::SignedUp => "Signed Up",
            Kind::SignedIn => "Signed In",
            Kind::OrderCompleted => "Order Completed",
            Kind::ChartCreated => "Chart Created",
            Kind::ChartUpdated => "Chart Updated",
            Kind::ChartDeleted => "Chart Deleted",
            Kind::ChartRestored => "Chart Restored",
            Kind::ChartFlagged => "Chart Flagged",
        }
    }

    /// GA4's name: its recommended events where one fits.
    pub fn ga4_name(self) -> &'static str {
        match self {
            Kind::SignedUp => "sign_up",
            Kind::SignedIn => "login",
            Kind::OrderCompleted => "purchase",
            Kind::ChartCreated => "chart_create",
            Kind::ChartUpdated => "chart_update",
            Kind::ChartDeleted => "chart_delete",
            Kind::ChartRestored => "chart_restore",
            Kind::ChartFlagged => "chart_flag",
        }
    }
}

/// One domain event, from one audit entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainEvent {
    /// The audit entry's id: the dedup id every service gets
    /// (`messageId`, `$insert_id`), the same however often it is sent.
    pub id: String,
    pub at: DateTime<Utc>,
    pub kind: Kind,
    /// The person's pseudonym.
    pub person: String,
    /// What the event is about (`chart_id`, `order_id`, …).
    pub properties: Map<String, Value>,
}

/// A stored audit entry's sort key (`ts#id`): the connectors' position.
pub fn position(item: &Item) -> Option<&str> {
    attr_s(item, "sk")
}

fn nested<'a>(item: &'a Item, map: &str, key: &str) -> Option<&'a str> {
    item.get(map)?.as_m().ok()?.get(key)?.as_s().ok().map(String::as_str)
}

/// The domain event an audit item records, if it is one. Orders get their
/// amount from the order itself (`orders`): the entry's values are sealed
/// under the buyer's key.
pub fn from_audit(item: &Item, orders: &HashMap<String, Item>) -> Option<DomainEvent> {
    if attr_s(item, "outcome") != Some("success") {
        return None;
    }
    let kind = Kind::of_action(attr_s(item, "action")?)?;
    let id = attr_s(item, "id")?.to_string();
    let at = DateTime::parse_from_rfc3339(attr_s(item, "ts")?).ok()?.with_timezone(&Utc);
    let target = attr_s(item, "target_id")?.to_string();
    let pseudonym = |value: Option<&str>| value.filter(|v| shared::audit::pseudonyms::is_pseudonym(v)).map(str::to_string);
    let actor = pseudonym(nested(item, "actor", "id"));
    let mut properties = Map::new();
    let person = match kind {
        // The new person is the target (whoever created them).
        Kind::SignedUp => {
            properties.insert("source".into(), json!(if attr_s(item, "action") == Some("user.import") { "import" } else { "sign_up" }));
            pseudonym(Some(&target))
        }
        Kind::SignedIn => actor.or_else(|| pseudonym(Some(&target))),
        Kind::OrderCompleted => {
            let order = orders.get(&target)?;
            let cents = order.get("amount_cents").and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok()).unwrap_or(0);
            properties.insert("order_id".into(), json!(target));
            // The services take revenue in the currency's units.
            properties.insert("revenue".into(), json!(cents as f64 / 100.0));
            properties.insert("currency".into(), json!(attr_s(order, "currency").unwrap_or("USD")));
            for key in ["plan", "billing"] {
                if let Some(value) = attr_s(order, key) {
                    properties.insert(key.into(), json!(value));
                }
            }
            pseudonym(attr_s(item, "about"))
        }
        _ => {
            properties.insert("chart_id".into(), json!(target));
            actor
        }
    }?;
    Some(DomainEvent { id, at, kind, person, properties })
}

/// The order ids of `order.created` entries among `items`.
pub fn orders_named(items: &[Item]) -> Vec<String> {
    items.iter().filter(|i| attr_s(i, "action") == Some("order.created")).filter_map(|i| attr_s(i, "target_id").map(str::to_string)).collect()
}

/// The orders, by id (one BatchGetItem per 100).
pub async fn load_orders(store: &Store, ids: &[String]) -> Result<HashMap<String, Item>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let keys: Vec<_> = ids.iter().map(|id| (format!("ORDER#{id}"), "META".to_string())).collect();
    Ok(store.batch_get(&keys).await?.into_iter().filter_map(|item| Some((attr_s(&item, "id")?.to_string(), item))).collect())
}
