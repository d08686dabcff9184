//! Creates the template's data resources (KMS keys and aliases, the table,
//! buckets, queues, SNS topics and their SQS subscriptions) in the emulator, and resolves the functions' environment
//! from the template's own `Globals.Function.Environment`. Resource types
//! that are not data (functions, event source mappings, the HTTP API, log
//! groups, alarms, IAM, bucket policies) are served or skipped by the local
//! stack. Of a bucket's properties, lifecycle rules and `LoggingConfiguration`
//! are not applied: server access logging would make moto write a log object
//! on every request (the logging bucket itself is created).

use std::collections::HashMap;

use anyhow::{Context as _, anyhow};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types as ddb;
use yaml_serde::Value;

use crate::template::{Context, Resolved, Template};

pub const ACCOUNT: &str = "123456789012";

/// The outcome: every created resource, and the functions' environment.
#[derive(Debug, Clone)]
pub struct Stack {
    pub name: String,
    pub resources: HashMap<String, Resolved>,
    pub env: HashMap<String, String>,
    pub skipped: Vec<String>,
}

fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn seq<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_sequence).map(|s| s.as_slice()).unwrap_or(&[])
}

/// Create every data resource of `template` under the name prefix `stack`
/// (lower-case letters, digits and dashes), with parameter `overrides`.
pub async fn provision(sdk: &SdkConfig, template: &Template, stack: &str, overrides: &HashMap<String, String>) -> anyhow::Result<Stack> {
    let parameters = template.parameters(overrides);
    let mut resources: HashMap<String, Resolved> = HashMap::new();
    let mut skipped = Vec::new();
    let kms = aws_sdk_kms::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    // Creates the table itself (control plane): before there is a Store.
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    let s3 = crate::s3_client(sdk);
    let sns = aws_sdk_sns::Client::new(sdk);
    let all = template.resources();

    // Keys first, then queues without a redrive policy (dead-letter queues)
    // before those that point at them, then the rest.
    let rank = |kind: &str, props: &Value| match kind {
        "AWS::KMS::Key" => 0,
        "AWS::KMS::Alias" => 1,
        "AWS::SQS::Queue" if props.get("RedrivePolicy").is_none() => 2,
        "AWS::SQS::Queue" => 3,
        // Topics and queues first.
        "AWS::SNS::Subscription" => 5,
        _ => 4,
    };
    let mut ordered: Vec<&(String, String, Value)> = all.iter().collect();
    ordered.sort_by_key(|(_, kind, props)| rank(kind, props));

    for (id, kind, props) in ordered {
        let ctx = Context { stack, region: crate::REGION, account: ACCOUNT, parameters: &parameters, resources: &resources };
        let resolved = match kind.as_str() {
            "AWS::KMS::Key" => {
                let mut req = kms.create_key().description(get_str(props, "Description").unwrap_or(id));
                if let Some(spec) = get_str(props, "KeySpec") {
                    req = req.key_spec(spec.into());
                }
                if let Some(usage) = get_str(props, "KeyUsage") {
                    req = req.key_usage(usage.into());
                }
                let meta = req.send().await.with_context(|| format!("creating {id}"))?.key_metadata.ok_or_else(|| anyhow!("no key metadata"))?;
                let key_id = meta.key_id().to_string();
                if props.get("EnableKeyRotation").and_then(Value::as_bool) == Some(true) {
                    kms.enable_key_rotation().key_id(&key_id).send().await.with_context(|| format!("rotation for {id}"))?;
                }
                Resolved {
                    attributes: HashMap::from([("Arn".into(), meta.arn().unwrap_or_default().to_string()), ("KeyId".into(), key_id.clone())]),
                    reference: key_id,
                }
            }
            "AWS::KMS::Alias" => {
                let alias = ctx.resolve(props.get("AliasName").ok_or_else(|| anyhow!("{id}: no AliasName"))?)?;
                let target = ctx.resolve(props.get("TargetKeyId").ok_or_else(|| anyhow!("{id}: no TargetKeyId"))?)?;
                kms.create_alias().alias_name(&alias).target_key_id(&target).send().await.with_context(|| format!("creating {id}"))?;
                Resolved { reference: alias, attributes: HashMap::new() }
            }
            "AWS::SQS::Queue" => {
                let name = format!("{stack}-{id}");
                let mut req = sqs.create_queue().queue_name(&name);
                // KmsMasterKeyId (!Ref of a key created above) is recorded by
                // moto, which does not encrypt messages.
                for attr in [
                    "VisibilityTimeout",
                    "MessageRetentionPeriod",
                    "DelaySeconds",
                    "ReceiveMessageWaitTimeSeconds",
                    "SqsManagedSseEnabled",
                    "KmsMasterKeyId",
                    "KmsDataKeyReusePeriodSeconds",
                ] {
                    if let Some(v) = props.get(attr) {
                        req = req.attributes(attr.into(), ctx.resolve(v)?);
                    }
                }
                if let Some(redrive) = props.get("RedrivePolicy") {
                    let target = ctx.resolve(redrive.get("deadLetterTargetArn").ok_or_else(|| anyhow!("{id}: no deadLetterTargetArn"))?)?;
                    let max = redrive.get("maxReceiveCount").map(|v| ctx.resolve(v)).transpose()?.unwrap_or_else(|| "5".into());
                    let policy = serde_json::json!({ "deadLetterTargetArn": target, "maxReceiveCount": max }).to_string();
                    req = req.attributes(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy, policy);
                }
                let url = req.send().await.with_context(|| format!("creating {id}"))?.queue_url.ok_or_else(|| anyhow!("no queue url"))?;
                let arn = format!("arn:aws:sqs:{}:{ACCOUNT}:{name}", crate::REGION);
                Resolved { reference: url.clone(), attributes: HashMap::from([("Arn".into(), arn), ("QueueName".into(), name), ("QueueUrl".into(), url)]) }
            }
            // The topic's KmsMasterKeyId is not applied (moto does not
            // encrypt); its policy is not needed locally.
            "AWS::SNS::Topic" => {
                let name = format!("{stack}-{id}");
                let arn =
                    sns.create_topic().name(&name).send().await.with_context(|| format!("creating {id}"))?.topic_arn.ok_or_else(|| anyhow!("no topic arn"))?;
                Resolved { reference: arn.clone(), attributes: HashMap::from([("TopicArn".into(), arn), ("TopicName".into(), name)]) }
            }
            // An SQS subscription as SNS makes it: the queue receives SNS's
            // JSON envelope (no raw delivery), as in AWS.
            "AWS::SNS::Subscription" => {
                let topic = ctx.resolve(props.get("TopicArn").ok_or_else(|| anyhow!("{id}: no TopicArn"))?)?;
                let endpoint = ctx.resolve(props.get("Endpoint").ok_or_else(|| anyhow!("{id}: no Endpoint"))?)?;
                let protocol = get_str(props, "Protocol").unwrap_or("sqs");
                let out = sns.subscribe().topic_arn(&topic).protocol(protocol).endpoint(&endpoint).send().await.with_context(|| format!("creating {id}"))?;
                Resolved { reference: out.subscription_arn.unwrap_or_default(), attributes: HashMap::new() }
            }
            "AWS::DynamoDB::Table" => create_table(&dynamo, &ctx, id, props, stack).await?,
            "AWS::S3::Bucket" => create_bucket(&s3, &ctx, id, props, stack).await?,
            _ => {
                skipped.push(format!("{id} ({kind})"));
                continue;
            }
        };
        resources.insert(id.clone(), resolved);
    }

    let ctx = Context { stack, region: crate::REGION, account: ACCOUNT, parameters: &parameters, resources: &resources };
    let mut env = HashMap::new();
    for (name, value) in template.function_environment().into_iter().chain(template.functions_own_environment()) {
        env.insert(name.clone(), ctx.resolve(&value).with_context(|| format!("function environment {name}"))?);
    }

    // Deployed, the operator copies the signing secret Stripe shows for the
    // endpoint into the StripeWebhookSecret parameter. Locally, unless an
    // override gave one, each stack makes its own (written to
    // .keel/local.env for `stripe listen --forward-to` style senders).
    if env.get("KEEL_STRIPE_WEBHOOK_SECRET").is_some_and(|v| v.trim().is_empty()) {
        use base64::Engine as _;
        let bytes: [u8; 32] = rand::random();
        env.insert("KEEL_STRIPE_WEBHOOK_SECRET".into(), format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes)));
    }

    // Deployed, the operator passes the signing key's public key as the
    // SigningPublicKey parameter after the first deploy, so cold starts make
    // no KMS call. Locally, read it here unless an override gave one.
    if env.get("KEEL_SIGNING_PUBLIC_KEY").is_some_and(|v| v.trim().is_empty())
        && let Some(key_id) = env.get("KEEL_SIGNING_KEY_ID")
    {
        let out = kms.get_public_key().key_id(key_id).send().await.context("reading the signing key's public key")?;
        let der = out.public_key().ok_or_else(|| anyhow!("GetPublicKey returned no key"))?;
        use base64::Engine as _;
        env.insert("KEEL_SIGNING_PUBLIC_KEY".into(), base64::engine::general_purpose::STANDARD.encode(der.as_ref()));
    }

    // Sending email needs a verified sender; deployed, the operator verifies
    // it in SES once. Locally, verify the configured sender here.
    if let Some(from) = env.get("KEEL_EMAIL_FROM") {
        aws_sdk_sesv2::Client::new(sdk).create_email_identity().email_identity(from).send().await.context("verifying the sender identity")?;
    }
    Ok(Stack { name: stack.to_string(), resources, env, skipped })
}

async fn create_table(dynamo: &aws_sdk_dynamodb::Client, ctx: &Context<'_>, id: &str, props: &Value, stack: &str) -> anyhow::Result<Resolved> {
    let name = format!("{stack}-{id}");
    let key_schema = |list: &[Value]| -> anyhow::Result<Vec<ddb::KeySchemaElement>> {
        list.iter()
            .map(|k| {
                Ok(ddb::KeySchemaElement::builder()
                    .attribute_name(get_str(k, "AttributeName").ok_or_else(|| anyhow!("{id}: key without AttributeName"))?)
                    .key_type(get_str(k, "KeyType").unwrap_or("HASH").into())
                    .build()?)
            })
            .collect()
    };
    let mut req = dynamo
        .create_table()
        .table_name(&name)
        .billing_mode(get_str(props, "BillingMode").unwrap_or("PAY_PER_REQUEST").into())
        .set_key_schema(Some(key_schema(seq(props, "KeySchema"))?));
    for a in seq(props, "AttributeDefinitions") {
        req = req.attribute_definitions(
            ddb::AttributeDefinition::builder()
                .attribute_name(get_str(a, "AttributeName").unwrap_or_default())
                .attribute_type(get_str(a, "AttributeType").unwrap_or("S").into())
                .build()?,
        );
    }
    for g in seq(props, "GlobalSecondaryIndexes") {
        let projection = g.get("Projection").and_then(|p| get_str(p, "ProjectionType")).unwrap_or("ALL");
        req = req.global_secondary_indexes(
            ddb::GlobalSecondaryIndex::builder()
                .index_name(get_str(g, "IndexName").unwrap_or_default())
                .set_key_schema(Some(key_schema(seq(g, "KeySchema"))?))
                .projection(ddb::Projection::builder().projection_type(projection.into()).build())
                .build()?,
        );
    }
    if let Some(stream) = props.get("StreamSpecification") {
        let view = get_str(stream, "StreamViewType").unwrap_or("NEW_AND_OLD_IMAGES");
        req = req.stream_specification(ddb::StreamSpecification::builder().stream_enabled(true).stream_view_type(view.into()).build()?);
    }
    if let Some(sse) = props.get("SSESpecification") {
        let mut b = ddb::SseSpecification::builder().enabled(sse.get("SSEEnabled").and_then(Value::as_bool).unwrap_or(true));
        if let Some(t) = get_str(sse, "SSEType") {
            b = b.sse_type(t.into());
        }
        if let Some(k) = sse.get("KMSMasterKeyId") {
            b = b.kms_master_key_id(ctx.resolve(k)?);
        }
        req = req.sse_specification(b.build());
    }
    let out = req.send().await.with_context(|| format!("creating table {id}"))?;
    let description = out.table_description.ok_or_else(|| anyhow!("no table description"))?;
    if let Some(ttl) = props.get("TimeToLiveSpecification")
        && ttl.get("Enabled").and_then(Value::as_bool) == Some(true)
    {
        let attribute = get_str(ttl, "AttributeName").unwrap_or("ttl");
        dynamo
            .update_time_to_live()
            .table_name(&name)
            .time_to_live_specification(ddb::TimeToLiveSpecification::builder().enabled(true).attribute_name(attribute).build()?)
            .send()
            .await
            .context("enabling TTL")?;
    }
    let mut attributes = HashMap::from([("Arn".to_string(), description.table_arn().unwrap_or_default().to_string())]);
    if let Some(stream) = description.latest_stream_arn() {
        attributes.insert("StreamArn".into(), stream.to_string());
    }
    Ok(Resolved { reference: name, attributes })
}

async fn create_bucket(s3: &aws_sdk_s3::Client, ctx: &Context<'_>, id: &str, props: &Value, stack: &str) -> anyhow::Result<Resolved> {
    use aws_sdk_s3::types as s3t;
    // Bucket names are lower-case DNS labels.
    let name = format!("{stack}-{id}").to_lowercase();
    let object_lock = props.get("ObjectLockEnabled").and_then(Value::as_bool) == Some(true);
    s3.create_bucket().bucket(&name).object_lock_enabled_for_bucket(object_lock).send().await.with_context(|| format!("creating bucket {id}"))?;
    if let Some(rule) =
        props.get("BucketEncryption").and_then(|e| e.get("ServerSideEncryptionConfiguration")).and_then(Value::as_sequence).and_then(|s| s.first())
    {
        let default = rule.get("ServerSideEncryptionByDefault");
        let mut by_default =
            s3t::ServerSideEncryptionByDefault::builder().sse_algorithm(default.and_then(|d| get_str(d, "SSEAlgorithm")).unwrap_or("aws:kms").into());
        if let Some(key) = default.and_then(|d| d.get("KMSMasterKeyID")) {
            by_default = by_default.kms_master_key_id(ctx.resolve(key)?);
        }
        let rule = s3t::ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(by_default.build()?)
            .bucket_key_enabled(rule.get("BucketKeyEnabled").and_then(Value::as_bool).unwrap_or(false))
            .build();
        s3.put_bucket_encryption()
            .bucket(&name)
            .server_side_encryption_configuration(s3t::ServerSideEncryptionConfiguration::builder().rules(rule).build()?)
            .send()
            .await
            .with_context(|| format!("encryption of {id}"))?;
    }
    if let Some(block) = props.get("PublicAccessBlockConfiguration") {
        let flag = |k: &str| block.get(k).and_then(Value::as_bool).unwrap_or(false);
        s3.put_public_access_block()
            .bucket(&name)
            .public_access_block_configuration(
                s3t::PublicAccessBlockConfiguration::builder()
                    .block_public_acls(flag("BlockPublicAcls"))
                    .block_public_policy(flag("BlockPublicPolicy"))
                    .ignore_public_acls(flag("IgnorePublicAcls"))
                    .restrict_public_buckets(flag("RestrictPublicBuckets"))
                    .build(),
            )
            .send()
            .await
            .with_context(|| format!("public access block of {id}"))?;
    }
    if props.get("VersioningConfiguration").and_then(|v| get_str(v, "Status")) == Some("Enabled") {
        s3.put_bucket_versioning()
            .bucket(&name)
            .versioning_configuration(s3t::VersioningConfiguration::builder().status(s3t::BucketVersioningStatus::Enabled).build())
            .send()
            .await
            .with_context(|| format!("versioning of {id}"))?;
    }
    if let Some(retention) = props.get("ObjectLockConfiguration").and_then(|c| c.get("Rule")).and_then(|r| r.get("DefaultRetention")) {
        let mut default = s3t::DefaultRetention::builder().mode(get_str(retention, "Mode").unwrap_or("GOVERNANCE").into());
        if let Some(days) = retention.get("Days").and_then(Value::as_i64) {
            default = default.days(days as i32);
        }
        s3.put_object_lock_configuration()
            .bucket(&name)
            .object_lock_configuration(
                s3t::ObjectLockConfiguration::builder()
                    .object_lock_enabled(s3t::ObjectLockEnabled::Enabled)
                    .rule(s3t::ObjectLockRule::builder().default_retention(default.build()).build())
                    .build(),
            )
            .send()
            .await
            .with_context(|| format!("object lock of {id}"))?;
    }
    let arn = format!("arn:aws:s3:::{name}");
    Ok(Resolved { reference: name.clone(), attributes: HashMap::from([("Arn".into(), arn), ("BucketName".into(), name)]) })
}
