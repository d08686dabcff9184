//! Request extractors that turn bad input into field-level 400s (415 for a
//! body that is not JSON, 413 for one too large; never a panic or a 500):
//! JSON bodies with unknown fields refused and a size limit, query strings,
//! pagination limits, and ids in paths.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::platform::error::{Error, FieldError};
use crate::store::ids::Id;

/// A JSON body, deserialized with the failing field's path reported.
/// DTOs use `#[serde(deny_unknown_fields)]` so typos are errors, not ignored.
pub struct ValidJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let ct = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
                ct == "application/json" || ct.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(Error::UnsupportedMediaType { expected: "application/json" });
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge { limit: crate::http::current_body_limit() }
            } else {
                Error::BadRequest("could not read the request body".into())
            }
        })?;
        parse_json(&bytes).map(ValidJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.to_string();
        Error::Validation(vec![FieldError::new(field_name(&path, &message), clean_message(&message))])
    })
}

/// serde reports missing and unknown fields at the parent's path with the
/// name in the message; lift the name into the path.
fn field_name(path: &str, message: &str) -> String {
    let named = ["missing field `", "unknown field `"].iter().find_map(|prefix| message.strip_prefix(prefix).and_then(|rest| rest.split('`').next()));
    match (path, named) {
        (".", Some(name)) => name.to_string(),
        (p, Some(name)) if p == name || p.ends_with(&format!(".{name}")) => p.to_string(),
        (p, Some(name)) => format!("{p}.{name}"),
        (".", None) => "body".to_string(),
        (p, None) => p.to_string(),
    }
}

fn clean_message(message: &str) -> String {
    // Drop serde_json's " at line 1 column 17" suffix: the field says where.
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// A query string, with the failing parameter named.
pub struct ValidQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ValidQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(ValidQuery).map_err(|err| {
            let path = err.path().to_string();
            let message = err.into_inner().to_string();
            Error::Validation(vec![FieldError::new(field_name(&path, &message).replace("body", "query"), message)])
        })
    }
}

pub use crate::store::{DEFAULT_PAGE, MAX_PAGE};

/// Validate a `limit` query parameter.
pub fn page_limit(limit: Option<i64>) -> Result<i32, Error> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE as i64).contains(&n) => Ok(n as i32),
        Some(_) => Err(Error::field("limit", format!("must be between 1 and {MAX_PAGE}"))),
    }
}

/// A path parameter that is an id (`PathId<UserId>`). A malformed id names
/// nothing, so it is answered as an unknown one is: 404 "no user <id>",
/// never a 400 that would tell ids apart from non-ids. For routes with one
/// path parameter.
pub struct PathId<T>(pub T);

impl<S: Send + Sync, T: Id> FromRequestParts<S> for PathId<T> {
    type Rejection = axum::response::Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        // A path that does not decode is axum's own rejection, as for `Path<String>`.
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state).await.map_err(IntoResponse::into_response)?;
        path_id(&raw).map(PathId).map_err(IntoResponse::into_response)
    }
}

/// An id from a path parameter, or 404 "no <what> <raw>" (see `PathId`), for
/// handlers that check other input before the id.
pub fn path_id<T: Id>(raw: &str) -> Result<T, Error> {
    T::parse(raw).ok_or_else(|| Error::NotFound(format!("no {} {raw}", T::WHAT)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        roles: Vec<String>,
    }

    fn field_of(json: &str) -> String {
        match parse_json::<Body>(json.as_bytes()) {
            Err(Error::Validation(errors)) => errors[0].field.clone(),
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    #[test]
    fn names_the_field() {
        assert_eq!(field_of(r#"{"name": 5, "roles": []}"#), "name");
        assert_eq!(field_of(r#"{"name": "a", "roles": ["x", 3]}"#), "roles[1]");
        assert_eq!(field_of(r#"{"name": "a"}"#), "roles");
        assert_eq!(field_of(r#"{"name": "a", "roles": [], "admin": true}"#), "admin");
        assert_eq!(field_of(r#"not json"#), "body");
    }

    #[test]
    fn limits() {
        assert_eq!(page_limit(None).unwrap(), DEFAULT_PAGE);
        assert!(page_limit(Some(0)).is_err());
        assert!(page_limit(Some(10_000)).is_err());
    }
}
