//! One error type for every function, mapped to HTTP in one place as an
//! RFC 9457 `application/problem+json` body. Internal errors are logged with
//! their cause and answered with only the request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A problem with one input field; `field` is a JSON path such as `roles[1]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("missing permission {missing}")]
    Forbidden { missing: String },
    /// The token is limited to enrolling 2FA (its roles require 2FA).
    #[error("two-factor authentication is required for your roles: enable it (POST /api/v1/auth/2fa/enable, then /api/v1/auth/2fa/verify) and sign in again")]
    MfaEnrollmentRequired,
    /// The action needs a session signed in with a second factor.
    #[error("{0}")]
    MfaRequired(String),
    #[error("{0}")]
    NotFound(String),
    /// The path exists, the method is not one of its routes (405, `Allow`).
    #[error("{method} is not allowed here; allowed: {}", allowed.join(", "))]
    MethodNotAllowed { method: String, allowed: Vec<String> },
    #[error("{0}")]
    Conflict(String),
    /// It existed and is no more: a revoked or expired share link (410).
    #[error("{0}")]
    Gone(String),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The body is not of the media type the route reads (415).
    #[error("expected a body of type {expected}")]
    UnsupportedMediaType { expected: &'static str },
    #[error("{0}")]
    Unprocessable(String),
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError::new(field, message)])
    }

    pub fn internal(context: impl std::fmt::Display) -> Self {
        Error::Internal(anyhow::anyhow!("{context}"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Validation(_) | Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden { .. } | Error::MfaEnrollmentRequired | Error::MfaRequired(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Gone(_) => StatusCode::GONE,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            Error::Validation(_) => "validation",
            Error::BadRequest(_) => "bad-request",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden { .. } => "forbidden",
            Error::MfaEnrollmentRequired => "mfa-enrollment-required",
            Error::MfaRequired(_) => "mfa-required",
            Error::NotFound(_) => "not-found",
            Error::MethodNotAllowed { .. } => "method-not-allowed",
            Error::Conflict(_) => "conflict",
            Error::Gone(_) => "gone",
            Error::PayloadTooLarge { .. } => "payload-too-large",
            Error::UnsupportedMediaType { .. } => "unsupported-media-type",
            Error::Unprocessable(_) => "unprocessable",
            Error::TooManyRequests { .. } => "rate-limited",
            Error::Internal(_) => "internal",
        }
    }
}

/// The RFC 9457 body, with Keel's extension members.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_permission: Option<String>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let request_id = crate::platform::telemetry::current_request_id();
        let detail = match &self {
            Error::Internal(cause) => {
                tracing::error!(error = %format!("{cause:#}"), "internal error");
                "an unexpected error occurred; quote the request id to support".to_string()
            }
            Error::Validation(errors) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                format!("invalid fields: {}", fields.join(", "))
            }
            other => other.to_string(),
        };
        if !status.is_server_error() {
            // The line a request id from a problem body leads to (the admin
            // function's log search). The detail names fields and rules,
            // never the values sent.
            tracing::info!(status = status.as_u16(), problem = self.slug(), detail = %detail, "request refused");
        }
        let problem = Problem {
            kind: format!("https://keel.dev/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            request_id,
            missing_permission: match &self {
                Error::Forbidden { missing } => Some(missing.clone()),
                _ => None,
            },
            errors: match self {
                Error::Validation(ref errors) => errors.clone(),
                Error::UnsupportedMediaType { expected } => vec![FieldError::new("content-type", format!("expected {expected}"))],
                _ => Vec::new(),
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        match self {
            Error::TooManyRequests { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            Error::MethodNotAllowed { allowed, .. } => {
                if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
                    headers.insert(header::ALLOW, value);
                }
            }
            _ => {}
        }
        response
    }
}

/// A problem body for an error response that did not come from `Error`:
/// axum's own rejections (a path or query string it could not parse, a
/// body over the limit), which it answers in text/plain. `detail` is the
/// rejection's text; a server error keeps only the request id.
pub fn problem_response(status: StatusCode, detail: &str) -> Response {
    let detail = if status.is_server_error() {
        tracing::error!(%status, detail, "internal error");
        "an unexpected error occurred; quote the request id to support".to_string()
    } else {
        // The extractor's text may quote what was sent: the line keeps only the status.
        tracing::info!(status = status.as_u16(), "request refused");
        detail.chars().filter(|c| !c.is_control()).take(500).collect()
    };
    let title = status.canonical_reason().unwrap_or("Error");
    let problem = Problem {
        kind: format!("https://keel.dev/problems/{}", title.to_ascii_lowercase().replace(' ', "-")),
        title: title.to_string(),
        status: status.as_u16(),
        detail,
        request_id: crate::platform::telemetry::current_request_id(),
        errors: Vec::new(),
        missing_permission: None,
    };
    let mut response = (status, serde_json::to_vec(&problem).unwrap_or_default()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}

/// Map an AWS SDK error to an internal error, keeping the service's message.
pub fn aws<E: std::error::Error + Send + Sync + 'static>(context: &'static str) -> impl FnOnce(E) -> Error {
    move |err| {
        let detail = error_chain(&err);
        Error::Internal(anyhow::Error::new(err).context(format!("{context}: {detail}")))
    }
}

/// An error and its sources as one line: SDK errors' own Display is only
/// "service error"; the service's message is further down the chain.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}
