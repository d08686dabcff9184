//! `POST /api/v1/search` and `POST /api/v1/search/advanced`: ranked hits
//! across the types the caller may read, each showing only what the admin
//! API would show them (personal fields masked without `pii:read`), with
//! highlights; the advanced form adds filters, facets and a sort.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shared::http::extract::ValidJson;
use shared::http::{Caller, Principal};
use shared::identity::rbac::Permission;
use shared::platform::error::{Error, FieldError, Result};
use tantivy::TantivyDocument;
use tantivy::schema::Value as _;
use utoipa::ToSchema;

use crate::highlight::highlight;
use crate::query::{self, Request, Scope, SortKey};
use crate::schema::{AMOUNT_FIELD, DATE_FIELDS, DocType, Fields, KEYWORDS};
use crate::{SearchState, stats};

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;
/// Deepest result reachable by paging (offset + limit).
pub const MAX_DEPTH: usize = 1000;

/// What a principal may search.
pub fn scope_of(principal: &Principal) -> Scope {
    let mut full = std::collections::BTreeSet::new();
    if principal.can(Permission::UsersRead) {
        // Orders are the users' purchases: read with the users.
        full.extend([DocType::Users, DocType::Orders]);
    }
    if principal.can(Permission::ChartsRead) {
        full.insert(DocType::Charts);
    }
    if principal.can(Permission::AuditRead) {
        full.insert(DocType::Audit);
    }
    Scope { caller: principal.user_id.clone(), full, own_and_public_charts: true, pii: principal.can(Permission::PiiRead) }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// What to look for (at most 256 characters); misspellings are forgiven
    /// (docs/search.md, "Typo rules").
    pub query: String,
    /// `users`, `charts`, `orders`, `audit`; by default every type the
    /// caller may read.
    pub types: Option<Vec<String>>,
    /// Hits per page, 1 to 100 (default 20).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SortRequest {
    /// A keyword field, `created_at`, `updated_at` or `amount_cents`.
    pub field: String,
    /// `asc` or `desc` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvancedRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    /// `{field: value | [values] | {gte, lte}}`: status, roles (role),
    /// country, plan, billing, currency, moderation_status (moderation),
    /// kind, action, outcome, target_type, actor_kind; created_at,
    /// updated_at (dates); amount_cents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub filters: Option<Map<String, Value>>,
    /// Keyword fields to count values of over every match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facets: Option<Vec<String>>,
    /// One sort key (relevance when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<Vec<SortRequest>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Hit {
    /// `users`, `charts`, `orders` or `audit`.
    #[serde(rename = "type")]
    pub doc_type: String,
    pub id: String,
    pub score: f32,
    /// The record's fields the caller may read (personal ones masked
    /// without `pii:read`).
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
    /// Shown fields with the matched words wrapped in `<em>…</em>`
    /// (HTML-escaped otherwise).
    pub highlights: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FacetValue {
    pub value: String,
    pub count: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchResults {
    /// Names this search for `POST /search/click`.
    pub query_id: String,
    /// Matches in all (every page).
    pub total: usize,
    pub hits: Vec<Hit>,
    pub next_cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facets: Option<BTreeMap<String, Vec<FacetValue>>>,
    /// The published index version searched (0: none published yet).
    pub index_version: u64,
    pub took_ms: f64,
}

fn cursor_offset(cursor: Option<&str>) -> Result<usize> {
    let Some(c) = cursor else { return Ok(0) };
    let bad = || Error::field("cursor", "not a cursor this API gave");
    let bytes = B64.decode(c).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix("o:").and_then(|n| n.parse().ok()).ok_or_else(bad)
}

fn cursor_at(offset: usize) -> String {
    B64.encode(format!("o:{offset}"))
}

/// The types asked for, checked against what the caller may search.
pub fn types_of(requested: Option<&[String]>, scope: &Scope) -> Result<Vec<DocType>> {
    let Some(requested) = requested else {
        return Ok(DocType::ALL.into_iter().filter(|t| scope.may_search(*t)).collect());
    };
    let mut errors = Vec::new();
    let mut types = Vec::new();
    for (i, name) in requested.iter().enumerate() {
        match DocType::parse(name) {
            Some(t) if !scope.may_search(t) => {
                let need = match t {
                    DocType::Audit => Permission::AuditRead,
                    _ => Permission::UsersRead,
                };
                return Err(Error::Forbidden { missing: need.as_str().to_string() });
            }
            Some(t) => types.push(t),
            None => errors.push(FieldError::new(format!("types[{i}]"), "must be users, charts, orders or audit")),
        }
    }
    if requested.is_empty() {
        errors.push(FieldError::new("types", "must name at least one type (or be left out)"));
    }
    if errors.is_empty() { Ok(types) } else { Err(Error::Validation(errors)) }
}

fn limit_of(limit: Option<usize>) -> Result<usize> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) { Ok(limit) } else { Err(Error::field("limit", format!("must be 1 to {MAX_LIMIT}"))) }
}

fn query_text(query: &str) -> Result<String> {
    if query.chars().count() > query::MAX_QUERY_CHARS {
        return Err(Error::field("query", format!("at most {} characters", query::MAX_QUERY_CHARS)));
    }
    Ok(query.to_string())
}

/// A checked advanced request (also what a saved search stores).
pub fn request_of(body: &AdvancedRequest, scope: &Scope) -> Result<Request> {
    let limit = limit_of(body.limit)?;
    let offset = cursor_offset(body.cursor.as_deref())?;
    let mut errors = Vec::new();
    let filters = match body.filters.as_ref().map(query::parse_filters).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => {
            errors.extend(e);
            Vec::new()
        }
    };
    let mut facets = Vec::new();
    for (i, name) in body.facets.iter().flatten().enumerate() {
        let canonical = Fields::canonical(name);
        if KEYWORDS.contains(&canonical) {
            facets.push(canonical.to_string());
        } else {
            errors.push(FieldError::new(format!("facets[{i}]"), format!("facets are {}", KEYWORDS.join(", "))));
        }
    }
    if facets.len() > 10 {
        errors.push(FieldError::new("facets", "at most 10"));
    }
    let sort = match body.sort.as_deref() {
        None | Some([]) => None,
        Some([one]) => {
            let field = Fields::canonical(&one.field).to_string();
            if !(KEYWORDS.contains(&field.as_str()) || DATE_FIELDS.contains(&field.as_str()) || field == AMOUNT_FIELD) {
                errors.push(FieldError::new("sort[0].field", "must be a keyword field, created_at, updated_at or amount_cents"));
            }
            let descending = match one.order.as_deref() {
                None | Some("desc") => true,
                Some("asc") => false,
                Some(_) => {
                    errors.push(FieldError::new("sort[0].order", "must be asc or desc"));
                    true
                }
            };
            Some(SortKey { field, descending })
        }
        Some(_) => {
            errors.push(FieldError::new("sort", "one sort key (relevance breaks ties only when no sort is given)"));
            None
        }
    };
    if offset + limit > MAX_DEPTH {
        errors.push(FieldError::new("cursor", format!("results are paged up to the first {MAX_DEPTH}; narrow the search")));
    }
    let query = match body.query.as_deref().map(query_text).transpose() {
        Ok(q) => q.unwrap_or_default(),
        Err(Error::Validation(e)) => {
            errors.extend(e);
            String::new()
        }
        Err(e) => return Err(e),
    };
    let types = types_of(body.types.as_deref(), scope)?;
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    Ok(Request { query, types, filters, facets, sort, limit, offset })
}

/// A hit as the caller may see it.
fn hit_of(doc: &TantivyDocument, f: &Fields, score: f32, scope: &Scope, terms: &std::collections::BTreeSet<String>) -> Option<Hit> {
    let text = |field| doc.get_first(field).and_then(|v| v.as_str()).map(str::to_string);
    let mut fields: Map<String, Value> = serde_json::from_str(&text(f.stored)?).ok()?;
    let doc_type = fields.remove("type")?.as_str()?.to_string();
    let id = fields.get("id")?.as_str()?.to_string();
    let personal: Map<String, Value> = text(f.personal).and_then(|p| serde_json::from_str(&p).ok()).unwrap_or_default();
    for (name, value) in personal {
        let shown = match (scope.pii, value.as_str()) {
            (true, _) => value,
            (false, Some(v)) if name == "email" => Value::String(shared::domain::masking::email(v)),
            (false, Some(v)) => Value::String(shared::domain::masking::name(v)),
            (false, None) => continue,
        };
        fields.insert(name, shown);
    }
    let mut highlights = BTreeMap::new();
    for (name, value) in &fields {
        // Masked values are not highlighted: the match was not on them.
        let personal_field = matches!(name.as_str(), "email" | "name" | "customer_name");
        if personal_field && !scope.pii {
            continue;
        }
        if let Some(s) = value.as_str()
            && let Some(h) = highlight(s, terms)
        {
            highlights.insert(name.clone(), h);
        }
    }
    Some(Hit { doc_type, id, score, fields, highlights })
}

/// Run a checked request: the results, and what search analytics logs.
pub async fn execute(state: &SearchState, caller: &Caller, request: &Request) -> Result<SearchResults> {
    let opened = state.searchers.current().await?;
    let started = Instant::now();
    let (found, hits) = run_on(&opened, &scope_of(&caller.principal), request)?;
    let took = started.elapsed();
    let next = request.offset + hits.len();
    let next_cursor = (next < found.total && next + request.limit <= MAX_DEPTH && !hits.is_empty()).then(|| cursor_at(next));
    let facets = (!request.facets.is_empty()).then(|| {
        found.facets.iter().map(|(k, v)| (k.clone(), v.iter().map(|(value, count)| FacetValue { value: value.clone(), count: *count }).collect())).collect()
    });
    let query_id = stats::record_search(&state.platform.store, &caller.principal.user_id, request, &hits, found.total, took).await?;
    Ok(SearchResults { query_id, total: found.total, hits, next_cursor, facets, index_version: opened.version, took_ms: took.as_secs_f64() * 1e3 })
}

/// Run `request` on one opened index version as `scope` may see it: what
/// matched, and this page's hits with their shown fields and highlights.
pub fn run_on(opened: &crate::index::Opened, scope: &Scope, request: &Request) -> Result<(query::Found, Vec<Hit>)> {
    let searcher = opened.reader.searcher();
    let found = query::run(&searcher, &opened.fields, scope, request)?;
    // Every term the query matched, in any field: what a hit's shown text highlights.
    let terms: std::collections::BTreeSet<String> = found.matched.values().flatten().cloned().collect();
    let mut hits = Vec::with_capacity(found.hits.len());
    for (score, address) in &found.hits {
        let doc: TantivyDocument = searcher.doc(*address).map_err(crate::index::tantivy_error)?;
        hits.extend(hit_of(&doc, &opened.fields, *score, scope, &terms));
    }
    Ok((found, hits))
}

#[utoipa::path(post, path = "/api/v1/search", tag = "search", request_body = SearchRequest,
    responses((status = 200, description = "Ranked hits across types", body = SearchResults)))]
pub async fn search(State(state): State<SearchState>, caller: Caller, ValidJson(body): ValidJson<SearchRequest>) -> Result<Json<SearchResults>> {
    let advanced =
        AdvancedRequest { query: Some(body.query), types: body.types, filters: None, facets: None, sort: None, limit: body.limit, cursor: body.cursor };
    let request = request_of(&advanced, &scope_of(&caller.principal))?;
    if request.query.trim().is_empty() {
        return Err(Error::field("query", "must not be empty (the advanced search lists without one)"));
    }
    Ok(Json(execute(&state, &caller, &request).await?))
}

#[utoipa::path(post, path = "/api/v1/search/advanced", tag = "search", request_body = AdvancedRequest,
    responses((status = 200, description = "Hits with facets", body = SearchResults)))]
pub async fn advanced(State(state): State<SearchState>, caller: Caller, ValidJson(body): ValidJson<AdvancedRequest>) -> Result<Json<SearchResults>> {
    let request = request_of(&body, &scope_of(&caller.principal))?;
    Ok(Json(execute(&state, &caller, &request).await?))
}
