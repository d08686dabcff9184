//! The health of each integration (docs/integrations.md, "The hub"): the
//! outcome of its last connection test or use, kept as
//! `INTEGRATION#<name> / HEALTH` (listed on gsi1 `INTEGRATIONHEALTH`), read
//! by the hub's catalogue and the admin health route. After
//! `FAILING_AFTER` failures in a row the integration is `failing` and the
//! `IntegrationFailing` metric (dimension `Integration`) reads 1, which
//! `IntegrationFailingAlarm` watches; a success sets it back to 0.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::platform::error::Result;
use crate::store::{QuerySpec, Store, UpdateSpec, from_item, n, s, timestamp};

pub const LIST_PK: &str = "INTEGRATIONHEALTH";
/// Failures in a row that make an integration `failing`.
pub const FAILING_AFTER: u64 = 3;
/// The longest error text kept.
const MAX_ERROR_CHARS: usize = 500;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IntegrationHealth {
    pub name: String,
    #[serde(default)]
    pub last_success_at: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_error_at: Option<String>,
    #[serde(default)]
    pub consecutive_failures: u64,
}

impl IntegrationHealth {
    pub fn failing(&self) -> bool {
        self.consecutive_failures >= FAILING_AFTER
    }
}

/// A webhook endpoint's delivery health (`WEBHOOK#<id> / HEALTH`), written
/// by the integrations function after every attempt; the hub and the
/// compliance recommendations judge it by the same rule (`failing`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EndpointHealth {
    #[serde(default)]
    pub last_success_at: Option<String>,
    #[serde(default)]
    pub last_failure_at: Option<String>,
    /// The first failed attempt with no success since; none while healthy.
    #[serde(default)]
    pub failing_since: Option<String>,
    #[serde(default)]
    pub consecutive_failures: u64,
}

impl EndpointHealth {
    /// Failing: `FAILING_AFTER` failed attempts in a row, none succeeded since.
    pub fn failing(&self) -> bool {
        self.failing_since.is_some() && self.consecutive_failures >= FAILING_AFTER
    }
}

pub fn pk(name: &str) -> String {
    format!("INTEGRATION#{name}")
}

/// Record an outcome (`Err` with what went wrong); the health after it.
pub async fn record(store: &Store, name: &str, outcome: std::result::Result<(), String>, now: DateTime<Utc>) -> Result<IntegrationHealth> {
    let (expression, error) = match &outcome {
        Ok(()) => ("SET #name = :name, last_success_at = :now, consecutive_failures = :zero, gsi1pk = :list, gsi1sk = :name, #type = :type", None),
        Err(e) => (
            "SET #name = :name, last_error = :error, last_error_at = :now, gsi1pk = :list, gsi1sk = :name, #type = :type ADD consecutive_failures :one",
            Some(e.chars().take(MAX_ERROR_CHARS).collect::<String>()),
        ),
    };
    let mut spec = UpdateSpec::new(expression)
        .name("#name", "name")
        .name("#type", "type")
        .value(":name", s(name))
        .value(":now", s(timestamp(now)))
        .value(":list", s(LIST_PK))
        .value(":type", s("integration_health"));
    spec = match error {
        None => spec.value(":zero", n(0)),
        Some(error) => spec.value(":error", s(error)).value(":one", n(1)),
    };
    let item = store.update(&pk(name), "HEALTH", &spec).await?.unwrap_or_default();
    let health: IntegrationHealth = from_item(item)?;
    // Per integration (to see which), and with no dimension (what the
    // alarm watches: an alarm reads one metric, not every dimension's).
    let failing = if health.failing() { 1.0 } else { 0.0 };
    crate::platform::telemetry::emit_metric(&[("Integration", name)], &[("IntegrationFailing", failing, "Count")]);
    crate::platform::telemetry::emit_metric(&[], &[("IntegrationFailing", failing, "Count")]);
    Ok(health)
}

/// One integration's health (none: no outcome recorded yet).
pub async fn get(store: &Store, name: &str) -> Result<Option<IntegrationHealth>> {
    store.get_item(&pk(name), "HEALTH").await?.map(from_item).transpose()
}

/// Every integration with a recorded outcome, by name.
pub async fn all(store: &Store) -> Result<Vec<IntegrationHealth>> {
    let spec = QuerySpec { index: Some("gsi1"), key_condition: "gsi1pk = :pk", values: vec![(":pk", s(LIST_PK))], forward: true, ..Default::default() };
    store.query_all(&spec).await?.into_iter().map(from_item).collect()
}
