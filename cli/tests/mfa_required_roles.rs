//! `keel mfa-required-roles` against a local stack: shows the roles that
//! require 2FA (super_admin and admin by default), sets them (audited),
//! and refuses unknown roles.

use std::process::Command;

#[tokio::test]
async fn shows_and_sets_the_roles_that_require_2fa() {
    let moto = keel_local::moto::Moto::start(None).await.unwrap();
    let sdk = keel_local::sdk_config(&moto.endpoint).await;
    let template = keel_local::template::Template::load(&keel_local::repo_root().join("template.yaml")).unwrap();
    let stack = keel_local::provision::provision(&sdk, &template, "cli-mfa-test", &Default::default()).await.unwrap();
    let env_file = std::env::temp_dir().join(format!("keel-cli-mfa-{}.env", std::process::id()));
    keel_local::write_env_file(&env_file, &moto.endpoint, &stack).unwrap();
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_keel")).args(["--env-file", env_file.to_str().unwrap(), "mfa-required-roles"]).args(extra).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    };

    let (ok, stdout, _) = run(&[]);
    assert!(ok && stdout.contains("super_admin, admin"), "{stdout}");
    let (ok, stdout, stderr) = run(&["--set", "admin,support,super_admin"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("admin, super_admin, support"), "{stdout}");
    let (ok, _, stderr) = run(&["--set", "admin,root"]);
    assert!(!ok && stderr.contains("roles[1]"), "{stderr}");

    let store = shared::store::Store::new(aws_sdk_dynamodb::Client::new(&sdk), stack.env["KEEL_TABLE"].clone());
    assert!(shared::domain::two_factor_policy::requires_2fa(&store, &["support".to_string()]).await.unwrap());
    assert!(!shared::domain::two_factor_policy::requires_2fa(&store, &["analyst".to_string()]).await.unwrap());
    let spec = shared::store::QuerySpec {
        index: Some("gsi2"),
        key_condition: "gsi2pk = :pk",
        values: vec![(":pk", shared::store::s("TARGET#config#system"))],
        ..Default::default()
    };
    let entries: Vec<shared::audit::AuditEntry> = store.query_all(&spec).await.unwrap().into_iter().map(|i| shared::store::from_item(i).unwrap()).collect();
    assert_eq!(entries.len(), 1, "one change, by the cli");
    assert_eq!(entries[0].actor.id, "cli");
    let _ = std::fs::remove_file(env_file);
}
