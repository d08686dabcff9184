"""moto_server, minus moto's record of every model instance it ever made.

moto keeps a reference to each instance of its models (every DynamoDB item
version, stream record, S3 key, SQS message) for its /moto-api/data.json
dump, so its memory only grows and a data.json request walks all of it: in
a long test run it reached 10 GB and data.json took minutes. Only SES
messages are kept (the tests read sent emails from data.json); nothing else
in moto needs the record (S3 uses it only on reset).

Also: moto backs up a DynamoDB transaction by deep-copying every table it
touches, once per item (`DynamoDBBackend.transact_write_items`): O(table)
per transaction, seconds each at demo size (make dev's first sign-in took
over a minute). Here it keeps an undo log of only the items the transaction
names, and the length of each table's stream, and restores those instead.

And: moto answers a Query on the table (not an index) by walking every
item of every partition (`Table.query` over `Table.all_items()`): O(table)
per request, where DynamoDB reads only the partition asked for. At demo
size (about 50k items) that made the audit sealer's and verifier's walk of
367 day partitions take minutes. Here such a Query sees only its own
partition's items (moto's own `items[hash_key]`), so it costs what the
partition holds. A Query on an index still looks at every item (moto keeps
no index), but through a plain comparison of each item's stored key type
and value, and sorts only the matching items (moto sorted the whole table
by key on every Query, about 2 s per Query at demo size). Results, order, paging and
filters are moto's, unchanged.

And: moto answers every page of a Scan of the table by sorting the whole
table by key (`Table.scan` over `Table.all_items()`) and walking it from
the start to the page's start key, checking each item's segment: O(table)
per 1 MB page, so a full Scan was O(table²) (the analytics refresh's read
of 10x the demo data would take hours). Here a Scan of the table (keys of
type S, as Keel's) walks the partitions of its segment from the start
key's on, in moto's order, and stops when the page is full: it costs a
sort of those partitions' keys and what the page holds. Results, order,
segments, paging and filters are moto's, unchanged.

And: moto_server answers requests on several threads, and moto checks a
write's condition and then applies it without a lock, so two conditional
writes to one item could both pass (both "attribute_not_exists(pk)"). A
failed transaction's rollback (moto's or the undo log here) could also put
back an item over another thread's write made meanwhile. DynamoDB applies
each write and transaction to an item atomically; here every write (put,
update, delete, transaction) holds one lock, so they are atomic too.

Run as `python moto_server.py -H 127.0.0.1 -p PORT` (infra/local/src/moto.rs).
"""

import copy
import operator
import sys
import threading

from moto.core import common_models

KEEP = ("moto.ses.", "moto.sesv2.")


def _new(cls, *args, **kwargs):
    instance = object.__new__(cls)
    if cls.__module__.startswith(KEEP):
        cls.instances_tracked.append(instance)
    return instance


common_models.BaseModel.__new__ = staticmethod(_new)

import moto.dynamodb.models as dynamodb_models  # noqa: E402
from moto.dynamodb.models.dynamo_type import DynamoType  # noqa: E402
from moto.dynamodb.models.table import Table  # noqa: E402
from moto.utilities.utils import md5_hash  # noqa: E402

_in_transaction = threading.local()


class _CopyWithoutTableBackups:
    """The dynamodb models module's `copy`: inside a transaction, the table
    "backup" is the table itself (restoring it is then a no-op) and the undo
    log below does the rollback; everything else is the real `copy`."""

    def deepcopy(self, value, memo=None):
        if getattr(_in_transaction, "active", False) and isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name):
        return getattr(copy, name)


dynamodb_models.copy = _CopyWithoutTableBackups()
_transact_write_items = dynamodb_models.DynamoDBBackend.transact_write_items


def _key_of(table, op):
    attrs = op.get("Key") or op.get("Item") or {}
    hash_key = DynamoType(attrs[table.hash_key_attr])
    range_key = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
    return hash_key, range_key


def _restore(table, hash_key, range_key, saved):
    if range_key is None:
        if saved is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = saved
    elif saved is None:
        table.items.get(hash_key, {}).pop(range_key, None)
        if hash_key in table.items and not table.items[hash_key]:
            del table.items[hash_key]
    else:
        table.items[hash_key][range_key] = saved


def transact_write_items(self, transact_items):
    undo, streams = [], {}
    for item in transact_items:
        if len(item) != 1:
            continue  # moto refuses it before changing anything
        _, op = next(iter(item.items()))
        table = self.tables.get(op.get("TableName"))
        try:
            hash_key, range_key = _key_of(table, op)
        except (AttributeError, KeyError, TypeError):
            continue  # no such table, or no key: refused before any change
        undo.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
        if table.stream_shard is not None:
            streams.setdefault(id(table), (table.stream_shard, len(table.stream_shard.items)))
    _in_transaction.active = True
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for table, hash_key, range_key, saved in reversed(undo):
            _restore(table, hash_key, range_key, saved)
        for shard, length in streams.values():
            del shard.items[length:]
        raise
    finally:
        _in_transaction.active = False


dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items

# One lock for every write, re-entrant because a transaction's writes call
# the backend's own writes.
_writes = threading.RLock()


def _atomic(write):
    def locked(self, *args, **kwargs):
        with _writes:
            return write(self, *args, **kwargs)

    locked.__name__ = write.__name__
    return locked


for _name in ("put_item", "update_item", "delete_item", "transact_write_items"):
    setattr(dynamodb_models.DynamoDBBackend, _name, _atomic(getattr(dynamodb_models.DynamoDBBackend, _name)))

_partition = threading.local()
_query = Table.query
_scan = Table.scan
_all_items = Table.all_items


def query(self, hash_key, *args, **kwargs):
    """A Query on the table itself looks only at `hash_key`'s partition; one
    on an index only at the items whose index key matches (found by a plain
    comparison of the stored type and value, far cheaper than moto's)."""
    index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
    if index_name is None and hash_key is not None and self.range_key_attr:
        _partition.key = hash_key
    elif index_name is not None and kwargs.get("hash_key_conditions"):
        _partition.index = [(name, value.type, value.value) for name, value in kwargs["hash_key_conditions"]]
    try:
        return _query(self, hash_key, *args, **kwargs)
    finally:
        _partition.key = None
        _partition.index = None


def scan(self, filters, limit, exclusive_start_key, filter_expression=None, index_name=None, *args, **kwargs):
    """A Scan of the table itself walks only its segment's partitions
    from the start key's on, lazily (see `_scan_order`)."""
    if index_name is None and self.hash_key_type == "S" and self.range_key_attr and self.range_key_type == "S":
        _partition.scan = (kwargs.get("segments", (None, None)), exclusive_start_key)
    try:
        return _scan(self, filters, limit, exclusive_start_key, filter_expression, index_name, *args, **kwargs)
    finally:
        _partition.scan = None


# The first byte of the MD5 of a hash key's value, which moto's
# `is_within_segment` takes modulo the number of segments.
_segment_byte = {}


def _segment_of(value, total):
    byte = _segment_byte.get(value)
    if byte is None:
        byte = _segment_byte[value] = md5_hash(value.encode("utf8")).digest()[0]
    return byte % total


def _scan_order(table, segments, start):
    """The items moto's Scan would walk, in its order (by hash key, then
    range key: plain string order for keys of type S), from the partition
    of `start` (the page's exclusive start key) on and only the partitions
    of `segments`, made as the Scan asks for them. moto still skips the
    start partition's items up to the start key itself, and checks each
    item's segment."""
    segment, total = segments
    first = start[table.hash_key_attr]["S"] if start else None
    # list(): one step, so a write meanwhile cannot change the dict mid-walk.
    keys = [
        key
        for key in list(table.items)
        if (first is None or key.value >= first) and (total is None or _segment_of(key.value, total) == segment)
    ]
    keys.sort(key=operator.attrgetter("value"))
    by_range = operator.attrgetter("range_key.value")
    for key in keys:
        partition = table.items.get(key)
        if partition:
            yield from sorted(partition.values(), key=by_range)


def _matches(item, conditions):
    for name, kind, value in conditions:
        found = item.attrs.get(name)
        if found is None or found.type != kind or found.value != value:
            return False
    return True


def all_items(self):
    scan = getattr(_partition, "scan", None)
    if scan is not None:
        return _scan_order(self, *scan)
    key = getattr(_partition, "key", None)
    if key is not None:
        return list(self.items.get(key, {}).values())
    conditions = getattr(_partition, "index", None)
    if conditions and self.range_key_attr:
        # moto sorts every item of the table here (seconds at demo size);
        # only the matching ones need it, by the same key.
        found = [item for partition in self.items.values() for item in partition.values() if _matches(item, conditions)]
        return sorted(found, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)
    return _all_items(self)


Table.query = query
Table.scan = scan
Table.all_items = all_items

from moto.server import main  # noqa: E402  (after the patches, on purpose)

sys.exit(main())
