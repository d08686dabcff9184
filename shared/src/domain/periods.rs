//! Reporting periods (UTC): a day, an ISO week (Monday to Sunday), a
//! calendar month or a calendar quarter, with no I/O. Each period has a
//! key that sorts in time order within its granularity (`2026-03-05`,
//! `2026-W10`, `2026-03`, `2026-Q1`), and rollups are stored packed
//! several periods to an item (days by month; weeks, months and quarters by
//! year), under the key [`Granularity::pack_key`].

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granularity {
    Day,
    Week,
    Month,
    Quarter,
}

impl Granularity {
    pub const ALL: [Granularity; 4] = [Granularity::Day, Granularity::Week, Granularity::Month, Granularity::Quarter];

    pub fn parse(name: &str) -> Option<Granularity> {
        Granularity::ALL.into_iter().find(|g| g.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
            Granularity::Quarter => "quarter",
        }
    }

    /// Most periods one request may span: a year of days, three years of
    /// weeks, five of months or quarters.
    pub fn max_periods(self) -> usize {
        match self {
            Granularity::Day => 366,
            Granularity::Week => 157,
            Granularity::Month => 60,
            Granularity::Quarter => 20,
        }
    }

    /// The first day of the period holding `d`.
    pub fn first_day(self, d: NaiveDate) -> NaiveDate {
        match self {
            Granularity::Day => d,
            Granularity::Week => d - Duration::days(d.weekday().num_days_from_monday() as i64),
            Granularity::Month => d.with_day(1).unwrap_or(d),
            Granularity::Quarter => NaiveDate::from_ymd_opt(d.year(), (d.month0() / 3) * 3 + 1, 1).unwrap_or(d),
        }
    }

    /// The first day of the period after the one starting on `first`.
    pub fn next_day(self, first: NaiveDate) -> NaiveDate {
        match self {
            Granularity::Day => first + Duration::days(1),
            Granularity::Week => first + Duration::days(7),
            Granularity::Month => first.checked_add_months(Months::new(1)).unwrap_or(NaiveDate::MAX),
            Granularity::Quarter => first.checked_add_months(Months::new(3)).unwrap_or(NaiveDate::MAX),
        }
    }

    /// The first instant of the period holding `t`.
    pub fn start_of(self, t: DateTime<Utc>) -> DateTime<Utc> {
        midnight(self.first_day(t.date_naive()))
    }

    /// The first instant of the period after the one starting at `start`.
    pub fn next(self, start: DateTime<Utc>) -> DateTime<Utc> {
        midnight(self.next_day(start.date_naive()))
    }

    /// The key of the period holding `d`.
    pub fn key_of_day(self, d: NaiveDate) -> String {
        match self {
            Granularity::Day => d.format("%Y-%m-%d").to_string(),
            Granularity::Week => {
                let w = d.iso_week();
                format!("{:04}-W{:02}", w.year(), w.week())
            }
            Granularity::Month => format!("{:04}-{:02}", d.year(), d.month()),
            Granularity::Quarter => format!("{:04}-Q{}", d.year(), d.month0() / 3 + 1),
        }
    }

    /// The key of the period holding `t`.
    pub fn key_of(self, t: DateTime<Utc>) -> String {
        self.key_of_day(t.date_naive())
    }

    /// The first day of the period `key` names; none for a malformed key.
    pub fn parse_key(self, key: &str) -> Option<NaiveDate> {
        let year = |y: &str| (y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit())).then(|| y.parse::<i32>().ok()).flatten();
        let number = |n: &str, len: usize| (n.len() == len && n.bytes().all(|b| b.is_ascii_digit())).then(|| n.parse::<u32>().ok()).flatten();
        match self {
            Granularity::Day => {
                let mut parts = key.split('-');
                let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
                if parts.next().is_some() {
                    return None;
                }
                NaiveDate::from_ymd_opt(year(y)?, number(m, 2)?, number(d, 2)?)
            }
            Granularity::Week => {
                let (y, w) = key.split_once("-W")?;
                NaiveDate::from_isoywd_opt(year(y)?, number(w, 2)?, Weekday::Mon)
            }
            Granularity::Month => {
                let (y, m) = key.split_once('-')?;
                NaiveDate::from_ymd_opt(year(y)?, number(m, 2)?, 1)
            }
            Granularity::Quarter => {
                let (y, q) = key.split_once("-Q")?;
                let q = number(q, 1).filter(|q| (1..=4).contains(q))?;
                NaiveDate::from_ymd_opt(year(y)?, (q - 1) * 3 + 1, 1)
            }
        }
    }

    /// The key `n` periods after `key` (negative: before).
    pub fn add(self, key: &str, n: i32) -> Option<String> {
        let first = self.parse_key(key)?;
        let moved = match self {
            Granularity::Day => first.checked_add_signed(Duration::days(n as i64)),
            Granularity::Week => first.checked_add_signed(Duration::days(7 * n as i64)),
            Granularity::Month | Granularity::Quarter => {
                let months = if self == Granularity::Month { n } else { 3 * n };
                if months >= 0 { first.checked_add_months(Months::new(months as u32)) } else { first.checked_sub_months(Months::new(months.unsigned_abs())) }
            }
        };
        moved.map(|d| self.key_of_day(d))
    }

    /// The key of the item a period's row is stored in: a day's in its
    /// month's (`yyyy-mm`), a week's in its ISO year's and a quarter's in
    /// its year's (`yyyy`); a month is an item of its own.
    pub fn pack_key(self, period_key: &str) -> Option<String> {
        let first = self.parse_key(period_key)?;
        Some(match self {
            Granularity::Day => format!("{:04}-{:02}", first.year(), first.month()),
            Granularity::Week => format!("{:04}", first.iso_week().year()),
            Granularity::Month | Granularity::Quarter => format!("{:04}", first.year()),
        })
    }

    /// Days of the period `key` counted for averages: all of them, or those
    /// up to and including the day of `as_of` (0 for a later period).
    pub fn days_counted(self, key: &str, as_of: DateTime<Utc>) -> i64 {
        let Some(first) = self.parse_key(key) else { return 0 };
        let last = (self.next_day(first) - Duration::days(1)).min(as_of.date_naive());
        ((last - first).num_days() + 1).max(0)
    }

    /// Keys of every period from the one holding `from` through the one holding `to`.
    pub fn keys_between(self, from: NaiveDate, to: NaiveDate) -> Vec<String> {
        let mut out = Vec::new();
        let mut day = self.first_day(from);
        while day <= to {
            out.push(self.key_of_day(day));
            day = self.next_day(day);
        }
        out
    }
}

/// The rows of one packed item (`Granularity::pack_key`): period key → row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeriodPack<R> {
    pub periods: BTreeMap<String, R>,
}

/// The partition of a group's `g` rows, beside `monthly_pk` (the
/// partition of its months). `@` is in no country, plan or generation.
pub fn packed_pk(monthly_pk: &str, g: Granularity) -> String {
    format!("{monthly_pk}@{}", g.name())
}

/// `(group, period key) → row` as `(group, pack key) → pack`.
pub fn pack<G: Ord + Clone, R>(rows: BTreeMap<(G, String), R>, g: Granularity) -> BTreeMap<(G, String), PeriodPack<R>> {
    let mut out: BTreeMap<(G, String), PeriodPack<R>> = BTreeMap::new();
    for ((group, key), row) in rows {
        let Some(pack_key) = g.pack_key(&key) else { continue };
        out.entry((group, pack_key)).or_insert_with(|| PeriodPack { periods: BTreeMap::new() }).periods.insert(key, row);
    }
    out
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn keys_round_trip_and_sort_in_time_order() {
        for g in Granularity::ALL {
            let mut keys = Vec::new();
            let mut d = g.first_day(day("2024-12-20"));
            for _ in 0..120 {
                let key = g.key_of_day(d);
                assert_eq!(g.parse_key(&key), Some(d), "{g:?} {key}");
                assert_eq!(g.add(&key, 1), Some(g.key_of_day(g.next_day(d))), "{g:?} {key}");
                assert_eq!(g.add(&g.add(&key, 5).unwrap(), -5).as_deref(), Some(key.as_str()));
                keys.push(key);
                d = g.next_day(d);
            }
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "{g:?}");
        }
    }

    #[test]
    fn iso_weeks_quarters_and_packing() {
        // 2024-12-30 is the Monday of ISO week 1 of 2025.
        assert_eq!(Granularity::Week.key_of_day(day("2025-01-01")), "2025-W01");
        assert_eq!(Granularity::Week.first_day(day("2025-01-05")), day("2024-12-30"));
        assert_eq!(Granularity::Week.pack_key("2025-W01").as_deref(), Some("2025"));
        assert_eq!(Granularity::Quarter.key_of_day(day("2025-08-31")), "2025-Q3");
        assert_eq!(Granularity::Quarter.add("2025-Q1", -1).as_deref(), Some("2024-Q4"));
        assert_eq!(Granularity::Day.pack_key("2025-02-28").as_deref(), Some("2025-02"));
        assert_eq!(Granularity::Month.pack_key("2025-02").as_deref(), Some("2025"));
        assert_eq!(Granularity::Quarter.parse_key("2025-Q5"), None);
        assert_eq!(Granularity::Day.parse_key("2025-02-30"), None);
        assert_eq!(Granularity::Week.parse_key("2025-W54"), None);
        assert_eq!(Granularity::Month.parse_key("2025-1"), None);
        let as_of = Utc.with_ymd_and_hms(2025, 2, 10, 12, 0, 0).unwrap();
        assert_eq!(Granularity::Quarter.days_counted("2025-Q1", as_of), 41);
        assert_eq!(Granularity::Quarter.days_counted("2024-Q4", as_of), 92);
        assert_eq!(Granularity::Week.days_counted("2025-W08", as_of), 0);
        assert_eq!(Granularity::Day.keys_between(day("2025-02-27"), day("2025-03-01")), ["2025-02-27", "2025-02-28", "2025-03-01"]);
    }
}
