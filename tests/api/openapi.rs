//! The OpenAPI document: generated from the code, committed at
//! docs/openapi.json (served by the auth function), covering every route.
//! `make openapi` rewrites the file after an API change.

use utoipa::OpenApi;

fn document() -> serde_json::Value {
    let mut doc = auth::ApiDoc::openapi();
    doc.merge(admin::ApiDoc::openapi());
    doc.merge(data::ApiDoc::openapi());
    doc.merge(analytics::ApiDoc::openapi());
    doc.merge(reports::ApiDoc::openapi());
    doc.merge(search::ApiDoc::openapi());
    doc.merge(integrations::ApiDoc::openapi());
    doc.merge(compliance::ApiDoc::openapi());
    doc.merge(workflows::ApiDoc::openapi());
    doc.info = utoipa::openapi::InfoBuilder::new()
        .title("Keel API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some("Enterprise admin, analytics and compliance backend. Errors are RFC 9457 problem+json."))
        .build();
    doc.servers = Some(vec![utoipa::openapi::Server::new("/")]);
    serde_json::to_value(&doc).unwrap()
}

/// Each function's document names its schemas on its own; merged, a name
/// used by two functions for different shapes would describe one of them
/// wrongly (admin's `BulkStatus` once stood for data's bulk job status).
#[test]
fn no_schema_name_means_two_shapes() {
    let docs = [
        ("auth", auth::ApiDoc::openapi()),
        ("admin", admin::ApiDoc::openapi()),
        ("data", data::ApiDoc::openapi()),
        ("analytics", analytics::ApiDoc::openapi()),
        ("reports", reports::ApiDoc::openapi()),
        ("search", search::ApiDoc::openapi()),
        ("integrations", integrations::ApiDoc::openapi()),
        ("compliance", compliance::ApiDoc::openapi()),
        ("workflows", workflows::ApiDoc::openapi()),
    ];
    let mut seen: std::collections::BTreeMap<String, (&str, serde_json::Value)> = Default::default();
    let mut clashes = Vec::new();
    for (function, doc) in docs {
        let Some(components) = doc.components else { continue };
        for (name, schema) in components.schemas {
            let schema = serde_json::to_value(schema).unwrap();
            match seen.get(&name) {
                Some((other, earlier)) if earlier != &schema => clashes.push(format!("{name} ({other}, {function})")),
                Some(_) => {}
                None => {
                    seen.insert(name, (function, schema));
                }
            }
        }
    }
    assert!(clashes.is_empty(), "schema names meaning different shapes: {}", clashes.join(", "));
}

#[test]
fn every_route_is_documented() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for route in crate::rbac::all_routes() {
        let method = route.method.as_str().to_lowercase();
        let op = &doc["paths"][route.path][&method];
        assert!(op.is_object(), "{} {} is missing from the OpenAPI document", route.method, route.path);
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{} {} has no responses", route.method, route.path);
    }
    let documented: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, crate::rbac::all_routes().len(), "the document lists a route the code does not serve");
}

/// Errors as they are sent: problem+json, and the statuses the shared
/// plumbing answers on any route (shared::http::openapi).
#[test]
fn errors_are_documented_as_sent() {
    let doc = document();
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    for route in crate::rbac::all_routes() {
        let context = format!("{} {}", route.method, route.path);
        let op = &doc["paths"][route.path][route.method.as_str().to_lowercase()];
        let responses = op["responses"].as_object().unwrap();
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let content = response["content"].as_object().unwrap_or_else(|| panic!("{context}: {status} has no body"));
                assert_eq!(content.keys().collect::<Vec<_>>(), ["application/problem+json"], "{context}: {status}");
                assert_eq!(content["application/problem+json"]["schema"]["$ref"], "#/components/schemas/Problem", "{context}: {status}");
            }
        }
        let has = |status: &str| responses.contains_key(status);
        if route.access != shared::http::Access::Public {
            assert!(has("401"), "{context}: takes a token but documents no 401");
        }
        if op["requestBody"].is_object() {
            assert!(has("400") && has("413") && has("415"), "{context}: takes a body but misses 400, 413 or 415");
        }
        if has("429") {
            assert!(responses["429"]["headers"]["Retry-After"].is_object(), "{context}: 429 without Retry-After");
        }
    }
    for path in ["/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/2fa/verify"] {
        assert!(doc["paths"][path]["post"]["responses"]["429"].is_object(), "POST {path}: rate limited but documents no 429");
    }
}

#[test]
fn committed_document_is_current() {
    let generated = serde_json::to_string_pretty(&document()).unwrap() + "\n";
    let path = keel_local::repo_root().join("docs/openapi.json");
    if std::env::var("KEEL_UPDATE_OPENAPI").is_ok() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(committed == generated, "docs/openapi.json is stale: run `make openapi`");
}

#[tokio::test]
async fn served_at_api_v1_openapi_json() {
    let app = crate::helpers::TestApp::spawn().await;
    let r = app.call(http::Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, document());
}
