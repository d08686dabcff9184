//! The local stack is built from template.yaml: the table, buckets, queues
//! and keys exist with the template's settings, and the functions'
//! environment is the template's own.

use crate::helpers::TestApp;

#[tokio::test]
async fn resources_match_the_template() {
    let app = TestApp::spawn().await;
    let env = &app.stack.env;
    for var in [
        "KEEL_TABLE",
        "KEEL_DATA_KEY_ID",
        "KEEL_SIGNING_KEY_ID",
        "KEEL_JOBS_QUEUE_URL",
        "KEEL_EXPORTS_BUCKET",
        "KEEL_AUDIT_BUCKET",
        "KEEL_ISSUER",
        "KEEL_EMAIL_FROM",
        "KEEL_PUBLIC_URL",
    ] {
        assert!(env.get(var).is_some_and(|v| !v.is_empty()), "{var} not resolved");
    }
    // The provisioned table's shape (control plane), not its items: not a Store call.
    let dynamo = aws_sdk_dynamodb::Client::new(&app.sdk);
    let table = dynamo.describe_table().table_name(&env["KEEL_TABLE"]).send().await.unwrap().table.unwrap();
    let mut indexes: Vec<String> = table.global_secondary_indexes().iter().filter_map(|g| g.index_name().map(String::from)).collect();
    indexes.sort();
    assert_eq!(indexes, vec!["gsi1", "gsi2", "gsi3"]);
    assert_eq!(table.stream_specification().and_then(|s| s.stream_view_type()).map(|v| v.as_str()), Some("NEW_AND_OLD_IMAGES"));
    let ttl = dynamo.describe_time_to_live().table_name(&env["KEEL_TABLE"]).send().await.unwrap();
    assert_eq!(ttl.time_to_live_description().and_then(|t| t.attribute_name()), Some("ttl"));

    let s3 = keel_local::s3_client(&app.sdk);
    let enc = s3.get_bucket_encryption().bucket(&env["KEEL_EXPORTS_BUCKET"]).send().await.unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(rule.apply_server_side_encryption_by_default().unwrap().sse_algorithm().as_str(), "aws:kms");
    let lock = s3.get_object_lock_configuration().bucket(&env["KEEL_AUDIT_BUCKET"]).send().await.unwrap();
    assert_eq!(lock.object_lock_configuration().and_then(|c| c.object_lock_enabled()).map(|e| e.as_str()), Some("Enabled"));

    let sqs = aws_sdk_sqs::Client::new(&app.sdk);
    let attrs =
        sqs.get_queue_attributes().queue_url(&env["KEEL_JOBS_QUEUE_URL"]).attribute_names(aws_sdk_sqs::types::QueueAttributeName::All).send().await.unwrap();
    let redrive = attrs.attributes().unwrap().get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy).unwrap();
    assert!(redrive.contains("JobsDeadLetterQueue"), "{redrive}");
    // SSE-KMS with the data key.
    let queue_key = attrs.attributes().unwrap().get(&aws_sdk_sqs::types::QueueAttributeName::KmsMasterKeyId);
    assert_eq!(queue_key, Some(&env["KEEL_DATA_KEY_ID"]));
    // The exports bucket is versioned: a delete leaves a marker over the
    // noncurrent version (GetBucketVersioning is not read: moto 5.2.5 answers
    // it with a root element the SDK rejects).
    let bucket = &env["KEEL_EXPORTS_BUCKET"];
    s3.put_object().bucket(bucket).key("probe/versioned").body(b"x".to_vec().into()).send().await.unwrap();
    s3.delete_object().bucket(bucket).key("probe/versioned").send().await.unwrap();
    let versions = s3.list_object_versions().bucket(bucket).prefix("probe/").send().await.unwrap();
    assert_eq!((versions.versions().len(), versions.delete_markers().len()), (1, 1));

    let kms = aws_sdk_kms::Client::new(&app.sdk);
    let key = kms.describe_key().key_id(&env["KEEL_SIGNING_KEY_ID"]).send().await.unwrap().key_metadata.unwrap();
    assert_eq!(key.key_spec().map(|s| s.as_str()), Some("ECC_NIST_P256"));

    let path = std::env::temp_dir().join(format!("{}.env", app.stack.name));
    keel_local::write_env_file(&path, &app.endpoint, &app.stack).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&format!("KEEL_TABLE={}", env["KEEL_TABLE"])));
    assert!(text.contains("AWS_ENDPOINT_URL=http://127.0.0.1:"));
    // The Stripe signing secret the local stack made for its webhook endpoint.
    assert!(text.lines().any(|l| l.starts_with("KEEL_STRIPE_WEBHOOK_SECRET=whsec_") && l.len() > "KEEL_STRIPE_WEBHOOK_SECRET=whsec_".len() + 40), "{text}");
}

/// What a deployed function runs on: its SDK configuration is built from the
/// variables Lambda sets (shared::platform::aws::sdk_config), not by aws-config's
/// provider chain, and reaches the stack with exactly those credentials.
#[tokio::test]
async fn a_functions_sdk_config_comes_from_lambdas_variables() {
    use aws_credential_types::provider::ProvideCredentials;
    let app = TestApp::spawn().await;
    let lambda_env = std::collections::HashMap::from([
        ("AWS_REGION", keel_local::REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", "ASIAKEELTEST".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "secret".to_string()),
        ("AWS_SESSION_TOKEN", "session-token".to_string()),
        ("AWS_ENDPOINT_URL", app.endpoint.clone()),
    ]);
    let sdk = shared::platform::aws::sdk_config_from(|name| lambda_env.get(name).cloned());
    assert_eq!(sdk.region().map(|r| r.as_ref()), Some(keel_local::REGION));
    assert_eq!(sdk.endpoint_url(), Some(app.endpoint.as_str()));
    let credentials = sdk.credentials_provider().unwrap().provide_credentials().await.unwrap();
    assert_eq!((credentials.access_key_id(), credentials.session_token()), ("ASIAKEELTEST", Some("session-token")));

    let clients = shared::platform::aws::Clients::from_sdk_config(&sdk);
    // Each client reaches the emulator (control plane calls, not items).
    let table = clients.dynamo.describe_table().table_name(&app.stack.env["KEEL_TABLE"]).send().await.unwrap();
    assert!(table.table.is_some());
    clients.kms.describe_key().key_id(&app.stack.env["KEEL_DATA_KEY_ID"]).send().await.unwrap();
    clients.s3.head_bucket().bucket(&app.stack.env["KEEL_EXPORTS_BUCKET"]).send().await.unwrap();

    // No region: the call fails with an error, it does not panic.
    let sdk = shared::platform::aws::sdk_config_from(|name| (name != "AWS_REGION").then(|| lambda_env.get(name).cloned()).flatten());
    assert!(sdk.region().is_none());
    let call = aws_sdk_dynamodb::Client::new(&sdk).describe_table().table_name(&app.stack.env["KEEL_TABLE"]).send().await;
    assert!(call.is_err());
}
