//! Social sharing: share intents per network with Keel's short link, the
//! link's card page (escaped) for crawlers and redirect for people, clicks
//! counted per network (crawlers not), and a chart that stops being public
//! stops being revealed.

use chrono::Utc;
use http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use shared::domain::charts::ModerationStatus;

use crate::charts::chart;
use crate::helpers::{TestApp, send_to};

async fn share(app: &TestApp, token: &str, body: Value) -> crate::helpers::Response {
    app.call(Method::POST, "/api/v1/integrations/social/share", Some(token), Some(body)).await
}

/// Follow a short link as a client with this user agent would.
async fn follow(app: &TestApp, short_url: &str, agent: &str) -> crate::helpers::Response {
    let path = short_url.strip_prefix("http://keel.test").expect("links under the public URL");
    send_to(app.router(), Request::builder().method(Method::GET).uri(path).header("user-agent", agent).body(axum::body::Body::empty()).unwrap()).await
}

fn query_value(url: &str, name: &str) -> String {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let pair = query.split('&').find_map(|p| p.strip_prefix(&format!("{name}="))).unwrap_or_else(|| panic!("{name} in {url}"));
    url::form_urlencoded::parse(format!("v={}", pair.replace('+', "%2B")).as_bytes()).next().unwrap().1.into_owned()
}

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

#[tokio::test]
async fn sharing_gives_each_networks_intent_and_a_stable_short_link_whose_clicks_are_counted() {
    let app = TestApp::spawn().await;
    let (owner, token) = app.user(&["user"]).await;
    let (_, moderator) = app.user(&["moderator"]).await;
    let title = "Q4 <b>revenue</b> & \"growth\" 'ö'";
    let c = chart(&app, &owner.id, title, ModerationStatus::Approved, Utc::now()).await;

    let mut links = std::collections::HashMap::new();
    for network in ["x", "linkedin", "facebook", "reddit", "email"] {
        let r = share(&app, &token, json!({"chart_id": c.id, "network": network})).await;
        assert_eq!(r.status, StatusCode::OK, "{network}: {}", r.body);
        let short = r.body["short_url"].as_str().unwrap().to_string();
        assert!(short.starts_with("http://keel.test/api/v1/integrations/social/s/"), "{short}");
        let intent = r.body["share_url"].as_str().unwrap();
        match network {
            "x" => {
                assert!(intent.starts_with("https://twitter.com/intent/tweet?"), "{intent}");
                assert_eq!((query_value(intent, "url"), query_value(intent, "text")), (short.clone(), title.to_string()));
            }
            "linkedin" => {
                assert!(intent.starts_with("https://www.linkedin.com/sharing/share-offsite/?"), "{intent}");
                assert_eq!(query_value(intent, "url"), short);
            }
            "facebook" => {
                assert!(intent.starts_with("https://www.facebook.com/sharer/sharer.php?"), "{intent}");
                assert_eq!(query_value(intent, "u"), short);
            }
            "reddit" => {
                assert!(intent.starts_with("https://www.reddit.com/submit?"), "{intent}");
                assert_eq!((query_value(intent, "url"), query_value(intent, "title")), (short.clone(), title.to_string()));
            }
            _ => {
                assert!(intent.starts_with("mailto:?"), "{intent}");
                assert!(!intent.contains(' ') && !intent.contains('+'), "RFC 6068 percent-encodes, no form encoding: {intent}");
                assert_eq!(query_value(intent, "subject"), title);
                assert!(query_value(intent, "body").ends_with(&format!("\n\n{short}")), "{intent}");
            }
        }
        links.insert(network, short);
    }
    let distinct: std::collections::HashSet<_> = links.values().collect();
    assert_eq!(distinct.len(), 5, "a link per network");
    // Sharing again gives the same link; each share is audited.
    let again = share(&app, &token, json!({"chart_id": c.id, "network": "x"})).await;
    assert_eq!(again.body["short_url"].as_str().unwrap(), links["x"]);
    let audit = app.audit_for("chart", &c.id).await;
    assert_eq!(audit.iter().filter(|e| e.action == "chart.shared").count(), 6);

    // A crawler gets the card, escaped; it is not a click.
    let card = follow(&app, &links["x"], "Twitterbot/1.0").await;
    assert_eq!(card.status, StatusCode::OK);
    assert!(card.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = card.body.as_str().unwrap();
    let escaped = "Q4 &lt;b&gt;revenue&lt;/b&gt; &amp; &quot;growth&quot; &#39;ö&#39;";
    for tag in [format!("<meta property=\"og:title\" content=\"{escaped}\">"), format!("<meta name=\"twitter:title\" content=\"{escaped}\">")] {
        assert!(page.contains(&tag), "{tag} in {page}");
    }
    assert!(!page.contains("<b>revenue"), "{page}");
    for tag in ["og:description", "og:image", "twitter:image", "twitter:card"] {
        assert!(page.contains(tag), "{tag} in {page}");
    }
    let target = format!("http://keel.test/charts/{}", c.id);
    assert!(page.contains(&format!("<meta http-equiv=\"refresh\" content=\"0; url={target}\">")), "{page}");
    for agent in ["facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "LinkedInBot/1.0", "Slackbot-LinkExpanding 1.0"] {
        assert_eq!(follow(&app, &links["linkedin"], agent).await.status, StatusCode::OK);
    }

    // People are redirected and counted, per network.
    for _ in 0..3 {
        let r = follow(&app, &links["x"], BROWSER).await;
        assert_eq!(r.status, StatusCode::FOUND);
        assert_eq!(r.headers["location"].to_str().unwrap(), target);
        assert!(r.body.as_str().unwrap().contains(&format!("<a href=\"{target}\">")));
    }
    follow(&app, &links["reddit"], BROWSER).await;
    let clicks =
        |body: &Value, network: &str| body["networks"].as_array().unwrap().iter().find(|n| n["network"] == network).map(|n| n["clicks"].as_u64().unwrap());
    let stats = app.get(&format!("/api/v1/integrations/social/stats?chart_id={}", c.id), &moderator).await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.body);
    assert_eq!((clicks(&stats.body, "x"), clicks(&stats.body, "reddit"), clicks(&stats.body, "linkedin")), (Some(3), Some(1), Some(0)), "{}", stats.body);
    assert_eq!(stats.body["total_clicks"], 4);
    // A plain user may share, not read the counts.
    assert_eq!(app.get(&format!("/api/v1/integrations/social/stats?chart_id={}", c.id), &token).await.status, StatusCode::FORBIDDEN);

    // Hidden later: the link no longer reveals the chart, to people or crawlers.
    let hidden = app
        .call(
            Method::POST,
            &format!("/api/v1/admin/charts/{}/moderate", c.id),
            Some(&moderator),
            Some(json!({"action": "hide", "reason": "spam", "version": 1})),
        )
        .await;
    assert_eq!(hidden.status, StatusCode::OK, "{}", hidden.body);
    for agent in [BROWSER, "Twitterbot/1.0"] {
        let r = follow(&app, &links["x"], agent).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
        assert!(!r.body.to_string().contains("revenue"), "{}", r.body);
    }
    let stats = app.get(&format!("/api/v1/integrations/social/stats?chart_id={}", c.id), &moderator).await;
    assert_eq!(clicks(&stats.body, "x"), Some(3), "not counted once hidden: {}", stats.body);

    // The hub shows it built and working, with the last share.
    let (_, admin) = app.user(&["super_admin"]).await;
    let hub = app.get("/api/v1/integrations/available", &admin).await;
    let entry = hub.body["integrations"].as_array().unwrap().iter().find(|i| i["name"] == "social_sharing").unwrap().clone();
    assert_eq!((entry["built"].as_bool(), entry["status"].as_str()), (Some(true), Some("connected")), "{entry}");
    assert!(entry["last_success_at"].is_string(), "{entry}");
}

#[tokio::test]
async fn only_public_charts_are_shared_and_bad_input_names_its_field() {
    let app = TestApp::spawn().await;
    let (owner, token) = app.user(&["user"]).await;
    for status in [ModerationStatus::Pending, ModerationStatus::Rejected, ModerationStatus::Hidden, ModerationStatus::Flagged] {
        let c = chart(&app, &owner.id, "Not yet", status, Utc::now()).await;
        let r = share(&app, &token, json!({"chart_id": c.id, "network": "x"})).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{status:?}: {}", r.body);
        assert!(r.body["detail"].as_str().unwrap().contains(&c.id), "{}", r.body);
    }
    let missing = uuid::Uuid::now_v7().to_string();
    let r = share(&app, &token, json!({"chart_id": missing, "network": "x"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body["detail"].as_str().unwrap().contains(&missing), "{}", r.body);

    let c = chart(&app, &owner.id, "Public", ModerationStatus::Approved, Utc::now()).await;
    for (body, field) in [
        (json!({"network": "x"}), "chart_id"),
        (json!({"chart_id": "nope", "network": "x"}), "chart_id"),
        (json!({"chart_id": c.id}), "network"),
        (json!({"chart_id": c.id, "network": "myspace"}), "network"),
    ] {
        let r = share(&app, &token, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert_eq!(r.error_fields(), vec![field.to_string()], "{body}: {}", r.body);
    }
    let (_, moderator) = app.user(&["moderator"]).await;
    let r = app.get("/api/v1/integrations/social/stats", &moderator).await;
    assert_eq!((r.status, r.error_fields()), (StatusCode::BAD_REQUEST, vec!["chart_id".to_string()]));
    assert!(app.audit_for("chart", &c.id).await.iter().all(|e| e.action != "chart.shared"), "nothing shared");
    // Unknown and malformed codes are 404s.
    for code in ["AAAAAAAAAAAA", "bad%20code"] {
        assert_eq!(follow(&app, &format!("http://keel.test/api/v1/integrations/social/s/{code}"), BROWSER).await.status, StatusCode::NOT_FOUND);
    }
}
