//! The judged relevance set (`relevance.json`, over the demo data): every
//! query's top 5 against the records its rule calls relevant, as an
//! administrator (every type, personal fields) searches. Reports recall@5
//! and MRR per kind of query (exact, typo, prefix, multi-word); the goal
//! for typo queries is recall@5 >= 0.95.
//!
//! recall@5 of a query = relevant records in its top 5 ÷ min(5, relevant
//! records); MRR = the mean of 1 / the rank of the first relevant hit (0
//! when none is in the top 10).

use std::collections::{BTreeMap, BTreeSet};

use chrono::Datelike;
use search::documents::{SearchDoc, document_of};
use search::query::{Request, Scope, run};
use search::schema::DocType;
use serde_json::Value;
use tantivy::TantivyDocument;
use tantivy::schema::Value as _;

fn field_of<'a>(doc: &'a SearchDoc, field: &str) -> &'a str {
    match field {
        "name" => doc.name.as_deref().unwrap_or(""),
        _ => &doc.title,
    }
}

fn relevant(rule: &Value, doc: &SearchDoc, year: i32) -> bool {
    let fill = |s: &str| s.replace("{year-1}", &(year - 1).to_string()).replace("{year}", &year.to_string()).to_lowercase();
    if doc.doc_type.as_str() != rule["type"].as_str().unwrap() {
        return false;
    }
    let value = field_of(doc, rule["field"].as_str().unwrap()).to_lowercase();
    if let Some(v) = rule["equals"].as_str() {
        value == fill(v)
    } else if let Some(v) = rule["starts_with"].as_str() {
        value.starts_with(&fill(v))
    } else {
        let p = fill(rule["word_prefix"].as_str().unwrap());
        value.split(|c: char| !c.is_alphanumeric()).any(|w| w.starts_with(&p))
    }
}

#[test]
fn recall_at_5_and_mrr_over_the_judged_set() {
    // The demo data at a fixed instant: who signs up when (and so the names
    // drawn) depends on the generation's `now`.
    let now = chrono::DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let (items, _) = keel_local::seed::generate(now, 3000, 2026);
    let docs: Vec<SearchDoc> = items.iter().filter_map(|i| serde_dynamo::from_item::<_, Value>(i.clone()).ok()).filter_map(|v| document_of(&v)).collect();
    let opened = search::index::Opened::in_ram(docs.clone().into_iter()).unwrap();
    let searcher = opened.reader.searcher();
    let judged: Value = serde_json::from_str(include_str!("relevance.json")).unwrap();
    let queries = judged["queries"].as_array().unwrap();
    assert!(queries.len() >= 100, "at least 100 judged queries");
    let admin = Scope { caller: "relevance".into(), full: DocType::ALL.into_iter().collect(), own_and_public_charts: true, pii: true };
    let mut by_kind: BTreeMap<String, (f64, f64, usize)> = BTreeMap::new();
    let mut misses = Vec::new();
    for q in queries {
        let text = q["query"].as_str().unwrap().replace("{year-1}", &(now.year() - 1).to_string()).replace("{year}", &now.year().to_string());
        let wanted: BTreeSet<String> = docs.iter().filter(|d| relevant(&q["relevant"], d, now.year())).map(|d| d.key()).collect();
        assert!(!wanted.is_empty(), "{text}: the demo data holds no relevant record");
        let request = Request { query: text.clone(), types: DocType::ALL.to_vec(), limit: 10, ..Default::default() };
        let found = run(&searcher, &opened.fields, &admin, &request).unwrap();
        let keys: Vec<String> = found
            .hits
            .iter()
            .map(|(_, a)| {
                let d: TantivyDocument = searcher.doc(*a).unwrap();
                let stored: Value = serde_json::from_str(d.get_first(opened.fields.stored).unwrap().as_str().unwrap()).unwrap();
                format!("{}:{}", stored["type"].as_str().unwrap(), stored["id"].as_str().unwrap())
            })
            .collect();
        let in_top5 = keys.iter().take(5).filter(|k| wanted.contains(*k)).count();
        let recall = in_top5 as f64 / wanted.len().min(5) as f64;
        let rr = keys.iter().position(|k| wanted.contains(k)).map_or(0.0, |p| 1.0 / (p + 1) as f64);
        if recall < 1.0 {
            misses.push(format!("{text} ({}): recall@5 {recall:.2}, reciprocal rank {rr:.2}", q["kind"].as_str().unwrap()));
        }
        let e = by_kind.entry(q["kind"].as_str().unwrap().to_string()).or_default();
        e.0 += recall;
        e.1 += rr;
        e.2 += 1;
    }
    let (mut recall_all, mut rr_all, mut n_all) = (0.0, 0.0, 0);
    println!("judged relevance set: {} queries over {} documents", queries.len(), docs.len());
    for (kind, (recall, rr, n)) in &by_kind {
        println!("  {kind:<10} {n:>3} queries  recall@5 {:.3}  MRR {:.3}", recall / *n as f64, rr / *n as f64);
        recall_all += recall;
        rr_all += rr;
        n_all += n;
    }
    println!("  {:<10} {n_all:>3} queries  recall@5 {:.3}  MRR {:.3}", "all", recall_all / n_all as f64, rr_all / n_all as f64);
    for m in &misses {
        println!("  below 1: {m}");
    }
    let (typo_recall, _, typo_n) = by_kind["typo"];
    assert!(typo_recall / typo_n as f64 >= 0.95, "typo recall@5 {:.3} < 0.95", typo_recall / typo_n as f64);
}
