//! `GET /api/v1/analytics/segments`: cohort retention by signup month
//! (users active and the cohort's MRR, per month since signing up) and RFM
//! (recency, frequency, monetary quintiles of paying customers) with the
//! named segments' sizes and revenue. Reads the rollups' current
//! generation, one Query of the cohort rows and one item of RFM.
//! Definitions: docs/analytics.md.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::domain::business::{self, CohortRow, RfmSegment, RfmSummary};
use shared::domain::periods::Granularity;
use shared::domain::revenue::{self, RevenueMeta};
use shared::http::extract::ValidQuery;
use shared::platform::error::Result;
use utoipa::{IntoParams, ToSchema};

use crate::AnalyticsState;
use crate::periods::{Periods, read_rows};
use crate::revenue::RevenueQuery;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SegmentsQuery {
    /// First signup month of the cohorts (`yyyy-mm`); default 11 months before `to`.
    #[param(pattern = r"^\d{4}-\d{2}$", example = "2025-01")]
    pub from: Option<String>,
    /// Last signup month of the cohorts (`yyyy-mm`), at most the current month; default the current month.
    #[param(pattern = r"^\d{4}-\d{2}$", example = "2025-12")]
    pub to: Option<String>,
    /// Only users who signed up in this country (ISO 3166-1 alpha-2; `ZZ`: unknown): their cohorts, and the RFM segments of those who are customers.
    #[param(pattern = "^[A-Z]{2}$", example = "US")]
    pub country: Option<String>,
}

/// The validated request: signup months and the country (`*`: all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentsRequest {
    pub months: Periods,
    pub country: String,
}

impl SegmentsQuery {
    /// Signup months and country, by the revenue report's rules.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<SegmentsRequest> {
        let request =
            RevenueQuery { from: self.from.clone(), to: self.to.clone(), granularity: None, country: self.country.clone(), plan: None, segment: None }
                .validate(now)?;
        Ok(SegmentsRequest { months: request.periods, country: request.group.country })
    }
}

/// One month of a cohort's life.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CohortMonth {
    /// 0 = the signup month.
    pub months_since: i64,
    /// Users of the cohort with any activity in the month.
    pub active_users: i64,
    /// active_users ÷ the cohort's size.
    pub user_retention: Option<f64>,
    /// The cohort's MRR at the end of the month (the current month: at the refresh).
    pub mrr_cents: i64,
    /// mrr ÷ the cohort's MRR in its first month with MRR; null before that month.
    pub revenue_retention: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Cohort {
    /// Signup month, `yyyy-mm`.
    pub cohort: String,
    pub size: i64,
    /// `months_since` of the month revenue retention is measured against (null: never paid).
    pub revenue_base_month: Option<i64>,
    pub months: Vec<CohortMonth>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RfmSegmentSize {
    pub segment: RfmSegment,
    pub customers: i64,
    /// Σ net order amounts (after refunds) of its customers, in cents.
    pub revenue_cents: i64,
    /// customers ÷ all scored customers.
    pub share: Option<f64>,
}

/// Customers with one combination of scores (1–5 each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RfmScoreCell {
    pub r: u8,
    pub f: u8,
    pub m: u8,
    pub customers: i64,
    pub revenue_cents: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RfmReport {
    /// Customers with at least one order.
    pub customers: i64,
    /// Every named segment, empty ones too.
    pub segments: Vec<RfmSegmentSize>,
    pub cells: Vec<RfmScoreCell>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SegmentsReport {
    pub from: String,
    pub to: String,
    /// The country filter, or `*` for all.
    pub country: String,
    /// When the rollups were computed (RFM recency is as of then); null before the first refresh.
    pub computed_at: Option<String>,
    pub cohorts: Vec<Cohort>,
    pub rfm: RfmReport,
}

#[utoipa::path(get, path = "/api/v1/analytics/segments", tag = "analytics", params(SegmentsQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Cohort retention (users and MRR) by signup month, and RFM segments with their sizes and revenue, from the rollups", body = SegmentsReport),
    ))]
pub async fn read(State(state): State<AnalyticsState>, ValidQuery(query): ValidQuery<SegmentsQuery>) -> Result<Json<SegmentsReport>> {
    Ok(Json(compute(&state.platform.store, &query).await?))
}

/// The answer to `query` from the rollups: the route's body, and what
/// report templates read (`reports`), so both give the same figures.
pub async fn compute(store: &shared::store::Store, query: &SegmentsQuery) -> Result<SegmentsReport> {
    let request = query.validate(Utc::now())?;
    let meta: Option<RevenueMeta> = store.get(revenue::META_PK, revenue::META_SK).await?;
    let mut cohorts: Vec<(String, CohortRow)> = Vec::new();
    let mut rfm = RfmSummary::default();
    if let Some(meta) = &meta {
        let pk = business::cohorts_pk(&meta.generation, &request.country);
        let rows: BTreeMap<String, CohortRow> = read_rows(store, &pk, Granularity::Month, &request.months.from, &request.months.to).await?;
        cohorts.extend(rows);
        rfm = store.get_doc(&business::rfm_pk(&meta.generation), &business::rfm_sk(&request.country)).await?.unwrap_or_default();
    }
    Ok(report(&request, meta.map(|m| m.computed_at), &cohorts, &rfm))
}

pub fn cohort(month: &str, row: &CohortRow) -> Cohort {
    let base = row.mrr_cents.iter().position(|m| *m > 0);
    let ratio = |a: i64, b: i64| (b != 0).then(|| a as f64 / b as f64);
    let months = (0..row.active.len())
        .map(|k| CohortMonth {
            months_since: k as i64,
            active_users: row.active[k],
            user_retention: ratio(row.active[k], row.size),
            mrr_cents: row.mrr_cents.get(k).copied().unwrap_or(0),
            revenue_retention: base.filter(|b| k >= *b).and_then(|b| ratio(row.mrr_cents.get(k).copied().unwrap_or(0), row.mrr_cents[b])),
        })
        .collect();
    Cohort { cohort: month.to_string(), size: row.size, revenue_base_month: base.map(|b| b as i64), months }
}

pub fn report(request: &SegmentsRequest, computed_at: Option<String>, cohorts: &[(String, CohortRow)], rfm: &RfmSummary) -> SegmentsReport {
    let share = |n: i64| (rfm.customers > 0).then(|| n as f64 / rfm.customers as f64);
    let mut segments: Vec<RfmSegmentSize> =
        RfmSegment::ALL.iter().map(|s| RfmSegmentSize { segment: *s, customers: 0, revenue_cents: 0, share: share(0) }).collect();
    for size in &rfm.segments {
        if let Some(out) = segments.iter_mut().find(|o| o.segment == size.segment) {
            out.customers = size.customers;
            out.revenue_cents = size.revenue_cents;
            out.share = share(size.customers);
        }
    }
    SegmentsReport {
        from: request.months.from.clone(),
        to: request.months.to.clone(),
        country: request.country.clone(),
        computed_at,
        cohorts: cohorts.iter().map(|(m, row)| cohort(m, row)).collect(),
        rfm: RfmReport {
            customers: rfm.customers,
            segments,
            cells: rfm.cells.iter().map(|c| RfmScoreCell { r: c.r, f: c.f, m: c.m, customers: c.customers, revenue_cents: c.revenue_cents }).collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_against_the_size_and_the_first_paying_month() {
        let c = cohort("2026-01", &CohortRow { size: 4, active: vec![4, 2, 1], mrr_cents: vec![0, 1000, 1500] });
        assert_eq!(c.revenue_base_month, Some(1));
        assert_eq!(c.months[1].user_retention, Some(0.5));
        assert_eq!(c.months[0].revenue_retention, None);
        assert_eq!(c.months[2].revenue_retention, Some(1.5));
    }
}
