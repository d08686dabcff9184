//! `/api/v1/search*` against the local stack: demo data indexed as `make
//! dev` does, the indexer reading the table's stream on its own, and the
//! search function reading what it publishes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::http::Method;
use keel_local::stream_reader::{Start, StreamReader};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use shared::audit::{Actor, AuditEntry};
use shared::domain::charts::{Chart, ModerationStatus};
use shared::store::Item;

use crate::helpers::TestApp;

/// Seed demo data, index it as the local stack's start does, and keep the
/// index fresh from the stream from then on.
async fn indexed(app: &TestApp, users: usize) -> Vec<Item> {
    let (items, _) = keel_local::seed::generate(chrono::Utc::now(), users, 2026);
    keel_local::seed::put(app.store(), &items).await.unwrap();
    let arn = &app.stack.resources["Table"].attributes["StreamArn"];
    let reader = StreamReader::open(aws_sdk_dynamodbstreams::Client::new(&app.sdk), arn, Start::Latest).await.unwrap();
    let docs: Vec<_> =
        items.iter().filter_map(|i| serde_dynamo::from_item::<_, Value>(i.clone()).ok()).filter_map(|v| search::documents::document_of(&v)).collect();
    search::indexer::rebuild(app.app.search.searchers.remote(), &app.app.search_dir.join("build"), docs.into_iter(), &|_| {}).await.unwrap();
    tokio::spawn(keel_local::stream_reader::run(reader, app.app.indexer.clone()));
    items
}

async fn search(app: &TestApp, token: &str, body: Value) -> Value {
    let r = app.call(Method::POST, "/api/v1/search", Some(token), Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn hit_ids(results: &Value) -> Vec<String> {
    results["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap().to_string()).collect()
}

/// Poll a search until `found` holds of its results, or `within` passes.
async fn eventually(app: &TestApp, token: &str, body: Value, within: Duration, found: impl Fn(&Value) -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if found(&search(app, token, body.clone()).await) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn chart(app: &TestApp, owner: &str, title: &str, status: ModerationStatus) -> Chart {
    let chart = Chart::new(owner, title, "line").with_status(status);
    let audit = AuditEntry::new(&Actor::system("tests"), "chart.create", "chart", &chart.id);
    app.store().commit(vec![shared::store::Write::put(app.store().table(), chart.to_item().unwrap()).unwrap()], &audit).await.unwrap();
    chart
}

#[tokio::test]
async fn ranked_typo_tolerant_search_with_highlights_freshness_and_erasure() {
    let app = TestApp::spawn().await;
    indexed(&app, 150).await;
    let (admin, token) = app.user(&["super_admin"]).await;
    let target = chart(&app, &admin.id, "Photosynthesis efficiency tracker", ModerationStatus::Approved).await;
    let found = |id: String| move |r: &Value| hit_ids(r).contains(&id);
    let fresh = eventually(&app, &token, json!({"query": "photosynthesis"}), Duration::from_secs(5), found(target.id.clone())).await;
    assert!(fresh.is_some(), "a new chart is searchable within 5 s");

    // The exact title: first.
    let r = search(&app, &token, json!({"query": "Photosynthesis efficiency tracker", "types": ["charts"]})).await;
    assert_eq!(hit_ids(&r)[0], target.id, "{r}");
    assert!(r["hits"][0]["score"].as_f64().unwrap() > 0.0);
    // One inner-letter swap in a word of 10 letters: in the top 5, highlighted as written.
    let r = search(&app, &token, json!({"query": "efficeincy tracker"})).await;
    let top5: Vec<String> = hit_ids(&r).into_iter().take(5).collect();
    assert!(top5.contains(&target.id), "{r}");
    let hit = r["hits"].as_array().unwrap().iter().find(|h| h["id"] == target.id.as_str()).unwrap();
    assert_eq!(hit["highlights"]["title"], "Photosynthesis <em>efficiency</em> <em>tracker</em>", "{hit}");
    // A typo on the first letter of a short word is not forgiven.
    let r = search(&app, &token, json!({"query": "wracker ", "types": ["charts"]})).await;
    assert!(!hit_ids(&r).contains(&target.id), "{r}");

    // Suggestions: a 3-letter prefix completes to words starting with it.
    let r = app.get("/api/v1/search/suggestions?q=pho", &token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let suggestions = r.body["suggestions"].as_array().unwrap();
    assert!(!suggestions.is_empty());
    assert!(suggestions.iter().all(|s| s["text"].as_str().unwrap().to_lowercase().starts_with("pho")), "{}", r.body);
    assert!(suggestions.iter().any(|s| s["text"] == "photosynthesis"), "{}", r.body);
    // Whole past queries come back too.
    let r = app.get("/api/v1/search/suggestions?q=efficeincy", &token).await;
    assert!(r.body["suggestions"].as_array().unwrap().iter().any(|s| s["kind"] == "query" && s["text"] == "efficeincy tracker"), "{}", r.body);

    // A new user is searchable within 5 s (through the admin API, the stream and the indexer).
    let r = app
        .call(Method::POST, "/api/v1/admin/users", Some(&token), Some(json!({"email": "quintessa.wrenfield@example.com", "name": "Quintessa Wrenfield", "roles": ["user"], "password": "correct horse battery staple 1"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let new_id = r.body["id"].as_str().unwrap().to_string();
    let took = eventually(&app, &token, json!({"query": "wrenfield"}), Duration::from_secs(5), found(new_id.clone())).await;
    assert!(took.is_some(), "a new user is searchable within 5 s");

    // Erased: gone from results within 60 s.
    let r = app.call(Method::DELETE, &format!("/api/v1/data/user/{new_id}"), Some(&token), None).await;
    assert_eq!(r.status, 202, "{}", r.body);
    app.run_jobs().await;
    let gone = eventually(&app, &token, json!({"query": "Quintessa Wrenfield"}), Duration::from_secs(60), |r| !hit_ids(r).contains(&new_id)).await;
    assert!(gone.is_some(), "an erased person leaves search within 60 s");
    let r = search(&app, &token, json!({"query": "quintessa.wrenfield@example.com"})).await;
    assert!(!hit_ids(&r).contains(&new_id), "{r}");

    // Bad input names its field.
    for (body, field) in [
        (json!({"query": "x", "types": ["planets"]}), "types[0]"),
        (json!({"query": "x", "limit": 0}), "limit"),
        (json!({"query": "x", "cursor": "nope"}), "cursor"),
        (json!({"query": ""}), "query"),
        (json!({"query": "x".repeat(300)}), "query"),
    ] {
        let r = app.call(Method::POST, "/api/v1/search", Some(&token), Some(body)).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.error_fields(), vec![field], "{}", r.body);
    }
}

#[tokio::test]
async fn advanced_search_filters_facets_sorts_and_pages() {
    let app = TestApp::spawn().await;
    let items = indexed(&app, 120).await;
    let (_, token) = app.user(&["super_admin"]).await;
    let charts: Vec<Value> = items.iter().filter_map(|i| serde_dynamo::from_item::<_, Value>(i.clone()).ok()).filter(|v| v["type"] == "chart").collect();
    let approved = charts.iter().filter(|c| c["moderation_status"] == "approved").count();
    let body = json!({"types": ["charts"], "filters": {"moderation": "approved"}, "facets": ["kind", "moderation_status"],
        "sort": [{"field": "created_at", "order": "asc"}], "limit": 50});
    let r = app.call(Method::POST, "/api/v1/search/advanced", Some(&token), Some(body.clone())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["total"].as_u64().unwrap() as usize, approved, "{}", r.body);
    assert_eq!(r.body["facets"]["moderation_status"], json!([{"value": "approved", "count": approved}]));
    let kinds: u64 = r.body["facets"]["kind"].as_array().unwrap().iter().map(|v| v["count"].as_u64().unwrap()).sum();
    assert_eq!(kinds as usize, approved);
    let created: Vec<String> = r.body["hits"].as_array().unwrap().iter().map(|h| h["fields"]["created_at"].as_str().unwrap().to_string()).collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "sorted by created_at ascending");
    // The next page continues where this one ended.
    let mut next = body.clone();
    next["cursor"] = r.body["next_cursor"].clone();
    let r2 = app.call(Method::POST, "/api/v1/search/advanced", Some(&token), Some(next)).await;
    assert_eq!(r2.status, 200, "{}", r2.body);
    let first: BTreeSet<String> = hit_ids(&r.body).into_iter().collect();
    assert!(hit_ids(&r2.body).iter().all(|id| !first.contains(id)));

    // Amount and date ranges on orders.
    let orders: Vec<Value> = items.iter().filter_map(|i| serde_dynamo::from_item::<_, Value>(i.clone()).ok()).filter(|v| v["type"] == "order").collect();
    let cheap = orders.iter().filter(|o| o["amount_cents"].as_i64().unwrap() <= 1500).count();
    let r = app
        .call(Method::POST, "/api/v1/search/advanced", Some(&token), Some(json!({"types": ["orders"], "filters": {"amount_cents": {"lte": 1500}}, "limit": 1})))
        .await;
    assert_eq!(r.body["total"].as_u64().unwrap() as usize, cheap, "{}", r.body);

    for (body, field) in [
        (json!({"filters": {"colour": "red"}}), "filters.colour"),
        (json!({"filters": {"created_at": {"gte": "soon"}}}), "filters.created_at.gte"),
        (json!({"facets": ["email"]}), "facets[0]"),
        (json!({"sort": [{"field": "email"}]}), "sort[0].field"),
        (json!({"sort": [{"field": "created_at", "order": "up"}]}), "sort[0].order"),
    ] {
        let r = app.call(Method::POST, "/api/v1/search/advanced", Some(&token), Some(body)).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.error_fields(), vec![field], "{}", r.body);
    }
}

#[tokio::test]
async fn saved_searches_clicks_and_analytics() {
    let app = TestApp::spawn().await;
    indexed(&app, 60).await;
    let (admin, token) = app.user(&["super_admin"]).await;
    let (_, other) = app.user(&["admin"]).await;
    let target = chart(&app, &admin.id, "Zeppelin logistics", ModerationStatus::Approved).await;
    assert!(eventually(&app, &token, json!({"query": "zeppelin"}), Duration::from_secs(5), |r| hit_ids(r).contains(&target.id)).await.is_some());

    // Saved search round trip, audited; someone else's reads as missing.
    let request = json!({"query": "zeppelin", "types": ["charts"], "filters": {"moderation_status": ["approved"]}});
    let r = app.call(Method::POST, "/api/v1/search/save", Some(&token), Some(json!({"name": "Airships", "request": request, "notify": true}))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let saved_id = r.body["id"].as_str().unwrap().to_string();
    let r = app.get("/api/v1/search/saved", &token).await;
    assert_eq!(r.body["saved"][0]["name"], "Airships");
    assert_eq!(r.body["saved"][0]["request"], request);
    assert_eq!(r.body["saved"][0]["notify"], true);
    let replay = app.call(Method::POST, "/api/v1/search/advanced", Some(&token), Some(r.body["saved"][0]["request"].clone())).await;
    assert_eq!(hit_ids(&replay.body), vec![target.id.clone()]);
    assert!(app.get("/api/v1/search/saved", &other).await.body["saved"].as_array().unwrap().is_empty());
    let r = app.call(Method::DELETE, &format!("/api/v1/search/saved/{saved_id}"), Some(&other), None).await;
    assert_eq!(r.status, 404);
    let r = app.call(Method::POST, "/api/v1/search/save", Some(&token), Some(json!({"name": "bad", "request": {"filters": {"colour": 1}}}))).await;
    assert_eq!(r.error_fields(), vec!["request.filters.colour"], "{}", r.body);
    let r = app.call(Method::DELETE, &format!("/api/v1/search/saved/{saved_id}"), Some(&token), None).await;
    assert_eq!(r.status, 204);
    let mut actions: Vec<String> = app.audit_for("saved_search", &saved_id).await.into_iter().map(|e| e.action).collect();
    actions.sort();
    assert_eq!(actions, vec!["search.saved", "search.saved.delete"]);

    // A click on a hit of one's own search.
    let r = search(&app, &token, json!({"query": "zeppelin logistics"})).await;
    let query_id = r["query_id"].as_str().unwrap().to_string();
    let click = json!({"query_id": query_id, "hit_id": target.id, "position": 1});
    let c = app.call(Method::POST, "/api/v1/search/click", Some(&token), Some(click.clone())).await;
    assert_eq!(c.status, 204, "{}", c.body);
    let c = app.call(Method::POST, "/api/v1/search/click", Some(&other), Some(click)).await;
    assert_eq!(c.status, 404, "someone else's search");
    let c = app.call(Method::POST, "/api/v1/search/click", Some(&token), Some(json!({"query_id": query_id, "hit_id": "nope", "position": 1}))).await;
    assert_eq!(c.error_fields(), vec!["hit_id"]);
    search(&app, &token, json!({"query": "xylophonequartz"})).await;

    let r = app.get("/api/v1/search/analytics", &token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let top = r.body["top_queries"].as_array().unwrap();
    let logged = top.iter().find(|q| q["query"] == "zeppelin logistics").unwrap_or_else(|| panic!("{}", r.body));
    assert_eq!(logged["clicks"], 1);
    assert_eq!(logged["click_through_rate"], 1.0);
    assert!(r.body["zero_result_queries"].as_array().unwrap().iter().any(|q| q["query"] == "xylophonequartz"), "{}", r.body);
    assert!(r.body["latency"]["charts"]["searches"].as_u64().unwrap() >= 3, "{}", r.body);
    assert!(r.body["latency"]["charts"]["p95_ms"].as_f64().unwrap() > 0.0);
    let r = app.get("/api/v1/search/analytics?from=2026-13-01", &token).await;
    assert_eq!(r.error_fields(), vec!["from"]);
    let (_, plain) = app.user(&["user"]).await;
    assert_eq!(app.get("/api/v1/search/analytics", &plain).await.status, 403);
}

/// Property: whatever the query and whoever asks, no hit shows a field the
/// caller could not read through the admin API — types they may not read,
/// personal values without `pii:read`, other people's unapproved charts.
#[tokio::test]
async fn no_hit_shows_what_the_admin_api_would_not() {
    let app = TestApp::spawn().await;
    let items = indexed(&app, 120).await;
    let values: Vec<Value> = items.iter().filter_map(|i| serde_dynamo::from_item::<_, Value>(i.clone()).ok()).collect();
    let (plain_user, plain) = app.user(&["user"]).await;
    let own = chart(&app, &plain_user.id, "Private pending draft", ModerationStatus::Pending).await;
    let (_, moderator) = app.user(&["moderator"]).await;
    let (_, support) = app.user(&["support"]).await;
    let (_, auditor) = app.user(&["auditor"]).await;
    let (_, analyst) = app.user(&["analyst"]).await;
    let (_, admin) = app.user(&["super_admin"]).await;
    assert!(eventually(&app, &admin, json!({"query": "private pending draft"}), Duration::from_secs(5), |r| hit_ids(r).contains(&own.id)).await.is_some());

    // Words people would type: names, emails, titles, statuses, countries.
    let mut words: Vec<String> = Vec::new();
    for v in &values {
        for field in ["name", "email", "title", "status", "country", "plan", "action"] {
            if let Some(s) = v[field].as_str() {
                words.extend(s.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() >= 3).map(str::to_lowercase));
            }
        }
    }
    words.sort();
    words.dedup();
    let mut rng = StdRng::seed_from_u64(7);
    let principals =
        [("user", &plain, false), ("moderator", &moderator, false), ("support", &support, true), ("auditor", &auditor, false), ("analyst", &analyst, false)];
    let mut checked = 0;
    // The demo data's words change with the day it is generated for: draw
    // queries until enough hits have been checked, not a fixed number.
    for _ in 0..400 {
        if checked >= 150 {
            break;
        }
        let n = rng.gen_range(1..=2);
        let mut query: Vec<String> = (0..n).map(|_| words[rng.gen_range(0..words.len())].clone()).collect();
        if rng.gen_bool(0.3) {
            // Misspelt: two inner letters swapped.
            let w = &mut query[0];
            if w.len() > 4 {
                let mut c: Vec<char> = w.chars().collect();
                c.swap(1, 2);
                *w = c.into_iter().collect();
            }
        }
        let query = query.join(" ");
        for (role, token, pii) in &principals {
            let r = search(&app, token, json!({"query": query, "limit": 50})).await;
            for hit in r["hits"].as_array().unwrap() {
                checked += 1;
                let (t, id, fields) = (hit["type"].as_str().unwrap(), hit["id"].as_str().unwrap(), &hit["fields"]);
                let caller_reads = matches!((*role, t), (_, "charts") | ("moderator" | "support" | "auditor", "users" | "orders") | ("auditor", "audit"));
                assert!(caller_reads, "{role} got a {t} hit: {hit}");
                let highlights = hit["highlights"].to_string();
                if t == "users" {
                    // Exactly what GET /admin/users/{id} shows this caller.
                    let view = app.get(&format!("/api/v1/admin/users/{id}"), token).await;
                    assert_eq!(view.status, 200, "{}", view.body);
                    for (k, v) in fields.as_object().unwrap() {
                        assert_eq!(&view.body[k], v, "{role}: field {k} of user {id}");
                    }
                    if !pii {
                        let original = values.iter().find(|v| v["id"] == id);
                        if let Some(o) = original {
                            for personal in ["email", "name"] {
                                let real = o[personal].as_str().unwrap();
                                assert!(!hit.to_string().contains(real), "{role} saw {personal} of {id}");
                                assert!(!highlights.contains(real));
                            }
                        }
                    }
                }
                if t == "charts" && *role == "user" {
                    assert!(fields["owner_id"] == plain_user.id.as_str() || fields["moderation_status"] == "approved", "{hit}");
                }
                if t == "audit" {
                    for sealed in ["source_ip", "user_agent", "changes", "sealed"] {
                        assert!(fields.get(sealed).is_none(), "{hit}");
                    }
                }
            }
        }
    }
    assert!(checked > 100, "the property was checked on {checked} hits");
    // The plain user finds their own pending chart; nobody else without charts:read... everyone here has it or not:
    let r = search(&app, &plain, json!({"query": "private pending draft"})).await;
    assert_eq!(hit_ids(&r), vec![own.id.clone()]);
    // Asking for a type one may not read is refused, not silently emptied.
    let r = app.call(Method::POST, "/api/v1/search", Some(&plain), Some(json!({"query": "x", "types": ["users"]}))).await;
    assert_eq!(r.status, 403, "{}", r.body);
}

#[tokio::test]
async fn saved_searches_with_notify_email_their_owners_new_matches_once() {
    let app = TestApp::spawn().await;
    indexed(&app, 30).await;
    let (admin, admin_token) = app.user(&["super_admin"]).await;
    let (member, member_token) = app.user(&["user"]).await;
    let save = |token: String, notify: bool| {
        let app = &app;
        async move {
            let body = json!({"name": "Tidal work", "request": {"query": "tidal", "types": ["charts"]}, "notify": notify});
            let r = app.call(Method::POST, "/api/v1/search/save", Some(&token), Some(body)).await;
            assert_eq!(r.status, 201, "{}", r.body);
            r.body
        }
    };
    let admin_alert = save(admin_token.clone(), true).await;
    assert!(admin_alert["last_checked_at"].is_string(), "the window starts when saved: {admin_alert}");
    let quiet = save(admin_token.clone(), false).await;
    assert!(quiet["last_checked_at"].is_null());
    let member_alert = save(member_token.clone(), true).await;
    let store = &app.app.search.platform.store;
    let searchers = &app.app.search.searchers;

    // Two new charts: one approved (anyone may see it), one pending (only
    // its owner and chart readers).
    let public = chart(&app, &admin.id, "Tidal range survey", ModerationStatus::Approved).await;
    let pending = chart(&app, &admin.id, "Tidal pending draft", ModerationStatus::Pending).await;
    let both = |r: &Value| hit_ids(r).contains(&public.id) && hit_ids(r).contains(&pending.id);
    assert!(eventually(&app, &admin_token, json!({"query": "tidal"}), Duration::from_secs(10), both).await.is_some());

    // Not due before its first check.
    let now = chrono::Utc::now();
    let early = search::alerts::check_due(store, searchers, now).await.unwrap();
    assert_eq!(early.checked + early.notified, 0, "{early:?}");
    // Due: the admin hears of both, the member of the approved one only.
    let due = now + search::alerts::CHECK_EVERY + chrono::Duration::minutes(1);
    let checked = search::alerts::check_due(store, searchers, due).await.unwrap();
    assert_eq!((checked.checked, checked.notified, checked.raced), (2, 2, 0), "{checked:?}");
    app.run_jobs().await;
    let mails = app.sent_emails(&admin.email).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].contains("has 2 new results") && mails[0].contains("Tidal range survey") && mails[0].contains("Tidal pending draft"), "{}", mails[0]);
    let mails = app.sent_emails(&member.email).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].contains("has 1 new result ") && mails[0].contains("Tidal range survey") && !mails[0].contains("pending"), "{}", mails[0]);

    // Audited with the check that found them; the listing shows it.
    let id = admin_alert["id"].as_str().unwrap();
    let audit = app.audit_for("saved_search", id).await;
    assert!(audit.iter().any(|e| e.action == "search.saved.alert"), "{audit:?}");
    let saved = app.get("/api/v1/search/saved", &admin_token).await;
    let listed = saved.body["saved"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap().clone();
    assert!(listed["last_notified_at"].is_string() && listed["last_checked_at"] != admin_alert["last_checked_at"], "{listed}");
    assert!(saved.body["saved"].as_array().unwrap().iter().any(|s| s["id"] == quiet["id"] && s["last_notified_at"].is_null()));

    // The next check starts where this one ended: nothing twice.
    let later = due + search::alerts::CHECK_EVERY + chrono::Duration::minutes(1);
    let again = search::alerts::check_due(store, searchers, later).await.unwrap();
    assert_eq!((again.checked, again.notified), (2, 0), "{again:?}");
    app.run_jobs().await;
    assert_eq!(app.sent_emails(&admin.email).await.len(), 1);
    assert_eq!(app.sent_emails(&member.email).await.len(), 1);

    // A suspended owner is taken off the schedule, and told why in the listing.
    let suspend = json!({"version": 1, "status": "suspended", "reason": "test"});
    let r = app.call(Method::PUT, &format!("/api/v1/admin/users/{}", member.id), Some(&admin_token), Some(suspend)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let stopped = search::alerts::check_due(store, searchers, later + search::alerts::CHECK_EVERY * 2).await.unwrap();
    assert_eq!((stopped.checked, stopped.stopped), (1, 1), "{stopped:?}");
    let item = app.store().get_item(&search::saved::pk(&member.id), member_alert["id"].as_str().unwrap()).await.unwrap().unwrap();
    assert!(!item.contains_key("gsi2pk") && item.contains_key("alert_error"), "{item:?}");
}
