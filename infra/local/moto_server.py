"""moto_server, minus moto's record of every model instance it ever made.

moto keeps a reference to each instance of its models (every DynamoDB item
version, stream record, S3 key, SQS message) for its /moto-api/data.json
dump, so its memory only grows and a data.json request walks all of it: in
a long test run it reached 10 GB and data.json took minutes. Only SES
messages are kept (the tests read sent emails from data.json); nothing else
in moto needs the record (S3 uses it only on reset).

Run as `python moto_server.py -H 127.0.0.1 -p PORT` (infra/local/src/moto.rs).
"""

import sys

from moto.core import common_models

KEEP = ("moto.ses.", "moto.sesv2.")


def _new(cls, *args, **kwargs):
    instance = object.__new__(cls)
    if cls.__module__.startswith(KEEP):
        cls.instances_tracked.append(instance)
    return instance


common_models.BaseModel.__new__ = staticmethod(_new)

from moto.server import main  # noqa: E402  (after the patch, on purpose)

sys.exit(main())
