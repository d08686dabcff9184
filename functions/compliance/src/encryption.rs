//! Encryption at rest of every store Keel keeps data in, as AWS reports
//! it: the table's SSE (DescribeTable), each bucket's default encryption
//! (GetBucketEncryption) and each queue's KMS key (GetQueueAttributes).
//! A store whose answer names no KMS key is reported without one.

use shared::platform::error::Result;

use crate::ComplianceState;

/// `(store, KMS key)` for the table, the buckets and the queues.
pub async fn stores(state: &ComplianceState) -> Result<Vec<(String, Option<String>)>> {
    let config = &state.platform.config;
    let mut out = Vec::new();
    let table = state.clients.dynamo.describe_table().table_name(&config.table).send().await;
    let key = table.ok().and_then(|t| t.table).and_then(|t| t.sse_description).and_then(|d| d.kms_master_key_arn);
    out.push((format!("dynamodb table {}", config.table), key));
    for bucket in [&config.exports_bucket, &config.audit_bucket, &config.backups_bucket] {
        let answer = state.clients.s3.get_bucket_encryption().bucket(bucket).send().await;
        let key = answer.ok().and_then(|a| a.server_side_encryption_configuration).and_then(|c| {
            c.rules
                .into_iter()
                .filter_map(|r| r.apply_server_side_encryption_by_default)
                .find(|d| d.sse_algorithm.as_str().starts_with("aws:kms"))
                .map(|d| d.kms_master_key_id.unwrap_or_else(|| "aws/s3".to_string()))
        });
        out.push((format!("s3 bucket {bucket}"), key));
    }
    for queue in [&config.jobs_queue_url, &config.jobs_dlq_url, &config.webhooks_queue_url, &config.webhooks_dlq_url] {
        let answer =
            state.clients.sqs.get_queue_attributes().queue_url(queue).attribute_names(aws_sdk_sqs::types::QueueAttributeName::KmsMasterKeyId).send().await;
        let key = answer.ok().and_then(|a| a.attributes).and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::KmsMasterKeyId));
        out.push((format!("sqs queue {}", queue.rsplit('/').next().unwrap_or(queue)), key));
    }
    Ok(out)
}
