//! What a Stripe event says, reduced to the facts orders are derived from.
//!
//! Every supported event is about one Stripe customer, and its fact is kept
//! under that customer (`STRIPECUSTOMER#<cus> / <kind>#<object id>`), the
//! latest state of each Stripe object winning by the event's `created`
//! (Stripe does not deliver in order). Facts hold amounts, dates and ids
//! only: no email, name or address, so erasure has nothing of the person
//! to remove here but the link to the user (`LINK`).
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
    pub customer: String,
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
        }
    }

    /// The `created` of the event that said it: a later event's fact
    /// replaces an earlier one's, never the reverse.
    pub fn event_created(&self) -> i64 {
        match self {
            Fact::Invoice(f) => f.event_created,
            Fact::Payment(f) => f.event_created,
            Fact::Refund(f) => f.event_created,
            Fact::Subscription(f) => f.event_created,
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
                return Ok(Some(Observed { customer, fact: None, identity }));
            }
            let total = int_at(o, &["amount_total"]).ok_or_else(|| unreadable("data.object.amount_total", "is required for a paid session"))?;
            let tax = int_at(o, &["total_details", "amount_tax"]).unwrap_or(0);
            Observed {
                customer,
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
                customer,
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
            customer: required_customer(o, "a charge")?,
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
            customer: required_customer(o, "a subscription")?,
            fact: Some(Fact::Subscription(SubscriptionFact {
                subscription_id: str_at(o, &["id"]).ok_or_else(|| unreadable("data.object.id", "is required"))?.to_string(),
                status: str_at(o, &["status"]).unwrap_or(if event.kind.ends_with("deleted") { "canceled" } else { "active" }).to_string(),
                ended_at: int_at(o, &["ended_at"]).and_then(time),
                event_created: created,
            })),
            identity: Identity { user_id: metadata_user(o), email: None },
        },
        _ => return Ok(None),
    };
    Ok(Some(observed))
}
