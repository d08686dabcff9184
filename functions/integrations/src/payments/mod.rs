//! Payments: `POST /api/v1/integrations/payments/stripe/webhook`, Stripe's
//! events turned into Keel's orders (docs/integrations.md, "Payments").
//!
//! 1. The signature is checked (`signature`) before anything is read.
//! 2. The event id is recorded once (`STRIPEEVENT#<id> / META`, a
//!    conditional put): a second delivery is answered `duplicate: true`
//!    but still goes through the steps below, all idempotent, so a
//!    delivery that failed half-way is finished by Stripe's retry.
//! 3. Its fact (`facts`) is kept under the customer
//!    (`STRIPECUSTOMER#<cus> / <kind>#<id>`), a later event's replacing an
//!    earlier one's; the customer's `STATE` version is then bumped.
//!    The charges and payment intents a fact names are recorded as the
//!    customer's (`STRIPECHARGE#<ch_…|pi_…> / CUSTOMER`): a dispute names
//!    only those, and finds its customer there. A dispute whose charge no
//!    fact has named yet is kept under the charge (and payment intent),
//!    `STRIPECHARGE#<id> / DISPUTE#<dp_…>`, until a fact naming it brings
//!    it to its customer. (It is kept there before its customer is looked
//!    up, and the customer recorded before disputes are looked for, so of
//!    two such events at once one always sees the other.)
//! 4. The customer is linked to a Keel user once (`LINK`, gsi1
//!    `USER#<id>`): by `metadata.user_id` or `client_reference_id` naming
//!    an existing user, else by the email. Unlinked customers' facts wait
//!    for the event that links them.
//! 5. The customer's orders are derived from all its facts (`ledger`) and
//!    the ones that differ from what is stored are written, each with its
//!    audit entry (`order.created` / `order.updated`, actor `system:stripe`),
//!    in one transaction conditioned on the `STATE` version read: a
//!    concurrent event's fact makes it retry with that fact included.
//!    Orders are never deleted here (an erased person's orders are kept,
//!    anonymized, and left alone).

pub mod facts;
pub mod ledger;
pub mod signature;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;
use shared::audit::{Actor, AuditEntry};
use shared::domain::integration_health;
use shared::identity::users::{self, Email};
use shared::platform::error::{Error, Result};
use shared::store::{Condition, Item, QuerySpec, Transacted, UpdateSpec, Write, attr_s, from_item, n, s, timestamp, to_item};
use utoipa::ToSchema;

use crate::IntegrationsState;
use facts::{Fact, Observed};
use ledger::{Facts, LedgerOrder};

/// Stripe's events are at most a few hundred KB.
pub const MAX_BODY_BYTES: usize = 512 * 1024;
/// How long an event id is remembered: longer than Stripe retries (3 days).
const EVENT_TTL_DAYS: i64 = 35;
/// Attempts at writing a customer's orders while other events for the
/// same customer keep landing.
const MAX_RECOMPUTES: usize = 8;

pub fn customer_pk(customer: &str) -> String {
    format!("STRIPECUSTOMER#{customer}")
}

/// What Keel did with an event.
#[derive(Debug, Serialize, ToSchema)]
pub struct Receipt {
    pub received: bool,
    pub event_id: String,
    /// This event id was received before (its effects are re-applied,
    /// idempotently, in case the first delivery stopped half-way).
    pub duplicate: bool,
    /// Whether Keel maps this event type (others are acknowledged).
    pub handled: bool,
    /// The Keel user the Stripe customer is linked to, once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Orders created or changed by this event.
    pub orders_changed: Vec<String>,
}

/// Receive a Stripe event (signed with the endpoint's signing secret).
#[utoipa::path(
    post,
    path = "/api/v1/integrations/payments/stripe/webhook",
    tag = "integrations",
    request_body(content = serde_json::Value, description = "A Stripe event, exactly as Stripe sent it", content_type = "application/json"),
    params(("Stripe-Signature" = String, Header, description = "t=<unix time>,v1=<hex HMAC-SHA256 of `t.body`>")),
    responses(
        (status = 200, description = "Received (new, duplicate, or of a type Keel does not map)", body = Receipt),
        (status = 400, description = "Bad signature, stale timestamp, or an unreadable event", body = shared::platform::error::Problem),
        (status = 404, description = "No Stripe signing secret is configured", body = shared::platform::error::Problem),
    )
)]
pub async fn stripe_webhook(State(state): State<IntegrationsState>, headers: HeaderMap, body: Bytes) -> Result<Json<Receipt>> {
    let Some(secret) = &state.stripe_webhook_secret else {
        return Err(Error::NotFound("Stripe is not configured: set the StripeWebhookSecret parameter (docs/integrations.md)".into()));
    };
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge { limit: MAX_BODY_BYTES });
    }
    let header = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now();
    let outcome = async {
        signature::verify(secret, header, &body, now).map_err(|e| Error::field("Stripe-Signature", e.to_string()))?;
        let event: facts::Event = serde_json::from_slice(&body).map_err(|e| Error::field("body", format!("is not a Stripe event: {e}")))?;
        receive(&state, &event, now).await
    }
    .await;
    // The hub's health: a wrong signing secret is the usual way this
    // integration breaks, so refused signatures count as failures too.
    let health = match &outcome {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("an event was refused: {e}")),
    };
    integration_health::record(state.platform.store.store(), "stripe", health, now).await?;
    outcome.map(Json)
}

/// Apply a verified event (steps 2–5 above).
pub async fn receive(state: &IntegrationsState, event: &facts::Event, now: chrono::DateTime<chrono::Utc>) -> Result<Receipt> {
    let store = &state.platform.store;
    let observed = facts::observe(event).map_err(|u| Error::field(u.field, u.message))?;
    let duplicate = !remember_event(state, event, observed.is_some(), now).await?;
    let mut receipt = Receipt { received: true, event_id: event.id.clone(), duplicate, handled: observed.is_some(), user_id: None, orders_changed: Vec::new() };
    let Some(Observed { customer, fact, identity }) = observed else {
        return Ok(receipt);
    };
    let customer = match (customer, &fact) {
        (Some(customer), _) => customer,
        (None, Some(fact)) => match customer_of_payment(state, fact).await? {
            Some(customer) => customer,
            // Kept under its charge until a fact names the charge.
            None => return Ok(receipt),
        },
        (None, None) => return Ok(receipt),
    };
    let pk = customer_pk(&customer);
    if let Some(fact) = &fact {
        keep_fact(state, &pk, fact).await?;
        record_payments(state, &pk, &customer, fact).await?;
    }
    let linked = match link_of(store, &pk).await? {
        Some(user_id) => Some(user_id),
        None => link(state, &pk, &customer, &identity).await?,
    };
    // Every fact write bumps the version after it, so a recompute that
    // read an older version retries and sees it.
    store
        .update(
            &pk,
            "STATE",
            &UpdateSpec::new("ADD version :one SET #type = :type").name("#type", "type").value(":one", n(1)).value(":type", s("stripe_customer_state")),
        )
        .await?;
    if let Some(user_id) = linked {
        receipt.orders_changed = recompute(state, &customer, &user_id).await?;
        receipt.user_id = Some(user_id);
    }
    Ok(receipt)
}

/// Record the event id; false when it was already recorded.
async fn remember_event(state: &IntegrationsState, event: &facts::Event, handled: bool, now: chrono::DateTime<chrono::Utc>) -> Result<bool> {
    let item = Item::from([
        ("pk".to_string(), s(format!("STRIPEEVENT#{}", event.id))),
        ("sk".to_string(), s("META")),
        ("type".to_string(), s("stripe_event")),
        ("event_type".to_string(), s(event.kind.clone())),
        ("event_created".to_string(), n(event.created)),
        ("livemode".to_string(), aws_sdk_dynamodb::types::AttributeValue::Bool(event.livemode)),
        ("handled".to_string(), aws_sdk_dynamodb::types::AttributeValue::Bool(handled)),
        ("received_at".to_string(), s(timestamp(now))),
        ("ttl".to_string(), n((now + chrono::Duration::days(EVENT_TTL_DAYS)).timestamp())),
    ]);
    state.platform.store.put_new(item).await
}

/// Keep a fact unless a later event already said more about its object.
async fn keep_fact(state: &IntegrationsState, pk: &str, fact: &Fact) -> Result<()> {
    let mut item = to_item(fact)?;
    item.insert("pk".into(), s(pk));
    item.insert("sk".into(), s(fact.sort_key()));
    item.insert("type".into(), s("stripe_fact"));
    item.insert("event_created".into(), n(fact.event_created()));
    let newer = Condition {
        expression: "attribute_not_exists(pk) OR event_created <= :created",
        values: vec![(":created", n(fact.event_created()))],
        ..Default::default()
    };
    // A false outcome is an older event arriving late: nothing to keep.
    state.platform.store.put_if(item, &newer).await?;
    Ok(())
}

pub fn charge_pk(charge_or_payment_intent: &str) -> String {
    format!("STRIPECHARGE#{charge_or_payment_intent}")
}

/// The customer a fact naming no customer (a dispute) is about: the one
/// recorded for its charge or payment intent. The fact is first kept under
/// each of them, for a fact naming them later to bring to the customer.
async fn customer_of_payment(state: &IntegrationsState, fact: &Fact) -> Result<Option<String>> {
    for id in fact.payment_ids() {
        keep_fact(state, &charge_pk(id), fact).await?;
    }
    for id in fact.payment_ids() {
        if let Some(item) = state.platform.store.get_item(&charge_pk(id), "CUSTOMER").await?
            && let Some(customer) = attr_s(&item, "stripe_customer_id")
        {
            return Ok(Some(customer.to_string()));
        }
    }
    Ok(None)
}

/// Record the customer's charges and payment intents the fact names, and
/// bring the disputes kept under them (their customer unknown then) to the
/// customer.
async fn record_payments(state: &IntegrationsState, pk: &str, customer: &str, fact: &Fact) -> Result<()> {
    let store = &state.platform.store;
    for id in fact.payment_ids() {
        let charge = charge_pk(id);
        let item = Item::from([
            ("pk".to_string(), s(&charge)),
            ("sk".to_string(), s("CUSTOMER")),
            ("type".to_string(), s("stripe_charge")),
            ("stripe_customer_id".to_string(), s(customer)),
        ]);
        // A charge is one customer's: the first record stands.
        store.put_new(item).await?;
        let spec = QuerySpec {
            key_condition: "pk = :pk AND begins_with(sk, :disputes)",
            values: vec![(":pk", s(&charge)), (":disputes", s("DISPUTE#"))],
            forward: true,
            consistent: true,
            ..Default::default()
        };
        for item in store.query_all(&spec).await? {
            keep_fact(state, pk, &from_item::<Fact>(item)?).await?;
        }
    }
    Ok(())
}

async fn link_of(store: &shared::store::Store, pk: &str) -> Result<Option<String>> {
    Ok(store.get_item(pk, "LINK").await?.and_then(|item| attr_s(&item, "user_id").map(str::to_string)))
}

/// Link the customer to the Keel user the event names, if it names one
/// that exists; audited (`stripe.customer_linked`) with the link.
async fn link(state: &IntegrationsState, pk: &str, customer: &str, identity: &facts::Identity) -> Result<Option<String>> {
    let store = &state.platform.store;
    let mut found = None;
    if let Some(id) = &identity.user_id
        && let Some(user) = users::get(store, id).await?
    {
        found = Some((user, "metadata"));
    }
    if found.is_none()
        && let Some(email) = identity.email.as_deref().and_then(|e| Email::parse(e).ok())
        && let Some(user) = users::find_by_email(store, &email).await?
    {
        found = Some((user, "email"));
    }
    let Some((user, matched_by)) = found.filter(|(user, _)| user.deleted_at.is_none()) else {
        return Ok(None);
    };
    let item = Item::from([
        ("pk".to_string(), s(pk)),
        ("sk".to_string(), s("LINK")),
        ("type".to_string(), s("stripe_customer")),
        ("user_id".to_string(), s(user.id.clone())),
        ("stripe_customer_id".to_string(), s(customer)),
        ("matched_by".to_string(), s(matched_by)),
        ("gsi1pk".to_string(), s(format!("USER#{}", user.id))),
        ("gsi1sk".to_string(), s(pk)),
        ("linked_at".to_string(), s(timestamp(chrono::Utc::now()))),
    ]);
    let audit = AuditEntry::new(&Actor::system("stripe"), "stripe.customer_linked", "stripe_customer", customer)
        .about(user.id.clone())
        .reason(format!("matched by {matched_by}"));
    match store.commit(vec![Write::put_new(store.table(), item, Error::Conflict("already linked".into()))?], &audit).await {
        Ok(()) => Ok(Some(user.id)),
        // Another event for this customer linked it first.
        Err(Error::Conflict(_)) => link_of(store, pk).await,
        Err(e) => Err(e),
    }
}

/// Derive the customer's orders from its facts and write those that
/// differ; the ids written.
async fn recompute(state: &IntegrationsState, customer: &str, user_id: &str) -> Result<Vec<String>> {
    let store = &state.platform.store;
    let pk = customer_pk(customer);
    let country = users::get(store, user_id).await?.and_then(|u| u.country);
    for _ in 0..MAX_RECOMPUTES {
        let spec = QuerySpec { key_condition: "pk = :pk", values: vec![(":pk", s(&pk))], forward: true, consistent: true, ..Default::default() };
        let items = store.query_all(&spec).await?;
        let mut facts = Facts::default();
        let mut version = None;
        for item in items {
            match (attr_s(&item, "sk"), attr_s(&item, "type")) {
                (Some("STATE"), _) => version = item.get("version").and_then(|v| v.as_n().ok()).cloned(),
                (_, Some("stripe_fact")) => facts.add(from_item::<Fact>(item)?),
                _ => {}
            }
        }
        let Some(version) = version else {
            return Err(Error::internal(format!("{pk} has facts but no STATE")));
        };
        let desired = ledger::orders(&facts, customer, user_id, country.as_deref());
        let keys: Vec<_> = desired.iter().map(|o| (order_pk(&o.id), "META".to_string())).collect();
        let stored: std::collections::HashMap<String, Item> =
            store.batch_get(&keys).await?.into_iter().filter_map(|item| Some((attr_s(&item, "id")?.to_string(), item))).collect();
        let check = || {
            Write::check(
                store.table(),
                &pk,
                "STATE",
                "version = :v",
                vec![(":v", aws_sdk_dynamodb::types::AttributeValue::N(version.clone()))],
                Error::Conflict("a newer event for this customer".into()),
            )
        };
        let mut writes = Vec::new();
        let mut changed = Vec::new();
        for order in &desired {
            let before = match stored.get(&order.id) {
                // Erased: kept for accounting without the person; left as is.
                Some(item) if item.contains_key("anonymized_at") => continue,
                Some(item) => Some(from_item::<LedgerOrder>(item.clone())?),
                None => None,
            };
            if before.as_ref() == Some(order) {
                continue;
            }
            let action = if before.is_some() { "order.updated" } else { "order.created" };
            let audit = AuditEntry::new(&Actor::system("stripe"), action, "order", &order.id).about(user_id).changes(before.as_ref(), Some(order));
            writes.push(Write::put(store.table(), order_item(order)?)?);
            writes.push(Write::put_new(store.table(), store.seal_audit(&audit).await?, Error::internal("audit entry id collision"))?);
            changed.push(order.id.clone());
        }
        if changed.is_empty() {
            return Ok(changed);
        }
        // One transaction holds at most 100 items: the check, then two per
        // order. A customer with more changed orders than fit is written
        // in parts, each under the same check (a later event redoes it all).
        let mut done = true;
        let mut writes = writes.into_iter().peekable();
        while writes.peek().is_some() {
            let mut part = vec![check()?];
            part.extend(writes.by_ref().take(98));
            match store.try_transact(&part).await? {
                Transacted::Done => {}
                Transacted::ConditionFailed(_) | Transacted::Contended => {
                    done = false;
                    break;
                }
            }
        }
        if done {
            return Ok(changed);
        }
    }
    Err(Error::Conflict(format!("too many concurrent events for Stripe customer {customer}; Stripe will retry")))
}

pub fn order_pk(id: &str) -> String {
    format!("ORDER#{id}")
}

/// The stored order: its fields, keys (by user on gsi1, by month on gsi2,
/// as every order) and when it was last written.
fn order_item(order: &LedgerOrder) -> Result<Item> {
    let mut item = to_item(order)?;
    let order_key = format!("{}#{}", order.created_at, order.id);
    item.insert("pk".into(), s(order_pk(&order.id)));
    item.insert("sk".into(), s("META"));
    item.insert("type".into(), s("order"));
    item.insert("gsi1pk".into(), s(format!("USER#{}", order.user_id)));
    item.insert("gsi1sk".into(), s(order_key.clone()));
    item.insert("gsi2pk".into(), s(format!("ORDERS#{}", order.created_at.get(..7).unwrap_or("0000-00"))));
    item.insert("gsi2sk".into(), s(order_key));
    item.insert("updated_at".into(), s(timestamp(chrono::Utc::now())));
    Ok(item)
}
