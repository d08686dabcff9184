//! Assembles the local application: every API function's router merged on
//! one server (same paths as API Gateway), the workers (jobs, audit sealer),
//! and the bootstrap of the first super admin.

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use axum::Router;
use shared::aws::Clients;
use shared::config::Config;
use shared::http::Platform;
use shared::token::TokenVerifier;

pub struct LocalApp {
    pub router: Router,
    pub platform: Platform,
    pub clients: Clients,
    pub signer: auth::Signer,
    pub worker: jobs::Worker,
    pub sealer: scheduler::Sealer,
}

/// Build every function exactly as its `main.rs` would, from the stack's
/// environment.
pub async fn build(sdk: &SdkConfig, env: &HashMap<String, String>) -> anyhow::Result<LocalApp> {
    let config = Arc::new(Config::from_map(env)?);
    let clients = Clients::from_sdk_config(sdk);
    let verifier = TokenVerifier::load(&clients.kms, &config.signing_key_id, &config.issuer).await?;
    let platform = Platform::new(config.clone(), &clients, verifier);
    let signer = auth::Signer::new(clients.kms.clone(), &config.signing_key_id, &platform.verifier);
    let router = Router::new()
        .merge(auth::router(auth::AuthState { platform: platform.clone(), signer: signer.clone() }))
        .merge(admin::router(admin::AdminState { platform: platform.clone(), sqs: clients.sqs.clone(), audit: admin::audit_chain_reader(&platform, &clients) }))
        .fallback(shared::http::not_found);
    let worker = jobs::Worker::new(config.clone(), sdk);
    let sealer = scheduler::Sealer::new(config, &clients);
    Ok(LocalApp { router, platform, clients, signer, worker, sealer })
}
