//! A CalDAV (RFC 4791) client for one calendar collection: changes since a
//! sync token (`REPORT sync-collection`, RFC 6578), and conditional writes
//! (`PUT` with `If-None-Match: *` to create, `If-Match: <etag>` to replace,
//! `DELETE` with `If-Match`). Every request goes through the SSRF guard's
//! client (pinned to the checked address, no redirects, a timeout), and
//! every answer is read up to a limit.

use std::time::Duration;

use base64::Engine as _;

use crate::ssrf;

/// One request's limit.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// The largest multistatus answer read (a sync report of a big calendar).
const MAX_REPORT_BYTES: usize = 4 * 1024 * 1024;
/// The largest event read back (a conflict's server copy).
const MAX_EVENT_BYTES: usize = 256 * 1024;
const USER_AGENT: &str = "keel-calendar";

pub struct Client {
    http: reqwest::Client,
    collection: url::Url,
    authorization: String,
}

/// What went wrong talking to the server (safe to show the user: no
/// credentials, at most a snippet of the server's answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalDavError {
    #[error("{0}")]
    Refused(String),
    #[error("the server refused the credentials ({0})")]
    Credentials(u16),
    #[error("the sync token is no longer valid")]
    InvalidSyncToken,
    #[error("no answer within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("{what} answered {status}: {snippet}")]
    Status { what: &'static str, status: u16, snippet: String },
    #[error("{0}")]
    Malformed(String),
}

impl CalDavError {
    /// The kind of failure without the server's words (for the audit log
    /// and the hub's health, which other people read).
    pub fn reason(&self) -> String {
        match self {
            CalDavError::Status { what, status, .. } => format!("{what} answered {status}"),
            CalDavError::Refused(_) => "the calendar URL was refused by the SSRF guard".to_string(),
            CalDavError::Connection(_) => "connection failed".to_string(),
            CalDavError::Malformed(_) => "the server's answer was not understood".to_string(),
            other => other.to_string(),
        }
    }
}

type Result<T> = std::result::Result<T, CalDavError>;

/// A resource changed or removed since the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The resource's path on the server.
    pub path: String,
    /// Its ETag now; none: it was removed.
    pub etag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub token: String,
    pub changes: Vec<Change>,
}

/// What a conditional write found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Done; the resource's new ETag when the server said it.
    Done(Option<String>),
    /// 412: the server's copy is not the one the condition named.
    PreconditionFailed,
}

impl Client {
    pub async fn connect(collection: &str, username: &str, password: &str, policy: ssrf::Policy) -> Result<Client> {
        let (http, url) = ssrf::guarded_client(collection, policy, REQUEST_TIMEOUT, USER_AGENT).await.map_err(CalDavError::Refused)?;
        let mut collection = url;
        if !collection.path().ends_with('/') {
            collection.set_path(&format!("{}/", collection.path()));
        }
        let authorization = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")));
        Ok(Client { http, collection, authorization })
    }

    /// The path of a resource named `file_name` in the collection.
    pub fn path_of(&self, file_name: &str) -> String {
        format!("{}{file_name}", self.collection.path())
    }

    fn url_of(&self, path: &str) -> url::Url {
        let mut url = self.collection.clone();
        url.set_path(path);
        url
    }

    fn request(&self, method: &[u8], url: url::Url) -> reqwest::RequestBuilder {
        self.http.request(reqwest::Method::from_bytes(method).expect("a method"), url).header("authorization", &self.authorization)
    }

    /// Changes since `token` (none: every member, as a full listing).
    pub async fn sync_collection(&self, token: Option<&str>) -> Result<SyncReport> {
        let token_element = match token {
            Some(token) => format!("<d:sync-token>{}</d:sync-token>", xml_escape(token)),
            None => "<d:sync-token/>".to_string(),
        };
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:">{token_element}<d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"#
        );
        let response =
            send(self.request(b"REPORT", self.collection.clone()).header("depth", "1").header("content-type", "application/xml; charset=utf-8").body(body))
                .await?;
        let status = response.status().as_u16();
        let text = read_text(response, MAX_REPORT_BYTES).await?;
        match status {
            207 => parse_sync_report(&text),
            401 | 403 if !text.contains("valid-sync-token") => Err(CalDavError::Credentials(status)),
            // RFC 6578 3.2: an unknown or expired token is the
            // DAV:valid-sync-token precondition (403 or 409).
            403 | 409 if token.is_some() && text.contains("valid-sync-token") => Err(CalDavError::InvalidSyncToken),
            _ => Err(status_error("the sync report", status, &text)),
        }
    }

    /// Create (`etag` none: `If-None-Match: *`) or replace (`If-Match`).
    pub async fn put(&self, path: &str, body: String, etag: Option<&str>) -> Result<Written> {
        let mut request = self.request(b"PUT", self.url_of(path)).header("content-type", "text/calendar; charset=utf-8");
        request = match etag {
            Some(etag) => request.header("if-match", etag),
            None => request.header("if-none-match", "*"),
        };
        let response = send(request.body(body)).await?;
        let status = response.status().as_u16();
        let etag = header_etag(&response);
        let text = read_text(response, MAX_EVENT_BYTES).await?;
        match status {
            200..=299 => Ok(Written::Done(etag)),
            412 => Ok(Written::PreconditionFailed),
            401 | 403 => Err(CalDavError::Credentials(status)),
            _ => Err(status_error("PUT", status, &text)),
        }
    }

    /// Delete the resource if its ETag is `etag`; a resource already gone is done.
    pub async fn delete(&self, path: &str, etag: &str) -> Result<Written> {
        let response = send(self.request(b"DELETE", self.url_of(path)).header("if-match", etag)).await?;
        let status = response.status().as_u16();
        let text = read_text(response, MAX_EVENT_BYTES).await?;
        match status {
            200..=299 | 404 | 410 => Ok(Written::Done(None)),
            412 => Ok(Written::PreconditionFailed),
            401 | 403 => Err(CalDavError::Credentials(status)),
            _ => Err(status_error("DELETE", status, &text)),
        }
    }

    /// The server's copy: its ETag and text, or none if it is gone.
    pub async fn get(&self, path: &str) -> Result<Option<(Option<String>, String)>> {
        let response = send(self.request(b"GET", self.url_of(path))).await?;
        let status = response.status().as_u16();
        let etag = header_etag(&response);
        let text = read_text(response, MAX_EVENT_BYTES).await?;
        match status {
            200 => Ok(Some((etag, text))),
            404 | 410 => Ok(None),
            401 | 403 => Err(CalDavError::Credentials(status)),
            _ => Err(status_error("GET", status, &text)),
        }
    }
}

async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
    request.send().await.map_err(|e| if e.is_timeout() { CalDavError::Timeout } else { CalDavError::Connection(without_url(e)) })
}

/// reqwest's error text names the URL; the kind is enough (and the URL is
/// the user's own, but it need not travel into logs and the health record).
fn without_url(error: reqwest::Error) -> String {
    let text = error.without_url().to_string();
    if text.is_empty() { "the request failed".to_string() } else { text }
}

fn header_etag(response: &reqwest::Response) -> Option<String> {
    response.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string)
}

async fn read_text(mut response: reqwest::Response, limit: usize) -> Result<String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| if e.is_timeout() { CalDavError::Timeout } else { CalDavError::Connection(without_url(e)) })? {
        if body.len() + chunk.len() > limit {
            return Err(CalDavError::Malformed(format!("the answer is larger than {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn status_error(what: &'static str, status: u16, text: &str) -> CalDavError {
    CalDavError::Status { what, status, snippet: text.chars().take(200).collect() }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

const DAV: &str = "DAV:";

/// A `DAV:multistatus` answer to `sync-collection`: each response's href
/// with its ETag (a 200 propstat) or none (a 404 status: removed), and the
/// new sync token.
pub fn parse_sync_report(text: &str) -> Result<SyncReport> {
    let document = roxmltree::Document::parse(text).map_err(|e| CalDavError::Malformed(format!("the sync report is not XML: {e}")))?;
    let root = document.root_element();
    if !root.has_tag_name((DAV, "multistatus")) {
        return Err(CalDavError::Malformed("the sync report is not a DAV:multistatus".into()));
    }
    let child_text =
        |node: roxmltree::Node, name: &str| node.children().find(|c| c.has_tag_name((DAV, name))).and_then(|c| c.text()).map(|t| t.trim().to_string());
    let token = child_text(root, "sync-token").ok_or_else(|| CalDavError::Malformed("the sync report has no sync-token".into()))?;
    let mut changes = Vec::new();
    for response in root.children().filter(|c| c.has_tag_name((DAV, "response"))) {
        let Some(href) = child_text(response, "href") else { continue };
        let path = percent_decoded_path(&href);
        let removed = child_text(response, "status").is_some_and(|s| s.contains(" 404"));
        let etag = response
            .descendants()
            .filter(|n| n.has_tag_name((DAV, "propstat")))
            .filter(|p| child_text(*p, "status").is_none_or(|s| s.contains(" 200")))
            .flat_map(|p| p.descendants().filter(|n| n.has_tag_name((DAV, "getetag"))))
            .find_map(|n| n.text().map(|t| t.trim().to_string()));
        changes.push(Change { path, etag: if removed { None } else { etag } });
    }
    Ok(SyncReport { token, changes })
}

/// An href as a path: an absolute URL's path, percent-decoding undone, so
/// it compares with the paths Keel builds.
fn percent_decoded_path(href: &str) -> String {
    let path = url::Url::parse(href).map(|u| u.path().to_string()).unwrap_or_else(|_| href.to_string());
    url::form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_report_lists_changes_and_removals() {
        let text = r#"<?xml version="1.0"?>
<multistatus xmlns="DAV:">
  <response><href>/ada/keel/renewal-o1.ics</href><propstat><prop><getetag>"abc"</getetag></prop><status>HTTP/1.1 200 OK</status></propstat></response>
  <response><href>/ada/keel/gone.ics</href><status>HTTP/1.1 404 Not Found</status></response>
  <sync-token>http://radicale.org/ns/sync/123</sync-token>
</multistatus>"#;
        let report = parse_sync_report(text).unwrap();
        assert_eq!(report.token, "http://radicale.org/ns/sync/123");
        assert_eq!(
            report.changes,
            [Change { path: "/ada/keel/renewal-o1.ics".into(), etag: Some("\"abc\"".into()) }, Change { path: "/ada/keel/gone.ics".into(), etag: None }]
        );
        assert!(parse_sync_report("<html/>").is_err());
    }
}
