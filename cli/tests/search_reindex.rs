//! `keel search reindex` against a local stack: rebuilds the index from the
//! table, publishes it as the next version, and a search instance opening
//! it finds what the table holds (and nothing the table no longer holds).

use std::process::Command;

#[tokio::test]
async fn reindex_rebuilds_from_the_table_and_publishes_the_next_version() {
    let moto = keel_local::moto::Moto::start(None).await.unwrap();
    let sdk = keel_local::sdk_config(&moto.endpoint).await;
    let template = keel_local::template::Template::load(&keel_local::repo_root().join("template.yaml")).unwrap();
    let stack = keel_local::provision::provision(&sdk, &template, "cli-search", &Default::default()).await.unwrap();
    let env_file = std::env::temp_dir().join(format!("keel-cli-search-{}.env", std::process::id()));
    keel_local::write_env_file(&env_file, &moto.endpoint, &stack).unwrap();
    let store = shared::store::Store::new(aws_sdk_dynamodb::Client::new(&sdk), stack.env["KEEL_TABLE"].clone());
    let (items, _) = keel_local::seed::generate(chrono::Utc::now(), 40, 3);
    keel_local::seed::put(&store, &items).await.unwrap();
    let users = items.iter().filter(|i| shared::store::attr_s(i, "type") == Some("user")).count();
    let charts = items.iter().filter(|i| shared::store::attr_s(i, "type") == Some("chart") && !i.contains_key("deleted_at")).count();

    let remote = search::index::Remote {
        store: store.clone(),
        s3: keel_local::s3_client(&sdk),
        bucket: stack.env["KEEL_EXPORTS_BUCKET"].clone(),
        kms_key_id: stack.env["KEEL_DATA_KEY_ID"].clone(),
    };
    for expected_version in [1, 2] {
        let out = Command::new(env!("CARGO_BIN_EXE_keel")).args(["--env-file", env_file.to_str().unwrap(), "search", "reindex"]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(&format!("Published search index version {expected_version}:")), "{stdout}");
    }
    let dir = tempfile::tempdir().unwrap();
    let searchers = search::index::Searchers::new(remote, dir.path().to_path_buf(), std::time::Duration::from_secs(1)).unwrap();
    let loaded = searchers.load().await.unwrap();
    assert_eq!(loaded.version, 2);
    let opened = searchers.current().await.unwrap();
    let searcher = opened.reader.searcher();
    let count = |t: &str| searcher.doc_freq(&tantivy::Term::from_field_text(opened.fields.doc_type, t)).unwrap() as usize;
    assert_eq!(count("users"), users);
    assert_eq!(count("charts"), charts);
    let _ = std::fs::remove_file(env_file);
}
