//! The single DynamoDB table, and the only way to reach it: typed reads, one
//! paging helper (`Pages`), unaudited single-item writes, conditional writes
//! applied in one transaction (`Store::transact`, `Store::try_transact`),
//! batch writes with UnprocessedItems retry, and the key helpers every entity
//! uses. This layer knows nothing of audit: `audit::Journal` commits a change
//! with its entry.

pub mod cursor;
pub mod ids;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, PutRequest, TransactWriteItem, WriteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::platform::error::{Error, Result, aws};

pub type Item = HashMap<String, AttributeValue>;

/// The table. Its client is private: every read and write goes through a
/// typed method here, so paging, retries and error mapping live in one place.
#[derive(Clone, Debug)]
pub struct Store {
    client: aws_sdk_dynamodb::Client,
    table: String,
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

/// The attribute a document item keeps its value in (`to_doc_item`).
pub const DOC: &str = "doc";

/// `value` as a *document item*: one attribute, `doc`, holding it as JSON
/// (the caller adds the keys). For derived data that is written whole and
/// read whole, never updated in place or filtered on (analytics rollups):
/// one string instead of hundreds of typed attributes makes the item
/// smaller and its reads cheaper at both ends (the local emulator spends
/// microseconds on each attribute of every item it returns).
pub fn to_doc_item<T: Serialize>(value: &T) -> Result<Item> {
    let json = serde_json::to_string(value).map_err(|e| Error::internal(format!("serializing document: {e}")))?;
    Ok(HashMap::from([(DOC.to_string(), AttributeValue::S(json))]))
}

/// The value of a document item; an item written before documents (its
/// fields as attributes, no `doc`) is read as such.
pub fn from_doc_item<T: DeserializeOwned>(item: Item) -> Result<T> {
    match item.get(DOC) {
        Some(AttributeValue::S(json)) => serde_json::from_str(json).map_err(|e| Error::internal(format!("deserializing document: {e}"))),
        _ => from_item(item),
    }
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Expression attribute names for a request; none when empty (DynamoDB
/// refuses an empty map).
fn names_map(names: &[(&str, &str)]) -> Option<HashMap<String, String>> {
    (!names.is_empty()).then(|| names.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// Expression attribute values for a request; none when empty.
fn values_map(values: &[(&str, AttributeValue)]) -> Option<HashMap<String, AttributeValue>> {
    (!values.is_empty()).then(|| values.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

/// What a Query reads: index, key condition, optional filter, the
/// expression names and values they use, the order (`forward`: ascending
/// sort keys; the default is newest first) and whether the read must be
/// strongly consistent (base table only).
#[derive(Debug, Clone, Default)]
pub struct QuerySpec<'a> {
    pub index: Option<&'a str>,
    pub key_condition: &'a str,
    pub filter: &'a str,
    pub names: Vec<(&'a str, &'a str)>,
    pub values: Vec<(&'a str, AttributeValue)>,
    pub forward: bool,
    pub consistent: bool,
}

/// What a Scan reads: the whole table, or one `(segment, of)` part of a
/// parallel scan, and an optional filter with the names and values it
/// uses. DynamoDB applies the filter after reading each page, so it saves
/// the transfer of the items it drops, not the capacity to read them.
#[derive(Debug, Clone, Default)]
pub struct ScanSpec<'a> {
    pub segment: Option<(i32, i32)>,
    pub filter: &'a str,
    pub names: Vec<(&'a str, &'a str)>,
    pub values: Vec<(&'a str, AttributeValue)>,
}

/// A condition on one item (a put or delete that must not overwrite or
/// remove what changed meanwhile), with the names and values it uses.
#[derive(Debug, Clone, Default)]
pub struct Condition<'a> {
    pub expression: &'a str,
    pub names: Vec<(&'a str, &'a str)>,
    pub values: Vec<(&'a str, AttributeValue)>,
}

impl<'a> Condition<'a> {
    pub fn new(expression: &'a str) -> Self {
        Condition { expression, ..Default::default() }
    }

    pub fn name(mut self, placeholder: &'a str, name: &'a str) -> Self {
        self.names.push((placeholder, name));
        self
    }

    pub fn value(mut self, placeholder: &'a str, value: AttributeValue) -> Self {
        self.values.push((placeholder, value));
        self
    }
}

/// An UpdateItem: the update expression, an optional condition, and the
/// names and values both use.
#[derive(Debug, Clone, Default)]
pub struct UpdateSpec<'a> {
    pub expression: &'a str,
    pub condition: Option<&'a str>,
    pub names: Vec<(&'a str, &'a str)>,
    pub values: Vec<(&'a str, AttributeValue)>,
}

impl<'a> UpdateSpec<'a> {
    pub fn new(expression: &'a str) -> Self {
        UpdateSpec { expression, ..Default::default() }
    }

    pub fn condition(mut self, condition: &'a str) -> Self {
        self.condition = Some(condition);
        self
    }

    pub fn name(mut self, placeholder: &'a str, name: &'a str) -> Self {
        self.names.push((placeholder, name));
        self
    }

    pub fn value(mut self, placeholder: &'a str, value: AttributeValue) -> Self {
        self.values.push((placeholder, value));
        self
    }
}

/// How a transaction ended, for callers that decide themselves what a
/// failed condition means (re-read and retry, or "already done") rather
/// than answering an error (`Store::transact`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transacted {
    Done,
    /// A write's condition failed: its index, when the service says which
    /// (some emulators give no reasons).
    ConditionFailed(Option<usize>),
    /// A concurrent transaction touched the same items: retrying may succeed.
    Contended,
}

/// A cancelled TransactWriteItems: each write's reason code, and the error
/// to answer if the caller does not handle it.
struct Cancelled {
    codes: Vec<Option<String>>,
    error: Error,
}

/// What a run of pages reads.
#[derive(Debug, Clone, Copy)]
enum Read<'a> {
    Query(&'a QuerySpec<'a>),
    /// Select=COUNT: keys are read and counted, no items are returned.
    Count(&'a QuerySpec<'a>),
    Scan(&'a ScanSpec<'a>),
}

/// The one paging loop over LastEvaluatedKey: a Query or Scan read page by
/// page. `next` answers the next page (none once the read has ended);
/// `resume_key` is where a later request continues (none at the end).
pub struct Pages<'a> {
    store: &'a Store,
    read: Read<'a>,
    start: Option<Item>,
    ended: bool,
    counted: u64,
}

impl Pages<'_> {
    /// The next page, of at most `limit` items (none: as many as fit in
    /// DynamoDB's 1 MB page, the fewest round trips for a full read).
    pub async fn next(&mut self, limit: Option<i32>) -> Result<Option<Vec<Item>>> {
        if self.ended {
            return Ok(None);
        }
        let (items, count, last) = self.store.read_page(self.read, self.start.take(), limit).await?;
        self.counted += count;
        self.ended = last.is_none();
        self.start = last;
        Ok(Some(items))
    }

    /// The key to continue from: none once the read has ended.
    pub fn resume_key(self) -> Option<Item> {
        self.start
    }
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

    /// Delete an item if it exists (items the transaction owns outright).
    pub fn delete(table: &str, pk: &str, sk: &str) -> Result<Write> {
        let delete = Delete::builder().table_name(table).key("pk", s(pk)).key("sk", s(sk)).build().map_err(|e| Error::internal(e.to_string()))?;
        Ok(Write { item: TransactWriteItem::builder().delete(delete).build(), on_conflict: None })
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

    /// Put an item if `condition` holds on the stored one.
    pub fn put_if(table: &str, item: Item, condition: &Condition<'_>, on_conflict: Option<Error>) -> Result<Write> {
        let mut put = Put::builder().table_name(table).set_item(Some(item)).condition_expression(condition.expression);
        put = put.set_expression_attribute_names(names_map(&condition.names)).set_expression_attribute_values(values_map(&condition.values));
        let put = put.build().map_err(|e| Error::internal(e.to_string()))?;
        Ok(Write { item: TransactWriteItem::builder().put(put).build(), on_conflict })
    }

    /// Delete an item if `condition` holds on it.
    pub fn delete_if(table: &str, pk: &str, sk: &str, condition: &Condition<'_>, on_conflict: Option<Error>) -> Result<Write> {
        let mut delete = Delete::builder().table_name(table).key("pk", s(pk)).key("sk", s(sk)).condition_expression(condition.expression);
        delete = delete.set_expression_attribute_names(names_map(&condition.names)).set_expression_attribute_values(values_map(&condition.values));
        let delete = delete.build().map_err(|e| Error::internal(e.to_string()))?;
        Ok(Write { item: TransactWriteItem::builder().delete(delete).build(), on_conflict })
    }

    /// Update an item (its condition, if any, failing answers `on_conflict`).
    pub fn update(table: &str, pk: &str, sk: &str, update: &UpdateSpec<'_>, on_conflict: Option<Error>) -> Result<Write> {
        let mut builder = aws_sdk_dynamodb::types::Update::builder()
            .table_name(table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression(update.expression)
            .set_condition_expression(update.condition.map(str::to_string));
        builder = builder.set_expression_attribute_names(names_map(&update.names)).set_expression_attribute_values(values_map(&update.values));
        let update = builder.build().map_err(|e| Error::internal(e.to_string()))?;
        Ok(Write { item: TransactWriteItem::builder().update(update).build(), on_conflict })
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

    /// The table's name, for the writes of a transaction (`Write::put_new(store.table(), ...)`).
    pub fn table(&self) -> &str {
        &self.table
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

    /// `get` of a document item (`to_doc_item`).
    pub async fn get_doc<T: DeserializeOwned>(&self, pk: &str, sk: &str) -> Result<Option<T>> {
        self.get_item(pk, sk).await?.map(from_doc_item).transpose()
    }

    /// Put an item, replacing whatever has its key, with no condition and no
    /// audit entry. For items the caller owns outright (its own idempotency
    /// record, a redacted copy during erasure), bulk tooling, and tests that
    /// forge state. Audited changes go through `Journal::commit`.
    pub async fn put_item_unchecked(&self, item: Item) -> Result<()> {
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(aws("dynamodb PutItem"))?;
        Ok(())
    }

    /// Put an item that must not exist yet: false when one already does
    /// (someone else made it first).
    pub async fn put_new(&self, item: Item) -> Result<bool> {
        self.put_if(item, &Condition::new("attribute_not_exists(pk)")).await
    }

    /// Put an item if `condition` holds on the stored one: false when it
    /// does not.
    pub async fn put_if(&self, item: Item, condition: &Condition<'_>) -> Result<bool> {
        let mut put = self.client.put_item().table_name(&self.table).set_item(Some(item)).condition_expression(condition.expression);
        put = put.set_expression_attribute_names(names_map(&condition.names)).set_expression_attribute_values(values_map(&condition.values));
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(aws("dynamodb PutItem")(e)),
        }
    }

    /// Delete an item, whether or not it exists, with no audit entry (an
    /// idempotency record, a rate-limit bucket, state a test removes).
    pub async fn delete(&self, pk: &str, sk: &str) -> Result<()> {
        self.client.delete_item().table_name(&self.table).key("pk", s(pk)).key("sk", s(sk)).send().await.map_err(aws("dynamodb DeleteItem"))?;
        Ok(())
    }

    /// UpdateItem with no audit entry (derived data, counters, markers):
    /// the item as it is after the update, or none when the update's
    /// condition did not hold.
    pub async fn update(&self, pk: &str, sk: &str, update: &UpdateSpec<'_>) -> Result<Option<Item>> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression(update.expression)
            .set_condition_expression(update.condition.map(str::to_string))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        request = request.set_expression_attribute_names(names_map(&update.names)).set_expression_attribute_values(values_map(&update.values));
        match request.send().await {
            Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(None),
            Err(e) => Err(aws("dynamodb UpdateItem")(e)),
        }
    }

    /// The pages of a Query, from `start` (a cursor's key) or the beginning.
    pub fn query_pages<'a>(&'a self, spec: &'a QuerySpec<'a>, start: Option<Item>) -> Pages<'a> {
        Pages { store: self, read: Read::Query(spec), start, ended: false, counted: 0 }
    }

    /// The pages of a Scan (the whole table, or one part of a parallel
    /// scan). For backfills and recomputations, tooling and tests: no
    /// request path scans.
    pub fn scan_pages<'a>(&'a self, spec: &'a ScanSpec<'a>) -> Pages<'a> {
        Pages { store: self, read: Read::Scan(spec), start: None, ended: false, counted: 0 }
    }

    /// A parallel Scan of the whole table with `spec`'s filter (its
    /// `segment` is set here): `segments` parts read concurrently, page by
    /// page, each page handed to `fold` with the part's own accumulator as
    /// it arrives (so the caller keeps what it needs of an item, not the
    /// item). Answers the accumulators, one a part, for the caller to merge.
    pub async fn scan_parallel<T, F>(&self, spec: &ScanSpec<'_>, segments: i32, fold: F) -> Result<Vec<T>>
    where
        T: Default,
        F: Fn(&mut T, Vec<Item>) -> Result<()>,
    {
        let fold = &fold;
        let parts = (0..segments).map(|segment| async move {
            let spec = ScanSpec { segment: Some((segment, segments)), ..spec.clone() };
            let mut pages = self.scan_pages(&spec);
            let mut acc = T::default();
            while let Some(items) = pages.next(None).await? {
                fold(&mut acc, items)?;
            }
            Ok::<T, Error>(acc)
        });
        futures::future::try_join_all(parts).await
    }

    /// One page of a Query: at most `limit` items read from `start`, and the
    /// key to continue from (none at the end).
    pub async fn query_page(&self, spec: &QuerySpec<'_>, start: Option<Item>, limit: i32) -> Result<(Vec<Item>, Option<Item>)> {
        let mut pages = self.query_pages(spec, start);
        let items = pages.next(Some(limit)).await?.unwrap_or_default();
        Ok((items, pages.resume_key()))
    }

    /// A listing page: up to `limit` items from `start`, with at most
    /// `max_reads` Queries (so a sparse filter cannot make one request
    /// expensive), each asking only what the page still lacks so the key
    /// returned is exactly where the next page starts.
    pub async fn query_filled(&self, spec: &QuerySpec<'_>, start: Option<Item>, limit: i32, max_reads: usize) -> Result<(Vec<Item>, Option<Item>)> {
        let mut pages = self.query_pages(spec, start);
        let mut items = Vec::new();
        for _ in 0..max_reads {
            let Some(page) = pages.next(Some(limit - items.len() as i32)).await? else { break };
            items.extend(page);
            if items.len() >= limit as usize {
                break;
            }
        }
        Ok((items, pages.resume_key()))
    }

    /// Every item of a Query, all pages (for partitions known to be small
    /// or swept whole: a person's items, soft-delete and job partitions).
    pub async fn query_all(&self, spec: &QuerySpec<'_>) -> Result<Vec<Item>> {
        let mut pages = self.query_pages(spec, None);
        let mut out = Vec::new();
        while let Some(items) = pages.next(None).await? {
            out.extend(items);
        }
        Ok(out)
    }

    /// How many items a Query matches (Select=COUNT: keys are read, no
    /// items are returned), all pages.
    pub async fn query_count(&self, spec: &QuerySpec<'_>) -> Result<u64> {
        let mut pages = Pages { store: self, read: Read::Count(spec), start: None, ended: false, counted: 0 };
        while pages.next(None).await?.is_some() {}
        Ok(pages.counted)
    }

    /// Every item of the table (tests and tooling only).
    pub async fn scan_all(&self) -> Result<Vec<Item>> {
        let spec = ScanSpec::default();
        let mut pages = self.scan_pages(&spec);
        let mut out = Vec::new();
        while let Some(items) = pages.next(None).await? {
            out.extend(items);
        }
        Ok(out)
    }

    /// One Query or Scan request: the items, the count, and the last
    /// evaluated key. Only `Pages` calls it.
    async fn read_page(&self, read: Read<'_>, start: Option<Item>, limit: Option<i32>) -> Result<(Vec<Item>, u64, Option<Item>)> {
        let (spec, count_only) = match read {
            Read::Query(spec) => (spec, false),
            Read::Count(spec) => (spec, true),
            Read::Scan(spec) => {
                let out = self
                    .client
                    .scan()
                    .table_name(&self.table)
                    .set_segment(spec.segment.map(|(s, _)| s))
                    .set_total_segments(spec.segment.map(|(_, of)| of))
                    .set_filter_expression((!spec.filter.is_empty()).then(|| spec.filter.to_string()))
                    .set_expression_attribute_names(names_map(&spec.names))
                    .set_expression_attribute_values(values_map(&spec.values))
                    .set_limit(limit)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(aws("dynamodb Scan"))?;
                return Ok((out.items.unwrap_or_default(), out.count.max(0) as u64, out.last_evaluated_key));
            }
        };
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(spec.index.map(str::to_string))
            .key_condition_expression(spec.key_condition)
            .scan_index_forward(spec.forward)
            .set_limit(limit)
            .set_exclusive_start_key(start);
        if spec.consistent {
            query = query.consistent_read(true);
        }
        if count_only {
            query = query.select(aws_sdk_dynamodb::types::Select::Count);
        }
        if !spec.filter.is_empty() {
            query = query.filter_expression(spec.filter);
        }
        query = query.set_expression_attribute_names(names_map(&spec.names)).set_expression_attribute_values(values_map(&spec.values));
        let out = query.send().await.map_err(aws("dynamodb Query"))?;
        Ok((out.items.unwrap_or_default(), out.count.max(0) as u64, out.last_evaluated_key))
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
        let Err(Cancelled { codes, error }) = self.send_transaction(items).await? else {
            return Ok(());
        };
        for (index, code) in codes.iter().enumerate() {
            match code.as_deref() {
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
        if codes.is_empty()
            && let Some(conflict) = conflicts.iter_mut().find_map(Option::take)
        {
            return Err(conflict);
        }
        Err(error)
    }

    /// Apply `writes` atomically and say how it ended, for callers that
    /// re-read and retry, or count a failed condition as "already done"
    /// (rate-limit buckets, bulk segments, rollups). Each write's
    /// `on_conflict` is not used: the caller decides from the outcome.
    /// Cancellations for any other reason are errors.
    pub async fn try_transact(&self, writes: &[Write]) -> Result<Transacted> {
        if writes.len() > MAX_TRANSACTION_ITEMS {
            return Err(Error::internal(format!("transaction of {} items exceeds the limit", writes.len())));
        }
        let items = writes.iter().map(|w| w.item.clone()).collect();
        let Err(Cancelled { codes, error }) = self.send_transaction(items).await? else {
            return Ok(Transacted::Done);
        };
        if codes.is_empty() {
            return Ok(Transacted::ConditionFailed(None));
        }
        if let Some(index) = codes.iter().position(|c| c.as_deref() == Some("ConditionalCheckFailed")) {
            return Ok(Transacted::ConditionFailed(Some(index)));
        }
        if codes.iter().any(|c| c.as_deref() == Some("TransactionConflict")) {
            return Ok(Transacted::Contended);
        }
        Err(error)
    }

    /// TransactWriteItems: done, or cancelled with each write's reason code;
    /// any other failure is an error.
    async fn send_transaction(&self, items: Vec<TransactWriteItem>) -> Result<std::result::Result<(), Cancelled>> {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
        let err = match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => return Ok(Ok(())),
            Err(err) => err,
        };
        let codes = match err.as_service_error() {
            Some(E::TransactionCanceledException(cancel)) => cancel.cancellation_reasons().iter().map(|r| r.code().map(str::to_string)).collect(),
            _ => return Err(aws("dynamodb TransactWriteItems")(err)),
        };
        Ok(Err(Cancelled { codes, error: aws("dynamodb TransactWriteItems")(err) }))
    }

    /// Read items by key (BatchGetItem, 100 keys a call, UnprocessedKeys
    /// retried with backoff), strongly consistent; missing items are simply
    /// absent.
    pub async fn batch_get(&self, keys: &[(String, String)]) -> Result<Vec<Item>> {
        self.batch_get_with(keys, true).await
    }

    /// `batch_get` with eventually consistent reads (half the cost), for
    /// derived data that is itself a moment behind (rollup counters).
    pub async fn batch_get_eventually_consistent(&self, keys: &[(String, String)]) -> Result<Vec<Item>> {
        self.batch_get_with(keys, false).await
    }

    async fn batch_get_with(&self, keys: &[(String, String)], consistent: bool) -> Result<Vec<Item>> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut found = Vec::new();
        for chunk in keys.chunks(100) {
            let keys: Vec<Item> = chunk.iter().map(|(pk, sk)| Item::from([("pk".to_string(), s(pk.clone())), ("sk".to_string(), s(sk.clone()))])).collect();
            let mut pending =
                Some(KeysAndAttributes::builder().set_keys(Some(keys)).consistent_read(consistent).build().map_err(|e| Error::internal(e.to_string()))?);
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

/// Stored times and the sort keys built from them (`platform::time`).
pub use crate::platform::time::timestamp;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Row {
        month: String,
        cents: i64,
        counts: Vec<u32>,
    }

    #[test]
    fn a_document_item_is_one_attribute_and_reads_back_as_written() {
        let row = Row { month: "2026-03".into(), cents: -1250, counts: vec![1, 2, 3] };
        let item = to_doc_item(&row).unwrap();
        assert_eq!(item.keys().collect::<Vec<_>>(), vec![DOC]);
        assert_eq!(from_doc_item::<Row>(item).unwrap(), row);
    }

    #[test]
    fn an_item_written_before_documents_still_reads() {
        let row = Row { month: "2026-03".into(), cents: 7, counts: vec![] };
        let mut item = to_item(&row).unwrap();
        item.insert("pk".into(), s("P"));
        assert_eq!(from_doc_item::<Row>(item).unwrap(), row);
    }
}
