//! `keel bootstrap-admin` against a local stack: creates a super admin who
//! can sign in, refuses a second bootstrap, and never takes a password as an
//! argument.

use std::io::Write;
use std::process::{Command, Stdio};

#[tokio::test]
async fn bootstrap_admin_creates_a_super_admin_once() {
    let moto = keel_local::moto::Moto::start(None).await.unwrap();
    let sdk = keel_local::sdk_config(&moto.endpoint).await;
    let template = keel_local::template::Template::load(&keel_local::repo_root().join("template.yaml")).unwrap();
    let stack = keel_local::provision::provision(&sdk, &template, "cli-test", &Default::default()).await.unwrap();
    let env_file = std::env::temp_dir().join(format!("keel-cli-{}.env", std::process::id()));
    keel_local::write_env_file(&env_file, &moto.endpoint, &stack).unwrap();

    let run = |email: &str, extra: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["--env-file", env_file.to_str().unwrap(), "bootstrap-admin", "--email", email])
            .args(extra)
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
    let out = run("ops@example.com", &[], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Created super admin ops@example.com"), "{stdout}");
    let password = stdout.lines().find_map(|l| l.split("): ").nth(1)).unwrap().trim().to_string();

    let store = shared::store::Store::new(aws_sdk_dynamodb::Client::new(&sdk), stack.env["KEEL_TABLE"].clone());
    let email = shared::identity::users::Email::parse("ops@example.com").unwrap();
    let user = shared::identity::users::find_by_email(&store, &email).await.unwrap().unwrap();
    assert_eq!(user.roles, vec!["super_admin"]);
    assert!(shared::platform::crypto::verify_password(&password, user.password_hash.as_deref().unwrap()));

    let second = run("second@example.com", &["--password-stdin"], Some("another long password\n"));
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already bootstrapped"));
    let breakglass = run("second@example.com", &["--password-stdin", "--additional"], Some("another long password\n"));
    assert!(breakglass.status.success(), "{}", String::from_utf8_lossy(&breakglass.stderr));
    let weak = run("third@example.com", &["--password-stdin", "--additional"], Some("short\n"));
    assert!(String::from_utf8_lossy(&weak.stderr).contains("password"));
    let _ = std::fs::remove_file(env_file);
}
