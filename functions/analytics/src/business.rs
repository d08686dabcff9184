//! `GET /api/v1/analytics/business`: signups, activations, the signup →
//! activated → paid funnel, active users (MAU, DAU and WAU averages,
//! stickiness), charts created and moderation throughput (decisions by
//! outcome, median time to the first decision, backlog) per month, for
//! everyone or a country. Reads the rollups' current generation and one
//! Query each of the country's business and moderation partitions,
//! whatever the number of users, events or charts.
//! Definitions: docs/analytics.md.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use shared::domain::business::{self, BusinessRow};
use shared::domain::moderation_metrics::{self, ModerationRow};
use shared::domain::revenue::{self, RevenueMeta};
use shared::http::extract::ValidQuery;
use shared::platform::error::{Error, Result};
use shared::store::{QuerySpec, from_item, s};
use utoipa::{IntoParams, ToSchema};

use crate::AnalyticsState;
use crate::revenue::{Request, RevenueQuery};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BusinessQuery {
    /// First month (`yyyy-mm`); default 11 months before `to`.
    #[param(pattern = r"^\d{4}-\d{2}$", example = "2025-01")]
    pub from: Option<String>,
    /// Last month (`yyyy-mm`), at most the current month; default the current month.
    #[param(pattern = r"^\d{4}-\d{2}$", example = "2025-12")]
    pub to: Option<String>,
    /// Length of a period: `month` (the only one so far).
    #[param(inline, value_type = Option<String>, example = "month")]
    pub granularity: Option<String>,
    /// Only users who signed up in this country (ISO 3166-1 alpha-2; `ZZ`: unknown).
    #[param(pattern = "^[A-Z]{2}$", example = "US")]
    pub country: Option<String>,
}

impl BusinessQuery {
    /// The same rules as the revenue report's (months, range, granularity, country).
    pub fn validate(&self, current_month: &str) -> Result<Request> {
        RevenueQuery { from: self.from.clone(), to: self.to.clone(), granularity: self.granularity.clone(), country: self.country.clone(), plan: None }
            .validate(current_month)
    }
}

/// The business figures of a month, or of a range of months.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BusinessFigures {
    /// Days counted (a current month: up to the refresh).
    pub days: i64,
    pub signups: i64,
    /// Signups whose first chart came within 7 days.
    pub activations: i64,
    /// Activated signups who placed an order.
    pub paid: i64,
    /// activations ÷ signups.
    pub activation_rate: Option<f64>,
    /// paid ÷ activations.
    pub paid_rate: Option<f64>,
    /// paid ÷ signups.
    pub signup_to_paid_rate: Option<f64>,
    /// Distinct users active in the month (MAU); over a range, the mean of its months.
    pub mau: f64,
    /// Mean over the days of distinct users active that day.
    pub dau_avg: Option<f64>,
    /// Mean over the days of distinct users active in the 7 days ending that day.
    pub wau_avg: Option<f64>,
    /// dau_avg ÷ mau.
    pub stickiness: Option<f64>,
    pub charts_created: i64,
    pub moderation: ModerationFigures,
}

/// Moderation throughput of a month or a range (by the chart owner's country).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModerationFigures {
    /// Decisions taken, and by outcome (the state each led to).
    pub decisions: i64,
    pub approved: i64,
    pub rejected: i64,
    pub flagged: i64,
    pub hidden: i64,
    /// Charts whose first decision fell in the period.
    pub first_decisions: i64,
    /// Median hours from a chart's creation to its first decision, over those charts; null without any.
    pub median_hours_to_first_decision: Option<f64>,
    /// Charts waiting for their first review at the period's end (the last month's end for a range).
    pub backlog_end: i64,
}

/// Figures against the ones before (differences; growth = difference ÷ before).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BusinessChange {
    pub signups: i64,
    pub activations: i64,
    pub paid: i64,
    pub charts_created: i64,
    pub mau: f64,
    pub dau_avg: Option<f64>,
    pub stickiness: Option<f64>,
    pub signups_growth: Option<f64>,
    pub mau_growth: Option<f64>,
    pub moderation_decisions: i64,
    pub backlog_end: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BusinessPeriod {
    /// `yyyy-mm`.
    pub period: String,
    /// The current month: figures up to when the rollups were computed.
    pub partial: bool,
    pub figures: BusinessFigures,
    /// Against the month before.
    pub change: BusinessChange,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BusinessReport {
    pub from: String,
    pub to: String,
    pub granularity: String,
    /// The country filter, or `*` for all.
    pub country: String,
    /// When the rollups were computed (the figures are as of then); null before the first refresh.
    pub computed_at: Option<String>,
    pub periods: Vec<BusinessPeriod>,
    /// Over the range: sums, and means of MAU and of the days' DAU and WAU.
    pub totals: BusinessFigures,
    /// The same number of months just before `from`.
    pub previous: BusinessFigures,
    pub change: BusinessChange,
}

#[utoipa::path(get, path = "/api/v1/analytics/business", tag = "analytics", params(BusinessQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Signups, activations, the funnel to paid, active users, charts and moderation throughput per month, totals and the change against the previous range, from the business rollups", body = BusinessReport),
    ))]
pub async fn read(State(state): State<AnalyticsState>, ValidQuery(query): ValidQuery<BusinessQuery>) -> Result<Json<BusinessReport>> {
    let request = query.validate(&revenue::month_key(Utc::now()))?;
    let store = &state.platform.store;
    let meta: Option<RevenueMeta> = store.get(revenue::META_PK, revenue::META_SK).await?;
    let lo = revenue::add_months(&request.from, -(request.months.len() as i32)).ok_or_else(|| Error::field("from", "is out of range"))?;
    let mut rows: BTreeMap<String, BusinessRow> = BTreeMap::new();
    let mut moderation: BTreeMap<String, ModerationRow> = BTreeMap::new();
    if let Some(meta) = &meta {
        let query = |pk: String| QuerySpec {
            key_condition: "pk = :pk AND sk BETWEEN :lo AND :hi",
            values: vec![(":pk", s(pk)), (":lo", s(lo.clone())), (":hi", s(request.to.clone()))],
            forward: true,
            ..Default::default()
        };
        for item in store.query_all(&query(business::business_pk(&meta.generation, &request.group.country))).await? {
            let month = shared::store::attr_s(&item, "sk").unwrap_or_default().to_string();
            rows.insert(month, from_item(item)?);
        }
        for item in store.query_all(&query(moderation_metrics::moderation_pk(&meta.generation, &request.group.country))).await? {
            let month = shared::store::attr_s(&item, "sk").unwrap_or_default().to_string();
            moderation.insert(month, from_item(item)?);
        }
    }
    Ok(Json(report(&request, meta.as_ref().map(|m| m.computed_at.clone()), &rows, &moderation)))
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0).then(|| a / b)
}

/// Figures of `row` summed over `months` months and `days` days.
pub fn figures(row: &BusinessRow, days: i64, months: i64) -> BusinessFigures {
    let mau = if months > 0 { row.active_users as f64 / months as f64 } else { 0.0 };
    let dau_avg = ratio(row.dau_sum as f64, days as f64);
    BusinessFigures {
        days,
        signups: row.signups,
        activations: row.activations,
        paid: row.paid,
        activation_rate: ratio(row.activations as f64, row.signups as f64),
        paid_rate: ratio(row.paid as f64, row.activations as f64),
        signup_to_paid_rate: ratio(row.paid as f64, row.signups as f64),
        mau,
        dau_avg,
        wau_avg: ratio(row.wau_sum as f64, days as f64),
        stickiness: dau_avg.and_then(|d| ratio(d, mau)),
        charts_created: row.charts_created,
        moderation: ModerationFigures::default(),
    }
}

/// Moderation figures over `months` (in order; a missing month is all zeros).
pub fn moderation_figures(rows: &BTreeMap<String, ModerationRow>, months: &[String]) -> ModerationFigures {
    let mut out = ModerationFigures::default();
    let mut seconds: Vec<i64> = Vec::new();
    for m in months {
        let Some(row) = rows.get(m) else { continue };
        out.decisions += row.decisions();
        out.approved += row.approved;
        out.rejected += row.rejected;
        out.flagged += row.flagged;
        out.hidden += row.hidden;
        out.first_decisions += row.first_decisions;
        seconds.extend(&row.first_decision_seconds);
    }
    out.backlog_end = months.last().and_then(|m| rows.get(m)).map_or(0, |r| r.backlog_end);
    seconds.sort_unstable();
    out.median_hours_to_first_decision = moderation_metrics::median(&seconds).map(|s| s / 3600.0);
    out
}

pub fn change(now: &BusinessFigures, before: &BusinessFigures) -> BusinessChange {
    let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
    BusinessChange {
        signups: now.signups - before.signups,
        activations: now.activations - before.activations,
        paid: now.paid - before.paid,
        charts_created: now.charts_created - before.charts_created,
        mau: now.mau - before.mau,
        dau_avg: diff(now.dau_avg, before.dau_avg),
        stickiness: diff(now.stickiness, before.stickiness),
        signups_growth: ratio((now.signups - before.signups) as f64, before.signups as f64),
        mau_growth: ratio(now.mau - before.mau, before.mau),
        moderation_decisions: now.moderation.decisions - before.moderation.decisions,
        backlog_end: now.moderation.backlog_end - before.moderation.backlog_end,
    }
}

/// The report from the country's rows (`yyyy-mm → row`; a missing month is all zeros).
pub fn report(
    request: &Request,
    computed_at: Option<String>,
    rows: &BTreeMap<String, BusinessRow>,
    moderation: &BTreeMap<String, ModerationRow>,
) -> BusinessReport {
    let as_of = computed_at.as_deref().and_then(revenue::parse_time).unwrap_or_else(Utc::now);
    let computed_month = computed_at.as_deref().and_then(revenue::parse_time).map(revenue::month_key);
    let over = |months: &[String]| {
        let mut sum = BusinessRow::default();
        for m in months {
            sum.add(&rows.get(m).copied().unwrap_or_default());
        }
        let mut figures = figures(&sum, months.iter().map(|m| business::days_counted(m, as_of)).sum(), months.len() as i64);
        figures.moderation = moderation_figures(moderation, months);
        figures
    };
    let periods = request
        .months
        .iter()
        .map(|month| {
            let now = over(std::slice::from_ref(month));
            let before = over(&revenue::add_months(month, -1).into_iter().collect::<Vec<_>>());
            BusinessPeriod { period: month.clone(), partial: computed_month.as_deref() == Some(month.as_str()), change: change(&now, &before), figures: now }
        })
        .collect();
    let n = request.months.len() as i32;
    let previous_months: Vec<String> = (1..=n).rev().filter_map(|k| revenue::add_months(&request.from, -k)).collect();
    let (totals, previous) = (over(&request.months), over(&previous_months));
    BusinessReport {
        from: request.from.clone(),
        to: request.to.clone(),
        granularity: "month".into(),
        country: request.group.country.clone(),
        computed_at,
        periods,
        change: change(&totals, &previous),
        totals,
        previous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_and_changes() {
        let request = BusinessQuery { from: Some("2026-01".into()), to: Some("2026-02".into()), granularity: None, country: Some("DE".into()) }
            .validate("2026-03")
            .unwrap();
        assert_eq!(request.group.country, "DE");
        let row = |signups, active_users, dau_sum| BusinessRow {
            signups,
            activations: signups / 2,
            paid: signups / 4,
            active_users,
            dau_sum,
            wau_sum: 0,
            charts_created: 1,
        };
        let rows = BTreeMap::from([("2025-12".to_string(), row(4, 10, 62)), ("2026-01".to_string(), row(8, 20, 124)), ("2026-02".to_string(), row(8, 30, 56))]);
        let moderation = BTreeMap::from([
            (
                "2026-01".to_string(),
                ModerationRow { approved: 2, rejected: 1, first_decisions: 2, first_decision_seconds: vec![3600, 7200], backlog_end: 5, ..Default::default() },
            ),
            ("2026-02".to_string(), ModerationRow { hidden: 1, first_decisions: 1, first_decision_seconds: vec![36000], backlog_end: 4, ..Default::default() }),
        ]);
        let r = report(&request, Some("2026-03-10T00:00:00.000000Z".into()), &rows, &moderation);
        let m = &r.periods[0].figures.moderation;
        assert_eq!((m.decisions, m.approved, m.first_decisions, m.median_hours_to_first_decision, m.backlog_end), (3, 2, 2, Some(1.5), 5));
        let m = &r.totals.moderation;
        assert_eq!((m.decisions, m.hidden, m.median_hours_to_first_decision, m.backlog_end), (4, 1, Some(2.0), 4));
        assert_eq!((r.periods[1].change.moderation_decisions, r.periods[1].change.backlog_end), (-2, -1));
        let jan = &r.periods[0];
        assert_eq!((jan.figures.signups, jan.figures.activations, jan.figures.paid, jan.figures.days), (8, 4, 2, 31));
        assert_eq!((jan.figures.activation_rate, jan.figures.paid_rate, jan.figures.signup_to_paid_rate), (Some(0.5), Some(0.5), Some(0.25)));
        assert_eq!((jan.figures.mau, jan.figures.dau_avg, jan.figures.stickiness), (20.0, Some(4.0), Some(0.2)));
        assert_eq!((jan.change.signups, jan.change.signups_growth, jan.change.mau_growth), (4, Some(1.0), Some(1.0)));
        assert_eq!((r.totals.signups, r.totals.mau, r.totals.days), (16, 25.0, 59));
        assert_eq!((r.previous.signups, r.previous.days), (4, 61));
        let bad = BusinessQuery { from: None, to: None, granularity: None, country: Some("de".into()) }.validate("2026-03").unwrap_err();
        assert!(matches!(bad, Error::Validation(f) if f[0].field == "country"));
    }
}
