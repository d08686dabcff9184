//! Moderation throughput per month and country (the chart owner's), with no
//! I/O (docs/analytics.md): decisions by outcome, the time from a chart's
//! creation to its first decision, and the backlog of charts waiting for
//! review at the month's end. The analytics refresh stores the rows
//! (`ModerationRow`) beside the business rows of its generation.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::charts::{Chart, ModerationEvent, ModerationStatus};
use super::periods::Granularity;
use super::revenue::{self, ALL, UNKNOWN_COUNTRY};

/// One chart's moderation life: created, its initial state and its decisions in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartLife {
    pub owner_id: String,
    pub created: DateTime<Utc>,
    /// The state before any decision: the first decision's `from`, or the
    /// current state of a chart never decided on.
    pub initial: ModerationStatus,
    /// `(at, to)` of each decision up to `as_of`, oldest first.
    pub decisions: Vec<(DateTime<Utc>, ModerationStatus)>,
}

/// One month of one country (or `*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModerationRow {
    /// Decisions taken in the month, by outcome (the state they led to).
    pub approved: i64,
    pub rejected: i64,
    pub flagged: i64,
    pub hidden: i64,
    /// Charts whose first decision fell in the month, and for each the
    /// seconds from creation to it.
    pub first_decisions: i64,
    pub first_decision_seconds: Durations,
    /// Charts waiting for review (pending, never decided on) at the month's
    /// end: the next month's first instant, or `as_of` for the current month.
    pub backlog_end: i64,
}

impl ModerationRow {
    pub fn decisions(&self) -> i64 {
        self.approved + self.rejected + self.flagged + self.hidden
    }
}

/// Every chart's life up to `as_of` (charts created later are left out).
pub fn lives(charts: &[Chart], events: &[ModerationEvent], as_of: DateTime<Utc>) -> Vec<ChartLife> {
    let mut by_chart: HashMap<&str, Vec<(DateTime<Utc>, &ModerationEvent)>> = HashMap::new();
    for e in events {
        if let Some(at) = revenue::parse_time(&e.at).filter(|t| *t <= as_of) {
            by_chart.entry(e.chart_id.as_str()).or_default().push((at, e));
        }
    }
    charts
        .iter()
        .filter_map(|c| {
            let created = revenue::parse_time(&c.created_at).filter(|t| *t <= as_of)?;
            let mut decided = by_chart.remove(c.id.as_str()).unwrap_or_default();
            decided.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
            let initial = decided.first().map_or(c.moderation_status, |(_, e)| e.from);
            Some(ChartLife { owner_id: c.owner_id.clone(), created, initial, decisions: decided.iter().map(|(t, e)| (*t, e.to)).collect() })
        })
        .collect()
}

/// Rows `(country | *, yyyy-mm)` for every month from the first chart's to
/// the month of `as_of`; `country_of` maps an owner to their country.
pub fn rollups(lives: &[ChartLife], country_of: &dyn Fn(&str) -> String, as_of: DateTime<Utc>) -> BTreeMap<(String, String), ModerationRow> {
    period_rollups(lives, country_of, as_of, Granularity::Month)
}

/// [`rollups`] by periods of granularity `g`: `(country | *, period key) → row`.
pub fn period_rollups(
    lives: &[ChartLife],
    country_of: &dyn Fn(&str) -> String,
    as_of: DateTime<Utc>,
    g: Granularity,
) -> BTreeMap<(String, String), ModerationRow> {
    let mut rows: BTreeMap<(String, String), ModerationRow> = BTreeMap::new();
    let Some(first) = lives.iter().map(|l| l.created).min() else { return rows };
    // Every period and its end (the next one's first instant, or `as_of`).
    let keys = g.keys_between(first.date_naive(), as_of.date_naive());
    let ends: Vec<DateTime<Utc>> =
        keys.iter().filter_map(|k| g.parse_key(k)).map(|d| g.next_day(d).and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().min(as_of)).collect();
    // Backlog as differences over the periods' indexes, per country.
    let mut backlog: HashMap<String, Vec<i64>> = HashMap::new();
    for life in lives {
        let country = country_of(&life.owner_id);
        let groups = [country.as_str(), ALL];
        for (at, to) in &life.decisions {
            for c in groups {
                let row = rows.entry((c.to_string(), g.key_of(*at))).or_default();
                match to {
                    ModerationStatus::Approved => row.approved += 1,
                    ModerationStatus::Rejected => row.rejected += 1,
                    ModerationStatus::Flagged => row.flagged += 1,
                    ModerationStatus::Hidden => row.hidden += 1,
                    ModerationStatus::Pending => {}
                }
            }
        }
        if let Some((at, _)) = life.decisions.first() {
            for c in groups {
                let row = rows.entry((c.to_string(), g.key_of(*at))).or_default();
                row.first_decisions += 1;
                row.first_decision_seconds.push((*at - life.created).num_seconds());
            }
        }
        if life.initial == ModerationStatus::Pending {
            // Waiting for the first review at the ends e with created < e
            // <= the first decision (one taken at e itself is not yet).
            let lo = ends.partition_point(|e| *e <= life.created);
            let hi = life.decisions.first().map_or(ends.len(), |(at, _)| ends.partition_point(|e| e <= at));
            if lo < hi {
                for c in groups {
                    let diff = backlog.entry(c.to_string()).or_insert_with(|| vec![0; ends.len() + 1]);
                    diff[lo] += 1;
                    diff[hi] -= 1;
                }
            }
        }
    }
    for (country, diff) in backlog {
        let mut waiting = 0;
        for (key, d) in keys.iter().zip(diff) {
            waiting += d;
            if waiting > 0 {
                rows.entry((country.clone(), key.clone())).or_default().backlog_end = waiting;
            }
        }
    }
    for row in rows.values_mut() {
        row.first_decision_seconds.finish();
    }
    rows
}

/// Durations in seconds with a bounded size: the exact values while there
/// are at most `Durations::EXACT` of them, else a histogram of logarithmic
/// buckets (DDSketch's: bucket `i` holds `(γ^(i-1), γ^i]`, γ = 1.02, so a
/// quantile read from it is within 1 % of the true one). A month of a
/// large deployment decides on millions of charts; its row must still fit
/// in an item (400 KB) and read fast. 1 s to 10 years is under 1,000
/// buckets.
///
/// Stored as one string: the exact values `"5,86400"`, or `"~"` and
/// `bucket:count` pairs (`"~0:2,578:10"`; durations ≤ 0 in bucket
/// `i32::MIN`). Rows written as a plain comma list read as exact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durations {
    /// Sorted once `finish`ed; empty when `buckets` is in use.
    exact: Vec<i64>,
    buckets: BTreeMap<i32, u64>,
}

const GAMMA: f64 = 1.02;

fn bucket_of(seconds: i64) -> i32 {
    if seconds <= 0 { i32::MIN } else { ((seconds as f64).ln() / GAMMA.ln()).ceil() as i32 }
}

/// The value a bucket stands for: the middle of its range in relative terms.
fn bucket_value(bucket: i32) -> f64 {
    if bucket == i32::MIN { 0.0 } else { 2.0 * GAMMA.powi(bucket) / (GAMMA + 1.0) }
}

impl Durations {
    /// Most exact values a row keeps.
    pub const EXACT: usize = 256;

    pub fn from_exact(mut values: Vec<i64>) -> Durations {
        values.sort_unstable();
        let mut d = Durations { exact: values, buckets: BTreeMap::new() };
        d.bound();
        d
    }

    pub fn push(&mut self, seconds: i64) {
        if self.buckets.is_empty() {
            self.exact.push(seconds);
            self.bound();
        } else {
            *self.buckets.entry(bucket_of(seconds)).or_default() += 1;
        }
    }

    /// Sort the exact values (after the last `push`).
    pub fn finish(&mut self) {
        self.exact.sort_unstable();
    }

    fn bound(&mut self) {
        if self.exact.len() > Self::EXACT {
            for v in self.exact.drain(..) {
                *self.buckets.entry(bucket_of(v)).or_default() += 1;
            }
        }
    }

    /// The exact values, if this holds them (sorted once finished).
    pub fn exact(&self) -> Option<&[i64]> {
        self.buckets.is_empty().then_some(self.exact.as_slice())
    }

    pub fn len(&self) -> u64 {
        self.exact.len() as u64 + self.buckets.values().sum::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The median of several (the months of a range): exact when each holds
    /// its exact values, however many together, else from the buckets.
    pub fn median_of<'a>(all: impl IntoIterator<Item = &'a Durations> + Clone) -> Option<f64> {
        if all.clone().into_iter().all(|d| d.buckets.is_empty()) {
            let mut values: Vec<i64> = all.into_iter().flat_map(|d| d.exact.iter().copied()).collect();
            values.sort_unstable();
            return median(&values);
        }
        let mut buckets: BTreeMap<i32, u64> = BTreeMap::new();
        for d in all {
            for v in &d.exact {
                *buckets.entry(bucket_of(*v)).or_default() += 1;
            }
            for (b, c) in &d.buckets {
                *buckets.entry(*b).or_default() += c;
            }
        }
        let n: u64 = buckets.values().sum();
        let at = |rank: u64| {
            let mut seen = 0;
            buckets
                .iter()
                .find(|(_, c)| {
                    seen += **c;
                    seen > rank
                })
                .map_or(0.0, |(b, _)| bucket_value(*b))
        };
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(at(n / 2)),
            _ => Some((at(n / 2 - 1) + at(n / 2)) / 2.0),
        }
    }
}

impl Serialize for Durations {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = if self.buckets.is_empty() {
            self.exact.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        } else {
            format!("~{}", self.buckets.iter().map(|(b, c)| format!("{b}:{c}")).collect::<Vec<_>>().join(","))
        };
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Durations {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Durations, D::Error> {
        use serde::de::Error;
        let text = String::deserialize(deserializer)?;
        let parts = |s: &str| s.split(',').filter(|v| !v.is_empty()).map(str::to_string).collect::<Vec<_>>();
        match text.strip_prefix('~') {
            Some(pairs) => {
                let mut buckets = BTreeMap::new();
                for pair in parts(pairs) {
                    let (b, c) = pair.split_once(':').ok_or_else(|| D::Error::custom(format!("bucket {pair}")))?;
                    buckets.insert(b.parse().map_err(D::Error::custom)?, c.parse().map_err(D::Error::custom)?);
                }
                Ok(Durations { exact: Vec::new(), buckets })
            }
            None => Ok(Durations::from_exact(parts(&text).iter().map(|v| v.parse().map_err(D::Error::custom)).collect::<Result<_, _>>()?)),
        }
    }
}

/// The median of sorted values (the mean of the middle two for an even count).
pub fn median(sorted: &[i64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2] as f64),
        _ => Some((sorted[n / 2 - 1] as f64 + sorted[n / 2] as f64) / 2.0),
    }
}

/// A user's country for these rows: theirs, or `ZZ`.
pub fn country_or_unknown(country: Option<&str>) -> String {
    country.filter(|c| !c.is_empty()).unwrap_or(UNKNOWN_COUNTRY).to_string()
}

/// Moderation rows of the charts of a segment's members (sort key `yyyy-mm`).
pub fn segment_pk(generation: &str, segment: &str) -> String {
    format!("MODERATION#{generation}#segment#{segment}")
}

/// Moderation rows of a country or `*` (sort key `yyyy-mm`), in the rollups' generation.
pub fn moderation_pk(generation: &str, country: &str) -> String {
    format!("MODERATION#{generation}#{country}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, m, d, 0, 0, 0).unwrap()
    }

    fn chart(id: &str, created: DateTime<Utc>, status: ModerationStatus) -> Chart {
        let mut c = Chart::new("owner", "t", "line").with_status(status);
        c.id = id.into();
        c.created_at = created.to_rfc3339();
        c
    }

    fn decision(chart: &str, at: DateTime<Utc>, from: ModerationStatus, to: ModerationStatus) -> ModerationEvent {
        ModerationEvent {
            id: format!("{chart}{}", at.timestamp()),
            chart_id: chart.into(),
            at: at.to_rfc3339(),
            actor_id: "m".into(),
            action: super::super::charts::ModerationAction::Approve,
            from,
            to,
            reason: "r".into(),
            note: None,
            version: 2,
        }
    }

    #[test]
    fn throughput_median_and_backlog() {
        use ModerationStatus as S;
        let charts =
            vec![chart("a", at(1, 10), S::Rejected), chart("b", at(1, 20), S::Approved), chart("c", at(1, 31), S::Pending), chart("d", at(2, 5), S::Approved)];
        let events = vec![
            decision("a", at(1, 11), S::Pending, S::Approved),
            decision("a", at(2, 3), S::Approved, S::Rejected),
            // b is decided on exactly at February's first instant: pending at January's end.
            decision("b", at(2, 1), S::Pending, S::Approved),
            // After as_of: not yet.
            decision("c", at(3, 20), S::Pending, S::Approved),
        ];
        let as_of = at(3, 10);
        let lives = lives(&charts, &events, as_of);
        let rows = rollups(&lives, &|_| "DE".to_string(), as_of);
        let jan = &rows[&("*".to_string(), "2026-01".to_string())];
        assert_eq!((jan.approved, jan.first_decisions, jan.first_decision_seconds.exact(), jan.backlog_end), (1, 1, Some(&[86400][..]), 2));
        let feb = &rows[&("DE".to_string(), "2026-02".to_string())];
        assert_eq!(
            (feb.approved, feb.rejected, feb.decisions(), feb.first_decisions, feb.first_decision_seconds.exact()),
            (1, 1, 2, 1, Some(&[12 * 86400][..]))
        );
        // c waits; d was created approved (never pending).
        assert_eq!(feb.backlog_end, 1);
        assert_eq!(rows[&("*".to_string(), "2026-03".to_string())].backlog_end, 1);
        assert_eq!(median(&[1, 3, 10, 20]), Some(6.5));
        assert_eq!(median(&[5]), Some(5.0));
        assert_eq!(median(&[]), None);
        let row = ModerationRow { first_decision_seconds: Durations::from_exact(vec![86400, 5]), ..Default::default() };
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["first_decision_seconds"], "5,86400");
        assert_eq!(serde_json::from_value::<ModerationRow>(json).unwrap(), row);
        let none = serde_json::to_value(ModerationRow::default()).unwrap();
        assert!(serde_json::from_value::<ModerationRow>(none).unwrap().first_decision_seconds.is_empty());
    }

    #[test]
    fn many_durations_become_buckets_with_a_median_within_one_percent() {
        // 100,000 durations from 1 minute to about 70 days: the row stays small.
        let values: Vec<i64> = (0..100_000i64).map(|i| 60 + (i * i) % 6_000_000).collect();
        let mut d = Durations::default();
        for v in &values {
            d.push(*v);
        }
        d.finish();
        assert!(d.exact().is_none());
        assert_eq!(d.len(), 100_000);
        let stored = serde_json::to_string(&d).unwrap();
        assert!(stored.len() < 8_000, "{} bytes", stored.len());
        let read: Durations = serde_json::from_str(&stored).unwrap();
        assert_eq!(read, d);
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let truth = median(&sorted).unwrap();
        let got = Durations::median_of([&read]).unwrap();
        assert!((got - truth).abs() / truth < 0.01, "{got} vs {truth}");
        // Exact ones merged with bucketed ones: still within 1 %.
        let few = Durations::from_exact(vec![1, 2, 3]);
        let got = Durations::median_of([&read, &few]).unwrap();
        assert!((got - truth).abs() / truth < 0.01, "{got} vs {truth}");
        // Exact rows together stay exact, however many values in all.
        let a = Durations::from_exact((0..200).collect());
        let b = Durations::from_exact((200..400).collect());
        assert_eq!(Durations::median_of([&a, &b]), Some(199.5));
        // Zero and negative durations (clock skew) have their own bucket.
        let mut z = Durations::default();
        for v in 0..300 {
            z.push(-v);
        }
        assert_eq!(Durations::median_of([&z]), Some(0.0));
    }
}
