"""The catalogue of bad input: each message is dead-lettered with its reason, in words, and
the stream goes on (the good records between them all count)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from simwatch_contracts.dead_letter import ORIGINAL_MAX_BYTES

from ..conftest import KafkaIO
from .helpers import card_event, iccid, record, upsert, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.fault]

CARD = iccid(90_001)


def rec(**fields: Any) -> bytes:
    """A usage record of CARD with `fields` changed (`...` removes one)."""
    doc = {**record(CARD, "placeholder", 10), **fields}
    return json.dumps({k: v for k, v in doc.items() if v is not ...}, ensure_ascii=False).encode()


NAN = rec(record_id="m9", bytes_up=7).replace(b'"bytes_up": 7', b'"bytes_up": NaN')
FULLWIDTH_ICCID = "".join(chr(0xFF10 + int(d)) for d in iccid(90_001))  # "８９８６…"  # noqa: RUF003

# (what, the raw value, words the error must contain)
USAGE_CATALOGUE: list[tuple[str, bytes, str]] = [
    ("invalid JSON", b'{"record_id": "x", ', "Invalid JSON"),
    ("not an object", b"[1, 2, 3]", "Input should be an object"),
    ("empty value", b"", "Invalid JSON"),
    ("not UTF-8", b"\xff\xfe\x00\x01", "Invalid JSON"),
    ("missing field", rec(record_id="m1", bytes_down=...), "bytes_down: Field required"),
    ("wrong-typed volume", rec(record_id="m2", bytes_up="100"), "bytes_up: Input should be"),
    ("float volume", rec(record_id="m3", bytes_up=1.5), "bytes_up: Input should be"),
    ("numeric ICCID", rec(record_id="m4", iccid=89860400000000090001), "iccid: Input should be"),
    ("25-character ICCID", rec(record_id="m5", iccid="8986" + "0" * 21), "ICCID must be"),
    ("non-alphanumeric ICCID", rec(record_id="m6", iccid="8986-0400-0000-0009-001"), "ICCID"),
    ("unicode ICCID", rec(record_id="m7", iccid=FULLWIDTH_ICCID), "ICCID must be"),
    ("unicode record id", rec(record_id="cdr-数据-1"), "record_id: Value error, id must be"),
    ("negative volume", rec(record_id="m8", bytes_up=-1), "greater than or equal to 0"),
    ("NaN volume", NAN, "bytes_up"),
    ("NaN as text", rec(record_id="m10", bytes_up="NaN"), "bytes_up: Input should be"),
    ("volume over 2^40", rec(record_id="m11", bytes_down=2**40 + 1), "less than or equal to"),
    ("no UTC offset", rec(record_id="m12", event_time="2026-11-25T10:00:00"), "timezone"),
    ("a year ahead", rec(record_id="m13", event_time="2027-11-25T10:00:00+00:00"), "future"),
    ("1 MB message", rec(record_id="m14", padding="x" * 1_000_000), "the limit is 65536"),
]

EVENTS_CATALOGUE: list[tuple[str, bytes, str]] = [
    ("unknown type", json.dumps(card_event("card.exploded", CARD)).encode(), "card.exploded"),
    ("no type", json.dumps({"iccid": CARD, "event_id": "e1"}).encode(), "type"),
    (
        "wrong-typed quota",
        json.dumps(upsert(CARD, 1) | {"plan": {"quota_bytes": "lots"}}).encode(),
        "plan",
    ),
    ("invalid JSON", b"{{", "Invalid JSON"),
    ("1 MB event", json.dumps(upsert(CARD, 1) | {"padding": "x" * 1_000_000}).encode(), "limit"),
]


def original_of(letter: dict[str, Any]) -> bytes:
    raw = letter["original"]
    return base64.b64decode(raw) if letter["encoding"] == "base64" else raw.encode()


async def test_every_bad_input_is_dead_lettered_with_its_reason_and_the_stream_goes_on(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str]
) -> None:
    worker = start_worker()
    usage, events = names["USAGE_MONITOR_TOPIC_USAGE"], names["USAGE_MONITOR_TOPIC_EVENTS"]
    await kafka.send(events, upsert(CARD, 10**9), key=CARD)
    # One partition (one key), so dead letters come out in the order the inputs went in;
    # a good record follows each bad one.
    stream: list[tuple[str | None, Any]] = []
    for n, (_, raw, _) in enumerate(USAGE_CATALOGUE):
        stream += [(CARD, raw), (CARD, record(CARD, f"good-{n}", 10))]
    await kafka.send_many(usage, stream)
    await kafka.send_many(events, [(CARD, raw) for _, raw, _ in EVENTS_CATALOGUE])

    total = len(USAGE_CATALOGUE) + len(EVENTS_CATALOGUE)
    letters = await kafka.read(names["USAGE_MONITOR_TOPIC_DLQ"], lambda ms: len(ms) >= total)
    by_source: dict[str, list[dict[str, Any]]] = {usage: [], events: []}
    for letter in sorted(letters, key=lambda d: (d["source_topic"], d["offset"])):
        by_source[letter["source_topic"]].append(letter)
    for source, catalogue in ((usage, USAGE_CATALOGUE), (events, EVENTS_CATALOGUE)):
        got = [
            (what, letter["error"])
            for (what, _, _), letter in zip(catalogue, by_source[source], strict=False)
        ]
        assert len(by_source[source]) == len(catalogue), got
        for (what, raw, words), letter in zip(catalogue, by_source[source], strict=True):
            assert words in letter["error"], f"{what}: {letter['error']}"
            assert letter["original_bytes"] == len(raw), what
            if len(raw) <= ORIGINAL_MAX_BYTES:
                assert original_of(letter) == raw and not letter["truncated"], what
            else:  # kept in part; the whole of it stays at partition/offset of the source
                assert letter["truncated"] and original_of(letter) == raw[:ORIGINAL_MAX_BYTES]

    status = await wait_for(
        lambda: worker.card(CARD).json().get("used_bytes") == 10 * len(USAGE_CATALOGUE)
    )
    assert status, worker.card(CARD).json()
    assert worker.proc is not None and worker.proc.poll() is None
