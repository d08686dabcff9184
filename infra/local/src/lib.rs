//! The local stack: moto as the AWS endpoint, every resource created from
//! template.yaml itself (so local cannot drift from deployed), every API
//! function's router on one port, the jobs queue polled as Lambda's event
//! source mapping would, and demo data. Tests and benchmarks use the same
//! pieces.

pub mod app;
pub mod moto;
pub mod poller;
pub mod provision;
pub mod schedule;
pub mod seed;
pub mod stream_reader;
pub mod template;

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Region and fake credentials for the emulator.
pub const REGION: &str = "us-east-1";

pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(shared::platform::aws::https_client())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(aws_credential_types::Credentials::new("local", "local", None, None, "keel-local"))
        .load()
        .await
}

/// S3 against the emulator needs path-style addressing.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(sdk).force_path_style(true).build())
}

/// The repository root (where template.yaml is), found from this crate.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// `make dev` settings from the environment.
pub struct Settings {
    pub port: u16,
    pub admin_email: String,
    pub admin_password: String,
    pub demo_users: usize,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Settings> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let port = var("KEEL_PORT").map(|p| p.parse()).transpose().map_err(|_| anyhow::anyhow!("KEEL_PORT must be a port number"))?.unwrap_or(3000);
        let demo_users =
            var("KEEL_DEMO_USERS").map(|p| p.parse()).transpose().map_err(|_| anyhow::anyhow!("KEEL_DEMO_USERS must be a number"))?.unwrap_or(3000);
        Ok(Settings {
            port,
            admin_email: var("KEEL_ADMIN_EMAIL").unwrap_or_else(|| "admin@keel.local".into()),
            // No default password: a fresh random one each run unless given.
            admin_password: var("KEEL_ADMIN_PASSWORD").unwrap_or_else(shared::platform::crypto::random_token),
            demo_users,
        })
    }

    /// Template parameter overrides for the local stack.
    /// `KEEL_STRIPE_WEBHOOK_SECRET` in the environment is used as the Stripe
    /// signing secret (the one `stripe listen` prints); else one is made.
    pub fn parameters(&self) -> std::collections::HashMap<String, String> {
        let mut parameters = std::collections::HashMap::from([
            ("PublicUrl".to_string(), format!("http://127.0.0.1:{}", self.port)),
            ("EmailFrom".to_string(), "noreply@keel.local".to_string()),
        ]);
        if let Ok(secret) = std::env::var("KEEL_STRIPE_WEBHOOK_SECRET") {
            parameters.insert("StripeWebhookSecret".to_string(), secret);
        }
        parameters
    }
}

/// Write the emulator endpoint and every resource name for the CLI, the
/// `aws` CLI and scripts (`set -a; . .keel/local.env`).
pub fn write_env_file(path: &std::path::Path, endpoint: &str, stack: &provision::Stack) -> anyhow::Result<()> {
    let mut lines = vec![
        "# Written by `make dev`: the local stack's endpoint and resource names.".to_string(),
        format!("AWS_ENDPOINT_URL={endpoint}"),
        format!("AWS_REGION={REGION}"),
        "AWS_ACCESS_KEY_ID=local".to_string(),
        "AWS_SECRET_ACCESS_KEY=local".to_string(),
    ];
    let mut env: Vec<_> = stack.env.iter().collect();
    env.sort();
    lines.extend(env.into_iter().map(|(k, v)| format!("{k}={v}")));
    let mut resources: Vec<_> = stack.resources.iter().collect();
    resources.sort_by_key(|(k, _)| k.as_str());
    for (id, r) in resources {
        lines.push(format!("KEEL_RESOURCE_{}={}", id.to_uppercase(), r.reference));
    }
    std::fs::write(path, lines.join("\n") + "\n")?;
    Ok(())
}
