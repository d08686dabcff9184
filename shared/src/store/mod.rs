//! The single DynamoDB table: typed reads, one paging helper, conditional
//! writes applied in one transaction (`Store::transact`), batch writes with
//! UnprocessedItems retry, and the key helpers every entity uses. This layer
//! knows nothing of audit: `audit::Journal` commits a change with its entry.

pub mod cursor;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, PutRequest, TransactWriteItem, WriteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::platform::error::{Error, Result, aws};

pub type Item = HashMap<String, AttributeValue>;

#[derive(Clone, Debug)]
pub struct Store {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
}

/// Items a listing page holds unless asked otherwise, and at most.
pub const DEFAULT_PAGE: i32 = 50;
pub const MAX_PAGE: i32 = 200;

/// Largest number of items in one TransactWriteItems call.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

pub fn to_item<T: Serialize>(value: &T) -> Result<Item> {
    serde_dynamo::to_item(value).map_err(|e| Error::internal(format!("serializing item: {e}")))
}

pub fn from_item<T: DeserializeOwned>(item: Item) -> Result<T> {
    serde_dynamo::from_item(item).map_err(|e| Error::internal(format!("deserializing item: {e}")))
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// What a listing queries: index, key condition, optional filter, and the
/// expression names and values they use.
#[derive(Debug, Clone, Default)]
pub struct QuerySpec<'a> {
    pub index: Option<&'a str>,
    pub key_condition: &'a str,
    pub filter: &'a str,
    pub names: Vec<(&'a str, &'a str)>,
    pub values: Vec<(&'a str, AttributeValue)>,
    pub forward: bool,
}

/// One write in a transaction, with the error to answer if its condition
/// fails (a version conflict, a duplicate email...).
#[derive(Debug)]
pub struct Write {
    pub item: TransactWriteItem,
    pub on_conflict: Option<Error>,
}

impl Write {
    /// Put an item that must not exist yet.
    pub fn put_new(table: &str, item: Item, on_conflict: Error) -> Result<Write> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| Error::internal(e.to_string()))?;
        Ok(Write { item: TransactWriteItem::builder().put(put).build(), on_conflict: Some(on_conflict) })
    }

    /// Replace an item whose stored `version` must equal `expected`
    /// (optimistic locking: the loser of a race gets `on_conflict`).
    pub fn put_versioned(table: &str, item: Item, expected: u64) -> Result<Write> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", n(expected))
            .build()
            .map_err(|e| Error::internal(e.to_string()))?;
        Ok(Write {
            item: TransactWriteItem::builder().put(put).build(),
            on_conflict: Some(Error::Conflict(format!("the resource was changed by someone else (expected version {expected}); reload and retry"))),
        })
    }

    /// Put without a condition (items the transaction owns outright).
    pub fn put(table: &str, item: Item) -> Result<Write> {
        let put = Put::builder().table_name(table).set_item(Some(item)).build().map_err(|e| Error::internal(e.to_string()))?;
        Ok(Write { item: TransactWriteItem::builder().put(put).build(), on_conflict: None })
    }

    /// Delete an item that must exist.
    pub fn delete_existing(table: &str, pk: &str, sk: &str, on_conflict: Error) -> Result<Write> {
        let delete = Delete::builder()
            .table_name(table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| Error::internal(e.to_string()))?;
        Ok(Write { item: TransactWriteItem::builder().delete(delete).build(), on_conflict: Some(on_conflict) })
    }

    /// Delete an item whose stored `version` must equal `expected` (it was
    /// read, decided on, and must not have changed since).
    pub fn delete_versioned(table: &str, pk: &str, sk: &str, expected: u64) -> Result<Write> {
        let delete = Delete::builder()
            .table_name(table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", n(expected))
            .build()
            .map_err(|e| Error::internal(e.to_string()))?;
        Ok(Write {
            item: TransactWriteItem::builder().delete(delete).build(),
            on_conflict: Some(Error::Conflict(format!("the resource was changed by someone else (expected version {expected}); retry"))),
        })
    }

    /// Assert a condition on an item the transaction does not change.
    pub fn check(table: &str, pk: &str, sk: &str, condition: &str, values: Vec<(&str, AttributeValue)>, on_conflict: Error) -> Result<Write> {
        let mut check = ConditionCheck::builder().table_name(table).key("pk", s(pk)).key("sk", s(sk)).condition_expression(condition);
        for (k, v) in values {
            check = check.expression_attribute_values(k, v);
        }
        let check = check.build().map_err(|e| Error::internal(e.to_string()))?;
        Ok(Write { item: TransactWriteItem::builder().condition_check(check).build(), on_conflict: Some(on_conflict) })
    }

    /// A prepared transact item (e.g. an Update built by the caller).
    pub fn raw(item: TransactWriteItem, on_conflict: Option<Error>) -> Write {
        Write { item, on_conflict }
    }
}

impl Store {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Store { client, table: table.into() }
    }

    pub async fn get_item(&self, pk: &str, sk: &str) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(aws("dynamodb GetItem"))?;
        Ok(out.item)
    }

    pub async fn get<T: DeserializeOwned>(&self, pk: &str, sk: &str) -> Result<Option<T>> {
        self.get_item(pk, sk).await?.map(from_item).transpose()
    }

    /// A Query on this table; the caller adds the key condition.
    pub fn query(&self) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client.query().table_name(&self.table)
    }

    /// One page of a Query: at most `limit` items read from `start`, and the
    /// key to continue from (none at the end).
    pub async fn query_page(&self, spec: &QuerySpec<'_>, start: Option<Item>, limit: i32) -> Result<(Vec<Item>, Option<Item>)> {
        let mut query = self
            .query()
            .set_index_name(spec.index.map(str::to_string))
            .key_condition_expression(spec.key_condition)
            .scan_index_forward(spec.forward)
            .limit(limit)
            .set_exclusive_start_key(start);
        if !spec.filter.is_empty() {
            query = query.filter_expression(spec.filter);
        }
        for (k, v) in &spec.names {
            query = query.expression_attribute_names(*k, *v);
        }
        for (k, v) in &spec.values {
            query = query.expression_attribute_values(*k, v.clone());
        }
        let out = query.send().await.map_err(aws("dynamodb Query"))?;
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
    }

    /// Every item of a Query, all pages (for partitions known to be small
    /// or swept whole: a person's items, soft-delete and job partitions).
    pub async fn query_all(&self, spec: &QuerySpec<'_>) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let (items, last) = self.query_page(spec, start, 1000).await?;
            out.extend(items);
            match last {
                Some(k) => start = Some(k),
                None => return Ok(out),
            }
        }
    }

    /// Apply `writes` atomically (TransactWriteItems): all or none. A failed
    /// condition answers that write's `on_conflict`. Changes that need an
    /// audit entry go through `audit::Journal::commit`, which adds it here.
    pub async fn transact(&self, writes: Vec<Write>) -> Result<()> {
        let count = writes.len();
        if count > MAX_TRANSACTION_ITEMS {
            return Err(Error::internal(format!("transaction of {count} items exceeds the limit")));
        }
        if count == 0 {
            return Ok(());
        }
        let (items, mut conflicts): (Vec<_>, Vec<_>) = writes.into_iter().map(|w| (w.item, w.on_conflict)).unzip();
        let result = self.client.transact_write_items().set_transact_items(Some(items)).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
                if let Some(E::TransactionCanceledException(cancel)) = err.as_service_error() {
                    let reasons = cancel.cancellation_reasons();
                    for (index, reason) in reasons.iter().enumerate() {
                        match reason.code() {
                            Some("ConditionalCheckFailed") => {
                                if let Some(Some(conflict)) = conflicts.get_mut(index).map(Option::take) {
                                    return Err(conflict);
                                }
                            }
                            Some("TransactionConflict") => {
                                return Err(Error::Conflict("a concurrent change touched the same data; retry".into()));
                            }
                            _ => {}
                        }
                    }
                    // Some emulators omit reasons; a cancelled transaction
                    // with a single conditional write is that write's conflict.
                    if reasons.is_empty()
                        && let Some(conflict) = conflicts.iter_mut().find_map(Option::take)
                    {
                        return Err(conflict);
                    }
                }
                Err(aws("dynamodb TransactWriteItems")(err))
            }
        }
    }

    /// Read items by key (BatchGetItem, 100 keys a call, UnprocessedKeys
    /// retried with backoff); missing items are simply absent.
    pub async fn batch_get(&self, keys: &[(String, String)]) -> Result<Vec<Item>> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut found = Vec::new();
        for chunk in keys.chunks(100) {
            let keys: Vec<Item> = chunk.iter().map(|(pk, sk)| Item::from([("pk".to_string(), s(pk.clone())), ("sk".to_string(), s(sk.clone()))])).collect();
            let mut pending =
                Some(KeysAndAttributes::builder().set_keys(Some(keys)).consistent_read(true).build().map_err(|e| Error::internal(e.to_string()))?);
            let mut attempt = 0u32;
            while let Some(request) = pending.take() {
                let out = self.client.batch_get_item().request_items(&self.table, request).send().await.map_err(aws("dynamodb BatchGetItem"))?;
                found.extend(out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default());
                pending = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys().is_empty());
                if pending.is_some() {
                    attempt += 1;
                    if attempt > 8 {
                        return Err(Error::internal("BatchGetItem keys still unprocessed after retries"));
                    }
                    tokio::time::sleep(Duration::from_millis(25 * 2u64.pow(attempt))).await;
                }
            }
        }
        Ok(found)
    }

    /// Write many items in batches of 25, retrying UnprocessedItems with
    /// backoff. For bulk loads only: these writes are not audited one by one.
    pub async fn batch_put(&self, items: Vec<Item>) -> Result<()> {
        let requests = items
            .into_iter()
            .map(|item| {
                let put = PutRequest::builder().set_item(Some(item)).build().map_err(|e| Error::internal(e.to_string()))?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>>>()?;
        self.batch_write(requests).await
    }

    /// Delete items by key in batches of 25, retrying UnprocessedItems.
    /// For erasure only (audited as a whole by its certificate).
    pub async fn batch_delete(&self, keys: &[(String, String)]) -> Result<()> {
        use aws_sdk_dynamodb::types::DeleteRequest;
        let requests = keys
            .iter()
            .map(|(pk, sk)| {
                let delete = DeleteRequest::builder().key("pk", s(pk)).key("sk", s(sk)).build().map_err(|e| Error::internal(e.to_string()))?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<Vec<_>>>()?;
        self.batch_write(requests).await
    }

    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<()> {
        for chunk in requests.chunks(25) {
            let mut pending: Vec<WriteRequest> = chunk.to_vec();
            let mut attempt = 0u32;
            while !pending.is_empty() {
                let out = self.client.batch_write_item().request_items(&self.table, pending).send().await.map_err(aws("dynamodb BatchWriteItem"))?;
                pending = out.unprocessed_items.and_then(|mut m| m.remove(&self.table)).unwrap_or_default();
                if !pending.is_empty() {
                    attempt += 1;
                    if attempt > 8 {
                        return Err(Error::internal(format!("{} items still unprocessed after retries", pending.len())));
                    }
                    tokio::time::sleep(Duration::from_millis(25 * 2u64.pow(attempt))).await;
                }
            }
        }
        Ok(())
    }
}

/// Read a string attribute.
pub fn attr_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

/// Seconds since the epoch, for the `ttl` attribute.
pub fn ttl_after(seconds: i64) -> i64 {
    chrono::Utc::now().timestamp() + seconds
}

/// RFC 3339 UTC with microseconds: sorts lexically in time order.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
