//! The report builder's model (issue 13): a spec over one dataset (columns,
//! filters, group-bys with time buckets, metrics, having, sort, limit,
//! chart) and its validation, which names every bad field by its path
//! (`group_by[1].bucket`, `metrics[0].field`): what a drag-and-drop builder
//! calls on every change, before anything runs.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::domain::export::{CellKind, Dataset};
use shared::domain::periods::Granularity;
use shared::platform::error::FieldError;

use crate::datasets::{Filters, Source};

/// Most rows a report returns.
pub const MAX_LIMIT: u64 = 1_000_000;
/// Most periods one time bucket may produce over the report's range: more is
/// "grouping too fine for the range" (a chart of them is unreadable).
pub const MAX_PERIODS: i64 = 1_000;
pub const MAX_TITLE: usize = 200;
pub const MAX_DESCRIPTION: usize = 2_000;
/// Most group-bys, metrics and conditions a spec may hold.
pub const MAX_PARTS: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub dataset: String,
    /// Rows without aggregation: the columns to show (default all).
    #[serde(default)]
    pub columns: Vec<String>,
    /// The export filters of the dataset (`shared::domain::export::Filters`).
    #[serde(default)]
    pub filters: Option<Value>,
    /// Conditions on any field of a row, applied before grouping (the
    /// `filters` are the dataset's indexed ones; these are checked per row).
    #[serde(default, rename = "where")]
    pub where_: Vec<RowCondition>,
    #[serde(default)]
    pub group_by: Vec<GroupBy>,
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub having: Vec<Condition>,
    #[serde(default)]
    pub sort: Vec<SortKey>,
    pub limit: Option<u64>,
    pub chart: Option<ChartSpec>,
    pub title: Option<String>,
    pub description: Option<String>,
}

/// A field, or a time field cut into periods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GroupBy {
    Field(String),
    Bucketed { field: String, bucket: Bucket },
}

impl GroupBy {
    pub fn field(&self) -> &str {
        match self {
            GroupBy::Field(f) | GroupBy::Bucketed { field: f, .. } => f,
        }
    }

    pub fn bucket(&self) -> Option<Bucket> {
        match self {
            GroupBy::Field(_) => None,
            GroupBy::Bucketed { bucket, .. } => Some(*bucket),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Bucket {
    /// The period key of an RFC 3339 time or a `yyyy-mm-dd` day
    /// (`2026-03-05`, `2026-W10`, `2026-03`, `2026-Q1`, `2026`).
    pub fn key_of(self, time: &str) -> Option<String> {
        let day = NaiveDate::parse_from_str(time.get(..10)?, "%Y-%m-%d").ok()?;
        Some(match self {
            Bucket::Day => Granularity::Day.key_of_day(day),
            Bucket::Week => Granularity::Week.key_of_day(day),
            Bucket::Month => Granularity::Month.key_of_day(day),
            Bucket::Quarter => Granularity::Quarter.key_of_day(day),
            Bucket::Year => time.get(..4)?.to_string(),
        })
    }

    /// Periods of this bucket from `from` to `to` (both included), exactly.
    pub fn periods_between(self, from: NaiveDate, to: NaiveDate) -> i64 {
        use chrono::Datelike;
        if to < from {
            return 0;
        }
        let months = |d: NaiveDate| d.year() as i64 * 12 + d.month0() as i64;
        match self {
            Bucket::Day => (to - from).num_days() + 1,
            Bucket::Week => {
                let monday = |d: NaiveDate| d - chrono::Duration::days(d.weekday().num_days_from_monday() as i64);
                (monday(to) - monday(from)).num_days() / 7 + 1
            }
            Bucket::Month => months(to) - months(from) + 1,
            Bucket::Quarter => months(to) / 3 - months(from) / 3 + 1,
            Bucket::Year => (to.year() - from.year()) as i64 + 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Bucket::Day => "day",
            Bucket::Week => "week",
            Bucket::Month => "month",
            Bucket::Quarter => "quarter",
            Bucket::Year => "year",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricOp {
    Count,
    CountDistinct,
    Sum,
    Avg,
    Min,
    Max,
    Median,
    P90,
}

impl MetricOp {
    pub fn name(self) -> &'static str {
        match self {
            MetricOp::Count => "count",
            MetricOp::CountDistinct => "count_distinct",
            MetricOp::Sum => "sum",
            MetricOp::Avg => "avg",
            MetricOp::Min => "min",
            MetricOp::Max => "max",
            MetricOp::Median => "median",
            MetricOp::P90 => "p90",
        }
    }

    /// Whether the op needs a numeric field (min and max also order times).
    fn needs_number(self) -> bool {
        matches!(self, MetricOp::Sum | MetricOp::Avg | MetricOp::Median | MetricOp::P90)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    pub op: MetricOp,
    /// Not needed by `count` (rows).
    pub field: Option<String>,
    /// The output column's name (default `op_field`, or `count`).
    #[serde(rename = "as")]
    pub alias: Option<String>,
}

impl Metric {
    pub fn output_name(&self) -> String {
        match (&self.alias, &self.field) {
            (Some(alias), _) => alias.clone(),
            (None, Some(field)) => format!("{}_{field}", self.op.name()),
            (None, None) => self.op.name().to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
    Ne,
}

impl Comparison {
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Comparison::Gt => left > right,
            Comparison::Gte => left >= right,
            Comparison::Lt => left < right,
            Comparison::Lte => left <= right,
            Comparison::Eq => left == right,
            Comparison::Ne => left != right,
        }
    }
}

/// How a row condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowOp {
    Eq,
    Ne,
    /// One of a list of values.
    In,
    NotIn,
    /// Text that starts with the value.
    Prefix,
    Gt,
    Gte,
    Lt,
    Lte,
}

/// A condition on a row's field (`where`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowCondition {
    pub field: String,
    pub op: RowOp,
    pub value: Value,
}

impl RowCondition {
    /// Whether `record` passes (a missing field passes only `ne` and `not_in`).
    pub fn holds(&self, record: &serde_json::Map<String, Value>) -> bool {
        let text = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        };
        let number = |v: &Value| match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        let field = record.get(&self.field).unwrap_or(&Value::Null);
        let list = || self.value.as_array().map(|l| l.iter().filter_map(text).collect::<Vec<_>>()).unwrap_or_default();
        match self.op {
            RowOp::Eq => text(field).is_some_and(|f| Some(f) == text(&self.value)),
            RowOp::Ne => text(field) != text(&self.value),
            RowOp::In => text(field).is_some_and(|f| list().contains(&f)),
            RowOp::NotIn => text(field).is_none_or(|f| !list().contains(&f)),
            RowOp::Prefix => text(field).zip(text(&self.value)).is_some_and(|(f, p)| f.starts_with(&p)),
            RowOp::Gt | RowOp::Gte | RowOp::Lt | RowOp::Lte => {
                let order = match (number(field), number(&self.value)) {
                    (Some(a), Some(b)) => a.partial_cmp(&b),
                    // Times and other text compare as text (RFC 3339 sorts).
                    _ => text(field).zip(text(&self.value)).map(|(a, b)| a.cmp(&b)),
                };
                order.is_some_and(|o| match self.op {
                    RowOp::Gt => o.is_gt(),
                    RowOp::Gte => o.is_ge(),
                    RowOp::Lt => o.is_lt(),
                    _ => o.is_le(),
                })
            }
        }
    }
}

/// A condition on a metric's value (`having`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub field: String,
    pub op: Comparison,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SortKey {
    pub field: String,
    #[serde(default)]
    pub order: Order,
}

pub use keel_render::ChartKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartSpec {
    #[serde(rename = "type")]
    pub kind: ChartKind,
    pub x: String,
    pub y: Vec<String>,
    pub series: Option<String>,
}

/// What a dataset's field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Text,
    Number,
    Time,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    pub name: &'static str,
    pub kind: FieldKind,
    /// Masked for principals without `pii:read` (as in exports).
    pub personal: bool,
}

/// An export dataset's fields: its columns, with their kinds.
pub fn fields(dataset: Dataset) -> Vec<Field> {
    dataset
        .columns()
        .iter()
        .map(|c| Field {
            name: c.name,
            kind: match c.kind {
                CellKind::Integer => FieldKind::Number,
                CellKind::Text if c.name == "ts" || c.name.ends_with("_at") => FieldKind::Time,
                CellKind::Text => FieldKind::Text,
            },
            personal: c.mask.is_some(),
        })
        .collect()
}

fn error(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError::new(field, message)
}

/// One column of the report's output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Output {
    pub name: String,
    pub kind: FieldKind,
    /// A group key (else a metric or, without aggregation, a column).
    pub group: bool,
}

/// A valid spec, resolved: the dataset, its filters and the output columns.
#[derive(Debug, Clone)]
pub struct Plan {
    pub source: Source,
    pub filters: Filters,
    pub outputs: Vec<Output>,
    pub aggregated: bool,
}

/// A range without `from` is checked as if it covered this many days
/// before `to`: a day bucket over an open range is too fine.
pub const OPEN_RANGE_DAYS: i64 = 3 * 365;

/// Check `spec` against its dataset at `now`. The data's time range (for
/// "grouping too fine") is the filters' `from`..`to`, `to` defaulting to
/// today and `from` to [`OPEN_RANGE_DAYS`] before it. Every problem is
/// reported, not only the first.
pub fn validate(spec: &Spec, now: DateTime<Utc>) -> Result<Plan, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(source) = Source::parse(&spec.dataset) else {
        return Err(vec![error("dataset", format!("unknown dataset `{}`: one of {}", spec.dataset, Source::names().join(", ")))]);
    };
    let fields = source.fields();
    let field = |name: &str| fields.iter().find(|f| f.name == name);
    let known = || fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", ");
    let filters = match Filters::parse(source, spec.filters.as_ref()) {
        Ok(f) => Some(f),
        Err(found) => {
            errors.extend(found);
            None
        }
    };
    let range = filters.as_ref().map(|f| {
        let (from, to) = f.range(now);
        (from.unwrap_or(to - chrono::Duration::days(OPEN_RANGE_DAYS)), to)
    });
    if spec.group_by.len() > MAX_PARTS {
        errors.push(error("group_by", format!("at most {MAX_PARTS}")));
    }
    if spec.metrics.len() > MAX_PARTS {
        errors.push(error("metrics", format!("at most {MAX_PARTS}")));
    }
    if spec.where_.len() > MAX_PARTS {
        errors.push(error("where", format!("at most {MAX_PARTS}")));
    }
    for (i, w) in spec.where_.iter().enumerate() {
        if field(&w.field).is_none() {
            errors.push(error(format!("where[{i}].field"), format!("unknown field `{}` of {}: one of {}", w.field, spec.dataset, known())));
        }
        let list = matches!(w.op, RowOp::In | RowOp::NotIn);
        let scalar = |v: &Value| v.is_string() || v.is_number() || v.is_boolean();
        if list && !w.value.as_array().is_some_and(|l| !l.is_empty() && l.len() <= 100 && l.iter().all(scalar)) {
            errors.push(error(format!("where[{i}].value"), "a list of 1 to 100 strings or numbers"));
        } else if !list && !scalar(&w.value) {
            errors.push(error(format!("where[{i}].value"), "a string or a number"));
        }
    }
    if spec.having.len() > MAX_PARTS {
        errors.push(error("having", format!("at most {MAX_PARTS}")));
    }
    let aggregated = !spec.group_by.is_empty() || !spec.metrics.is_empty();
    let mut outputs: Vec<Output> = Vec::new();
    let push = |outputs: &mut Vec<Output>, errors: &mut Vec<FieldError>, path: String, out: Output| {
        if outputs.iter().any(|o| o.name == out.name) {
            errors.push(error(path, format!("`{}` is already an output column; name this one with `as`", out.name)));
        } else {
            outputs.push(out);
        }
    };
    for (i, g) in spec.group_by.iter().enumerate() {
        let Some(f) = field(g.field()) else {
            errors.push(error(format!("group_by[{i}].field"), format!("unknown field `{}` of {}: one of {}", g.field(), spec.dataset, known())));
            continue;
        };
        match (g.bucket(), f.kind) {
            (Some(_), FieldKind::Time) | (None, FieldKind::Text) | (None, FieldKind::Number) => {}
            (Some(b), _) => errors.push(error(format!("group_by[{i}].bucket"), format!("`{}` is not a time; a {} bucket needs one", f.name, b.name()))),
            (None, FieldKind::Time) => {
                errors.push(error(format!("group_by[{i}]"), format!("`{}` is a time: group it by a bucket (day, week, month, quarter, year)", f.name)))
            }
        }
        if let (Some(b), Some((from, to)), FieldKind::Time) = (g.bucket(), range, f.kind) {
            let periods = b.periods_between(from, to);
            if periods > MAX_PERIODS {
                errors.push(error(
                    format!("group_by[{i}].bucket"),
                    format!(
                        "too fine for the range {from} to {to}: about {periods} {}s (at most {MAX_PERIODS}); choose a coarser bucket or a shorter range",
                        b.name()
                    ),
                ));
            }
        }
        push(
            &mut outputs,
            &mut errors,
            format!("group_by[{i}]"),
            Output { name: f.name.to_string(), kind: if g.bucket().is_some() { FieldKind::Text } else { f.kind }, group: true },
        );
    }
    for (i, m) in spec.metrics.iter().enumerate() {
        let kind = match (&m.field, m.op) {
            (None, MetricOp::Count) => FieldKind::Number,
            (None, op) => {
                errors.push(error(format!("metrics[{i}].field"), format!("{} needs a field", op.name())));
                continue;
            }
            (Some(name), op) => match field(name) {
                None => {
                    errors.push(error(format!("metrics[{i}].field"), format!("unknown field `{name}` of {}: one of {}", spec.dataset, known())));
                    continue;
                }
                Some(f) if op.needs_number() && f.kind != FieldKind::Number => {
                    let numbers: Vec<&str> = fields.iter().filter(|f| f.kind == FieldKind::Number).map(|f| f.name).collect();
                    errors.push(error(
                        format!("metrics[{i}].field"),
                        format!("{} needs a numeric field; `{name}` is {}{}", op.name(), kind_name(f.kind), numeric_hint(&numbers)),
                    ));
                    continue;
                }
                Some(f) if matches!(op, MetricOp::Min | MetricOp::Max) && f.kind == FieldKind::Text => {
                    errors.push(error(format!("metrics[{i}].field"), format!("{} needs a number or a time; `{name}` is text", op.name())));
                    continue;
                }
                Some(f) => match op {
                    MetricOp::Min | MetricOp::Max => f.kind,
                    _ => FieldKind::Number,
                },
            },
        };
        if let Some(alias) = &m.alias
            && !valid_name(alias)
        {
            errors.push(error(format!("metrics[{i}].as"), "1 to 64 letters, digits or underscores, starting with a letter"));
            continue;
        }
        push(&mut outputs, &mut errors, format!("metrics[{i}].as"), Output { name: m.output_name(), kind, group: false });
    }
    if aggregated {
        for (i, c) in spec.columns.iter().enumerate() {
            if !outputs.iter().any(|o| &o.name == c) {
                errors.push(error(format!("columns[{i}]"), format!("`{c}` is neither a group nor a metric of this report")));
            }
        }
    } else {
        let wanted: Vec<&str> =
            if spec.columns.is_empty() { fields.iter().map(|f| f.name).collect() } else { spec.columns.iter().map(String::as_str).collect() };
        for (i, c) in wanted.iter().enumerate() {
            match field(c) {
                Some(f) => push(&mut outputs, &mut errors, format!("columns[{i}]"), Output { name: f.name.to_string(), kind: f.kind, group: false }),
                None => errors.push(error(format!("columns[{i}]"), format!("unknown field `{c}` of {}: one of {}", spec.dataset, known()))),
            }
        }
    }
    let output = |name: &str| outputs.iter().find(|o| o.name == name);
    for (i, h) in spec.having.iter().enumerate() {
        if !aggregated {
            errors.push(error(format!("having[{i}]"), "having filters groups: add group_by or metrics"));
        } else if output(&h.field).is_none_or(|o| o.group) {
            errors.push(error(format!("having[{i}].field"), format!("`{}` is not a metric of this report", h.field)));
        }
        if !h.value.is_finite() {
            errors.push(error(format!("having[{i}].value"), "must be a finite number"));
        }
    }
    for (i, s) in spec.sort.iter().enumerate() {
        if output(&s.field).is_none() {
            errors.push(error(format!("sort[{i}].field"), format!("`{}` is not an output column of this report", s.field)));
        }
    }
    if let Some(limit) = spec.limit
        && !(1..=MAX_LIMIT).contains(&limit)
    {
        errors.push(error("limit", format!("must be 1 to {MAX_LIMIT}")));
    }
    if let Some(chart) = &spec.chart {
        // Without aggregation the rows are drawn as they are (the metric
        // sets are one row per period already).
        if output(&chart.x).is_none_or(|o| aggregated && !o.group) {
            let what = if aggregated { "a group" } else { "a column" };
            errors.push(error("chart.x", format!("`{}` is not {what} of this report", chart.x)));
        }
        if chart.y.is_empty() {
            errors.push(error("chart.y", "name at least one metric"));
        }
        for (j, y) in chart.y.iter().enumerate() {
            if output(y).is_none_or(|o| (aggregated && o.group) || o.kind != FieldKind::Number) {
                errors.push(error(format!("chart.y[{j}]"), format!("`{y}` is not a numeric metric of this report")));
            }
        }
        if let Some(series) = &chart.series
            && output(series).is_none_or(|o| aggregated && !o.group)
        {
            errors.push(error("chart.series", format!("`{series}` is not a group of this report")));
        }
        if chart.kind == ChartKind::Pie && (chart.y.len() != 1 || chart.series.is_some()) {
            errors.push(error("chart.type", "a pie shows one metric and no series"));
        }
    }
    if spec.title.as_ref().is_some_and(|t| t.chars().count() > MAX_TITLE) {
        errors.push(error("title", format!("at most {MAX_TITLE} characters")));
    }
    if spec.description.as_ref().is_some_and(|t| t.chars().count() > MAX_DESCRIPTION) {
        errors.push(error("description", format!("at most {MAX_DESCRIPTION} characters")));
    }
    match (errors.is_empty(), filters) {
        (true, Some(filters)) => Ok(Plan { source, filters, outputs, aggregated }),
        _ => Err(errors),
    }
}

fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Text => "text",
        FieldKind::Number => "a number",
        FieldKind::Time => "a time",
    }
}

fn numeric_hint(numbers: &[&str]) -> String {
    if numbers.is_empty() { " (this dataset has no numeric field; use count or count_distinct)".into() } else { format!(" (numeric: {})", numbers.join(", ")) }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic()) && name.len() <= 64 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: Value) -> Spec {
        serde_json::from_value(value).unwrap()
    }

    fn fields_of(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    fn now() -> DateTime<Utc> {
        "2026-12-31T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_grouped_orders_spec_resolves_its_outputs() {
        let s = spec(json!({
            "dataset": "orders",
            "group_by": ["country", {"field": "created_at", "bucket": "month"}],
            "metrics": [{"op": "sum", "field": "amount_cents", "as": "revenue"}, {"op": "count"}, {"op": "p90", "field": "amount_cents"}],
            "having": [{"field": "revenue", "op": "gt", "value": 0}],
            "sort": [{"field": "revenue", "order": "desc"}],
            "limit": 100,
            "chart": {"type": "stacked_bar", "x": "created_at", "y": ["revenue"], "series": "country"}
        }));
        let plan = validate(&s, now()).unwrap();
        let names: Vec<&str> = plan.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["country", "created_at", "revenue", "count", "p90_amount_cents"]);
        assert!(plan.aggregated);
    }

    #[test]
    fn every_bad_part_is_named_by_its_path() {
        let s = spec(json!({
            "dataset": "orders",
            "columns": ["nope"],
            "group_by": ["colour", {"field": "country", "bucket": "day"}, "created_at"],
            "metrics": [{"op": "sum", "field": "plan"}, {"op": "avg"}, {"op": "max", "field": "status"}, {"op": "count", "as": "9x"}],
            "having": [{"field": "country", "op": "gt", "value": 1}],
            "sort": [{"field": "missing"}],
            "limit": 0,
            "chart": {"type": "pie", "x": "plan", "y": ["country", "x"], "series": "country"}
        }));
        let errors = validate(&s, now()).unwrap_err();
        assert_eq!(
            fields_of(&errors),
            [
                "group_by[0].field",
                "group_by[1].bucket",
                "group_by[2]",
                "metrics[0].field",
                "metrics[1].field",
                "metrics[2].field",
                "metrics[3].as",
                "columns[0]",
                "having[0].field",
                "sort[0].field",
                "limit",
                "chart.x",
                "chart.y[0]",
                "chart.y[1]",
                "chart.type"
            ],
            "{errors:#?}"
        );
        assert!(errors[3].message.contains("numeric: amount_cents"), "{}", errors[3].message);
    }

    #[test]
    fn a_day_bucket_over_years_is_too_fine_and_a_month_one_is_not() {
        let by = |bucket: &str, filters: Value| {
            spec(json!({"dataset": "orders", "filters": filters, "group_by": [{"field": "created_at", "bucket": bucket}], "metrics": [{"op": "count"}]}))
        };
        let years = json!({"from": "2022-01-01T00:00:00Z"});
        let errors = validate(&by("day", years.clone()), now()).unwrap_err();
        assert_eq!(fields_of(&errors), ["group_by[0].bucket"]);
        assert!(errors[0].message.contains("too fine"), "{}", errors[0].message);
        assert!(validate(&by("month", years), now()).is_ok());
        // An open range counts as three years; a quarter of days is fine.
        assert!(validate(&by("day", json!({})), now()).is_err());
        assert!(validate(&by("day", json!({"from": "2026-10-01T00:00:00Z"})), now()).is_ok());
    }

    #[test]
    fn unknown_dataset_and_bad_filters_are_named() {
        assert_eq!(fields_of(&validate(&spec(json!({"dataset": "invoices"})), now()).unwrap_err()), ["dataset"]);
        let errors = validate(&spec(json!({"dataset": "orders", "filters": {"status": "lost"}})), now()).unwrap_err();
        assert!(fields_of(&errors).iter().all(|f| f.starts_with("filters")), "{errors:?}");
        assert!(!errors.is_empty());
    }

    #[test]
    fn raw_rows_take_known_columns_and_default_to_all() {
        let plan = validate(&spec(json!({"dataset": "users"})), now()).unwrap();
        assert!(!plan.aggregated);
        assert_eq!(plan.outputs.len(), Dataset::Users.columns().len());
        let plan = validate(&spec(json!({"dataset": "users", "columns": ["country", "email"]})), now()).unwrap();
        assert_eq!(plan.outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["country", "email"]);
    }

    #[test]
    fn metric_sets_take_their_own_filters_and_chart_their_rows() {
        let s = spec(json!({
            "dataset": "mrr_movements",
            "filters": {"from": "2026-01", "granularity": "month"},
            "columns": ["period", "new_cents", "churn_cents", "mrr_cents"],
            "chart": {"type": "stacked_bar", "x": "period", "y": ["new_cents", "churn_cents"]}
        }));
        let plan = validate(&s, now()).unwrap();
        assert!(!plan.aggregated);
        let errors = validate(&spec(json!({"dataset": "cohorts", "filters": {"plan": "pro"}})), now()).unwrap_err();
        assert_eq!(fields_of(&errors), ["filters.plan"]);
        let errors = validate(&spec(json!({"dataset": "mrr_movements", "metrics": [{"op": "sum", "field": "period"}]})), now()).unwrap_err();
        assert_eq!(fields_of(&errors), ["metrics[0].field"]);
    }

    #[test]
    fn where_conditions_check_fields_and_filter_rows() {
        let errors = validate(
            &spec(json!({"dataset": "audit", "where": [{"field": "colour", "op": "eq", "value": "x"}, {"field": "action", "op": "in", "value": "x"}]})),
            now(),
        )
        .unwrap_err();
        assert_eq!(fields_of(&errors), ["where[0].field", "where[1].value"]);
        let record = |action: &str, n: i64| json!({"action": action, "n": n}).as_object().unwrap().clone();
        let cond = |op: &str, value: Value| serde_json::from_value::<RowCondition>(json!({"field": "action", "op": op, "value": value})).unwrap();
        assert!(cond("in", json!(["chart.approve", "chart.reject"])).holds(&record("chart.reject", 1)));
        assert!(!cond("in", json!(["chart.approve"])).holds(&record("chart.create", 1)));
        assert!(cond("prefix", json!("chart.")).holds(&record("chart.create", 1)));
        assert!(cond("ne", json!("x")).holds(&json!({}).as_object().unwrap().clone()));
        let n = serde_json::from_value::<RowCondition>(json!({"field": "n", "op": "gte", "value": 10})).unwrap();
        assert!(n.holds(&record("a", 10)) && !n.holds(&record("a", 9)));
    }

    #[test]
    fn periods_between_count_every_period_touched() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let (from, to) = (d("2026-01-31"), d("2026-03-01"));
        assert_eq!(Bucket::Day.periods_between(from, to), 30);
        // A Saturday of ISO week 5 to a Sunday of week 9: five weeks.
        assert_eq!(Bucket::Week.periods_between(from, to), 5);
        assert_eq!(Bucket::Month.periods_between(from, to), 3);
        assert_eq!(Bucket::Quarter.periods_between(d("2025-12-31"), to), 2);
        assert_eq!(Bucket::Year.periods_between(d("2025-12-31"), to), 2);
        assert_eq!(Bucket::Month.periods_between(to, from), 0);
    }

    #[test]
    fn buckets_key_times_like_the_analytics_periods() {
        let t = "2026-03-05T10:00:00Z";
        let keys: Vec<String> = [Bucket::Day, Bucket::Week, Bucket::Month, Bucket::Quarter, Bucket::Year].iter().map(|b| b.key_of(t).unwrap()).collect();
        assert_eq!(keys, ["2026-03-05", "2026-W10", "2026-03", "2026-Q1", "2026"]);
        assert_eq!(Bucket::Day.key_of("garbage"), None);
    }
}
