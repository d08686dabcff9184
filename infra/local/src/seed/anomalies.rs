//! Anomalies planted in the demo data, so tests can prove the detector
//! finds known incidents and stays quiet elsewhere (docs/analytics.md,
//! "Anomalies"). The list is `fixtures/planted_anomalies.json`, which the
//! tests read too. Sizes are for the 3000-user demo and scale with the
//! number of users.
//!
//! Each kind is planted the way the incident would have happened, so the
//! rest of the data stays consistent (every order still has its event,
//! every chart its `chart_created`):
//! - signups up (spike, campaign): some users' signup is moved to the
//!   day and country (`signup_slots`, used while the users are generated,
//!   so their whole history follows);
//! - charts up: extra charts by users who had signed up before;
//! - orders up: one-month orders by users who had not paid before;
//! - orders down (payment outage): the day's charges go through the next
//!   day (`created_at` moves, the paid term does not);
//! - active users down (outage, broken release): that share of the days'
//!   logins (and, for a one-day outage, chart saves) never happened;
//! - charts down (editor bug): that share of the days' charts were never
//!   saved.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::domain::charts::{Chart, ModerationStatus};
use shared::store::{Item, attr_s, s, timestamp, to_item};

use super::{COUNTRIES, PLANS, Summary, weighted};

/// The planted anomalies, compiled in.
pub const FIXTURE: &str = include_str!("../../fixtures/planted_anomalies.json");
/// The number of users the fixture's magnitudes are for.
pub const FIXTURE_USERS: usize = 3000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlantedDimension {
    pub key: String,
    pub value: String,
}

/// One planted incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planted {
    pub id: String,
    /// A `keel_models::series` metric: signups, active_users,
    /// charts_created, orders.
    pub metric: String,
    /// `None` on the total.
    pub dimension: Option<PlantedDimension>,
    /// spike, drop or level_shift.
    pub kind: String,
    /// The (first) day, as days before the seed's `now`.
    pub days_ago: i64,
    /// Days it lasts: 1 but for level shifts.
    pub duration_days: i64,
    /// Above 0: extra events per day (for `FIXTURE_USERS` users). Below 0:
    /// the share of the days' events that did not happen on them.
    pub magnitude: f64,
    /// Other metrics the same incident moves (an order is revenue too).
    #[serde(default)]
    pub also_moves: Vec<String>,
    pub cause: String,
}

impl Planted {
    /// The (first) day as a date, for data generated at `now`.
    pub fn date(&self, now: DateTime<Utc>) -> NaiveDate {
        (now - Duration::days(self.days_ago)).date_naive()
    }

    /// The UTC days it covers that are before `now`.
    fn days(&self, now: DateTime<Utc>) -> Vec<NaiveDate> {
        self.date(now).iter_days().take(self.duration_days.max(1) as usize).filter(|d| *d < now.date_naive()).collect()
    }

    fn country(&self) -> Option<&str> {
        self.dimension.as_ref().filter(|d| d.key == "country").map(|d| d.value.as_str())
    }

    fn plan(&self) -> Option<&str> {
        self.dimension.as_ref().filter(|d| d.key == "plan").map(|d| d.value.as_str())
    }

    /// Extra events per day for `users` users.
    fn extra_per_day(&self, users: usize) -> usize {
        (self.magnitude.max(0.0) * users as f64 / FIXTURE_USERS as f64).round() as usize
    }
}

#[derive(Deserialize)]
struct Fixture {
    anomalies: Vec<Planted>,
}

/// The fixture's anomalies. It is compiled in and parsed by a test, so a
/// malformed one fails the build's tests rather than the demo.
pub fn planted() -> Vec<Planted> {
    serde_json::from_str::<Fixture>(FIXTURE).map(|f| f.anomalies).unwrap_or_default()
}

/// A random instant of `day`, before `now`.
fn during(rng: &mut StdRng, day: NaiveDate, now: DateTime<Utc>) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let span = (now - midnight).num_seconds().clamp(1, 86_399);
    midnight + Duration::seconds(rng.gen_range(0..span))
}

/// When (and, for a country's anomaly, where) the first users sign up:
/// the extra signups of the planted signup spikes and campaigns, in the
/// order the users are generated. At most `users`.
pub fn signup_slots(now: DateTime<Utc>, users: usize, seed: u64) -> Vec<(DateTime<Utc>, Option<String>)> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5161_0057);
    let mut slots = Vec::new();
    for p in planted().iter().filter(|p| p.metric == "signups" && p.magnitude > 0.0) {
        for day in p.days(now) {
            for _ in 0..p.extra_per_day(users) {
                slots.push((during(&mut rng, day, now), p.country().map(str::to_string)));
            }
        }
    }
    slots.truncate(users);
    slots
}

fn is(item: &Item, kind: &str) -> bool {
    attr_s(item, "type") == Some(kind)
}

fn day_of(item: &Item, attr: &str) -> Option<NaiveDate> {
    attr_s(item, attr).and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc).date_naive())
}

/// Plants every anomaly of the fixture but the signup ones (those are
/// `signup_slots`) into generated items, keeping `summary` true.
pub fn plant(items: &mut Vec<Item>, summary: &mut Summary, now: DateTime<Utc>, users: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0A0A_11E5);
    for p in planted() {
        match (p.metric.as_str(), p.magnitude > 0.0) {
            ("charts_created", true) => add_charts(items, summary, &p, now, users, &mut rng),
            ("orders", true) => add_orders(items, summary, &p, now, users, &mut rng),
            ("orders", false) => delay_orders(items, &p, now),
            ("active_users", false) => remove_activity(items, summary, &p, now, &mut rng),
            ("charts_created", false) => remove_activity(items, summary, &p, now, &mut rng),
            _ => {}
        }
    }
}

/// `(user id, signup time, country)` of every user, oldest first.
fn signups(items: &[Item]) -> Vec<(String, DateTime<Utc>, Option<String>)> {
    let mut all: Vec<_> = items
        .iter()
        .filter(|i| is(i, "event") && attr_s(i, "kind") == Some("signup"))
        .filter_map(|i| {
            let at = DateTime::parse_from_rfc3339(attr_s(i, "ts")?).ok()?.with_timezone(&Utc);
            Some((attr_s(i, "user_id")?.to_string(), at, attr_s(i, "country").map(str::to_string)))
        })
        .collect();
    all.sort_by_key(|(_, at, _)| *at);
    all
}

fn add_charts(items: &mut Vec<Item>, summary: &mut Summary, p: &Planted, now: DateTime<Utc>, users: usize, rng: &mut StdRng) {
    let people = signups(items);
    for day in p.days(now) {
        let before: Vec<&String> = people.iter().filter(|(_, at, _)| at.date_naive() < day).map(|(id, _, _)| id).collect();
        for _ in 0..p.extra_per_day(users) {
            let Some(owner) = before.choose(rng) else { return };
            let at = during(rng, day, now);
            let mut chart = Chart::new(owner, &format!("Template {}", day.format("%Y-%m-%d")), "line").with_status(ModerationStatus::Approved);
            chart.created_at = timestamp(at);
            chart.updated_at = chart.created_at.clone();
            let (Ok(item), Some(event)) = (chart.to_item(), Some(super::event_item(owner, "chart_created", at, json!({ "chart_id": chart.id })))) else {
                continue;
            };
            items.push(item);
            items.push(event);
            summary.charts += 1;
            summary.events += 1;
        }
    }
}

fn add_orders(items: &mut Vec<Item>, summary: &mut Summary, p: &Planted, now: DateTime<Utc>, users: usize, rng: &mut StdRng) {
    let paying: HashSet<String> = items.iter().filter(|i| is(i, "order")).filter_map(|i| attr_s(i, "user_id").map(str::to_string)).collect();
    let mut people: Vec<_> = signups(items).into_iter().filter(|(id, _, _)| !paying.contains(id)).collect();
    let plans: Vec<(usize, u32)> = PLANS.iter().enumerate().map(|(i, p)| (i, p.3)).collect();
    for day in p.days(now) {
        for _ in 0..p.extra_per_day(users) {
            let candidates: Vec<usize> =
                (0..people.len()).filter(|&i| people[i].1.date_naive() < day && p.country().is_none_or(|c| people[i].2.as_deref() == Some(c))).collect();
            let Some(&pick) = candidates.choose(rng) else { break };
            // A buyer buys once: the next pick is someone else.
            let (user_id, _, country) = people.swap_remove(pick);
            let plan = p.plan().and_then(|name| PLANS.iter().position(|q| q.0 == name)).unwrap_or_else(|| *weighted(rng, &plans));
            let at = during(rng, day, now);
            let Some(order) = one_month_order(&user_id, country.as_deref().unwrap_or(COUNTRIES[0].0), plan, at) else { continue };
            let event = super::event_item(&user_id, "order_placed", at, json!({ "order_id": order.1, "amount_cents": PLANS[plan].1 }));
            items.push(order.0);
            items.push(event);
            summary.orders += 1;
            summary.events += 1;
        }
    }
}

/// A paid month on `plan` at list price, never renewed; the same shape as
/// the subscriptions' orders. Its item and id.
fn one_month_order(user_id: &str, country: &str, plan: usize, at: DateTime<Utc>) -> Option<(Item, String)> {
    let id = uuid::Uuid::now_v7().to_string();
    let term_end = at.checked_add_months(chrono::Months::new(1))?;
    let order = super::order_value(&id, user_id, country, plan, false, PLANS[plan].1, 0, at, term_end);
    Some((to_item(&order).ok()?, id))
}

/// The days' orders (and their `order_placed` events) a day later: the
/// charge went through then. The paid term is unchanged.
fn delay_orders(items: &mut [Item], p: &Planted, now: DateTime<Utc>) {
    let days: HashSet<NaiveDate> = p.days(now).into_iter().collect();
    let mut moved: HashMap<String, String> = HashMap::new();
    for item in items.iter_mut().filter(|i| is(i, "order")) {
        let (Some(day), Some(id), Some(created)) = (day_of(item, "created_at"), attr_s(item, "id"), attr_s(item, "created_at")) else { continue };
        let Ok(created) = DateTime::parse_from_rfc3339(created) else { continue };
        let later = created.with_timezone(&Utc) + Duration::days(1);
        if !days.contains(&day) || later >= now {
            continue;
        }
        let (id, ts) = (id.to_string(), timestamp(later));
        item.insert("created_at".into(), s(ts.clone()));
        item.insert("gsi1sk".into(), s(format!("{ts}#{id}")));
        item.insert("gsi2pk".into(), s(format!("ORDERS#{}", &ts[..7])));
        item.insert("gsi2sk".into(), s(format!("{ts}#{id}")));
        moved.insert(id, ts);
    }
    for item in items.iter_mut().filter(|i| is(i, "event") && attr_s(i, "kind") == Some("order_placed")) {
        let Some(ts) = attr_s(item, "order_id").and_then(|id| moved.get(id)).cloned() else { continue };
        let id = attr_s(item, "id").unwrap_or_default().to_string();
        item.insert("sk".into(), s(format!("EVENT#{ts}#{id}")));
        item.insert("gsi1pk".into(), s(format!("EVENTS#{}", &ts[..10])));
        item.insert("gsi1sk".into(), s(ts.clone()));
        item.insert("ts".into(), s(ts));
    }
}

/// Removes that share of the days' logins (active users) or chart saves
/// (charts, and active users on a one-day outage) with their charts, and
/// keeps each user's `last_login_at` the last login that is left.
fn remove_activity(items: &mut Vec<Item>, summary: &mut Summary, p: &Planted, now: DateTime<Utc>, rng: &mut StdRng) {
    let days: HashSet<NaiveDate> = p.days(now).into_iter().collect();
    let share = (-p.magnitude).clamp(0.0, 1.0);
    let kinds: &[&str] = match (p.metric.as_str(), p.kind.as_str()) {
        ("active_users", "drop") => &["login", "chart_created"],
        ("active_users", _) => &["login"],
        _ => &["chart_created"],
    };
    let mut gone_charts: HashSet<String> = HashSet::new();
    let mut touched: HashSet<String> = HashSet::new();
    let before = items.len();
    items.retain(|i| {
        let hit = is(i, "event")
            && attr_s(i, "kind").is_some_and(|k| kinds.contains(&k))
            && day_of(i, "ts").is_some_and(|d| days.contains(&d))
            && rng.gen_bool(share);
        if hit {
            if let Some(chart) = attr_s(i, "chart_id") {
                gone_charts.insert(chart.to_string());
            }
            if attr_s(i, "kind") == Some("login") {
                touched.extend(attr_s(i, "user_id").map(str::to_string));
            }
        }
        !hit
    });
    summary.events = summary.events.saturating_sub(before - items.len());
    let before = items.len();
    items.retain(|i| !(is(i, "chart") && attr_s(i, "id").is_some_and(|id| gone_charts.contains(id))));
    summary.charts = summary.charts.saturating_sub(before - items.len());
    if touched.is_empty() {
        return;
    }
    let mut last: HashMap<String, String> = HashMap::new();
    for i in items.iter().filter(|i| is(i, "event") && attr_s(i, "kind") == Some("login")) {
        if let (Some(user), Some(ts)) = (attr_s(i, "user_id"), attr_s(i, "ts"))
            && touched.contains(user)
            && last.get(user).is_none_or(|l| l.as_str() < ts)
        {
            last.insert(user.to_string(), ts.to_string());
        }
    }
    for i in items.iter_mut().filter(|i| is(i, "user")) {
        let Some(id) = attr_s(i, "id").filter(|id| touched.contains(*id)).map(str::to_string) else { continue };
        match last.get(&id) {
            Some(ts) => i.insert("last_login_at".into(), s(ts.clone())),
            None => i.remove("last_login_at"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_parses_and_is_about_fifty_anomalies_over_two_years() {
        let all = planted();
        assert!((45..=60).contains(&all.len()), "{}", all.len());
        let ids: HashSet<&str> = all.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids.len(), all.len(), "ids are unique");
        for p in &all {
            assert!(["spike", "drop", "level_shift"].contains(&p.kind.as_str()), "{p:?}");
            assert!(p.days_ago - p.duration_days >= 0 && p.days_ago < 730, "{p:?}");
            assert!(p.magnitude != 0.0 && p.magnitude >= -1.0, "{p:?}");
        }
        for kind in ["spike", "drop", "level_shift"] {
            assert!(all.iter().any(|p| p.kind == kind), "{kind}");
        }
        assert!(all.iter().filter(|p| p.country().is_some()).map(|p| p.country()).collect::<HashSet<_>>().len() >= 8);
        assert!(all.iter().filter(|p| p.plan().is_some()).map(|p| p.plan()).collect::<HashSet<_>>().len() == 3);
    }

    #[test]
    fn signup_slots_are_on_their_days_and_scale_with_users() {
        let now = "2026-06-01T12:00:00Z".parse().unwrap();
        let full = signup_slots(now, FIXTURE_USERS, 1);
        let expected: usize = planted().iter().filter(|p| p.metric == "signups").map(|p| p.extra_per_day(FIXTURE_USERS) * p.duration_days as usize).sum();
        assert_eq!(full.len(), expected);
        let tenth = signup_slots(now, FIXTURE_USERS / 10, 1);
        assert!(tenth.len() < full.len() / 5, "{} of {}", tenth.len(), full.len());
        let days: HashSet<NaiveDate> = planted().iter().filter(|p| p.metric == "signups").flat_map(|p| p.days(now)).collect();
        assert!(full.iter().all(|(at, _)| days.contains(&at.date_naive()) && *at < now));
    }
}
