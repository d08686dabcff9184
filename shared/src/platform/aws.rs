//! AWS SDK clients, built once in `main` and lent to handlers. The endpoint
//! comes from the standard `AWS_ENDPOINT_URL` when set (the local stack).
//!
//! Every SDK client of a process shares one HTTPS client whose TLS setup
//! (reading and parsing the system's trusted root certificates) happens on
//! the first request, once per process. The SDK's default instead builds it
//! for each SDK client as the client is constructed, which is most of a cold
//! start's own work when a function builds five clients and then waits for
//! its first event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_smithy_http_client::{ConnectorBuilder, proxy::ProxyConfig, tls};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

#[derive(Clone, Debug)]
pub struct Clients {
    pub dynamo: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
}

impl Clients {
    pub fn from_env() -> Self {
        Self::from_sdk_config(&sdk_config())
    }

    pub fn from_sdk_config(sdk: &aws_config::SdkConfig) -> Self {
        Clients { dynamo: aws_sdk_dynamodb::Client::new(sdk), kms: aws_sdk_kms::Client::new(sdk), sqs: aws_sdk_sqs::Client::new(sdk), s3: s3_client(sdk) }
    }
}

/// The S3 client. An emulator endpoint (the local stack) needs path-style
/// addressing; AWS itself takes virtual-hosted style.
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(sdk).force_path_style(sdk.endpoint_url().is_some()).build())
}

/// A function's SDK configuration, from the variables Lambda sets
/// (`AWS_REGION`, the execution role's `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and `AWS_ENDPOINT_URL`
/// (the local stack), with the process's one shared HTTPS client.
///
/// Not `aws_config::load_from_env`: its chain of providers (profile files,
/// SSO, STS web identity and assume-role, ECS, IMDS) is code a function never
/// runs, and about 0.45 MB of each binary (issue 2's size goal). Retries,
/// timeouts, the identity cache and stalled-stream protection keep the
/// service clients' defaults for this behavior version, as with aws-config.
/// The CLI and the local stack, which may run anywhere, keep aws-config.
pub fn sdk_config() -> aws_config::SdkConfig {
    sdk_config_from(|name| std::env::var(name).ok())
}

/// [`sdk_config`] with the variables looked up by `var` (tests).
pub fn sdk_config_from(var: impl Fn(&str) -> Option<String>) -> aws_config::SdkConfig {
    let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let mut config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .retry_config(aws_config::retry::RetryConfig::standard());
    if let Some(region) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
        config.set_region(Some(aws_config::Region::new(region)));
    }
    if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        let credentials = aws_credential_types::Credentials::new(id, secret, var("AWS_SESSION_TOKEN"), None, "environment");
        config.set_credentials_provider(Some(aws_credential_types::provider::SharedCredentialsProvider::new(credentials)));
    }
    config.set_endpoint_url(var("AWS_ENDPOINT_URL"));
    config.build()
}

/// One HTTPS client for every SDK client of the process: rustls with ring
/// (`crypto_provider`) and the system's root certificates, as the SDK's
/// default client (which would bring aws-lc-rs), but with its TLS connector
/// built on the first request rather than at construction, and shared by
/// every SDK client that uses it.
pub fn https_client() -> SharedHttpClient {
    crate::platform::tls::install();
    SharedHttpClient::new(LazyHttpsClient::default())
}

/// Connector timeouts: the key under which a connector is reused.
type SettingsKey = (Option<Duration>, Option<Duration>);

#[derive(Debug, Default)]
struct LazyHttpsClient {
    connectors: Mutex<HashMap<SettingsKey, SharedHttpConnector>>,
}

impl HttpClient for LazyHttpsClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        // A poisoned lock only means another thread panicked while inserting;
        // the map itself is still usable.
        let mut connectors = self.connectors.lock().unwrap_or_else(|e| e.into_inner());
        connectors
            .entry(key)
            .or_insert_with(|| {
                // What the SDK's default HTTPS client builds (aws-smithy-runtime,
                // `default_https_client`), including proxies from the environment.
                let mut builder = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring));
                builder.set_connector_settings(Some(settings.clone()));
                builder.set_sleep_impl(components.sleep_impl());
                builder.set_proxy_config(Some(ProxyConfig::from_env()));
                SharedHttpConnector::new(builder.build())
            })
            .clone()
    }

    // `validate_base_client_config` keeps its default (nothing to check):
    // the SDK's own client builds its connector there, at construction,
    // which is what this client defers to the first request.

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        Some(ConnectorMetadata::new("hyper", Some(std::borrow::Cow::Borrowed("1.x"))))
    }
}

/// Send message bodies to a queue with SendMessageBatch, 10 a call; fails
/// if any message was not accepted. `what` names the messages in errors
/// (`job`, `webhook`).
pub async fn send_batch(sqs: &aws_sdk_sqs::Client, queue_url: &str, bodies: &[String], what: &str) -> crate::platform::error::Result<()> {
    use crate::platform::error::Error;
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    for (n, batch) in bodies.chunks(10).enumerate() {
        let entries = batch
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder().id(format!("m{n}_{i}")).message_body(body).build().map_err(|e| Error::internal(e.to_string()))
            })
            .collect::<crate::platform::error::Result<Vec<_>>>()?;
        let out = sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(crate::platform::error::aws("sqs SendMessageBatch"))?;
        if !out.failed().is_empty() {
            return Err(Error::internal(format!("{} {what} messages were not accepted", out.failed().len())));
        }
    }
    Ok(())
}
