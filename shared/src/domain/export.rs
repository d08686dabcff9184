//! Data exports (docs/exports.md): what each dataset holds (columns, which of
//! them are personal), how its filters become DynamoDB queries (a plan of
//! partitions read in order, page by page), rows as cells, and the text
//! encoders (CSV, JSON, NDJSON, SQL). Shared because the data function
//! answers small exports inline and the jobs worker streams large ones; the
//! XLSX and PDF encoders live in the worker alone.

use crate::audit::Journal;
use std::io::Write as _;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::Outcome;
use crate::domain::charts::ModerationStatus;
use crate::identity::users::UserStatus;
use crate::platform::error::{Error, FieldError, Result};
use crate::store::{Item, QuerySpec, Store, s, timestamp, to_item};

/// Items read per DynamoDB page (also bounded by DynamoDB's 1 MB per page).
pub const PAGE_SIZE: i32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dataset {
    Users,
    Charts,
    Orders,
    /// Activity events (sign-ups, sign-ins, charts created, orders placed).
    Activity,
    /// The audit log.
    Audit,
}

impl Dataset {
    pub fn as_str(self) -> &'static str {
        match self {
            Dataset::Users => "users",
            Dataset::Charts => "charts",
            Dataset::Orders => "orders",
            Dataset::Activity => "activity",
            Dataset::Audit => "audit",
        }
    }

    pub fn columns(self) -> &'static [Column] {
        match self {
            Dataset::Users => USER_COLUMNS,
            Dataset::Charts => CHART_COLUMNS,
            Dataset::Orders => ORDER_COLUMNS,
            Dataset::Activity => ACTIVITY_COLUMNS,
            Dataset::Audit => AUDIT_COLUMNS,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
    Xlsx,
    /// A paginated table with title, filters and generation time.
    Pdf,
    /// Portable `CREATE TABLE` and `INSERT` statements.
    Sql,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Xlsx => "xlsx",
            Format::Pdf => "pdf",
            Format::Sql => "sql",
        }
    }

    pub fn extension(self) -> &'static str {
        self.as_str()
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Pdf => "application/pdf",
            Format::Sql => "application/sql; charset=utf-8",
        }
    }

    /// Formats a text encoder here writes; only these may be answered
    /// inline (XLSX and PDF are always jobs, built by the worker).
    pub fn text_encoder(self) -> Option<Box<dyn Encoder>> {
        match self {
            Format::Csv => Some(Box::new(CsvEncoder::new())),
            Format::Json => Some(Box::new(JsonEncoder::array())),
            Format::Ndjson => Some(Box::new(JsonEncoder::lines())),
            Format::Sql => Some(Box::new(SqlEncoder::new())),
            Format::Xlsx | Format::Pdf => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    Text,
    Integer,
}

/// How a personal column is shown to principals without `pii:read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    Email,
    Name,
    Ip,
    /// Replaced entirely (user agents, recorded changes).
    Redact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// Attribute path in the stored item (`actor.id`).
    pub path: &'static [&'static str],
    pub kind: CellKind,
    /// Set for personal data.
    pub mask: Option<Mask>,
}

const fn text(name: &'static str, path: &'static [&'static str]) -> Column {
    Column { name, path, kind: CellKind::Text, mask: None }
}
const fn int(name: &'static str, path: &'static [&'static str]) -> Column {
    Column { name, path, kind: CellKind::Integer, mask: None }
}
const fn personal(name: &'static str, path: &'static [&'static str], mask: Mask) -> Column {
    Column { name, path, kind: CellKind::Text, mask: Some(mask) }
}

pub const USER_COLUMNS: &[Column] = &[
    text("id", &["id"]),
    personal("email", &["email"], Mask::Email),
    personal("name", &["name"], Mask::Name),
    text("status", &["status"]),
    text("roles", &["roles"]),
    text("country", &["country"]),
    text("created_at", &["created_at"]),
    text("last_login_at", &["last_login_at"]),
];

pub const CHART_COLUMNS: &[Column] = &[
    text("id", &["id"]),
    text("owner_id", &["owner_id"]),
    text("title", &["title"]),
    text("kind", &["kind"]),
    text("moderation_status", &["moderation_status"]),
    text("created_at", &["created_at"]),
    text("updated_at", &["updated_at"]),
];

pub const ORDER_COLUMNS: &[Column] = &[
    text("id", &["id"]),
    text("user_id", &["user_id"]),
    text("plan", &["plan"]),
    text("billing", &["billing"]),
    int("amount_cents", &["amount_cents"]),
    text("currency", &["currency"]),
    text("country", &["country"]),
    text("status", &["status"]),
    text("created_at", &["created_at"]),
    text("refunded_at", &["refunded_at"]),
];

pub const ACTIVITY_COLUMNS: &[Column] = &[
    text("id", &["id"]),
    text("user_id", &["user_id"]),
    text("kind", &["kind"]),
    text("ts", &["ts"]),
    text("chart_id", &["chart_id"]),
    text("order_id", &["order_id"]),
    int("amount_cents", &["amount_cents"]),
    text("country", &["country"]),
];

pub const AUDIT_COLUMNS: &[Column] = &[
    text("id", &["id"]),
    text("ts", &["ts"]),
    text("actor_id", &["actor", "id"]),
    text("actor_kind", &["actor", "kind"]),
    personal("source_ip", &["actor", "source_ip"], Mask::Ip),
    personal("user_agent", &["actor", "user_agent"], Mask::Redact),
    text("request_id", &["actor", "request_id"]),
    text("action", &["action"]),
    text("target_type", &["target_type"]),
    text("target_id", &["target_id"]),
    text("outcome", &["outcome"]),
    text("reason", &["reason"]),
    personal("changes", &["changes"], Mask::Redact),
];

/// The export of one's own data: every record about the caller, one row each.
pub const OWN_COLUMNS: &[Column] = &[text("category", &[]), text("id", &["id"]), text("time", &[]), text("details", &[])];

/// Item attributes never exported (keys, secrets, derived fields).
const HIDDEN: &[&str] = &["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk", "type", "password_hash", "title_lc", "version", "flagged"];

/// A cell of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
}

impl Cell {
    pub fn as_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Cell::Null => "".into(),
            Cell::Text(t) => t.as_str().into(),
            Cell::Int(n) => n.to_string().into(),
        }
    }
}

// ---------------------------------------------------------------------------
// The request: dataset, filters, columns, format
// ---------------------------------------------------------------------------

/// A time range filter bound (RFC 3339), normalized.
fn bound(field: &str, value: &Option<String>) -> Result<Option<DateTime<Utc>>> {
    crate::platform::time::field(field, value.as_deref())
}

fn id_filter(field: &str, value: &Option<String>) -> Result<()> {
    match value {
        Some(v) if v.is_empty() || v.len() > 100 || v.contains('#') || v.chars().any(char::is_control) => {
            Err(Error::field(field, "must be 1 to 100 characters without '#'"))
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFilters {
    pub status: Option<UserStatus>,
    /// Created at or after (RFC 3339).
    pub from: Option<String>,
    /// Created at or before (RFC 3339).
    pub to: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartFilters {
    pub moderation_status: Option<ModerationStatus>,
    pub owner_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Paid,
    Refunded,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderFilters {
    pub user_id: Option<String>,
    pub status: Option<OrderStatus>,
    /// Default: a year before `to`. At most ten years.
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityFilters {
    pub user_id: Option<String>,
    /// `signup`, `login`, `chart_created`, `order_placed`...
    pub kind: Option<String>,
    /// Default: 30 days before `to`. At most 366 days without `user_id`.
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilters {
    pub actor_id: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// An action, or a prefix when it ends in `.` (`user.`).
    pub action: Option<String>,
    pub outcome: Option<Outcome>,
    /// Default: 7 days before `to`. At most 366 days.
    pub from: Option<String>,
    pub to: Option<String>,
}

/// A dataset's filters, checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dataset", rename_all = "snake_case")]
pub enum Filters {
    Users(UserFilters),
    Charts(ChartFilters),
    Orders(OrderFilters),
    Activity(ActivityFilters),
    Audit(AuditFilters),
    /// The caller's own data (no dataset named).
    Own {
        subject_id: String,
    },
}

/// Deserialize `value` as `T`, reporting the failing field under `prefix`.
fn parse_under<T: DeserializeOwned>(prefix: &str, value: &Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        let named = ["missing field `", "unknown field `"].iter().find_map(|p| message.strip_prefix(p).and_then(|r| r.split('`').next()));
        let field = match (path.as_str(), named) {
            (".", Some(name)) => format!("{prefix}.{name}"),
            (".", None) => prefix.to_string(),
            (p, Some(name)) if !p.ends_with(name) => format!("{prefix}.{p}.{name}"),
            (p, _) => format!("{prefix}.{p}"),
        };
        Error::Validation(vec![FieldError::new(field, message)])
    })
}

impl Filters {
    /// Parse and check a request's `filters` object for `dataset`.
    pub fn parse(dataset: Dataset, value: Option<&Value>) -> Result<Filters> {
        let empty = Value::Object(Default::default());
        let value = value.unwrap_or(&empty);
        if !value.is_object() {
            return Err(Error::field("filters", "must be an object"));
        }
        let filters = match dataset {
            Dataset::Users => Filters::Users(parse_under("filters", value)?),
            Dataset::Charts => Filters::Charts(parse_under("filters", value)?),
            Dataset::Orders => Filters::Orders(parse_under("filters", value)?),
            Dataset::Activity => Filters::Activity(parse_under("filters", value)?),
            Dataset::Audit => Filters::Audit(parse_under("filters", value)?),
        };
        // Building the plan checks ranges and ids.
        filters.plan(Utc::now())?;
        Ok(filters)
    }

    /// The filters as the table stores them: audit entries name people by
    /// pseudonym, so an audit filter on a user is rewritten to theirs.
    pub async fn stored_people(&self, store: &Journal) -> Result<Filters> {
        let mut out = self.clone();
        if let Filters::Audit(f) = &mut out {
            let keys = store.subject_keys()?;
            if let Some(id) = &f.actor_id {
                f.actor_id = Some(keys.pseudonym_of(store, id).await?.unwrap_or_else(|| id.clone()));
            }
            if let (Some("user"), Some(id)) = (f.target_type.as_deref(), &f.target_id) {
                f.target_id = Some(keys.pseudonym_of(store, id).await?.unwrap_or_else(|| id.clone()));
            }
        }
        Ok(out)
    }

    pub fn dataset(&self) -> Option<Dataset> {
        match self {
            Filters::Users(_) => Some(Dataset::Users),
            Filters::Charts(_) => Some(Dataset::Charts),
            Filters::Orders(_) => Some(Dataset::Orders),
            Filters::Activity(_) => Some(Dataset::Activity),
            Filters::Audit(_) => Some(Dataset::Audit),
            Filters::Own { .. } => None,
        }
    }

    pub fn columns(&self) -> &'static [Column] {
        self.dataset().map(Dataset::columns).unwrap_or(OWN_COLUMNS)
    }

    /// The filters as `name = value` lines, for the PDF heading.
    pub fn describe(&self) -> Vec<String> {
        let value = match self {
            Filters::Own { subject_id } => return vec![format!("own data of user {subject_id}")],
            other => serde_json::to_value(other).unwrap_or(Value::Null),
        };
        let mut lines: Vec<String> = value
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, v)| *k != "dataset" && !v.is_null())
                    .map(|(k, v)| format!("{k} = {}", v.as_str().map(str::to_string).unwrap_or(v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        if lines.is_empty() {
            lines.push("none".into());
        }
        lines
    }

    /// The partitions to read, in order.
    pub fn plan(&self, now: DateTime<Utc>) -> Result<Vec<Partition>> {
        match self {
            Filters::Users(f) => {
                let (from, to) = (bound("filters.from", &f.from)?, bound("filters.to", &f.to)?);
                check_order(from, to)?;
                let (a, b) = sort_range(from, to);
                let q = match f.status {
                    Some(st) => PartitionQuery::index("gsi2", "gsi2pk", format!("USERS#{}", st.as_str()), "gsi2sk", a, b),
                    None => PartitionQuery::index("gsi3", "gsi3pk", "USERS".into(), "gsi3sk", a, b),
                };
                Ok(vec![Partition { query: q, source: Source::Dataset }])
            }
            Filters::Charts(f) => {
                id_filter("filters.owner_id", &f.owner_id)?;
                let (from, to) = (bound("filters.from", &f.from)?, bound("filters.to", &f.to)?);
                check_order(from, to)?;
                let (a, b) = sort_range(from, to);
                let q = match (&f.owner_id, f.moderation_status) {
                    (Some(owner), status) => {
                        let q = PartitionQuery::index("gsi1", "gsi1pk", format!("OWNER#{owner}"), "gsi1sk", a, b).only_type("chart");
                        match status {
                            Some(st) => q.filter_eq("moderation_status", st.as_str()),
                            None => q,
                        }
                    }
                    (None, Some(st)) => PartitionQuery::index("gsi2", "gsi2pk", st.partition(), "gsi2sk", a, b),
                    (None, None) => PartitionQuery::index("gsi3", "gsi3pk", "CHARTS".into(), "gsi3sk", a, b),
                };
                Ok(vec![Partition { query: q, source: Source::Dataset }])
            }
            Filters::Orders(f) => {
                id_filter("filters.user_id", &f.user_id)?;
                let to = bound("filters.to", &f.to)?.unwrap_or(now);
                let from = bound("filters.from", &f.from)?.unwrap_or(to - Duration::days(365));
                check_order(Some(from), Some(to))?;
                if to - from > Duration::days(3660) {
                    return Err(Error::field("filters.from", "the range is at most ten years"));
                }
                let (a, b) = sort_range(Some(from), Some(to));
                let status = f.status.map(|s| if s == OrderStatus::Paid { "paid" } else { "refunded" });
                let with_status = |q: PartitionQuery| match status {
                    Some(st) => q.filter_eq("status", st),
                    None => q,
                };
                if let Some(user) = &f.user_id {
                    let q = PartitionQuery::index("gsi1", "gsi1pk", format!("USER#{user}"), "gsi1sk", a, b).only_type("order");
                    return Ok(vec![Partition { query: with_status(q), source: Source::Dataset }]);
                }
                Ok(months(from, to)
                    .into_iter()
                    .map(|m| Partition {
                        query: with_status(PartitionQuery::index("gsi2", "gsi2pk", format!("ORDERS#{m}"), "gsi2sk", a.clone(), b.clone())),
                        source: Source::Dataset,
                    })
                    .collect())
            }
            Filters::Activity(f) => {
                id_filter("filters.user_id", &f.user_id)?;
                id_filter("filters.kind", &f.kind)?;
                let to = bound("filters.to", &f.to)?.unwrap_or(now);
                let from = bound("filters.from", &f.from)?;
                let kind = |q: PartitionQuery| match &f.kind {
                    Some(k) => q.filter_eq("kind", k),
                    None => q,
                };
                if let Some(user) = &f.user_id {
                    check_order(from, Some(to))?;
                    let a = format!("EVENT#{}", from.map(timestamp).unwrap_or_else(|| "0".into()));
                    let b = format!("EVENT#{}~", timestamp(to));
                    let q = PartitionQuery::table("pk", format!("USER#{user}"), "sk", a, b);
                    return Ok(vec![Partition { query: kind(q), source: Source::Dataset }]);
                }
                let from = from.unwrap_or(to - Duration::days(30));
                check_order(Some(from), Some(to))?;
                if to - from > Duration::days(366) {
                    return Err(Error::field("filters.from", "the range is at most 366 days (or name a user_id)"));
                }
                let (a, b) = sort_range(Some(from), Some(to));
                Ok(days(from, to)
                    .into_iter()
                    .map(|d| Partition {
                        query: kind(PartitionQuery::index("gsi1", "gsi1pk", format!("EVENTS#{d}"), "gsi1sk", a.clone(), b.clone())),
                        source: Source::Dataset,
                    })
                    .collect())
            }
            Filters::Audit(f) => {
                for (field, v) in [
                    ("filters.actor_id", &f.actor_id),
                    ("filters.target_type", &f.target_type),
                    ("filters.target_id", &f.target_id),
                    ("filters.action", &f.action),
                ] {
                    id_filter(field, v)?;
                }
                if f.target_type.is_some() != f.target_id.is_some() {
                    return Err(Error::field("filters.target_id", "target_type and target_id go together"));
                }
                let to = bound("filters.to", &f.to)?.unwrap_or(now);
                let from = bound("filters.from", &f.from)?.unwrap_or(to - Duration::days(7));
                check_order(Some(from), Some(to))?;
                if to - from > Duration::days(366) {
                    return Err(Error::field("filters.from", "the range is at most 366 days"));
                }
                let (a, b) = sort_range(Some(from), Some(to));
                let narrow = |mut q: PartitionQuery| {
                    if let Some(action) = &f.action {
                        q = if action.ends_with('.') { q.filter_prefix("action", action) } else { q.filter_eq("action", action) };
                    }
                    if let Some(outcome) = f.outcome {
                        let o = serde_json::to_value(outcome).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                        q = q.filter_eq("outcome", &o);
                    }
                    q
                };
                let queries = if let Some(actor) = &f.actor_id {
                    vec![PartitionQuery::index("gsi1", "gsi1pk", format!("ACTOR#{actor}"), "gsi1sk", a, b)]
                } else if let (Some(t), Some(id)) = (&f.target_type, &f.target_id) {
                    vec![PartitionQuery::index("gsi2", "gsi2pk", format!("TARGET#{t}#{id}"), "gsi2sk", a, b)]
                } else {
                    days(from, to).into_iter().map(|d| PartitionQuery::table("pk", format!("AUDIT#{d}"), "sk", a.clone(), b.clone())).collect()
                };
                Ok(queries.into_iter().map(|q| Partition { query: narrow(q), source: Source::Dataset }).collect())
            }
            Filters::Own { subject_id } => Ok(vec![
                Partition {
                    query: PartitionQuery::table("pk", format!("USER#{subject_id}"), "sk", "PROFILE".into(), "PROFILE".into()),
                    source: Source::Own(OwnCategory::Profile),
                },
                Partition {
                    query: PartitionQuery::index("gsi1", "gsi1pk", format!("OWNER#{subject_id}"), "gsi1sk", "0".into(), "9".into()).only_type("chart"),
                    source: Source::Own(OwnCategory::Chart),
                },
                Partition {
                    query: PartitionQuery::index("gsi1", "gsi1pk", format!("USER#{subject_id}"), "gsi1sk", "0".into(), "9".into()).only_type("order"),
                    source: Source::Own(OwnCategory::Order),
                },
                Partition {
                    query: PartitionQuery::table("pk", format!("USER#{subject_id}"), "sk", "EVENT#".into(), "EVENT#~".into()),
                    source: Source::Own(OwnCategory::Event),
                },
            ]),
        }
    }
}

fn check_order(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Result<()> {
    match (from, to) {
        (Some(f), Some(t)) if f > t => Err(Error::field("filters.from", "must not be after to")),
        _ => Ok(()),
    }
}

/// Sort-key bounds (`created#id` or `ts#id`) for an inclusive time range.
fn sort_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> (String, String) {
    (from.map(timestamp).unwrap_or_else(|| "0".into()), to.map(|t| format!("{}~", timestamp(t))).unwrap_or_else(|| "9".into()))
}

fn days(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
    let mut out = Vec::new();
    let mut day = from.date_naive();
    while day <= to.date_naive() {
        out.push(day.format("%Y-%m-%d").to_string());
        day = day.succ_opt().expect("a representable day");
    }
    out
}

fn months(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for day in days(from, to) {
        let month = day[..7].to_string();
        if out.last() != Some(&month) {
            out.push(month);
        }
    }
    out
}

/// Where a partition's items come from (decides how they become rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Dataset,
    Own(OwnCategory),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnCategory {
    Profile,
    Chart,
    Order,
    Event,
}

impl OwnCategory {
    fn name(self) -> &'static str {
        match self {
            OwnCategory::Profile => "profile",
            OwnCategory::Chart => "chart",
            OwnCategory::Order => "order",
            OwnCategory::Event => "activity",
        }
    }

    fn time_attribute(self) -> &'static str {
        match self {
            OwnCategory::Event => "ts",
            _ => "created_at",
        }
    }
}

/// One Query of a plan: a key condition with a sort-key range, and filters.
#[derive(Debug, Clone)]
pub struct PartitionQuery {
    pub index: Option<&'static str>,
    key_condition: String,
    filters: Vec<String>,
    names: Vec<(String, String)>,
    values: Vec<(String, AttributeValue)>,
}

impl PartitionQuery {
    fn keyed(index: Option<&'static str>, pk_name: &str, pk: String, sk_name: &str, a: String, b: String) -> PartitionQuery {
        PartitionQuery {
            index,
            key_condition: "#pk = :pk AND #sk BETWEEN :a AND :b".into(),
            filters: Vec::new(),
            names: vec![("#pk".into(), pk_name.into()), ("#sk".into(), sk_name.into())],
            values: vec![(":pk".into(), s(pk)), (":a".into(), s(a)), (":b".into(), s(b))],
        }
    }

    fn index(index: &'static str, pk_name: &str, pk: String, sk_name: &str, a: String, b: String) -> PartitionQuery {
        Self::keyed(Some(index), pk_name, pk, sk_name, a, b)
    }

    fn table(pk_name: &str, pk: String, sk_name: &str, a: String, b: String) -> PartitionQuery {
        Self::keyed(None, pk_name, pk, sk_name, a, b)
    }

    fn filter_eq(mut self, attribute: &str, value: &str) -> PartitionQuery {
        let n = self.filters.len();
        self.filters.push(format!("#f{n} = :f{n}"));
        self.names.push((format!("#f{n}"), attribute.into()));
        self.values.push((format!(":f{n}"), s(value)));
        self
    }

    fn filter_prefix(mut self, attribute: &str, value: &str) -> PartitionQuery {
        let n = self.filters.len();
        self.filters.push(format!("begins_with(#f{n}, :f{n})"));
        self.names.push((format!("#f{n}"), attribute.into()));
        self.values.push((format!(":f{n}"), s(value)));
        self
    }

    fn only_type(self, kind: &str) -> PartitionQuery {
        self.filter_eq("type", kind)
    }

    fn filter_text(&self) -> String {
        self.filters.join(" AND ")
    }

    fn spec<'a>(&'a self, filter: &'a str) -> QuerySpec<'a> {
        QuerySpec {
            index: self.index,
            key_condition: &self.key_condition,
            filter,
            names: self.names.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            values: self.values.iter().map(|(k, v)| (k.as_str(), v.clone())).collect(),
            forward: true,
            consistent: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Partition {
    pub query: PartitionQuery,
    pub source: Source,
}

/// Where reading a plan stands: the partition, and the key to continue from.
#[derive(Debug, Clone, Default)]
pub struct Position {
    pub partition: usize,
    pub start: Option<Item>,
}

/// Read the next page of `plan` from `position` (advancing it): the items
/// and where each came from. `None` when the plan is exhausted.
pub async fn read_page(store: &Journal, plan: &[Partition], position: &mut Position, limit: i32) -> Result<Option<Vec<(Source, Item)>>> {
    while position.partition < plan.len() {
        let partition = &plan[position.partition];
        let start = position.start.take();
        let filter = partition.query.filter_text();
        let (items, next) = store.query_page(&partition.query.spec(&filter), start, limit).await?;
        match next {
            Some(key) => position.start = Some(key),
            None => position.partition += 1,
        }
        if !items.is_empty() || next_is_some(position, plan) {
            // Audit entries are read as people see them (shared::subjects).
            let items = if items.first().is_some_and(|i| i.get("type").and_then(|v| v.as_s().ok()).is_some_and(|t| t == "audit")) {
                store.reveal_audit(items).await?.iter().map(to_item).collect::<Result<Vec<_>>>()?
            } else {
                items
            };
            return Ok(Some(items.into_iter().map(|i| (partition.source, i)).collect()));
        }
    }
    Ok(None)
}

fn next_is_some(position: &Position, plan: &[Partition]) -> bool {
    position.partition < plan.len()
}

/// How many items the plan will yield (a Select=COUNT pass: reads the keys,
/// keeps no items), for progress and ETA.
pub async fn count(store: &Store, plan: &[Partition]) -> Result<u64> {
    let mut total = 0u64;
    for partition in plan {
        let filter = partition.query.filter_text();
        total += store.query_count(&partition.query.spec(&filter)).await?;
    }
    Ok(total)
}

// ---------------------------------------------------------------------------
// Items to rows
// ---------------------------------------------------------------------------

/// The columns of an export, resolved from the requested names (all of the
/// dataset's when none are named). Errors name `columns[i]`.
pub fn select_columns(all: &'static [Column], requested: Option<&[String]>) -> Result<Vec<Column>> {
    let Some(requested) = requested.filter(|r| !r.is_empty()) else {
        return Ok(all.to_vec());
    };
    let mut errors = Vec::new();
    let mut out: Vec<Column> = Vec::new();
    for (i, name) in requested.iter().enumerate() {
        match all.iter().find(|c| c.name == name) {
            None => errors.push(FieldError::new(
                format!("columns[{i}]"),
                format!("unknown column {name:?}; one of {}", all.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")),
            )),
            Some(_) if requested[..i].contains(name) => errors.push(FieldError::new(format!("columns[{i}]"), format!("{name:?} is listed twice"))),
            Some(c) => out.push(*c),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(Error::Validation(errors)) }
}

/// An item as a JSON object of what its person may see: keys, derived
/// fields and secrets (`audit::SECRET_KEYS`) left out, attributes sorted.
/// One's own data export and subject exports show records this way.
pub fn record_of(item: &Item) -> serde_json::Map<String, Value> {
    let mut keys: Vec<&String> = item.keys().filter(|k| !HIDDEN.contains(&k.as_str()) && !crate::audit::SECRET_KEYS.contains(&k.as_str())).collect();
    keys.sort();
    keys.into_iter().map(|k| (k.clone(), attribute_to_json(&item[k]))).collect()
}

/// A DynamoDB attribute as JSON (numbers as integers where they are).
pub fn attribute_to_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => n.parse::<i64>().map(Value::from).or_else(|_| n.parse::<f64>().map(Value::from)).unwrap_or_else(|_| Value::String(n.clone())),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::L(l) => Value::Array(l.iter().map(attribute_to_json).collect()),
        AttributeValue::M(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), attribute_to_json(&m[k]))).collect())
        }
        AttributeValue::Ss(v) => Value::Array(v.iter().cloned().map(Value::String).collect()),
        _ => Value::Null,
    }
}

fn cell_of(value: Option<&AttributeValue>) -> Cell {
    match value {
        None | Some(AttributeValue::Null(_)) => Cell::Null,
        Some(AttributeValue::S(s)) => Cell::Text(s.clone()),
        Some(AttributeValue::N(n)) => n.parse::<i64>().map(Cell::Int).unwrap_or_else(|_| Cell::Text(n.clone())),
        Some(AttributeValue::Bool(b)) => Cell::Text(b.to_string()),
        // Lists of names (roles) read best joined.
        Some(AttributeValue::L(l)) if l.iter().all(|v| v.is_s()) => Cell::Text(l.iter().filter_map(|v| v.as_s().ok()).cloned().collect::<Vec<_>>().join(",")),
        Some(other) => Cell::Text(attribute_to_json(other).to_string()),
    }
}

fn lookup<'a>(item: &'a Item, path: &[&str]) -> Option<&'a AttributeValue> {
    let (first, rest) = path.split_first()?;
    let mut value = item.get(*first)?;
    for key in rest {
        value = value.as_m().ok()?.get(*key)?;
    }
    Some(value)
}

fn mask_cell(cell: Cell, mask: Mask) -> Cell {
    match cell {
        Cell::Text(t) => Cell::Text(match mask {
            Mask::Email => crate::domain::masking::email(&t),
            Mask::Name => crate::domain::masking::name(&t),
            Mask::Ip => crate::domain::masking::ip(&t),
            Mask::Redact => crate::domain::masking::REDACTED.to_string(),
        }),
        other => other,
    }
}

/// One item as a row of `columns`, personal columns masked when `mask`.
pub fn row_of(source: Source, item: &Item, columns: &[Column], mask: bool) -> Vec<Cell> {
    match source {
        Source::Dataset => columns
            .iter()
            .map(|c| {
                let cell = cell_of(lookup(item, c.path));
                match c.mask {
                    Some(m) if mask => mask_cell(cell, m),
                    _ => cell,
                }
            })
            .collect(),
        // One's own data is never masked: it is the caller's.
        Source::Own(category) => columns
            .iter()
            .map(|c| match c.name {
                "category" => Cell::Text(category.name().into()),
                "time" => cell_of(item.get(category.time_attribute())),
                "details" => {
                    let mut details = record_of(item);
                    details.remove("id");
                    Cell::Text(Value::Object(details).to_string())
                }
                _ => cell_of(lookup(item, c.path)),
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------
// Encoders
// ---------------------------------------------------------------------------

/// What every encoder is told before the first row.
#[derive(Debug, Clone)]
pub struct Header {
    /// `users`, `charts`... (SQL table name, XLSX sheet name) or `own_data`.
    pub table: String,
    /// Human title (PDF).
    pub title: String,
    /// Filter lines (PDF).
    pub filters: Vec<String>,
    /// RFC 3339.
    pub generated_at: String,
    pub columns: Vec<(String, CellKind)>,
}

impl Header {
    pub fn new(filters: &Filters, columns: &[Column], now: DateTime<Utc>) -> Header {
        let table = filters.dataset().map(|d| d.as_str()).unwrap_or("own_data").to_string();
        let title = match filters.dataset() {
            Some(d) => format!("Keel export: {}", d.as_str()),
            None => "Keel export: your data".to_string(),
        };
        Header {
            table,
            title,
            filters: filters.describe(),
            generated_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            columns: columns.iter().map(|c| (c.name.to_string(), c.kind)).collect(),
        }
    }
}

/// A streaming encoder: rows in, bytes out. `take` hands over what has been
/// encoded so far, so the caller can upload it and memory stays flat.
pub trait Encoder: Send {
    fn begin(&mut self, header: &Header) -> Result<()>;
    fn row(&mut self, row: &[Cell]) -> Result<()>;
    fn finish(&mut self) -> Result<()>;
    /// Move the bytes encoded so far to the end of `into`.
    fn take(&mut self, into: &mut Vec<u8>) -> Result<()>;
}

fn io(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("encoding: {e}"))
}

/// Whether a spreadsheet would read this text as a formula (or a control
/// character that starts one): `= + - @`, tab, carriage return.
pub fn is_formula_like(text: &str) -> bool {
    matches!(text.as_bytes().first(), Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r'))
}

/// Neutralize formula-like text for spreadsheets: a leading `'` makes the
/// cell text (OWASP's CSV injection advice).
pub fn neutralize(text: &str) -> std::borrow::Cow<'_, str> {
    if is_formula_like(text) { format!("'{text}").into() } else { text.into() }
}

/// RFC 4180 CSV (via the `csv` crate), header row first; text cells that
/// look like formulas are neutralized.
pub struct CsvEncoder {
    writer: csv::Writer<SharedBuf>,
    out: SharedBuf,
    number: itoa_buf::Buf,
}

/// The csv writer's destination, which `take` drains (the writer itself
/// lends its destination out only by value).
#[derive(Clone, Default)]
struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

mod itoa_buf {
    /// A reusable buffer to format integers without allocating per cell.
    #[derive(Default)]
    pub struct Buf(String);
    impl Buf {
        pub fn format(&mut self, n: i64) -> &str {
            use std::fmt::Write;
            self.0.clear();
            let _ = write!(self.0, "{n}");
            &self.0
        }
    }
}

impl CsvEncoder {
    pub fn new() -> CsvEncoder {
        let out = SharedBuf::default();
        CsvEncoder { writer: csv::WriterBuilder::new().buffer_capacity(64 * 1024).from_writer(out.clone()), out, number: Default::default() }
    }
}

impl Default for CsvEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder for CsvEncoder {
    fn begin(&mut self, header: &Header) -> Result<()> {
        self.writer.write_record(header.columns.iter().map(|(n, _)| n.as_str())).map_err(io)
    }

    fn row(&mut self, row: &[Cell]) -> Result<()> {
        for cell in row {
            match cell {
                Cell::Null => self.writer.write_field("").map_err(io)?,
                Cell::Int(n) => self.writer.write_field(self.number.format(*n)).map_err(io)?,
                Cell::Text(t) => self.writer.write_field(neutralize(t).as_bytes()).map_err(io)?,
            }
        }
        self.writer.write_record(None::<&[u8]>).map_err(io)
    }

    fn finish(&mut self) -> Result<()> {
        self.writer.flush().map_err(io)
    }

    fn take(&mut self, into: &mut Vec<u8>) -> Result<()> {
        self.writer.flush().map_err(io)?;
        let mut out = self.out.0.lock().map_err(|_| Error::internal("csv buffer poisoned"))?;
        into.append(&mut out);
        Ok(())
    }
}

/// JSON: one array of objects (`array`) or one object per line (`lines`).
/// Integers stay numbers, missing values are `null`.
pub struct JsonEncoder {
    out: Vec<u8>,
    keys: Vec<String>,
    lines: bool,
    rows: u64,
}

impl JsonEncoder {
    pub fn array() -> JsonEncoder {
        JsonEncoder { out: Vec::with_capacity(256 * 1024), keys: Vec::new(), lines: false, rows: 0 }
    }

    pub fn lines() -> JsonEncoder {
        JsonEncoder { lines: true, ..Self::array() }
    }
}

impl Encoder for JsonEncoder {
    fn begin(&mut self, header: &Header) -> Result<()> {
        self.keys = header.columns.iter().map(|(n, _)| serde_json::to_string(n).unwrap_or_default()).collect();
        if !self.lines {
            self.out.push(b'[');
        }
        Ok(())
    }

    fn row(&mut self, row: &[Cell]) -> Result<()> {
        if !self.lines {
            self.out.extend_from_slice(if self.rows == 0 { b"\n" } else { b",\n" });
        }
        self.out.push(b'{');
        for (i, (key, cell)) in self.keys.iter().zip(row).enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.out.extend_from_slice(key.as_bytes());
            self.out.push(b':');
            match cell {
                Cell::Null => self.out.extend_from_slice(b"null"),
                Cell::Int(n) => write!(self.out, "{n}").map_err(io)?,
                Cell::Text(t) => serde_json::to_writer(&mut self.out, t).map_err(io)?,
            }
        }
        self.out.push(b'}');
        if self.lines {
            self.out.push(b'\n');
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if !self.lines {
            self.out.extend_from_slice(b"\n]\n");
        }
        Ok(())
    }

    fn take(&mut self, into: &mut Vec<u8>) -> Result<()> {
        into.append(&mut self.out);
        Ok(())
    }
}

/// Rows per INSERT statement.
const SQL_ROWS_PER_INSERT: u64 = 500;

/// Portable SQL (SQLite, PostgreSQL, MySQL in ANSI mode): a transaction
/// with `CREATE TABLE` and multi-row `INSERT`s; identifiers double-quoted,
/// strings single-quoted with quotes doubled, NUL characters dropped.
pub struct SqlEncoder {
    out: Vec<u8>,
    insert: String,
    rows: u64,
}

impl SqlEncoder {
    pub fn new() -> SqlEncoder {
        SqlEncoder { out: Vec::with_capacity(256 * 1024), insert: String::new(), rows: 0 }
    }
}

impl Default for SqlEncoder {
    fn default() -> Self {
        Self::new()
    }
}

/// `"name"` with inner double quotes doubled.
pub fn sql_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with single quotes doubled and NULs dropped.
pub fn sql_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'\'');
    for (i, part) in text.split('\'').enumerate() {
        if i > 0 {
            out.extend_from_slice(b"''");
        }
        if part.contains('\0') {
            out.extend_from_slice(part.replace('\0', "").as_bytes());
        } else {
            out.extend_from_slice(part.as_bytes());
        }
    }
    out.push(b'\'');
}

impl Encoder for SqlEncoder {
    fn begin(&mut self, header: &Header) -> Result<()> {
        let table = sql_identifier(&header.table);
        let columns: Vec<String> =
            header.columns.iter().map(|(n, k)| format!("  {} {}", sql_identifier(n), if *k == CellKind::Integer { "INTEGER" } else { "TEXT" })).collect();
        writeln!(self.out, "-- {} ({}), generated {}", header.title, header.filters.join("; "), header.generated_at).map_err(io)?;
        writeln!(self.out, "BEGIN;\nCREATE TABLE {table} (\n{}\n);", columns.join(",\n")).map_err(io)?;
        let names: Vec<String> = header.columns.iter().map(|(n, _)| sql_identifier(n)).collect();
        self.insert = format!("INSERT INTO {table} ({}) VALUES\n", names.join(", "));
        Ok(())
    }

    fn row(&mut self, row: &[Cell]) -> Result<()> {
        if self.rows.is_multiple_of(SQL_ROWS_PER_INSERT) {
            if self.rows > 0 {
                self.out.extend_from_slice(b";\n");
            }
            self.out.extend_from_slice(self.insert.as_bytes());
        } else {
            self.out.extend_from_slice(b",\n");
        }
        self.out.push(b'(');
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                self.out.extend_from_slice(b", ");
            }
            match cell {
                Cell::Null => self.out.extend_from_slice(b"NULL"),
                Cell::Int(n) => write!(self.out, "{n}").map_err(io)?,
                Cell::Text(t) => sql_string(&mut self.out, t),
            }
        }
        self.out.push(b')');
        self.rows += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.rows > 0 {
            self.out.extend_from_slice(b";\n");
        }
        self.out.extend_from_slice(b"COMMIT;\n");
        Ok(())
    }

    fn take(&mut self, into: &mut Vec<u8>) -> Result<()> {
        into.append(&mut self.out);
        Ok(())
    }
}

/// The S3 key of an export's object.
pub fn object_key(owner_id: &str, job_id: &str, format: Format) -> String {
    format!("data-exports/{owner_id}/{job_id}.{}", format.extension())
}

/// What a finished export job records (its `result`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExportResult {
    pub bucket: String,
    pub key: String,
    pub format: Format,
    pub content_type: String,
    /// The download's file name.
    pub file_name: String,
    pub rows: u64,
    pub bytes: u64,
    /// SHA-256 of the object, hex.
    pub sha256: String,
}

/// The parameters of a `data_export` job (what the API stores and the
/// worker reads back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportParams {
    pub filters: Filters,
    /// Column names, in order.
    pub columns: Vec<String>,
    pub format: Format,
    /// Mask personal columns (the requester lacks `pii:read`).
    pub mask: bool,
}

impl crate::domain::jobs::JobPayload for ExportParams {
    fn kind(&self) -> crate::domain::jobs::JobKind {
        crate::domain::jobs::JobKind::DataExport
    }
}

impl ExportParams {
    /// The resolved columns (names checked when the job was created).
    pub fn resolved_columns(&self) -> Result<Vec<Column>> {
        select_columns(self.filters.columns(), Some(&self.columns)).map_err(|_| Error::internal("export job names unknown columns"))
    }
}

/// An export read into memory in one go (small results answered inline):
/// `None` when the plan holds more than `max_rows` rows or needs more than
/// `max_pages` reads.
pub async fn encode_small(store: &Journal, params: &ExportParams, max_rows: usize, max_pages: usize) -> Result<Option<(Vec<u8>, usize)>> {
    let Some(mut encoder) = params.format.text_encoder() else { return Ok(None) };
    let columns = params.resolved_columns()?;
    let plan = params.filters.stored_people(store).await?.plan(Utc::now())?;
    let mut position = Position::default();
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    let mut pages = 0;
    let limit = (max_rows as i32 + 1).clamp(1, PAGE_SIZE);
    while let Some(page) = read_page(store, &plan, &mut position, limit).await? {
        pages += 1;
        rows.extend(page.iter().map(|(source, item)| row_of(*source, item, &columns, params.mask)));
        if rows.len() > max_rows || (pages >= max_pages && position.partition < plan.len()) {
            return Ok(None);
        }
    }
    encoder.begin(&Header::new(&params.filters, &columns, Utc::now()))?;
    for row in &rows {
        encoder.row(row)?;
    }
    encoder.finish()?;
    let mut out = Vec::new();
    encoder.take(&mut out)?;
    Ok(Some((out, rows.len())))
}

/// A cheap size estimate of an export, read from the dashboard rollups the
/// streams worker keeps (`METRIC#<name> / <bucket>` counters, one
/// BatchGetItem of a few keys), never from the dataset itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Estimate {
    /// The counters' sum: the export's row count when `exact`, else an
    /// upper bound (a time range or status narrows what the counters count).
    pub rows: u64,
    pub exact: bool,
    /// The counters read, `METRIC#users/status#active`...
    pub counters: Vec<String>,
}

/// The keys of rollup counters (pk, sk), and whether their sum is exact.
pub type CounterKeys = (Vec<(String, String)>, bool);

impl Filters {
    /// The rollup counters (`shared::domain::rollups`) whose sum bounds this
    /// export's rows, and whether the sum is exact. None where no counter
    /// fits: one user's or owner's records (a single small partition, read
    /// instead), activity and audit (no counters).
    pub fn rollup_counters(&self, now: DateTime<Utc>) -> Result<Option<CounterKeys>> {
        use crate::domain::rollups;
        let by_status = |metric: &str, statuses: Vec<&str>| statuses.into_iter().map(|st| (rollups::pk(metric), format!("status#{st}"))).collect::<Vec<_>>();
        Ok(match self {
            Filters::Users(f) => {
                let statuses = match f.status {
                    Some(st) => vec![st.as_str()],
                    None => rollups::USER_STATUSES.to_vec(),
                };
                Some((by_status(rollups::USERS, statuses), f.from.is_none() && f.to.is_none()))
            }
            Filters::Charts(f) if f.owner_id.is_none() => {
                let statuses = match f.moderation_status {
                    Some(st) => vec![st.as_str()],
                    None => rollups::CHART_STATUSES.to_vec(),
                };
                Some((by_status(rollups::CHARTS, statuses), f.from.is_none() && f.to.is_none()))
            }
            Filters::Orders(f) if f.user_id.is_none() => {
                // Orders placed per month: whole months, so an upper bound.
                let to = bound("filters.to", &f.to)?.unwrap_or(now);
                let from = bound("filters.from", &f.from)?.unwrap_or(to - Duration::days(365));
                Some((months(from, to).into_iter().map(|m| (rollups::pk(rollups::ORDERS), m)).collect(), false))
            }
            _ => None,
        })
    }
}

/// The export's size from the rollup counters (see [`Estimate`]); None when
/// no counter fits or none is stored yet (the streams worker has not counted
/// anything: a fresh table, or tests that do not run it).
pub async fn estimate(store: &Store, filters: &Filters, now: DateTime<Utc>) -> Result<Option<Estimate>> {
    let Some((keys, exact)) = filters.rollup_counters(now)? else { return Ok(None) };
    let items = store.batch_get(&keys).await?;
    if items.is_empty() {
        return Ok(None);
    }
    let rows = items
        .iter()
        .filter_map(|i| i.get(crate::domain::rollups::VALUE).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok()))
        .map(|n| n.max(0) as u64)
        .sum();
    Ok(Some(Estimate { rows, exact, counters: keys.iter().map(|(pk, sk)| format!("{pk}/{sk}")).collect() }))
}

/// Generated rows for benchmarks and tests: `n` users-like rows.
pub fn sample_rows(n: usize) -> impl Iterator<Item = Vec<Cell>> {
    (0..n).map(|i| {
        vec![
            Cell::Text(format!("0190a1b2-c3d4-7e5f-8a9b-{i:012}")),
            Cell::Text(format!("person{i}@example.com")),
            Cell::Text(format!("Person {i}")),
            Cell::Text(if i % 50 == 0 { "suspended" } else { "active" }.into()),
            Cell::Text("user".into()),
            Cell::Text(["US", "DE", "FR", "JP", "BR"][i % 5].into()),
            Cell::Text(format!("2025-{:02}-{:02}T12:{:02}:{:02}.000000Z", i % 12 + 1, i % 28 + 1, i % 60, (i / 60) % 60)),
            Cell::Int((i % 100_000) as i64),
        ]
    })
}

/// Counts of the columns above, for `sample_rows`.
pub fn sample_header() -> Header {
    let names = ["id", "email", "name", "status", "roles", "country", "created_at", "score"];
    Header {
        table: "users".into(),
        title: "Keel export: generated rows".into(),
        filters: vec!["none".into()],
        generated_at: timestamp(Utc::now()),
        columns: names.iter().map(|n| (n.to_string(), if *n == "score" { CellKind::Integer } else { CellKind::Text })).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn encode(mut e: Box<dyn Encoder>, rows: &[Vec<Cell>]) -> String {
        let header = Header {
            table: "t".into(),
            title: "T".into(),
            filters: vec![],
            generated_at: "now".into(),
            columns: vec![("a".into(), CellKind::Text), ("n".into(), CellKind::Integer)],
        };
        e.begin(&header).unwrap();
        for r in rows {
            e.row(r).unwrap();
        }
        e.finish().unwrap();
        let mut out = Vec::new();
        e.take(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_neutralizes_formulas_and_quotes() {
        let rows = vec![
            vec![Cell::Text("=1+1".into()), Cell::Int(-3)],
            vec![Cell::Text("a,\"b\"\nc".into()), Cell::Null],
            vec![Cell::Text("@x".into()), Cell::Int(1)],
        ];
        let out = encode(Box::new(CsvEncoder::new()), &rows);
        assert_eq!(out, "a,n\n'=1+1,-3\n\"a,\"\"b\"\"\nc\",\n'@x,1\n");
        for bad in ["=", "+", "-", "@", "\t", "\r"] {
            assert!(is_formula_like(&format!("{bad}x")), "{bad:?}");
        }
        assert!(!is_formula_like("x=1"));
    }

    #[test]
    fn json_and_ndjson_parse_back() {
        let rows = vec![vec![Cell::Text("é\"".into()), Cell::Int(7)], vec![Cell::Null, Cell::Int(0)]];
        let array: Value = serde_json::from_str(&encode(Box::new(JsonEncoder::array()), &rows)).unwrap();
        assert_eq!(array, serde_json::json!([{ "a": "é\"", "n": 7 }, { "a": null, "n": 0 }]));
        let empty: Value = serde_json::from_str(&encode(Box::new(JsonEncoder::array()), &[])).unwrap();
        assert_eq!(empty, serde_json::json!([]));
        let lines = encode(Box::new(JsonEncoder::lines()), &rows);
        assert_eq!(lines.lines().count(), 2);
    }

    #[test]
    fn sql_escapes_strings() {
        let out = encode(Box::new(SqlEncoder::new()), &[vec![Cell::Text("O'Brien\0".into()), Cell::Int(1)]]);
        assert!(out.contains("VALUES\n('O''Brien', 1);"), "{out}");
        assert!(out.contains("CREATE TABLE \"t\" (\n  \"a\" TEXT,\n  \"n\" INTEGER\n);"), "{out}");
    }

    #[test]
    fn columns_are_checked_by_name() {
        let picked = select_columns(USER_COLUMNS, Some(&["email".into(), "id".into()])).unwrap();
        assert_eq!(picked.iter().map(|c| c.name).collect::<Vec<_>>(), ["email", "id"]);
        match select_columns(USER_COLUMNS, Some(&["id".into(), "password_hash".into(), "id".into()])) {
            Err(Error::Validation(errors)) => assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["columns[1]", "columns[2]"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn filters_name_the_bad_field() {
        let err = |d, v: Value| match Filters::parse(d, Some(&v)) {
            Err(Error::Validation(e)) => e[0].field.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(err(Dataset::Users, serde_json::json!({ "statuss": "active" })), "filters.statuss");
        assert_eq!(err(Dataset::Users, serde_json::json!({ "status": "gone" })), "filters.status");
        assert_eq!(err(Dataset::Audit, serde_json::json!({ "from": "yesterday" })), "filters.from");
        assert_eq!(err(Dataset::Activity, serde_json::json!({ "from": "2020-01-01T00:00:00Z", "to": "2022-01-01T00:00:00Z" })), "filters.from");
        assert!(Filters::parse(Dataset::Orders, Some(&serde_json::json!({ "status": "paid" }))).is_ok());
    }

    #[test]
    fn plans_cover_the_range() {
        let now = DateTime::parse_from_rfc3339("2026-03-10T12:00:00Z").unwrap().with_timezone(&Utc);
        let f = Filters::Audit(AuditFilters { from: Some("2026-03-01T00:00:00Z".into()), ..Default::default() });
        assert_eq!(f.plan(now).unwrap().len(), 10);
        let f = Filters::Orders(OrderFilters { from: Some("2025-11-20T00:00:00Z".into()), ..Default::default() });
        assert_eq!(f.plan(now).unwrap().len(), 5);
    }

    #[test]
    fn personal_columns_are_masked() {
        let item: Item = HashMap::from([("email".to_string(), s("ada@example.com")), ("name".to_string(), s("Ada Lovelace")), ("id".to_string(), s("u1"))]);
        let row = row_of(Source::Dataset, &item, &USER_COLUMNS[..3], true);
        assert_eq!(row, vec![Cell::Text("u1".into()), Cell::Text("a***@example.com".into()), Cell::Text("A***".into())]);
        let row = row_of(Source::Dataset, &item, &USER_COLUMNS[..3], false);
        assert_eq!(row[1], Cell::Text("ada@example.com".into()));
    }
}
