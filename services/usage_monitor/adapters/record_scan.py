"""The compiled reader of usage records (`_records.c`), where it was built.

`scan(value)` returns a record's ``(record_id, iccid, event_ts, total_bytes, digest)`` when the
message is in the plain form records are written in, else None: the caller then validates the
message with the pydantic model, which decides and explains. It never accepts what the model
refuses, and gives the model's values (tests/unit/test_record_scan.py). Without a C compiler
at install time the module is absent: `scan` is None and every record takes the model.
"""

from __future__ import annotations

from collections.abc import Callable

Scanned = tuple[str, str, float, int, int]
"""record_id, iccid (upper case), event time as `datetime.timestamp()`, bytes_up +
bytes_down, and `dedupe.digest(record_id)`."""

scan: Callable[[bytes], Scanned | None] | None = None
digest_bytes: Callable[[bytes], int] | None = None
try:
    from . import _records
except ImportError:  # built without a compiler: the pure-Python path
    pass
else:
    scan, digest_bytes = _records.scan, _records.digest
