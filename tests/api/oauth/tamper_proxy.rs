//! A loopback proxy in front of the provider: it forwards every request
//! unchanged (Host included, so the provider names the proxy as issuer),
//! except that in the token endpoint's answer it rewrites the id_token's
//! payload and keeps the provider's header and signature — an id_token
//! altered in transit.

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::Value;

pub struct TamperProxy {
    pub url: String,
    listener: tokio::net::TcpListener,
}

impl TamperProxy {
    /// Take a port first: the provider must know its public issuer URL.
    pub async fn bind() -> TamperProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        TamperProxy { url: format!("http://{}", listener.local_addr().unwrap()), listener }
    }

    /// Forward to `upstream` until the test ends.
    pub fn serve(self, upstream: String) {
        let router = Router::new().fallback(forward).with_state(upstream);
        tokio::spawn(async move { axum::serve(self.listener, router).await.unwrap() });
    }
}

async fn forward(State(upstream): State<String>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 1 << 20).await.unwrap();
    let target = format!("{upstream}{}", parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut outgoing = client.request(parts.method.clone(), target);
    for (name, value) in &parts.headers {
        if name != "content-length" {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = outgoing.body(body.to_vec()).send().await.unwrap();
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            response = response.header(name, value);
        }
    }
    let mut bytes = answer.bytes().await.unwrap().to_vec();
    if parts.uri.path() == "/token" {
        bytes = swap_id_token_payload(&bytes);
    }
    response.body(Body::from(bytes)).unwrap()
}

/// Claim to be someone else, keeping the signature.
fn swap_id_token_payload(body: &[u8]) -> Vec<u8> {
    let mut answer: Value = serde_json::from_slice(body).unwrap();
    let Some(id_token) = answer["id_token"].as_str() else { return body.to_vec() };
    let parts: Vec<&str> = id_token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = "mallory".into();
    claims["email"] = "mallory@example.com".into();
    answer["id_token"] = format!("{}.{}.{}", parts[0], B64.encode(claims.to_string()), parts[2]).into();
    answer.to_string().into_bytes()
}
