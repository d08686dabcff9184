//! What a Stripe event says, reduced to the facts orders are derived from.
//!
//! Every supported event is about one Stripe customer, and its fact is kept
//! under that customer (`STRIPECUSTOMER#<cus> / <kind>#<object id>`), the
//! latest state of each Stripe object winning by the event's `created`
//! (Stripe does not deliver in order). Facts hold amounts, dates and ids
//! only: no email, name or address, so erasure has nothing of the person
//! to remove here but the link to the user (`LINK`).
//!
//! A dispute is the one object that does not name its customer (Stripe's
//! dispute names only its charge and payment intent): its fact is found a
//! customer through the charges other facts named (`Fact::payment_ids`,
//! payments/mod.rs).
//!
//! Both the classic (`invoice.subscription`, `line.price.recurring`) and
//! the 2025 "basil" shapes (`invoice.parent.subscription_details`, lines
//! without a price object) are read; a line's billing interval falls back
//! to its period's length when no price says it.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The envelope of every Stripe event.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    #[serde(default)]
    pub livemode: bool,
    pub data: EventData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    pub object: Value,
}

/// Who the event says the customer is (to link the Stripe customer to a
/// Keel user the first time): `metadata.user_id` or `client_reference_id`,
/// else the email. Used once, never stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    pub user_id: Option<String>,
    pub email: Option<String>,
}

/// One fact, with the customer it is about; none when the event only says
/// who the customer is (a subscription-mode Checkout session: its money
/// arrives as `invoice.paid`).
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// None for a dispute, which names only its charge and payment intent:
    /// the customer is the one whose facts named them.
    pub customer: Option<String>,
    pub fact: Option<Fact>,
    pub identity: Identity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fact {
    /// A paid invoice: one paid term of a subscription (or a one-off
    /// invoice when no line recurs).
    Invoice(InvoiceFact),
    /// A one-off Checkout payment (mode `payment`).
    Payment(PaymentFact),
    /// The refunded amount of a charge so far.
    Refund(RefundFact),
    /// A subscription's state (its end, if it ended).
    Subscription(SubscriptionFact),
    /// A dispute (chargeback or inquiry) of a charge, in its latest state.
    Dispute(DisputeFact),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceFact {
    pub invoice_id: String,
    pub subscription_id: Option<String>,
    pub payment_intent: Option<String>,
    pub charge: Option<String>,
    /// After discounts, before tax, in the currency's minor unit.
    pub amount_cents: i64,
    pub currency: String,
    pub plan: Option<String>,
    /// `monthly` or `annual`; none for a one-off invoice.
    pub billing: Option<String>,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub paid_at: String,
    pub country: Option<String>,
    pub event_created: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentFact {
    pub session_id: String,
    pub payment_intent: Option<String>,
    pub amount_cents: i64,
    pub currency: String,
    pub paid_at: String,
    pub country: Option<String>,
    pub event_created: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundFact {
    pub charge_id: String,
    pub invoice_id: Option<String>,
    pub payment_intent: Option<String>,
    pub amount_refunded_cents: i64,
    /// The whole charge was refunded.
    pub full: bool,
    pub refunded_at: String,
    pub event_created: i64,
}

/// A dispute of a charge (`charge.dispute.created`, `.updated`, `.closed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisputeFact {
    pub dispute_id: String,
    pub charge_id: String,
    pub payment_intent: Option<String>,
    /// The disputed amount, in the currency's minor unit (tax included, as
    /// the charge was).
    pub amount_cents: i64,
    pub currency: String,
    /// Stripe's: `warning_needs_response`, `warning_under_review`,
    /// `warning_closed` (an inquiry), `needs_response`, `under_review`,
    /// `won`, `lost`, …
    pub status: String,
    pub reason: Option<String>,
    /// When the dispute was opened (its `created`).
    pub disputed_at: String,
    pub event_created: i64,
}

/// Dispute statuses that end a dispute without the money leaving through
/// it: the order is no longer disputed (`charge_refunded`, of older API
/// versions, closed it by a refund, which its `charge.refunded` says).
/// Every other status (open, an inquiry open, `lost`, or one Stripe adds
/// later) holds the order disputed.
pub const DISPUTE_RELEASED: [&str; 4] = ["won", "warning_closed", "prevented", "charge_refunded"];

impl DisputeFact {
    /// The dispute holds its order disputed: open, or lost.
    pub fn holds(&self) -> bool {
        !DISPUTE_RELEASED.contains(&self.status.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionFact {
    pub subscription_id: String,
    pub status: String,
    pub ended_at: Option<String>,
    pub event_created: i64,
}

impl Fact {
    /// The fact's sort key in the customer's partition.
    pub fn sort_key(&self) -> String {
        match self {
            Fact::Invoice(f) => format!("INVOICE#{}", f.invoice_id),
            Fact::Payment(f) => format!("PAYMENT#{}", f.session_id),
            Fact::Refund(f) => format!("REFUND#{}", f.charge_id),
            Fact::Subscription(f) => format!("SUB#{}", f.subscription_id),
            Fact::Dispute(f) => format!("DISPUTE#{}", f.dispute_id),
        }
    }

    /// The charge and payment intent ids the fact names: what a dispute,
    /// which names nothing else, is matched to its customer by.
    pub fn payment_ids(&self) -> Vec<&str> {
        let (charge, intent) = match self {
            Fact::Invoice(f) => (f.charge.as_deref(), f.payment_intent.as_deref()),
            Fact::Payment(f) => (None, f.payment_intent.as_deref()),
            Fact::Refund(f) => (Some(f.charge_id.as_str()), f.payment_intent.as_deref()),
            Fact::Dispute(f) => (Some(f.charge_id.as_str()), f.payment_intent.as_deref()),
            Fact::Subscription(_) => (None, None),
        };
        charge.into_iter().chain(intent).collect()
    }

    /// The `created` of the event that said it: a later event's fact
    /// replaces an earlier one's, never the reverse.
    pub fn event_created(&self) -> i64 {
        match self {
            Fact::Invoice(f) => f.event_created,
            Fact::Payment(f) => f.event_created,
            Fact::Refund(f) => f.event_created,
            Fact::Subscription(f) => f.event_created,
            Fact::Dispute(f) => f.event_created,
        }
    }
}

/// Why an event could not be read (a 400 naming the field).
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub field: String,
    pub message: String,
}

fn unreadable(field: &str, message: &str) -> Unreadable {
    Unreadable { field: field.to_string(), message: message.to_string() }
}

fn time(unix: i64) -> Option<String> {
    Utc.timestamp_opt(unix, 0).single().map(|t: DateTime<Utc>| shared::store::timestamp(t))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str().filter(|s| !s.is_empty())
}

fn int_at(v: &Value, path: &[&str]) -> Option<i64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_i64()
}

/// An expandable field: an id string, or the expanded object's `id`.
fn id_at(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn metadata_user(v: &Value) -> Option<String> {
    str_at(v, &["metadata", "user_id"]).map(str::to_string)
}

fn required_customer(object: &Value, what: &str) -> Result<String, Unreadable> {
    id_at(object, "customer").ok_or_else(|| unreadable("data.object.customer", &format!("{what} without a customer")))
}

/// A recurring line's billing: the price's interval when given, else the
/// period's length (a month is 28–31 days, a year 365 or 366).
fn billing_of(line: &Value) -> Option<&'static str> {
    let interval = str_at(line, &["price", "recurring", "interval"]).or_else(|| str_at(line, &["plan", "interval"]));
    let count = int_at(line, &["price", "recurring", "interval_count"]).or_else(|| int_at(line, &["plan", "interval_count"])).unwrap_or(1);
    match (interval, count) {
        (Some("month"), 1) => return Some("monthly"),
        (Some("year"), 1) => return Some("annual"),
        (Some(_), _) => return None,
        (None, _) => {}
    }
    if str_at(line, &["type"]) != Some("subscription") && str_at(line, &["parent", "type"]) != Some("subscription_item_details") {
        return None;
    }
    let days = (int_at(line, &["period", "end"])? - int_at(line, &["period", "start"])?) / 86_400;
    match days {
        28..=31 => Some("monthly"),
        365..=366 => Some("annual"),
        _ => None,
    }
}

fn plan_of(line: &Value) -> Option<String> {
    let price = line.get("price").or_else(|| line.get("plan"))?;
    str_at(price, &["lookup_key"])
        .or_else(|| str_at(price, &["metadata", "plan"]))
        .or_else(|| str_at(price, &["nickname"]))
        .or_else(|| str_at(price, &["id"]))
        .map(str::to_string)
}

/// Read a verified event. Ok(None) for a type Keel does not map (or a
/// Checkout session that paid nothing by itself: a subscription's first
/// invoice arrives as `invoice.paid`), which is acknowledged and kept only
/// as seen.
pub fn observe(event: &Event) -> Result<Option<Observed>, Unreadable> {
    let o = &event.data.object;
    let created = event.created;
    let at = |unix: Option<i64>| time(unix.unwrap_or(created)).ok_or_else(|| unreadable("created", "is not a valid instant"));
    let observed = match event.kind.as_str() {
        "checkout.session.completed" => {
            let identity = Identity {
                user_id: metadata_user(o).or_else(|| str_at(o, &["client_reference_id"]).map(str::to_string)),
                email: str_at(o, &["customer_details", "email"]).or_else(|| str_at(o, &["customer_email"])).map(str::to_string),
            };
            let session_id = str_at(o, &["id"]).ok_or_else(|| unreadable("data.object.id", "is required"))?.to_string();
            // A guest checkout has no customer: the session stands for one.
            let customer = id_at(o, "customer").unwrap_or_else(|| format!("guest_{session_id}"));
            if str_at(o, &["mode"]) != Some("payment") || str_at(o, &["payment_status"]) != Some("paid") {
                // Subscriptions are paid by invoices; only the link is news.
                return Ok(Some(Observed { customer: Some(customer), fact: None, identity }));
            }
            let total = int_at(o, &["amount_total"]).ok_or_else(|| unreadable("data.object.amount_total", "is required for a paid session"))?;
            let tax = int_at(o, &["total_details", "amount_tax"]).unwrap_or(0);
            Observed {
                customer: Some(customer),
                fact: Some(Fact::Payment(PaymentFact {
                    session_id,
                    payment_intent: id_at(o, "payment_intent"),
                    amount_cents: total - tax,
                    currency: str_at(o, &["currency"]).unwrap_or("usd").to_uppercase(),
                    paid_at: at(None)?,
                    country: str_at(o, &["customer_details", "address", "country"]).map(str::to_string),
                    event_created: created,
                })),
                identity,
            }
        }
        // Stripe sends both for a paid invoice (older integrations listen
        // to the second); they name the same invoice, so the same order.
        "invoice.paid" | "invoice.payment_succeeded" => {
            let customer = required_customer(o, "an invoice")?;
            let invoice_id = str_at(o, &["id"]).ok_or_else(|| unreadable("data.object.id", "is required"))?.to_string();
            let lines = o.pointer("/lines/data").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
            let recurring = lines.iter().find(|l| billing_of(l).is_some());
            let paid = int_at(o, &["amount_paid"]).ok_or_else(|| unreadable("data.object.amount_paid", "is required"))?;
            let amount_cents = int_at(o, &["total_excluding_tax"]).unwrap_or_else(|| paid - int_at(o, &["tax"]).unwrap_or(0));
            let subscription_id = id_at(o, "subscription").or_else(|| str_at(o, &["parent", "subscription_details", "subscription"]).map(str::to_string));
            let user_id = metadata_user(o)
                .or_else(|| o.get("subscription_details").and_then(metadata_user))
                .or_else(|| o.pointer("/parent/subscription_details").and_then(metadata_user))
                .or_else(|| recurring.and_then(metadata_user));
            let period = |key: &str| recurring.and_then(|l| int_at(l, &["period", key])).and_then(time);
            Observed {
                customer: Some(customer),
                fact: Some(Fact::Invoice(InvoiceFact {
                    invoice_id,
                    subscription_id,
                    payment_intent: id_at(o, "payment_intent"),
                    charge: id_at(o, "charge"),
                    amount_cents,
                    currency: str_at(o, &["currency"]).unwrap_or("usd").to_uppercase(),
                    plan: recurring.and_then(plan_of),
                    billing: recurring.and_then(billing_of).map(str::to_string),
                    period_start: period("start"),
                    period_end: period("end"),
                    paid_at: at(int_at(o, &["status_transitions", "paid_at"]))?,
                    country: str_at(o, &["customer_address", "country"]).map(str::to_string),
                    event_created: created,
                })),
                identity: Identity { user_id, email: str_at(o, &["customer_email"]).map(str::to_string) },
            }
        }
        "charge.refunded" => Observed {
            customer: Some(required_customer(o, "a charge")?),
            fact: Some(Fact::Refund(RefundFact {
                charge_id: str_at(o, &["id"]).ok_or_else(|| unreadable("data.object.id", "is required"))?.to_string(),
                invoice_id: id_at(o, "invoice"),
                payment_intent: id_at(o, "payment_intent"),
                amount_refunded_cents: int_at(o, &["amount_refunded"]).ok_or_else(|| unreadable("data.object.amount_refunded", "is required"))?,
                full: o.get("refunded").and_then(Value::as_bool).unwrap_or(false),
                refunded_at: at(None)?,
                event_created: created,
            })),
            identity: Identity { user_id: metadata_user(o), email: str_at(o, &["billing_details", "email"]).map(str::to_string) },
        },
        "customer.subscription.updated" | "customer.subscription.deleted" => Observed {
            customer: Some(required_customer(o, "a subscription")?),
            fact: Some(Fact::Subscription(SubscriptionFact {
                subscription_id: str_at(o, &["id"]).ok_or_else(|| unreadable("data.object.id", "is required"))?.to_string(),
                status: str_at(o, &["status"]).unwrap_or(if event.kind.ends_with("deleted") { "canceled" } else { "active" }).to_string(),
                ended_at: int_at(o, &["ended_at"]).and_then(time),
                event_created: created,
            })),
            identity: Identity { user_id: metadata_user(o), email: None },
        },
        // A dispute's object names no customer (an expanded charge does).
        "charge.dispute.created" | "charge.dispute.updated" | "charge.dispute.closed" => Observed {
            customer: o.get("charge").and_then(|c| id_at(c, "customer")).or_else(|| id_at(o, "customer")),
            fact: Some(Fact::Dispute(DisputeFact {
                dispute_id: str_at(o, &["id"]).ok_or_else(|| unreadable("data.object.id", "is required"))?.to_string(),
                charge_id: id_at(o, "charge").ok_or_else(|| unreadable("data.object.charge", "is required"))?,
                payment_intent: id_at(o, "payment_intent"),
                amount_cents: int_at(o, &["amount"]).ok_or_else(|| unreadable("data.object.amount", "is required"))?,
                currency: str_at(o, &["currency"]).unwrap_or("usd").to_uppercase(),
                status: str_at(o, &["status"]).ok_or_else(|| unreadable("data.object.status", "is required"))?.to_string(),
                reason: str_at(o, &["reason"]).map(str::to_string),
                disputed_at: at(int_at(o, &["created"]))?,
                event_created: created,
            })),
            identity: Identity::default(),
        },
        _ => return Ok(None),
    };
    Ok(Some(observed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dispute_event(id: &str, kind: &str, created: i64, status: &str, payment_intent: Value) -> Event {
        serde_json::from_value(json!({
            "id": id, "object": "event", "type": kind, "created": created, "livemode": false,
            "data": {"object": {
                "id": "dp_1", "object": "dispute", "amount": 3190, "currency": "eur", "charge": "ch_1", "payment_intent": payment_intent,
                "reason": "fraudulent", "status": status, "created": 1_767_225_600, "is_charge_refundable": false, "metadata": {}
            }}
        }))
        .unwrap()
    }

    #[test]
    fn dispute_events_are_one_fact_per_dispute_without_a_customer() {
        for kind in ["charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed"] {
            let observed = observe(&dispute_event("evt_1", kind, 1_767_300_000, "needs_response", json!("pi_1"))).unwrap().expect(kind);
            assert_eq!(observed.customer, None, "a dispute names only its charge");
            assert_eq!(observed.identity, Identity::default());
            let Some(Fact::Dispute(fact)) = &observed.fact else { panic!("{kind}: {:?}", observed.fact) };
            assert_eq!(
                fact,
                &DisputeFact {
                    dispute_id: "dp_1".into(),
                    charge_id: "ch_1".into(),
                    payment_intent: Some("pi_1".into()),
                    amount_cents: 3190,
                    currency: "EUR".into(),
                    status: "needs_response".into(),
                    reason: Some("fraudulent".into()),
                    disputed_at: "2026-01-01T00:00:00.000000Z".into(),
                    event_created: 1_767_300_000,
                }
            );
            let fact = observed.fact.unwrap();
            assert_eq!((fact.sort_key().as_str(), fact.event_created()), ("DISPUTE#dp_1", 1_767_300_000));
            assert_eq!(fact.payment_ids(), ["ch_1", "pi_1"]);
        }
        let without_intent = observe(&dispute_event("evt_2", "charge.dispute.closed", 1, "won", Value::Null)).unwrap().unwrap();
        assert_eq!(without_intent.fact.unwrap().payment_ids(), ["ch_1"]);
    }

    #[test]
    fn an_expanded_charge_names_the_disputes_customer() {
        let mut event = dispute_event("evt_1", "charge.dispute.created", 1, "needs_response", Value::Null);
        event.data.object["charge"] = json!({"id": "ch_1", "object": "charge", "customer": "cus_1"});
        let observed = observe(&event).unwrap().unwrap();
        assert_eq!(observed.customer.as_deref(), Some("cus_1"));
        assert!(matches!(observed.fact, Some(Fact::Dispute(DisputeFact { ref charge_id, .. })) if charge_id == "ch_1"));
    }

    #[test]
    fn a_dispute_without_its_charge_or_status_is_unreadable() {
        for field in ["charge", "status", "amount"] {
            let mut event = dispute_event("evt_1", "charge.dispute.created", 1, "needs_response", Value::Null);
            event.data.object.as_object_mut().unwrap().remove(field);
            assert_eq!(observe(&event).unwrap_err().field, format!("data.object.{field}"));
        }
    }

    #[test]
    fn released_disputes_do_not_hold_their_order() {
        let fact = |status: &str| DisputeFact {
            dispute_id: "dp_1".into(),
            charge_id: "ch_1".into(),
            payment_intent: None,
            amount_cents: 1,
            currency: "USD".into(),
            status: status.into(),
            reason: None,
            disputed_at: "2026-01-01T00:00:00Z".into(),
            event_created: 1,
        };
        for status in ["warning_needs_response", "warning_under_review", "needs_response", "under_review", "lost", "something_new"] {
            assert!(fact(status).holds(), "{status}");
        }
        for status in ["won", "warning_closed", "prevented", "charge_refunded"] {
            assert!(!fact(status).holds(), "{status}");
        }
    }
}
