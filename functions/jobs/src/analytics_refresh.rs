//! `analytics_refresh` jobs: recompute the revenue rollups
//! (`shared::domain::revenue`) from every order and store them, so every
//! `/api/v1/analytics/*` read answers from a few rollup items. Everything a
//! refresh computes from (orders, activity events, users, charts and their
//! moderation decisions) is read in one parallel Scan of the table
//! ([`read_source`]). The rows are written as a new
//! generation; `REVENUE#META / CURRENT` is then switched to it with a
//! version check (a concurrent refresh that switched first wins, and this
//! one deletes what it wrote), and the previous generation is deleted.
//! The same generation holds the business rollups (`shared::domain::business`:
//! per month and country, cohorts by signup month, RFM), computed from the
//! activity events and the same orders; and the per-user profiles custom
//! segments are evaluated against (`shared::domain::custom_segments`),
//! from the users, the same events and orders, in chunks;
//! and moderation throughput (`shared::domain::moderation_metrics`) from
//! the charts not deleted and their decisions.
//! The same generation holds the models' outputs (`shared::domain::predictions`):
//! `keel_models::pipeline::fit_all` fits the forecasts (with backtest
//! cards), anomalies and churn model on the events and orders read here.
//! After the switch, the insights (`shared::domain::insights`) are brought
//! up to date: new findings created, known ones refreshed (their lifecycle
//! kept), ones no longer found marked stale, and implemented ones 30 days
//! old measured (`verified` / `no_effect`), each change with its audit entry.
//! Revenue, business and moderation rows are written by month and, packed
//! several to an item, by day, week and quarter (`shared::domain::periods`).
//! Also run by the local stack right after seeding.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use keel_models::pipeline::{self, Fitted};
use serde::Serialize;
use serde_json::Value;
use shared::audit::{AuditEntry, Journal};
use shared::domain::business::{self, Event};
use shared::domain::charts::{Chart, ModerationEvent};
use shared::domain::custom_segments::{self, Member, Profile, ProfileChunk, Rule};
use shared::domain::insights::{self, Insight};
use shared::domain::jobs::{AnalyticsRefresh, Job};
use shared::domain::moderation_metrics;
use shared::domain::periods::{self, Granularity};
use shared::domain::predictions::{self, StoredModel};
use shared::domain::revenue::{self, Order, RevenueMeta};
use shared::platform::error::{Error, Result};
use shared::store::{Item, QuerySpec, ScanSpec, Store, Write, from_item, s, timestamp, to_doc_item, to_item};

use crate::Worker;

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
    /// Models: forecasts and anomalies stored, customers scored for churn,
    /// the churn model's held-out AUC, and the insights written.
    pub forecasts: u64,
    pub anomalies: u64,
    pub churn_scored: u64,
    pub churn_auc: f64,
    pub insights: InsightChanges,
}

/// What a refresh did to the insights.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InsightChanges {
    pub found: u64,
    pub refreshed: u64,
    pub stale: u64,
    pub measured: u64,
}

/// How often a running refresh saves its progress on the job record.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Run the job: recompute, saving the step under way on the job record
/// (`progress.stage`, `processed` of `total`) at most every second, and
/// the last step once done.
pub async fn run(worker: &Worker, job: &Job) -> Result<Value> {
    let _: AnalyticsRefresh = job.payload()?;
    let latest: std::sync::Arc<std::sync::Mutex<Option<Step>>> = Default::default();
    let report = {
        let latest = latest.clone();
        move |step: Step| {
            if let Ok(mut slot) = latest.lock() {
                *slot = Some(step);
            }
        }
    };
    let work = recompute_with(&worker.store, Utc::now(), &report);
    tokio::pin!(work);
    let mut record = job.clone();
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let done = loop {
        tokio::select! {
            done = &mut work => break done?,
            _ = tick.tick() => {
                let step = latest.lock().ok().and_then(|mut slot| slot.take());
                if let Some(step) = step {
                    record = save_progress(&worker.store, record, step).await?;
                }
            }
        }
    };
    let step = latest.lock().ok().and_then(|mut slot| slot.take());
    if let Some(step) = step {
        save_progress(&worker.store, record, step).await?;
    }
    serde_json::to_value(&done).map_err(|e| Error::internal(e.to_string()))
}

/// Save `step` as the job's progress; on a concurrent change (a
/// cancellation, say) read the record back and leave it to the worker.
/// (Report jobs save their stages with it too.)
pub(crate) async fn save_progress(store: &Store, mut record: Job, step: Step) -> Result<Job> {
    record.progress = shared::domain::jobs::Progress { processed: step.done, total: step.total, stage: Some(step.stage.to_string()), ..Default::default() };
    match shared::domain::jobs::save(store, &record).await {
        Ok(saved) => Ok(saved),
        Err(Error::Conflict(_)) => Ok(shared::domain::jobs::get(store, &record.id).await?.unwrap_or(record)),
        Err(e) => Err(e),
    }
}

/// Segments of the parallel Scan that reads the source.
const SCAN_SEGMENTS: i32 = 4;

/// The items a refresh reads, by the listings that hold them: orders (gsi2
/// `ORDERS#yyyy-mm`), activity events (gsi1 `EVENTS#yyyy-mm-dd`),
/// moderation decisions (gsi1 `MODERATIONS#yyyy-mm`), users (gsi3 `USERS`)
/// and charts not deleted (gsi3 `CHARTS`; a deleted chart moves to
/// `CHARTS#deleted`). Matching the index keys rather than `type` keeps
/// exactly what those listings hold.
const SOURCE_FILTER: &str = "begins_with(gsi2pk, :orders) OR begins_with(gsi1pk, :events) OR begins_with(gsi1pk, :decisions) OR gsi3pk IN (:users, :charts)";
const ORDERS_PREFIX: &str = "ORDERS#";
const EVENTS_PREFIX: &str = "EVENTS#";
const DECISIONS_PREFIX: &str = "MODERATIONS#";
const USERS_PARTITION: &str = "USERS";
const CHARTS_PARTITION: &str = "CHARTS";

/// Where an item sits in its listing: the index keys, then the table's
/// (the order a Query of the index answers).
type ListingKey = (String, String, String, String);

fn listing_key(item: &Item, index: &str) -> ListingKey {
    let attr = |name: &str| shared::store::attr_s(item, name).unwrap_or_default().to_string();
    (attr(&format!("{index}pk")), attr(&format!("{index}sk")), attr("pk"), attr("sk"))
}

/// One part of the scan's finds, each with its listing key.
#[derive(Default)]
struct Found {
    orders: Vec<(ListingKey, Order)>,
    events: Vec<(ListingKey, Event)>,
    members: Vec<(ListingKey, Member)>,
    charts: Vec<(ListingKey, Chart)>,
    decisions: Vec<(ListingKey, ModerationEvent)>,
}

impl Found {
    /// Keep what `item` is for the source as of `as_of`: orders placed and
    /// events and decisions taken up to then, every user and every chart
    /// not deleted (charts created later are left out by the moderation
    /// figures, which read them as of `as_of`).
    fn add(&mut self, item: Item, as_of: DateTime<Utc>) -> Result<()> {
        let attr = |name: &str| shared::store::attr_s(&item, name).unwrap_or_default();
        let until_as_of = |at: &str| revenue::parse_time(at).is_some_and(|t| t <= as_of);
        if attr("gsi2pk").starts_with(ORDERS_PREFIX) {
            let key = listing_key(&item, "gsi2");
            let order: Order = from_item(item)?;
            if until_as_of(&order.created_at) {
                self.orders.push((key, order));
            }
        } else if attr("gsi1pk").starts_with(EVENTS_PREFIX) {
            let key = listing_key(&item, "gsi1");
            let event: Event = from_item(item)?;
            if until_as_of(&event.ts) {
                self.events.push((key, event));
            }
        } else if attr("gsi1pk").starts_with(DECISIONS_PREFIX) {
            let key = listing_key(&item, "gsi1");
            let decision: ModerationEvent = from_item(item)?;
            if until_as_of(&decision.at) {
                self.decisions.push((key, decision));
            }
        } else if attr("gsi3pk") == USERS_PARTITION {
            self.members.push((listing_key(&item, "gsi3"), from_item(item)?));
        } else if attr("gsi3pk") == CHARTS_PARTITION {
            self.charts.push((listing_key(&item, "gsi3"), from_item(item)?));
        }
        Ok(())
    }

    fn merge(&mut self, other: Found) {
        self.orders.extend(other.orders);
        self.events.extend(other.events);
        self.members.extend(other.members);
        self.charts.extend(other.charts);
        self.decisions.extend(other.decisions);
    }

    /// Each kind in its listing's order (orders newest month first, then
    /// oldest first within a month, as refreshes have always read them), so
    /// a refresh computes from the same sequence whatever order the scan
    /// answers in: the computations' stable sorts keep ties (events at the
    /// same instant) in input order.
    fn into_source(self) -> Source {
        Source {
            orders: in_order(self.orders, |(month, at, pk, sk)| (std::cmp::Reverse(month.clone()), at.clone(), pk.clone(), sk.clone())),
            events: in_order(self.events, Clone::clone),
            members: in_order(self.members, Clone::clone),
            charts: in_order(self.charts, Clone::clone),
            decisions: in_order(self.decisions, Clone::clone),
        }
    }
}

/// The `Source` as of `as_of` that [`read_source`] makes of `items`: tests
/// and the bench build it from generated items, without the emulator.
pub fn source_of(items: impl IntoIterator<Item = Item>, as_of: DateTime<Utc>) -> Result<Source> {
    let mut found = Found::default();
    for item in items {
        found.add(item, as_of)?;
    }
    Ok(found.into_source())
}

/// `found` in the order of `key`, without the keys.
fn in_order<K: Ord, T>(mut found: Vec<(ListingKey, T)>, key: impl Fn(&ListingKey) -> K) -> Vec<T> {
    found.sort_by_cached_key(|(k, _)| key(k));
    found.into_iter().map(|(_, v)| v).collect()
}

/// Read the `Source` as of `as_of` in one parallel Scan of the table,
/// telling `progress` the items read so far (stage `table`; the total is
/// not known beforehand, so it is the count so far).
///
/// Every refresh, scheduled or a backfill, reads this way (one code path):
/// each one recomputes everything, so it reads every order, activity
/// event, user, chart and decision, which are most of the table, and a
/// Scan in parallel segments of 1 MB pages reads them in the fewest
/// requests. DynamoDB charges the Scan for the rest of the table too
/// (audit entries, sessions, rollups: the filter trims what is sent, not
/// what is read), where reading the listings' partitions would take a
/// Query per day of activity and per month of orders and decisions,
/// hundreds of round trips; and on the emulator every Query of an index
/// walks the whole table, which made a backfill at 10x the demo data take
/// hours.
pub async fn read_source(store: &Store, as_of: DateTime<Utc>, progress: &(dyn Fn(Step) + Send + Sync)) -> Result<Source> {
    let spec = ScanSpec {
        filter: SOURCE_FILTER,
        values: vec![
            (":orders", s(ORDERS_PREFIX)),
            (":events", s(EVENTS_PREFIX)),
            (":decisions", s(DECISIONS_PREFIX)),
            (":users", s(USERS_PARTITION)),
            (":charts", s(CHARTS_PARTITION)),
        ],
        ..Default::default()
    };
    let read = std::sync::atomic::AtomicU64::new(0);
    progress(Step { stage: "table", done: 0, total: 0 });
    let parts = store
        .scan_parallel(&spec, SCAN_SEGMENTS, |found: &mut Found, items| {
            let done = read.fetch_add(items.len() as u64, std::sync::atomic::Ordering::Relaxed) + items.len() as u64;
            for item in items {
                found.add(item, as_of)?;
            }
            progress(Step { stage: "table", done, total: done });
            Ok(())
        })
        .await?;
    let mut all = Found::default();
    for part in parts {
        all.merge(part);
    }
    Ok(all.into_source())
}

/// The profile chunks of `generation` (sort key: the chunk number, 5 digits).
fn profile_items(generation: &str, profiles: &[Profile]) -> Result<Vec<Item>> {
    profiles
        .chunks(custom_segments::PROFILES_PER_CHUNK)
        .enumerate()
        .map(|(i, chunk)| {
            let mut item = to_doc_item(&ProfileChunk { profiles: chunk.to_vec() })?;
            item.insert("pk".into(), s(custom_segments::profiles_pk(generation)));
            item.insert("sk".into(), s(format!("{i:05}")));
            item.insert("type".into(), s("profile_chunk"));
            Ok(item)
        })
        .collect()
}

/// The granularities stored packed beside the months (`periods::pack`).
const FINER: [Granularity; 3] = [Granularity::Day, Granularity::Week, Granularity::Quarter];

/// Items of rows by `g`, packed (`periods::pack`: days by month, weeks,
/// months and quarters by year), under the group's partition
/// `monthly_pk(group)` marked with `g` (`partitions` gets their pks).
fn packed_items<G: Ord + Clone, R: Serialize>(
    rows: std::collections::BTreeMap<(G, String), R>,
    g: Granularity,
    monthly_pk: impl Fn(&G) -> String,
    kind: &str,
    partitions: &mut Vec<String>,
) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for ((group, pack_key), pack) in periods::pack(rows, g) {
        let pk = periods::packed_pk(&monthly_pk(&group), g);
        if partitions.last() != Some(&pk) {
            partitions.push(pk.clone());
        }
        let mut item = to_doc_item(&pack)?;
        item.insert("pk".into(), s(pk));
        item.insert("sk".into(), s(pack_key));
        item.insert("type".into(), s(kind));
        items.push(item);
    }
    Ok(items)
}

/// Every custom segment's id and rules (a rule that no longer parses is
/// left out, with a warning: the API validated it when it was saved).
async fn custom_segment_rules(store: &Store) -> Result<Vec<(String, Rule)>> {
    let spec = QuerySpec { key_condition: "pk = :pk", values: vec![(":pk", s(custom_segments::SEGMENTS_PK))], forward: true, ..Default::default() };
    let mut out = Vec::new();
    for item in store.query_all(&spec).await? {
        let (Some(id), Some(rules)) = (shared::store::attr_s(&item, "id"), shared::store::attr_s(&item, "rules")) else { continue };
        match serde_json::from_str::<Value>(rules).ok().and_then(|v| Rule::parse(&v, "rules").ok()) {
            Some(rule) => out.push((id.to_string(), rule)),
            None => tracing::warn!(segment_id = id, "custom segment rules do not parse; not computed"),
        }
    }
    Ok(out)
}

/// What `business_items` stores and counts.
struct BusinessItems {
    items: Vec<Item>,
    business_rows: u64,
    rfm_customers: u64,
    profiles: u64,
    /// The segments whose rows are among the items.
    segments: Vec<String>,
}

/// The business, cohort, RFM, profile and segment items of `generation`
/// from `source` (`partitions` gets their pks).
fn business_items(generation: &str, source: &Source, as_of: DateTime<Utc>, custom: &[(String, Rule)], partitions: &mut Vec<String>) -> Result<BusinessItems> {
    let Source { orders, events, members, charts, decisions } = source;
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
    items.extend(packed_items(rows, Granularity::Month, |country| business::business_pk(generation, country), "business_rollup_pack", partitions)?);
    let lives = moderation_metrics::lives(charts, decisions, as_of);
    let country_of = |owner: &str| moderation_metrics::country_or_unknown(users.get(owner).map(|u| u.country.as_str()));
    let rows = moderation_metrics::rollups(&lives, &country_of, as_of);
    items.extend(packed_items(
        rows,
        Granularity::Month,
        |country| moderation_metrics::moderation_pk(generation, country),
        "moderation_rollup_pack",
        partitions,
    )?);
    for g in FINER {
        let rows = business::period_rollups(&users, &payers, as_of, g);
        items.extend(packed_items(rows, g, |country| business::business_pk(generation, country), "business_rollup_pack", partitions)?);
        let rows = moderation_metrics::period_rollups(&lives, &country_of, as_of, g);
        items.extend(packed_items(rows, g, |country| moderation_metrics::moderation_pk(generation, country), "moderation_rollup_pack", partitions)?);
    }
    let rows = business::cohorts(&users, orders, as_of);
    items.extend(packed_items(rows, Granularity::Month, |country| business::cohorts_pk(generation, country), "cohort_rollup_pack", partitions)?);
    // RFM scores are of all customers; a country's summary counts its own.
    let customers = business::rfm(orders, as_of);
    let mut by_country: BTreeMap<String, Vec<business::RfmCustomer>> = BTreeMap::new();
    for c in &customers {
        let country = moderation_metrics::country_or_unknown(users.get(&c.user_id).map(|u| u.country.as_str()));
        by_country.entry(country).or_default().push(c.clone());
    }
    by_country.insert(revenue::ALL.to_string(), customers.clone());
    for (country, mine) in &by_country {
        items.push(keyed(business::rfm_pk(generation), business::rfm_sk(country), "rfm_rollup", to_doc_item(&business::rfm_summary(mine))?));
    }
    partitions.push(business::rfm_pk(generation));
    let profiles = custom_segments::profiles(members, events, orders, &customers, as_of);
    items.extend(profile_items(generation, &profiles)?);
    partitions.push(custom_segments::profiles_pk(generation));
    // Segments' members: each RFM segment's customers, each custom segment's users.
    let mut segments: BTreeMap<String, HashSet<&str>> = BTreeMap::new();
    for c in &customers {
        segments.entry(c.segment.as_str().to_string()).or_default().insert(c.user_id.as_str());
    }
    for (id, rule) in custom {
        segments.insert(id.clone(), profiles.iter().filter(|p| rule.matches(p, as_of)).map(|p| p.user_id.as_str()).collect());
    }
    let context = SegmentContext { generation, orders, users: &users, payers: &payers, lives: &lives, as_of };
    for (segment, members) in &segments {
        items.extend(context.items(segment, members, partitions)?);
    }
    Ok(BusinessItems { items, business_rows, rfm_customers: customers.len() as u64, profiles: profiles.len() as u64, segments: segments.into_keys().collect() })
}

/// What a segment's rows are computed from.
struct SegmentContext<'a> {
    generation: &'a str,
    orders: &'a [revenue::Order],
    users: &'a HashMap<String, business::UserActivity>,
    payers: &'a HashSet<&'a str>,
    lives: &'a [moderation_metrics::ChartLife],
    as_of: DateTime<Utc>,
}

impl SegmentContext<'_> {
    /// A segment's rows by every granularity: revenue of its members'
    /// subscriptions, their business figures and the moderation of their
    /// charts (membership as of the refresh, over all of history).
    fn items(&self, segment: &str, members: &HashSet<&str>, partitions: &mut Vec<String>) -> Result<Vec<Item>> {
        let orders: Vec<revenue::Order> = self.orders.iter().filter(|o| members.contains(o.user_id.as_str())).cloned().collect();
        let users: HashMap<String, business::UserActivity> =
            self.users.iter().filter(|(id, _)| members.contains(id.as_str())).map(|(id, u)| (id.clone(), u.clone())).collect();
        let lives: Vec<moderation_metrics::ChartLife> = self.lives.iter().filter(|l| members.contains(l.owner_id.as_str())).cloned().collect();
        let unknown = |_: &str| revenue::UNKNOWN_COUNTRY.to_string();
        let mut items = Vec::new();
        for g in Granularity::ALL {
            let all = revenue::Group::all();
            let revenue_rows: BTreeMap<String, revenue::RevenueRow> =
                revenue::period_rollups(&orders, self.as_of, g).into_iter().filter(|((group, _), _)| *group == all).map(|((_, k), r)| (k, r)).collect();
            items.extend(group_items(&revenue::segment_pk(self.generation, segment), g, revenue_rows, "revenue_rollup", partitions)?);
            let everyone = |rows: BTreeMap<(String, String), _>| rows.into_iter().filter(|((c, _), _)| c == revenue::ALL).map(|((_, k), r)| (k, r)).collect();
            let business_rows: BTreeMap<String, business::BusinessRow> = everyone(business::period_rollups(&users, self.payers, self.as_of, g));
            items.extend(group_items(&business::segment_pk(self.generation, segment), g, business_rows, "business_rollup", partitions)?);
            let moderation_rows: BTreeMap<String, moderation_metrics::ModerationRow> = moderation_metrics::period_rollups(&lives, &unknown, self.as_of, g)
                .into_iter()
                .filter(|((c, _), _)| c == revenue::ALL)
                .map(|((_, k), r)| (k, r))
                .collect();
            items.extend(group_items(&moderation_metrics::segment_pk(self.generation, segment), g, moderation_rows, "moderation_rollup", partitions)?);
        }
        Ok(items)
    }
}

/// One group's rows of `g` under its partition `pk`, packed (`packed_items`).
fn group_items<R: Serialize>(pk: &str, g: Granularity, rows: BTreeMap<String, R>, kind: &str, partitions: &mut Vec<String>) -> Result<Vec<Item>> {
    let keyed: BTreeMap<((), String), R> = rows.into_iter().map(|(k, r)| (((), k), r)).collect();
    packed_items(keyed, g, |_| pk.to_string(), &format!("{kind}_pack"), partitions)
}

/// Recompute and store the revenue and business rollups as of `as_of`.
pub async fn recompute(store: &Journal, as_of: DateTime<Utc>) -> Result<Refreshed> {
    recompute_with(store, as_of, &|_| {}).await
}

/// Everything a recomputation reads from the table.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub orders: Vec<Order>,
    pub events: Vec<Event>,
    pub members: Vec<Member>,
    pub charts: Vec<Chart>,
    pub decisions: Vec<ModerationEvent>,
}

/// A step of a job, for a progress display: a recomputation's `stage` is
/// `table` (items read; `total` is the count so far), `models`, `store` or
/// `insights`; a report's `reading`, `rendering` or `storing`.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub stage: &'static str,
    pub done: u64,
    pub total: u64,
}

/// `recompute`, telling `progress` how far it is (`keel analytics backfill`).
pub async fn recompute_with(store: &Journal, as_of: DateTime<Utc>, progress: &(dyn Fn(Step) + Send + Sync)) -> Result<Refreshed> {
    let source = read_source(store, as_of, progress).await?;
    store_generation(store, source, as_of, progress).await
}

/// Compute every rollup and model from `source` as of `as_of`, store them
/// as a new generation, switch to it, and update the insights. No reads of
/// the source here: the bench calls this with generated data (10x the
/// demo) to time the computation and writes apart from reading the table.
pub async fn store_generation(store: &Journal, source: Source, as_of: DateTime<Utc>, progress: &(dyn Fn(Step) + Send + Sync)) -> Result<Refreshed> {
    let rows = revenue::rollups(&source.orders, as_of);
    let generation = uuid::Uuid::now_v7().simple().to_string();
    let mut partitions: Vec<String> = Vec::new();
    let months: Vec<String> = rows.keys().map(|(_, m)| m.clone()).collect();
    let revenue_rows = rows.len() as u64;
    let mut items: Vec<Item> = packed_items(rows, Granularity::Month, |group| revenue::rollup_pk(&generation, group), "revenue_rollup_pack", &mut partitions)?;
    for g in FINER {
        let rows = revenue::period_rollups(&source.orders, as_of, g);
        items.extend(packed_items(rows, g, |group| revenue::rollup_pk(&generation, group), "revenue_rollup_pack", &mut partitions)?);
    }
    let custom = custom_segment_rules(store).await?;
    let BusinessItems { items: more, business_rows, rfm_customers, profiles, segments } =
        business_items(&generation, &source, as_of, &custom, &mut partitions)?;
    items.extend(more);
    let Source { orders, events, .. } = source;
    // Fitting is CPU work of seconds: off the async threads.
    progress(Step { stage: "models", done: 0, total: 1 });
    let (events, orders) = (std::sync::Arc::new(events), std::sync::Arc::new(orders));
    let fitted = {
        let (events, orders) = (events.clone(), orders.clone());
        tokio::task::spawn_blocking(move || pipeline::fit_all(&events, &orders, as_of)).await.map_err(|e| Error::internal(format!("model fitting: {e}")))?
    };
    progress(Step { stage: "models", done: 1, total: 1 });
    items.extend(model_items(&generation, &fitted, &mut partitions)?);
    partitions.sort();
    partitions.dedup();
    let customers = orders.iter().map(|o| o.user_id.as_str()).collect::<std::collections::HashSet<_>>().len() as u64;
    let refreshed = Refreshed {
        generation: generation.clone(),
        orders: orders.len() as u64,
        customers,
        rows: revenue_rows,
        first_month: months.iter().min().map(|m| m.to_string()),
        last_month: months.iter().max().map(|m| m.to_string()),
        events: events.len() as u64,
        business_rows,
        rfm_customers,
        profiles,
        forecasts: fitted.forecasts.len() as u64,
        anomalies: fitted.anomalies.len() as u64,
        churn_scored: fitted.churn.customers.len() as u64,
        churn_auc: fitted.churn.evaluation.auc,
        insights: InsightChanges::default(),
    };
    let mut index = to_doc_item(&revenue::GenerationPartitions { partitions: partitions.clone() })?;
    index.insert("pk".into(), s(revenue::META_PK));
    index.insert("sk".into(), s(revenue::partitions_sk(&generation)));
    index.insert("type".into(), s("revenue_partitions"));
    items.push(index);
    let total = items.len() as u64;
    progress(Step { stage: "store", done: 0, total });
    store.batch_put(items).await?;
    progress(Step { stage: "store", done: total, total });

    let previous: Option<RevenueMeta> = store.get(revenue::META_PK, revenue::META_SK).await?;
    let meta = RevenueMeta {
        generation,
        computed_at: timestamp(as_of),
        first_month: refreshed.first_month.clone(),
        last_month: refreshed.last_month.clone(),
        orders: refreshed.orders,
        customers,
        partitions: Vec::new(),
        version: previous.as_ref().map_or(1, |p| p.version + 1),
        segments,
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
        delete_generation(store, &meta.generation, &partitions).await?;
        return Err(e);
    }
    if let Some(previous) = previous {
        let listed: Option<revenue::GenerationPartitions> = store.get_doc(revenue::META_PK, &revenue::partitions_sk(&previous.generation)).await?;
        let mut old = previous.partitions;
        old.extend(listed.map(|l| l.partitions).unwrap_or_default());
        delete_generation(store, &previous.generation, &old).await?;
    }
    let mut refreshed = refreshed;
    progress(Step { stage: "insights", done: 0, total: 1 });
    refreshed.insights = update_insights(store, &fitted, as_of).await?;
    progress(Step { stage: "insights", done: 1, total: 1 });
    Ok(refreshed)
}

/// The models partition (forecasts, anomalies, the churn model) and the
/// churn scores of `generation`.
fn model_items(generation: &str, fitted: &Fitted, partitions: &mut Vec<String>) -> Result<Vec<Item>> {
    let models = predictions::models_pk(generation);
    let scores = predictions::churn_pk(generation);
    let keyed = |pk: &str, sk: String, kind: &str, model: StoredModel| -> Result<Item> {
        let mut item = to_item(&model)?;
        item.insert("pk".into(), s(pk));
        item.insert("sk".into(), s(sk));
        item.insert("type".into(), s(kind));
        Ok(item)
    };
    let mut items = Vec::new();
    fn json<T: Serialize>(value: &T) -> Result<Value> {
        serde_json::to_value(value).map_err(|e| Error::internal(format!("serializing a model: {e}")))
    }
    let pack = |sk: String, kind: &str, packed: Vec<predictions::KeyedModel>| -> Result<Item> {
        let mut item = to_doc_item(&predictions::ModelPack { models: packed })?;
        item.insert("pk".into(), s(models.as_str()));
        item.insert("sk".into(), s(sk));
        item.insert("type".into(), s(kind));
        Ok(item)
    };
    let forecasts = fitted.forecasts.iter().map(|f| Ok(predictions::KeyedModel { key: f.series.clone(), model: json(f)? })).collect::<Result<Vec<_>>>()?;
    items.push(pack(predictions::FORECAST_PREFIX.to_string(), "forecasts", forecasts)?);
    let mut by_month: BTreeMap<String, Vec<predictions::KeyedModel>> = BTreeMap::new();
    for a in &fitted.anomalies {
        let day = a.date.to_string();
        by_month.entry(predictions::anomaly_month_sk(&day)).or_default().push(predictions::KeyedModel { key: day, model: json(a)? });
    }
    for (sk, mut anomalies) in by_month {
        anomalies.sort_by(|a, b| a.key.cmp(&b.key));
        items.push(pack(sk, "anomalies", anomalies)?);
    }
    let mut model = fitted.churn.clone();
    model.customers = Vec::new();
    items.push(keyed(&models, predictions::CHURN_SK.into(), "churn_model", StoredModel::of(&model)?)?);
    // Riskiest first, a chunk an item: a page of at-risk customers is one
    // or a few items, however many customers there are.
    for (i, chunk) in fitted.churn.customers.chunks(predictions::RISKS_PER_CHUNK).enumerate() {
        let mut item = to_doc_item(&chunk)?;
        item.insert("pk".into(), s(scores.as_str()));
        item.insert("sk".into(), s(predictions::risk_sk(i * predictions::RISKS_PER_CHUNK)));
        item.insert("type".into(), s("churn_scores"));
        items.push(item);
    }
    partitions.push(models);
    partitions.push(scores);
    Ok(items)
}

/// Changes per transaction: each is the insight and its audit entry.
const INSIGHT_CHANGES_PER_COMMIT: usize = 25;

/// Bring the insights up to date with `fitted` (see the module's doc).
async fn update_insights(journal: &Journal, fitted: &Fitted, as_of: DateTime<Utc>) -> Result<InsightChanges> {
    let store: &Store = journal;
    let actor = shared::audit::Actor::system("analytics");
    let known: std::collections::HashMap<String, Insight> = insights::all(store).await?.into_iter().map(|i| (i.id.clone(), i)).collect();
    let mut counts = InsightChanges::default();
    let mut changes: Vec<(Vec<Write>, AuditEntry)> = Vec::new();
    let mut change = |previous: Option<&Insight>, next: Insight, action: &str| -> Result<()> {
        let write = match previous {
            Some(p) => Write::put_versioned(store.table(), next.to_item()?, p.version)?,
            None => Write::put_new(store.table(), next.to_item()?, Error::Conflict(format!("insight {} exists", next.id)))?,
        };
        let audit = AuditEntry::at(as_of, &actor, action, "insight", &next.id).changes(previous.map(Insight::audit_view).as_ref(), Some(&next.audit_view()));
        changes.push((vec![write], audit));
        Ok(())
    };
    let mut found_ids = std::collections::HashSet::new();
    for finding in &fitted.findings {
        let id = insights::id_for(&finding.key).into_string();
        if !found_ids.insert(id.clone()) {
            continue;
        }
        match known.get(&id) {
            None => {
                change(None, Insight::found(finding.clone(), as_of), "analytics.insight.found")?;
                counts.found += 1;
            }
            Some(old) => {
                let next = old.refound(finding.clone(), as_of);
                if let Some(measured) = measure(&next, fitted, as_of) {
                    change(Some(old), measured, "analytics.insight.measured")?;
                    counts.measured += 1;
                } else if old.finding != *finding || old.stale {
                    change(Some(old), next, "analytics.insight.refreshed")?;
                    counts.refreshed += 1;
                }
            }
        }
    }
    for old in known.values() {
        if found_ids.contains(&old.id) {
            continue;
        }
        // A workflow's insight is not the models' to find: it is never
        // stale, though its outcome is measured like any other's.
        if old.origin.is_some() {
            if let Some(measured) = measure(old, fitted, as_of) {
                change(Some(old), measured, "analytics.insight.measured")?;
                counts.measured += 1;
            }
            continue;
        }
        if let Some(measured) = measure(old, fitted, as_of) {
            change(Some(old), measured, "analytics.insight.measured")?;
            counts.measured += 1;
        } else if !old.stale && old.outcome_due(as_of).is_none() {
            let mut next = old.clone();
            next.stale = true;
            next.updated_at = timestamp(as_of);
            next.version += 1;
            change(Some(old), next, "analytics.insight.stale")?;
            counts.stale += 1;
        }
    }
    while !changes.is_empty() {
        let batch: Vec<(Vec<Write>, AuditEntry)> = changes.drain(..INSIGHT_CHANGES_PER_COMMIT.min(changes.len())).collect();
        journal.commit_many(batch).await?;
    }
    Ok(counts)
}

/// `insight` with its outcome, if it is due and its series covers both windows.
fn measure(insight: &Insight, fitted: &Fitted, as_of: DateTime<Utc>) -> Option<Insight> {
    let implemented = insight.outcome_due(as_of)?;
    let outcome = keel_models::insights::measure_outcome(&fitted.series, &insight.finding.measure, implemented.date_naive(), as_of)?;
    Some(insight.measured(outcome, VERIFIED_CONFIDENCE, as_of))
}

/// The one-sided confidence at which an implemented insight's metric
/// counts as moved (`verified`); below it, `no_effect`.
pub const VERIFIED_CONFIDENCE: f64 = 0.9;

/// Delete a generation: its partitions, then the item listing them.
async fn delete_generation(store: &Store, generation: &str, partitions: &[String]) -> Result<()> {
    delete_partitions(store, partitions).await?;
    store.batch_delete(&[(revenue::META_PK.to_string(), revenue::partitions_sk(generation))]).await
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
