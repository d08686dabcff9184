//! The report builder's model (issue 13): a spec over one dataset (columns,
//! filters, group-bys with time buckets, metrics, having, sort, limit,
//! chart) and its validation, which names every bad field by its path
//! (`group_by[1].bucket`, `metrics[0].field`): what a drag-and-drop builder
//! calls on every change, before anything runs.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::domain::export::{self, CellKind, Dataset};
use shared::domain::periods::Granularity;
use shared::platform::error::{Error, FieldError};

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

    /// Periods of this bucket from `from` to `to` (both included).
    pub fn periods_between(self, from: NaiveDate, to: NaiveDate) -> i64 {
        let days = (to - from).num_days() + 1;
        match self {
            Bucket::Day => days,
            Bucket::Week => days.div_euclid(7) + 2,
            Bucket::Month => days / 28 + 2,
            Bucket::Quarter => days / 90 + 2,
            Bucket::Year => days / 365 + 2,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    Line,
    Bar,
    StackedBar,
    Area,
    Pie,
    Table,
}

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

/// A dataset by its name in a spec.
pub fn dataset(name: &str) -> Option<Dataset> {
    [Dataset::Users, Dataset::Charts, Dataset::Orders, Dataset::Activity, Dataset::Audit].into_iter().find(|d| d.as_str() == name)
}

/// A dataset's fields: the export's columns, with their kinds.
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
    pub dataset: Dataset,
    pub filters: export::Filters,
    pub outputs: Vec<Output>,
    pub aggregated: bool,
}

/// Check `spec` against its dataset; `range` is the data's time range
/// (from the filters, or the dataset's whole history) for "grouping too fine".
/// Every problem is reported, not only the first.
pub fn validate(spec: &Spec, range: Option<(NaiveDate, NaiveDate)>) -> Result<Plan, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(dataset) = dataset(&spec.dataset) else {
        return Err(vec![error("dataset", format!("unknown dataset `{}`: one of users, charts, orders, activity, audit", spec.dataset))]);
    };
    let fields = fields(dataset);
    let field = |name: &str| fields.iter().find(|f| f.name == name);
    let known = || fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", ");
    let filters = match export::Filters::parse(dataset, spec.filters.as_ref()) {
        Ok(f) => Some(f),
        Err(Error::Validation(found)) => {
            errors.extend(found);
            None
        }
        Err(e) => {
            errors.push(error("filters", e.to_string()));
            None
        }
    };
    if spec.group_by.len() > MAX_PARTS {
        errors.push(error("group_by", format!("at most {MAX_PARTS}")));
    }
    if spec.metrics.len() > MAX_PARTS {
        errors.push(error("metrics", format!("at most {MAX_PARTS}")));
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
        if let (Some(b), Some((from, to))) = (g.bucket(), range) {
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
        if !aggregated && chart.kind != ChartKind::Table {
            errors.push(error("chart.type", "a chart other than a table needs group_by and metrics"));
        }
        if output(&chart.x).is_none_or(|o| aggregated && !o.group) {
            errors.push(error("chart.x", format!("`{}` is not a group of this report", chart.x)));
        }
        if chart.y.is_empty() {
            errors.push(error("chart.y", "name at least one metric"));
        }
        for (j, y) in chart.y.iter().enumerate() {
            if output(y).is_none_or(|o| o.group || o.kind != FieldKind::Number) {
                errors.push(error(format!("chart.y[{j}]"), format!("`{y}` is not a numeric metric of this report")));
            }
        }
        if let Some(series) = &chart.series
            && output(series).is_none_or(|o| !o.group)
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
        (true, Some(filters)) => Ok(Plan { dataset, filters, outputs, aggregated }),
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

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
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
        let plan = validate(&s, Some((day("2025-01-01"), day("2026-12-31")))).unwrap();
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
        let errors = validate(&s, None).unwrap_err();
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
        let by = |bucket: &str| spec(json!({"dataset": "activity", "group_by": [{"field": "ts", "bucket": bucket}], "metrics": [{"op": "count"}]}));
        let range = Some((day("2022-01-01"), day("2026-12-31")));
        let errors = validate(&by("day"), range).unwrap_err();
        assert_eq!(fields_of(&errors), ["group_by[0].bucket"]);
        assert!(errors[0].message.contains("too fine"), "{}", errors[0].message);
        assert!(validate(&by("month"), range).is_ok());
    }

    #[test]
    fn unknown_dataset_and_bad_filters_are_named() {
        assert_eq!(fields_of(&validate(&spec(json!({"dataset": "invoices"})), None).unwrap_err()), ["dataset"]);
        let errors = validate(&spec(json!({"dataset": "orders", "filters": {"status": "lost"}})), None).unwrap_err();
        assert!(fields_of(&errors).iter().all(|f| f.starts_with("filters")), "{errors:?}");
        assert!(!errors.is_empty());
    }

    #[test]
    fn raw_rows_take_known_columns_and_default_to_all() {
        let plan = validate(&spec(json!({"dataset": "users"})), None).unwrap();
        assert!(!plan.aggregated);
        assert_eq!(plan.outputs.len(), Dataset::Users.columns().len());
        let plan = validate(&spec(json!({"dataset": "users", "columns": ["country", "email"]})), None).unwrap();
        assert_eq!(plan.outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["country", "email"]);
    }

    #[test]
    fn buckets_key_times_like_the_analytics_periods() {
        let t = "2026-03-05T10:00:00Z";
        let keys: Vec<String> = [Bucket::Day, Bucket::Week, Bucket::Month, Bucket::Quarter, Bucket::Year].iter().map(|b| b.key_of(t).unwrap()).collect();
        assert_eq!(keys, ["2026-03-05", "2026-W10", "2026-03", "2026-Q1", "2026"]);
        assert_eq!(Bucket::Day.key_of("garbage"), None);
    }
}
