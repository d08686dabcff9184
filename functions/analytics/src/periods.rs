//! What the revenue and business reports share: the periods a request
//! asks for (`from`, `to`, `granularity`) and reading a group's rows of
//! those periods, from the monthly partition or the packed one of finer
//! periods (`shared::domain::periods`).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::de::DeserializeOwned;
use shared::domain::periods::{self, Granularity, PeriodPack};
use shared::platform::error::{Error, Result};
use shared::store::{QuerySpec, Store, attr_s, from_doc_item, s};

/// The periods of a request, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Periods {
    pub granularity: Granularity,
    /// Keys of the first and the last period.
    pub from: String,
    pub to: String,
    /// Every period's key from `from` through `to`.
    pub keys: Vec<String>,
}

/// Periods shown when `from` is not given.
fn default_count(g: Granularity) -> i32 {
    match g {
        Granularity::Day => 30,
        Granularity::Week | Granularity::Month => 12,
        Granularity::Quarter => 8,
    }
}

fn example(g: Granularity) -> &'static str {
    match g {
        Granularity::Day => "2026-03-05",
        Granularity::Week => "2026-W10",
        Granularity::Month => "2026-03",
        Granularity::Quarter => "2026-Q1",
    }
}

/// A `from` or `to` value as the key of the `g` period it means: a key of
/// `g` itself, a day (`yyyy-mm-dd`: the period holding it) or a month
/// (`yyyy-mm`: the period holding its first day for `from`, its last for `to`).
fn bound(g: Granularity, value: &str, last: bool) -> Option<String> {
    if g.parse_key(value).is_some() {
        return Some(value.to_string());
    }
    if let Some(day) = Granularity::Day.parse_key(value) {
        return Some(g.key_of_day(day));
    }
    let month = Granularity::Month.parse_key(value)?;
    Some(g.key_of_day(if last { Granularity::Month.next_day(month) - Duration::days(1) } else { month }))
}

impl Periods {
    /// From the query's strings, as of `now`: `to` defaults to the current
    /// period and may not be later; `from` defaults to a few periods
    /// before `to` (30 days, 12 weeks or months, 8 quarters).
    pub fn parse(from: Option<&str>, to: Option<&str>, granularity: Option<&str>, now: DateTime<Utc>) -> Result<Periods> {
        let g = match granularity {
            None => Granularity::Month,
            Some(name) => Granularity::parse(name).ok_or_else(|| Error::field("granularity", "must be one of day, week, month, quarter"))?,
        };
        let current = g.key_of(now);
        let parse = |field: &str, value: Option<&str>, last: bool| -> Result<Option<String>> {
            value
                .map(|v| {
                    bound(g, v, last)
                        .ok_or_else(|| Error::field(field, format!("must be a {} such as {}, a month (yyyy-mm) or a day (yyyy-mm-dd)", g.name(), example(g))))
                })
                .transpose()
        };
        let to = parse("to", to, true)?.unwrap_or_else(|| current.clone());
        if g.parse_key(&to) > g.parse_key(&current) {
            return Err(Error::field("to", format!("must not be after the current {} ({current})", g.name())));
        }
        let from = match parse("from", from, false)? {
            Some(from) => from,
            None => g.add(&to, 1 - default_count(g)).ok_or_else(|| Error::field("to", "is too early"))?,
        };
        if g.parse_key(&from) > g.parse_key(&to) {
            return Err(Error::field("from", "must not be after `to`"));
        }
        let mut keys = vec![from.clone()];
        while keys.last().is_some_and(|k| g.parse_key(k) < g.parse_key(&to)) {
            if keys.len() >= g.max_periods() {
                return Err(Error::field("from", format!("the range may span at most {} periods of a {}", g.max_periods(), g.name())));
            }
            let next = g.add(keys.last().expect("not empty"), 1).ok_or_else(|| Error::field("to", "is out of range"))?;
            keys.push(next);
        }
        Ok(Periods { granularity: g, from, to, keys })
    }

    /// The `n` periods just before `from`, oldest first.
    pub fn previous(&self) -> Vec<String> {
        let n = self.keys.len() as i32;
        (1..=n).rev().filter_map(|k| self.granularity.add(&self.from, -k)).collect()
    }

    /// The key of the period before `key`.
    pub fn before(&self, key: &str) -> Option<String> {
        self.granularity.add(key, -1)
    }

    /// The month (`yyyy-mm`) holding the last day of the period `key`.
    pub fn month_of_end(&self, key: &str) -> Option<String> {
        let g = self.granularity;
        g.parse_key(key).map(|first| Granularity::Month.key_of_day(g.next_day(first) - Duration::days(1)))
    }
}

/// A group's rows of granularity `g` with keys from `lo` through `hi`:
/// months from their partition `monthly_pk` (one row an item), finer
/// periods from its packed partition (a month of days, a year of weeks or
/// quarters an item). One Query either way.
pub async fn read_rows<R: DeserializeOwned>(store: &Store, monthly_pk: &str, g: Granularity, lo: &str, hi: &str) -> Result<BTreeMap<String, R>> {
    let pack_key = |k: &str| g.pack_key(k).ok_or_else(|| Error::internal(format!("period key {k}")));
    let spec = QuerySpec {
        key_condition: "pk = :pk AND sk BETWEEN :lo AND :hi",
        values: vec![(":pk", s(periods::packed_pk(monthly_pk, g))), (":lo", s(pack_key(lo)?)), (":hi", s(pack_key(hi)?))],
        forward: true,
        ..Default::default()
    };
    let (lo_day, hi_day) = (g.parse_key(lo), g.parse_key(hi));
    let mut rows = BTreeMap::new();
    for item in store.query_all(&spec).await? {
        let pack: PeriodPack<R> = from_doc_item(item)?;
        rows.extend(pack.periods.into_iter().filter(|(k, _)| {
            let day = g.parse_key(k);
            day >= lo_day && day <= hi_day
        }));
    }
    if rows.is_empty() && g == Granularity::Month {
        // A generation stored before months were packed: a month an item.
        let spec = QuerySpec {
            key_condition: "pk = :pk AND sk BETWEEN :lo AND :hi",
            values: vec![(":pk", s(monthly_pk)), (":lo", s(lo)), (":hi", s(hi))],
            forward: true,
            ..Default::default()
        };
        for item in store.query_all(&spec).await? {
            let key = attr_s(&item, "sk").unwrap_or_default().to_string();
            rows.insert(key, from_doc_item(item)?);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-10T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn each_granularity_has_defaults_and_reads_days_and_months_as_bounds() {
        let p = Periods::parse(None, None, Some("day"), now()).unwrap();
        assert_eq!((p.from.as_str(), p.to.as_str(), p.keys.len()), ("2026-02-09", "2026-03-10", 30));
        let p = Periods::parse(Some("2026-01"), Some("2026-02"), Some("week"), now()).unwrap();
        // January 1 2026 is a Thursday of ISO week 1; February 28 a Saturday of week 9.
        assert_eq!((p.from.as_str(), p.to.as_str(), p.keys.len()), ("2026-W01", "2026-W09", 9));
        let p = Periods::parse(Some("2025-05-17"), None, Some("quarter"), now()).unwrap();
        assert_eq!(p.keys, ["2025-Q2", "2025-Q3", "2025-Q4", "2026-Q1"]);
        assert_eq!(p.previous(), ["2024-Q2", "2024-Q3", "2024-Q4", "2025-Q1"]);
        assert_eq!(p.month_of_end("2025-Q3").as_deref(), Some("2025-09"));
        let p = Periods::parse(Some("2025-11"), None, None, now()).unwrap();
        assert_eq!(p.keys, ["2025-11", "2025-12", "2026-01", "2026-02", "2026-03"]);
    }

    #[test]
    fn bad_bounds_name_their_field() {
        let field = |from: Option<&str>, to: Option<&str>, g: Option<&str>| match Periods::parse(from, to, g, now()).unwrap_err() {
            Error::Validation(fields) => fields[0].field.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(field(None, Some("2026-03-11"), Some("day")), "to");
        assert_eq!(field(Some("2025-W60"), None, Some("week")), "from");
        assert_eq!(field(Some("2024-01-01"), None, Some("day")), "from");
        assert_eq!(field(Some("2026-Q1"), Some("2025-Q4"), Some("quarter")), "from");
        assert_eq!(field(None, None, Some("fortnight")), "granularity");
    }
}
