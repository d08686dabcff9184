//! Group-by in one streaming pass with bounded memory. Rows go into a hash
//! table of partial aggregates, one entry per group; when the table holds
//! `max_groups` groups it is written to a temporary file sorted by group
//! key (a *run*) and emptied. At the end the runs and what is left in the
//! table are merged by key (a k-way merge of sorted streams), so memory is
//! `max_groups` entries plus one per run, however many rows and groups.
//! A 1,000,000-row report grouped by day and country has a few thousand
//! groups and never spills; one grouped by user does.
//!
//! Semantics are SQL's: `count` without a field counts rows; every other
//! metric skips rows where its field is missing or null; `median` and `p90`
//! interpolate between the two nearest values (`percentile_cont`).

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, Write};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::spec::{Bucket, MetricOp};

/// A group key part: a field, cut into periods if it has a bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPart {
    pub field: String,
    pub bucket: Option<Bucket>,
}

/// A metric to compute per group.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPart {
    pub op: MetricOp,
    pub field: Option<String>,
}

/// One metric's state within a group; mergeable with another's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Partial {
    Count(u64),
    /// 64-bit digests of the values, not the values: a UUID costs 8 bytes
    /// instead of ~85, and two of a million distinct values share a digest
    /// with a probability of about 3 in 10^8.
    Distinct(BTreeSet<u64>),
    Sum {
        int: i128,
        float: f64,
        n: u64,
    },
    Min(Option<Value>),
    Max(Option<Value>),
    Values(Vec<f64>),
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Numbers by value, anything else (times) by its text.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => text(a).cmp(&text(b)),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Partial {
    fn new(op: MetricOp) -> Partial {
        match op {
            MetricOp::Count => Partial::Count(0),
            MetricOp::CountDistinct => Partial::Distinct(BTreeSet::new()),
            MetricOp::Sum | MetricOp::Avg => Partial::Sum { int: 0, float: 0.0, n: 0 },
            MetricOp::Min => Partial::Min(None),
            MetricOp::Max => Partial::Max(None),
            MetricOp::Median | MetricOp::P90 => Partial::Values(Vec::new()),
        }
    }

    /// Add one row's value (`None`: the row, for `count` without a field).
    fn add(&mut self, value: Option<&Value>) {
        let present = value.filter(|v| !v.is_null());
        match (self, present) {
            (Partial::Count(n), _) if value.is_none() => *n += 1,
            (Partial::Count(n), Some(_)) => *n += 1,
            (Partial::Distinct(set), Some(v)) => {
                set.insert(digest(&text(v)));
            }
            (Partial::Sum { int, float, n }, Some(v)) => {
                if let Some(i) = v.as_i64() {
                    *int += i as i128;
                    *n += 1;
                } else if let Some(x) = number(v) {
                    *float += x;
                    *n += 1;
                }
            }
            (Partial::Min(m), Some(v)) if m.as_ref().is_none_or(|cur| compare(v, cur) == Ordering::Less) => *m = Some(v.clone()),
            (Partial::Max(m), Some(v)) if m.as_ref().is_none_or(|cur| compare(v, cur) == Ordering::Greater) => *m = Some(v.clone()),
            (Partial::Values(values), Some(v)) => {
                if let Some(x) = number(v) {
                    values.push(x);
                }
            }
            _ => {}
        }
    }

    fn merge(&mut self, other: Partial) {
        match (self, other) {
            (Partial::Count(a), Partial::Count(b)) => *a += b,
            (Partial::Distinct(a), Partial::Distinct(b)) => a.extend(b),
            (Partial::Sum { int, float, n }, Partial::Sum { int: i2, float: f2, n: n2 }) => {
                *int += i2;
                *float += f2;
                *n += n2;
            }
            (Partial::Min(a), Partial::Min(Some(b))) if a.as_ref().is_none_or(|cur| compare(&b, cur) == Ordering::Less) => *a = Some(b),
            (Partial::Max(a), Partial::Max(Some(b))) if a.as_ref().is_none_or(|cur| compare(&b, cur) == Ordering::Greater) => *a = Some(b),
            (Partial::Values(a), Partial::Values(b)) => a.extend(b),
            _ => {}
        }
    }

    fn finish(self, op: MetricOp) -> Value {
        match self {
            Partial::Count(n) => Value::from(n),
            Partial::Distinct(set) => Value::from(set.len() as u64),
            Partial::Sum { n: 0, .. } => Value::Null,
            Partial::Sum { int, float, n } => match op {
                MetricOp::Avg => Value::from((int as f64 + float) / n as f64),
                _ if float == 0.0 => i64::try_from(int).map(Value::from).unwrap_or_else(|_| Value::from(int as f64)),
                _ => Value::from(int as f64 + float),
            },
            Partial::Min(v) | Partial::Max(v) => v.unwrap_or(Value::Null),
            Partial::Values(mut values) => {
                values.sort_by(f64::total_cmp);
                let q = if op == MetricOp::P90 { 0.9 } else { 0.5 };
                percentile(&values, q).map_or(Value::Null, Value::from)
            }
        }
    }
}

/// A value's 64-bit digest for `count_distinct` (SipHash with fixed keys:
/// the same in every run, so spilled runs merge).
fn digest(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// `percentile_cont(q)` of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

type Key = Vec<String>;

/// The streaming group-by (see the module's doc).
pub struct Aggregator {
    keys: Vec<KeyPart>,
    metrics: Vec<MetricPart>,
    max_groups: usize,
    groups: HashMap<Key, Vec<Partial>>,
    runs: Vec<File>,
    rows: u64,
}

/// What a finished aggregation did, for the report's record and the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub rows: u64,
    pub groups: u64,
    pub runs: usize,
}

impl Aggregator {
    pub fn new(keys: Vec<KeyPart>, metrics: Vec<MetricPart>, max_groups: usize) -> Aggregator {
        Aggregator { keys, metrics, max_groups: max_groups.max(1), groups: HashMap::new(), runs: Vec::new(), rows: 0 }
    }

    fn key_of(&self, record: &Map<String, Value>) -> Key {
        self.keys
            .iter()
            .map(|k| {
                let value = record.get(&k.field).filter(|v| !v.is_null());
                match (k.bucket, value) {
                    (Some(b), Some(v)) => b.key_of(&text(v)).unwrap_or_default(),
                    (None, Some(v)) => text(v),
                    (_, None) => String::new(),
                }
            })
            .collect()
    }

    /// Add one row (a record as the exports read it: field → value).
    pub fn push(&mut self, record: &Map<String, Value>) -> io::Result<()> {
        self.rows += 1;
        let key = self.key_of(record);
        if !self.groups.contains_key(&key) && self.groups.len() >= self.max_groups {
            self.spill()?;
        }
        let metrics = &self.metrics;
        let partials = self.groups.entry(key).or_insert_with(|| metrics.iter().map(|m| Partial::new(m.op)).collect());
        for (partial, metric) in partials.iter_mut().zip(metrics) {
            partial.add(metric.field.as_ref().map(|f| record.get(f).unwrap_or(&Value::Null)));
        }
        Ok(())
    }

    /// Write the table, sorted by key, to a new run and empty it.
    fn spill(&mut self) -> io::Result<()> {
        let mut entries: Vec<(Key, Vec<Partial>)> = self.groups.drain().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut file = tempfile::tempfile()?;
        {
            let mut out = BufWriter::new(&mut file);
            for entry in &entries {
                serde_json::to_writer(&mut out, entry)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        file.rewind()?;
        self.runs.push(file);
        Ok(())
    }

    /// Merge everything and hand each group, in key order, to `emit`:
    /// its key parts and its metrics' values.
    pub fn finish(mut self, mut emit: impl FnMut(Vec<String>, Vec<Value>) -> io::Result<()>) -> io::Result<Stats> {
        let mut table: Vec<(Key, Vec<Partial>)> = self.groups.drain().collect();
        table.sort_by(|a, b| a.0.cmp(&b.0));
        let runs = self.runs.len();
        let mut sources: Vec<Source> = Vec::new();
        for file in self.runs.drain(..) {
            let lines = BufReader::new(file).lines();
            sources.push(Box::new(lines.map(|line| serde_json::from_str(&line?).map_err(io::Error::other))));
        }
        sources.push(Box::new(table.into_iter().map(Ok)));
        let mut heads: Vec<Option<(Key, Vec<Partial>)>> = Vec::with_capacity(sources.len());
        let mut heap: BinaryHeap<Reverse<(Key, usize)>> = BinaryHeap::new();
        for (i, source) in sources.iter_mut().enumerate() {
            let head = source.next().transpose()?;
            if let Some((key, _)) = &head {
                heap.push(Reverse((key.clone(), i)));
            }
            heads.push(head);
        }
        let mut groups = 0;
        while let Some(Reverse((key, i))) = heap.pop() {
            let (_, mut partials) = heads[i].take().expect("a head for each heap entry");
            advance(&mut sources, &mut heads, &mut heap, i)?;
            // The same group from the other runs.
            while let Some(Reverse((next, j))) = heap.peek().cloned() {
                if next != key {
                    break;
                }
                heap.pop();
                let (_, more) = heads[j].take().expect("a head for each heap entry");
                for (p, m) in partials.iter_mut().zip(more) {
                    p.merge(m);
                }
                advance(&mut sources, &mut heads, &mut heap, j)?;
            }
            let values = partials.into_iter().zip(&self.metrics).map(|(p, m)| p.finish(m.op)).collect();
            emit(key, values)?;
            groups += 1;
        }
        Ok(Stats { rows: self.rows, groups, runs })
    }
}

type Source = Box<dyn Iterator<Item = io::Result<(Key, Vec<Partial>)>>>;

fn advance(sources: &mut [Source], heads: &mut [Option<(Key, Vec<Partial>)>], heap: &mut BinaryHeap<Reverse<(Key, usize)>>, i: usize) -> io::Result<()> {
    let head = sources[i].next().transpose()?;
    if let Some((key, _)) = &head {
        heap.push(Reverse((key.clone(), i)));
    }
    heads[i] = head;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn order(i: u64) -> Map<String, Value> {
        let countries = ["DE", "US", "FR", "JP", "BR"];
        let day = 1 + (i * 7) % 28;
        let month = 1 + (i / 7) % 12;
        let mut record = json!({
            "id": format!("o{i}"),
            "user_id": format!("u{}", i % 97),
            "country": countries[(i % 5) as usize],
            "amount_cents": ((i * 7919) % 10_000) as i64,
            "created_at": format!("2026-{month:02}-{day:02}T10:00:00Z"),
        });
        if i.is_multiple_of(11) {
            record["amount_cents"] = Value::Null;
        }
        record.as_object().unwrap().clone()
    }

    fn all_metrics() -> Vec<MetricPart> {
        let m = |op, field: Option<&str>| MetricPart { op, field: field.map(str::to_string) };
        vec![
            m(MetricOp::Count, None),
            m(MetricOp::Count, Some("amount_cents")),
            m(MetricOp::CountDistinct, Some("user_id")),
            m(MetricOp::Sum, Some("amount_cents")),
            m(MetricOp::Avg, Some("amount_cents")),
            m(MetricOp::Min, Some("amount_cents")),
            m(MetricOp::Max, Some("created_at")),
            m(MetricOp::Median, Some("amount_cents")),
            m(MetricOp::P90, Some("amount_cents")),
        ]
    }

    fn keys() -> Vec<KeyPart> {
        vec![KeyPart { field: "country".into(), bucket: None }, KeyPart { field: "created_at".into(), bucket: Some(Bucket::Month) }]
    }

    type Groups = BTreeMap<Vec<String>, Vec<Value>>;

    fn run(max_groups: usize, n: u64) -> (Groups, Vec<Vec<String>>, Stats) {
        let mut agg = Aggregator::new(keys(), all_metrics(), max_groups);
        for i in 0..n {
            agg.push(&order(i)).unwrap();
        }
        let (mut out, mut order) = (BTreeMap::new(), Vec::new());
        let stats = agg
            .finish(|k, v| {
                order.push(k.clone());
                out.insert(k, v);
                Ok(())
            })
            .unwrap();
        (out, order, stats)
    }

    /// The same figures computed the plain way.
    fn expected(n: u64) -> BTreeMap<Vec<String>, Vec<Value>> {
        let mut rows: BTreeMap<Vec<String>, Vec<Map<String, Value>>> = BTreeMap::new();
        for i in 0..n {
            let o = order(i);
            let key = vec![o["country"].as_str().unwrap().to_string(), o["created_at"].as_str().unwrap()[..7].to_string()];
            rows.entry(key).or_default().push(o);
        }
        rows.into_iter()
            .map(|(k, rs)| {
                let amounts: Vec<i64> = rs.iter().filter_map(|r| r["amount_cents"].as_i64()).collect();
                let mut sorted: Vec<f64> = amounts.iter().map(|a| *a as f64).collect();
                sorted.sort_by(f64::total_cmp);
                let users: BTreeSet<&str> = rs.iter().map(|r| r["user_id"].as_str().unwrap()).collect();
                let sum: i64 = amounts.iter().sum();
                let values = vec![
                    json!(rs.len()),
                    json!(amounts.len()),
                    json!(users.len()),
                    json!(sum),
                    json!(sum as f64 / amounts.len() as f64),
                    json!(amounts.iter().min()),
                    json!(rs.iter().map(|r| r["created_at"].as_str().unwrap()).max()),
                    json!(percentile(&sorted, 0.5)),
                    json!(percentile(&sorted, 0.9)),
                ];
                (k, values)
            })
            .collect()
    }

    #[test]
    fn spilling_to_runs_gives_the_same_groups_in_key_order() {
        let n = 20_000;
        let (in_memory, order_a, a) = run(10_000, n);
        let (spilled, order_b, b) = run(7, n);
        assert_eq!(a.runs, 0);
        assert!(b.runs > 5, "{b:?}");
        let truth = expected(n);
        assert_eq!((a.rows, a.groups), (n, truth.len() as u64));
        assert_eq!(b.groups, a.groups);
        assert_eq!(in_memory, spilled);
        assert_eq!(order_a, order_b);
        let mut sorted = order_a.clone();
        sorted.sort();
        assert_eq!(order_a, sorted);
        assert_eq!(in_memory, truth);
    }

    #[test]
    fn percentiles_interpolate_like_percentile_cont() {
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
        assert_eq!(percentile(&[10.0], 0.9), Some(10.0));
        assert!((percentile(&[0.0, 10.0], 0.9).unwrap() - 9.0).abs() < 1e-12);
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn missing_fields_group_as_empty_and_metrics_of_nothing_are_null() {
        let mut agg = Aggregator::new(
            vec![KeyPart { field: "plan".into(), bucket: None }],
            vec![MetricPart { op: MetricOp::Sum, field: Some("amount_cents".into()) }, MetricPart { op: MetricOp::Median, field: Some("amount_cents".into()) }],
            10,
        );
        agg.push(json!({"id": "a"}).as_object().unwrap()).unwrap();
        let mut out = Vec::new();
        agg.finish(|k, v| {
            out.push((k, v));
            Ok(())
        })
        .unwrap();
        assert_eq!(out, vec![(vec![String::new()], vec![Value::Null, Value::Null])]);
    }
}
