"""The compiled record reader (`usage_monitor/adapters/_records.c`) against the contract's
pydantic model: whatever the reader accepts, the model accepts with the same values; the
plain form records are written in is accepted (else the fast path would be dead weight);
and its digest is hashlib's BLAKE2b, bit for bit. A worker with the reader and one without
parse a batch into the same rows and the same dead letters."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from simwatch_contracts import UsageRecord
from simwatch_contracts.common import MAX_RECORD_BYTES
from simwatch_runtime.dead_letters import DeadLetters
from usage_monitor.adapters import dedupe, record_scan
from usage_monitor.adapters.keys import Keys
from usage_monitor.adapters.memory_store import MemoryStore
from usage_monitor.entrypoints.pipeline import UsagePipeline
from usage_monitor.metrics import Metrics
from usage_monitor.service_layer.service import CardService
from usage_monitor.settings import Settings

scan = record_scan.scan
native = pytest.mark.skipif(scan is None, reason="the compiled reader was not built")


def reference_digest(record_id: str) -> int:
    raw = hashlib.blake2b(record_id.encode(), digest_size=8).digest()
    return int.from_bytes(raw, "big", signed=True)


def model_view(value: bytes) -> tuple[str, str, float, int, int] | None:
    """What the pipeline takes from a message through the model, or None if refused."""
    try:
        r = UsageRecord.model_validate_json(value)
    except ValidationError:
        return None
    return (
        r.record_id,
        r.iccid,
        r.event_time.timestamp(),
        r.total_bytes,
        reference_digest(r.record_id),
    )


def agrees(value: bytes) -> tuple[str, str, float, int, int] | None:
    """The reader's answer, asserted consistent with the model's."""
    assert scan is not None
    fast = scan(value)
    if fast is not None:
        assert fast == model_view(value), value
    return fast


def test_the_reader_is_built_where_a_compiler_is() -> None:
    # `setup.py` builds it as optional: a failed build must not go unnoticed in CI.
    if shutil.which("cc") or shutil.which("gcc"):
        assert scan is not None, "a C compiler is here, but usage_monitor.adapters._records is not"


ids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=128)
iccids = st.from_regex(r"\A89[0-9A-Za-z]{17,18}\Z")
volumes = st.integers(0, MAX_RECORD_BYTES)
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
instants = st.datetimes(datetime(1971, 1, 2), datetime(2199, 12, 30))


def render(moment: datetime, digits: int, zulu: bool) -> str:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{moment.microsecond:06d}"[:digits]
    off = moment.utcoffset()
    assert off is not None
    if zulu and off == timedelta(0):
        return text + "Z"
    minutes = int(off.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return text + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@st.composite
def plain_records(draw: st.DrawFn) -> bytes:
    moment = draw(instants).replace(tzinfo=draw(offsets))
    doc: dict[str, Any] = {
        "record_id": draw(ids.filter(lambda s: '"' not in s and "\\" not in s)),
        "iccid": draw(iccids),
        "event_time": render(moment, draw(st.integers(0, 6)), draw(st.booleans())),
        "bytes_up": draw(volumes),
        "bytes_down": draw(volumes),
    }
    items = list(doc.items())
    if draw(st.booleans()):
        items.append(("site", draw(st.sampled_from(["x", 1, -2.5, True, False, None]))))
    order = draw(st.permutations(items))
    sep = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]))
    return json.dumps(dict(order), separators=sep).encode()


@native
@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(plain_records())
def test_the_plain_form_is_read_as_the_model_reads_it(value: bytes) -> None:
    assert agrees(value) is not None, value


@native
@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(plain_records(), st.data())
def test_a_mangled_record_is_never_read_otherwise_than_by_the_model(
    value: bytes, data: st.DataObject
) -> None:
    """Byte edits anywhere (cut, inserted, replaced), from JSON's alphabet and beyond."""
    raw = bytearray(value)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw)))
        alphabet = st.sampled_from(list(b'{}[]",:.-+eE0123456789 \\tTzZ\x00\x7f\xc3'))
        edit = data.draw(st.sampled_from(["cut", "insert", "replace"]))
        if edit == "cut" and at < len(raw):
            del raw[at]
        elif edit == "insert":
            raw.insert(at, data.draw(alphabet))
        elif at < len(raw):
            raw[at] = data.draw(alphabet)
    agrees(bytes(raw))


GOOD = {
    "record_id": "r-1",
    "iccid": "89860400000000000001",
    "event_time": "2026-11-29T10:00:00.5+08:00",
    "bytes_up": 10,
    "bytes_down": 5,
}


def variant(**changes: Any) -> bytes:
    doc = {**GOOD, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


EDGES = [
    # forms the reader leaves to the model (valid or not): each must come back None or agree
    variant(event_time="2026-11-29t10:00:00Z"),
    variant(event_time="2026-11-29 10:00:00Z"),
    variant(event_time="2026-11-29T10:00:00z"),
    variant(event_time="2026-11-29T10:00:00+0800"),
    variant(event_time="2026-11-29T10:00:00"),
    variant(event_time="2026-11-29T10:00:60Z"),
    variant(event_time="2026-11-29T24:00:00Z"),
    variant(event_time="2026-02-29T10:00:00Z"),
    variant(event_time="2028-02-29T10:00:00Z"),
    variant(event_time="2100-02-29T10:00:00Z"),
    variant(event_time="2026-11-29T10:00:00.1234567Z"),
    variant(event_time="2026-11-29T10:00:00.Z"),
    variant(event_time="2026-11-29T10:00:00+24:00"),
    variant(event_time="2026-11-29T10:00:00-00:00"),
    variant(event_time="2026-11-29T10:00:00+23:59"),
    variant(event_time="1970-01-01T00:00:00Z"),
    variant(event_time="1971-01-01T00:00:00+01:00"),
    variant(event_time="2199-12-31T23:59:59.999999-23:59"),
    variant(event_time="9999-12-31T23:59:59Z"),
    variant(event_time=1764410400),
    variant(bytes_up=-1),
    variant(bytes_up=-0),
    variant(bytes_up=1.0),
    variant(bytes_up=1e3),
    variant(bytes_up=MAX_RECORD_BYTES),
    variant(bytes_up=MAX_RECORD_BYTES + 1),
    variant(bytes_up=10**15),
    variant(bytes_up=True),
    variant(bytes_up="10"),
    variant(bytes_up=None),
    variant(bytes_up=...),
    variant(iccid="89860400000000000001".lower()),
    variant(iccid="8986040000000000000a"),
    variant(iccid="8986040000000000001"),
    variant(iccid="898604000000000000012"),
    variant(iccid="98860400000000000001"),
    variant(iccid="89860400000000000001\n"),
    variant(iccid="8986040000000000000ß"),
    variant(record_id=""),
    variant(record_id="x" * 128),
    variant(record_id="x" * 129),
    variant(record_id="with space"),
    variant(record_id="tab\there"),
    variant(record_id='quote"d'),
    variant(record_id="back\\slash"),
    variant(record_id="é"),
    variant(record_id=7),
    variant(extra={"nested": 1}),
    variant(extra=[1, 2]),
    variant(extra="é"),
    variant(extra=1e400),
    variant(extra=-0.5),
    b'{"record_id":"r","record_id":"s","iccid":"89860400000000000001",'
    b'"event_time":"2026-11-29T10:00:00Z","bytes_up":1,"bytes_down":2}',
    b'{"x":1,"x":2,"record_id":"r","iccid":"89860400000000000001",'
    b'"event_time":"2026-11-29T10:00:00Z","bytes_up":1,"bytes_down":2}',
    b'{"record\\u005fid":"r","iccid":"89860400000000000001",'
    b'"event_time":"2026-11-29T10:00:00Z","bytes_up":1,"bytes_down":2}',
    b'{"record_id":"r","iccid":"89860400000000000001",'
    b'"event_time":"2026-11-29T10:00:00Z","bytes_up":01,"bytes_down":2}',
    b'{"record_id":"r","iccid":"89860400000000000001",'
    b'"event_time":"2026-11-29T10:00:00Z","bytes_up":1,"bytes_down":2}x',
    b'{"record_id":"r","iccid":"89860400000000000001",'
    b'"event_time":"2026-11-29T10:00:00Z","bytes_up":1,"bytes_down":2,}',
    b'[{"record_id":"r"}]',
    b"{}",
    b"",
    b"null",
    b"\xef\xbb\xbf" + variant(),
]


@native
@pytest.mark.parametrize("value", EDGES)
def test_edge_forms_are_left_to_the_model_or_read_as_it_reads_them(value: bytes) -> None:
    agrees(value)


@native
def test_what_a_worker_meets_every_day_takes_the_fast_path() -> None:
    for value in (
        variant(),
        variant(event_time="2026-11-29T02:00:00Z"),
        variant(event_time="2026-11-29T02:00:00.123456+00:00", site="x", rat=4),
        variant(iccid="8986040000000000000x"),  # upper-cased, as the model does
        b'{ "record_id" : "r-1" ,\n "iccid":"89860400000000000001","event_time":'
        b'"2026-11-29T10:00:00-05:30", "bytes_up":0,"bytes_down":0 }\n',
    ):
        assert agrees(value) is not None, value


@native
@given(st.binary(min_size=1, max_size=128))
@example(b"x" * 128)
def test_the_digest_is_blake2b(raw: bytes) -> None:
    assert record_scan.digest_bytes is not None
    expected = int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big", signed=True)
    assert record_scan.digest_bytes(raw) == expected


@given(st.text(min_size=1, max_size=200))
def test_dedupe_digest_is_the_same_with_and_without_the_reader(record_id: str) -> None:
    assert dedupe.digest(record_id) == reference_digest(record_id)


class _Msg:
    def __init__(self, offset: int, value: bytes | None) -> None:
        self.topic, self.partition, self.offset = "usage", 0, offset
        self.key, self.value, self.timestamp = b"k", value, 0


class _Nowhere:
    async def publish(self, messages: Any) -> None:
        raise AssertionError("parsing publishes nothing")


def _pipeline(native_records: bool, now: datetime) -> UsagePipeline:
    settings = Settings(redis_shards=4, native_records=native_records)
    store = MemoryStore(Keys(settings.redis_prefix, settings.redis_shards), lambda: 0.0)
    metrics = Metrics.create(CollectorRegistry())
    service = CardService(store, _Nowhere(), settings, metrics, lambda: now)  # type: ignore[arg-type]
    letters = DeadLetters(_Nowhere(), "dlq", lambda s, r: None, lambda: now)  # type: ignore[arg-type]
    return UsagePipeline(service, letters, metrics)


@native
async def test_a_batch_parses_the_same_with_and_without_the_reader() -> None:
    now = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    values: list[bytes | None] = [
        variant(),
        variant(record_id="r-2", event_time="2026-10-31T23:59:59.999999+00:00"),  # last cycle
        variant(record_id="r-3", event_time="2026-11-29T10:20:00Z"),  # 20 min ahead
        variant(record_id="r-4", event_time="2026-09-01T00:00:00Z"),  # too old to count
        variant(record_id="r-5", iccid="8986040000000000000a"),
        variant(record_id="r-6", bytes_up="1"),
        variant(record_id="r-7", event_time="2026-11-29 10:00:00+08:00"),  # model-only form
        b"not json",
        None,
    ]
    messages = [_Msg(i, v) for i, v in enumerate(values)]
    fast, slow = _pipeline(True, now), _pipeline(False, now)
    a, b = await fast.parse(messages), await slow.parse(messages)
    assert [r._replace(digest=None) for r in a.rows] == [r._replace(digest=None) for r in b.rows]
    assert all(r.digest == reference_digest(r.record_id) for r in a.rows if r.digest is not None)
    assert a.event_times == b.event_times
    # One event time per row, in the rows' order (`_recalendar` finds a row's by its index;
    # the too-old record before r-5 used to shift them by one).
    assert [dedupe.window_at(t) for t in a.event_times] == [r.day for r in a.rows]
    assert [(k, json.loads(v)["error"], s, r) for k, v, s, r in a.letters] == [
        (k, json.loads(v)["error"], s, r) for k, v, s, r in b.letters
    ]
    assert len(a.rows) == 4 and len(a.letters) == 5
