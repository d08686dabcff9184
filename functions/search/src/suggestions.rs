//! `GET /api/v1/search/suggestions?q=&types=`: completions of the last
//! word and whole past queries, both starting with what was typed.
//!
//! Completions come from the records the caller may see: the index terms
//! starting with the last word, in the fields the caller searches (personal
//! ones only with `pii:read`), each kept only if a record the caller may
//! see holds it with the earlier words, and ranked by how many do. So a
//! completion never reveals a word of a record, or of a personal field, the
//! caller could not read. Past queries
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
use tantivy::Term;
use tantivy::collector::Count;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use utoipa::{IntoParams, ToSchema};

use crate::SearchState;
use crate::query;
use crate::schema::{self, DocType};
use crate::search::{scope_of, types_of};
use crate::stats::{self, POPULAR_PK};

/// Suggestions returned.
pub const MAX_SUGGESTIONS: usize = 10;
/// Completion candidates checked against what the caller may see.
const CANDIDATES_CHECKED: usize = MAX_SUGGESTIONS;

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
///
/// Candidates are the terms starting with the last word in the fields the
/// caller searches (the most frequent first). When something narrows what
/// the caller sees (a type they read only in part, or not asked for, or
/// earlier words), each is kept only if a record the caller may see holds
/// it together with the earlier words, and ranked by how many do;
/// otherwise the dictionaries' counts rank them.
pub fn complete(searcher: &tantivy::Searcher, fields: &schema::Fields, scope: &query::Scope, text: &str, types: &[DocType]) -> Result<Vec<Suggestion>> {
    let (words, _) = query::words(text);
    let Some((last, earlier)) = words.split_last() else { return Ok(Vec::new()) };
    let searched = query::text_fields(fields, scope);
    let mut candidates: HashMap<String, u64> = HashMap::new();
    for &field in &searched {
        for v in query::expand(searcher, field, last, None, true)? {
            if v.prefix {
                *candidates.entry(v.term).or_default() += v.doc_freq;
            }
        }
    }
    let mut candidates: Vec<(String, u64)> = candidates.into_iter().collect();
    candidates.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    candidates.truncate(MAX_SUGGESTIONS);
    let head = text.trim_end().rsplit_once(char::is_whitespace).map(|(h, _)| format!("{} ", h.trim_end())).unwrap_or_default();
    let mut out = Vec::new();
    // Nothing narrows what the caller sees (every type, each in full) and
    // no earlier word: the dictionaries' counts are the answer.
    let unrestricted = earlier.is_empty() && DocType::ALL.iter().all(|t| types.contains(t) && scope.full.contains(t));
    if unrestricted {
        for (term, count) in candidates {
            out.push(Suggestion { text: format!("{head}{term}"), kind: "completion".into(), count });
        }
        return Ok(out);
    }
    let mut base: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, scope.visibility(types, fields))];
    let mut unused = BTreeMap::new();
    for word in earlier {
        base.push((Occur::Must, query::word_clause(searcher, fields, scope, word, false, &mut unused)?));
    }
    for (term, _) in candidates.into_iter().take(CANDIDATES_CHECKED) {
        let any: Vec<(Occur, Box<dyn Query>)> = searched
            .iter()
            .map(|&field| (Occur::Should, Box::new(TermQuery::new(Term::from_field_text(field, &term), IndexRecordOption::Basic)) as Box<dyn Query>))
            .collect();
        // The candidate first: the smallest posting lists lead the intersection.
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, Box::new(BooleanQuery::new(any)))];
        clauses.extend(base.iter().map(|(o, q)| (*o, q.box_clone())));
        let count = searcher.search(&BooleanQuery::new(clauses), &Count).map_err(crate::index::tantivy_error)?;
        if count > 0 {
            out.push(Suggestion { text: format!("{head}{term}"), kind: "completion".into(), count: count as u64 });
        }
    }
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.text.len().cmp(&b.text.len())).then_with(|| a.text.cmp(&b.text)));
    Ok(out)
}

#[utoipa::path(get, path = "/api/v1/search/suggestions", tag = "search", params(SuggestionsQuery),
    responses((status = 200, description = "Completions and past queries", body = Suggestions)))]
pub async fn suggestions(State(state): State<SearchState>, caller: Caller, ValidQuery(q): ValidQuery<SuggestionsQuery>) -> Result<Json<Suggestions>> {
    let text = q.q.trim_start();
    if text.is_empty() || text.chars().count() > query::MAX_QUERY_CHARS {
        return Err(Error::field("q", format!("1 to {} characters", query::MAX_QUERY_CHARS)));
    }
    let scope = scope_of(&caller.principal);
    // The search's own check of the types (unknown: 400; unreadable: 403).
    let requested: Option<Vec<String>> = q.types.as_deref().map(|l| l.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).collect());
    let types = types_of(requested.as_deref(), &scope).map_err(|e| match e {
        Error::Validation(_) => Error::field("types", "comma-separated users, charts, orders, audit"),
        other => other,
    })?;
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
