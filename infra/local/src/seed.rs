//! Realistic demo data for the local stack: users who signed up over two
//! years (growing, with weekly and yearly seasonality), logins, charts in
//! every moderation state, and orders on monthly and annual plans from many
//! countries, with renewals, churn and refunds. Deterministic for a seed.

use chrono::{DateTime, Datelike, Duration, Utc};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use shared::domain::charts::{Chart, ModerationStatus};
use shared::identity::users::{Email, User, UserStatus};
use shared::store::{Item, Store, timestamp, to_item};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub users: usize,
    pub charts: usize,
    pub orders: usize,
    pub refunds: usize,
    pub events: usize,
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
    let event = |items: &mut Vec<Item>, summary: &mut Summary, user_id: &str, kind: &str, at: DateTime<Utc>, extra: serde_json::Value| {
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
        items.push(to_item(&value).expect("event item"));
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
        user.created_at = timestamp(signed_up);
        user.updated_at = user.created_at.clone();
        if status == UserStatus::Deleted {
            user.deleted_at = Some(timestamp(signed_up + (now - signed_up) / 2));
        }
        event(&mut items, &mut summary, &user.id, "signup", signed_up, json!({ "country": user.country }));

        // Logins: engaged users log in more; the last one is last_login_at.
        if status != UserStatus::Invited {
            let logins = rng.gen_range(1..=8);
            let mut last_login = signed_up;
            for _ in 0..logins {
                let span = (now - signed_up).num_seconds().max(1);
                let at = signed_up + Duration::seconds(rng.gen_range(0..span));
                last_login = last_login.max(at);
                event(&mut items, &mut summary, &user.id, "login", at, json!({}));
            }
            user.last_login_at = Some(timestamp(last_login));
        }

        // Charts and their moderation states.
        let charts = if status == UserStatus::Invited { 0 } else { rng.gen_range(0..=4) };
        for _ in 0..charts {
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
            let id = chart.id.clone();
            items.push(chart.to_item().expect("chart item"));
            summary.charts += 1;
            event(&mut items, &mut summary, &user.id, "chart_created", created, json!({ "chart_id": id }));
        }

        // About a fifth of users pay; they renew until they churn.
        if status != UserStatus::Invited && rng.gen_bool(0.22) {
            let plan = *weighted(&mut rng, &PLANS.iter().map(|p| (p, p.3)).collect::<Vec<_>>()).to_owned();
            let annual = rng.gen_bool(0.3);
            let mut at = signed_up + Duration::days(rng.gen_range(0..30));
            while at < now {
                let id = uuid::Uuid::now_v7().to_string();
                let ts = timestamp(at);
                let refunded = rng.gen_bool(0.03);
                let amount = if annual { plan.2 } else { plan.1 };
                let mut order = json!({
                    "pk": format!("ORDER#{id}"), "sk": "META",
                    "gsi1pk": format!("USER#{}", user.id), "gsi1sk": format!("{ts}#{id}"),
                    "gsi2pk": format!("ORDERS#{}", &ts[..7]), "gsi2sk": format!("{ts}#{id}"),
                    "type": "order", "id": id, "user_id": user.id, "plan": plan.0,
                    "billing": if annual { "annual" } else { "monthly" },
                    "amount_cents": amount, "currency": "USD", "country": user.country,
                    "status": if refunded { "refunded" } else { "paid" }, "created_at": ts,
                });
                if refunded {
                    order["refunded_at"] = json!(timestamp(at + Duration::days(rng.gen_range(1..14))));
                    summary.refunds += 1;
                }
                items.push(to_item(&order).expect("order item"));
                summary.orders += 1;
                event(&mut items, &mut summary, &user.id, "order_placed", at, json!({ "order_id": id, "amount_cents": amount }));
                // Monthly subscribers churn about 4% a month, annual 20% a year.
                if refunded || rng.gen_bool(if annual { 0.2 } else { 0.04 }) {
                    break;
                }
                at += Duration::days(if annual { 365 } else { 30 });
            }
        }
        items.push(user.to_item().expect("user item"));
        items.push(user.guard_item());
        summary.users += 1;
    }
    (items, summary)
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
