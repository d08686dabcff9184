//! From a request to ranked hits (docs/search.md, "Query language" and
//! "Typo rules").
//!
//! A query is split into words with the index's own analyser. Every word
//! must match (in any searched field); each matches as itself, within its
//! typo budget, and the last one also as a prefix (as the user is still
//! typing it). The typo budget follows Meilisearch: no typo under 5 letters,
//! 1 from 5, 2 from 9, and a typo on the first letter costs 2. The words'
//! variants are expanded against the index's term dictionaries here (not
//! left to tantivy's fuzzy query), so the terms that matched are known and
//! are highlighted too. Scores add field weights (title, name and email
//! over the rest), a boost for the words as a phrase, and a larger one for
//! the whole query equal to a title, name, email or id.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use levenshtein_automata::{DFA, Distance, LevenshteinAutomatonBuilder};
use serde_json::Value;
use shared::platform::error::{Error, FieldError, Result};
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::{AggContextParams, AggregationCollector, AggregationLimitsGuard};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery, TermSetQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TokenStream;
use tantivy::{DocAddress, Order, Searcher, Term};

use crate::schema::{self, AMOUNT_FIELD, DATE_FIELDS, DocType, Fields};

/// Longest query accepted (characters) and most words used.
pub const MAX_QUERY_CHARS: usize = 256;
pub const MAX_WORDS: usize = 10;
/// Variants of one word kept per field (the most frequent first).
const MAX_EXPANSIONS: usize = 50;

/// What the caller may search: the document types, and whether personal
/// fields are searched and shown.
#[derive(Debug, Clone)]
pub struct Scope {
    pub caller: String,
    /// Types the caller reads in full.
    pub full: BTreeSet<DocType>,
    /// Without `charts:read`: one's own charts and approved ones.
    pub own_and_public_charts: bool,
    pub pii: bool,
}

impl Scope {
    pub fn may_search(&self, t: DocType) -> bool {
        self.full.contains(&t) || (t == DocType::Charts && self.own_and_public_charts)
    }

    /// The clause every search carries: the types asked for, each limited
    /// to what the caller may see.
    pub fn visibility(&self, types: &[DocType], f: &Fields) -> Box<dyn Query> {
        let type_term = |t: DocType| -> Box<dyn Query> { Box::new(TermQuery::new(Term::from_field_text(f.doc_type, t.as_str()), IndexRecordOption::Basic)) };
        let mut any = Vec::new();
        for &t in types {
            if self.full.contains(&t) {
                any.push((Occur::Should, type_term(t)));
            } else if t == DocType::Charts && self.own_and_public_charts {
                let seen: Vec<(Occur, Box<dyn Query>)> = vec![
                    (Occur::Should, Box::new(TermQuery::new(Term::from_field_text(f.owner, &self.caller), IndexRecordOption::Basic))),
                    (Occur::Should, Box::new(TermQuery::new(Term::from_field_text(keyword(f, "moderation_status"), "approved"), IndexRecordOption::Basic))),
                ];
                any.push((Occur::Should, Box::new(BooleanQuery::new(vec![(Occur::Must, type_term(t)), (Occur::Must, Box::new(BooleanQuery::new(seen)))]))));
            }
        }
        Box::new(BooleanQuery::new(any))
    }
}

fn keyword(f: &Fields, name: &str) -> Field {
    f.keyword(name).expect("a keyword field of the schema")
}

/// A filter on one field.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// A keyword equal to one of these values.
    Keywords(String, Vec<String>),
    /// A date within `[gte, lte]` (either end open).
    Dates(String, Option<chrono::DateTime<chrono::Utc>>, Option<chrono::DateTime<chrono::Utc>>),
    /// An amount within `[gte, lte]`.
    Amounts(Option<i64>, Option<i64>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub field: String,
    pub descending: bool,
}

/// A search, checked.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub query: String,
    pub types: Vec<DocType>,
    pub filters: Vec<Filter>,
    pub facets: Vec<String>,
    pub sort: Option<SortKey>,
    pub limit: usize,
    pub offset: usize,
}

fn date_of(field: &str, value: &Value) -> std::result::Result<chrono::DateTime<chrono::Utc>, FieldError> {
    let text = value.as_str().ok_or_else(|| FieldError::new(field, "must be a date (2026-01-31) or an RFC 3339 time"))?;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        .map_err(|_| FieldError::new(field, "must be a date (2026-01-31) or an RFC 3339 time"))
}

/// Parse the `filters` object: `{field: value | [values] | {gte, lte}}`.
pub fn parse_filters(filters: &serde_json::Map<String, Value>) -> std::result::Result<Vec<Filter>, Vec<FieldError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (name, value) in filters {
        let path = format!("filters.{name}");
        let canonical = schema::Fields::canonical(name);
        if schema::KEYWORDS.contains(&canonical) {
            let values: Option<Vec<String>> = match value {
                Value::String(s) => Some(vec![s.clone()]),
                Value::Array(a) if !a.is_empty() && a.len() <= 50 => a.iter().map(|v| v.as_str().map(str::to_string)).collect(),
                _ => None,
            };
            match values {
                Some(v) => out.push(Filter::Keywords(canonical.to_string(), v)),
                None => errors.push(FieldError::new(&path, "must be a value or a list of 1 to 50 values")),
            }
        } else if DATE_FIELDS.contains(&canonical) || canonical == AMOUNT_FIELD {
            let Some(range) = value.as_object().filter(|o| !o.is_empty() && o.keys().all(|k| k == "gte" || k == "lte")) else {
                errors.push(FieldError::new(&path, "must be a range {\"gte\": ..., \"lte\": ...}"));
                continue;
            };
            if canonical == AMOUNT_FIELD {
                let bound = |k: &str| -> std::result::Result<Option<i64>, FieldError> {
                    range.get(k).map(|v| v.as_i64().ok_or_else(|| FieldError::new(format!("{path}.{k}"), "must be an integer (cents)"))).transpose()
                };
                match (bound("gte"), bound("lte")) {
                    (Ok(a), Ok(b)) => out.push(Filter::Amounts(a, b)),
                    (a, b) => errors.extend(a.err().into_iter().chain(b.err())),
                }
            } else {
                let bound = |k: &str| range.get(k).map(|v| date_of(&format!("{path}.{k}"), v)).transpose();
                match (bound("gte"), bound("lte")) {
                    (Ok(a), Ok(b)) => out.push(Filter::Dates(canonical.to_string(), a, b)),
                    (a, b) => errors.extend(a.err().into_iter().chain(b.err())),
                }
            }
        } else {
            errors
                .push(FieldError::new(&path, format!("unknown filter; filters are {}, created_at, updated_at and amount_cents", schema::KEYWORDS.join(", "))));
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// The words of a query as the index analysed its text, and whether the
/// last one is still being typed (no space after it).
pub fn words(query: &str) -> (Vec<String>, bool) {
    let mut analyzer = schema::analyzer();
    let mut stream = analyzer.token_stream(query);
    let mut out = Vec::new();
    while stream.advance() {
        if out.len() < MAX_WORDS {
            out.push(stream.token().text.clone());
        }
    }
    let typing = query.chars().last().is_some_and(char::is_alphanumeric);
    (out, typing)
}

/// The typo budget of a word (Meilisearch's defaults).
pub fn typo_budget(word: &str) -> u8 {
    match word.chars().count() {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// The cost of `candidate` as a typo of `word`: its edit distance, plus one
/// when the first letter differs. `None` beyond the budget.
pub fn typo_cost(word: &str, candidate: &str, distance: u8) -> Option<u8> {
    let first_differs = word.chars().next() != candidate.chars().next();
    let cost = distance + u8::from(first_differs);
    (cost <= typo_budget(word)).then_some(cost)
}

struct DfaAutomaton<'a>(&'a DFA);

impl tantivy_fst::Automaton for DfaAutomaton<'_> {
    type State = u32;
    fn start(&self) -> u32 {
        self.0.initial_state()
    }
    fn is_match(&self, state: &u32) -> bool {
        matches!(self.0.distance(*state), Distance::Exact(_))
    }
    fn can_match(&self, state: &u32) -> bool {
        *state != levenshtein_automata::SINK_STATE
    }
    fn accept(&self, state: &u32, byte: u8) -> u32 {
        self.0.transition(*state, byte)
    }
}

/// A variant of a query word found in one field's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub term: String,
    /// 0 for the word itself; the typo cost; for a prefix completion, 0.
    pub cost: u8,
    pub prefix: bool,
    pub doc_freq: u64,
}

/// The Levenshtein automaton builders (distance 1 and 2, a swap of
/// neighbours counting 1): costly to make, so made once per process.
fn builder(distance: u8) -> &'static LevenshteinAutomatonBuilder {
    static ONE: std::sync::OnceLock<LevenshteinAutomatonBuilder> = std::sync::OnceLock::new();
    static TWO: std::sync::OnceLock<LevenshteinAutomatonBuilder> = std::sync::OnceLock::new();
    let cell = if distance <= 1 { &ONE } else { &TWO };
    cell.get_or_init(|| LevenshteinAutomatonBuilder::new(distance.clamp(1, 2), true))
}

/// The automaton of a word's typos within its budget (none under 5 letters).
pub fn typo_automaton(word: &str) -> Option<DFA> {
    let budget = typo_budget(word);
    (budget > 0).then(|| builder(budget).build_dfa(word))
}

/// The variants of `word` in `field` across the searcher's segments: itself,
/// its typos when `dfa` is given (`typo_automaton`), its completions when
/// `prefix`.
pub fn expand(searcher: &Searcher, field: Field, word: &str, dfa: Option<&DFA>, prefix: bool) -> Result<Vec<Variant>> {
    let mut found: HashMap<String, Variant> = HashMap::new();
    let internal = |e: std::io::Error| Error::internal(format!("search terms: {e}"));
    for segment in searcher.segment_readers() {
        let inverted = segment.inverted_index(field).map_err(crate::index::tantivy_error)?;
        let terms = inverted.terms();
        let mut note = |term: &str, cost: u8, prefix: bool, doc_freq: u64| {
            let entry = found.entry(term.to_string()).or_insert(Variant { term: term.to_string(), cost, prefix, doc_freq: 0 });
            entry.doc_freq += doc_freq;
            if cost < entry.cost || (!prefix && entry.prefix) {
                entry.cost = cost;
                entry.prefix = prefix;
            }
        };
        if let Some(info) = terms.get(word.as_bytes()).map_err(internal)? {
            note(word, 0, false, info.doc_freq as u64);
        }
        if let Some(dfa) = dfa {
            let mut stream = terms.search(DfaAutomaton(dfa)).into_stream().map_err(internal)?;
            while let Some((key, info)) = stream.next() {
                let Ok(term) = std::str::from_utf8(key) else { continue };
                if term == word {
                    continue;
                }
                if let Distance::Exact(d) = dfa.eval(term)
                    && let Some(cost) = typo_cost(word, term, d)
                {
                    note(term, cost, false, info.doc_freq as u64);
                }
            }
        }
        if prefix {
            let mut upper = word.as_bytes().to_vec();
            upper.push(0xff);
            let mut stream = terms.range().ge(word.as_bytes()).lt(&upper).into_stream().map_err(internal)?;
            let mut seen = 0;
            while let Some((key, info)) = stream.next() {
                if seen >= 10 * MAX_EXPANSIONS {
                    break;
                }
                seen += 1;
                if let Ok(term) = std::str::from_utf8(key)
                    && term != word
                {
                    note(term, 0, true, info.doc_freq as u64);
                }
            }
        }
    }
    let mut variants: Vec<Variant> = found.into_values().collect();
    // The word itself, then fewer typos, then the most frequent.
    variants.sort_by_key(|v| (v.cost, v.prefix, std::cmp::Reverse(v.doc_freq)));
    variants.truncate(MAX_EXPANSIONS);
    Ok(variants)
}

/// A variant's share of a field's weight.
fn variant_boost(v: &Variant, word: &str) -> f32 {
    match (v.cost, v.prefix) {
        (0, false) => 1.0,
        // A completion: closer to the word typed, closer to 1.
        (_, true) => 0.9 * (word.len() as f32 / v.term.len().max(1) as f32).max(0.3),
        (1, _) => 0.45,
        _ => 0.25,
    }
}

/// The text fields searched and their weights.
fn weighted_fields(f: &Fields, scope: &Scope) -> Vec<(Field, f32, bool)> {
    // (field, weight, typos allowed)
    let mut out = vec![(f.title, 3.0, true), (f.body, 1.0, true), (f.ids, 1.0, false)];
    if scope.pii {
        out.push((f.name, 3.0, true));
        out.push((f.email, 2.5, true));
    }
    out
}

/// The built query and, per field, the terms it matches (to highlight).
pub struct Plan {
    pub query: Box<dyn Query>,
    pub matched: BTreeMap<String, BTreeSet<String>>,
}

fn field_name(f: &Fields, field: Field) -> &'static str {
    if field == f.title {
        "title"
    } else if field == f.name {
        "name"
    } else if field == f.email {
        "email"
    } else if field == f.ids {
        "ids"
    } else {
        "body"
    }
}

/// What one query word matches: itself, its typos and (while typed) its
/// completions in every field the caller searches, weighted; the terms it
/// matched noted in `matched` (per field) for highlighting.
pub fn word_clause(
    searcher: &Searcher,
    f: &Fields,
    scope: &Scope,
    word: &str,
    typing: bool,
    matched: &mut BTreeMap<String, BTreeSet<String>>,
) -> Result<Box<dyn Query>> {
    let dfa = typo_automaton(word);
    let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for (field, weight, typos) in weighted_fields(f, scope) {
        let dfa = if typos { dfa.as_ref() } else { None };
        for v in expand(searcher, field, word, dfa, typing)? {
            matched.entry(field_name(f, field).to_string()).or_default().insert(v.term.clone());
            let q = TermQuery::new(Term::from_field_text(field, &v.term), IndexRecordOption::WithFreqs);
            any.push((Occur::Should, Box::new(BoostQuery::new(Box::new(q), weight * variant_boost(&v, word)))));
        }
    }
    if any.is_empty() {
        // A word found nowhere: nothing can match every word.
        any.push((Occur::Should, Box::new(tantivy::query::EmptyQuery)));
    }
    Ok(Box::new(BooleanQuery::new(any)))
}

/// The text fields the caller's words are matched against (not ids).
pub fn text_fields(f: &Fields, scope: &Scope) -> Vec<Field> {
    weighted_fields(f, scope).into_iter().filter(|(field, ..)| *field != f.ids).map(|(field, ..)| field).collect()
}

pub fn plan(searcher: &Searcher, f: &Fields, scope: &Scope, request: &Request) -> Result<Plan> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, scope.visibility(&request.types, f))];
    let mut matched: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let (words, typing) = words(&request.query);
    for (i, word) in words.iter().enumerate() {
        let last = i + 1 == words.len();
        clauses.push((Occur::Must, word_clause(searcher, f, scope, word, last && typing, &mut matched)?));
    }
    let whole = request.query.trim().to_lowercase();
    if !whole.is_empty() {
        let mut exact = vec![(f.title_exact, 10.0), (f.id, 10.0)];
        if scope.pii {
            exact.extend([(f.name_exact, 10.0), (f.email_exact, 10.0)]);
        }
        for (field, boost) in exact {
            let q = TermQuery::new(Term::from_field_text(field, &whole), IndexRecordOption::Basic);
            clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(q), boost))));
        }
        if words.len() > 1 {
            let mut phrase_fields = vec![f.title];
            if scope.pii {
                phrase_fields.push(f.name);
            }
            for field in phrase_fields {
                let terms = words.iter().map(|w| Term::from_field_text(field, w)).collect();
                clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(PhraseQuery::new(terms)), 4.0))));
            }
        }
    }
    for filter in &request.filters {
        clauses.push((Occur::Must, filter_query(f, filter)));
    }
    if words.is_empty() {
        clauses.push((Occur::Must, Box::new(AllQuery)));
    }
    Ok(Plan { query: Box::new(BooleanQuery::new(clauses)), matched })
}

fn filter_query(f: &Fields, filter: &Filter) -> Box<dyn Query> {
    match filter {
        Filter::Keywords(name, values) => {
            let field = keyword(f, name);
            Box::new(TermSetQuery::new(values.iter().map(|v| Term::from_field_text(field, v))))
        }
        Filter::Dates(name, gte, lte) => {
            let field = if name == "updated_at" { f.updated } else { f.created };
            let term = |t: &chrono::DateTime<chrono::Utc>| Term::from_field_date(field, tantivy::DateTime::from_timestamp_secs(t.timestamp()));
            let lower = gte.as_ref().map_or(Bound::Unbounded, |t| Bound::Included(term(t)));
            let upper = lte.as_ref().map_or(Bound::Unbounded, |t| Bound::Included(term(t)));
            Box::new(RangeQuery::new(lower, upper))
        }
        Filter::Amounts(gte, lte) => {
            let lower = gte.map_or(Bound::Unbounded, |v| Bound::Included(Term::from_field_i64(f.amount, v)));
            let upper = lte.map_or(Bound::Unbounded, |v| Bound::Included(Term::from_field_i64(f.amount, v)));
            Box::new(RangeQuery::new(lower, upper))
        }
    }
}

/// What a search found.
pub struct Found {
    pub total: usize,
    pub hits: Vec<(f32, DocAddress)>,
    pub facets: BTreeMap<String, Vec<(String, u64)>>,
    pub matched: BTreeMap<String, BTreeSet<String>>,
}

/// Run `request` on `searcher`.
pub fn run(searcher: &Searcher, f: &Fields, scope: &Scope, request: &Request) -> Result<Found> {
    let Plan { query, matched } = plan(searcher, f, scope, request)?;
    let top = TopDocs::with_limit(request.limit.max(1)).and_offset(request.offset);
    let tantivy_err = crate::index::tantivy_error;
    let (hits, total): (Vec<(f32, DocAddress)>, usize) = match &request.sort {
        None => searcher.search(&query, &(top.order_by_score(), Count)).map_err(tantivy_err)?,
        Some(key) => {
            let order = if key.descending { Order::Desc } else { Order::Asc };
            // Sorted hits carry no relevance score: 0.
            fn strip<K>(v: Vec<(K, DocAddress)>) -> Vec<(f32, DocAddress)> {
                v.into_iter().map(|(_, d)| (0.0, d)).collect()
            }
            if key.field == AMOUNT_FIELD {
                let (v, n) = searcher.search(&query, &(top.order_by_fast_field::<i64>(AMOUNT_FIELD, order), Count)).map_err(tantivy_err)?;
                (strip(v), n)
            } else if DATE_FIELDS.contains(&key.field.as_str()) {
                let (v, n) = searcher.search(&query, &(top.order_by_fast_field::<tantivy::DateTime>(&key.field, order), Count)).map_err(tantivy_err)?;
                (strip(v), n)
            } else {
                let (v, n) = searcher.search(&query, &(top.order_by_string_fast_field(&key.field, order), Count)).map_err(tantivy_err)?;
                (strip(v), n)
            }
        }
    };
    let facets = if request.facets.is_empty() { BTreeMap::new() } else { facets(searcher, &query, &request.facets)? };
    Ok(Found { total, hits, facets, matched })
}

/// Value counts of `names` (keyword fields) over every match.
fn facets(searcher: &Searcher, query: &dyn Query, names: &[String]) -> Result<BTreeMap<String, Vec<(String, u64)>>> {
    let mut request = serde_json::Map::new();
    for name in names {
        request.insert(name.clone(), serde_json::json!({"terms": {"field": name, "size": 50}}));
    }
    let aggs: Aggregations = serde_json::from_value(Value::Object(request)).map_err(|e| Error::internal(format!("facets: {e}")))?;
    let collector = AggregationCollector::from_aggs(aggs, AggContextParams::new(AggregationLimitsGuard::default(), Default::default()));
    let result = searcher.search(query, &collector).map_err(crate::index::tantivy_error)?;
    let json = serde_json::to_value(result).map_err(|e| Error::internal(format!("facets: {e}")))?;
    let mut out = BTreeMap::new();
    for name in names {
        let buckets = json[name]["buckets"].as_array().cloned().unwrap_or_default();
        let values = buckets.iter().filter_map(|b| Some((b["key"].as_str()?.to_string(), b["doc_count"].as_u64()?))).collect();
        out.insert(name.clone(), values);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_budgets_follow_word_length_and_the_first_letter_counts_double() {
        assert_eq!(typo_budget("chart"), 1);
        assert_eq!(typo_budget("user"), 0);
        assert_eq!(typo_budget("revenueee"), 2);
        assert_eq!(typo_cost("revenue", "revenu", 1), Some(1));
        // A first-letter typo costs 2: over the budget of a 7-letter word...
        assert_eq!(typo_cost("revenue", "bevenue", 1), None);
        // ...within the budget of a 9-letter one.
        assert_eq!(typo_cost("marketing", "parketing", 1), Some(2));
        assert_eq!(typo_cost("marketing", "parketin", 2), None);
    }

    #[test]
    fn words_are_analysed_like_the_index() {
        assert_eq!(words("Zoë  Revenue-2026"), (vec!["zoe".to_string(), "revenue".into(), "2026".into()], true));
        assert!(!words("ada ").1);
    }

    #[test]
    fn filters_name_the_bad_field() {
        let bad = serde_json::json!({"colour": "red", "created_at": {"gte": "yesterday"}, "amount_cents": {"gte": 100, "lte": "x"}});
        let errors = parse_filters(bad.as_object().unwrap()).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"filters.colour"));
        assert!(fields.contains(&"filters.created_at.gte"));
        assert!(fields.contains(&"filters.amount_cents.lte"));
        let good = serde_json::json!({"role": ["admin", "user"], "created": {"gte": "2026-01-01"}, "amount": {"lte": 500}});
        assert_eq!(parse_filters(good.as_object().unwrap()).unwrap().len(), 3);
    }
}

#[cfg(test)]
mod engine_tests {
    use std::collections::BTreeSet;

    use serde_json::json;
    use tantivy::schema::Value as _;
    use tantivy::{Index, IndexWriter, TantivyDocument};

    use super::*;
    use crate::documents::document_of;

    fn index(items: &[Value]) -> (Index, Fields) {
        let (schema, _) = schema::build();
        let index = Index::create_in_ram(schema);
        schema::register(&index);
        let fields = schema::fields_of(&index.schema()).unwrap();
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for item in items {
            writer.add_document(document_of(item).unwrap().to_tantivy(&fields)).unwrap();
        }
        writer.commit().unwrap();
        (index, fields)
    }

    fn admin() -> Scope {
        Scope { caller: "admin".into(), full: DocType::ALL.into_iter().collect(), own_and_public_charts: true, pii: true }
    }

    fn ids(index: &Index, f: &Fields, scope: &Scope, query: &str) -> Vec<String> {
        let searcher = index.reader().unwrap().searcher();
        let request = Request { query: query.into(), types: DocType::ALL.to_vec(), limit: 10, ..Default::default() };
        let found = run(&searcher, f, scope, &request).unwrap();
        found
            .hits
            .iter()
            .map(|(_, a)| {
                let d: TantivyDocument = searcher.doc(*a).unwrap();
                let stored: Value = serde_json::from_str(d.get_first(f.stored).unwrap().as_str().unwrap()).unwrap();
                stored["id"].as_str().unwrap().to_string()
            })
            .collect()
    }

    fn corpus() -> Vec<Value> {
        vec![
            json!({"type": "chart", "id": "c1", "owner_id": "u1", "title": "Quarterly revenue forecast", "kind": "line", "moderation_status": "approved"}),
            json!({"type": "chart", "id": "c2", "owner_id": "u2", "title": "Revenue by country", "kind": "bar", "moderation_status": "pending"}),
            json!({"type": "chart", "id": "c3", "owner_id": "u2", "title": "Weather patterns", "kind": "area", "moderation_status": "approved"}),
            json!({"type": "user", "id": "u1", "email": "margaret.hamilton@example.com", "name": "Margaret Hamilton", "status": "active", "roles": ["user"], "country": "US"}),
            json!({"type": "user", "id": "u2", "email": "ada.lovelace@example.com", "name": "Ada Lovelace", "status": "suspended", "roles": ["admin"], "country": "GB"}),
        ]
    }

    #[test]
    fn exact_typo_prefix_and_permissions() {
        let (index, f) = index(&corpus());
        let admin = admin();
        assert_eq!(ids(&index, &f, &admin, "Weather patterns")[0], "c3");
        // One swap inside a 7-letter word; a typo on its first letter is too dear.
        assert!(ids(&index, &f, &admin, "weahter ").contains(&"c3".to_string()));
        assert!(ids(&index, &f, &admin, "veather ").is_empty());
        // The last word as a prefix.
        assert_eq!(ids(&index, &f, &admin, "quart"), vec!["c1"]);
        // Two words, both needed.
        assert_eq!(ids(&index, &f, &admin, "revenue country "), vec!["c2"]);
        // Personal fields need pii:read.
        assert_eq!(ids(&index, &f, &admin, "lovelace "), vec!["u2"]);
        let no_pii = Scope { pii: false, ..admin.clone() };
        assert!(ids(&index, &f, &no_pii, "lovelace ").is_empty());
        // A plain user: their own charts and approved ones, no users.
        let plain = Scope { caller: "u1".into(), full: BTreeSet::new(), own_and_public_charts: true, pii: false };
        let mut seen = ids(&index, &f, &plain, "revenue ");
        seen.sort();
        assert_eq!(seen, vec!["c1"], "c2 is someone else's pending chart");
        assert!(ids(&index, &f, &plain, "ada ").is_empty());
    }

    #[test]
    fn fuzzy_matches_are_known_for_highlighting() {
        let (index, f) = index(&corpus());
        let searcher = index.reader().unwrap().searcher();
        let request = Request { query: "hamliton ".into(), types: DocType::ALL.to_vec(), limit: 10, ..Default::default() };
        let found = run(&searcher, &f, &admin(), &request).unwrap();
        assert_eq!(found.total, 1);
        let terms: BTreeSet<String> = found.matched.values().flatten().cloned().collect();
        assert!(terms.contains("hamilton"), "{terms:?}");
        assert_eq!(crate::highlight::highlight("Margaret Hamilton", &terms).as_deref(), Some("Margaret <em>Hamilton</em>"));
    }

    #[test]
    fn filters_facets_and_sorts() {
        let (index, f) = index(&corpus());
        let searcher = index.reader().unwrap().searcher();
        let filters = parse_filters(json!({"moderation": ["approved"]}).as_object().unwrap()).unwrap();
        let request = Request {
            query: String::new(),
            types: vec![DocType::Charts],
            filters,
            facets: vec!["kind".into()],
            sort: Some(SortKey { field: "kind".into(), descending: false }),
            limit: 10,
            offset: 0,
        };
        let found = run(&searcher, &f, &admin(), &request).unwrap();
        assert_eq!(found.total, 2);
        assert_eq!(found.facets["kind"], vec![("area".to_string(), 1), ("line".to_string(), 1)]);
    }
}
