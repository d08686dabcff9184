//! The real OpenID provider (tests/oidc/provider.js, oidc-provider from npm)
//! on a free loopback port, one per test. It exits when its stdin closes, so
//! it dies with the test process even if that is killed; dropping this
//! handle closes stdin and kills it.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const CLIENT_ID: &str = "keel";
pub const CLIENT_SECRET: &str = "keel-test-secret";

/// The provider's static accounts (see provider.js).
pub const ADA: (&str, &str) = ("ada", "ada-password");
pub const ADA_EMAIL: &str = "ada@example.com";
pub const EVE: (&str, &str) = ("eve", "eve-password");
pub const EVE_EMAIL: &str = "eve@example.com";

#[derive(Default)]
pub struct Options {
    /// Keel's callback, registered as the client's redirect URI.
    pub redirect_uri: String,
    /// When a proxy fronts the provider: the issuer it answers as.
    pub issuer: Option<String>,
    /// Authorization code lifetime in seconds.
    pub code_ttl: Option<u32>,
    /// Keep email and profile claims out of the id_token (userinfo only).
    pub claims_in_userinfo: bool,
}

pub struct OidcProvider {
    pub issuer: String,
    pub port: u16,
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.start_kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl OidcProvider {
    pub async fn start(options: Options) -> OidcProvider {
        let dir = keel_local::repo_root().join("tests/oidc");
        assert!(dir.join("node_modules/oidc-provider").exists(), "tests/oidc/node_modules is missing: run `make test` (or `npm ci --prefix tests/oidc`)");
        let port = free_port();
        let node = std::env::var("KEEL_NODE").unwrap_or_else(|_| "node".into());
        let mut command = Command::new(node);
        command
            .arg(dir.join("provider.js"))
            .arg(port.to_string())
            .env("OIDC_REDIRECT_URI", &options.redirect_uri)
            .env("OIDC_CLIENT_ID", CLIENT_ID)
            .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(issuer) = &options.issuer {
            command.env("OIDC_ISSUER", issuer);
        }
        if let Some(ttl) = options.code_ttl {
            command.env("OIDC_CODE_TTL", ttl.to_string());
        }
        if options.claims_in_userinfo {
            command.env("OIDC_CLAIMS_IN_USERINFO", "1");
        }
        let mut child = command.spawn().expect("start node (node 20+ must be on PATH, or set KEEL_NODE)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("oidc-provider did not start within 30 s")
            .unwrap()
            .expect("oidc-provider exited");
        let ready: Value = serde_json::from_str(&ready).unwrap();
        assert_eq!(ready["ready"], true, "{ready}");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(event);
                }
            }
        });
        OidcProvider { issuer: ready["issuer"].as_str().unwrap().to_string(), port, child, events }
    }

    /// What the provider reported about token requests so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// The reason the provider gave itself for the last refused grant (it
    /// tells the client only "grant request is invalid").
    pub async fn last_grant_error(&self) -> String {
        for _ in 0..50 {
            if let Some(e) = self.events().iter().rev().find(|e| e["event"] == "grant.error") {
                return e["detail"].as_str().unwrap_or("").to_string();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the provider reported no grant error: {:?}", self.events());
    }
}
