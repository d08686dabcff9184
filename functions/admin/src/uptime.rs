//! Uptime: a synthetic check (the `admin-uptime` binary every 5 minutes;
//! the local stack in-process) signs in with a probe account and calls one
//! route of every API function over HTTP, records each check
//! (`UPTIME#<day>`), and opens and closes incidents per target
//! (`UPTIME#INCIDENT`); `GET /api/v1/admin/uptime` reports availability
//! per target and day, and the incidents of a period.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use shared::audit::{Actor, AuditEntry, Journal};
use shared::http::extract::ValidQuery;
use shared::identity::users::{Email, User, UserStatus};
use shared::platform::crypto::{Envelope, Sealed};
use shared::platform::error::{Error, Result};
use shared::platform::time;
use shared::store::{QuerySpec, Write, s};
use utoipa::{IntoParams, ToSchema};

use crate::AdminState;

/// How long check records are kept (DynamoDB TTL).
pub const KEEP_DAYS: i64 = 400;
/// Longest period one report covers (one query per day).
pub const MAX_RANGE_DAYS: i64 = 92;
/// A target that has not answered by then is down.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The sign-in round trip's target name.
pub const SIGN_IN: &str = "sign-in";
const INCIDENTS_PK: &str = "UPTIME#INCIDENT";
const PROBE_PK: &str = "UPTIME#PROBE";
const PROBE_SK: &str = "ACCOUNT";
const PROBE_CONTEXT: &str = "uptime-probe";
/// An incident still open: no end (stored as a null attribute).
const OPEN: &str = "attribute_not_exists(ended_at) OR attribute_type(ended_at, :null)";

/// One function's route the check calls, and the status that function
/// answers when it is serving: 200 where the probe (a user with no
/// permissions) may read, with its token; elsewhere 401, asked without a
/// token, which only the function's own gate gives (a token would be
/// refused with 403, and every refusal of a signed-in caller is audited:
/// the probe would write one every 5 minutes). Anything else (no answer, a
/// timeout, a 5xx, a 404 from a gateway that lost the route) is down.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    pub url: String,
    pub expect: u16,
}

/// Every API function's probe route, under `base_url` (the API's public
/// URL: the local stack serves every function on one port).
pub fn targets(base_url: &str) -> Vec<Target> {
    let base = base_url.trim_end_matches('/');
    [
        ("auth", "/api/v1/auth/identities", 200),
        ("admin", "/api/v1/admin/system/health", 401),
        ("data", "/api/v1/data/jobs", 200),
        ("analytics", "/api/v1/analytics/revenue", 401),
        ("reports", "/api/v1/reports", 401),
        ("search", "/api/v1/search/saved", 200),
        ("integrations", "/api/v1/integrations/webhooks", 401),
        ("compliance", "/api/v1/compliance/access-reviews", 401),
    ]
    .into_iter()
    .map(|(name, path, expect)| Target { name: name.into(), url: format!("{base}{path}"), expect })
    .collect()
}

/// One target's outcome in one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = UptimeProbeResult)]
pub struct ProbeResult {
    pub target: String,
    pub up: bool,
    /// The HTTP status, if one came back.
    pub status: Option<u16>,
    pub latency_ms: f64,
    pub error: Option<String>,
}

/// One check: every target at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRecord {
    pub pk: String,
    pub sk: String,
    pub checked_at: String,
    pub results: Vec<ProbeResult>,
    pub ttl: i64,
}

/// An outage of one target: from its first failed check to its next
/// success (`ended_at` none while it lasts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = UptimeIncident)]
pub struct Incident {
    pub target: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// Seconds from start to end (to now while it lasts).
    pub duration_seconds: i64,
    /// The first failed check's error.
    pub error: String,
}

/// The probe account: a user with no roles, its password sealed with the
/// data key (never logged, never returned).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProbeAccount {
    pk: String,
    sk: String,
    user_id: String,
    email: String,
    password: Sealed,
}

/// What a check needs: the table, the data key, the targets and an HTTP client.
#[derive(Clone, Debug)]
pub struct UptimeCheck {
    pub store: Journal,
    pub envelope: Envelope,
    pub base_url: String,
    pub targets: Vec<Target>,
    pub http: reqwest::Client,
}

impl UptimeCheck {
    pub fn new(store: Journal, envelope: Envelope, base_url: &str) -> Result<UptimeCheck> {
        shared::platform::tls::install();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(CALL_TIMEOUT)
            .user_agent("keel-uptime")
            .build()
            .map_err(|e| Error::internal(format!("building the HTTP client: {e}")))?;
        Ok(UptimeCheck { store, envelope, base_url: base_url.trim_end_matches('/').to_string(), targets: targets(base_url), http })
    }

    /// The probe account's email and password, creating the account (with
    /// its audit entry) on first use.
    async fn probe_account(&self) -> Result<(String, String)> {
        if let Some(account) = self.store.get::<ProbeAccount>(PROBE_PK, PROBE_SK).await? {
            let password = self.envelope.open(&account.password, PROBE_CONTEXT).await?;
            return Ok((account.email, String::from_utf8(password).map_err(|_| Error::internal("probe password is not UTF-8"))?));
        }
        let password = shared::platform::crypto::random_token();
        let email = Email::parse(&format!("uptime-probe-{}@keel.invalid", &uuid::Uuid::new_v4().simple().to_string()[..8])).map_err(Error::internal)?;
        let mut user = User::new(&email, "Uptime probe", Vec::new(), UserStatus::Active);
        user.password_hash = Some(shared::platform::crypto::hash_password(&password)?);
        let sealed = self.envelope.seal(password.as_bytes(), PROBE_CONTEXT).await?;
        let account = ProbeAccount { pk: PROBE_PK.into(), sk: PROBE_SK.into(), user_id: user.id.clone(), email: user.email.clone(), password: sealed };
        let table = self.store.table().to_string();
        let mut writes = user.create_writes(&table)?;
        writes.push(Write::put_new(&table, shared::store::to_item(&account)?, Error::Conflict("the probe account exists".into()))?);
        let audit = AuditEntry::new(&Actor::system("uptime"), "user.create", "user", &user.id).changes::<User, User>(None, Some(&user));
        self.store.commit(writes, &audit).await?;
        Ok((account.email, password))
    }

    /// Sign in as the probe; its access and refresh tokens.
    async fn sign_in(&self, email: &str, password: &str) -> (ProbeResult, Option<(String, String)>) {
        let started = Instant::now();
        let body = serde_json::json!({ "email": email, "password": password }).to_string();
        let sent = self.http.post(format!("{}/api/v1/auth/login", self.base_url)).header("content-type", "application/json").body(body).send().await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (status, tokens, error) = match sent {
            Err(e) => (None, None, Some(call_error(&e))),
            Ok(response) => {
                let status = response.status().as_u16();
                let body: serde_json::Value = response.bytes().await.ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
                match (body["access_token"].as_str(), body["refresh_token"].as_str()) {
                    (Some(access), Some(refresh)) if status == 200 => (Some(status), Some((access.to_string(), refresh.to_string())), None),
                    _ => (Some(status), None, Some(format!("sign-in answered {status} without tokens"))),
                }
            }
        };
        (ProbeResult { target: SIGN_IN.into(), up: tokens.is_some(), status, latency_ms, error }, tokens)
    }

    async fn call(&self, target: &Target, token: Option<&str>) -> ProbeResult {
        let token = token.filter(|_| target.expect != 401);
        let expect = if token.is_some() { target.expect } else { 401 };
        let started = Instant::now();
        let mut request = self.http.get(&target.url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let sent = request.send().await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (status, error) = match sent {
            Err(e) => (None, Some(call_error(&e))),
            Ok(response) => {
                let status = response.status().as_u16();
                (Some(status), (status != expect).then(|| format!("expected {expect}, answered {status}")))
            }
        };
        ProbeResult { target: target.name.clone(), up: error.is_none(), status, latency_ms, error }
    }

    /// One check at `now`: sign in, call every target (at once), sign out;
    /// record the results and open or close incidents in one transaction.
    pub async fn run(&self, now: DateTime<Utc>) -> Result<CheckRecord> {
        let (email, password) = self.probe_account().await?;
        let (signed_in, tokens) = self.sign_in(&email, &password).await;
        // Without a token (sign-in down, its own incident) a serving
        // function still answers: 401 from its gate.
        let token = tokens.as_ref().map(|(access, _)| access.as_str());
        let calls = futures::future::join_all(self.targets.iter().map(|t| self.call(t, token))).await;
        if let Some((_, refresh)) = &tokens {
            // Each check's session ends with it; a failure here is not an outage.
            let body = serde_json::json!({ "refresh_token": refresh }).to_string();
            let _ = self.http.post(format!("{}/api/v1/auth/logout", self.base_url)).header("content-type", "application/json").body(body).send().await;
        }
        let mut results = vec![signed_in];
        results.extend(calls);
        record(&self.store, now, results).await
    }
}

fn call_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        "the request failed".into()
    }
}

fn day_pk(day: NaiveDate) -> String {
    format!("UPTIME#{}", day.format("%Y-%m-%d"))
}

/// An incident as stored: `UPTIME#INCIDENT / <started_at>#<target>`.
fn incident_item(incident: &Incident) -> Result<shared::store::Item> {
    let mut item = shared::store::to_item(incident)?;
    item.insert("pk".into(), s(INCIDENTS_PK));
    item.insert("sk".into(), s(format!("{}#{}", incident.started_at, incident.target)));
    Ok(item)
}

/// Incidents still open.
async fn open_incidents(store: &Journal) -> Result<Vec<Incident>> {
    let spec = QuerySpec {
        key_condition: "pk = :pk",
        filter: OPEN,
        values: vec![(":pk", s(INCIDENTS_PK)), (":null", s("NULL"))],
        consistent: true,
        forward: true,
        ..Default::default()
    };
    store.store().query_all(&spec).await?.into_iter().map(shared::store::from_item).collect()
}

/// Record a check's results, opening an incident for each target that
/// failed without one open and closing the open one of each that passed.
pub async fn record(store: &Journal, now: DateTime<Utc>, results: Vec<ProbeResult>) -> Result<CheckRecord> {
    let table = store.table().to_string();
    let at = time::timestamp(now);
    let check = CheckRecord {
        pk: day_pk(now.date_naive()),
        sk: at.clone(),
        checked_at: at.clone(),
        results: results.clone(),
        ttl: now.timestamp() + KEEP_DAYS * 86_400,
    };
    let open: BTreeMap<String, Incident> = open_incidents(store).await?.into_iter().map(|i| (i.target.clone(), i)).collect();
    let mut writes = vec![Write::put(&table, shared::store::to_item(&check)?)?];
    for result in &results {
        match (result.up, open.get(&result.target)) {
            (false, None) => {
                let incident = Incident {
                    target: result.target.clone(),
                    started_at: at.clone(),
                    ended_at: None,
                    duration_seconds: 0,
                    error: result.error.clone().unwrap_or_default(),
                };
                writes.push(Write::put_new(&table, incident_item(&incident)?, Error::Conflict("the incident exists".into()))?);
            }
            (true, Some(incident)) => {
                let started = time::parse(&incident.started_at).unwrap_or(now);
                let mut closed = incident.clone();
                closed.ended_at = Some(at.clone());
                closed.duration_seconds = (now - started).num_seconds().max(0);
                let condition = shared::store::Condition::new(OPEN).value(":null", s("NULL"));
                writes.push(Write::put_if(&table, incident_item(&closed)?, &condition, Some(Error::Conflict("the incident was closed meanwhile".into())))?);
            }
            _ => {}
        }
    }
    store.store().transact(writes).await?;
    Ok(check)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UptimeQuery {
    /// Start (RFC 3339); default 7 days before `to`.
    pub from: Option<String>,
    /// End (RFC 3339); default now.
    pub to: Option<String>,
}

/// Checks passed out of checks made; availability is `up / checks` in
/// percent (none without checks).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = UptimeAvailability)]
pub struct Availability {
    pub checks: u64,
    pub up: u64,
    pub availability: Option<f64>,
}

impl Availability {
    fn add(&mut self, up: bool) {
        self.checks += 1;
        self.up += u64::from(up);
        self.availability = Some(self.up as f64 * 100.0 / self.checks as f64);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = UptimeDay)]
pub struct DayReport {
    /// `yyyy-mm-dd` (UTC).
    pub day: String,
    /// Checks where every target was up.
    pub overall: Availability,
    pub targets: BTreeMap<String, Availability>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = UptimeReport)]
pub struct UptimeReport {
    pub from: String,
    pub to: String,
    /// The whole period: checks where every target was up.
    pub overall: Availability,
    /// The whole period, per target.
    pub targets: BTreeMap<String, Availability>,
    /// Days with checks, oldest first.
    pub days: Vec<DayReport>,
    /// Incidents overlapping the period, oldest first; open ones have no `ended_at`.
    pub incidents: Vec<Incident>,
}

/// The report over `[from, to)` as of `now`.
pub async fn report(store: &Journal, from: DateTime<Utc>, to: DateTime<Utc>, now: DateTime<Utc>) -> Result<UptimeReport> {
    let (from_ts, to_ts) = (time::timestamp(from), time::timestamp(to));
    let mut overall = Availability::default();
    let mut targets: BTreeMap<String, Availability> = BTreeMap::new();
    let mut days = Vec::new();
    let mut day = from.date_naive();
    while day <= to.date_naive() {
        let spec = QuerySpec {
            key_condition: "pk = :pk AND sk BETWEEN :from AND :to",
            values: vec![(":pk", s(day_pk(day))), (":from", s(&from_ts)), (":to", s(&to_ts))],
            forward: true,
            ..Default::default()
        };
        let checks: Vec<CheckRecord> = store.store().query_all(&spec).await?.into_iter().map(shared::store::from_item).collect::<Result<_>>()?;
        let checks: Vec<CheckRecord> = checks.into_iter().filter(|c| c.checked_at < to_ts).collect();
        if !checks.is_empty() {
            let mut report = DayReport { day: day.format("%Y-%m-%d").to_string(), overall: Availability::default(), targets: BTreeMap::new() };
            for check in &checks {
                let all_up = check.results.iter().all(|r| r.up);
                report.overall.add(all_up);
                overall.add(all_up);
                for result in &check.results {
                    report.targets.entry(result.target.clone()).or_default().add(result.up);
                    targets.entry(result.target.clone()).or_default().add(result.up);
                }
            }
            days.push(report);
        }
        day += Duration::days(1);
    }
    // Incidents that started before the period's end and had not ended by its start.
    let spec =
        QuerySpec { key_condition: "pk = :pk AND sk < :to", values: vec![(":pk", s(INCIDENTS_PK)), (":to", s(&to_ts))], forward: true, ..Default::default() };
    let mut incidents = Vec::new();
    for item in store.store().query_all(&spec).await? {
        let mut incident: Incident = shared::store::from_item(item)?;
        if incident.ended_at.as_ref().is_some_and(|end| *end < from_ts) {
            continue;
        }
        if incident.ended_at.is_none() {
            incident.duration_seconds = time::parse(&incident.started_at).map(|s| (now - s).num_seconds().max(0)).unwrap_or(0);
        }
        incidents.push(incident);
    }
    Ok(UptimeReport { from: from_ts, to: to_ts, overall, targets, days, incidents })
}

#[utoipa::path(get, path = "/api/v1/admin/uptime", tag = "system", params(UptimeQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Availability per target and day, and the period's incidents", body = UptimeReport),
        (status = 400, description = "Invalid range", body = shared::platform::error::Problem),
        (status = 403, description = "Missing system:read", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<AdminState>, ValidQuery(q): ValidQuery<UptimeQuery>) -> Result<Json<UptimeReport>> {
    let now = Utc::now();
    let to = time::field("to", q.to.as_deref())?.unwrap_or(now);
    let from = time::field("from", q.from.as_deref())?.unwrap_or(to - Duration::days(7));
    if from >= to {
        return Err(Error::field("from", "must be before to"));
    }
    if to - from > Duration::days(MAX_RANGE_DAYS) {
        return Err(Error::field("from", format!("the range is at most {MAX_RANGE_DAYS} days")));
    }
    Ok(Json(report(&state.platform.store, from, to, now).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_has_a_target() {
        let names: Vec<String> = targets("http://x/").into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["auth", "admin", "data", "analytics", "reports", "search", "integrations", "compliance"]);
        assert_eq!(targets("http://x/")[0].url, "http://x/api/v1/auth/identities");
    }

    #[test]
    fn availability_is_the_share_of_checks_up() {
        let mut a = Availability::default();
        for up in [true, true, false, true] {
            a.add(up);
        }
        assert_eq!((a.checks, a.up, a.availability), (4, 3, Some(75.0)));
    }
}
