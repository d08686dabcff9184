//! What a report reads: the export datasets (users, charts, orders,
//! activity, audit: the same queries, permissions and PII masking as
//! exports) and the analytics metric sets (revenue and MRR movements,
//! business metrics, cohorts, RFM segments, forecasts, at-risk customers)
//! plus the subject-request log. Either way a report sees *records*
//! (field → JSON value), read page by page, so one engine (`engine`) runs
//! every spec.
//!
//! The metric sets come from the analytics function's own `compute`
//! functions (`analytics::revenue::compute`, …): a report's MRR is the
//! dashboard's MRR, by the definitions of docs/analytics.md.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use shared::audit::Journal;
use shared::domain::export::{self, Dataset, PAGE_SIZE, Position};
use shared::domain::subject_requests;
use shared::platform::error::{Error, FieldError, Result};

use crate::spec::{Field, FieldKind};

/// An analytics metric set (or the subject-request log): records computed
/// from the rollups, one per period (or cohort month, segment, customer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricSet {
    /// Revenue and MRR per period: gross, refunds, net, MRR and its
    /// movements, customers, churn rates, NRR, GRR, quick ratio, ARPA, LTV.
    MrrMovements,
    /// Signups, activations, funnel, active users, charts, moderation.
    Business,
    /// Cohort retention: one record per cohort month × months since signup.
    Cohorts,
    /// RFM segments: size and revenue.
    Segments,
    /// Forecast points with their intervals, per series.
    Forecasts,
    /// Customers scored by the churn model, riskiest first.
    AtRisk,
    /// GDPR/CCPA subject requests: kind, regime, status, deadline, closing.
    SubjectRequests,
}

/// A report's source of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Export(Dataset),
    Metrics(MetricSet),
}

const EXPORTS: [Dataset; 5] = [Dataset::Users, Dataset::Charts, Dataset::Orders, Dataset::Activity, Dataset::Audit];
const METRIC_SETS: [MetricSet; 7] = [
    MetricSet::MrrMovements,
    MetricSet::Business,
    MetricSet::Cohorts,
    MetricSet::Segments,
    MetricSet::Forecasts,
    MetricSet::AtRisk,
    MetricSet::SubjectRequests,
];

use FieldKind::{Number as N, Text as T, Time as Ti};

const MRR_FIELDS: &[(&str, FieldKind)] = &[
    ("period", T),
    ("partial", T),
    ("gross_cents", N),
    ("refunds_cents", N),
    ("net_cents", N),
    ("orders", N),
    ("refunded_orders", N),
    ("mrr_start_cents", N),
    ("mrr_cents", N),
    ("arr_cents", N),
    ("new_cents", N),
    ("reactivation_cents", N),
    ("expansion_cents", N),
    ("contraction_cents", N),
    ("churn_cents", N),
    ("mrr_change_cents", N),
    ("customers_start", N),
    ("customers", N),
    ("new_customers", N),
    ("reactivated_customers", N),
    ("churned_customers", N),
    ("arpa_cents", N),
    ("customer_churn_rate", N),
    ("gross_mrr_churn_rate", N),
    ("net_mrr_churn_rate", N),
    ("nrr", N),
    ("grr", N),
    ("quick_ratio", N),
    ("ltv_cents", N),
];

const BUSINESS_FIELDS: &[(&str, FieldKind)] = &[
    ("period", T),
    ("partial", T),
    ("signups", N),
    ("activations", N),
    ("paid", N),
    ("activation_rate", N),
    ("paid_rate", N),
    ("signup_to_paid_rate", N),
    ("mau", N),
    ("dau_avg", N),
    ("wau_avg", N),
    ("stickiness", N),
    ("charts_created", N),
    ("moderation_decisions", N),
    ("moderation_approved", N),
    ("moderation_rejected", N),
    ("moderation_flagged", N),
    ("moderation_hidden", N),
    ("median_hours_to_first_decision", N),
    ("moderation_backlog_end", N),
];

const COHORT_FIELDS: &[(&str, FieldKind)] =
    &[("cohort", T), ("size", N), ("months_since", N), ("active_users", N), ("user_retention", N), ("mrr_cents", N), ("revenue_retention", N)];

const SEGMENT_FIELDS: &[(&str, FieldKind)] = &[("segment", T), ("customers", N), ("revenue_cents", N), ("share", N)];

const FORECAST_FIELDS: &[(&str, FieldKind)] = &[
    ("series", T),
    ("period", T),
    ("step", N),
    ("point", N),
    ("lower_80", N),
    ("upper_80", N),
    ("lower_95", N),
    ("upper_95", N),
    ("model", T),
    ("relative_mase", N),
];

const AT_RISK_FIELDS: &[(&str, FieldKind)] = &[("rank", N), ("user_id", T), ("probability", N), ("mrr_cents", N), ("plan", T), ("reasons", T)];

const SUBJECT_REQUEST_FIELDS: &[(&str, FieldKind)] = &[
    ("id", T),
    ("kind", T),
    ("regime", T),
    ("status", T),
    ("received_at", Ti),
    ("due_at", Ti),
    ("completed_at", Ti),
    ("days_to_close", N),
    ("days_left", N),
    ("overdue", T),
];

impl MetricSet {
    pub fn name(self) -> &'static str {
        match self {
            MetricSet::MrrMovements => "mrr_movements",
            MetricSet::Business => "business",
            MetricSet::Cohorts => "cohorts",
            MetricSet::Segments => "segments",
            MetricSet::Forecasts => "forecasts",
            MetricSet::AtRisk => "at_risk",
            MetricSet::SubjectRequests => "subject_requests",
        }
    }

    fn fields(self) -> &'static [(&'static str, FieldKind)] {
        match self {
            MetricSet::MrrMovements => MRR_FIELDS,
            MetricSet::Business => BUSINESS_FIELDS,
            MetricSet::Cohorts => COHORT_FIELDS,
            MetricSet::Segments => SEGMENT_FIELDS,
            MetricSet::Forecasts => FORECAST_FIELDS,
            MetricSet::AtRisk => AT_RISK_FIELDS,
            MetricSet::SubjectRequests => SUBJECT_REQUEST_FIELDS,
        }
    }

    /// The filters it takes (`MetricFilters` fields).
    fn filters(self) -> &'static [&'static str] {
        match self {
            MetricSet::MrrMovements => &["from", "to", "granularity", "country", "plan", "segment"],
            MetricSet::Business => &["from", "to", "granularity", "country", "segment"],
            MetricSet::Cohorts | MetricSet::Segments => &["from", "to", "country"],
            MetricSet::Forecasts => &["series"],
            MetricSet::AtRisk => &[],
            MetricSet::SubjectRequests => &["from", "to"],
        }
    }
}

impl Source {
    pub fn parse(name: &str) -> Option<Source> {
        EXPORTS.into_iter().find(|d| d.as_str() == name).map(Source::Export).or_else(|| METRIC_SETS.into_iter().find(|m| m.name() == name).map(Source::Metrics))
    }

    pub fn name(self) -> &'static str {
        match self {
            Source::Export(d) => d.as_str(),
            Source::Metrics(m) => m.name(),
        }
    }

    /// Every source's name, for error messages and the builder's catalog.
    pub fn names() -> Vec<&'static str> {
        EXPORTS.iter().map(|d| d.as_str()).chain(METRIC_SETS.iter().map(|m| m.name())).collect()
    }

    pub fn all() -> Vec<Source> {
        EXPORTS.into_iter().map(Source::Export).chain(METRIC_SETS.into_iter().map(Source::Metrics)).collect()
    }

    /// The source's fields and what each holds.
    pub fn fields(self) -> Vec<Field> {
        match self {
            Source::Export(dataset) => crate::spec::fields(dataset),
            Source::Metrics(m) => m.fields().iter().map(|&(name, kind)| Field { name, kind, personal: false }).collect(),
        }
    }

    /// Reading it needs `audit:read` besides `reports:write` (as exporting it does).
    pub fn needs_audit_read(self) -> bool {
        self == Source::Export(Dataset::Audit)
    }
}

/// The filters of a metric set: the analytics routes' query parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricFilters {
    pub from: Option<String>,
    pub to: Option<String>,
    pub granularity: Option<String>,
    pub country: Option<String>,
    pub plan: Option<String>,
    pub segment: Option<String>,
    pub series: Option<String>,
}

impl MetricFilters {
    pub fn parse(set: MetricSet, value: Option<&Value>) -> std::result::Result<MetricFilters, Vec<FieldError>> {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(MetricFilters::default());
        };
        let Some(object) = value.as_object() else {
            return Err(vec![FieldError::new("filters", "must be an object")]);
        };
        let allowed = set.filters();
        let mut errors = Vec::new();
        for (key, v) in object {
            if !allowed.contains(&key.as_str()) {
                let hint = if allowed.is_empty() { "it takes none".to_string() } else { format!("one of {}", allowed.join(", ")) };
                errors.push(FieldError::new(format!("filters.{key}"), format!("not a filter of {}: {hint}", set.name())));
            } else if !v.is_string() && !v.is_null() {
                errors.push(FieldError::new(format!("filters.{key}"), "must be a string"));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        serde_json::from_value(value.clone()).map_err(|e| vec![FieldError::new("filters", e.to_string())])
    }
}

/// A source's filters, checked.
#[derive(Debug, Clone)]
pub enum Filters {
    Export(export::Filters),
    Metrics(MetricSet, MetricFilters),
}

impl Filters {
    pub fn parse(source: Source, value: Option<&Value>) -> std::result::Result<Filters, Vec<FieldError>> {
        match source {
            Source::Export(dataset) => match export::Filters::parse(dataset, value) {
                Ok(f) => Ok(Filters::Export(f)),
                Err(Error::Validation(found)) => Err(found),
                Err(e) => Err(vec![FieldError::new("filters", e.to_string())]),
            },
            Source::Metrics(set) => MetricFilters::parse(set, value).map(|f| Filters::Metrics(set, f)),
        }
    }

    /// The days the data covers, as far as the filters say (`from`/`to`
    /// as RFC 3339 times, days, months or other period keys).
    pub fn range(&self, now: DateTime<Utc>) -> (Option<NaiveDate>, NaiveDate) {
        let value = match self {
            Filters::Export(f) => serde_json::to_value(f).unwrap_or(Value::Null),
            Filters::Metrics(_, f) => serde_json::to_value(f).unwrap_or(Value::Null),
        };
        let day = |key: &str| value.get(key).and_then(Value::as_str).and_then(day_of);
        (day("from"), day("to").unwrap_or_else(|| now.date_naive()))
    }
}

/// The first day of a time, day, month (`2026-03`) or year.
fn day_of(text: &str) -> Option<NaiveDate> {
    if let Some(d) = text.get(..10).and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()) {
        return Some(d);
    }
    if let Some(d) = text.get(..7).and_then(|m| NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d").ok()) {
        return Some(d);
    }
    text.get(..4).and_then(|y| NaiveDate::parse_from_str(&format!("{y}-01-01"), "%Y-%m-%d").ok())
}

pub type Record = Map<String, Value>;

/// Records of a source, page by page.
pub enum Records {
    Export {
        plan: Vec<export::Partition>,
        position: Position,
        columns: &'static [export::Column],
        mask: bool,
    },
    Memory(Option<Vec<Record>>),
    /// Pages from anywhere (benchmarks feed generated rows this way).
    Pages(Box<dyn Iterator<Item = Vec<Record>> + Send>),
}

impl Records {
    /// Open `filters`' records; the metric sets are computed here (a few
    /// item reads), the datasets are read by `next_page`.
    pub async fn open(store: &Journal, filters: &Filters, mask: bool, now: DateTime<Utc>) -> Result<Records> {
        Ok(match filters {
            Filters::Export(f) => {
                let dataset = f.dataset().ok_or_else(|| Error::internal("a report reads a dataset, not one's own data"))?;
                Records::Export { plan: f.plan(now)?, position: Position::default(), columns: dataset.columns(), mask }
            }
            Filters::Metrics(set, f) => Records::Memory(Some(metric_records(store, *set, f, now).await?)),
        })
    }

    /// The next page of records; `None` at the end.
    pub async fn next_page(&mut self, store: Option<&Journal>) -> Result<Option<Vec<Record>>> {
        match self {
            Records::Export { plan, position, columns, mask } => {
                let store = store.ok_or_else(|| Error::internal("a dataset is read from the table"))?;
                let Some(items) = export::read_page(store, plan, position, PAGE_SIZE).await? else {
                    return Ok(None);
                };
                Ok(Some(
                    items
                        .iter()
                        .map(|(source, item)| {
                            let cells = export::row_of(*source, item, columns, *mask);
                            columns.iter().zip(cells).map(|(c, cell)| (c.name.to_string(), cell_value(cell))).collect()
                        })
                        .collect(),
                ))
            }
            Records::Memory(records) => Ok(records.take()),
            Records::Pages(pages) => Ok(pages.next()),
        }
    }
}

fn cell_value(cell: export::Cell) -> Value {
    match cell {
        export::Cell::Null => Value::Null,
        export::Cell::Int(n) => Value::from(n),
        export::Cell::Text(t) => Value::String(t),
    }
}

/// A JSON object's scalar members, nested objects flattened with
/// `prefix_` (arrays left out).
fn flatten(value: &Value, prefix: &str, out: &mut Record) {
    if let Value::Object(map) = value {
        for (k, v) in map {
            let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}_{k}") };
            match v {
                Value::Object(_) => flatten(v, &name, out),
                Value::Array(_) => {}
                Value::Bool(b) => {
                    out.insert(name, Value::String(b.to_string()));
                }
                other => {
                    out.insert(name, other.clone());
                }
            }
        }
    }
}

/// Keep `fields` of `record`, in their order (missing ones null).
fn pick(record: &Record, fields: &[(&str, FieldKind)]) -> Record {
    fields.iter().map(|(name, _)| (name.to_string(), record.get(*name).cloned().unwrap_or(Value::Null))).collect()
}

fn to_value<T: Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::internal(e.to_string()))
}

fn query<T: serde::de::DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::field("filters", e.to_string()))
}

async fn metric_records(store: &Journal, set: MetricSet, f: &MetricFilters, now: DateTime<Utc>) -> Result<Vec<Record>> {
    let fields = set.fields();
    match set {
        MetricSet::MrrMovements => {
            let q: analytics::revenue::RevenueQuery = query(json!({
                "from": f.from, "to": f.to, "granularity": f.granularity, "country": f.country, "plan": f.plan, "segment": f.segment,
            }))?;
            let report = analytics::revenue::compute(store, &q).await?;
            report
                .periods
                .iter()
                .map(|p| {
                    let mut record = Record::new();
                    let mut value = to_value(p)?;
                    // The movements' own net is the MRR change; the period's net is revenue.
                    if let Some(m) = value.get_mut("movements").and_then(Value::as_object_mut)
                        && let Some(net) = m.remove("net_cents")
                    {
                        m.insert("mrr_change_cents".into(), net);
                    }
                    let movements = value.as_object_mut().and_then(|o| o.remove("movements")).unwrap_or(Value::Null);
                    flatten(&value, "", &mut record);
                    flatten(&movements, "", &mut record);
                    Ok(pick(&record, fields))
                })
                .collect()
        }
        MetricSet::Business => {
            let q: analytics::business::BusinessQuery =
                query(json!({ "from": f.from, "to": f.to, "granularity": f.granularity, "country": f.country, "segment": f.segment }))?;
            let report = analytics::business::compute(store, &q).await?;
            report
                .periods
                .iter()
                .map(|p| {
                    let mut record = Record::new();
                    record.insert("period".into(), Value::String(p.period.clone()));
                    record.insert("partial".into(), Value::String(p.partial.to_string()));
                    let figures = to_value(&p.figures)?;
                    let moderation = figures.get("moderation").cloned().unwrap_or(Value::Null);
                    flatten(&figures, "", &mut record);
                    for (from, to) in [
                        ("decisions", "moderation_decisions"),
                        ("approved", "moderation_approved"),
                        ("rejected", "moderation_rejected"),
                        ("flagged", "moderation_flagged"),
                        ("hidden", "moderation_hidden"),
                        ("median_hours_to_first_decision", "median_hours_to_first_decision"),
                        ("backlog_end", "moderation_backlog_end"),
                    ] {
                        record.insert(to.into(), moderation.get(from).cloned().unwrap_or(Value::Null));
                    }
                    Ok(pick(&record, fields))
                })
                .collect()
        }
        MetricSet::Cohorts | MetricSet::Segments => {
            let q: analytics::segments::SegmentsQuery = query(json!({ "from": f.from, "to": f.to, "country": f.country }))?;
            let report = analytics::segments::compute(store, &q).await?;
            if set == MetricSet::Segments {
                return report.rfm.segments.iter().map(|s| Ok(pick(to_value(s)?.as_object().unwrap_or(&Record::new()), fields))).collect();
            }
            let mut out = Vec::new();
            for cohort in &report.cohorts {
                for month in &cohort.months {
                    let mut record = Record::new();
                    flatten(&to_value(month)?, "", &mut record);
                    record.insert("cohort".into(), Value::String(cohort.cohort.clone()));
                    record.insert("size".into(), Value::from(cohort.size));
                    out.push(pick(&record, fields));
                }
            }
            Ok(out)
        }
        MetricSet::Forecasts | MetricSet::AtRisk => {
            let q: analytics::predictions::PredictionsQuery =
                query(json!({ "series": f.series, "customers": if set == MetricSet::AtRisk { 500 } else { 0 } }))?;
            let predictions = analytics::predictions::compute(store, &q).await?;
            if set == MetricSet::AtRisk {
                return Ok(predictions
                    .at_risk
                    .iter()
                    .enumerate()
                    .map(|(i, customer)| {
                        let mut record = Record::new();
                        flatten(customer, "", &mut record);
                        record.insert("rank".into(), Value::from(i + 1));
                        let reasons = customer
                            .get("reasons")
                            .and_then(Value::as_array)
                            .map(|r| r.iter().map(|x| x.get("feature").or(x.get("reason")).unwrap_or(x)).map(text_of).collect::<Vec<_>>().join("; "));
                        record.insert("reasons".into(), reasons.map_or(Value::Null, Value::String));
                        pick(&record, fields)
                    })
                    .collect());
            }
            Ok(predictions.forecasts.iter().flat_map(forecast_records).collect())
        }
        MetricSet::SubjectRequests => {
            let (from, to) = (f.from.as_deref().and_then(day_of), f.to.as_deref().and_then(day_of));
            let mut out = Vec::new();
            let mut cursor = None;
            loop {
                let page = subject_requests::list_all(store, cursor, 100).await?;
                for request in page.items {
                    let received = request.received_at.get(..10).and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
                    if received.is_some_and(|r| from.is_some_and(|f| r < f) || to.is_some_and(|t| r > t)) {
                        continue;
                    }
                    let view = subject_requests::SubjectRequestView::from(request.clone());
                    let days = |a: &str, b: &str| match (DateTime::parse_from_rfc3339(a), DateTime::parse_from_rfc3339(b)) {
                        (Ok(a), Ok(b)) => Some(((b - a).num_minutes() as f64 / 1440.0 * 10.0).round() / 10.0),
                        _ => None,
                    };
                    let open = request.completed_at.is_none();
                    out.push(pick(
                        &Record::from_iter([
                            ("id".to_string(), json!(request.id)),
                            ("kind".into(), to_value(&request.kind)?),
                            ("regime".into(), to_value(&request.regime)?),
                            ("status".into(), to_value(&request.status)?),
                            ("received_at".into(), json!(request.received_at)),
                            ("due_at".into(), json!(request.due_at)),
                            ("completed_at".into(), json!(request.completed_at)),
                            ("days_to_close".into(), json!(request.completed_at.as_deref().and_then(|c| days(&request.received_at, c)))),
                            ("days_left".into(), json!(if open { days(&now.to_rfc3339(), &request.due_at) } else { None })),
                            ("overdue".into(), json!(view.overdue.to_string())),
                        ]),
                        fields,
                    ));
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => return Ok(out),
                }
            }
        }
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A forecast's points as records: one per step ahead, with its period
/// when the forecast says where it starts.
fn forecast_records(forecast: &Value) -> Vec<Record> {
    let series = forecast.get("series").map(text_of).unwrap_or_default();
    let model = forecast.get("model").map(text_of);
    let relative_mase = forecast.get("backtest").and_then(|b| b.get("relative_mase")).cloned().unwrap_or(Value::Null);
    let start = forecast.get("start").and_then(Value::as_str).and_then(|s| NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok());
    let granularity = forecast.get("granularity").and_then(Value::as_str).unwrap_or("day");
    let column = |name: &str| forecast.get(name).and_then(Value::as_array).cloned().unwrap_or_default();
    let (point, l80, u80, l95, u95) = (column("point"), column("lower_80"), column("upper_80"), column("lower_95"), column("upper_95"));
    (0..point.len())
        .map(|i| {
            let period = start.map(|s| match granularity {
                "week" => (s + chrono::Duration::weeks(i as i64)).format("%Y-%m-%d").to_string(),
                "month" => s.checked_add_months(chrono::Months::new(i as u32)).map_or_else(String::new, |d| d.format("%Y-%m").to_string()),
                _ => (s + chrono::Duration::days(i as i64)).format("%Y-%m-%d").to_string(),
            });
            Record::from_iter([
                ("series".to_string(), Value::String(series.clone())),
                ("period".into(), period.map_or(Value::Null, Value::String)),
                ("step".into(), Value::from(i + 1)),
                ("point".into(), point[i].clone()),
                ("lower_80".into(), l80.get(i).cloned().unwrap_or(Value::Null)),
                ("upper_80".into(), u80.get(i).cloned().unwrap_or(Value::Null)),
                ("lower_95".into(), l95.get(i).cloned().unwrap_or(Value::Null)),
                ("upper_95".into(), u95.get(i).cloned().unwrap_or(Value::Null)),
                ("model".into(), model.clone().map_or(Value::Null, Value::String)),
                ("relative_mase".into(), relative_mase.clone()),
            ])
        })
        .collect()
}
