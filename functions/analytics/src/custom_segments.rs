//! `/api/v1/analytics/segments/custom[/{id}|/preview]`: rule-based custom
//! segments — preview a rule set's size, create, list, read, replace and
//! delete them. Every answer counts the members against the per-user
//! profiles of the rollups' current generation (one Query of a few chunks;
//! the figures are as of `computed_at`). Changes are committed with their
//! audit entry. Rule language: `shared::domain::custom_segments`,
//! docs/analytics.md.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::audit::AuditEntry;
use shared::domain::custom_segments::{self, Profile, ProfileChunk, Rule, SEGMENTS_PK};
use shared::domain::revenue::{self, RevenueMeta};
use shared::http::Caller;
use shared::http::extract::{PathId, ValidJson};
use shared::platform::error::{Error, FieldError, Result};
use shared::store::ids::SegmentId;
use shared::store::{QuerySpec, Store, Write, from_doc_item, from_item, s, timestamp, to_item};
use utoipa::ToSchema;

use crate::AnalyticsState;

pub const MAX_NAME: usize = 100;
pub const MAX_DESCRIPTION: usize = 500;
/// Custom segments that can exist at once.
pub const MAX_SEGMENTS: usize = 200;

/// A custom segment as stored (`ANALYTICS#SEGMENTS / SEGMENT#<id>`); the
/// rules are kept as their JSON text so numbers come back as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSegment {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub rules: String,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    pub version: u64,
}

impl StoredSegment {
    fn to_item(&self) -> Result<shared::store::Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(SEGMENTS_PK));
        item.insert("sk".into(), s(custom_segments::segment_sk(&self.id)));
        item.insert("type".into(), s("custom_segment"));
        Ok(item)
    }

    fn rules(&self) -> Result<Rule> {
        let value: Value = serde_json::from_str(&self.rules).map_err(|e| Error::internal(format!("stored segment {}: {e}", self.id)))?;
        Rule::parse(&value, "rules").map_err(|_| Error::internal(format!("stored segment {} has rules that no longer parse", self.id)))
    }
}

/// A rule set and the members it selects.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preview {
    /// `{"all": [...]}`, `{"any": [...]}` or one condition `{"field", "op", "value", "days"?}` (docs/analytics.md).
    #[schema(value_type = Object, example = json!({"all": [{"field": "country", "op": "in", "value": ["DE", "FR"]}, {"field": "sign_ins", "op": "gte", "value": 2, "days": 30}]}))]
    pub rules: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PreviewResult {
    /// Users matching the rules.
    pub count: i64,
    /// The first 20 matching user ids, sorted.
    pub sample: Vec<String>,
    /// Users profiled (the population the rules were applied to).
    pub users: i64,
    /// When the profiles were computed (activity windows end then); null before the first refresh.
    pub computed_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSegment {
    pub name: String,
    pub description: Option<String>,
    #[schema(value_type = Object)]
    pub rules: Value,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceSegment {
    /// The version you read; the update is refused (409) if it changed since.
    pub version: u64,
    pub name: String,
    pub description: Option<String>,
    #[schema(value_type = Object)]
    pub rules: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SegmentView {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    #[schema(value_type = Object)]
    pub rules: Value,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    pub version: u64,
    /// Its members now (as of `computed_at`).
    pub count: i64,
    pub sample: Vec<String>,
    pub users: i64,
    pub computed_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SegmentList {
    pub segments: Vec<SegmentView>,
    pub computed_at: Option<String>,
}

/// The current generation's profiles and their `as_of` (none before the first refresh).
pub struct Profiles {
    pub as_of: Option<DateTime<Utc>>,
    pub profiles: Vec<Profile>,
}

impl Profiles {
    pub async fn load(store: &Store) -> Result<Profiles> {
        let meta: Option<RevenueMeta> = store.get(revenue::META_PK, revenue::META_SK).await?;
        let Some(meta) = meta else { return Ok(Profiles { as_of: None, profiles: Vec::new() }) };
        let spec = QuerySpec {
            key_condition: "pk = :pk",
            values: vec![(":pk", s(custom_segments::profiles_pk(&meta.generation)))],
            forward: true,
            ..Default::default()
        };
        let mut profiles = Vec::new();
        for item in store.query_all(&spec).await? {
            let chunk: ProfileChunk = from_doc_item(item)?;
            profiles.extend(chunk.profiles);
        }
        Ok(Profiles { as_of: revenue::parse_time(&meta.computed_at), profiles })
    }

    pub fn evaluate(&self, rule: &Rule) -> PreviewResult {
        let (count, sample) = match self.as_of {
            Some(as_of) => custom_segments::evaluate(rule, &self.profiles, as_of),
            None => (0, Vec::new()),
        };
        PreviewResult { count, sample, users: self.profiles.len() as i64, computed_at: self.as_of.map(timestamp) }
    }
}

fn view(segment: StoredSegment, rule: &Rule, profiles: &Profiles) -> SegmentView {
    let result = profiles.evaluate(rule);
    SegmentView {
        id: segment.id,
        name: segment.name,
        description: segment.description,
        rules: rule.to_json(),
        created_by: segment.created_by,
        created_at: segment.created_at,
        updated_at: segment.updated_at,
        version: segment.version,
        count: result.count,
        sample: result.sample,
        users: result.users,
        computed_at: result.computed_at,
    }
}

/// Name, description and rules checked together, every error named.
fn validate(name: &str, description: Option<&str>, rules: &Value) -> Result<(String, Option<String>, Rule)> {
    let mut errors: Vec<FieldError> = Vec::new();
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        errors.push(FieldError::new("name", format!("must be 1 to {MAX_NAME} characters")));
    }
    let description = description.map(str::trim).filter(|d| !d.is_empty());
    if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
        errors.push(FieldError::new("description", format!("at most {MAX_DESCRIPTION} characters")));
    }
    let rule = Rule::parse(rules, "rules").map_err(|e| errors.extend(e)).ok();
    match rule {
        Some(rule) if errors.is_empty() => Ok((name.to_string(), description.map(String::from), rule)),
        _ => Err(Error::Validation(errors)),
    }
}

async fn all_segments(store: &Store) -> Result<Vec<StoredSegment>> {
    let spec = QuerySpec { key_condition: "pk = :pk", values: vec![(":pk", s(SEGMENTS_PK))], forward: true, ..Default::default() };
    store.query_all(&spec).await?.into_iter().map(from_item).collect()
}

async fn load(store: &Store, id: &SegmentId) -> Result<StoredSegment> {
    store.get(SEGMENTS_PK, &custom_segments::segment_sk(id.as_str())).await?.ok_or_else(|| Error::NotFound(format!("no custom segment {id}")))
}

#[utoipa::path(post, path = "/api/v1/analytics/segments/custom/preview", tag = "analytics", request_body = Preview, security(("bearer" = [])),
    responses(
        (status = 200, description = "How many users the rules select, and a sample of them, from the current profiles", body = PreviewResult),
        (status = 400, description = "Invalid rules; each error names its path (e.g. `rules.all[1].value`)", body = shared::platform::error::Problem),
    ))]
pub async fn preview(State(state): State<AnalyticsState>, ValidJson(body): ValidJson<Preview>) -> Result<Json<PreviewResult>> {
    let rule = Rule::parse(&body.rules, "rules").map_err(Error::Validation)?;
    let profiles = Profiles::load(&state.platform.store).await?;
    Ok(Json(profiles.evaluate(&rule)))
}

#[utoipa::path(post, path = "/api/v1/analytics/segments/custom", tag = "analytics", request_body = CreateSegment, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created, with its member count", body = SegmentView),
        (status = 400, description = "Invalid name, description or rules (each error names its path)", body = shared::platform::error::Problem),
        (status = 409, description = "The limit of custom segments is reached", body = shared::platform::error::Problem),
    ))]
pub async fn create(State(state): State<AnalyticsState>, caller: Caller, ValidJson(body): ValidJson<CreateSegment>) -> Result<impl IntoResponse> {
    let (name, description, rule) = validate(&body.name, body.description.as_deref(), &body.rules)?;
    let store = &state.platform.store;
    if all_segments(store).await?.len() >= MAX_SEGMENTS {
        return Err(Error::Conflict(format!("at most {MAX_SEGMENTS} custom segments can exist; delete one first")));
    }
    let now = timestamp(Utc::now());
    let segment = StoredSegment {
        id: SegmentId::generate().into_string(),
        name,
        description,
        rules: rule.to_json().to_string(),
        created_by: caller.principal.user_id.clone(),
        created_at: now.clone(),
        updated_at: now,
        version: 1,
    };
    let audit = AuditEntry::new(&caller.actor(), "analytics.segment.create", "segment", &segment.id).changes(None::<&StoredSegment>, Some(&segment));
    store.commit(vec![Write::put_new(store.table(), segment.to_item()?, Error::internal("segment id collision"))?], &audit).await?;
    let profiles = Profiles::load(store).await?;
    let location = format!("/api/v1/analytics/segments/custom/{}", segment.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(view(segment, &rule, &profiles))))
}

#[utoipa::path(get, path = "/api/v1/analytics/segments/custom", tag = "analytics", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every custom segment with its member count now", body = SegmentList),
    ))]
pub async fn list(State(state): State<AnalyticsState>) -> Result<Json<SegmentList>> {
    let store = &state.platform.store;
    let profiles = Profiles::load(store).await?;
    let mut segments = Vec::new();
    for segment in all_segments(store).await? {
        let rule = segment.rules()?;
        segments.push(view(segment, &rule, &profiles));
    }
    Ok(Json(SegmentList { segments, computed_at: profiles.as_of.map(timestamp) }))
}

#[utoipa::path(get, path = "/api/v1/analytics/segments/custom/{segment_id}", tag = "analytics", security(("bearer" = [])),
    params(("segment_id" = String, Path, description = "Segment id")),
    responses(
        (status = 200, description = "The segment with its member count now", body = SegmentView),
        (status = 404, description = "No such segment", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<AnalyticsState>, PathId(id): PathId<SegmentId>) -> Result<Json<SegmentView>> {
    let store = &state.platform.store;
    let segment = load(store, &id).await?;
    let rule = segment.rules()?;
    Ok(Json(view(segment, &rule, &Profiles::load(store).await?)))
}

#[utoipa::path(put, path = "/api/v1/analytics/segments/custom/{segment_id}", tag = "analytics", request_body = ReplaceSegment, security(("bearer" = [])),
    params(("segment_id" = String, Path, description = "Segment id")),
    responses(
        (status = 200, description = "Replaced, with its member count", body = SegmentView),
        (status = 400, description = "Invalid name, description or rules (each error names its path)", body = shared::platform::error::Problem),
        (status = 404, description = "No such segment", body = shared::platform::error::Problem),
        (status = 409, description = "Version conflict", body = shared::platform::error::Problem),
    ))]
pub async fn replace(
    State(state): State<AnalyticsState>,
    caller: Caller,
    PathId(id): PathId<SegmentId>,
    ValidJson(body): ValidJson<ReplaceSegment>,
) -> Result<Json<SegmentView>> {
    let (name, description, rule) = validate(&body.name, body.description.as_deref(), &body.rules)?;
    let store = &state.platform.store;
    let current = load(store, &id).await?;
    if current.version != body.version {
        return Err(Error::Conflict(format!("the segment was changed (version {} now, {} sent); reload and retry", current.version, body.version)));
    }
    let next = StoredSegment {
        name,
        description,
        rules: rule.to_json().to_string(),
        updated_at: timestamp(Utc::now()),
        version: current.version + 1,
        ..current.clone()
    };
    let audit = AuditEntry::new(&caller.actor(), "analytics.segment.update", "segment", &next.id).changes(Some(&current), Some(&next));
    store.commit(vec![Write::put_versioned(store.table(), next.to_item()?, current.version)?], &audit).await?;
    Ok(Json(view(next, &rule, &Profiles::load(store).await?)))
}

#[utoipa::path(delete, path = "/api/v1/analytics/segments/custom/{segment_id}", tag = "analytics", security(("bearer" = [])),
    params(("segment_id" = String, Path, description = "Segment id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such segment", body = shared::platform::error::Problem),
        (status = 409, description = "Changed while being deleted; retry", body = shared::platform::error::Problem),
    ))]
pub async fn delete(State(state): State<AnalyticsState>, caller: Caller, PathId(id): PathId<SegmentId>) -> Result<StatusCode> {
    let store = &state.platform.store;
    let current = load(store, &id).await?;
    let audit = AuditEntry::new(&caller.actor(), "analytics.segment.delete", "segment", &current.id).changes(Some(&current), None::<&StoredSegment>);
    store.commit(vec![Write::delete_versioned(store.table(), SEGMENTS_PK, &custom_segments::segment_sk(&current.id), current.version)?], &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}
