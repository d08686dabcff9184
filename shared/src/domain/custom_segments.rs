//! Rule-based custom segments, with no I/O (docs/analytics.md): a small
//! typed rule language (`all` / `any` groups of `{field, op, value}`
//! conditions over user fields, activity and orders), parsed from JSON with
//! every error naming its field path, and evaluated against per-user
//! profiles (`Profile`) that the analytics refresh computes from the users,
//! the activity events and the orders, and stores in chunks beside the
//! other rollups of its generation.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::business::{Event, RfmCustomer, RfmSegment};
use super::revenue::{self, NO_PLAN, Order, UNKNOWN_COUNTRY};
use crate::platform::error::FieldError;

/// Activity windows (`days` of `sign_ins` and `charts_created`) go back at most this far.
pub const MAX_WINDOW_DAYS: i64 = 365;
/// At most this many conditions in a rule set, and this deep a nesting of groups.
pub const MAX_CONDITIONS: usize = 50;
pub const MAX_DEPTH: usize = 4;
/// User ids a preview or a segment answers as its sample.
pub const SAMPLE_SIZE: usize = 20;
/// Profiles per stored chunk (an item stays far below DynamoDB's 400 KB).
pub const PROFILES_PER_CHUNK: usize = 200;
/// Event kind of a sign-in.
pub const SIGN_IN: &str = "login";
pub const USER_STATUSES: [&str; 4] = ["active", "invited", "suspended", "deleted"];

/// What the refresh knows of one user, as of its `as_of`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub user_id: String,
    /// The user's country, `ZZ` when unknown.
    pub country: String,
    pub status: String,
    pub roles: Vec<String>,
    /// The user's `created_at`, Unix seconds.
    pub signed_up: i64,
    /// The user's `last_login_at`, Unix seconds.
    #[serde(default)]
    pub last_sign_in: Option<i64>,
    /// Sign-in (`login`) events of the last [`MAX_WINDOW_DAYS`] days, Unix seconds.
    #[serde(default)]
    pub sign_ins: Vec<i64>,
    /// `chart_created` events of the last [`MAX_WINDOW_DAYS`] days, Unix seconds.
    #[serde(default)]
    pub charts: Vec<i64>,
    /// Orders placed and not refunded.
    pub paid_orders: i64,
    /// Σ amounts − Σ refunds, cents.
    pub spend_cents: i64,
    /// MRR of the terms running at `as_of` (start < as_of ≤ end), cents.
    pub mrr_cents: i64,
    /// Plan of the running term with the most MRR; `none` without MRR.
    pub plan: String,
    /// Any order refunded (wholly or partly) or lost in a dispute.
    pub refunded: bool,
    #[serde(default)]
    pub rfm_segment: Option<RfmSegment>,
}

/// A user item, the fields profiles read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Member {
    pub id: String,
    #[serde(default)]
    pub country: Option<String>,
    pub status: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub created_at: String,
    #[serde(default)]
    pub last_login_at: Option<String>,
}

/// Every user's profile as of `as_of`, sorted by user id. Events and
/// orders of users without a user item are left out.
pub fn profiles(members: &[Member], events: &[Event], orders: &[Order], rfm: &[RfmCustomer], as_of: DateTime<Utc>) -> Vec<Profile> {
    let since = as_of - Duration::days(MAX_WINDOW_DAYS);
    let mut out: HashMap<&str, Profile> = HashMap::new();
    for m in members {
        let Some(signed_up) = revenue::parse_time(&m.created_at) else { continue };
        out.insert(
            m.id.as_str(),
            Profile {
                user_id: m.id.clone(),
                country: m.country.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| UNKNOWN_COUNTRY.into()),
                status: m.status.clone(),
                roles: m.roles.clone(),
                signed_up: signed_up.timestamp(),
                last_sign_in: m.last_login_at.as_deref().and_then(revenue::parse_time).map(|t| t.timestamp()),
                plan: NO_PLAN.into(),
                ..Default::default()
            },
        );
    }
    for e in events {
        let (Some(p), Some(t)) = (out.get_mut(e.user_id.as_str()), revenue::parse_time(&e.ts)) else { continue };
        if t <= since || t > as_of {
            continue;
        }
        match e.kind.as_str() {
            SIGN_IN => p.sign_ins.push(t.timestamp()),
            super::business::CHART_CREATED => p.charts.push(t.timestamp()),
            _ => {}
        }
    }
    let mut running: HashMap<&str, Vec<(i64, String)>> = HashMap::new();
    for o in orders {
        let Some(p) = out.get_mut(o.user_id.as_str()) else { continue };
        if revenue::parse_time(&o.created_at).is_none_or(|t| t > as_of) {
            continue;
        }
        let returned = o.returned_by(as_of);
        p.spend_cents += o.amount_cents - returned;
        if returned > 0 || o.refund().is_some_and(|(_, t)| t <= as_of) {
            p.refunded = true;
        } else {
            p.paid_orders += 1;
        }
        if let Some((_, _, mrr)) = o.term().filter(|(start, end, _)| *start < as_of && as_of <= *end) {
            p.mrr_cents += mrr;
            running.entry(o.user_id.as_str()).or_default().push((mrr, o.segment().plan));
        }
    }
    for (user, mut terms) in running {
        terms.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        if let (Some(p), Some((_, plan))) = (out.get_mut(user), terms.into_iter().next()) {
            p.plan = plan;
        }
    }
    for c in rfm {
        if let Some(p) = out.get_mut(c.user_id.as_str()) {
            p.rfm_segment = Some(c.segment);
        }
    }
    let mut v: Vec<Profile> = out.into_values().collect();
    for p in &mut v {
        p.sign_ins.sort_unstable();
        p.charts.sort_unstable();
    }
    v.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    v
}

/// What a condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Country,
    Status,
    Role,
    Plan,
    RfmSegment,
    SignedUp,
    LastSignIn,
    SignIns,
    ChartsCreated,
    PaidOrders,
    TotalSpendCents,
    MrrCents,
    Refunded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Date,
    Count,
    Bool,
}

impl Field {
    pub const ALL: [Field; 13] = [
        Field::Country,
        Field::Status,
        Field::Role,
        Field::Plan,
        Field::RfmSegment,
        Field::SignedUp,
        Field::LastSignIn,
        Field::SignIns,
        Field::ChartsCreated,
        Field::PaidOrders,
        Field::TotalSpendCents,
        Field::MrrCents,
        Field::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::Country => "country",
            Field::Status => "status",
            Field::Role => "role",
            Field::Plan => "plan",
            Field::RfmSegment => "rfm_segment",
            Field::SignedUp => "signed_up",
            Field::LastSignIn => "last_sign_in",
            Field::SignIns => "sign_ins",
            Field::ChartsCreated => "charts_created",
            Field::PaidOrders => "paid_orders",
            Field::TotalSpendCents => "total_spend_cents",
            Field::MrrCents => "mrr_cents",
            Field::Refunded => "refunded",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Field::Country | Field::Status | Field::Role | Field::Plan | Field::RfmSegment => Kind::Text,
            Field::SignedUp | Field::LastSignIn => Kind::Date,
            Field::SignIns | Field::ChartsCreated | Field::PaidOrders | Field::TotalSpendCents | Field::MrrCents => Kind::Count,
            Field::Refunded => Kind::Bool,
        }
    }

    /// Activity counts need a window.
    fn windowed(self) -> bool {
        matches!(self, Field::SignIns | Field::ChartsCreated)
    }

    /// Why `value` is not a valid value of this field, if it is not.
    fn check_text(self, value: &str) -> Option<String> {
        let ok = match self {
            Field::Country => value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase()),
            Field::Status => USER_STATUSES.contains(&value),
            Field::RfmSegment => serde_json::from_value::<RfmSegment>(json!(value)).is_ok(),
            _ => !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'),
        };
        (!ok).then(|| match self {
            Field::Country => "must be an ISO 3166-1 alpha-2 code in upper case (ZZ: unknown)".to_string(),
            Field::Status => format!("must be one of {}", USER_STATUSES.join(", ")),
            Field::RfmSegment => {
                let names: Vec<String> = RfmSegment::ALL.iter().filter_map(|s| serde_json::to_value(s).ok()?.as_str().map(String::from)).collect();
                format!("must be one of {}", names.join(", "))
            }
            _ => "must be 1 to 64 lower-case letters, digits, _ or -".to_string(),
        })
    }
}

/// How a condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    In,
    NotIn,
    Gt,
    Gte,
    Lt,
    Lte,
    Between,
    Before,
    After,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Between => "between",
            Op::Before => "before",
            Op::After => "after",
        }
    }

    fn of(kind: Kind) -> &'static [Op] {
        match kind {
            Kind::Text => &[Op::Eq, Op::Ne, Op::In, Op::NotIn],
            Kind::Date => &[Op::Before, Op::After, Op::Between],
            Kind::Count => &[Op::Eq, Op::Ne, Op::Gt, Op::Gte, Op::Lt, Op::Lte, Op::Between],
            Kind::Bool => &[Op::Eq],
        }
    }
}

/// The operand of a condition, typed by its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    Texts(Vec<String>),
    /// Whole UTC days, inclusive: `[from, to]` (`before`: only `to` is
    /// read as the first day excluded; `after`: the last day excluded).
    Days(NaiveDate, NaiveDate),
    Counts(i64, i64),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub field: Field,
    pub op: Op,
    pub value: Operand,
    /// The window of an activity count, in days back from the profiles' `as_of`.
    pub days: Option<i64>,
}

/// A rule set: a group of rules or one condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    All(Vec<Rule>),
    Any(Vec<Rule>),
    Condition(Condition),
}

impl Rule {
    /// Parse `value` (at `path` in the request), naming every field in error.
    pub fn parse(value: &Value, path: &str) -> Result<Rule, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut conditions = 0;
        let rule = parse_rule(value, path, 1, &mut conditions, &mut errors);
        if conditions > MAX_CONDITIONS {
            errors.push(FieldError::new(path, format!("at most {MAX_CONDITIONS} conditions in all ({conditions} given)")));
        }
        match rule {
            Some(rule) if errors.is_empty() => Ok(rule),
            _ => Err(errors),
        }
    }

    /// The rule set as JSON, in the form `parse` reads.
    pub fn to_json(&self) -> Value {
        match self {
            Rule::All(rules) => json!({ "all": rules.iter().map(Rule::to_json).collect::<Vec<_>>() }),
            Rule::Any(rules) => json!({ "any": rules.iter().map(Rule::to_json).collect::<Vec<_>>() }),
            Rule::Condition(c) => {
                let day = |d: &NaiveDate| d.format("%Y-%m-%d").to_string();
                let value = match (&c.value, c.op) {
                    (Operand::Texts(t), Op::In | Op::NotIn) => json!(t),
                    (Operand::Texts(t), _) => json!(t.first()),
                    (Operand::Days(a, b), Op::Between) => json!([day(a), day(b)]),
                    (Operand::Days(a, _), Op::After) => json!(day(a)),
                    (Operand::Days(_, b), _) => json!(day(b)),
                    (Operand::Counts(a, b), Op::Between) => json!([a, b]),
                    (Operand::Counts(a, _), _) => json!(a),
                    (Operand::Bool(b), _) => json!(b),
                };
                let mut out = json!({ "field": c.field.as_str(), "op": c.op.as_str(), "value": value });
                if let Some(days) = c.days {
                    out["days"] = json!(days);
                }
                out
            }
        }
    }

    /// Whether the user of `p` is in the segment, with activity windows ending at `as_of`.
    pub fn matches(&self, p: &Profile, as_of: DateTime<Utc>) -> bool {
        match self {
            Rule::All(rules) => rules.iter().all(|r| r.matches(p, as_of)),
            Rule::Any(rules) => rules.iter().any(|r| r.matches(p, as_of)),
            Rule::Condition(c) => c.matches(p, as_of),
        }
    }
}

impl Condition {
    fn matches(&self, p: &Profile, as_of: DateTime<Utc>) -> bool {
        let window = |times: &[i64]| {
            let since = (as_of - Duration::days(self.days.unwrap_or(MAX_WINDOW_DAYS))).timestamp();
            times.iter().filter(|t| **t > since && **t <= as_of.timestamp()).count() as i64
        };
        match (&self.value, self.field) {
            (Operand::Texts(values), Field::Role) => {
                let held = |v: &String| p.roles.contains(v);
                match self.op {
                    Op::Eq | Op::In => values.iter().any(held),
                    _ => !values.iter().any(held),
                }
            }
            (Operand::Texts(values), field) => {
                let actual = match field {
                    Field::Country => Some(p.country.clone()),
                    Field::Status => Some(p.status.clone()),
                    Field::Plan => Some(p.plan.clone()),
                    Field::RfmSegment => p.rfm_segment.and_then(|s| serde_json::to_value(s).ok()?.as_str().map(String::from)),
                    _ => None,
                };
                let found = actual.is_some_and(|a| values.contains(&a));
                match self.op {
                    Op::Eq | Op::In => found,
                    _ => !found,
                }
            }
            (Operand::Days(from, to), field) => {
                let at = match field {
                    Field::SignedUp => Some(p.signed_up),
                    _ => p.last_sign_in,
                };
                let Some(at) = at.and_then(|s| Utc.timestamp_opt(s, 0).single()) else { return false };
                let day = at.date_naive();
                match self.op {
                    Op::Before => day < *to,
                    Op::After => day > *from,
                    _ => (*from..=*to).contains(&day),
                }
            }
            (Operand::Counts(lo, hi), field) => {
                let x = match field {
                    Field::SignIns => window(&p.sign_ins),
                    Field::ChartsCreated => window(&p.charts),
                    Field::PaidOrders => p.paid_orders,
                    Field::TotalSpendCents => p.spend_cents,
                    _ => p.mrr_cents,
                };
                match self.op {
                    Op::Eq => x == *lo,
                    Op::Ne => x != *lo,
                    Op::Gt => x > *lo,
                    Op::Gte => x >= *lo,
                    Op::Lt => x < *lo,
                    Op::Lte => x <= *lo,
                    _ => (*lo..=*hi).contains(&x),
                }
            }
            (Operand::Bool(b), _) => p.refunded == *b,
        }
    }
}

fn parse_rule(value: &Value, path: &str, depth: usize, conditions: &mut usize, errors: &mut Vec<FieldError>) -> Option<Rule> {
    let Some(obj) = value.as_object() else {
        errors.push(FieldError::new(path, "must be an object: {\"all\": [...]}, {\"any\": [...]} or a condition {\"field\", \"op\", \"value\"}"));
        return None;
    };
    for group in ["all", "any"] {
        let Some(list) = obj.get(group) else { continue };
        let here = format!("{path}.{group}");
        if let Some(extra) = obj.keys().find(|k| *k != group) {
            errors.push(FieldError::new(format!("{path}.{extra}"), format!("not allowed beside \"{group}\"")));
        }
        if depth > MAX_DEPTH {
            errors.push(FieldError::new(&here, format!("groups nest at most {MAX_DEPTH} deep")));
            return None;
        }
        let Some(items) = list.as_array().filter(|a| !a.is_empty()) else {
            errors.push(FieldError::new(&here, "must be a non-empty array of rules"));
            return None;
        };
        let rules: Vec<Option<Rule>> = items.iter().enumerate().map(|(i, r)| parse_rule(r, &format!("{here}[{i}]"), depth + 1, conditions, errors)).collect();
        let rules: Option<Vec<Rule>> = rules.into_iter().collect();
        return rules.map(|r| if group == "all" { Rule::All(r) } else { Rule::Any(r) });
    }
    *conditions += 1;
    parse_condition(obj, path, errors).map(Rule::Condition)
}

fn parse_condition(obj: &serde_json::Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) -> Option<Condition> {
    let before = errors.len();
    let at = |name: &str| format!("{path}.{name}");
    for extra in obj.keys().filter(|k| !["field", "op", "value", "days"].contains(&k.as_str())) {
        errors.push(FieldError::new(at(extra), "unknown key (a condition has field, op, value and, for activity counts, days)"));
    }
    let names: Vec<&str> = Field::ALL.iter().map(|f| f.as_str()).collect();
    let field = match obj.get("field").and_then(Value::as_str) {
        Some(name) => match Field::ALL.iter().find(|f| f.as_str() == name) {
            Some(f) => Some(*f),
            None => {
                errors.push(FieldError::new(at("field"), format!("must be one of {}", names.join(", "))));
                None
            }
        },
        None => {
            errors.push(FieldError::new(at("field"), format!("required: one of {}", names.join(", "))));
            None
        }
    };
    let field = field?;
    let allowed = Op::of(field.kind());
    let allowed_names: Vec<&str> = allowed.iter().map(|o| o.as_str()).collect();
    let op = match obj.get("op").and_then(Value::as_str).map(|name| allowed.iter().find(|o| o.as_str() == name)) {
        Some(Some(op)) => Some(*op),
        _ => {
            errors.push(FieldError::new(at("op"), format!("must be one of {} for {}", allowed_names.join(", "), field.as_str())));
            None
        }
    };
    let days = match (obj.get("days"), field.windowed()) {
        (None, true) => {
            errors.push(FieldError::new(at("days"), format!("required for {}: the window in days, 1 to {MAX_WINDOW_DAYS}", field.as_str())));
            None
        }
        (Some(d), true) => match d.as_i64().filter(|d| (1..=MAX_WINDOW_DAYS).contains(d)) {
            Some(d) => Some(d),
            None => {
                errors.push(FieldError::new(at("days"), format!("must be a whole number of days, 1 to {MAX_WINDOW_DAYS}")));
                None
            }
        },
        (Some(_), false) => {
            errors.push(FieldError::new(at("days"), format!("only sign_ins and charts_created take a window, not {}", field.as_str())));
            None
        }
        (None, false) => None,
    };
    let op = op?;
    let value = parse_value(field, op, obj.get("value"), &at("value"), errors)?;
    (errors.len() == before).then_some(Condition { field, op, value, days })
}

fn parse_value(field: Field, op: Op, value: Option<&Value>, path: &str, errors: &mut Vec<FieldError>) -> Option<Operand> {
    let Some(value) = value else {
        errors.push(FieldError::new(path, "required"));
        return None;
    };
    fn fail(errors: &mut Vec<FieldError>, path: &str, message: &str) -> Option<Operand> {
        errors.push(FieldError::new(path, message));
        None
    }
    let pair = |v: &Value| v.as_array().filter(|a| a.len() == 2).map(|a| (a[0].clone(), a[1].clone()));
    match field.kind() {
        Kind::Text => {
            let texts: Vec<&Value> = match (op, value) {
                (Op::In | Op::NotIn, Value::Array(a)) if !a.is_empty() && a.len() <= 100 => a.iter().collect(),
                (Op::In | Op::NotIn, _) => return fail(errors, path, "must be a non-empty array (at most 100) of values"),
                (_, v) => vec![v],
            };
            let mut out = Vec::new();
            for (i, v) in texts.iter().enumerate() {
                let here = if matches!(op, Op::In | Op::NotIn) { format!("{path}[{i}]") } else { path.to_string() };
                match v.as_str() {
                    Some(s) => match field.check_text(s) {
                        Some(message) => errors.push(FieldError::new(here, message)),
                        None => out.push(s.to_string()),
                    },
                    None => errors.push(FieldError::new(here, "must be a string")),
                }
            }
            (out.len() == texts.len()).then_some(Operand::Texts(out))
        }
        Kind::Date => {
            let day = |v: &Value| v.as_str().and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok());
            match op {
                Op::Between => match pair(value).map(|(a, b)| (day(&a), day(&b))) {
                    Some((Some(a), Some(b))) if a <= b => Some(Operand::Days(a, b)),
                    Some((Some(_), Some(_))) => fail(errors, path, "the first day must not be after the second"),
                    _ => fail(errors, path, "must be [from, to], two days yyyy-mm-dd (both included)"),
                },
                _ => match day(value) {
                    Some(d) => Some(Operand::Days(d, d)),
                    None => fail(errors, path, "must be a day, yyyy-mm-dd"),
                },
            }
        }
        Kind::Count => {
            let count = |v: &Value| v.as_i64().filter(|n| *n >= 0);
            match op {
                Op::Between => match pair(value).map(|(a, b)| (count(&a), count(&b))) {
                    Some((Some(a), Some(b))) if a <= b => Some(Operand::Counts(a, b)),
                    Some((Some(_), Some(_))) => fail(errors, path, "the lower bound must not exceed the upper one"),
                    _ => fail(errors, path, "must be [low, high], two whole numbers ≥ 0 (both included)"),
                },
                _ => match count(value) {
                    Some(n) => Some(Operand::Counts(n, n)),
                    None => fail(errors, path, "must be a whole number ≥ 0"),
                },
            }
        }
        Kind::Bool => match value.as_bool() {
            Some(b) => Some(Operand::Bool(b)),
            None => fail(errors, path, "must be true or false"),
        },
    }
}

/// How many profiles match, and the first [`SAMPLE_SIZE`] of their user ids (sorted).
pub fn evaluate(rule: &Rule, profiles: &[Profile], as_of: DateTime<Utc>) -> (i64, Vec<String>) {
    let mut count = 0;
    let mut sample = Vec::new();
    for p in profiles.iter().filter(|p| rule.matches(p, as_of)) {
        count += 1;
        if sample.len() < SAMPLE_SIZE {
            sample.push(p.user_id.clone());
        }
    }
    sample.sort();
    (count, sample)
}

/// Profile chunks of a rollup generation (sort key: the chunk's number, 5 digits).
pub fn profiles_pk(generation: &str) -> String {
    format!("PROFILES#{generation}")
}

/// Custom segments, one partition (sort key `SEGMENT#<id>`).
pub const SEGMENTS_PK: &str = "ANALYTICS#SEGMENTS";

pub fn segment_sk(id: &str) -> String {
    format!("SEGMENT#{id}")
}

/// A stored chunk of profiles.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProfileChunk {
    pub profiles: Vec<Profile>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: Value) -> Vec<String> {
        Rule::parse(&v, "rules").unwrap_err().into_iter().map(|e| e.field).collect()
    }

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
    }

    #[test]
    fn errors_name_the_path_of_the_offending_field() {
        assert_eq!(fields(json!({"all": [{"field": "country", "op": "eq", "value": "de"}]})), ["rules.all[0].value"]);
        assert_eq!(fields(json!({"any": [{"field": "colour", "op": "eq", "value": "x"}]})), ["rules.any[0].field"]);
        assert_eq!(fields(json!({"all": [{"field": "mrr_cents", "op": "in", "value": [1]}]})), ["rules.all[0].op"]);
        assert_eq!(fields(json!({"all": [{"field": "sign_ins", "op": "gte", "value": 2}]})), ["rules.all[0].days"]);
        assert_eq!(fields(json!({"all": [{"field": "plan", "op": "eq", "value": "pro", "days": 3}]})), ["rules.all[0].days"]);
        assert_eq!(fields(json!({"all": [{"field": "status", "op": "in", "value": ["active", "gone"]}]})), ["rules.all[0].value[1]"]);
        assert_eq!(fields(json!({"all": [{"field": "signed_up", "op": "between", "value": ["2026-02-01", "2026-01-01"]}]})), ["rules.all[0].value"]);
        assert_eq!(fields(json!({"all": []})), ["rules.all"]);
        assert_eq!(fields(json!([])), ["rules"]);
        let deep = json!({"all": [{"any": [{"all": [{"any": [{"field": "refunded", "op": "eq", "value": true}]}]}]}]});
        assert!(Rule::parse(&deep, "rules").is_ok());
        assert_eq!(fields(json!({ "all": [deep] })), ["rules.all[0].all[0].any[0].all[0].any"]);
        let many: Vec<Value> = (0..51).map(|_| json!({"field": "refunded", "op": "eq", "value": true})).collect();
        assert_eq!(fields(json!({ "any": many })), ["rules"]);
    }

    #[test]
    fn rules_round_trip_through_json() {
        let v = json!({"all": [
            {"field": "country", "op": "in", "value": ["DE", "FR"]},
            {"any": [{"field": "sign_ins", "op": "gte", "value": 2, "days": 30}, {"field": "last_sign_in", "op": "after", "value": "2026-01-05"}]},
            {"field": "mrr_cents", "op": "between", "value": [100, 2000]},
            {"field": "signed_up", "op": "between", "value": ["2025-01-01", "2025-12-31"]},
        ]});
        let rule = Rule::parse(&v, "rules").unwrap();
        assert_eq!(rule.to_json(), v);
    }

    #[test]
    fn conditions_match_what_the_docs_say() {
        let as_of = at(2026, 3, 1);
        let p = Profile {
            user_id: "u".into(),
            country: "DE".into(),
            status: "active".into(),
            roles: vec!["user".into(), "analyst".into()],
            signed_up: at(2025, 6, 15).timestamp(),
            last_sign_in: Some(at(2026, 2, 20).timestamp()),
            sign_ins: vec![at(2026, 1, 1).timestamp(), at(2026, 2, 20).timestamp()],
            charts: vec![],
            paid_orders: 3,
            spend_cents: 4500,
            mrr_cents: 1500,
            plan: "pro".into(),
            refunded: false,
            rfm_segment: Some(RfmSegment::Loyal),
        };
        let check = |v: Value| Rule::parse(&v, "rules").unwrap().matches(&p, as_of);
        assert!(check(json!({"field": "country", "op": "eq", "value": "DE"})));
        assert!(!check(json!({"field": "country", "op": "not_in", "value": ["DE"]})));
        assert!(check(json!({"field": "role", "op": "eq", "value": "analyst"})));
        assert!(check(json!({"field": "role", "op": "not_in", "value": ["admin"]})));
        assert!(check(json!({"field": "sign_ins", "op": "eq", "value": 1, "days": 30})));
        assert!(check(json!({"field": "sign_ins", "op": "eq", "value": 2, "days": 60})));
        assert!(check(json!({"field": "charts_created", "op": "eq", "value": 0, "days": 365})));
        assert!(check(json!({"field": "last_sign_in", "op": "before", "value": "2026-02-21"})));
        assert!(!check(json!({"field": "last_sign_in", "op": "before", "value": "2026-02-20"})));
        assert!(check(json!({"field": "last_sign_in", "op": "after", "value": "2026-02-19"})));
        assert!(check(json!({"field": "signed_up", "op": "between", "value": ["2025-06-15", "2025-06-15"]})));
        assert!(check(json!({"field": "total_spend_cents", "op": "gt", "value": 4499})));
        assert!(check(json!({"field": "rfm_segment", "op": "eq", "value": "loyal"})));
        assert!(check(json!({"all": [{"field": "plan", "op": "eq", "value": "pro"}, {"field": "refunded", "op": "eq", "value": false}]})));
        assert!(!check(json!({"any": [{"field": "plan", "op": "eq", "value": "team"}, {"field": "paid_orders", "op": "lt", "value": 3}]})));
    }

    #[test]
    fn profiles_sum_orders_and_keep_the_biggest_running_plan() {
        let as_of = at(2026, 3, 1);
        let member =
            Member { id: "u".into(), country: None, status: "active".into(), roles: vec![], created_at: at(2025, 1, 1).to_rfc3339(), last_login_at: None };
        let order = |id: &str, plan: &str, amount: i64, start: DateTime<Utc>, refunded: bool| Order {
            id: id.into(),
            user_id: "u".into(),
            plan: Some(plan.into()),
            billing: Some(revenue::Billing::Monthly),
            amount_cents: amount,
            status: Some(if refunded { "refunded" } else { "paid" }.into()),
            created_at: start.to_rfc3339(),
            ..Default::default()
        };
        let orders = vec![
            order("a", "pro", 2000, at(2026, 2, 15), false),
            order("b", "team", 5000, at(2026, 2, 20), false),
            order("c", "pro", 2000, at(2025, 12, 1), true),
            order("d", "pro", 2000, at(2026, 4, 1), false),
        ];
        let events = vec![
            Event { user_id: "u".into(), kind: SIGN_IN.into(), ts: at(2026, 2, 1).to_rfc3339(), country: None },
            Event { user_id: "u".into(), kind: SIGN_IN.into(), ts: at(2024, 2, 1).to_rfc3339(), country: None },
            Event { user_id: "nobody".into(), kind: SIGN_IN.into(), ts: at(2026, 2, 1).to_rfc3339(), country: None },
        ];
        let p = profiles(&[member], &events, &orders, &[], as_of);
        assert_eq!(p.len(), 1);
        let p = &p[0];
        assert_eq!((p.country.as_str(), p.paid_orders, p.spend_cents, p.mrr_cents, p.plan.as_str(), p.refunded), ("ZZ", 2, 7000, 7000, "team", true));
        assert_eq!(p.sign_ins, vec![at(2026, 2, 1).timestamp()]);
    }
}
