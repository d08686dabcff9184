//! `GET /api/v1/analytics/business`: signups, activations, the signup →
//! activated → paid funnel, active users (MAU, DAU and WAU averages,
//! stickiness), charts created and moderation throughput (decisions by
//! outcome, median time to the first decision, backlog) per day, week,
//! month or quarter, for everyone or a country. Reads the rollups' current generation and one
//! Query each of the country's business and moderation partitions,
//! whatever the number of users, events or charts.
//! Definitions: docs/analytics.md.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::domain::business::{self, BusinessRow};
use shared::domain::moderation_metrics::{self, ModerationRow};
use shared::domain::periods::Granularity;
use shared::domain::revenue::{self, RevenueMeta};
use shared::http::extract::ValidQuery;
use shared::platform::error::Result;
use utoipa::{IntoParams, ToSchema};

use crate::AnalyticsState;
use crate::periods::read_rows;
use crate::revenue::{Request, RevenueQuery};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BusinessQuery {
    /// First period: a key of the granularity (`2026-03-05`, `2026-W10`, `2026-03`, `2026-Q1`), a day or a month; default 30 days, 12 weeks or months, or 8 quarters before `to`.
    #[param(example = "2025-01")]
    pub from: Option<String>,
    /// Last period (the same forms), at most the current one; default the current one.
    #[param(example = "2025-12")]
    pub to: Option<String>,
    /// Length of a period: `day`, `week` (ISO, Monday to Sunday), `month` (the default) or `quarter`; UTC.
    #[param(inline, value_type = Option<String>, example = "month")]
    pub granularity: Option<String>,
    /// Only users who signed up in this country (ISO 3166-1 alpha-2; `ZZ`: unknown).
    #[param(pattern = "^[A-Z]{2}$", example = "US")]
    pub country: Option<String>,
    /// Only the members of a segment, as of the last refresh: an RFM segment (`champions`, …) or a custom segment's id. Not with `country`.
    #[serde(default)]
    #[param(pattern = "^[a-z0-9_-]{1,64}$", example = "at_risk")]
    pub segment: Option<String>,
}

impl BusinessQuery {
    /// The same rules as the revenue report's (periods, range, granularity, country).
    pub fn validate(&self, now: DateTime<Utc>) -> Result<Request> {
        RevenueQuery {
            from: self.from.clone(),
            to: self.to.clone(),
            granularity: self.granularity.clone(),
            country: self.country.clone(),
            plan: None,
            segment: self.segment.clone(),
        }
        .validate(now)
    }
}

/// The business figures of a period, or of a range of periods.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BusinessFigures {
    /// Days counted (a current period: up to the refresh).
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
    /// Distinct users active in the period (DAU of a day, WAU of a week, MAU of a month); over a range, the mean of its periods.
    pub active_users: f64,
    /// Monthly active users: by month, the distinct users active in the month (over a range, the mean of its months);
    /// by day, week or quarter, the mean over its days of the distinct users active in the 30 days ending that day.
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

/// Moderation throughput of a period or a range (by the chart owner's country).
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
    /// Charts waiting for their first review at the period's end (the last period's end for a range).
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
    /// The period's key: `yyyy-mm-dd`, `yyyy-Www` (ISO week), `yyyy-mm` or `yyyy-Qn`.
    pub period: String,
    /// The current period: figures up to when the rollups were computed.
    pub partial: bool,
    pub figures: BusinessFigures,
    /// Against the period before.
    pub change: BusinessChange,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BusinessReport {
    pub from: String,
    pub to: String,
    pub granularity: String,
    /// The country filter, or `*` for all.
    pub country: String,
    /// The segment filter (its members as of the refresh), if any.
    pub segment: Option<String>,
    /// When the rollups were computed (the figures are as of then); null before the first refresh.
    pub computed_at: Option<String>,
    pub periods: Vec<BusinessPeriod>,
    /// Over the range: sums, and means of active users, MAU and of the days' DAU and WAU.
    pub totals: BusinessFigures,
    /// The same number of periods just before `from`.
    pub previous: BusinessFigures,
    pub change: BusinessChange,
}

#[utoipa::path(get, path = "/api/v1/analytics/business", tag = "analytics", params(BusinessQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Signups, activations, the funnel to paid, active users, charts and moderation throughput per period, totals and the change against the previous range, from the business rollups", body = BusinessReport),
    ))]
pub async fn read(State(state): State<AnalyticsState>, ValidQuery(query): ValidQuery<BusinessQuery>) -> Result<Json<BusinessReport>> {
    Ok(Json(compute(&state.platform.store, &query).await?))
}

/// The answer to `query` from the rollups: the route's body, and what
/// report templates read (`reports`), so both give the same figures.
pub async fn compute(store: &shared::store::Store, query: &BusinessQuery) -> Result<BusinessReport> {
    let request = query.validate(Utc::now())?;
    let meta: Option<RevenueMeta> = store.get(revenue::META_PK, revenue::META_SK).await?;
    let p = &request.periods;
    let mut rows: BTreeMap<String, BusinessRow> = BTreeMap::new();
    let mut moderation: BTreeMap<String, ModerationRow> = BTreeMap::new();
    if let Some(meta) = &meta {
        // The range and the range before it.
        let lo = p.previous().into_iter().next().unwrap_or_else(|| p.from.clone());
        let country = &request.group.country;
        let business_pk = request.partition(meta, business::segment_pk, || business::business_pk(&meta.generation, country))?;
        let moderation_pk = request.partition(meta, moderation_metrics::segment_pk, || moderation_metrics::moderation_pk(&meta.generation, country))?;
        (rows, moderation) =
            tokio::try_join!(read_rows(store, &business_pk, p.granularity, &lo, &p.to), read_rows(store, &moderation_pk, p.granularity, &lo, &p.to))?;
    }
    Ok(report(&request, meta.as_ref().map(|m| m.computed_at.clone()), &rows, &moderation))
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0).then(|| a / b)
}

/// Figures of `row` summed over `periods` periods of `g` and `days` days.
pub fn figures(row: &BusinessRow, days: i64, periods: i64, g: Granularity) -> BusinessFigures {
    let active_users = if periods > 0 { row.active_users as f64 / periods as f64 } else { 0.0 };
    let mau = match g {
        Granularity::Month => active_users,
        _ => ratio(row.mau_sum as f64, days as f64).unwrap_or(0.0),
    };
    let dau_avg = ratio(row.dau_sum as f64, days as f64);
    BusinessFigures {
        days,
        signups: row.signups,
        activations: row.activations,
        paid: row.paid,
        activation_rate: ratio(row.activations as f64, row.signups as f64),
        paid_rate: ratio(row.paid as f64, row.activations as f64),
        signup_to_paid_rate: ratio(row.paid as f64, row.signups as f64),
        active_users,
        mau,
        dau_avg,
        wau_avg: ratio(row.wau_sum as f64, days as f64),
        stickiness: dau_avg.and_then(|d| ratio(d, mau)),
        charts_created: row.charts_created,
        moderation: ModerationFigures::default(),
    }
}

/// Moderation figures over the periods `keys` (in order; a missing period is all zeros).
pub fn moderation_figures(rows: &BTreeMap<String, ModerationRow>, keys: &[String]) -> ModerationFigures {
    let mut out = ModerationFigures::default();
    let mut seconds: Vec<&moderation_metrics::Durations> = Vec::new();
    for k in keys {
        let Some(row) = rows.get(k) else { continue };
        out.decisions += row.decisions();
        out.approved += row.approved;
        out.rejected += row.rejected;
        out.flagged += row.flagged;
        out.hidden += row.hidden;
        out.first_decisions += row.first_decisions;
        seconds.push(&row.first_decision_seconds);
    }
    out.backlog_end = keys.last().and_then(|k| rows.get(k)).map_or(0, |r| r.backlog_end);
    out.median_hours_to_first_decision = moderation_metrics::Durations::median_of(seconds).map(|s| s / 3600.0);
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

/// The report from the country's rows of the request's granularity (key → row; a missing period is all zeros).
pub fn report(
    request: &Request,
    computed_at: Option<String>,
    rows: &BTreeMap<String, BusinessRow>,
    moderation: &BTreeMap<String, ModerationRow>,
) -> BusinessReport {
    let p = &request.periods;
    let g = p.granularity;
    let as_of = computed_at.as_deref().and_then(revenue::parse_time).unwrap_or_else(Utc::now);
    let computed_period = computed_at.as_deref().and_then(revenue::parse_time).map(|t| g.key_of(t));
    let over = |keys: &[String]| {
        let mut sum = BusinessRow::default();
        for k in keys {
            sum.add(&rows.get(k).copied().unwrap_or_default());
        }
        let mut figures = figures(&sum, keys.iter().map(|k| g.days_counted(k, as_of)).sum(), keys.len() as i64, g);
        figures.moderation = moderation_figures(moderation, keys);
        figures
    };
    let periods = p
        .keys
        .iter()
        .map(|key| {
            let now = over(std::slice::from_ref(key));
            let before = over(&p.before(key).into_iter().collect::<Vec<_>>());
            BusinessPeriod { period: key.clone(), partial: computed_period.as_deref() == Some(key.as_str()), change: change(&now, &before), figures: now }
        })
        .collect();
    let (totals, previous) = (over(&p.keys), over(&p.previous()));
    BusinessReport {
        from: p.from.clone(),
        to: p.to.clone(),
        granularity: g.name().into(),
        country: request.group.country.clone(),
        segment: request.segment.clone(),
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
    use shared::platform::error::Error;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-10T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn figures_and_changes() {
        let request = BusinessQuery { from: Some("2026-01".into()), to: Some("2026-02".into()), granularity: None, country: Some("DE".into()), segment: None }
            .validate(now())
            .unwrap();
        assert_eq!(request.group.country, "DE");
        let row = |signups, active_users, dau_sum| BusinessRow {
            signups,
            activations: signups / 2,
            paid: signups / 4,
            active_users,
            dau_sum,
            wau_sum: 0,
            mau_sum: 0,
            charts_created: 1,
        };
        let rows = BTreeMap::from([("2025-12".to_string(), row(4, 10, 62)), ("2026-01".to_string(), row(8, 20, 124)), ("2026-02".to_string(), row(8, 30, 56))]);
        let moderation = BTreeMap::from([
            (
                "2026-01".to_string(),
                ModerationRow {
                    approved: 2,
                    rejected: 1,
                    first_decisions: 2,
                    first_decision_seconds: moderation_metrics::Durations::from_exact(vec![3600, 7200]),
                    backlog_end: 5,
                    ..Default::default()
                },
            ),
            (
                "2026-02".to_string(),
                ModerationRow {
                    hidden: 1,
                    first_decisions: 1,
                    first_decision_seconds: moderation_metrics::Durations::from_exact(vec![36000]),
                    backlog_end: 4,
                    ..Default::default()
                },
            ),
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
        let bad = BusinessQuery { from: None, to: None, granularity: None, country: Some("de".into()), segment: None }.validate(now()).unwrap_err();
        assert!(matches!(bad, Error::Validation(f) if f[0].field == "country"));
    }
}
