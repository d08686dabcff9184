//! Warm request latency, in-process: an authenticated `GET
//! /api/v1/admin/users/{id}` through Keel's real middleware stack
//! (`shared::http::secure` with `admin::ROUTES`: request id and log span,
//! body limit, ES256 JWT verification, RBAC from the route table) to a
//! handler that takes the real `Principal` extractor and `Path` and answers
//! with `UserView::of` a prebuilt user. Only the DynamoDB read is left out,
//! so this is what Keel's own code costs per request, including the log
//! line and EMF metric line the middleware writes for every request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::routing::get;
use axum::{Json, Router};
use http_body_util::BodyExt;
use shared::http::{Platform, Principal};
use shared::identity::token::TokenVerifier;
use shared::identity::users::User;
use shared::platform::error::{Error, Result};
use tower::ServiceExt;

/// `admin::users::read` without the store: the prebuilt user stands in for
/// the GetItem result.
async fn read_prebuilt(State(user): State<Arc<User>>, principal: Principal, Path(user_id): Path<String>) -> Result<Json<admin::users::UserView>> {
    if user_id != user.id {
        return Err(Error::NotFound(format!("no user {user_id}")));
    }
    Ok(Json(admin::users::UserView::of(user.as_ref().clone(), &principal)))
}

/// The admin function's middleware around the store-free handler.
pub fn stubbed_router(platform: &Platform, user: User) -> Router {
    let routes = Router::new().route("/api/v1/admin/users/{user_id}", get(read_prebuilt)).with_state(Arc::new(user));
    shared::http::secure(routes, platform, admin::ROUTES)
}

/// One authenticated GET, as API Gateway would pass it on.
pub struct Call {
    path: String,
    authorization: HeaderValue,
}

impl Call {
    pub fn get(path: String, token: &str) -> anyhow::Result<Call> {
        Ok(Call { path, authorization: HeaderValue::from_str(&format!("Bearer {token}"))? })
    }

    fn request(&self) -> anyhow::Result<Request<Body>> {
        Ok(Request::get(self.path.as_str())
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, "keel-bench")
            .header("x-forwarded-for", "198.51.100.23")
            .body(Body::empty())?)
    }

    /// `warmup` untimed requests, then `count` timed one at a time. Building
    /// the request is outside the timing; routing, middleware, handler and
    /// reading the body are inside. Every response must be 200.
    pub async fn time(&self, router: &Router, warmup: usize, count: usize) -> anyhow::Result<Vec<Duration>> {
        for _ in 0..warmup {
            self.expect_ok(send(router, self.request()?).await?)?;
        }
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let request = self.request()?;
            let started = Instant::now();
            let response = send(router, request).await?;
            samples.push(started.elapsed());
            self.expect_ok(response)?;
        }
        Ok(samples)
    }

    fn expect_ok(&self, (status, body): (StatusCode, Bytes)) -> anyhow::Result<()> {
        if status != StatusCode::OK {
            bail!("GET {} answered {status}: {}", self.path, String::from_utf8_lossy(&body));
        }
        Ok(())
    }

    /// The JSON body of a request that must succeed.
    pub async fn json(&self, router: &Router) -> anyhow::Result<serde_json::Value> {
        let (status, body) = send(router, self.request()?).await?;
        self.expect_ok((status, body.clone()))?;
        serde_json::from_slice(&body).context("response body is not JSON")
    }
}

/// Send `request` through a clone of `router` and read the whole body.
async fn send(router: &Router, request: Request<Body>) -> anyhow::Result<(StatusCode, Bytes)> {
    let response = router.clone().oneshot(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// `shared::http::authenticate` alone (ES256 verification, and the claims
/// turned into a `Principal` with its permission set from the warm role
/// catalog), timed the same way.
pub async fn time_authenticate(
    verifier: &TokenVerifier,
    roles: &shared::identity::roles::RoleCatalog,
    token: &str,
    warmup: usize,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let authorization = format!("Bearer {token}");
    for _ in 0..warmup {
        shared::http::authenticate(verifier, roles, Some(&authorization)).await?;
    }
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let principal = shared::http::authenticate(verifier, roles, Some(&authorization)).await;
        samples.push(started.elapsed());
        principal?;
    }
    Ok(samples)
}
