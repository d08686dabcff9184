//! Streaming uploads to S3: bytes are cut into 5 MiB parts and sent as a
//! multipart upload with SSE-KMS, hashing (SHA-256) as they go, so an
//! export of any size holds about one part in memory. Nothing is visible
//! under the key until `finish` completes the upload; `abort` discards it.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use sha2::{Digest, Sha256};
use shared::platform::error::{Error, Result};

/// S3's minimum part size (every part but the last), and ours.
pub const PART_SIZE: usize = 5 * 1024 * 1024;

pub struct Upload {
    s3: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: String,
    parts: Vec<CompletedPart>,
    /// Bytes not yet sent (less than a part after every `flush`).
    pub buffer: Vec<u8>,
    hasher: Sha256,
    bytes: u64,
}

impl Upload {
    /// Start a multipart upload of `key`, encrypted with the KMS key.
    pub async fn start(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, content_type: &str, kms_key_id: &str) -> Result<Upload> {
        let out = s3
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(kms_key_id)
            .bucket_key_enabled(true)
            .send()
            .await
            .map_err(shared::platform::error::aws("s3 CreateMultipartUpload"))?;
        let upload_id = out.upload_id.ok_or_else(|| Error::internal("s3 CreateMultipartUpload returned no upload id"))?;
        Ok(Upload {
            s3: s3.clone(),
            bucket: bucket.into(),
            key: key.into(),
            upload_id,
            parts: Vec::new(),
            buffer: Vec::with_capacity(PART_SIZE + 1024 * 1024),
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    pub fn upload_id(&self) -> &str {
        &self.upload_id
    }

    /// Bytes handed over so far (sent or buffered).
    pub fn len(&self) -> u64 {
        self.bytes + self.buffer.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append bytes (then `flush` to send full parts).
    pub fn write(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// Send every full part in the buffer.
    pub async fn flush(&mut self) -> Result<()> {
        while self.buffer.len() >= PART_SIZE {
            let rest = self.buffer.split_off(PART_SIZE);
            let part = std::mem::replace(&mut self.buffer, rest);
            self.send_part(part).await?;
        }
        Ok(())
    }

    async fn send_part(&mut self, part: Vec<u8>) -> Result<()> {
        self.hasher.update(&part);
        self.bytes += part.len() as u64;
        let number = self.parts.len() as i32 + 1;
        let out = self
            .s3
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .body(ByteStream::from(part))
            .send()
            .await
            .map_err(shared::platform::error::aws("s3 UploadPart"))?;
        self.parts.push(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag).build());
        Ok(())
    }

    /// Send the rest and complete the upload: the object appears now.
    /// Returns its size and SHA-256 (hex).
    pub async fn finish(mut self) -> Result<(u64, String)> {
        self.flush().await?;
        // The last part may be short (or empty, for an empty object).
        if !self.buffer.is_empty() || self.parts.is_empty() {
            let last = std::mem::take(&mut self.buffer);
            self.send_part(last).await?;
        }
        self.s3
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(self.parts.clone())).build())
            .send()
            .await
            .map_err(shared::platform::error::aws("s3 CompleteMultipartUpload"))?;
        let sha256: String = self.hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok((self.bytes, sha256))
    }

    /// Discard this upload (its parts are deleted; nothing becomes visible).
    pub async fn abort(self) -> Result<()> {
        abort(&self.s3, &self.bucket, &self.key, &self.upload_id).await
    }
}

/// Abort an upload by id (one a crashed attempt left behind). An upload
/// that no longer exists is fine.
pub async fn abort(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
    match s3.abort_multipart_upload().bucket(bucket).key(key).upload_id(upload_id).send().await {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_upload()) => Ok(()),
        Err(e) => Err(shared::platform::error::aws("s3 AbortMultipartUpload")(e)),
    }
}
