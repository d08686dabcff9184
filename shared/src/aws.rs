//! AWS SDK clients, built once in `main` and lent to handlers. The endpoint
//! comes from the standard `AWS_ENDPOINT_URL` when set (the local stack).

#[derive(Clone, Debug)]
pub struct Clients {
    pub dynamo: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl Clients {
    pub async fn from_env() -> Self {
        let sdk = aws_config::load_from_env().await;
        Self::from_sdk_config(&sdk)
    }

    pub fn from_sdk_config(sdk: &aws_config::SdkConfig) -> Self {
        Clients {
            dynamo: aws_sdk_dynamodb::Client::new(sdk),
            kms: aws_sdk_kms::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
        }
    }
}
