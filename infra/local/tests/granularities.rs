//! Rollups by day, week and quarter agree with the monthly ones on the demo
//! data (issue 12: `granularity=day|week|month|quarter`): every period's
//! MRR movements balance its MRR change; a month's days sum to the month's
//! revenue and end at its MRR and customers; a quarter starts and ends at
//! its months' levels and holds their revenue; at most as many customers
//! churn in a quarter as in its three months together, over all plans (a customer who
//! joins and churns within the quarter is not customer churn).

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use shared::domain::periods::Granularity;
use shared::domain::revenue::{self, Group, RevenueRow};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").unwrap().with_timezone(&Utc)
}

type Rows = BTreeMap<(Group, String), RevenueRow>;

/// Rows of `g` whose period falls in the month `month`, by group.
fn within(rows: &Rows, g: Granularity, month: &str) -> BTreeMap<Group, Vec<RevenueRow>> {
    let mut out: BTreeMap<Group, Vec<RevenueRow>> = BTreeMap::new();
    for ((group, key), row) in rows {
        if g.pack_key(key).as_deref() == Some(month) {
            out.entry(group.clone()).or_default().push(*row);
        }
    }
    out
}

#[test]
fn revenue_by_day_week_and_quarter_agrees_with_the_months() {
    let (items, _) = keel_local::seed::generate(now(), 400, 2026);
    let source = jobs::analytics_refresh::source_of(items, now()).expect("generated items read back");
    let mut by: BTreeMap<Granularity, Rows> = BTreeMap::new();
    for g in Granularity::ALL {
        let started = Instant::now();
        let rows = revenue::period_rollups(&source.orders, now(), g);
        println!("{g:?}: {} rows in {:?}", rows.len(), started.elapsed());
        for ((group, key), row) in &rows {
            assert_eq!(row.movements.mrr_end, row.movements.balanced_end(), "{g:?} {group:?} {key}: {row:?}");
        }
        by.insert(g, rows);
    }
    let months = &by[&Granularity::Month];
    assert_eq!(months, &revenue::rollups(&source.orders, now()));
    let mut checked = 0;
    for ((group, month), m) in months {
        let days = within(&by[&Granularity::Day], Granularity::Day, month).remove(group).unwrap_or_default();
        let sum = |f: fn(&RevenueRow) -> i64| days.iter().map(f).sum::<i64>();
        assert_eq!(sum(|r| r.gross), m.gross, "{group:?} {month}");
        assert_eq!(sum(|r| r.refunds), m.refunds, "{group:?} {month}");
        assert_eq!(sum(|r| r.orders), m.orders, "{group:?} {month}");
        // The last day with anything is the month's last stored day: its
        // end is the month's end unless the group fell to 0 before it.
        let last = days.last().copied().unwrap_or_default();
        if m.movements.mrr_end > 0 {
            assert_eq!((last.movements.mrr_end, last.movements.customers_end), (m.movements.mrr_end, m.movements.customers_end), "{group:?} {month}");
        }
        let first = days.first().copied().unwrap_or_default();
        if m.movements.mrr_start > 0 {
            assert_eq!((first.movements.mrr_start, first.movements.customers_start), (m.movements.mrr_start, m.movements.customers_start), "{group:?} {month}");
        }
        checked += 1;
    }
    assert!(checked > 500, "{checked} group-months checked");
    for ((group, quarter), q) in &by[&Granularity::Quarter] {
        let first_month = Granularity::Month.key_of_day(Granularity::Quarter.parse_key(quarter).unwrap());
        let keys: Vec<String> = (0..3).filter_map(|k| Granularity::Month.add(&first_month, k)).collect();
        let rows: Vec<RevenueRow> = keys.iter().map(|k| months.get(&(group.clone(), k.clone())).copied().unwrap_or_default()).collect();
        assert_eq!(q.gross, rows.iter().map(|r| r.gross).sum::<i64>(), "{group:?} {quarter}");
        assert_eq!(q.movements.mrr_start, rows[0].movements.mrr_start, "{group:?} {quarter}");
        assert_eq!(q.movements.mrr_end, rows[2].movements.mrr_end, "{group:?} {quarter}");
        // (Within a plan, a switch then a churn is a contraction and no
        // customer churn by months, but customer churn over the quarter.)
        assert!(group.plan != "*" || q.movements.churned_customers <= rows.iter().map(|r| r.movements.churned_customers).sum::<i64>(), "{group:?} {quarter}");
    }
    let weeks = &by[&Granularity::Week];
    assert!(weeks.keys().any(|(_, k)| k.contains("-W")));
}

#[test]
fn business_and_moderation_by_day_week_and_quarter_agree_with_the_months() {
    use shared::domain::business::{self, BusinessRow};
    use shared::domain::moderation_metrics::{self, ModerationRow};
    let (items, _) = keel_local::seed::generate(now(), 400, 2026);
    let source = jobs::analytics_refresh::source_of(items, now()).expect("generated items read back");
    let users = business::activity(&source.events, now());
    let payers = business::payers(&source.orders, now());
    let months = business::rollups(&users, &payers, now());
    let lives = moderation_metrics::lives(&source.charts, &source.decisions, now());
    let country_of = |owner: &str| moderation_metrics::country_or_unknown(users.get(owner).map(|u| u.country.as_str()));
    let moderation_months = moderation_metrics::rollups(&lives, &country_of, now());
    assert!(moderation_months.values().any(|r| r.backlog_end > 0 && r.decisions() > 0));
    // Rows of `g` summed per (country, month holding the period's first day).
    let by_month = |rows: &BTreeMap<(String, String), BusinessRow>, g: Granularity| {
        let mut out: BTreeMap<(String, String), BusinessRow> = BTreeMap::new();
        for ((country, key), row) in rows {
            let month = Granularity::Month.key_of_day(g.parse_key(key).unwrap());
            out.entry((country.clone(), month)).or_default().add(row);
        }
        out
    };
    let days = business::period_rollups(&users, &payers, now(), Granularity::Day);
    for row in days.values() {
        assert_eq!(row.active_users, row.dau_sum, "a day's active users are its daily actives");
    }
    let days_by_month = by_month(&days, Granularity::Day);
    assert_eq!(days_by_month.len(), months.len());
    for (key, m) in &months {
        let d = days_by_month[key];
        assert_eq!(
            (d.signups, d.activations, d.paid, d.dau_sum, d.wau_sum, d.mau_sum, d.charts_created),
            (m.signups, m.activations, m.paid, m.dau_sum, m.wau_sum, m.mau_sum, m.charts_created),
            "{key:?}"
        );
        assert!(m.mau_sum >= m.wau_sum && m.wau_sum >= m.dau_sum, "{key:?}");
    }
    let quarters = business::period_rollups(&users, &payers, now(), Granularity::Quarter);
    for ((country, quarter), q) in &quarters {
        let first = Granularity::Month.key_of_day(Granularity::Quarter.parse_key(quarter).unwrap());
        let ms: Vec<BusinessRow> =
            (0..3).filter_map(|k| Granularity::Month.add(&first, k)).map(|m| months.get(&(country.clone(), m)).copied().unwrap_or_default()).collect();
        assert_eq!(q.signups, ms.iter().map(|r| r.signups).sum::<i64>(), "{country} {quarter}");
        assert_eq!(q.dau_sum, ms.iter().map(|r| r.dau_sum).sum::<i64>(), "{country} {quarter}");
        let most = ms.iter().map(|r| r.active_users).max().unwrap_or(0);
        assert!(q.active_users >= most && q.active_users <= ms.iter().map(|r| r.active_users).sum::<i64>(), "{country} {quarter}");
    }
    // Moderation: a month's days hold its decisions; its last day's backlog is the month's.
    let moderation_days = moderation_metrics::period_rollups(&lives, &country_of, now(), Granularity::Day);
    let mut decisions: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for ((country, day), row) in &moderation_days {
        let e = decisions.entry((country.clone(), day[..7].to_string())).or_default();
        e.0 += row.decisions();
        e.1 += row.first_decisions;
    }
    for ((country, month), m) in &moderation_months {
        let (d, f) = decisions.get(&(country.clone(), month.clone())).copied().unwrap_or_default();
        assert_eq!((d, f), (m.decisions(), m.first_decisions), "{country} {month}");
        let last_day = Granularity::Day.key_of_day(Granularity::Month.next_day(Granularity::Month.parse_key(month).unwrap()) - chrono::Duration::days(1));
        let last_day = last_day.min(Granularity::Day.key_of(now()));
        let backlog = moderation_days.get(&(country.clone(), last_day)).map_or(0, |r: &ModerationRow| r.backlog_end);
        assert_eq!(backlog, m.backlog_end, "{country} {month}");
    }
}
