//! `GET /api/v1/search/suggestions?q=&types=`: completions of the last
//! word and whole past queries, both starting with what was typed.
//!
//! Completions come from the records the caller may see: the query runs
//! (its last word as a prefix) with the caller's scope, and the words of
//! the top hits' shown fields that start with the last word are ranked by
//! how many hits hold them. So a completion never reveals a word of a
//! record, or of a personal field, the caller could not read. Past queries
//! are the caller's own, and (with `search:read`, which sees them in the
//! analytics anyway) the team's; only queries that found something.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use shared::http::Caller;
use shared::http::extract::ValidQuery;
use shared::identity::rbac::Permission;
use shared::platform::error::{Error, Result};
use shared::store::{QuerySpec, s};
use tantivy::TantivyDocument;
use tantivy::schema::Value as _;
use tantivy::tokenizer::TokenStream;
use utoipa::{IntoParams, ToSchema};

use crate::SearchState;
use crate::query::{self, Request};
use crate::schema::{self, DocType};
use crate::search::scope_of;
use crate::stats::{self, POPULAR_PK};

/// Suggestions returned.
pub const MAX_SUGGESTIONS: usize = 10;
/// Hits whose words are read for completions.
const HITS_READ: usize = 30;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SuggestionsQuery {
    /// What has been typed so far (1 to 256 characters).
    pub q: String,
    /// Comma-separated types (`users,charts`); default every type the caller may read.
    pub types: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Suggestion {
    /// The whole query to offer.
    pub text: String,
    /// `completion` (of the last word) or `query` (a past search).
    pub kind: String,
    /// Hits holding the word (completions) or times searched (queries).
    pub count: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Suggestions {
    pub suggestions: Vec<Suggestion>,
}

/// Completions of the last word of `q` among the hits.
fn completions(docs: &[TantivyDocument], f: &schema::Fields, pii: bool, prefix: &str) -> Vec<(String, u64)> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut analyzer = schema::analyzer();
    for doc in docs {
        let mut seen = std::collections::HashSet::new();
        let mut texts: Vec<String> = Vec::new();
        let stored = doc.get_first(f.stored).and_then(|v| v.as_str()).and_then(|t| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(t).ok());
        texts.extend(stored.into_iter().flatten().filter(|(k, _)| k != "type").filter_map(|(_, v)| v.as_str().map(str::to_string)));
        if pii {
            let personal =
                doc.get_first(f.personal).and_then(|v| v.as_str()).and_then(|t| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(t).ok());
            texts.extend(personal.into_iter().flatten().filter_map(|(_, v)| v.as_str().map(str::to_string)));
        }
        for text in texts {
            let mut stream = analyzer.token_stream(&text);
            while stream.advance() {
                let word = &stream.token().text;
                if word.starts_with(prefix) && word.len() > prefix.len() && seen.insert(word.clone()) {
                    *counts.entry(word.clone()).or_default() += 1;
                }
            }
        }
    }
    let mut out: Vec<(String, u64)> = counts.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.len().cmp(&b.0.len())).then_with(|| a.0.cmp(&b.0)));
    out
}

/// Past queries under `pk` starting with `prefix`, most searched first.
async fn past(state: &SearchState, pk: String, prefix: &str) -> Result<Vec<(String, u64)>> {
    let spec =
        QuerySpec { key_condition: "pk = :pk AND begins_with(sk, :p)", values: vec![(":pk", s(pk)), (":p", s(prefix))], forward: true, ..Default::default() };
    let (items, _) = state.platform.store.query_page(&spec, None, 200).await?;
    let mut out: Vec<(String, u64)> = items
        .iter()
        .filter_map(|i| {
            let q = shared::store::attr_s(i, "sk")?.to_string();
            let n = i.get("searches").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
            Some((q, n))
        })
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

/// Completions of the last word of `text` among the records `scope` may
/// see (each a whole query: what was typed before it, kept as typed).
pub fn complete(searcher: &tantivy::Searcher, fields: &schema::Fields, scope: &query::Scope, text: &str, types: &[DocType]) -> Result<Vec<Suggestion>> {
    let (words, _) = query::words(text);
    let Some(last) = words.last() else { return Ok(Vec::new()) };
    let request = Request { query: text.to_string(), types: types.to_vec(), limit: HITS_READ, ..Default::default() };
    let found = query::run(searcher, fields, scope, &request)?;
    let mut docs = Vec::with_capacity(found.hits.len());
    for (_, address) in &found.hits {
        docs.push(searcher.doc::<TantivyDocument>(*address).map_err(crate::index::tantivy_error)?);
    }
    let head = text.trim_end().rsplit_once(char::is_whitespace).map(|(h, _)| format!("{} ", h.trim_end())).unwrap_or_default();
    Ok(completions(&docs, fields, scope.pii, last)
        .into_iter()
        .map(|(word, count)| Suggestion { text: format!("{head}{word}"), kind: "completion".into(), count })
        .collect())
}

#[utoipa::path(get, path = "/api/v1/search/suggestions", tag = "search", params(SuggestionsQuery),
    responses((status = 200, description = "Completions and past queries", body = Suggestions)))]
pub async fn suggestions(State(state): State<SearchState>, caller: Caller, ValidQuery(q): ValidQuery<SuggestionsQuery>) -> Result<Json<Suggestions>> {
    let text = q.q.trim_start();
    if text.is_empty() || text.chars().count() > query::MAX_QUERY_CHARS {
        return Err(Error::field("q", format!("1 to {} characters", query::MAX_QUERY_CHARS)));
    }
    let scope = scope_of(&caller.principal);
    let types: Vec<DocType> = match q.types.as_deref() {
        None => DocType::ALL.into_iter().filter(|t| scope.may_search(*t)).collect(),
        Some(list) => {
            let mut out = Vec::new();
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                match DocType::parse(name) {
                    Some(t) if scope.may_search(t) => out.push(t),
                    Some(_) => return Err(Error::Forbidden { missing: "the permission to read that type".into() }),
                    None => return Err(Error::field("types", "comma-separated users, charts, orders, audit")),
                }
            }
            out
        }
    };
    let (words, typing) = query::words(text);
    let normalized = stats::normalize(text);
    let mut suggestions: Vec<Suggestion> = Vec::new();
    // Completions of the last word, when it is still being typed.
    if typing && !words.is_empty() {
        let opened = state.searchers.current().await?;
        suggestions = complete(&opened.reader.searcher(), &opened.fields, &scope, text, &types)?;
    }
    let mut queries: BTreeMap<String, u64> = BTreeMap::new();
    let mut sources = vec![stats::history_pk(&caller.principal.user_id)];
    if caller.principal.can(Permission::SearchRead) {
        sources.push(POPULAR_PK.to_string());
    }
    for pk in sources {
        for (query, count) in past(&state, pk, &normalized).await? {
            let e = queries.entry(query).or_default();
            *e = (*e).max(count);
        }
    }
    let mut past: Vec<(String, u64)> = queries.into_iter().filter(|(q, _)| *q != normalized).collect();
    past.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    // Past queries first (whole questions people asked), then completions.
    let mut out: Vec<Suggestion> = past.into_iter().take(MAX_SUGGESTIONS / 2).map(|(text, count)| Suggestion { text, kind: "query".into(), count }).collect();
    for s in suggestions {
        if out.len() >= MAX_SUGGESTIONS {
            break;
        }
        if !out.iter().any(|o| o.text.eq_ignore_ascii_case(&s.text)) {
            out.push(s);
        }
    }
    Ok(Json(Suggestions { suggestions: out }))
}
