//! The error half of each function's OpenAPI document, written once from the
//! route table rather than in every `#[utoipa::path]`:
//! - every error response is `application/problem+json` with the `Problem`
//!   schema (what `Error::into_response` sends), where utoipa writes
//!   `body = Problem` as `application/json`;
//! - the statuses the shared plumbing can answer on any route are listed
//!   where they can occur: 401 and 403 on every route that takes a token
//!   (`authorize`), 400/413/415 on every route with a JSON body
//!   (`extract::ValidJson`, the body limit), 400 on every route with query
//!   or header parameters (`extract::ValidQuery`, If-Match), 404 on every route with a path
//!   parameter, 409/422 where `Idempotency-Key` is accepted
//!   (`idempotency`), and `Retry-After` on every 429.
//!
//! What only a handler knows (a 409 on a stale version, a 429 from a rate
//! limit, a 422 for an empty bulk filter) stays in its annotation; a
//! status the annotation already documents keeps its own description.

use axum::http::Method;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr};

use crate::http::{Access, Route};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";
const PROBLEM_REF: &str = "#/components/schemas/Problem";

/// A `utoipa::Modify` over one function's document and its route table:
/// `#[openapi(modifiers(&ERROR_RESPONSES))]` with
/// `static ERROR_RESPONSES: ErrorResponses = ErrorResponses(ROUTES);`.
pub struct ErrorResponses(pub &'static [Route]);

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, schema) in [
            ("Problem", <crate::platform::error::Problem as utoipa::PartialSchema>::schema()),
            ("FieldError", <crate::platform::error::FieldError as utoipa::PartialSchema>::schema()),
        ] {
            components.schemas.entry(name.to_string()).or_insert(schema);
        }
        for route in self.0 {
            let Some(op) = openapi.paths.paths.get_mut(route.path).and_then(|item| operation_mut(item, &route.method)) else {
                // tests/api/openapi.rs fails on a route the document misses.
                continue;
            };
            add_shared_errors(op, route);
        }
        // Every error the document describes, in routes or not.
        for item in openapi.paths.paths.values_mut() {
            for op in operations_mut(item) {
                for (status, response) in op.responses.responses.iter_mut() {
                    if let RefOr::T(response) = response {
                        as_problem_json(status, response);
                    }
                }
            }
        }
    }
}

fn operation_mut<'a>(item: &'a mut PathItem, method: &Method) -> Option<&'a mut Operation> {
    match *method {
        Method::GET => item.get.as_mut(),
        Method::POST => item.post.as_mut(),
        Method::PUT => item.put.as_mut(),
        Method::DELETE => item.delete.as_mut(),
        Method::PATCH => item.patch.as_mut(),
        Method::HEAD => item.head.as_mut(),
        Method::OPTIONS => item.options.as_mut(),
        _ => None,
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch, &mut item.head, &mut item.options, &mut item.trace]
        .into_iter()
        .filter_map(Option::as_mut)
}

fn add_shared_errors(op: &mut Operation, route: &Route) {
    let params = op.parameters.as_deref().unwrap_or_default();
    // Query parameters and headers (If-Match, Idempotency-Key) are parsed
    // and refused with a 400 naming them.
    let has_query = params.iter().any(|p| matches!(p.parameter_in, ParameterIn::Query | ParameterIn::Header));
    let has_path = params.iter().any(|p| p.parameter_in == ParameterIn::Path) || route.path.contains('{');
    let idempotent = params.iter().any(|p| p.parameter_in == ParameterIn::Header && p.name.eq_ignore_ascii_case(crate::http::idempotency::HEADER));
    let json_body = op.request_body.as_ref().is_some_and(|b| b.content.keys().any(|ct| ct == "application/json" || ct.ends_with("+json")));
    let any_body = op.request_body.is_some();

    let mut add = |status: &str, description: &str| {
        op.responses.responses.entry(status.to_string()).or_insert_with(|| RefOr::T(problem(description)));
    };
    if any_body || has_query {
        add("400", "Invalid input: the failing fields are listed in `errors`");
    }
    match route.access {
        Access::Public => {}
        Access::OptionallyAuthenticated => add("401", "An access token was sent and is not valid (missing, malformed, expired or revoked)"),
        _ => add("401", "No valid access token (missing, malformed, expired or revoked)"),
    }
    if !route.access.permissions().is_empty() {
        add("403", "The caller lacks the permission named in `missing_permission`, or holds a token limited to 2FA enrolment");
    } else if matches!(route.access, Access::Authenticated | Access::OptionallyAuthenticated) && !route.enrolment {
        add("403", "A token limited to 2FA enrolment (`mfa-enrollment-required`): enrol 2FA and sign in again");
    }
    if has_path {
        add("404", "Nothing by that name or id (or not visible to the caller)");
    }
    if idempotent {
        add("409", "A request with this Idempotency-Key is still in progress");
        add("422", "This Idempotency-Key was used for a different request");
    }
    if any_body {
        add("413", "The request body is larger than the limit");
        let expected = if json_body { "application/json" } else { "the documented media type" };
        add("415", &format!("The body is not {expected} (`content-type` in `errors`)"));
    }
}

/// An error response: a problem body.
fn problem(description: &str) -> Response {
    let mut response = Response::new(description);
    response.content.insert(PROBLEM_JSON.to_string(), Content::new(Some(Ref::new(PROBLEM_REF))));
    response
}

/// utoipa writes `body = Problem` as `application/json`; Keel sends it as
/// `application/problem+json`. A 429 also names its `Retry-After` header.
fn as_problem_json(status: &str, response: &mut Response) {
    let is_problem = |c: &Content| matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location == PROBLEM_REF);
    if let Some(index) = response.content.get_index_of("application/json")
        && is_problem(&response.content[index])
    {
        let (_, content) = response.content.shift_remove_index(index).expect("index just found");
        response.content.shift_insert(index, PROBLEM_JSON.to_string(), content);
    }
    if status == "429" {
        response.headers.entry("Retry-After".to_string()).or_insert_with(|| {
            let mut header = utoipa::openapi::header::Header::new(Object::with_type(Type::Integer));
            header.description = Some("Seconds to wait before trying again".into());
            header
        });
    }
}
