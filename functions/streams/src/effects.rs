//! What one change to the table contributes to the rollups: a pure function
//! of the item's old and new images, shared by the stream handler and the
//! backfill (which treats every existing item as an insert).

use std::collections::BTreeMap;

use serde_json::Value;
use shared::domain::revenue::Order;
use shared::domain::rollups::{self, day_of, month_of};
use shared::store::timestamp;

/// One rollup change.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// `ADD value delta` on `METRIC#metric / bucket`.
    Add { metric: &'static str, bucket: String, delta: i64 },
    /// The user was active on `day`: move them to that last-active bucket if
    /// it is later than their current one.
    Active { user_id: String, day: String },
    /// Index a security-relevant audit entry.
    Security(SecurityEvent),
}

pub use shared::domain::rollups::SecurityEvent;

fn str_of<'a>(item: Option<&'a Value>, key: &str) -> Option<&'a str> {
    item.and_then(|i| i.get(key)).and_then(Value::as_str)
}

fn int_of(item: Option<&Value>, key: &str) -> Option<i64> {
    let v = item.and_then(|i| i.get(key))?;
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)).or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// The entity an image is, from its keys and `type`.
fn kind(item: Option<&Value>) -> Option<&str> {
    let pk = str_of(item, "pk")?;
    let sk = str_of(item, "sk")?;
    match (str_of(item, "type"), pk.split('#').next(), sk) {
        (Some("user"), Some("USER"), "PROFILE") => Some("user"),
        (Some("event"), Some("USER"), sk) if sk.starts_with("EVENT#") => Some("event"),
        (Some("chart"), Some("CHART"), "META") => Some("chart"),
        (Some("order"), Some("ORDER"), "META") => Some("order"),
        (Some("audit"), Some("AUDIT"), _) => Some("audit"),
        (Some("marketing_subscriber"), Some("SUBSCRIBER"), "META") => Some("marketing_subscriber"),
        _ => None,
    }
}

fn add(out: &mut Vec<Effect>, metric: &'static str, bucket: impl Into<String>, delta: i64) {
    if delta != 0 {
        out.push(Effect::Add { metric, bucket: bucket.into(), delta });
    }
}

/// A status counter moves from the old status to the new one (insert: only
/// the new; remove: only the old).
fn status_move(out: &mut Vec<Effect>, metric: &'static str, old: Option<&str>, new: Option<&str>) {
    if old == new {
        return;
    }
    if let Some(o) = old {
        add(out, metric, format!("status#{o}"), -1);
    }
    if let Some(n) = new {
        add(out, metric, format!("status#{n}"), 1);
    }
}

/// The rollup effects of a change from `old` to `new` (either may be absent).
pub fn of_change(old: Option<&Value>, new: Option<&Value>) -> Vec<Effect> {
    let mut out = Vec::new();
    let (old_kind, new_kind) = (kind(old), kind(new));
    let entity = new_kind.or(old_kind);
    // An image of another kind (a key reused) counts as absent.
    let old = old.filter(|_| old_kind == entity);
    let new = new.filter(|_| new_kind == entity);
    match entity {
        Some("user") => {
            status_move(&mut out, rollups::USERS, str_of(old, "status"), str_of(new, "status"));
            if old.is_none()
                && let Some(day) = str_of(new, "created_at").and_then(day_of)
            {
                add(&mut out, rollups::SIGNUPS, day, 1);
            }
            let login = str_of(new, "last_login_at");
            if login.is_some()
                && login != str_of(old, "last_login_at")
                && let (Some(user_id), Some(day)) = (str_of(new, "id"), login.and_then(day_of))
            {
                out.push(Effect::Active { user_id: user_id.into(), day: day.into() });
            }
        }
        Some("marketing_subscriber") => {
            status_move(&mut out, rollups::MARKETING_CONSENT, str_of(old, "status"), str_of(new, "status"));
        }
        Some("event") => {
            if old.is_none()
                && str_of(new, "kind") == Some("login")
                && let (Some(user_id), Some(day)) = (str_of(new, "user_id"), str_of(new, "ts").and_then(day_of))
            {
                out.push(Effect::Active { user_id: user_id.into(), day: day.into() });
            }
        }
        Some("chart") => {
            status_move(&mut out, rollups::CHARTS, str_of(old, "moderation_status"), str_of(new, "moderation_status"));
            if old.is_none()
                && let Some(ts) = str_of(new, "created_at")
                && let (Some(day), Some(month)) = (day_of(ts), month_of(ts))
            {
                add(&mut out, rollups::CHARTS_CREATED, day, 1);
                add(&mut out, rollups::CHARTS_CREATED, month, 1);
                add(&mut out, rollups::CHARTS_CREATED, "all", 1);
            }
        }
        Some("order") => {
            let amount = int_of(new.or(old), "amount_cents").unwrap_or(0);
            if old.is_none()
                && let Some(ts) = str_of(new, "created_at")
                && let (Some(day), Some(month)) = (day_of(ts), month_of(ts))
            {
                add(&mut out, rollups::ORDERS, day, 1);
                add(&mut out, rollups::ORDERS, month, 1);
                add(&mut out, rollups::REVENUE, day, amount);
                add(&mut out, rollups::REVENUE, month, amount);
            }
            // Money given back, by its date, as revenue counts it
            // (`Order::refund`, `Order::chargeback`: a refund of its amount,
            // a lost dispute past what was refunded), once: when the change
            // makes it appear. A refunded order then disputed keeps its
            // refund; a dispute won gives nothing back.
            let order_of = |i: Option<&Value>| i.and_then(|v| serde_json::from_value::<Order>(v.clone()).ok());
            let (before, after) = (order_of(old), order_of(new));
            for returned in [Order::refund, Order::chargeback] {
                if let (Some((amount, at)), None) = (after.as_ref().and_then(returned), before.as_ref().and_then(returned)) {
                    let ts = timestamp(at);
                    if let (Some(day), Some(month)) = (day_of(&ts), month_of(&ts)) {
                        add(&mut out, rollups::REFUNDS, day, amount);
                        add(&mut out, rollups::REFUNDS, month, amount);
                    }
                }
            }
        }
        Some("audit") if old.is_none() => {
            let action = str_of(new, "action").unwrap_or("");
            let outcome = str_of(new, "outcome").unwrap_or("");
            // A role change of an existing user: the diff holds only changed
            // fields, and a creation has nothing before.
            // (The values are sealed under the person's key; the names of
            // the changed fields are stored in the clear for this.)
            let changes_roles = new.and_then(|n| n.get("changes")).and_then(|c| c.get("before")).and_then(|b| b.get("roles")).is_some()
                || (new.and_then(|n| n.get("changed_fields")).and_then(Value::as_array).is_some_and(|f| f.iter().any(|n| n == "roles"))
                    && !(action.ends_with(".create") || action.ends_with(".import") || action == "user.bootstrap_admin"));
            if rollups::is_security_event(action, outcome, changes_roles) {
                let ts = str_of(new, "ts").unwrap_or("");
                if let Some(day) = day_of(ts) {
                    add(&mut out, rollups::SECURITY_EVENTS, day, 1);
                }
                out.push(Effect::Security(SecurityEvent {
                    id: str_of(new, "id").unwrap_or("").into(),
                    ts: ts.into(),
                    action: action.into(),
                    outcome: outcome.into(),
                    actor_id: new.and_then(|n| n.get("actor")).and_then(|a| a.get("id")).and_then(Value::as_str).unwrap_or("").into(),
                    target_type: str_of(new, "target_type").unwrap_or("").into(),
                    target_id: str_of(new, "target_id").unwrap_or("").into(),
                    reason: str_of(new, "reason").map(String::from),
                }));
            }
        }
        _ => {}
    }
    out
}

/// Sum the `Add` effects per counter, dropping those that cancel out.
pub fn net_adds(effects: &[Effect]) -> BTreeMap<(&'static str, String), i64> {
    let mut sums = BTreeMap::new();
    for e in effects {
        if let Effect::Add { metric, bucket, delta } = e {
            *sums.entry((*metric, bucket.clone())).or_insert(0) += delta;
        }
    }
    sums.retain(|_, v| *v != 0);
    sums
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(status: &str, login: Option<&str>) -> Value {
        json!({"pk": "USER#u1", "sk": "PROFILE", "type": "user", "id": "u1", "status": status, "created_at": "2026-01-02T03:04:05Z", "last_login_at": login})
    }

    #[test]
    fn marketing_consent_moves_with_the_subscriber() {
        let sub = |status: &str| json!({"pk": "SUBSCRIBER#k", "sk": "META", "type": "marketing_subscriber", "status": status});
        let (pending, confirmed) = (sub("pending"), sub("confirmed"));
        assert_eq!(net_adds(&of_change(None, Some(&pending))).into_iter().collect::<Vec<_>>(), vec![(("marketing_consent", "status#pending".to_string()), 1)]);
        let moved = net_adds(&of_change(Some(&pending), Some(&confirmed)));
        assert_eq!((moved[&("marketing_consent", "status#pending".to_string())], moved[&("marketing_consent", "status#confirmed".to_string())]), (-1, 1));
        // Erased: the subscriber is deleted, the count goes down.
        assert_eq!(
            net_adds(&of_change(Some(&confirmed), None)).into_iter().collect::<Vec<_>>(),
            vec![(("marketing_consent", "status#confirmed".to_string()), -1)]
        );
    }

    #[test]
    fn user_insert_status_change_and_login() {
        let new = user("active", None);
        let e = of_change(None, Some(&new));
        assert_eq!(net_adds(&e).into_iter().collect::<Vec<_>>(), vec![(("signups", "2026-01-02".to_string()), 1), (("users", "status#active".to_string()), 1)]);
        let suspended = user("suspended", Some("2026-02-01T00:00:00Z"));
        let e = of_change(Some(&new), Some(&suspended));
        let adds = net_adds(&e);
        assert_eq!(adds[&("users", "status#active".to_string())], -1);
        assert_eq!(adds[&("users", "status#suspended".to_string())], 1);
        assert!(e.contains(&Effect::Active { user_id: "u1".into(), day: "2026-02-01".into() }));
        // Same status, same login: nothing.
        assert!(of_change(Some(&suspended), Some(&suspended)).is_empty());
    }

    #[test]
    fn chart_moderation_moves_between_statuses() {
        let a = json!({"pk": "CHART#c", "sk": "META", "type": "chart", "moderation_status": "pending", "created_at": "2026-05-06T00:00:00Z"});
        let b = json!({"pk": "CHART#c", "sk": "META", "type": "chart", "moderation_status": "approved", "created_at": "2026-05-06T00:00:00Z"});
        let adds = net_adds(&of_change(None, Some(&a)));
        assert_eq!(adds.len(), 4);
        let adds = net_adds(&of_change(Some(&a), Some(&b)));
        assert_eq!(adds.len(), 2);
        assert_eq!(adds[&("charts", "status#pending".to_string())], -1);
        let adds = net_adds(&of_change(Some(&b), None));
        assert_eq!(adds[&("charts", "status#approved".to_string())], -1);
    }

    #[test]
    fn orders_count_revenue_and_refunds() {
        let paid = json!({"pk": "ORDER#o", "sk": "META", "type": "order", "id": "o", "user_id": "u", "amount_cents": 2900, "status": "paid", "created_at": "2026-05-06T00:00:00Z"});
        let refunded = json!({"pk": "ORDER#o", "sk": "META", "type": "order", "id": "o", "user_id": "u", "amount_cents": 2900, "status": "refunded", "created_at": "2026-05-06T00:00:00Z", "refunded_at": "2026-06-01T00:00:00Z"});
        let adds = net_adds(&of_change(None, Some(&paid)));
        assert_eq!(adds[&("revenue", "2026-05".to_string())], 2900);
        assert!(!adds.contains_key(&("refunds", "2026-05".to_string())));
        let adds = net_adds(&of_change(Some(&paid), Some(&refunded)));
        assert_eq!(adds.into_iter().collect::<Vec<_>>(), vec![(("refunds", "2026-06".to_string()), 2900), (("refunds", "2026-06-01".to_string()), 2900)]);
    }

    #[test]
    fn a_lost_dispute_counts_as_a_refund_and_a_refund_disputed_is_not_counted_twice() {
        let order = |extra: Value| {
            let mut o = json!({"pk": "ORDER#o", "sk": "META", "type": "order", "id": "o", "user_id": "u", "amount_cents": 2900, "status": "paid", "created_at": "2026-05-06T00:00:00Z"});
            o.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            o
        };
        let paid = order(json!({"refunded_at": null}));
        let open = order(json!({"status": "disputed", "dispute_status": "needs_response", "disputed_cents": 2900, "disputed_at": "2026-06-02T00:00:00Z"}));
        let lost = order(json!({"status": "disputed", "dispute_status": "lost", "disputed_cents": 2900, "disputed_at": "2026-06-02T00:00:00Z"}));
        assert!(net_adds(&of_change(Some(&paid), Some(&open))).is_empty());
        let adds = net_adds(&of_change(Some(&open), Some(&lost)));
        assert_eq!(adds.into_iter().collect::<Vec<_>>(), vec![(("refunds", "2026-06".to_string()), 2900), (("refunds", "2026-06-02".to_string()), 2900)]);
        // Refunded, disputed, the dispute won: refunded once.
        let refunded = order(json!({"status": "refunded", "refunded_at": "2026-06-01T00:00:00Z", "refunded_cents": 2900}));
        let refunded_disputed =
            order(json!({"status": "disputed", "refunded_at": "2026-06-01T00:00:00Z", "refunded_cents": 2900, "dispute_status": "needs_response"}));
        let refunded_won = order(json!({"status": "refunded", "refunded_at": "2026-06-01T00:00:00Z", "refunded_cents": 2900, "dispute_status": "won"}));
        assert!(net_adds(&of_change(Some(&refunded), Some(&refunded_disputed))).is_empty());
        assert!(net_adds(&of_change(Some(&refunded_disputed), Some(&refunded_won))).is_empty());
        // Refunded in part, then lost: the dispute counts what was left (as revenue does).
        let partly = order(json!({"status": "refunded", "refunded_at": "2026-06-01T00:00:00Z", "refunded_cents": 900}));
        let partly_lost = order(json!({"status": "disputed", "refunded_at": "2026-06-01T00:00:00Z", "refunded_cents": 900, "dispute_status": "lost",
            "disputed_cents": 2900, "disputed_at": "2026-06-02T00:00:00Z"}));
        let adds = net_adds(&of_change(Some(&partly), Some(&partly_lost)));
        assert_eq!(adds.into_iter().collect::<Vec<_>>(), vec![(("refunds", "2026-06".to_string()), 2000), (("refunds", "2026-06-02".to_string()), 2000)]);
    }

    #[test]
    fn only_security_relevant_audit_entries_are_indexed() {
        let failed = json!({"pk": "AUDIT#2026-05-06", "sk": "x", "type": "audit", "id": "a1", "ts": "2026-05-06T01:02:03Z", "action": "auth.login", "outcome": "failure", "actor": {"id": "u1"}, "target_type": "user", "target_id": "u1"});
        let e = of_change(None, Some(&failed));
        assert!(matches!(e.last(), Some(Effect::Security(s)) if s.actor_id == "u1"));
        let ok = json!({"pk": "AUDIT#2026-05-06", "sk": "y", "type": "audit", "action": "auth.login", "outcome": "success"});
        assert!(of_change(None, Some(&ok)).is_empty());
    }

    #[test]
    fn rollup_items_themselves_are_ignored() {
        let metric = json!({"pk": "METRIC#users", "sk": "status#active", "value": 3});
        assert!(of_change(None, Some(&metric)).is_empty());
    }
}
