//! One-off rollup backfill: computes every rollup from the items already in
//! the table with a parallel Scan (workers may scan; request paths may not)
//! and writes the totals. For a table whose rollups are empty and whose
//! stream is then consumed only from after the scan began (the local demo
//! seed); deployed, the stream sees every write from the table's creation.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use shared::domain::rollups;
use shared::platform::error::{Error, Result};
use shared::store::{Item, ScanSpec, Store, n, s};

use crate::effects::{self, Effect};

/// Segments of the parallel scan.
pub const SEGMENTS: i32 = 4;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Backfilled {
    pub items_scanned: usize,
    pub counters: usize,
    pub active_users: usize,
    pub security_events: usize,
}

#[derive(Default)]
struct Totals {
    adds: BTreeMap<(&'static str, String), i64>,
    last_active: HashMap<String, String>,
    security: Vec<Item>,
    latest: Vec<rollups::SecurityEvent>,
    scanned: usize,
}

impl Totals {
    fn fold(&mut self, effects: Vec<Effect>) -> Result<()> {
        for ((metric, bucket), delta) in effects::net_adds(&effects) {
            *self.adds.entry((metric, bucket)).or_insert(0) += delta;
        }
        for effect in effects {
            match effect {
                Effect::Active { user_id, day } => {
                    let entry = self.last_active.entry(user_id).or_default();
                    if *entry < day {
                        *entry = day;
                    }
                }
                Effect::Security(event) => {
                    self.security.push(crate::security_item(&event)?);
                    self.latest = rollups::merge_latest(&self.latest, [event]);
                }
                Effect::Add { .. } => {}
            }
        }
        Ok(())
    }

    fn merge(&mut self, other: Totals) {
        for (k, v) in other.adds {
            *self.adds.entry(k).or_insert(0) += v;
        }
        for (user, day) in other.last_active {
            let entry = self.last_active.entry(user).or_default();
            if *entry < day {
                *entry = day;
            }
        }
        self.security.extend(other.security);
        self.latest = rollups::merge_latest(&self.latest, other.latest);
        self.scanned += other.scanned;
    }
}

/// Scan the table and write every rollup.
pub async fn run(store: &Store) -> Result<Backfilled> {
    let parts = store
        .scan_parallel(&ScanSpec::default(), SEGMENTS, |totals: &mut Totals, items| {
            for item in items {
                totals.scanned += 1;
                let value: Value = serde_dynamo::from_item(item).map_err(|e| Error::internal(format!("scanned item: {e}")))?;
                totals.fold(effects::of_change(None, Some(&value)))?;
            }
            Ok(())
        })
        .await?;
    let mut totals = Totals::default();
    for part in parts {
        totals.merge(part);
    }
    write(store, totals).await
}

/// Write every rollup of `items`, which the caller has just put into an
/// otherwise empty table (benchmarks load more data than a Scan of the
/// emulator can read back in reasonable time).
pub async fn run_over(store: &Store, items: &[Item]) -> Result<Backfilled> {
    let mut totals = Totals::default();
    for item in items {
        totals.scanned += 1;
        let value: Value = serde_dynamo::from_item(item.clone()).map_err(|e| Error::internal(format!("item: {e}")))?;
        totals.fold(effects::of_change(None, Some(&value)))?;
    }
    write(store, totals).await
}

async fn write(store: &Store, totals: Totals) -> Result<Backfilled> {
    let mut last_active_days: BTreeMap<String, i64> = BTreeMap::new();
    let mut items: Vec<Item> = Vec::new();
    for (user_id, day) in &totals.last_active {
        *last_active_days.entry(day.clone()).or_insert(0) += 1;
        items.push(Item::from([
            ("pk".to_string(), s(rollups::activity_pk(user_id))),
            ("sk".to_string(), s(rollups::ACTIVITY_SK)),
            ("day".to_string(), s(day.clone())),
            ("user_id".to_string(), s(user_id.clone())),
        ]));
    }
    let counter = |metric: &str, bucket: &str, value: i64| {
        Item::from([("pk".to_string(), s(rollups::pk(metric))), ("sk".to_string(), s(bucket)), (rollups::VALUE.to_string(), n(value))])
    };
    let counters = totals.adds.len() + last_active_days.len();
    items.extend(totals.adds.iter().map(|((metric, bucket), v)| counter(metric, bucket, *v)));
    items.extend(last_active_days.iter().map(|(day, v)| counter(rollups::LAST_ACTIVE, day, *v)));
    let cutoff = chrono::Utc::now().timestamp();
    let security: Vec<Item> = totals
        .security
        .into_iter()
        .filter(|i| i.get("ttl").and_then(|t| t.as_n().ok()).and_then(|t| t.parse::<i64>().ok()).is_some_and(|t| t > cutoff))
        .collect();
    let security_events = security.len();
    items.extend(security);
    if !totals.latest.is_empty() {
        let mut latest = shared::store::to_item(&rollups::LatestSecurityEvents { events: totals.latest, version: 1 })?;
        latest.insert("pk".into(), s(rollups::SECURITY_LATEST_PK));
        latest.insert("sk".into(), s(rollups::SECURITY_LATEST_SK));
        items.push(latest);
    }
    store.batch_put(items).await?;
    Ok(Backfilled { items_scanned: totals.scanned, counters, active_users: totals.last_active.len(), security_events })
}
