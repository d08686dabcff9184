//! The report templates: each is a title, its parameters, and the specs of
//! its sections (any dataset or metric set) plus the KPI tiles computed
//! from their tables. A template is nothing a user could not build with
//! specs; it is the reports operators ask for first, ready to run and
//! schedule.

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use keel_render::Unit;
use serde::Serialize;
use serde_json::{Map, Value, json};
use shared::platform::error::FieldError;
use utoipa::ToSchema;

use crate::spec::Spec;

/// What a parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// `yyyy-mm`.
    Month,
    /// `yyyy-mm-dd`.
    Date,
    /// ISO 3166-1 alpha-2 in capitals.
    Country,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Param {
    pub name: &'static str,
    pub kind: ParamKind,
    pub description: &'static str,
    /// What it is when not given (computed from today).
    pub default: Option<String>,
}

/// A template as `GET /reports/templates` lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateInfo {
    pub id: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub parameters: Vec<Param>,
    /// Every format it generates in.
    #[schema(value_type = Vec<String>)]
    pub formats: Vec<crate::generate::ReportFormat>,
    /// Datasets it reads (the audit log needs `audit:read` too).
    pub datasets: Vec<&'static str>,
}

/// How a KPI is computed from a section's table.
#[derive(Debug, Clone, PartialEq)]
pub enum Reduce {
    Sum(&'static str),
    /// The last row's value, its change against the row before.
    Last(&'static str),
    Median(&'static str),
    Rows,
    /// Rows whose column has this value.
    RowsWhere(&'static str, &'static str),
    /// Sum of the third column over the rows whose first has the value.
    RowsWhereSum(&'static str, &'static str, &'static str),
    /// Sum of one column ÷ sum of another.
    Ratio(&'static str, &'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct KpiSpec {
    pub label: &'static str,
    pub section: usize,
    pub reduce: Reduce,
    /// Default: the column's unit.
    pub unit: Option<Unit>,
}

#[derive(Debug, Clone)]
pub struct SectionSpec {
    pub title: String,
    pub spec: Spec,
}

/// A template with its parameters applied.
#[derive(Debug, Clone)]
pub struct Built {
    pub title: String,
    pub description: String,
    pub parameters: Vec<(String, String)>,
    pub sections: Vec<SectionSpec>,
    pub kpis: Vec<KpiSpec>,
}

struct Template {
    id: &'static str,
    title: &'static str,
    description: &'static str,
    params: &'static [(&'static str, ParamKind, &'static str)],
    datasets: &'static [&'static str],
}

const FROM_MONTH: (&str, ParamKind, &str) = ("from", ParamKind::Month, "First month (default: 11 months before `to`)");
const TO_MONTH: (&str, ParamKind, &str) = ("to", ParamKind::Month, "Last month (default: this month)");
const FROM_DAY: (&str, ParamKind, &str) = ("from", ParamKind::Date, "First day (default: 90 days before `to`)");
const TO_DAY: (&str, ParamKind, &str) = ("to", ParamKind::Date, "Last day (default: today)");
const COUNTRY: (&str, ParamKind, &str) = ("country", ParamKind::Country, "Only this country (default: all)");

const TEMPLATES: &[Template] = &[
    Template {
        id: "executive_summary",
        title: "Executive summary",
        description: "MRR, ARR, net revenue, customers, NRR and signups as KPI tiles; MRR movements and the signup funnel per month.",
        params: &[FROM_MONTH, TO_MONTH, COUNTRY],
        datasets: &["mrr_movements", "business"],
    },
    Template {
        id: "revenue_by_country_and_plan",
        title: "Revenue by country and plan",
        description: "Gross order revenue, orders and customers per country and plan, refunds per country, and revenue per month by country, from the orders.",
        params: &[FROM_DAY, TO_DAY],
        datasets: &["orders"],
    },
    Template {
        id: "mrr_movements_and_nrr",
        title: "MRR movements and net revenue retention",
        description: "New, reactivation, expansion, contraction and churn MRR per month, with NRR, GRR and the quick ratio.",
        params: &[FROM_MONTH, TO_MONTH, COUNTRY],
        datasets: &["mrr_movements"],
    },
    Template {
        id: "cohort_retention",
        title: "Cohort retention",
        description: "Users and revenue retained per signup cohort, month by month since signup.",
        params: &[FROM_MONTH, TO_MONTH, COUNTRY],
        datasets: &["cohorts"],
    },
    Template {
        id: "churn_and_at_risk",
        title: "Churn and at-risk customers",
        description: "Customer and MRR churn per month, and the customers the churn model ranks most at risk, with its reasons.",
        params: &[FROM_MONTH, TO_MONTH],
        datasets: &["mrr_movements", "at_risk"],
    },
    Template {
        id: "signups_and_activation",
        title: "Signups and activation funnel",
        description: "Signups, activations (first chart within 7 days) and conversions to paid per month, and signups by country.",
        params: &[FROM_MONTH, TO_MONTH, COUNTRY],
        datasets: &["business", "users"],
    },
    Template {
        id: "moderation",
        title: "Moderation queue and moderator throughput",
        description: "Charts by moderation state, decisions and time to first decision per month, and decisions per moderator.",
        params: &[FROM_MONTH, TO_MONTH],
        datasets: &["charts", "business", "audit"],
    },
    Template {
        id: "security_and_audit",
        title: "Security and audit activity",
        description: "Audit entries per day by outcome, the most frequent actions, and the principals with the most refused or failed actions.",
        params: &[FROM_DAY, TO_DAY],
        datasets: &["audit"],
    },
    Template {
        id: "subject_requests",
        title: "GDPR/CCPA request log",
        description: "Every subject request with its deadline (GDPR 30 days, CCPA 45), days left or days it took, and the requests by kind and status.",
        params: &[FROM_DAY, TO_DAY],
        datasets: &["subject_requests"],
    },
];

/// Every template as the API lists it.
pub fn list(now: DateTime<Utc>) -> Vec<TemplateInfo> {
    TEMPLATES
        .iter()
        .map(|t| TemplateInfo {
            id: t.id,
            title: t.title,
            description: t.description,
            parameters: t.params.iter().map(|&(name, kind, description)| Param { name, kind, description, default: default_of(t, name, now) }).collect(),
            formats: crate::generate::ReportFormat::ALL.to_vec(),
            datasets: t.datasets.to_vec(),
        })
        .collect()
}

pub fn exists(id: &str) -> bool {
    TEMPLATES.iter().any(|t| t.id == id)
}

pub fn ids() -> Vec<&'static str> {
    TEMPLATES.iter().map(|t| t.id).collect()
}

fn month_kind(t: &Template, name: &str) -> Option<ParamKind> {
    t.params.iter().find(|p| p.0 == name).map(|p| p.1)
}

fn default_of(t: &Template, name: &str, now: DateTime<Utc>) -> Option<String> {
    let today = now.date_naive();
    match (name, month_kind(t, name)?) {
        ("to", ParamKind::Month) => Some(today.format("%Y-%m").to_string()),
        ("from", ParamKind::Month) => today.with_day(1).and_then(|d| d.checked_sub_months(Months::new(11))).map(|d| d.format("%Y-%m").to_string()),
        ("to", ParamKind::Date) => Some(today.format("%Y-%m-%d").to_string()),
        ("from", ParamKind::Date) => Some((today - chrono::Duration::days(90)).format("%Y-%m-%d").to_string()),
        _ => None,
    }
}

fn spec(value: Value) -> Spec {
    serde_json::from_value(value).expect("a template's spec is well-formed")
}

fn section(title: &str, value: Value) -> SectionSpec {
    SectionSpec { title: title.to_string(), spec: spec(value) }
}

/// The template `id` with `parameters` (errors name `parameters.<name>`).
pub fn build(id: &str, parameters: &Map<String, Value>, now: DateTime<Utc>) -> Result<Built, Vec<FieldError>> {
    let Some(t) = TEMPLATES.iter().find(|t| t.id == id) else {
        return Err(vec![FieldError::new("template", format!("unknown template `{id}`: one of {}", ids().join(", ")))]);
    };
    let mut errors = Vec::new();
    for name in parameters.keys() {
        if month_kind(t, name).is_none() {
            let known: Vec<&str> = t.params.iter().map(|p| p.0).collect();
            errors.push(FieldError::new(format!("parameters.{name}"), format!("not a parameter of {id}: one of {}", known.join(", "))));
        }
    }
    let mut values: Vec<(String, String)> = Vec::new();
    for &(name, kind, _) in t.params {
        let value = match parameters.get(name) {
            None | Some(Value::Null) => default_of(t, name, now),
            Some(Value::String(v)) => {
                let ok = match kind {
                    ParamKind::Month => NaiveDate::parse_from_str(&format!("{v}-01"), "%Y-%m-%d").is_ok() && v.len() == 7,
                    ParamKind::Date => NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok(),
                    ParamKind::Country => v.len() == 2 && v.bytes().all(|b| b.is_ascii_uppercase()),
                };
                if !ok {
                    let want = match kind {
                        ParamKind::Month => "a month, yyyy-mm",
                        ParamKind::Date => "a date, yyyy-mm-dd",
                        ParamKind::Country => "an ISO 3166-1 alpha-2 code in capitals, e.g. US",
                    };
                    errors.push(FieldError::new(format!("parameters.{name}"), format!("must be {want}")));
                }
                Some(v.clone())
            }
            Some(_) => {
                errors.push(FieldError::new(format!("parameters.{name}"), "must be a string"));
                None
            }
        };
        if let Some(v) = value {
            values.push((name.to_string(), v));
        }
    }
    let get = |name: &str| values.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    if let (Some(from), Some(to)) = (get("from"), get("to"))
        && errors.is_empty()
        && from > to
    {
        errors.push(FieldError::new("parameters.from", "must not be after `to`"));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (from, to, country) = (get("from"), get("to"), get("country"));
    // Day ranges as the export filters take them (RFC 3339 bounds).
    let from_time = from.as_ref().map(|d| format!("{d}T00:00:00Z"));
    let to_time = to.as_ref().map(|d| format!("{d}T23:59:59Z"));
    let monthly = |extra: Value| {
        let mut f = json!({ "from": from, "to": to, "granularity": "month" });
        if let Some(c) = &country {
            f["country"] = json!(c);
        }
        if let (Some(o), Some(e)) = (f.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        f
    };
    let months = json!({ "from": from, "to": to });
    let (sections, kpis): (Vec<SectionSpec>, Vec<KpiSpec>) = match id {
        "executive_summary" => (
            vec![
                section(
                    "MRR movements",
                    json!({
                        "dataset": "mrr_movements", "filters": monthly(json!({})),
                        "columns": ["period", "new_cents", "reactivation_cents", "expansion_cents", "contraction_cents", "churn_cents", "mrr_cents", "arr_cents", "net_cents", "customers", "nrr"],
                        "chart": {"type": "stacked_bar", "x": "period", "y": ["new_cents", "reactivation_cents", "expansion_cents", "contraction_cents", "churn_cents"]},
                    }),
                ),
                section(
                    "Signups, activations and conversions to paid",
                    json!({
                        "dataset": "business", "filters": { "from": from, "to": to, "granularity": "month", "country": country },
                        "columns": ["period", "signups", "activations", "paid", "mau", "stickiness"],
                        "chart": {"type": "line", "x": "period", "y": ["signups", "activations", "paid"]},
                    }),
                ),
            ],
            vec![
                kpi("MRR", 0, Reduce::Last("mrr_cents")),
                kpi("ARR", 0, Reduce::Last("arr_cents")),
                kpi("Net revenue", 0, Reduce::Sum("net_cents")),
                kpi("Paying customers", 0, Reduce::Last("customers")),
                kpi("NRR (last month)", 0, Reduce::Last("nrr")),
                kpi("Signups", 1, Reduce::Sum("signups")),
            ],
        ),
        "revenue_by_country_and_plan" => (
            vec![
                section(
                    "Gross revenue by country and plan",
                    json!({
                        "dataset": "orders", "filters": { "from": from_time, "to": to_time },
                        "group_by": ["country", "plan"],
                        "metrics": [{"op": "sum", "field": "amount_cents", "as": "gross_cents"}, {"op": "count", "as": "orders"}, {"op": "count_distinct", "field": "user_id", "as": "customers"}, {"op": "avg", "field": "amount_cents", "as": "avg_order_cents"}],
                        "sort": [{"field": "gross_cents", "order": "desc"}],
                        "chart": {"type": "stacked_bar", "x": "country", "y": ["gross_cents"], "series": "plan"},
                    }),
                ),
                section(
                    "Refunds by country",
                    json!({
                        "dataset": "orders", "filters": { "from": from_time, "to": to_time, "status": "refunded" },
                        "group_by": ["country"],
                        "metrics": [{"op": "sum", "field": "amount_cents", "as": "refunds_cents"}, {"op": "count", "as": "orders"}],
                        "sort": [{"field": "refunds_cents", "order": "desc"}],
                        "chart": {"type": "bar", "x": "country", "y": ["refunds_cents"]},
                    }),
                ),
                section(
                    "Gross revenue per month by country",
                    json!({
                        "dataset": "orders", "filters": { "from": from_time, "to": to_time },
                        "group_by": [{"field": "created_at", "bucket": "month"}, "country"],
                        "metrics": [{"op": "sum", "field": "amount_cents", "as": "gross_cents"}],
                        "chart": {"type": "area", "x": "created_at", "y": ["gross_cents"], "series": "country"},
                    }),
                ),
            ],
            vec![
                kpi("Gross revenue", 0, Reduce::Sum("gross_cents")),
                kpi("Orders", 0, Reduce::Sum("orders")),
                kpi("Refunds", 1, Reduce::Sum("refunds_cents")),
                kpi("Refunded orders", 1, Reduce::Sum("orders")),
            ],
        ),
        "mrr_movements_and_nrr" => (
            vec![
                section(
                    "MRR movements",
                    json!({
                        "dataset": "mrr_movements", "filters": monthly(json!({})),
                        "columns": ["period", "mrr_start_cents", "new_cents", "reactivation_cents", "expansion_cents", "contraction_cents", "churn_cents", "mrr_change_cents", "mrr_cents"],
                        "chart": {"type": "stacked_bar", "x": "period", "y": ["new_cents", "reactivation_cents", "expansion_cents", "contraction_cents", "churn_cents"]},
                    }),
                ),
                section(
                    "Net and gross revenue retention",
                    json!({
                        "dataset": "mrr_movements", "filters": monthly(json!({})),
                        "columns": ["period", "nrr", "grr", "quick_ratio", "gross_mrr_churn_rate", "net_mrr_churn_rate"],
                        "chart": {"type": "line", "x": "period", "y": ["nrr", "grr"]},
                    }),
                ),
            ],
            vec![
                kpi("MRR", 0, Reduce::Last("mrr_cents")),
                kpi("New MRR", 0, Reduce::Sum("new_cents")),
                kpi("Churned MRR", 0, Reduce::Sum("churn_cents")),
                kpi("NRR (last month)", 1, Reduce::Last("nrr")),
                kpi("GRR (last month)", 1, Reduce::Last("grr")),
                KpiSpec { label: "Quick ratio (last month)", section: 1, reduce: Reduce::Last("quick_ratio"), unit: Some(Unit::Number) },
            ],
        ),
        "cohort_retention" => (
            vec![
                section(
                    "User retention by months since signup",
                    json!({
                        "dataset": "cohorts", "filters": { "from": from, "to": to, "country": country },
                        "columns": ["cohort", "months_since", "size", "active_users", "user_retention", "mrr_cents", "revenue_retention"],
                        "chart": {"type": "line", "x": "months_since", "y": ["user_retention"], "series": "cohort"},
                    }),
                ),
                section(
                    "Average retention by months since signup",
                    json!({
                        "dataset": "cohorts", "filters": { "from": from, "to": to, "country": country },
                        "group_by": ["months_since"],
                        "metrics": [{"op": "avg", "field": "user_retention", "as": "user_retention"}, {"op": "avg", "field": "revenue_retention", "as": "revenue_retention"}, {"op": "count", "as": "cohorts"}],
                        "sort": [{"field": "months_since"}],
                        "chart": {"type": "bar", "x": "months_since", "y": ["user_retention"]},
                    }),
                ),
            ],
            vec![kpi("Cohort months", 0, Reduce::Rows), kpi("Users in the cohorts", 0, Reduce::Sum("active_users"))],
        ),
        "churn_and_at_risk" => (
            vec![
                section(
                    "Churn per month",
                    json!({
                        "dataset": "mrr_movements", "filters": monthly(json!({})),
                        "columns": ["period", "customers_start", "churned_customers", "customer_churn_rate", "churn_cents", "contraction_cents", "gross_mrr_churn_rate"],
                        "chart": {"type": "line", "x": "period", "y": ["customer_churn_rate", "gross_mrr_churn_rate"]},
                    }),
                ),
                section(
                    "Customers most at risk",
                    json!({
                        "dataset": "at_risk", "limit": 50,
                        "columns": ["rank", "user_id", "probability", "mrr_cents", "plan", "reasons"],
                        "chart": {"type": "table", "x": "rank", "y": ["probability"]},
                    }),
                ),
            ],
            vec![
                kpi("Churned customers", 0, Reduce::Sum("churned_customers")),
                kpi("Churned MRR", 0, Reduce::Sum("churn_cents")),
                kpi("Customer churn (last month)", 0, Reduce::Last("customer_churn_rate")),
                kpi("MRR of the 50 most at risk", 1, Reduce::Sum("mrr_cents")),
            ],
        ),
        "signups_and_activation" => (
            vec![
                section(
                    "Signup funnel per month",
                    json!({
                        "dataset": "business", "filters": { "from": from, "to": to, "granularity": "month", "country": country },
                        "columns": ["period", "signups", "activations", "paid", "activation_rate", "paid_rate", "signup_to_paid_rate"],
                        "chart": {"type": "bar", "x": "period", "y": ["signups", "activations", "paid"]},
                    }),
                ),
                section(
                    "Users by country",
                    json!({
                        "dataset": "users",
                        "filters": { "from": from.as_ref().map(|m| format!("{m}-01T00:00:00Z")) },
                        "group_by": ["country"],
                        "metrics": [{"op": "count", "as": "users"}],
                        "sort": [{"field": "users", "order": "desc"}],
                        "limit": 20,
                        "chart": {"type": "pie", "x": "country", "y": ["users"]},
                    }),
                ),
            ],
            vec![
                kpi("Signups", 0, Reduce::Sum("signups")),
                kpi("Activations", 0, Reduce::Sum("activations")),
                KpiSpec { label: "Activation rate", section: 0, reduce: Reduce::Ratio("activations", "signups"), unit: Some(Unit::Percent) },
                kpi("Converted to paid", 0, Reduce::Sum("paid")),
            ],
        ),
        "moderation" => (
            vec![
                section(
                    "Charts by moderation state",
                    json!({
                        "dataset": "charts", "group_by": ["moderation_status"], "metrics": [{"op": "count", "as": "charts"}],
                        "sort": [{"field": "charts", "order": "desc"}],
                        "chart": {"type": "pie", "x": "moderation_status", "y": ["charts"]},
                    }),
                ),
                section(
                    "Moderation decisions per month",
                    json!({
                        "dataset": "business", "filters": { "from": from, "to": to, "granularity": "month" },
                        "columns": ["period", "moderation_decisions", "moderation_approved", "moderation_rejected", "moderation_hidden", "median_hours_to_first_decision", "moderation_backlog_end"],
                        "chart": {"type": "stacked_bar", "x": "period", "y": ["moderation_approved", "moderation_rejected", "moderation_hidden"]},
                    }),
                ),
                section(
                    "Decisions per moderator",
                    json!({
                        "dataset": "audit",
                        "filters": { "action": "chart.", "from": to.as_ref().and_then(|t| month_start(t, -11)), "to": to.as_ref().and_then(|t| month_end(t)) },
                        "where": [{"field": "action", "op": "in", "value": ["chart.approve", "chart.reject", "chart.flag", "chart.unflag", "chart.hide", "chart.restore"]}],
                        "group_by": ["actor_id", "action"], "metrics": [{"op": "count", "as": "decisions"}],
                        "sort": [{"field": "decisions", "order": "desc"}], "limit": 50,
                        "chart": {"type": "stacked_bar", "x": "actor_id", "y": ["decisions"], "series": "action"},
                    }),
                ),
            ],
            vec![
                kpi("Charts", 0, Reduce::Sum("charts")),
                kpi("Awaiting review", 0, Reduce::RowsWhereSum("moderation_status", "pending", "charts")),
                kpi("Decisions", 1, Reduce::Sum("moderation_decisions")),
                KpiSpec {
                    label: "Median hours to first decision",
                    section: 1,
                    reduce: Reduce::Median("median_hours_to_first_decision"),
                    unit: Some(Unit::Number),
                },
            ],
        ),
        "security_and_audit" => (
            vec![
                section(
                    "Audit entries per day by outcome",
                    json!({
                        "dataset": "audit", "filters": { "from": from_time, "to": to_time },
                        "group_by": [{"field": "ts", "bucket": "day"}, "outcome"], "metrics": [{"op": "count", "as": "entries"}],
                        "chart": {"type": "stacked_bar", "x": "ts", "y": ["entries"], "series": "outcome"},
                    }),
                ),
                section(
                    "Most frequent actions",
                    json!({
                        "dataset": "audit", "filters": { "from": from_time, "to": to_time },
                        "group_by": ["action"], "metrics": [{"op": "count", "as": "entries"}, {"op": "count_distinct", "field": "actor_id", "as": "actors"}],
                        "sort": [{"field": "entries", "order": "desc"}], "limit": 20,
                        "chart": {"type": "bar", "x": "action", "y": ["entries"]},
                    }),
                ),
                section(
                    "Refused and failed actions by principal",
                    json!({
                        "dataset": "audit", "filters": { "from": from_time, "to": to_time },
                        "where": [{"field": "outcome", "op": "in", "value": ["denied", "failure"]}],
                        "group_by": ["actor_id", "action", "outcome"], "metrics": [{"op": "count", "as": "entries"}, {"op": "max", "field": "ts", "as": "last_at"}],
                        "sort": [{"field": "entries", "order": "desc"}], "limit": 20,
                    }),
                ),
            ],
            vec![
                kpi("Audit entries", 0, Reduce::Sum("entries")),
                kpi("Denied", 0, Reduce::RowsWhereSum("outcome", "denied", "entries")),
                kpi("Failed", 0, Reduce::RowsWhereSum("outcome", "failure", "entries")),
                kpi("Distinct actions", 1, Reduce::Rows),
            ],
        ),
        "subject_requests" => (
            vec![
                section(
                    "Requests by kind and status",
                    json!({
                        "dataset": "subject_requests", "filters": months,
                        "group_by": ["kind", "status"], "metrics": [{"op": "count", "as": "requests"}, {"op": "median", "field": "days_to_close", "as": "median_days_to_close"}],
                        "chart": {"type": "stacked_bar", "x": "kind", "y": ["requests"], "series": "status"},
                    }),
                ),
                section(
                    "Request log",
                    json!({
                        "dataset": "subject_requests", "filters": months,
                        "columns": ["id", "kind", "regime", "status", "received_at", "due_at", "completed_at", "days_to_close", "days_left", "overdue"],
                        "sort": [{"field": "received_at", "order": "desc"}],
                    }),
                ),
            ],
            vec![
                kpi("Requests", 1, Reduce::Rows),
                kpi("Overdue", 1, Reduce::RowsWhere("overdue", "true")),
                kpi("Completed", 1, Reduce::RowsWhere("status", "completed")),
                KpiSpec { label: "Median days to close", section: 1, reduce: Reduce::Median("days_to_close"), unit: Some(Unit::Number) },
            ],
        ),
        _ => unreachable!("every template in TEMPLATES is built here"),
    };
    Ok(Built { title: t.title.to_string(), description: t.description.to_string(), parameters: values, sections, kpis })
}

fn kpi(label: &'static str, section: usize, reduce: Reduce) -> KpiSpec {
    KpiSpec { label, section, reduce, unit: None }
}

/// The first moment of the month `offset` months from `month` (`yyyy-mm`).
fn month_start(month: &str, offset: i32) -> Option<String> {
    let first = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok()?;
    let moved = if offset < 0 { first.checked_sub_months(Months::new((-offset) as u32))? } else { first.checked_add_months(Months::new(offset as u32))? };
    Some(format!("{}T00:00:00Z", moved.format("%Y-%m-%d")))
}

/// The last second of the month `month` (`yyyy-mm`).
fn month_end(month: &str) -> Option<String> {
    let first = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok()?;
    let last = first.checked_add_months(Months::new(1))?.pred_opt()?;
    Some(format!("{}T23:59:59Z", last.format("%Y-%m-%d")))
}
