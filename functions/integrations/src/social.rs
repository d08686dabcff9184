//! Social sharing: `POST /api/v1/integrations/social/share` (a network's
//! share-intent URL and Keel's short link for a public chart), the short
//! link itself, `GET /api/v1/integrations/social/s/{token}` (an Open Graph
//! / Twitter card page for crawlers, a redirect to the chart for people,
//! clicks counted per network), and `GET /api/v1/integrations/social/stats`.
//!
//! Only approved, not deleted charts are shown: checked when shared and
//! again at every click, so a chart hidden, rejected or deleted later stops
//! being revealed by its links (404).
//!
//! Keys: `SOCIAL_LINK#<code> / META` (the code's chart and network, what a
//! click reads) and `SOCIAL#<chart_id> / NETWORK#<network>` (the code, so
//! sharing again gives the same link, and the click counter).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use shared::audit::AuditEntry;
use shared::domain::charts::{self, Chart, ModerationStatus};
use shared::domain::integration_health;
use shared::http::Caller;
use shared::http::extract::{ValidJson, ValidQuery};
use shared::platform::error::{Error, Result};
use shared::store::ids::ChartId;
use shared::store::{Item, QuerySpec, UpdateSpec, Write, attr_s, n, s, timestamp};
use utoipa::ToSchema;

use crate::IntegrationsState;

/// A click waits at most this long for its count: the redirect never
/// waits on the counter (a failed or slow count is logged and dropped).
pub const COUNT_TIMEOUT: Duration = Duration::from_millis(300);
/// The hub's name for this integration; its health: a share records a
/// success, a click that could not be counted a failure.
pub const HUB_NAME: &str = "social_sharing";
/// Random bytes in a short code (12 base64url characters, 72 bits: links
/// cannot be enumerated, and an unknown code is a 404).
const CODE_BYTES: usize = 9;
const MAX_CODE_CHARS: usize = 32;

/// The networks Keel makes share links for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = SocialNetwork)]
pub enum Network {
    X,
    Linkedin,
    Facebook,
    Reddit,
    Email,
}

impl Network {
    pub const ALL: [Network; 5] = [Network::X, Network::Linkedin, Network::Facebook, Network::Reddit, Network::Email];

    pub fn as_str(self) -> &'static str {
        match self {
            Network::X => "x",
            Network::Linkedin => "linkedin",
            Network::Facebook => "facebook",
            Network::Reddit => "reddit",
            Network::Email => "email",
        }
    }

    pub fn parse(value: &str) -> Option<Network> {
        Network::ALL.into_iter().find(|n| n.as_str() == value)
    }

    /// The network's documented share intent for `link`: X's Web Intent
    /// (`/intent/tweet?text=&url=`), LinkedIn's `share-offsite?url=`,
    /// Facebook's `sharer.php?u=`, Reddit's `submit?url=&title=`, and an
    /// RFC 6068 `mailto:` with subject and body.
    pub fn share_url(self, link: &str, title: &str) -> String {
        let (link_q, title_q) = (encode(link), encode(title));
        match self {
            Network::X => format!("https://twitter.com/intent/tweet?text={title_q}&url={link_q}"),
            Network::Linkedin => format!("https://www.linkedin.com/sharing/share-offsite/?url={link_q}"),
            Network::Facebook => format!("https://www.facebook.com/sharer/sharer.php?u={link_q}"),
            Network::Reddit => format!("https://www.reddit.com/submit?url={link_q}&title={title_q}"),
            Network::Email => format!("mailto:?subject={title_q}&body={}", encode(&format!("{title}\n\n{link}"))),
        }
    }
}

/// Percent-encode everything but RFC 3986's unreserved characters: right
/// in a query value and in a `mailto:` header field (where `+` is not a
/// space, so form encoding would be wrong).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Text safe inside HTML content and double- or single-quoted attributes.
pub fn html_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// Link-preview fetchers (they read the card; they are not people
/// following the link, so they are not counted).
pub const CRAWLERS: &[&str] = &[
    "facebookexternalhit",
    "facebot",
    "twitterbot",
    "linkedinbot",
    "slackbot",
    "slack-imgproxy",
    "discordbot",
    "telegrambot",
    "whatsapp",
    "redditbot",
    "pinterest",
    "skypeuripreview",
    "embedly",
    "iframely",
    "googlebot",
    "bingbot",
    "applebot",
    "mastodon",
];

pub fn is_crawler(user_agent: &str) -> bool {
    let agent = user_agent.to_ascii_lowercase();
    CRAWLERS.iter().any(|c| agent.contains(c))
}

fn link_pk(code: &str) -> String {
    format!("SOCIAL_LINK#{code}")
}

fn chart_pk(chart_id: &str) -> String {
    format!("SOCIAL#{chart_id}")
}

fn network_sk(network: Network) -> String {
    format!("NETWORK#{}", network.as_str())
}

fn new_code() -> String {
    let bytes: [u8; CODE_BYTES] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Where a short link lives, and where it sends people.
pub fn short_link(public_url: &str, code: &str) -> String {
    format!("{public_url}/api/v1/integrations/social/s/{code}")
}

pub fn chart_page(public_url: &str, chart_id: &str) -> String {
    format!("{public_url}/charts/{chart_id}")
}

/// The card image the app serves for a chart.
pub fn chart_image(public_url: &str, chart_id: &str) -> String {
    format!("{public_url}/charts/{chart_id}/card.png")
}

/// Whether a chart may be shown to anyone: approved and not deleted.
pub fn is_public(chart: &Chart) -> bool {
    chart.moderation_status == ModerationStatus::Approved && chart.deleted_at.is_none()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SocialShareRequest)]
pub struct ShareRequest {
    /// A public (approved) chart's id.
    pub chart_id: Option<String>,
    /// `x`, `linkedin`, `facebook`, `reddit` or `email`.
    pub network: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = SocialShare)]
pub struct Share {
    pub chart_id: String,
    pub network: Network,
    /// Open this to share: the network's share intent (or a `mailto:`).
    pub share_url: String,
    /// Keel's short link in that share (the same each time for a chart and network).
    pub short_url: String,
}

/// A network's share intent and Keel's short link for a public chart.
#[utoipa::path(
    post,
    path = "/api/v1/integrations/social/share",
    tag = "integrations",
    request_body = ShareRequest,
    responses(
        (status = 200, body = Share),
        (status = 400, description = "`chart_id` or `network` missing or invalid (named)", body = shared::platform::error::Problem),
        (status = 404, description = "No such chart", body = shared::platform::error::Problem),
        (status = 409, description = "The chart is not public (not approved, or deleted)", body = shared::platform::error::Problem)
    )
)]
pub async fn share(State(state): State<IntegrationsState>, caller: Caller, ValidJson(body): ValidJson<ShareRequest>) -> Result<Json<Share>> {
    let mut errors = Vec::new();
    let chart_id = match body.chart_id.as_deref().map(str::parse::<ChartId>) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            errors.push(shared::platform::error::FieldError::new("chart_id", "must be a chart id (UUID)"));
            None
        }
        None => {
            errors.push(shared::platform::error::FieldError::new("chart_id", "is required"));
            None
        }
    };
    let network = body.network.as_deref().and_then(Network::parse);
    if network.is_none() {
        errors.push(shared::platform::error::FieldError::new("network", "must be one of x, linkedin, facebook, reddit, email"));
    }
    let (Some(chart_id), Some(network)) = (chart_id, network) else { return Err(Error::Validation(errors)) };
    let chart = public_chart(&state, &chart_id).await?;
    let code = code_for(&state, &caller, &chart, network).await?;
    let public_url = &state.platform.config.public_url;
    let short_url = short_link(public_url, &code);
    integration_health::record(state.platform.store.store(), HUB_NAME, Ok(()), chrono::Utc::now()).await?;
    Ok(Json(Share { chart_id: chart.id.clone(), network, share_url: network.share_url(&short_url, &chart.title), short_url }))
}

/// The chart if it may be shared: 404 when it does not exist, 409 when it
/// is not public.
async fn public_chart(state: &IntegrationsState, chart_id: &ChartId) -> Result<Chart> {
    let chart = charts::get(state.platform.store.store(), chart_id).await?.ok_or_else(|| Error::NotFound(format!("no chart {chart_id}")))?;
    if chart.deleted_at.is_some() {
        return Err(Error::NotFound(format!("no chart {chart_id}")));
    }
    if !is_public(&chart) {
        return Err(Error::Conflict(format!(
            "chart {chart_id} is not public (it is {}): only approved charts can be shared",
            chart.moderation_status.as_str()
        )));
    }
    Ok(chart)
}

/// The chart's code for a network: the stored one, or a new one made with
/// its lookup item in one transaction (with the audit entry). Every share
/// is audited, the first with the link it created.
async fn code_for(state: &IntegrationsState, caller: &Caller, chart: &Chart, network: Network) -> Result<String> {
    let store = &state.platform.store;
    let audit = || AuditEntry::new(&caller.actor(), "chart.shared", "chart", &chart.id).reason(format!("shared to {}", network.as_str()));
    for _ in 0..2 {
        if let Some(item) = store.get_item(&chart_pk(&chart.id), &network_sk(network)).await?
            && let Some(code) = attr_s(&item, "code")
        {
            store.record(&audit()).await?;
            return Ok(code.to_string());
        }
        let code = new_code();
        let now = timestamp(chrono::Utc::now());
        let link = Item::from([
            ("pk".to_string(), s(link_pk(&code))),
            ("sk".to_string(), s("META")),
            ("type".to_string(), s("social_link")),
            ("code".to_string(), s(&code)),
            ("chart_id".to_string(), s(&chart.id)),
            ("network".to_string(), s(network.as_str())),
            ("created_at".to_string(), s(&now)),
        ]);
        let counter = Item::from([
            ("pk".to_string(), s(chart_pk(&chart.id))),
            ("sk".to_string(), s(network_sk(network))),
            ("type".to_string(), s("social_share")),
            ("code".to_string(), s(&code)),
            ("chart_id".to_string(), s(&chart.id)),
            ("network".to_string(), s(network.as_str())),
            ("clicks".to_string(), n(0)),
            ("created_at".to_string(), s(&now)),
            ("created_by".to_string(), s(&caller.principal.user_id)),
        ]);
        let conflict = || Error::Conflict("shared meanwhile".into());
        let writes = vec![Write::put_new(store.table(), counter, conflict())?, Write::put_new(store.table(), link, conflict())?];
        match store.commit(writes, &audit().changes::<(), _>(None, Some(&serde_json::json!({ "network": network.as_str(), "code": code })))).await {
            Ok(()) => return Ok(code),
            // Someone shared it to this network at the same moment: use theirs.
            Err(Error::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::internal("sharing kept conflicting"))
}

/// Follow a short link: crawlers get the card page, people are counted and
/// redirected (302, with the same page as the body).
#[utoipa::path(
    get,
    path = "/api/v1/integrations/social/s/{token}",
    tag = "integrations",
    params(("token" = String, Path, description = "The short link's code")),
    responses(
        (status = 200, description = "For link-preview crawlers: the Open Graph / Twitter card page", body = String, content_type = "text/html"),
        (status = 302, description = "For people: to the chart (a meta refresh and a link in the body too); the click is counted"),
        (status = 404, description = "No such link, or its chart is no longer public", body = shared::platform::error::Problem)
    )
)]
pub async fn follow(State(state): State<IntegrationsState>, Path(code): Path<String>, headers: HeaderMap) -> Result<Response> {
    let gone = || Error::NotFound("this shared chart is not available".into());
    if code.is_empty() || code.len() > MAX_CODE_CHARS || !code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(gone());
    }
    let store = state.platform.store.store();
    let link = store.get_item(&link_pk(&code), "META").await?.ok_or_else(gone)?;
    let (Some(chart_id), Some(network)) =
        (attr_s(&link, "chart_id").and_then(|id| id.parse::<ChartId>().ok()), attr_s(&link, "network").and_then(Network::parse))
    else {
        return Err(Error::internal(format!("social link {code} is malformed")));
    };
    // Checked at each click: a chart hidden, rejected or deleted since it
    // was shared is no longer revealed.
    let chart = charts::get(store, &chart_id).await?.filter(is_public).ok_or_else(gone)?;
    let public_url = &state.platform.config.public_url;
    let page = card_page(&chart, &short_link(public_url, &code), public_url);
    let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let html = [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")];
    if is_crawler(agent) {
        return Ok((StatusCode::OK, html, page).into_response());
    }
    count_click(&state, &chart.id, network).await;
    let target = chart_page(public_url, &chart.id);
    Ok((StatusCode::FOUND, [(header::LOCATION, target)], html, page).into_response())
}

/// One more click for the chart's link on a network: an atomic ADD, given
/// at most `COUNT_TIMEOUT`; a failure is logged, never answered.
async fn count_click(state: &IntegrationsState, chart_id: &str, network: Network) {
    let now = timestamp(chrono::Utc::now());
    let update = UpdateSpec::new("ADD clicks :one SET last_click_at = :now").value(":one", n(1)).value(":now", s(now)).condition("attribute_exists(pk)");
    let store = state.platform.store.store();
    let failure = match tokio::time::timeout(COUNT_TIMEOUT, store.update(&chart_pk(chart_id), &network_sk(network), &update)).await {
        Ok(Ok(_)) => return,
        Ok(Err(e)) => format!("a click was not counted: {e}"),
        Err(_) => format!("a click was not counted within {} ms", COUNT_TIMEOUT.as_millis()),
    };
    tracing::warn!(chart_id, network = network.as_str(), failure, "share click");
    let recorded = tokio::time::timeout(COUNT_TIMEOUT, integration_health::record(store, HUB_NAME, Err(failure), chrono::Utc::now())).await;
    if !matches!(recorded, Ok(Ok(_))) {
        tracing::warn!("the social sharing health was not recorded either");
    }
}

/// The page a short link serves: Open Graph and Twitter card tags for
/// previews, and for browsers a meta refresh and a link to the chart.
pub fn card_page(chart: &Chart, short_url: &str, public_url: &str) -> String {
    let title = html_escape(&chart.title);
    let description = html_escape(&format!("A {} chart shared from Keel.", chart.kind));
    let image = html_escape(&chart_image(public_url, &chart.id));
    let target = html_escape(&chart_page(public_url, &chart.id));
    let url = html_escape(short_url);
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n\
         <meta name=\"description\" content=\"{description}\">\n\
         <meta property=\"og:type\" content=\"website\">\n<meta property=\"og:site_name\" content=\"Keel\">\n\
         <meta property=\"og:title\" content=\"{title}\">\n<meta property=\"og:description\" content=\"{description}\">\n\
         <meta property=\"og:image\" content=\"{image}\">\n<meta property=\"og:url\" content=\"{url}\">\n\
         <meta name=\"twitter:card\" content=\"summary_large_image\">\n<meta name=\"twitter:title\" content=\"{title}\">\n\
         <meta name=\"twitter:description\" content=\"{description}\">\n<meta name=\"twitter:image\" content=\"{image}\">\n\
         <meta http-equiv=\"refresh\" content=\"0; url={target}\">\n</head>\n<body>\n\
         <p><a href=\"{target}\">{title}</a></p>\n</body>\n</html>\n"
    )
}

#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    pub chart_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = SocialNetworkClicks)]
pub struct NetworkClicks {
    pub network: Network,
    pub short_url: String,
    /// People who followed the link (crawlers not counted).
    pub clicks: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_click_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = SocialShareStats)]
pub struct ShareStats {
    pub chart_id: String,
    pub total_clicks: u64,
    /// The networks it was shared to.
    pub networks: Vec<NetworkClicks>,
}

/// Clicks per network on a chart's short links.
#[utoipa::path(
    get,
    path = "/api/v1/integrations/social/stats",
    tag = "integrations",
    params(StatsQuery),
    responses(
        (status = 200, body = ShareStats),
        (status = 400, description = "`chart_id` missing or not a chart id", body = shared::platform::error::Problem),
        (status = 404, description = "No such chart", body = shared::platform::error::Problem)
    )
)]
pub async fn stats(State(state): State<IntegrationsState>, ValidQuery(query): ValidQuery<StatsQuery>) -> Result<Json<ShareStats>> {
    let chart_id = match query.chart_id.as_deref().map(str::parse::<ChartId>) {
        Some(Ok(id)) => id,
        Some(Err(_)) => return Err(Error::field("chart_id", "must be a chart id (UUID)")),
        None => return Err(Error::field("chart_id", "is required")),
    };
    let store = state.platform.store.store();
    charts::get(store, &chart_id).await?.ok_or_else(|| Error::NotFound(format!("no chart {chart_id}")))?;
    let pk = chart_pk(chart_id.as_str());
    let spec = QuerySpec { key_condition: "pk = :pk", values: vec![(":pk", s(&pk))], forward: true, ..Default::default() };
    let public_url = &state.platform.config.public_url;
    let mut networks = Vec::new();
    for item in store.query_all(&spec).await? {
        let Some(network) = attr_s(&item, "network").and_then(Network::parse) else { continue };
        let clicks = match item.get("clicks") {
            Some(aws_sdk_dynamodb::types::AttributeValue::N(v)) => v.parse().unwrap_or(0),
            _ => 0,
        };
        networks.push(NetworkClicks {
            network,
            short_url: short_link(public_url, attr_s(&item, "code").unwrap_or_default()),
            clicks,
            last_click_at: attr_s(&item, "last_click_at").map(str::to_string),
        });
    }
    Ok(Json(ShareStats { chart_id: chart_id.to_string(), total_clicks: networks.iter().map(|n| n.clicks).sum(), networks }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_urls_follow_each_networks_format() {
        let link = "https://keel.example/api/v1/integrations/social/s/abc_-1";
        let title = "Sales & \"growth\" 100%";
        assert_eq!(
            Network::X.share_url(link, title),
            "https://twitter.com/intent/tweet?text=Sales%20%26%20%22growth%22%20100%25&url=https%3A%2F%2Fkeel.example%2Fapi%2Fv1%2Fintegrations%2Fsocial%2Fs%2Fabc_-1"
        );
        assert_eq!(
            Network::Linkedin.share_url(link, title),
            "https://www.linkedin.com/sharing/share-offsite/?url=https%3A%2F%2Fkeel.example%2Fapi%2Fv1%2Fintegrations%2Fsocial%2Fs%2Fabc_-1"
        );
        assert!(Network::Facebook.share_url(link, title).starts_with("https://www.facebook.com/sharer/sharer.php?u=https%3A%2F%2Fkeel.example"));
        assert!(Network::Reddit.share_url(link, title).ends_with("&title=Sales%20%26%20%22growth%22%20100%25"));
        let mail = Network::Email.share_url(link, title);
        assert!(mail.starts_with("mailto:?subject=Sales%20%26%20%22growth%22%20100%25&body=Sales%20"), "{mail}");
        assert!(mail.contains("%0A%0Ahttps%3A%2F%2Fkeel.example"), "{mail}");
        assert_eq!(encode("é ü+"), "%C3%A9%20%C3%BC%2B");
    }

    #[test]
    fn crawlers_are_recognised() {
        assert!(is_crawler("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"));
        assert!(is_crawler("Twitterbot/1.0"));
        assert!(is_crawler("LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)"));
        assert!(is_crawler("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"));
        assert!(!is_crawler("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"));
    }

    #[test]
    fn the_card_escapes_the_title() {
        let chart = Chart::new("u1", "<script>alert('x')</script> & \"co\"", "bar");
        let page = card_page(&chart, "https://keel.example/s/a", "https://keel.example");
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("<meta property=\"og:title\" content=\"&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;co&quot;\">"), "{page}");
    }
}
