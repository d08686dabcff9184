//! A browser, as far as the OAuth flow needs one: plain HTTP with a cookie
//! jar, redirects followed by hand, the provider's login form filled in.

use serde_json::Value;
use url::Url;

pub struct Browser {
    client: reqwest::Client,
}

/// What to do at the provider's login page.
pub enum AtLogin<'a> {
    SignIn(&'a str, &'a str),
    Cancel,
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Browser {
    pub fn new() -> Browser {
        let client = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { client }
    }

    /// Visit `authorization_url` and go through the provider until it sends
    /// the browser to a URL starting with `callback`; return that URL.
    pub async fn authorize(&self, authorization_url: &str, callback: &str, at_login: AtLogin<'_>) -> Url {
        let mut request = self.client.get(authorization_url);
        let mut current = Url::parse(authorization_url).unwrap();
        for _ in 0..20 {
            let response = request.send().await.unwrap();
            let status = response.status();
            if status.is_redirection() {
                let location = response.headers()["location"].to_str().unwrap();
                let next = current.join(location).unwrap();
                if next.as_str().starts_with(callback) {
                    return next;
                }
                request = self.client.get(next.clone());
                current = next;
                continue;
            }
            let body = response.text().await.unwrap();
            assert!(status.is_success(), "{status} at {current}: {body}");
            let action = attribute(&body, "action=\"").unwrap_or_else(|| panic!("no form at {current}: {body}"));
            request = match at_login {
                AtLogin::SignIn(login, password) => self.client.post(current.join(&action).unwrap()).form(&[("login", login), ("password", password)]),
                AtLogin::Cancel => self.client.get(current.join(&attribute(&body, "href=\"").unwrap()).unwrap()),
            };
        }
        panic!("too many redirects from {authorization_url}");
    }

    /// GET a URL and read the JSON answer (Keel's callback).
    pub async fn get(&self, url: &str) -> Answer {
        let response = self.client.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
    }
}

/// The first value of an HTML attribute (the test pages are tiny).
fn attribute(html: &str, prefix: &str) -> Option<String> {
    let start = html.find(prefix)? + prefix.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].replace("&amp;", "&"))
}

/// `url` with query parameter `name` set to `value`.
pub fn with_param(url: &Url, name: &str, value: &str) -> Url {
    let pairs: Vec<(String, String)> =
        url.query_pairs().map(|(k, v)| if k == name { (k.into_owned(), value.to_string()) } else { (k.into_owned(), v.into_owned()) }).collect();
    let mut changed = url.clone();
    changed.query_pairs_mut().clear().extend_pairs(pairs);
    changed
}

pub fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}
