//! `keel backup create|list|verify|restore` against a local stack: a full
//! and an incremental backup taken here, listed, verified, and the chain
//! restored into a new table holding what the live table held.

use std::process::Command;

fn keel(env_file: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keel")).arg("--env-file").arg(env_file).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
}

/// The `"id"` of the JSON a command printed.
fn printed_id(output: &str) -> String {
    let start = output.find('{').unwrap();
    let end = output.rfind('}').unwrap();
    let value: serde_json::Value = serde_json::from_str(&output[start..=end]).unwrap();
    value["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn backups_taken_verified_and_restored_from_the_command_line() {
    let moto = keel_local::moto::Moto::start(None).await.unwrap();
    let sdk = keel_local::sdk_config(&moto.endpoint).await;
    let template = keel_local::template::Template::load(&keel_local::repo_root().join("template.yaml")).unwrap();
    let stack = keel_local::provision::provision(&sdk, &template, "cli-backup", &Default::default()).await.unwrap();
    let env_file = std::env::temp_dir().join(format!("keel-cli-backup-{}.env", std::process::id()));
    keel_local::write_env_file(&env_file, &moto.endpoint, &stack).unwrap();
    let table = stack.env["KEEL_TABLE"].clone();
    let store = shared::store::Store::new(aws_sdk_dynamodb::Client::new(&sdk), table.clone());
    let (items, _) = keel_local::seed::generate(chrono::Utc::now(), 30, 3);
    keel_local::seed::put(&store, &items).await.unwrap();

    let (ok, out) = keel(&env_file, &["backup", "create", "--kind", "full"]);
    assert!(ok, "{out}");
    let full = printed_id(&out);
    // One item more, then an incremental backup on top of the full one.
    let extra = shared::domain::charts::Chart::new(shared::store::ids::UserId::generate().as_str(), "After the full backup", "bar");
    store.batch_put(vec![extra.to_item().unwrap()]).await.unwrap();
    let (ok, out) = keel(&env_file, &["backup", "create", "--kind", "incremental"]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("\"previous_id\": \"{full}\"")), "{out}");
    let incremental = printed_id(&out);

    let (ok, out) = keel(&env_file, &["backup", "list"]);
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with(&incremental) && lines[1].starts_with(&full), "{out}");

    let (ok, out) = keel(&env_file, &["backup", "verify", &incremental]);
    assert!(ok, "{out}");
    assert!(out.contains("\"ok\": true"), "{out}");

    let target = format!("{table}-restore-cli");
    let (ok, out) = keel(&env_file, &["backup", "restore", &incremental, "--target-table", &table]);
    assert!(!ok, "never over the live table: {out}");
    assert!(out.contains("target_table"), "{out}");
    let (ok, out) = keel(&env_file, &["backup", "restore", &incremental, "--target-table", &target]);
    assert!(ok, "{out}");
    let restored = shared::store::Store::new(aws_sdk_dynamodb::Client::new(&sdk), target);
    assert!(restored.get_item(&format!("CHART#{}", extra.id), "META").await.unwrap().is_some(), "the incremental backup's item");
    let backup = shared::domain::backups::get(&store, &incremental).await.unwrap().unwrap();
    assert_eq!(restored.scan_all().await.unwrap().len() as u64, backup.item_count);
    // The jobs the CLI ran are finished like the worker's.
    let job = shared::domain::jobs::get(&store, &incremental).await.unwrap().unwrap();
    assert_eq!(job.status, shared::domain::jobs::JobStatus::Succeeded);
    let _ = std::fs::remove_file(env_file);
}
