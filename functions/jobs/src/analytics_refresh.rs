//! `analytics_refresh` jobs: recompute the revenue rollups
//! (`shared::domain::revenue`) from every order and store them, so every
//! `/api/v1/analytics/*` read answers from a few rollup items. Orders are
//! read month partition by month partition (gsi2 `ORDERS#yyyy-mm`), newest
//! first, until 24 months in a row hold none. The rows are written as a new
//! generation; `REVENUE#META / CURRENT` is then switched to it with a
//! version check (a concurrent refresh that switched first wins, and this
//! one deletes what it wrote), and the previous generation is deleted.
//! The same generation holds the business rollups (`shared::domain::business`:
//! per month and country, cohorts by signup month, RFM), computed from the
//! activity events (gsi1 `EVENTS#yyyy-mm-dd`, from the day the first user
//! signed up) and the same orders; and the per-user profiles custom
//! segments are evaluated against (`shared::domain::custom_segments`),
//! from the users (gsi3 `USERS`), the same events and orders, in chunks;
//! and moderation throughput (`shared::domain::moderation_metrics`) from
//! the charts (gsi3 `CHARTS`) and their decisions (gsi1 `MODERATIONS#yyyy-mm`).
//! Also run by the local stack right after seeding.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use shared::domain::business::{self, Event};
use shared::domain::charts::{self, Chart, ModerationEvent};
use shared::domain::custom_segments::{self, Member, Profile, ProfileChunk};
use shared::domain::jobs::{AnalyticsRefresh, Job};
use shared::domain::moderation_metrics;
use shared::domain::revenue::{self, Order, RevenueMeta};
use shared::platform::error::{Error, Result};
use shared::store::{Item, QuerySpec, Store, Write, from_item, s, timestamp, to_item};

use crate::Worker;

/// Months in a row without orders after which the walk back stops.
pub const EMPTY_MONTHS_TO_STOP: usize = 24;

#[derive(Debug, Clone, Serialize)]
pub struct Refreshed {
    pub generation: String,
    pub orders: u64,
    pub customers: u64,
    pub rows: u64,
    pub first_month: Option<String>,
    pub last_month: Option<String>,
    /// Activity events read, and the business, cohort and RFM items written.
    pub events: u64,
    pub business_rows: u64,
    pub rfm_customers: u64,
    /// Users profiled for custom segments.
    pub profiles: u64,
}

/// Day partitions of the events index read at once.
const EVENT_DAYS_IN_FLIGHT: usize = 8;

pub async fn run(worker: &Worker, job: &Job) -> Result<Value> {
    let _: AnalyticsRefresh = job.payload()?;
    let done = recompute(&worker.store, Utc::now()).await?;
    serde_json::to_value(&done).map_err(|e| Error::internal(e.to_string()))
}

/// Every order placed up to `as_of`.
pub async fn read_orders(store: &Store, as_of: DateTime<Utc>) -> Result<Vec<Order>> {
    let mut orders = Vec::new();
    let mut month = revenue::month_key(as_of);
    let mut empty = 0;
    while empty < EMPTY_MONTHS_TO_STOP {
        let pk = format!("ORDERS#{month}");
        let spec = QuerySpec { index: Some("gsi2"), key_condition: "gsi2pk = :pk", values: vec![(":pk", s(pk))], forward: true, ..Default::default() };
        let items = store.query_all(&spec).await?;
        empty = if items.is_empty() { empty + 1 } else { 0 };
        for item in items {
            let order: Order = from_item(item)?;
            if revenue::parse_time(&order.created_at).is_some_and(|t| t <= as_of) {
                orders.push(order);
            }
        }
        month = revenue::add_months(&month, -1).ok_or_else(|| Error::internal("month before year 1"))?;
    }
    Ok(orders)
}

/// Every activity event up to `as_of`: the day partitions (gsi1
/// `EVENTS#yyyy-mm-dd`) from the day the earliest user signed up (gsi3
/// `USERS`, oldest first) through the day of `as_of`.
pub async fn read_events(store: &Store, as_of: DateTime<Utc>) -> Result<Vec<Event>> {
    let spec = QuerySpec { index: Some("gsi3"), key_condition: "gsi3pk = :pk", values: vec![(":pk", s("USERS"))], forward: true, ..Default::default() };
    let (first, _) = store.query_page(&spec, None, 1).await?;
    let Some(first) = first.first().and_then(|u| shared::store::attr_s(u, "created_at")).and_then(revenue::parse_time) else {
        return Ok(Vec::new());
    };
    let days: Vec<String> = first.date_naive().iter_days().take_while(|d| *d <= as_of.date_naive()).map(|d| d.format("%Y-%m-%d").to_string()).collect();
    let pages: Vec<Result<Vec<Item>>> = futures::stream::iter(days)
        .map(|day| async move {
            let spec = QuerySpec {
                index: Some("gsi1"),
                key_condition: "gsi1pk = :pk",
                values: vec![(":pk", s(format!("EVENTS#{day}")))],
                forward: true,
                ..Default::default()
            };
            store.query_all(&spec).await
        })
        .buffered(EVENT_DAYS_IN_FLIGHT)
        .collect()
        .await;
    let mut events = Vec::new();
    for page in pages {
        for item in page? {
            let event: Event = from_item(item)?;
            if revenue::parse_time(&event.ts).is_some_and(|t| t <= as_of) {
                events.push(event);
            }
        }
    }
    Ok(events)
}

/// Every chart not deleted (gsi3 `CHARTS`) and every moderation decision
/// (gsi1 `MODERATIONS#yyyy-mm`, from the oldest chart's month through `as_of`'s).
pub async fn read_moderation(store: &Store, as_of: DateTime<Utc>) -> Result<(Vec<Chart>, Vec<ModerationEvent>)> {
    let spec = QuerySpec { index: Some("gsi3"), key_condition: "gsi3pk = :pk", values: vec![(":pk", s("CHARTS"))], forward: true, ..Default::default() };
    let charts: Vec<Chart> = store.query_all(&spec).await?.into_iter().map(from_item).collect::<Result<_>>()?;
    let mut events = Vec::new();
    let Some(first) = charts.iter().filter_map(|c| revenue::parse_time(&c.created_at)).min() else {
        return Ok((charts, events));
    };
    let (mut month, last) = (revenue::month_key(first), revenue::month_key(as_of));
    while month <= last {
        let spec = QuerySpec {
            index: Some("gsi1"),
            key_condition: "gsi1pk = :pk",
            values: vec![(":pk", s(charts::moderations_partition(&month)))],
            forward: true,
            ..Default::default()
        };
        for item in store.query_all(&spec).await? {
            events.push(from_item(item)?);
        }
        month = revenue::add_months(&month, 1).ok_or_else(|| Error::internal("month after year 9999"))?;
    }
    Ok((charts, events))
}

/// Every user item (gsi3 `USERS`), the fields profiles read.
pub async fn read_members(store: &Store) -> Result<Vec<Member>> {
    let spec = QuerySpec { index: Some("gsi3"), key_condition: "gsi3pk = :pk", values: vec![(":pk", s("USERS"))], forward: true, ..Default::default() };
    store.query_all(&spec).await?.into_iter().map(from_item).collect()
}

/// The profile chunks of `generation` (sort key: the chunk number, 5 digits).
fn profile_items(generation: &str, profiles: &[Profile]) -> Result<Vec<Item>> {
    profiles
        .chunks(custom_segments::PROFILES_PER_CHUNK)
        .enumerate()
        .map(|(i, chunk)| {
            let mut item = to_item(&ProfileChunk { profiles: chunk.to_vec() })?;
            item.insert("pk".into(), s(custom_segments::profiles_pk(generation)));
            item.insert("sk".into(), s(format!("{i:05}")));
            item.insert("type".into(), s("profile_chunk"));
            Ok(item)
        })
        .collect()
}

/// The business, cohort and RFM items of `generation` (`partitions` gets their pks).
fn business_items(
    generation: &str,
    events: &[Event],
    orders: &[revenue::Order],
    as_of: DateTime<Utc>,
    members: &[Member],
    moderation: &(Vec<Chart>, Vec<ModerationEvent>),
    partitions: &mut Vec<String>,
) -> Result<(Vec<Item>, u64, u64, u64)> {
    let users = business::activity(events, as_of);
    let payers = business::payers(orders, as_of);
    let mut items = Vec::new();
    let keyed = |pk: String, sk: String, kind: &str, mut item: Item| {
        item.insert("pk".into(), s(pk));
        item.insert("sk".into(), s(sk));
        item.insert("type".into(), s(kind));
        item
    };
    let rows = business::rollups(&users, &payers, as_of);
    let business_rows = rows.len() as u64;
    for ((country, month), row) in rows {
        let pk = business::business_pk(generation, &country);
        partitions.push(pk.clone());
        items.push(keyed(pk, month, "business_rollup", to_item(&row)?));
    }
    let lives = moderation_metrics::lives(&moderation.0, &moderation.1, as_of);
    let country_of = |owner: &str| moderation_metrics::country_or_unknown(users.get(owner).map(|u| u.country.as_str()));
    for ((country, month), row) in moderation_metrics::rollups(&lives, &country_of, as_of) {
        let pk = moderation_metrics::moderation_pk(generation, &country);
        partitions.push(pk.clone());
        items.push(keyed(pk, month, "moderation_rollup", to_item(&row)?));
    }
    for (month, row) in business::cohorts(&users, orders, as_of) {
        items.push(keyed(business::cohorts_pk(generation), month, "cohort_rollup", to_item(&row)?));
    }
    partitions.push(business::cohorts_pk(generation));
    let customers = business::rfm(orders, as_of);
    items.push(keyed(business::rfm_pk(generation), business::RFM_SK.into(), "rfm_rollup", to_item(&business::rfm_summary(&customers))?));
    partitions.push(business::rfm_pk(generation));
    let profiles = custom_segments::profiles(members, events, orders, &customers, as_of);
    items.extend(profile_items(generation, &profiles)?);
    partitions.push(custom_segments::profiles_pk(generation));
    Ok((items, business_rows, customers.len() as u64, profiles.len() as u64))
}

/// Recompute and store the revenue and business rollups as of `as_of`.
pub async fn recompute(store: &Store, as_of: DateTime<Utc>) -> Result<Refreshed> {
    let orders = read_orders(store, as_of).await?;
    let rows = revenue::rollups(&orders, as_of);
    let generation = uuid::Uuid::now_v7().simple().to_string();
    let mut partitions: Vec<String> = Vec::new();
    let mut items: Vec<Item> = Vec::with_capacity(rows.len());
    for ((group, month), row) in &rows {
        let pk = revenue::rollup_pk(&generation, group);
        if partitions.last() != Some(&pk) {
            partitions.push(pk.clone());
        }
        let mut item = to_item(row)?;
        item.insert("pk".into(), s(pk));
        item.insert("sk".into(), s(month.clone()));
        item.insert("type".into(), s("revenue_rollup"));
        items.push(item);
    }
    let events = read_events(store, as_of).await?;
    let members = read_members(store).await?;
    let moderation = read_moderation(store, as_of).await?;
    let (more, business_rows, rfm_customers, profiles) = business_items(&generation, &events, &orders, as_of, &members, &moderation, &mut partitions)?;
    items.extend(more);
    partitions.sort();
    partitions.dedup();
    let months: Vec<&String> = rows.keys().map(|(_, m)| m).collect();
    let customers = orders.iter().map(|o| o.user_id.as_str()).collect::<std::collections::HashSet<_>>().len() as u64;
    let refreshed = Refreshed {
        generation: generation.clone(),
        orders: orders.len() as u64,
        customers,
        rows: rows.len() as u64,
        first_month: months.iter().min().map(|m| m.to_string()),
        last_month: months.iter().max().map(|m| m.to_string()),
        events: events.len() as u64,
        business_rows,
        rfm_customers,
        profiles,
    };
    store.batch_put(items).await?;

    let previous: Option<RevenueMeta> = store.get(revenue::META_PK, revenue::META_SK).await?;
    let meta = RevenueMeta {
        generation,
        computed_at: timestamp(as_of),
        first_month: refreshed.first_month.clone(),
        last_month: refreshed.last_month.clone(),
        orders: refreshed.orders,
        customers,
        partitions: partitions.clone(),
        version: previous.as_ref().map_or(1, |p| p.version + 1),
    };
    let mut item = to_item(&meta)?;
    item.insert("pk".into(), s(revenue::META_PK));
    item.insert("sk".into(), s(revenue::META_SK));
    item.insert("type".into(), s("revenue_meta"));
    let write = match &previous {
        Some(p) => Write::put_versioned(store.table(), item, p.version)?,
        None => Write::put_new(store.table(), item, Error::Conflict("another refresh stored its rollups first".into()))?,
    };
    if let Err(e) = store.transact(vec![write]).await {
        delete_partitions(store, &partitions).await?;
        return Err(e);
    }
    if let Some(previous) = previous {
        delete_partitions(store, &previous.partitions).await?;
    }
    Ok(refreshed)
}

async fn delete_partitions(store: &Store, partitions: &[String]) -> Result<()> {
    for pk in partitions {
        let spec = QuerySpec { key_condition: "pk = :pk", values: vec![(":pk", s(pk.clone()))], forward: true, ..Default::default() };
        let keys: Vec<(String, String)> = store
            .query_all(&spec)
            .await?
            .iter()
            .filter_map(|i| Some((shared::store::attr_s(i, "pk")?.to_string(), shared::store::attr_s(i, "sk")?.to_string())))
            .collect();
        store.batch_delete(&keys).await?;
    }
    Ok(())
}
