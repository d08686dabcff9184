//! Realistic demo data for the local stack: users who signed up over two
//! years (growing, with weekly and yearly seasonality), logins, charts in
//! every moderation state, and orders on monthly and annual plans from many
//! countries, with renewals, discounts, plan switches, churn, reactivations
//! and refunds. Deterministic for a seed.

use chrono::{DateTime, Datelike, Duration, Utc};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use shared::domain::charts::{Chart, ModerationStatus};
use shared::identity::users::{Email, User, UserStatus};
use shared::store::{Item, Store, timestamp, to_item};

pub mod anomalies;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub users: usize,
    pub charts: usize,
    pub orders: usize,
    pub refunds: usize,
    pub events: usize,
    /// Subscriptions that moved to another plan mid-term.
    pub plan_changes: usize,
    /// Customers who came back after churning.
    pub reactivations: usize,
    /// Moves to a cheaper plan in a later month than the spell began (each
    /// one a contraction movement: paying at the month's start, less after).
    pub downgrades: usize,
    /// Moves to a dearer plan in a later month than the spell began (each
    /// one an expansion movement).
    pub upgrades: usize,
}

const COUNTRIES: &[(&str, u32)] = &[
    ("US", 35),
    ("GB", 10),
    ("DE", 9),
    ("IN", 8),
    ("FR", 7),
    ("BR", 6),
    ("CA", 5),
    ("JP", 5),
    ("AU", 4),
    ("ES", 4),
    ("NL", 3),
    ("SE", 2),
    ("MX", 2),
    ("PL", 2),
    ("IT", 3),
    ("KR", 2),
];
const FIRST: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "Edsger",
    "Radia",
    "Guido",
    "Sophie",
    "Tim",
    "Hedy",
    "Donald",
    "Katherine",
    "John",
    "Mary",
    "Yukihiro",
    "Anita",
    "Bjarne",
    "Lynn",
    "James",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Perlman",
    "van Rossum",
    "Wilson",
    "Berners-Lee",
    "Lamarr",
    "Knuth",
    "Johnson",
    "McCarthy",
    "Keller",
    "Matsumoto",
    "Borg",
    "Stroustrup",
    "Conway",
    "Gosling",
];
const TOPICS: &[&str] = &[
    "Revenue",
    "Signups",
    "Churn",
    "Latency",
    "Weather",
    "Steps",
    "Sleep",
    "Budget",
    "Sales",
    "Traffic",
    "Energy use",
    "Portfolio",
    "Reading list",
    "Workouts",
];
const KINDS: &[&str] = &["line", "bar", "area", "pie", "scatter", "heatmap"];
/// (plan, monthly price, annual price) in cents.
const PLANS: &[(&str, i64, i64, u32)] = &[("basic", 900, 9000, 60), ("pro", 2900, 29000, 30), ("team", 9900, 99000, 10)];

fn weighted<'a, T>(rng: &mut StdRng, items: &'a [(T, u32)]) -> &'a T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut pick = rng.gen_range(0..total);
    for (item, w) in items {
        if pick < *w {
            return item;
        }
        pick -= w;
    }
    &items[0].0
}

/// Signup density over the two years: growing, lower at weekends, a New
/// Year spike and a summer dip.
fn signup_weight(t: DateTime<Utc>, progress: f64) -> f64 {
    let growth = 0.4 + 1.6 * progress;
    let weekday = if t.weekday().number_from_monday() >= 6 { 0.7 } else { 1.0 };
    let season = match t.month() {
        1 => 1.35,
        7 | 8 => 0.8,
        11 | 12 => 1.15,
        _ => 1.0,
    };
    growth * weekday * season
}

pub fn generate(now: DateTime<Utc>, users: usize, seed: u64) -> (Vec<Item>, Summary) {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = now - Duration::days(730);
    let mut items = Vec::new();
    let mut summary = Summary::default();
    let country_weights: Vec<(&str, u32)> = COUNTRIES.to_vec();
    let promos = anomalies::signup_slots(now, users, seed);
    let event = |items: &mut Vec<Item>, summary: &mut Summary, user_id: &str, kind: &str, at: DateTime<Utc>, extra: serde_json::Value| {
        items.push(event_item(user_id, kind, at, extra));
        summary.events += 1;
    };

    for n in 0..users {
        // Rejection-sample a signup time from the density above.
        let signed_up = loop {
            let progress: f64 = rng.r#gen();
            let t = start + Duration::seconds((progress * 730.0 * 86400.0) as i64);
            if rng.gen_range(0.0..2.2) < signup_weight(t, progress) {
                break t;
            }
        };
        let first = FIRST[rng.gen_range(0..FIRST.len())];
        let last = LAST[rng.gen_range(0..LAST.len())];
        let email = Email::parse(&format!("{}.{}{}@example.com", first.to_lowercase(), last.to_lowercase().replace(' ', ""), n)).expect("demo email");
        let status = match rng.gen_range(0..1000) {
            0..=19 => UserStatus::Suspended,
            20..=34 => UserStatus::Deleted,
            35..=39 => UserStatus::Invited,
            _ => UserStatus::Active,
        };
        let mut user = User::new(&email, &format!("{first} {last}"), vec!["user".into()], status);
        user.country = Some(weighted(&mut rng, &country_weights).to_string());
        // The first users are the planted signup spikes and campaigns.
        let signed_up = match promos.get(n) {
            Some((at, country)) => {
                user.country = country.clone().or(user.country);
                *at
            }
            None => signed_up,
        };
        user.created_at = timestamp(signed_up);
        user.updated_at = user.created_at.clone();
        if status == UserStatus::Deleted {
            user.deleted_at = Some(timestamp(signed_up + (now - signed_up) / 2));
        }
        event(&mut items, &mut summary, &user.id, "signup", signed_up, json!({ "country": user.country }));

        // About a fifth of users pay. A customer's logins follow their
        // engagement and paid spells (`subscription`); everyone else logs in
        // a few times at random over their lifetime.
        let customer = (status != UserStatus::Invited && rng.gen_bool(0.22)).then(|| {
            let country = user.country.clone().unwrap_or_default();
            subscription(&mut StdRng::seed_from_u64(seed ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)), &user.id, &country, signed_up, now, &mut summary)
        });
        if status != UserStatus::Invited {
            let logins = match &customer {
                Some(c) => c.logins.clone(),
                None => {
                    let span = (now - signed_up).num_seconds().max(1);
                    (0..rng.gen_range(1..=8)).map(|_| signed_up + Duration::seconds(rng.gen_range(0..span))).collect()
                }
            };
            for &at in &logins {
                event(&mut items, &mut summary, &user.id, "login", at, json!({}));
            }
            user.last_login_at = logins.iter().max().map(|t| timestamp(*t));
        }

        // Charts and their moderation states.
        let charts = if status == UserStatus::Invited { 0 } else { rng.gen_range(0..=4) };
        for c in 0..charts {
            let span = (now - signed_up).num_seconds().max(1);
            let created = signed_up + Duration::seconds(rng.gen_range(0..span));
            let moderation = *weighted(
                &mut rng,
                &[
                    (ModerationStatus::Approved, 80),
                    (ModerationStatus::Pending, 8),
                    (ModerationStatus::Rejected, 4),
                    (ModerationStatus::Flagged, 5),
                    (ModerationStatus::Hidden, 3),
                ],
            );
            let title = format!("{} {}", TOPICS[rng.gen_range(0..TOPICS.len())], created.year());
            let mut chart = Chart::new(&user.id, &title, KINDS[rng.gen_range(0..KINDS.len())]).with_status(moderation);
            chart.created_at = timestamp(created);
            chart.updated_at = chart.created_at.clone();
            // A decided chart was reviewed once, from pending, minutes to
            // days after it was created (its own rng: the main stream stays as it was).
            let action = match moderation {
                ModerationStatus::Approved => Some(shared::domain::charts::ModerationAction::Approve),
                ModerationStatus::Rejected => Some(shared::domain::charts::ModerationAction::Reject),
                ModerationStatus::Flagged => Some(shared::domain::charts::ModerationAction::Flag),
                ModerationStatus::Hidden => Some(shared::domain::charts::ModerationAction::Hide),
                ModerationStatus::Pending => None,
            };
            if let Some(action) = action {
                let mut review = StdRng::seed_from_u64(seed ^ (n as u64).wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (c as u64 + 1).wrapping_mul(0x9E37_79B9));
                let delay = Duration::seconds((600.0 * (review.gen_range(0.0..6.0f64)).exp()) as i64);
                let at = timestamp((created + delay).min(now));
                let decision = shared::domain::charts::ModerationEvent {
                    id: uuid::Uuid::now_v7().to_string(),
                    chart_id: chart.id.clone(),
                    at: at.clone(),
                    actor_id: "demo-moderator".into(),
                    action,
                    from: ModerationStatus::Pending,
                    to: moderation,
                    reason: "demo".into(),
                    note: None,
                    version: 2,
                };
                items.push(decision.to_item().expect("moderation item"));
                chart.version = 2;
                chart.updated_at = at;
            }
            let id = chart.id.clone();
            items.push(chart.to_item().expect("chart item"));
            summary.charts += 1;
            event(&mut items, &mut summary, &user.id, "chart_created", created, json!({ "chart_id": id }));
        }

        if let Some(customer) = customer {
            for order in customer.orders {
                let at = chrono::DateTime::parse_from_rfc3339(order["created_at"].as_str().expect("created_at")).expect("timestamp").with_timezone(&Utc);
                let (id, amount) = (order["id"].as_str().unwrap_or("").to_string(), order["amount_cents"].as_i64().unwrap_or(0));
                items.push(to_item(&order).expect("order item"));
                summary.orders += 1;
                event(&mut items, &mut summary, &user.id, "order_placed", at, json!({ "order_id": id, "amount_cents": amount }));
            }
        }
        items.push(user.to_item().expect("user item"));
        items.push(user.guard_item());
        summary.users += 1;
    }
    anomalies::plant(&mut items, &mut summary, now, users, seed);
    (items, summary)
}

/// One paying customer: their orders and their logins.
struct Customer {
    orders: Vec<serde_json::Value>,
    logins: Vec<DateTime<Utc>>,
}

/// A standard normal draw (Box-Muller; `rand` 0.8 has no normal distribution).
fn normal(rng: &mut StdRng) -> f64 {
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    let v: f64 = rng.r#gen();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Days in a month of the engagement walk.
const ENGAGEMENT_STEP_DAYS: i64 = 30;
/// Median logins per day of a customer of average engagement.
const LOGINS_PER_DAY: f64 = 0.07;

/// One paying customer's orders and logins. The customer has a latent
/// engagement (a standard normal, drifting month to month) that sets both
/// how often they log in and the churn hazard of each term, with the plan
/// (basic customers leave more, team ones less), tenure (the first months
/// are riskier), earlier refunds and an earlier churn playing a part;
/// monthly subscribers churn about 4.5% a month on average, annual ones
/// about 20% a year. Logins fade over the 35 to 75 days before most churns
/// (the "login decay" a churn model can learn), but 15 % of churners
/// keep logging in to the end, and paying customers have quiet weeks.
///
/// Each order is a paid term (`period_start` to `period_end`, one month or
/// twelve) on a plan, after an optional discount. A quarter of those who
/// churn come back 20 to 200 days later; monthly subscribers switch plan
/// mid-term about 3% of months (the old term `ended_at` the switch);
/// refunds (3%) end the subscription: a monthly one at the end of its
/// term, an annual one at once (an early cancellation, `ended_at`).
fn subscription(rng: &mut StdRng, user_id: &str, country: &str, signed_up: DateTime<Utc>, now: DateTime<Utc>, summary: &mut Summary) -> Customer {
    // Engagement by month since signing up: an AR(1) walk around the
    // customer's own level, so recent activity says more than old.
    let months = ((now - signed_up).num_days() / ENGAGEMENT_STEP_DAYS + 2) as usize;
    let level = normal(rng);
    let mut drift = 0.0;
    let engagement: Vec<f64> = (0..months)
        .map(|_| {
            drift = 0.8 * drift + 0.6 * normal(rng);
            0.8 * level + 0.6 * drift
        })
        .collect();
    let engagement_at = |t: DateTime<Utc>| -> f64 {
        let i = ((t - signed_up).num_days().max(0) / ENGAGEMENT_STEP_DAYS) as usize;
        engagement[i.min(engagement.len() - 1)]
    };

    let mut orders: Vec<serde_json::Value> = Vec::new();
    // Paid spells: from the first order to the churn (none while still paying).
    let mut spells: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = Vec::new();
    let mut plan = *weighted(rng, &PLANS.iter().enumerate().map(|(i, p)| (i, p.3)).collect::<Vec<_>>());
    let mut annual = rng.gen_bool(0.3);
    let discount_pct: i64 = if rng.gen_bool(0.15) { 20 } else { 0 };
    let mut at = signed_up + Duration::days(rng.gen_range(0..30));
    let mut spell_start = at;
    let (mut refunds, mut churns) = (0, 0);
    while at < now {
        let id = uuid::Uuid::now_v7().to_string();
        let term_end = at.checked_add_months(chrono::Months::new(if annual { 12 } else { 1 })).expect("term end");
        let list = if annual { PLANS[plan].2 } else { PLANS[plan].1 };
        let discount = list * discount_pct / 100;
        let amount = list - discount;
        let mut order = order_value(&id, user_id, country, plan, annual, list, discount, at, term_end);
        let mut churn_at = None;
        if rng.gen_bool(0.03) {
            let refunded_at = at + Duration::days(rng.gen_range(1..14));
            if refunded_at < now {
                order["status"] = json!("refunded");
                order["refunded_at"] = json!(timestamp(refunded_at));
                order["refunded_cents"] = json!(amount);
                summary.refunds += 1;
                refunds += 1;
                if annual {
                    order["ended_at"] = json!(timestamp(refunded_at));
                    churn_at = Some(refunded_at);
                } else {
                    churn_at = Some(term_end);
                }
            }
        }
        if churn_at.is_none() {
            // The hazard of this term, on the log-odds scale.
            let tenure_months = (at - spell_start).num_days() as f64 / 30.4;
            let plan_risk = [0.35, 0.0, -0.5][plan];
            let logit = (if annual { -2.35 } else { -3.8 }) - 1.3 * engagement_at(at)
                + plan_risk
                + 0.7 * (-tenure_months / 4.0).exp()
                + 0.4 * refunds as f64
                + 0.3 * churns.min(2) as f64;
            if rng.gen_bool(1.0 / (1.0 + (-logit).exp())) {
                churn_at = Some(term_end);
            }
        }
        orders.push(order);
        if let Some(churned) = churn_at {
            spells.push((spell_start, Some(churned)));
            churns += 1;
            if !rng.gen_bool(0.25) {
                break;
            }
            // Back after a while, perhaps on another plan or interval.
            summary.reactivations += 1;
            at = churned + Duration::days(rng.gen_range(20..200));
            spell_start = at;
            plan = *weighted(rng, &PLANS.iter().enumerate().map(|(i, p)| (i, p.3)).collect::<Vec<_>>());
            annual = rng.gen_bool(0.3);
            continue;
        }
        if !annual && rng.gen_bool(0.03) {
            let switch = at + Duration::days(rng.gen_range(3..25));
            if switch < now {
                let to = if plan == 0 || (plan == 1 && rng.gen_bool(0.6)) { plan + 1 } else { plan - 1 };
                orders.last_mut().expect("just pushed")["ended_at"] = json!(timestamp(switch));
                summary.plan_changes += 1;
                if (switch.year(), switch.month()) != (spell_start.year(), spell_start.month()) {
                    if to < plan {
                        summary.downgrades += 1;
                    } else {
                        summary.upgrades += 1;
                    }
                }
                plan = to;
                at = switch;
                continue;
            }
        }
        at = term_end;
    }
    if spells.last().is_none_or(|(_, end)| end.is_some()) && spell_start < now {
        spells.push((spell_start, None));
    }
    let logins = logins(rng, &spells, &engagement_at, signed_up, now);
    Customer { orders, logins }
}

/// A customer's logins, day by day: a rate set by engagement and by where
/// the day falls (before the first order, in a paid spell, fading before a
/// churn, after one), fewer at weekends, none on quiet weeks.
fn logins(
    rng: &mut StdRng,
    spells: &[(DateTime<Utc>, Option<DateTime<Utc>>)],
    engagement_at: &dyn Fn(DateTime<Utc>) -> f64,
    signed_up: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    // Per churn: how long before it the logins start to fade, and how far
    // they fall (0 for the 15 % who stay active to the end).
    let fades: Vec<(DateTime<Utc>, i64, f64)> = spells
        .iter()
        .filter_map(|(_, end)| *end)
        .map(|churn| {
            let days = rng.gen_range(35..=75);
            let depth = if rng.gen_bool(0.15) { 0.0 } else { rng.gen_range(0.6..0.95) };
            (churn, days, depth)
        })
        .collect();
    let mut quiet_until = signed_up;
    let mut out = Vec::new();
    let mut day = signed_up;
    while day < now {
        let paying = spells.iter().any(|(a, b)| *a <= day && b.is_none_or(|b| day < b));
        let last_churn = spells.iter().filter_map(|(_, b)| *b).filter(|b| *b <= day).max();
        let mut rate = LOGINS_PER_DAY * (0.9 * engagement_at(day)).exp();
        rate *= match (paying, last_churn) {
            (true, _) => 1.0,
            (false, None) => 0.6,
            (false, Some(c)) if day - c < Duration::days(30) => 0.25,
            (false, Some(_)) => 0.05,
        };
        if paying {
            if let Some((churn, days, depth)) = fades.iter().find(|(c, d, _)| *c > day && *c - day <= Duration::days(*d)) {
                let left = (*churn - day).num_hours() as f64 / (*days as f64 * 24.0);
                rate *= 1.0 - depth * (1.0 - left);
            } else if day >= quiet_until && rng.gen_bool(0.006) {
                // A holiday or a busy stretch: two to four quiet weeks.
                quiet_until = day + Duration::days(rng.gen_range(14..=28));
            }
            if day < quiet_until {
                rate *= 0.1;
            }
        }
        if day.weekday().number_from_monday() >= 6 {
            rate *= 0.6;
        }
        if rng.gen_bool(rate.clamp(0.0, 0.9)) {
            let at = day + Duration::seconds(rng.gen_range(0..86_400));
            if at < now {
                out.push(at);
            }
        }
        day += Duration::days(1);
    }
    out
}

/// An activity event item (`USER#id / EVENT#ts#id`, gsi1 `EVENTS#day`), with
/// `extra` fields.
pub(crate) fn event_item(user_id: &str, kind: &str, at: DateTime<Utc>, extra: serde_json::Value) -> Item {
    let ts = timestamp(at);
    let id = uuid::Uuid::now_v7().to_string();
    let mut value = json!({
        "pk": format!("USER#{user_id}"), "sk": format!("EVENT#{ts}#{id}"),
        "gsi1pk": format!("EVENTS#{}", &ts[..10]), "gsi1sk": ts,
        "type": "event", "id": id, "user_id": user_id, "kind": kind, "ts": ts,
    });
    if let (Some(obj), Some(more)) = (value.as_object_mut(), extra.as_object()) {
        obj.extend(more.clone());
    }
    to_item(&value).expect("an event is a map")
}

/// A paid order for the term `[at, term_end)` on `plan` (`list` minus
/// `discount` charged), as the revenue metrics read it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn order_value(
    id: &str,
    user_id: &str,
    country: &str,
    plan: usize,
    annual: bool,
    list: i64,
    discount: i64,
    at: DateTime<Utc>,
    term_end: DateTime<Utc>,
) -> serde_json::Value {
    let ts = timestamp(at);
    json!({
        "pk": format!("ORDER#{id}"), "sk": "META",
        "gsi1pk": format!("USER#{user_id}"), "gsi1sk": format!("{ts}#{id}"),
        "gsi2pk": format!("ORDERS#{}", &ts[..7]), "gsi2sk": format!("{ts}#{id}"),
        "type": "order", "id": id, "user_id": user_id, "plan": PLANS[plan].0,
        "billing": if annual { "annual" } else { "monthly" },
        "list_price_cents": list, "discount_cents": discount,
        "amount_cents": list - discount, "currency": "USD", "country": country,
        "status": "paid", "created_at": ts, "period_start": ts, "period_end": timestamp(term_end),
    })
}

/// Write the demo data (batches of 25, several in flight).
pub async fn load(store: &Store, users: usize, seed: u64) -> anyhow::Result<Summary> {
    let (items, summary) = generate(Utc::now(), users, seed);
    put(store, &items).await?;
    Ok(summary)
}

/// Write generated items, a few BatchWriteItem calls at a time.
pub async fn put(store: &Store, items: &[Item]) -> anyhow::Result<()> {
    let chunks: Vec<Vec<Item>> = items.chunks(25 * 8).map(<[Item]>::to_vec).collect();
    let results: Vec<_> = futures::stream::iter(chunks).map(|chunk| store.batch_put(chunk)).buffer_unordered(4).collect().await;
    for r in results {
        r.map_err(|e| anyhow::anyhow!("seeding: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn deterministic_and_plausible() {
        let now = chrono::Utc::now();
        let (a, sa) = super::generate(now, 300, 7);
        let (_, sb) = super::generate(now, 300, 7);
        assert_eq!(sa, sb);
        assert_eq!(sa.users, 300);
        assert!(sa.charts > 300 && sa.orders > 50 && sa.events > sa.users, "{sa:?}");
        assert!(sa.plan_changes > 0 && sa.reactivations > 0 && sa.refunds > 0, "{sa:?}");
        assert!(a.len() > 1000);
        // Charts are written through the model, so they read back as one.
        let charts: Vec<_> = a
            .iter()
            .filter(|i| i["type"].as_s().is_ok_and(|t| t == "chart"))
            .cloned()
            .map(shared::domain::charts::from_chart_item)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(charts.len(), sa.charts);
        assert!(
            charts.iter().any(|c| c.flagged) && charts.iter().all(|c| c.flagged == (c.moderation_status == shared::domain::charts::ModerationStatus::Flagged))
        );
    }
}
