//! `GET /api/v1/analytics/revenue`: revenue and MRR metrics per day, week,
//! month or quarter for all customers, a country, a plan or both. Reads one
//! item (the rollups' current generation) and one Query of the group's
//! partition (the range, the range before it, and the 6 months LTV looks
//! back on; for finer periods or quarters one Query of their packed
//! partition and one of the months), whatever the number of orders.
//! Definitions: docs/analytics.md.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::domain::periods::Granularity;
use shared::domain::revenue::{self, Group, Metrics, Movements, RevenueMeta, RevenueRow};
use shared::http::extract::ValidQuery;
use shared::platform::error::{Error, Result};
use utoipa::{IntoParams, ToSchema};

use crate::AnalyticsState;
use crate::periods::{Periods, read_rows};

/// Months before a period whose customer churn LTV averages.
pub const LTV_MONTHS: i32 = 6;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RevenueQuery {
    /// First period: a key of the granularity (`2026-03-05`, `2026-W10`, `2026-03`, `2026-Q1`), a day or a month; default 30 days, 12 weeks or months, or 8 quarters before `to`.
    #[param(example = "2025-01")]
    pub from: Option<String>,
    /// Last period (the same forms), at most the current one; default the current one.
    #[param(example = "2025-12")]
    pub to: Option<String>,
    /// Length of a period: `day`, `week` (ISO, Monday to Sunday), `month` (the default) or `quarter`; UTC.
    #[param(inline, value_type = Option<String>, example = "month")]
    pub granularity: Option<String>,
    /// Only customers' subscriptions in this country (ISO 3166-1 alpha-2, e.g. `US`; `ZZ`: unknown).
    #[param(pattern = "^[A-Z]{2}$", example = "US")]
    pub country: Option<String>,
    /// Only subscriptions on this plan (e.g. `pro`).
    #[param(pattern = "^[a-z0-9_-]{1,32}$", example = "pro")]
    pub plan: Option<String>,
    /// Only the members of a segment, as of the last refresh: an RFM segment (`champions`, `loyal`, `potential_loyalist`, `new`, `at_risk`, `cant_lose`, `hibernating`, `lost`) or a custom segment's id. Not with `country` or `plan`.
    #[serde(default)]
    #[param(pattern = "^[a-z0-9_-]{1,64}$", example = "champions")]
    pub segment: Option<String>,
}

/// The validated request: periods, and the group or a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub periods: Periods,
    pub group: Group,
    pub segment: Option<String>,
}

impl Request {
    /// The partition of the rows asked for: the segment's (`segment_pk`
    /// of the kind of rows), or the group's `group_pk`; 400 naming
    /// `segment` when the current rollups do not hold the segment.
    pub fn partition(&self, meta: &RevenueMeta, segment_pk: fn(&str, &str) -> String, group_pk: impl FnOnce() -> String) -> Result<String> {
        match &self.segment {
            None => Ok(group_pk()),
            Some(segment) if meta.segments.iter().any(|s| s == segment) => Ok(segment_pk(&meta.generation, segment)),
            Some(_) => Err(Error::field(
                "segment",
                "is not in the current rollups: an RFM segment with customers, or a custom segment's id (a new one is computed by the next refresh)",
            )),
        }
    }
}

impl RevenueQuery {
    pub fn validate(&self, now: DateTime<Utc>) -> Result<Request> {
        let periods = Periods::parse(self.from.as_deref(), self.to.as_deref(), self.granularity.as_deref(), now)?;
        let country = match self.country.as_deref() {
            None => revenue::ALL.to_string(),
            Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) => c.to_string(),
            Some(_) => return Err(Error::field("country", "must be an ISO 3166-1 alpha-2 code in capitals, e.g. US")),
        };
        let plan = match self.plan.as_deref() {
            None => revenue::ALL.to_string(),
            Some(p) if (1..=32).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-') => {
                p.to_string()
            }
            Some(_) => return Err(Error::field("plan", "must be 1 to 32 of a-z, 0-9, _ and -")),
        };
        let segment = match self.segment.as_deref() {
            None => None,
            Some(_) if self.country.is_some() || self.plan.is_some() => return Err(Error::field("segment", "cannot be combined with `country` or `plan`")),
            Some(v) if (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-') => {
                Some(v.to_string())
            }
            Some(_) => return Err(Error::field("segment", "must be an RFM segment name or a custom segment's id")),
        };
        Ok(Request { periods, group: Group { country, plan }, segment })
    }
}

/// MRR movements of a period, in cents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MovementsOut {
    pub new_cents: i64,
    pub reactivation_cents: i64,
    pub expansion_cents: i64,
    pub contraction_cents: i64,
    pub churn_cents: i64,
    /// new + reactivation + expansion − contraction − churn (= MRR end − MRR start).
    pub net_cents: i64,
}

impl From<&Movements> for MovementsOut {
    fn from(m: &Movements) -> Self {
        MovementsOut {
            new_cents: m.new,
            reactivation_cents: m.reactivation,
            expansion_cents: m.expansion,
            contraction_cents: m.contraction,
            churn_cents: m.churn,
            net_cents: m.new + m.reactivation + m.expansion - m.contraction - m.churn,
        }
    }
}

/// A period against the one before it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeriodChange {
    pub mrr_cents: i64,
    pub gross_cents: i64,
    pub net_cents: i64,
    pub customers: i64,
    /// Change of MRR ÷ the previous period's MRR (null when that is 0).
    pub mrr_growth: Option<f64>,
}

/// One period's figures (docs/analytics.md has each definition).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Period {
    /// The period's key: `yyyy-mm-dd`, `yyyy-Www` (ISO week), `yyyy-mm` or `yyyy-Qn`.
    pub period: String,
    /// The current period: figures up to when the rollups were computed.
    pub partial: bool,
    pub gross_cents: i64,
    pub refunds_cents: i64,
    pub net_cents: i64,
    pub orders: i64,
    pub refunded_orders: i64,
    /// MRR at the start and the end of the period.
    pub mrr_start_cents: i64,
    pub mrr_cents: i64,
    pub arr_cents: i64,
    pub movements: MovementsOut,
    pub customers_start: i64,
    /// Paying customers at the end of the period.
    pub customers: i64,
    pub new_customers: i64,
    pub reactivated_customers: i64,
    pub churned_customers: i64,
    /// Mean days since their churn of the customers reactivated in the period.
    pub avg_days_since_churn: Option<f64>,
    pub arpa_cents: Option<i64>,
    pub customer_churn_rate: Option<f64>,
    pub gross_mrr_churn_rate: Option<f64>,
    pub net_mrr_churn_rate: Option<f64>,
    pub nrr: Option<f64>,
    pub grr: Option<f64>,
    pub quick_ratio: Option<f64>,
    /// ARPA ÷ the mean monthly customer churn of the 6 months before the month the period ends in;
    /// null ("n/a") when that is 0 or unknown.
    pub ltv_cents: Option<i64>,
    pub change: PeriodChange,
}

/// Sums over a range of periods.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Totals {
    pub from: String,
    pub to: String,
    pub gross_cents: i64,
    pub refunds_cents: i64,
    pub net_cents: i64,
    pub orders: i64,
    /// MRR at the start of the first period and the end of the last.
    pub mrr_start_cents: i64,
    pub mrr_end_cents: i64,
    pub movements: MovementsOut,
    pub new_customers: i64,
    pub reactivated_customers: i64,
    pub churned_customers: i64,
}

/// The range's totals against the previous range of the same length.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TotalsChange {
    pub gross_cents: i64,
    pub net_cents: i64,
    pub refunds_cents: i64,
    pub mrr_end_cents: i64,
    pub gross_growth: Option<f64>,
    pub net_growth: Option<f64>,
    pub mrr_growth: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RevenueReport {
    pub from: String,
    pub to: String,
    pub granularity: String,
    /// The country filter, or `*` for all.
    pub country: String,
    /// The plan filter, or `*` for all.
    pub plan: String,
    /// The segment filter (its members as of the refresh), if any.
    pub segment: Option<String>,
    pub currency: String,
    /// When the rollups were computed (the figures are as of then); null before the first refresh.
    pub computed_at: Option<String>,
    pub periods: Vec<Period>,
    pub totals: Totals,
    /// The same number of periods just before `from`.
    pub previous: Totals,
    pub change: TotalsChange,
}

#[utoipa::path(get, path = "/api/v1/analytics/revenue", tag = "analytics", params(RevenueQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Revenue and MRR metrics per period, their totals and the change against the previous range, from the revenue rollups", body = RevenueReport),
    ))]
pub async fn read(State(state): State<AnalyticsState>, ValidQuery(query): ValidQuery<RevenueQuery>) -> Result<Json<RevenueReport>> {
    Ok(Json(compute(&state.platform.store, &query).await?))
}

/// The answer to `query` from the rollups: the route's body, and what
/// report templates read (`reports`), so both give the same figures.
pub async fn compute(store: &shared::store::Store, query: &RevenueQuery) -> Result<RevenueReport> {
    let request = query.validate(Utc::now())?;
    let meta: Option<RevenueMeta> = store.get(revenue::META_PK, revenue::META_SK).await?;
    let p = &request.periods;
    let mut rows: BTreeMap<String, RevenueRow> = BTreeMap::new();
    let mut months: BTreeMap<String, RevenueRow> = BTreeMap::new();
    if let Some(meta) = &meta {
        let pk = request.partition(meta, revenue::segment_pk, || revenue::rollup_pk(&meta.generation, &request.group))?;
        // The range, the range before it, and the months LTV looks back on.
        let first_month = p.month_of_end(&p.from).ok_or_else(|| Error::field("from", "is out of range"))?;
        let ltv_from = revenue::add_months(&first_month, -LTV_MONTHS).ok_or_else(|| Error::field("from", "is out of range"))?;
        let lo = p.previous().into_iter().next().unwrap_or_else(|| p.from.clone());
        if p.granularity == Granularity::Month {
            rows = read_rows(store, &pk, Granularity::Month, &lo.min(ltv_from), &p.to).await?;
            months = rows.clone();
        } else {
            // Both at once: a read's latency is its slowest query, not their sum.
            let last_month = p.month_of_end(&p.to).ok_or_else(|| Error::field("to", "is out of range"))?;
            (rows, months) =
                tokio::try_join!(read_rows(store, &pk, p.granularity, &lo, &p.to), read_rows(store, &pk, Granularity::Month, &ltv_from, &last_month))?;
        }
    }
    Ok(report(&request, meta.as_ref().map(|m| m.computed_at.clone()), &rows, &months))
}

/// The report from the group's rows of the request's granularity and of
/// months (for LTV; key → row, a missing period is all zeros).
pub fn report(request: &Request, computed_at: Option<String>, rows: &BTreeMap<String, RevenueRow>, months: &BTreeMap<String, RevenueRow>) -> RevenueReport {
    let p = &request.periods;
    let row = |k: &str| rows.get(k).copied().unwrap_or_default();
    let churn_rate = |m: &str| {
        let r = months.get(m).copied().unwrap_or_default().movements;
        (r.customers_start > 0).then(|| r.churned_customers as f64 / r.customers_start as f64)
    };
    let computed_period = computed_at.as_deref().and_then(revenue::parse_time).map(|t| p.granularity.key_of(t));
    let mut periods = Vec::new();
    for key in &p.keys {
        let r = row(key);
        // LTV: the customer churn of the 6 months before the one the period ends in.
        let month = p.month_of_end(key).unwrap_or_default();
        let previous: Vec<Option<f64>> = (1..=LTV_MONTHS).rev().filter_map(|k| revenue::add_months(&month, -k)).map(|m| churn_rate(&m)).collect();
        let Metrics { arr, arpa, customer_churn_rate, gross_mrr_churn_rate, net_mrr_churn_rate, nrr, grr, quick_ratio, ltv } =
            revenue::metrics(&r.movements, &previous);
        let before = p.before(key).map(|k| row(&k)).unwrap_or_default();
        let m = &r.movements;
        periods.push(Period {
            period: key.clone(),
            partial: computed_period.as_deref() == Some(key.as_str()),
            gross_cents: r.gross,
            refunds_cents: r.refunds,
            net_cents: r.net(),
            orders: r.orders,
            refunded_orders: r.refunded_orders,
            mrr_start_cents: m.mrr_start,
            mrr_cents: m.mrr_end,
            arr_cents: arr,
            movements: m.into(),
            customers_start: m.customers_start,
            customers: m.customers_end,
            new_customers: m.new_customers,
            reactivated_customers: m.reactivated_customers,
            churned_customers: m.churned_customers,
            avg_days_since_churn: (m.reactivated_customers > 0).then(|| m.reactivation_days as f64 / m.reactivated_customers as f64),
            arpa_cents: arpa,
            customer_churn_rate,
            gross_mrr_churn_rate,
            net_mrr_churn_rate,
            nrr,
            grr,
            quick_ratio,
            ltv_cents: ltv,
            change: PeriodChange {
                mrr_cents: m.mrr_end - before.movements.mrr_end,
                gross_cents: r.gross - before.gross,
                net_cents: r.net() - before.net(),
                customers: m.customers_end - before.movements.customers_end,
                mrr_growth: growth(m.mrr_end, before.movements.mrr_end),
            },
        });
    }
    let totals = totals_of(&p.keys, &row);
    let previous = totals_of(&p.previous(), &row);
    let change = TotalsChange {
        gross_cents: totals.gross_cents - previous.gross_cents,
        net_cents: totals.net_cents - previous.net_cents,
        refunds_cents: totals.refunds_cents - previous.refunds_cents,
        mrr_end_cents: totals.mrr_end_cents - previous.mrr_end_cents,
        gross_growth: growth(totals.gross_cents, previous.gross_cents),
        net_growth: growth(totals.net_cents, previous.net_cents),
        mrr_growth: growth(totals.mrr_end_cents, previous.mrr_end_cents),
    };
    RevenueReport {
        from: p.from.clone(),
        to: p.to.clone(),
        granularity: p.granularity.name().into(),
        country: request.group.country.clone(),
        plan: request.group.plan.clone(),
        segment: request.segment.clone(),
        currency: "USD".into(),
        computed_at,
        periods,
        totals,
        previous,
        change,
    }
}

fn growth(now: i64, before: i64) -> Option<f64> {
    (before != 0).then(|| (now - before) as f64 / before as f64)
}

fn totals_of(keys: &[String], row: &impl Fn(&str) -> RevenueRow) -> Totals {
    let mut sum = RevenueRow::default();
    for k in keys {
        let r = row(k);
        sum.gross += r.gross;
        sum.refunds += r.refunds;
        sum.orders += r.orders;
        sum.movements.add(&r.movements);
    }
    let first = keys.first().map(|k| row(k)).unwrap_or_default();
    let last = keys.last().map(|k| row(k)).unwrap_or_default();
    Totals {
        from: keys.first().cloned().unwrap_or_default(),
        to: keys.last().cloned().unwrap_or_default(),
        gross_cents: sum.gross,
        refunds_cents: sum.refunds,
        net_cents: sum.net(),
        orders: sum.orders,
        mrr_start_cents: first.movements.mrr_start,
        mrr_end_cents: last.movements.mrr_end,
        movements: (&sum.movements).into(),
        new_customers: sum.movements.new_customers,
        reactivated_customers: sum.movements.reactivated_customers,
        churned_customers: sum.movements.churned_customers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> RevenueQuery {
        let get = |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        RevenueQuery { from: get("from"), to: get("to"), granularity: get("granularity"), country: get("country"), plan: get("plan"), segment: get("segment") }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-10T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn field_of(e: Error) -> String {
        match e {
            Error::Validation(fields) => fields[0].field.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_to_the_last_twelve_months_of_everyone() {
        let r = q(&[]).validate(now()).unwrap().periods;
        assert_eq!((r.from.as_str(), r.to.as_str(), r.keys.len()), ("2025-04", "2026-03", 12));
        let r = q(&[]).validate(now()).unwrap();
        assert_eq!(r.group, Group::all());
        let r = q(&[("from", "2025-11"), ("to", "2026-02"), ("country", "DE"), ("plan", "pro"), ("granularity", "month")]).validate(now()).unwrap();
        assert_eq!(r.periods.keys, ["2025-11", "2025-12", "2026-01", "2026-02"]);
        assert_eq!(r.group, Group { country: "DE".into(), plan: "pro".into() });
    }

    #[test]
    fn bad_input_names_its_field() {
        for (pairs, field) in [
            (vec![("from", "2025-13")], "from"),
            (vec![("from", "2025-1")], "from"),
            (vec![("to", "2027-01")], "to"),
            (vec![("from", "2026-02"), ("to", "2026-01")], "from"),
            (vec![("from", "2010-01")], "from"),
            (vec![("granularity", "week"), ("to", "2026-W12")], "to"),
            (vec![("granularity", "fortnight")], "granularity"),
            (vec![("country", "us")], "country"),
            (vec![("country", "USA")], "country"),
            (vec![("plan", "Pro!")], "plan"),
            (vec![("plan", "")], "plan"),
            (vec![("segment", "champions"), ("country", "US")], "segment"),
            (vec![("segment", "Champions")], "segment"),
        ] {
            assert_eq!(field_of(q(&pairs).validate(now()).unwrap_err()), field, "{pairs:?}");
        }
    }

    #[test]
    fn report_sums_totals_and_compares_with_the_range_before() {
        let request = q(&[("from", "2026-02"), ("to", "2026-03")]).validate(now()).unwrap();
        let row = |mrr_start, mrr_end, new, churn, gross| RevenueRow {
            movements: Movements { mrr_start, mrr_end, new, churn, customers_start: 1, customers_end: 1, ..Default::default() },
            gross,
            ..Default::default()
        };
        let rows = BTreeMap::from([
            ("2025-12".to_string(), row(0, 1000, 1000, 0, 1000)),
            ("2026-01".to_string(), row(1000, 1000, 0, 0, 1000)),
            ("2026-02".to_string(), row(1000, 3000, 2000, 0, 3000)),
            ("2026-03".to_string(), row(3000, 2000, 0, 1000, 2000)),
        ]);
        let report = report(&request, Some("2026-03-10T00:00:00.000000Z".into()), &rows, &rows);
        assert_eq!(report.periods.len(), 2);
        assert!(!report.periods[0].partial && report.periods[1].partial);
        assert_eq!(report.periods[0].change.mrr_cents, 2000);
        assert_eq!(report.periods[0].change.mrr_growth, Some(2.0));
        assert_eq!((report.totals.gross_cents, report.totals.mrr_start_cents, report.totals.mrr_end_cents), (5000, 1000, 2000));
        assert_eq!(report.totals.movements.net_cents, report.totals.mrr_end_cents - report.totals.mrr_start_cents);
        assert_eq!((report.previous.from.as_str(), report.previous.gross_cents, report.previous.mrr_end_cents), ("2025-12", 2000, 1000));
        assert_eq!((report.change.gross_cents, report.change.mrr_growth), (3000, Some(1.0)));
    }
}
