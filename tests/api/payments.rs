//! Payments: Stripe's events, signed as Stripe signs them, turned into
//! Keel's orders. The events follow the shapes of Stripe's API reference
//! (the `invoice`, `charge`, `subscription` and `checkout.session`
//! objects); each test signs them with the stack's own signing secret
//! (`KEEL_STRIPE_WEBHOOK_SECRET`, made by the local stack).

use axum::body::Body;
use http::{Method, Request, StatusCode};
use integrations::payments::ledger::order_id;
use integrations::payments::signature;
use serde_json::{Value, json};
use shared::store::Item;

use crate::helpers::{Response, TestApp, send_to};

const PATH: &str = "/api/v1/integrations/payments/stripe/webhook";
pub(crate) const JAN: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
pub(crate) const DAY: i64 = 86_400;

fn secret(app: &TestApp) -> signature::StripeSecret {
    app.app.integrations.stripe_webhook_secret.clone().expect("the local stack makes a Stripe signing secret")
}

/// POST an event as Stripe does: the raw JSON, signed now.
pub(crate) async fn deliver(app: &TestApp, event: &Value) -> Response {
    let body = event.to_string();
    let header = signature::header(&secret(app), chrono::Utc::now().timestamp(), body.as_bytes());
    deliver_signed(app, &body, Some(&header)).await
}

async fn deliver_signed(app: &TestApp, body: &str, header: Option<&str>) -> Response {
    let mut builder =
        Request::builder().method(Method::POST).uri(PATH).header("content-type", "application/json; charset=utf-8").header("user-agent", "Stripe/1.0");
    if let Some(h) = header {
        builder = builder.header("stripe-signature", h);
    }
    send_to(app.router(), builder.body(Body::from(body.to_string())).unwrap()).await
}

fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({
        "id": id, "object": "event", "api_version": "2024-06-20", "created": created, "livemode": false,
        "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null}, "type": kind,
        "data": {"object": object}
    })
}

/// An `invoice.paid` event for one paid term of a subscription: `amount`
/// before tax (10 % tax on top), the price's interval and the term.
#[allow(clippy::too_many_arguments)]
pub(crate) fn invoice_paid(evt: &str, invoice: &str, customer: &str, sub: &str, interval: &str, amount: i64, start: i64, end: i64) -> Value {
    let tax = amount / 10;
    event(
        evt,
        "invoice.paid",
        start + 60,
        json!({
            "id": invoice, "object": "invoice", "customer": customer, "subscription": sub, "status": "paid",
            "currency": "eur", "amount_due": amount + tax, "amount_paid": amount + tax, "subtotal": amount, "tax": tax,
            "total": amount + tax, "total_excluding_tax": amount, "payment_intent": format!("pi_{invoice}"), "charge": format!("ch_{invoice}"),
            "customer_email": null, "customer_address": {"country": "DE"}, "metadata": {},
            "status_transitions": {"paid_at": start + 30, "finalized_at": start},
            "lines": {"object": "list", "has_more": false, "data": [{
                "id": format!("il_{invoice}"), "object": "line_item", "type": "subscription", "amount": amount, "currency": "eur",
                "period": {"start": start, "end": end},
                "price": {"id": format!("price_pro_{interval}"), "object": "price", "lookup_key": "pro", "nickname": "Pro",
                          "recurring": {"interval": interval, "interval_count": 1}, "unit_amount": amount},
                "metadata": {}
            }]}
        }),
    )
}

fn charge_refunded(evt: &str, created: i64, charge: &str, customer: &str, invoice: &str, amount: i64, refunded: i64) -> Value {
    event(
        evt,
        "charge.refunded",
        created,
        json!({"id": charge, "object": "charge", "customer": customer, "invoice": invoice, "payment_intent": format!("pi_{invoice}"),
               "amount": amount, "amount_captured": amount, "amount_refunded": refunded, "refunded": refunded >= amount, "currency": "eur", "status": "succeeded"}),
    )
}

/// A `charge.dispute.*` event: Stripe's dispute object, which names its
/// charge and payment intent but not the customer.
pub(crate) fn dispute_event(evt: &str, kind: &str, created: i64, dispute: &str, charge: &str, amount: i64, status: &str) -> Value {
    let payment_intent = charge.strip_prefix("ch_").map(|rest| format!("pi_{rest}"));
    event(
        evt,
        kind,
        created,
        json!({"id": dispute, "object": "dispute", "amount": amount, "currency": "eur", "charge": charge, "payment_intent": payment_intent,
               "reason": "fraudulent", "status": status, "created": JAN + 5 * DAY, "is_charge_refundable": false, "livemode": false,
               "balance_transactions": [], "evidence_details": {"due_by": JAN + 15 * DAY, "has_evidence": false, "past_due": false, "submission_count": 0},
               "metadata": {}}),
    )
}

fn subscription_deleted(evt: &str, created: i64, sub: &str, customer: &str, ended_at: i64) -> Value {
    event(
        evt,
        "customer.subscription.deleted",
        created,
        json!({"id": sub, "object": "subscription", "customer": customer, "status": "canceled", "canceled_at": ended_at, "ended_at": ended_at,
               "cancel_at_period_end": false, "metadata": {}}),
    )
}

/// A subscription-mode Checkout session: who the customer is, no money.
fn checkout_completed(evt: &str, created: i64, session: &str, customer: &str, user_id: &str) -> Value {
    event(
        evt,
        "checkout.session.completed",
        created,
        json!({"id": session, "object": "checkout.session", "mode": "subscription", "customer": customer, "client_reference_id": user_id,
               "payment_status": "paid", "status": "complete", "amount_total": 0, "currency": "eur", "subscription": "sub_x", "metadata": {},
               "customer_details": {"email": null}}),
    )
}

async fn order(app: &TestApp, stripe_object: &str) -> Option<Item> {
    app.store().get_item(&format!("ORDER#{}", order_id(stripe_object)), "META").await.unwrap()
}

fn text(item: &Item, name: &str) -> Option<String> {
    shared::store::attr_s(item, name).map(str::to_string)
}

fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())
}

/// The case: an `invoice.paid` carrying `customer_email` and
/// `metadata.user_id` makes exactly one order for that user, however often
/// Stripe delivers it.
#[tokio::test]
async fn an_invoice_paid_event_creates_exactly_one_order_for_its_user() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user(&["user"]).await;
    let mut paid = invoice_paid("evt_paid_1", "in_1", "cus_1", "sub_1", "month", 2900, JAN, JAN + 31 * DAY);
    paid["data"]["object"]["customer_email"] = json!(user.email);
    paid["data"]["object"]["metadata"] = json!({"user_id": user.id});

    let first = deliver(&app, &paid).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!((first.body["duplicate"].clone(), first.body["handled"].clone(), first.body["user_id"].clone()), (json!(false), json!(true), json!(user.id)));
    assert_eq!(first.body["orders_changed"], json!([order_id("in_1")]));
    let again = deliver(&app, &paid).await;
    assert_eq!((again.status, again.body["duplicate"].clone(), again.body["orders_changed"].clone()), (StatusCode::OK, json!(true), json!([])));

    let order = order(&app, "in_1").await.expect("the order");
    assert_eq!(text(&order, "user_id").as_deref(), Some(user.id.as_str()));
    assert_eq!(number(&order, "amount_cents"), Some(2900), "after discounts, before tax");
    assert_eq!((text(&order, "plan"), text(&order, "billing"), text(&order, "status")), (Some("pro".into()), Some("monthly".into()), Some("paid".into())));
    assert_eq!((text(&order, "currency"), text(&order, "country")), (Some("EUR".into()), Some("DE".into())));
    assert_eq!(text(&order, "period_start").as_deref(), Some("2026-01-01T00:00:00.000000Z"));
    assert_eq!(text(&order, "period_end").as_deref(), Some("2026-02-01T00:00:00.000000Z"));
    assert_eq!(text(&order, "gsi1pk"), Some(format!("USER#{}", user.id)));

    // Exactly one order for the user, and one audit entry for it.
    let spec = shared::store::QuerySpec {
        index: Some("gsi1"),
        key_condition: "gsi1pk = :pk",
        values: vec![(":pk", shared::store::s(format!("USER#{}", user.id)))],
        ..Default::default()
    };
    let mine = app.store().query_all(&spec).await.unwrap();
    assert_eq!(mine.iter().filter(|i| text(i, "type").as_deref() == Some("order")).count(), 1);
    let audit = app.audit_for("order", &order_id("in_1")).await;
    assert_eq!(audit.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["order.created"]);
    assert_eq!((audit[0].actor.kind.as_str(), audit[0].actor.id.as_str()), ("system", "stripe"));
}

/// Nothing is read before the signature holds: a wrong secret, a changed
/// body, an old timestamp or no header is a 400 naming the header, and
/// changes nothing.
#[tokio::test]
async fn events_without_a_valid_signature_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user(&["user"]).await;
    let mut paid = invoice_paid("evt_forged", "in_forged", "cus_f", "sub_f", "month", 2900, JAN, JAN + 31 * DAY);
    paid["data"]["object"]["metadata"] = json!({"user_id": user.id});
    let body = paid.to_string();
    let now = chrono::Utc::now().timestamp();
    let wrong = signature::StripeSecret::from_value(Some("whsec_not_the_one".into())).unwrap();
    let cases = [
        ("wrong secret", body.clone(), Some(signature::header(&wrong, now, body.as_bytes()))),
        ("changed body", body.replace("2900", "1"), Some(signature::header(&secret(&app), now, body.as_bytes()))),
        ("replayed later", body.clone(), Some(signature::header(&secret(&app), now - 301, body.as_bytes()))),
        ("no signature", body.clone(), None),
        ("garbled", body.clone(), Some("v1=deadbeef".to_string())),
    ];
    for (case, body, header) in cases {
        let response = deliver_signed(&app, &body, header.as_deref()).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{case}: {:?}", response.body);
        assert_eq!(response.error_fields(), ["Stripe-Signature"], "{case}");
    }
    assert!(order(&app, "in_forged").await.is_none());
    assert!(app.store().get_item("STRIPEEVENT#evt_forged", "META").await.unwrap().is_none());

    // Signed, but not an event: 400 naming the body.
    let header = signature::header(&secret(&app), now, b"[1,2]");
    let response = deliver_signed(&app, "[1,2]", Some(&header)).await;
    assert_eq!((response.status, response.error_fields()), (StatusCode::BAD_REQUEST, vec!["body".to_string()]));
}

/// One customer's story, as Stripe may deliver it: linked by a Checkout
/// session, an annual term refunded in part and cancelled mid-term, a
/// monthly subscription switched to a dearer price mid-month. Delivered in
/// order for one customer and in reverse (with duplicates) for another,
/// both end with the same orders.
#[tokio::test]
async fn duplicate_and_out_of_order_events_give_the_same_orders() {
    let app = TestApp::spawn().await;
    let (alice, _) = app.user(&["user"]).await;
    let (bob, _) = app.user(&["user"]).await;
    let story = |who: &str, user_id: &str| {
        let cus = format!("cus_{who}");
        let id = |s: &str| format!("{s}_{who}");
        vec![
            checkout_completed(&id("evt_checkout"), JAN, &id("cs"), &cus, user_id),
            invoice_paid(&id("evt_annual"), &id("in_annual"), &cus, &id("sub_annual"), "year", 99000, JAN, JAN + 365 * DAY),
            charge_refunded(&id("evt_refund1"), JAN + 40 * DAY, &id("ch_in_annual"), &cus, &id("in_annual"), 108900, 20000),
            charge_refunded(&id("evt_refund2"), JAN + 41 * DAY, &id("ch_in_annual"), &cus, &id("in_annual"), 108900, 30000),
            subscription_deleted(&id("evt_cancel"), JAN + 100 * DAY, &id("sub_annual"), &cus, JAN + 100 * DAY),
            invoice_paid(&id("evt_m1"), &id("in_m1"), &cus, &id("sub_m"), "month", 2900, JAN + 10 * DAY, JAN + 41 * DAY),
            invoice_paid(&id("evt_m2"), &id("in_m2"), &cus, &id("sub_m"), "month", 9900, JAN + 20 * DAY, JAN + 51 * DAY),
        ]
    };
    for e in story("a", &alice.id) {
        let r = deliver(&app, &e).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let mut reversed = story("b", &bob.id);
    reversed.reverse();
    let mut twice = reversed.clone();
    twice.extend(reversed.iter().take(3).cloned());
    for e in twice {
        let r = deliver(&app, &e).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }

    // What each order must say, whichever way it arrived.
    for who in ["a", "b"] {
        let annual = order(&app, &format!("in_annual_{who}")).await.expect("annual order");
        assert_eq!(number(&annual, "amount_cents"), Some(99000));
        assert_eq!((text(&annual, "status"), number(&annual, "refunded_cents")), (Some("refunded".into()), Some(30000)), "the later refund total wins");
        assert_eq!(text(&annual, "refunded_at").as_deref(), Some("2026-02-11T00:00:00.000000Z"));
        assert_eq!(text(&annual, "ended_at").as_deref(), Some("2026-04-11T00:00:00.000000Z"), "an annual plan cancelled mid-term ends then (churn)");
        let first = order(&app, &format!("in_m1_{who}")).await.expect("first monthly order");
        assert_eq!(text(&first, "ended_at").as_deref(), Some("2026-01-21T00:00:00.000000Z"), "the switch ends the earlier term");
        let second = order(&app, &format!("in_m2_{who}")).await.expect("second monthly order");
        assert_eq!((number(&second, "amount_cents"), text(&second, "ended_at")), (Some(9900), None));
    }
    // Field for field the same, but for whose they are.
    let comparable = |item: Item| {
        let mut v: serde_json::Map<String, Value> = serde_dynamo::from_item(item).unwrap();
        for k in ["pk", "id", "user_id", "gsi1pk", "gsi1sk", "gsi2sk", "updated_at", "stripe_customer_id", "stripe_invoice_id", "stripe_subscription_id"] {
            v.remove(k);
        }
        Value::Object(v)
    };
    for invoice in ["in_annual", "in_m1", "in_m2"] {
        let a = comparable(order(&app, &format!("{invoice}_a")).await.unwrap());
        let b = comparable(order(&app, &format!("{invoice}_b")).await.unwrap());
        assert_eq!(a, b, "{invoice}");
    }
    // Bob's orders were each written more than once while facts arrived
    // (every change audited); Alice's annual order once per change too.
    assert!(app.audit_for("order", &order_id("in_annual_b")).await.iter().all(|e| e.actor.id == "stripe"));
}

/// A customer Stripe names by neither a known user id nor a known email
/// waits; the Checkout session that says who it is brings its orders.
/// Several events for one customer at once all land (each recompute is
/// conditioned on the customer's version and retried).
#[tokio::test]
async fn unknown_customers_wait_for_their_link_and_concurrent_events_all_land() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user(&["user"]).await;
    let mut paid = invoice_paid("evt_early", "in_early", "cus_late", "sub_late", "month", 1500, JAN, JAN + 31 * DAY);
    paid["data"]["object"]["customer_email"] = json!("nobody-we-know@example.com");
    let r = deliver(&app, &paid).await;
    assert_eq!((r.status, r.body["handled"].clone(), r.body.get("user_id").cloned()), (StatusCode::OK, json!(true), None));
    assert!(order(&app, "in_early").await.is_none());

    let linked = deliver(&app, &checkout_completed("evt_link", JAN + 5, "cs_late", "cus_late", &user.id)).await;
    assert_eq!((linked.body["user_id"].clone(), linked.body["orders_changed"].clone()), (json!(user.id), json!([order_id("in_early")])));
    assert_eq!(text(&order(&app, "in_early").await.unwrap(), "user_id"), Some(user.id.clone()));
    assert_eq!(app.audit_for("stripe_customer", "cus_late").await.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["stripe.customer_linked"]);

    let months: Vec<Value> = (1..=8)
        .map(|m| invoice_paid(&format!("evt_c{m}"), &format!("in_c{m}"), "cus_late", "sub_late", "month", 1500, JAN + m * 31 * DAY, JAN + (m + 1) * 31 * DAY))
        .collect();
    let responses = futures::future::join_all(months.iter().map(|e| deliver(&app, e))).await;
    assert!(responses.iter().all(|r| r.status == StatusCode::OK), "{:?}", responses.iter().map(|r| &r.body).collect::<Vec<_>>());
    for m in 1..=8 {
        assert!(order(&app, &format!("in_c{m}")).await.is_some(), "month {m}");
    }
}

/// A deployment without the signing secret has no Stripe endpoint.
#[tokio::test]
async fn without_a_signing_secret_the_endpoint_says_stripe_is_not_configured() {
    let app = TestApp::spawn().await;
    let mut state = app.app.integrations.clone();
    state.stripe_webhook_secret = None;
    let body = event("evt_x", "invoice.paid", JAN, json!({})).to_string();
    let request = Request::builder()
        .method(Method::POST)
        .uri(PATH)
        .header("content-type", "application/json")
        .header("stripe-signature", "t=1,v1=00")
        .body(Body::from(body))
        .unwrap();
    let response = send_to(integrations::router(state), request).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND, "{:?}", response.body);
}

/// A chargeback reaches the order its charge paid: `charge.dispute.created`
/// makes it `disputed` (audited as `order.updated`, what the "suspend on
/// chargeback" workflow template listens to), `charge.dispute.closed` as
/// won gives it back its status, and neither a replayed event nor an older
/// one arriving late changes anything.
#[tokio::test]
async fn a_dispute_marks_its_order_disputed_until_it_is_won() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user(&["user"]).await;
    let mut paid = invoice_paid("evt_dp_paid", "in_dp", "cus_dp", "sub_dp", "month", 2900, JAN, JAN + 31 * DAY);
    paid["data"]["object"]["metadata"] = json!({"user_id": user.id});
    assert_eq!(deliver(&app, &paid).await.body["orders_changed"], json!([order_id("in_dp")]));

    let created = dispute_event("evt_dp_created", "charge.dispute.created", JAN + 5 * DAY, "dp_1", "ch_in_dp", 3190, "needs_response");
    let r = deliver(&app, &created).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!((r.body["handled"].clone(), r.body["user_id"].clone()), (json!(true), json!(user.id)));
    assert_eq!(r.body["orders_changed"], json!([order_id("in_dp")]));
    let disputed = order(&app, "in_dp").await.unwrap();
    assert_eq!((text(&disputed, "status"), text(&disputed, "dispute_status")), (Some("disputed".into()), Some("needs_response".into())));
    assert_eq!(number(&disputed, "disputed_cents"), Some(2900), "at most the order's amount (the dispute includes tax)");
    assert_eq!(text(&disputed, "disputed_at").as_deref(), Some("2026-01-06T00:00:00.000000Z"));
    let audit = app.audit_for("order", &order_id("in_dp")).await;
    assert_eq!(audit.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["order.updated", "order.created"], "newest first");
    let update = &audit[0];
    assert_eq!((update.actor.kind.as_str(), update.actor.id.as_str()), ("system", "stripe"));
    assert_eq!(update.changes.as_ref().unwrap()["after"]["status"], "disputed", "{:?}", update.changes);

    // Replayed: acknowledged as a duplicate, nothing written.
    let again = deliver(&app, &created).await;
    assert_eq!((again.status, again.body["duplicate"].clone(), again.body["orders_changed"].clone()), (StatusCode::OK, json!(true), json!([])));
    assert_eq!(app.audit_for("order", &order_id("in_dp")).await.len(), 2);

    // Won: no longer disputed, the dispute kept for the record.
    let won = dispute_event("evt_dp_won", "charge.dispute.closed", JAN + 30 * DAY, "dp_1", "ch_in_dp", 3190, "won");
    assert_eq!(deliver(&app, &won).await.body["orders_changed"], json!([order_id("in_dp")]));
    let released = order(&app, "in_dp").await.unwrap();
    assert_eq!((text(&released, "status"), text(&released, "dispute_status")), (Some("paid".into()), Some("won".into())));
    assert_eq!(number(&released, "disputed_cents"), None);
    // The same again, and an older update arriving late: nothing changes.
    let late = dispute_event("evt_dp_late", "charge.dispute.updated", JAN + 10 * DAY, "dp_1", "ch_in_dp", 3190, "under_review");
    for e in [&won, &late] {
        let r = deliver(&app, e).await;
        assert_eq!((r.status, r.body["orders_changed"].clone()), (StatusCode::OK, json!([])), "{:?}", r.body);
    }
    assert_eq!(order(&app, "in_dp").await.unwrap(), released);
    assert_eq!(
        app.audit_for("order", &order_id("in_dp")).await.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["order.updated", "order.updated", "order.created"]
    );
}

/// A dispute of a charge Keel has not seen yet (Stripe does not deliver
/// in order) waits under the charge; the invoice that names the charge
/// brings it, and its order is created disputed. A dispute lost after a
/// refund leaves the order disputed, the refund kept.
#[tokio::test]
async fn a_dispute_before_its_invoice_waits_for_it_and_a_lost_dispute_wins_over_a_refund() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user(&["user"]).await;
    let early = dispute_event("evt_dpe_created", "charge.dispute.created", JAN + 5 * DAY, "dp_e", "ch_in_dpe", 1000, "warning_needs_response");
    let r = deliver(&app, &early).await;
    assert_eq!((r.status, r.body["handled"].clone(), r.body["orders_changed"].clone()), (StatusCode::OK, json!(true), json!([])), "{:?}", r.body);
    assert_eq!(r.body.get("user_id"), None);

    let mut paid = invoice_paid("evt_dpe_paid", "in_dpe", "cus_dpe", "sub_dpe", "month", 2900, JAN, JAN + 31 * DAY);
    paid["data"]["object"]["metadata"] = json!({"user_id": user.id});
    assert_eq!(deliver(&app, &paid).await.body["orders_changed"], json!([order_id("in_dpe")]));
    let o = order(&app, "in_dpe").await.unwrap();
    assert_eq!((text(&o, "status"), number(&o, "disputed_cents")), (Some("disputed".into()), Some(1000)));
    assert_eq!(app.audit_for("order", &order_id("in_dpe")).await.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["order.created"]);

    let refund = charge_refunded("evt_dpe_refund", JAN + 6 * DAY, "ch_in_dpe", "cus_dpe", "in_dpe", 3190, 500);
    let lost = dispute_event("evt_dpe_lost", "charge.dispute.closed", JAN + 40 * DAY, "dp_e", "ch_in_dpe", 1000, "lost");
    for e in [&refund, &lost] {
        assert_eq!(deliver(&app, e).await.status, StatusCode::OK);
    }
    let o = order(&app, "in_dpe").await.unwrap();
    assert_eq!((text(&o, "status"), text(&o, "dispute_status")), (Some("disputed".into()), Some("lost".into())));
    assert_eq!((number(&o, "refunded_cents"), number(&o, "disputed_cents")), (Some(500), Some(1000)));
}
