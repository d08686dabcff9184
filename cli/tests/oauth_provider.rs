//! `keel oauth-provider set | list | remove` against a local stack: the
//! client secret comes from stdin and is stored only sealed, bad settings
//! name their field, and every change is audited with the `cli` actor.

use std::io::Write;
use std::process::{Command, Output, Stdio};

#[tokio::test]
async fn configures_lists_and_removes_providers() {
    let moto = keel_local::moto::Moto::start(None).await.unwrap();
    let sdk = keel_local::sdk_config(&moto.endpoint).await;
    let template = keel_local::template::Template::load(&keel_local::repo_root().join("template.yaml")).unwrap();
    let stack = keel_local::provision::provision(&sdk, &template, "cli-oauth", &Default::default()).await.unwrap();
    let env_file = std::env::temp_dir().join(format!("keel-cli-oauth-{}.env", std::process::id()));
    keel_local::write_env_file(&env_file, &moto.endpoint, &stack).unwrap();

    let run = |args: &[&str], stdin: Option<&str>| -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["--env-file", env_file.to_str().unwrap(), "oauth-provider"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    };
    let text = |o: &Output| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let redirect = "https://admin.example.com/api/v1/auth/oauth/acme/callback";
    let set = [
        "set",
        "--name",
        "acme",
        "--kind",
        "oidc",
        "--issuer",
        "https://idp.example.com",
        "--client-id",
        "keel-admin",
        "--client-secret-stdin",
        "--redirect-uri",
        redirect,
    ];

    let created = run(&set, Some("s3cret-value\n"));
    assert!(created.status.success(), "{}", text(&created));
    assert!(text(&created).contains("Created OAuth provider acme (oidc), version 1"), "{}", text(&created));

    let store = shared::store::Store::new(aws_sdk_dynamodb::Client::new(&sdk), stack.env["KEEL_TABLE"].clone());
    let item = store.get_item("OAUTH#acme", "CONFIG").await.unwrap().unwrap();
    assert!(!format!("{item:?}").contains("s3cret-value"), "the secret is stored in the clear");
    let config = shared::identity::oauth::get(&store, "acme").await.unwrap().unwrap();
    let envelope = shared::platform::crypto::Envelope::new(aws_sdk_kms::Client::new(&sdk), stack.env["KEEL_DATA_KEY_ID"].clone());
    assert_eq!(config.client_secret(&envelope).await.unwrap(), "s3cret-value");
    assert_eq!(config.scopes, ["openid", "email", "profile"]);

    let mut with_scopes = set.to_vec();
    with_scopes.extend(["--scopes", "openid email", "--scopes", "groups"]);
    let updated = run(&with_scopes, Some("rotated-secret\n"));
    assert!(text(&updated).contains("Updated OAuth provider acme (oidc), version 2"), "{}", text(&updated));
    let config = shared::identity::oauth::get(&store, "acme").await.unwrap().unwrap();
    assert_eq!(
        (config.scopes.clone(), config.client_secret(&envelope).await.unwrap()),
        (vec!["openid".to_string(), "email".into(), "groups".into()], "rotated-secret".to_string())
    );

    let bad = run(
        &["set", "--name", "Bad#Name", "--kind", "okta", "--client-id", "x", "--client-secret-stdin", "--redirect-uri", "http://admin.example.com/cb"],
        Some("x\n"),
    );
    assert!(!bad.status.success());
    for field in ["name:", "kind:", "redirect_uri:"] {
        assert!(text(&bad).contains(field), "{field} not named: {}", text(&bad));
    }
    let no_stdin_flag = run(&["set", "--name", "x", "--kind", "google", "--client-id", "x", "--redirect-uri", redirect], None);
    assert!(!no_stdin_flag.status.success() && text(&no_stdin_flag).contains("--client-secret-stdin"));

    let listed = run(&["list"], None);
    assert!(text(&listed).contains("acme\toidc\thttps://idp.example.com\tclient keel-admin"), "{}", text(&listed));
    assert!(!text(&listed).contains("rotated-secret"));

    assert!(run(&["remove", "--name", "acme"], None).status.success());
    assert!(text(&run(&["remove", "--name", "acme"], None)).contains("no OAuth provider named"));
    assert!(text(&run(&["list"], None)).contains("No OAuth providers are configured."));

    let spec = shared::store::QuerySpec {
        index: Some("gsi2"),
        key_condition: "gsi2pk = :pk",
        values: vec![(":pk", shared::store::s("TARGET#oauth_provider#acme"))],
        ..Default::default()
    };
    let entries: Vec<shared::audit::AuditEntry> = store.query_all(&spec).await.unwrap().into_iter().map(|i| shared::store::from_item(i).unwrap()).collect();
    let mut actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    actions.sort();
    assert_eq!(actions, ["oauth_provider.create", "oauth_provider.delete", "oauth_provider.update"]);
    assert!(entries.iter().all(|e| e.actor.kind == "cli"));
    assert!(
        entries.iter().all(|e| !serde_json::to_string(e).unwrap().contains("secret-value") && !serde_json::to_string(e).unwrap().contains("rotated-secret"))
    );
    let _ = std::fs::remove_file(env_file);
}
