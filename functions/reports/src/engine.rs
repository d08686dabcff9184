//! Running a validated spec: read its source's records page by page, group
//! them in one streaming pass (`aggregate`), keep the groups `having`
//! allows, sort, cut at `limit`, and give back a table whose columns carry
//! their units (money in cents, ratios as percentages, counts).
//!
//! Rows without aggregation are kept in memory up to [`MAX_RAW_ROWS`]
//! (a report is read by people; a bigger extract is an export's job).

use chrono::{DateTime, Utc};
use keel_render::{Table, TableColumn, Unit};
use serde_json::Value;
use shared::audit::Journal;
use shared::platform::error::{Error, Result};

use crate::aggregate::{Aggregator, KeyPart, MetricPart, Stats};
use crate::datasets::Records;
use crate::spec::{FieldKind, Order, Plan, Spec};

/// Most rows of a report without aggregation.
pub const MAX_RAW_ROWS: usize = 100_000;
/// Groups held in memory before the aggregation spills a sorted run to /tmp.
pub const MAX_GROUPS_IN_MEMORY: usize = 50_000;
/// Amounts are in the app's single currency (as the analytics figures).
pub const CURRENCY: &str = "USD";

/// A spec's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub table: Table,
    /// Records read from the source.
    pub rows_read: u64,
    pub groups: u64,
    /// Sorted runs the aggregation spilled to disk.
    pub spilled_runs: usize,
    /// Rows left out by `limit` (or [`MAX_RAW_ROWS`]).
    pub truncated: bool,
    /// The earliest and latest time seen in the rows' time fields (days).
    pub data_range: Option<(String, String)>,
}

/// How a column of the output is shown, from its name and kind: amounts
/// are `*_cents`, ratios `*_rate`, `*_retention`, `nrr`, `grr`,
/// `stickiness`, `share`, `probability`.
pub fn unit_of(name: &str, kind: FieldKind, metric_of: Option<&str>) -> Unit {
    let money = |n: &str| n.ends_with("_cents");
    let ratio = |n: &str| n.ends_with("_rate") || n.ends_with("_retention") || ["nrr", "grr", "stickiness", "share", "probability"].contains(&n);
    match kind {
        FieldKind::Number if money(name) || metric_of.is_some_and(money) => Unit::Money { currency: CURRENCY.into() },
        FieldKind::Number if ratio(name) || metric_of.is_some_and(ratio) => Unit::Percent,
        FieldKind::Number if name == "count" || name.starts_with("count_") || ["customers", "orders", "signups", "size"].contains(&name) => Unit::Count,
        FieldKind::Number => Unit::Number,
        FieldKind::Text | FieldKind::Time => Unit::Text,
    }
}

/// The time fields of the source whose values make the data range.
fn time_fields(plan: &Plan) -> Vec<String> {
    plan.source.fields().iter().filter(|f| f.kind == FieldKind::Time).map(|f| f.name.to_string()).collect()
}

/// Run `spec` (validated as `plan`); `progress` hears the records read so far.
pub async fn run(store: &Journal, spec: &Spec, plan: &Plan, mask: bool, now: DateTime<Utc>, progress: impl FnMut(u64)) -> Result<Outcome> {
    let records = Records::open(store, &plan.filters, mask, now).await?;
    run_over(Some(store), records, spec, plan, progress).await
}

/// Run `spec` over `records` (from the table when `store` is given).
pub async fn run_over(store: Option<&Journal>, mut records: Records, spec: &Spec, plan: &Plan, mut progress: impl FnMut(u64)) -> Result<Outcome> {
    let times = time_fields(plan);
    let mut range: Option<(String, String)> = None;
    let mut widen = |record: &serde_json::Map<String, Value>| {
        for f in &times {
            if let Some(day) = record.get(f).and_then(Value::as_str).and_then(|t| t.get(..10)) {
                match &mut range {
                    None => range = Some((day.to_string(), day.to_string())),
                    Some((lo, hi)) => {
                        if day < lo.as_str() {
                            *lo = day.to_string();
                        }
                        if day > hi.as_str() {
                            *hi = day.to_string();
                        }
                    }
                }
            }
        }
    };
    let columns: Vec<TableColumn> = plan
        .outputs
        .iter()
        .map(|o| {
            let metric_field = spec.metrics.iter().find(|m| m.output_name() == o.name).and_then(|m| m.field.as_deref());
            TableColumn { name: o.name.clone(), unit: unit_of(&o.name, o.kind, metric_field) }
        })
        .collect();
    let mut rows: Vec<Vec<Value>> = Vec::new();
    let mut read = 0u64;
    let mut stats = Stats::default();
    let mut truncated = false;
    if plan.aggregated {
        let keys = spec.group_by.iter().map(|g| KeyPart { field: g.field().to_string(), bucket: g.bucket() }).collect();
        let metrics = spec.metrics.iter().map(|m| MetricPart { op: m.op, field: m.field.clone() }).collect();
        let mut aggregator = Aggregator::new(keys, metrics, MAX_GROUPS_IN_MEMORY);
        while let Some(page) = records.next_page(store).await? {
            for record in page.iter().filter(|r| spec.where_.iter().all(|w| w.holds(r))) {
                widen(record);
                aggregator.push(record).map_err(|e| Error::internal(format!("aggregating: {e}")))?;
            }
            read += page.len() as u64;
            progress(read);
        }
        // Output order is the plan's: groups then metrics.
        let group_count = spec.group_by.len();
        stats = aggregator
            .finish(|key, values| {
                let mut row: Vec<Value> = Vec::with_capacity(plan.outputs.len());
                for (o, k) in plan.outputs.iter().take(group_count).zip(key) {
                    row.push(if k.is_empty() {
                        Value::Null
                    } else if o.kind == FieldKind::Number {
                        k.parse::<f64>().map(Value::from).unwrap_or(Value::String(k))
                    } else {
                        Value::String(k)
                    });
                }
                row.extend(values);
                let keep = spec.having.iter().all(|h| {
                    let i = plan.outputs.iter().position(|o| o.name == h.field);
                    i.and_then(|i| row.get(i)).and_then(Value::as_f64).is_some_and(|v| h.op.holds(v, h.value))
                });
                if keep {
                    rows.push(row);
                }
                Ok(())
            })
            .map_err(|e| Error::internal(format!("aggregating: {e}")))?;
    } else {
        // With a sort, every row must be seen before the first `limit` are
        // known; without one, reading stops at the limit.
        let keep_reading = !spec.sort.is_empty();
        let cap = match spec.limit {
            Some(l) if !keep_reading => (l as usize).min(MAX_RAW_ROWS),
            _ => MAX_RAW_ROWS,
        };
        'pages: while let Some(page) = records.next_page(store).await? {
            read += page.len() as u64;
            progress(read);
            for record in page.iter().filter(|r| spec.where_.iter().all(|w| w.holds(r))) {
                widen(record);
                if rows.len() >= cap {
                    truncated = true;
                    if keep_reading {
                        continue;
                    }
                    break 'pages;
                }
                rows.push(plan.outputs.iter().map(|o| record.get(&o.name).cloned().unwrap_or(Value::Null)).collect());
            }
        }
    }
    sort(&mut rows, spec, plan);
    let limit = spec.limit.map_or(usize::MAX, |l| l as usize);
    if rows.len() > limit {
        rows.truncate(limit);
        truncated = true;
    }
    Ok(Outcome {
        table: Table { columns, rows },
        rows_read: read.max(stats.rows),
        groups: stats.groups,
        spilled_runs: stats.runs,
        truncated,
        data_range: range,
    })
}

/// Order rows by the spec's sort keys (numbers by value, the rest as
/// text, nulls last); unsorted rows keep their order (groups come sorted
/// by key).
fn sort(rows: &mut [Vec<Value>], spec: &Spec, plan: &Plan) {
    let keys: Vec<(usize, Order)> = spec.sort.iter().filter_map(|s| plan.outputs.iter().position(|o| o.name == s.field).map(|i| (i, s.order))).collect();
    if keys.is_empty() {
        return;
    }
    rows.sort_by(|a, b| {
        for &(i, order) in &keys {
            let ordering = match (&a[i], &b[i]) {
                (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
                (Value::Null, _) => return std::cmp::Ordering::Greater,
                (_, Value::Null) => return std::cmp::Ordering::Less,
                (x, y) => match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => x.total_cmp(&y),
                    _ => text(x).cmp(&text(y)),
                },
            };
            let ordering = if order == Order::Desc { ordering.reverse() } else { ordering };
            if ordering.is_ne() {
                return ordering;
            }
        }
        std::cmp::Ordering::Equal
    });
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_names_and_metric_fields() {
        assert_eq!(unit_of("revenue", FieldKind::Number, Some("amount_cents")), Unit::Money { currency: CURRENCY.into() });
        assert_eq!(unit_of("nrr", FieldKind::Number, None), Unit::Percent);
        assert_eq!(unit_of("count", FieldKind::Number, None), Unit::Count);
        assert_eq!(unit_of("country", FieldKind::Text, None), Unit::Text);
        assert_eq!(unit_of("avg_score", FieldKind::Number, Some("score")), Unit::Number);
    }
}
