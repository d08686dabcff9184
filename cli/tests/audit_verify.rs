//! `keel audit verify` against a local stack (table, digest bucket, audit
//! key) and `--file` offline on an export, with no AWS settings at all:
//! both pass on an untouched log and exit 1 naming the tampered entry.

use std::process::{Command, Output};
use std::sync::Arc;

use shared::audit::{Actor, AuditEntry};

fn keel(args: &[&str], clear_env: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
    if clear_env {
        // Offline means offline: no endpoint, credentials or resource names.
        command.env_clear();
    }
    command.args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn verify_live_and_offline() {
    let moto = keel_local::moto::Moto::start(None).await.unwrap();
    let sdk = keel_local::sdk_config(&moto.endpoint).await;
    let template = keel_local::template::Template::load(&keel_local::repo_root().join("template.yaml")).unwrap();
    let stack = keel_local::provision::provision(&sdk, &template, "cli-audit", &Default::default()).await.unwrap();
    let env_file = std::env::temp_dir().join(format!("keel-cli-audit-{}.env", std::process::id()));
    keel_local::write_env_file(&env_file, &moto.endpoint, &stack).unwrap();
    let config = Arc::new(shared::platform::config::Config::from_map(&stack.env).unwrap());
    let clients = shared::platform::aws::Clients::from_sdk_config(&sdk);
    let sealer = scheduler::Sealer::new(config.clone(), &clients);
    // Entries about users need the per-person keys (shared::audit::pseudonyms).
    let store = shared::audit::Journal::with_subject_keys(
        sealer.store.store().clone(),
        shared::platform::crypto::Envelope::new(clients.kms.clone(), config.data_key_id.clone()),
    );

    let mut entries = Vec::new();
    for i in 0..5 {
        let entry = AuditEntry::new(&Actor::system("cli-test"), "chart.update", "chart", &format!("c{i}"));
        store.record(&entry).await.unwrap();
        entries.push(entry);
    }
    keel_local::schedule::seal_now(&sealer).await.unwrap();

    let env = env_file.to_str().unwrap();
    let live = keel(&["--env-file", env, "audit", "verify"], false);
    assert!(live.status.success(), "{}", text(&live));
    assert!(text(&live).contains("OK: the audit log matches"), "{}", text(&live));
    assert!(text(&live).contains("entries/s"), "{}", text(&live));

    // The export the jobs worker writes, verified offline.
    let reader =
        shared::audit::chain::ChainReader::new(store.store().clone(), clients.s3.clone(), clients.kms.clone(), &config.audit_bucket, &config.audit_key_id);
    let now = chrono::Utc::now();
    let (body, digests, _) = reader.export(now - chrono::Duration::days(1), now, serde_json::Value::Null, None).await.unwrap();
    assert_eq!(digests, 1);
    let export = std::env::temp_dir().join(format!("keel-cli-audit-{}.ndjson", std::process::id()));
    std::fs::write(&export, &body).unwrap();
    let offline = keel(&["audit", "verify", "--file", export.to_str().unwrap()], true);
    assert!(offline.status.success(), "{}", text(&offline));
    let fingerprint = reader.key().await.unwrap().fingerprint();
    assert!(text(&offline).contains(&fingerprint), "{}", text(&offline));
    let pinned_other = keel(
        &[
            "audit",
            "verify",
            "--file",
            export.to_str().unwrap(),
            "--public-key",
            &shared::audit::digest::DigestKey::from_spki_der(&p256_der()).unwrap().der_base64(),
        ],
        true,
    );
    assert_eq!(pinned_other.status.code(), Some(1), "another key must not verify: {}", text(&pinned_other));
    assert!(text(&pinned_other).contains("bad_signature"), "{}", text(&pinned_other));

    // Tamper with the third entry in the file and in the table.
    let victim = &entries[2];
    let tampered = String::from_utf8(body).unwrap().replacen(&format!("\"{}\"", victim.target_id), "\"someone-else\"", 1);
    std::fs::write(&export, tampered).unwrap();
    let offline = keel(&["audit", "verify", "--file", export.to_str().unwrap()], true);
    assert_eq!(offline.status.code(), Some(1), "{}", text(&offline));
    assert!(text(&offline).contains(&"entry_changed at digest".to_string()) && text(&offline).contains(&victim.id), "{}", text(&offline));

    let mut item = store.get_item(&format!("AUDIT#{}", victim.day()), &victim.sort_key()).await.unwrap().unwrap();
    item.insert("reason".into(), shared::store::s("nothing to see"));
    store.put_item_unchecked(item).await.unwrap();
    let live = keel(&["--env-file", env, "audit", "verify", "--json"], false);
    assert_eq!(live.status.code(), Some(1), "{}", text(&live));
    let report: serde_json::Value = serde_json::from_slice(&live.stdout).unwrap();
    assert_eq!(report["first_problem"]["kind"], "entry_changed");
    assert_eq!(report["first_problem"]["entry_id"], victim.id.as_str());

    let bad = keel(&["--env-file", env, "audit", "verify", "--from", "yesterday"], false);
    assert!(!bad.status.success() && text(&bad).contains("--from"), "{}", text(&bad));
    let _ = std::fs::remove_file(env_file);
    let _ = std::fs::remove_file(export);
}

/// A P-256 public key that is not the stack's audit key.
fn p256_der() -> Vec<u8> {
    use p256::pkcs8::EncodePublicKey;
    p256::ecdsa::SigningKey::from_slice(&[3u8; 32]).unwrap().verifying_key().to_public_key_der().unwrap().into_vec()
}
