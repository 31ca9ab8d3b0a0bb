"""Pooled quotas (流量池, issue #19) through two real workers on Kafka and Redis: a pool's
usage summed exactly once across shards and workers, its levels announced once, every
member stopped at exhaustion and started when the stop ends, stacked with the members' own
reasons, and bad pool input dead-lettered."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from usage_monitor.domain.pools import Pool

from ..conftest import KafkaIO
from .helpers import card_event, iccid, record, upsert, wait_for

pytestmark = pytest.mark.integration


def pool_event(pool_id: str, quota: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": "pool.upserted",
        "event_id": f"pe-{pool_id}-{quota}-{datetime.now(UTC).timestamp()}",
        "occurred_at": datetime.now(UTC).isoformat(),
        "pool_id": pool_id,
        "customer_id": "acme",
        "quota_bytes": quota,
        "warn_percents": [50, 80],
        **fields,
    }


def member(card: str, pool_id: str, **plan: Any) -> dict[str, Any]:
    event = upsert(card, None)
    event["plan"].update({"pool_id": pool_id, **plan})
    return event


def get(worker: Any, path: str) -> httpx.Response:
    return httpx.get(f"{worker.url}{path}", timeout=5)


@pytest.fixture
def pool_topic(names: dict[str, str]) -> str:
    return names["USAGE_MONITOR_TOPIC_POOLS"]


async def test_a_pool_is_counted_once_across_workers_and_stops_all_its_members(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str], pool_topic: str
) -> None:
    workers = [start_worker(), start_worker()]
    w = workers[0]
    events, usage = names["USAGE_MONITOR_TOPIC_EVENTS"], names["USAGE_MONITOR_TOPIC_USAGE"]
    cards = [iccid(1900 + i) for i in range(20)]
    await kafka.send(pool_topic, pool_event("P1", 10_000), key="P1")
    await kafka.send_many(events, [(c, member(c, "P1")) for c in cards])
    # One member stopped by its customer before the pool runs out: stacked reasons.
    await kafka.send(events, card_event("card.suspend_requested", cards[0]), key=cards[0])
    assert await wait_for(lambda: get(w, "/pools/P1").status_code == 200)
    assert await wait_for(lambda: get(w, "/pools/P1").json()["members"] == 20)

    # 5 500 bytes over 20 cards (every partition, both workers), each record sent twice.
    first = [(c, record(c, f"a-{c}", 275)) for c in cards]
    await kafka.send_many(usage, first + first)
    alerts = await kafka.read(
        names["USAGE_MONITOR_TOPIC_ALERTS"],
        lambda ms: any(m["type"] == "pool_threshold" for m in ms),
    )
    (half,) = [a for a in alerts if a["type"] == "pool_threshold"]
    assert (half["pool_id"], half["percent"], half["used_bytes"]) == ("P1", 50, 5500)
    assert "iccid" not in half and len(half["top_members"]) == 5
    # The rest: exhausted exactly at 11 000 (10 000 needed), the 80 % level on the way.
    second = [(c, record(c, f"b-{c}", 275)) for c in cards]
    await kafka.send_many(usage, second + second[:5])
    commands = await kafka.read(
        names["USAGE_MONITOR_TOPIC_COMMANDS"],
        lambda ms: len([m for m in ms if m["trigger"] == "pool_over_quota"]) >= 19,
    )
    stops = [m for m in commands if m["trigger"] == "pool_over_quota"]
    assert sorted(m["iccid"] for m in stops) == sorted(cards[1:])  # one each, once
    alerts = await kafka.read(names["USAGE_MONITOR_TOPIC_ALERTS"], lambda ms: len(ms) >= 10)
    pool_alerts = sorted((a["type"], a["percent"]) for a in alerts if a["type"].startswith("pool_"))
    assert pool_alerts == [("pool_exhausted", 100), ("pool_threshold", 50), ("pool_threshold", 80)]
    view = get(w, "/pools/P1").json()
    assert (view["used_bytes"], view["state"], view["percent"]) == (11_000, "exhausted", 110.0)
    card = get(workers[1], f"/cards/{cards[0]}").json()
    assert card["reasons"] == ["pool_over_quota", "manual"]

    # The pool's quota raised above its usage: the stop ends; the manual stop stays.
    await kafka.send(pool_topic, pool_event("P1", 50_000), key="P1")
    commands = await kafka.read(
        names["USAGE_MONITOR_TOPIC_COMMANDS"],
        lambda ms: len([m for m in ms if m["type"] == "resume"]) >= 19,
    )
    resumed = [m["iccid"] for m in commands if m["type"] == "resume"]
    assert sorted(resumed) == sorted(cards[1:])
    assert await wait_for(lambda: get(w, f"/cards/{cards[0]}").json()["reasons"] == ["manual"])


async def test_a_member_cap_stops_one_card_and_an_unknown_pool_waits_for_its_definition(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str], pool_topic: str
) -> None:
    w = start_worker()
    events, usage = names["USAGE_MONITOR_TOPIC_EVENTS"], names["USAGE_MONITOR_TOPIC_USAGE"]
    capped, other = iccid(1950), iccid(1951)
    await kafka.send(events, member(capped, "P2", member_cap_bytes=1000), key=capped)
    await kafka.send(events, member(other, "P2"), key=other)
    assert await wait_for(lambda: get(w, f"/cards/{other}").status_code == 200)
    # P2 is not defined yet: usage is counted for the cards and held for the pool.
    await kafka.send_many(
        usage, [(capped, record(capped, "c-1", 1200)), (other, record(other, "o-1", 3000))]
    )
    cmds = await kafka.read(names["USAGE_MONITOR_TOPIC_COMMANDS"], lambda ms: len(ms) >= 1)
    assert [(c["iccid"], c["trigger"]) for c in cmds] == [(capped, "member_cap")]
    assert get(w, "/pools/P2").status_code == 404
    explained = get(w, f"/cards/{capped}/explain?lang=en").json()
    assert explained["reasons"][0]["lifts"]["how"] == "next_cycle"

    await kafka.send(pool_topic, pool_event("P2", 4000), key="P2")  # already used 4 200
    cmds = await kafka.read(names["USAGE_MONITOR_TOPIC_COMMANDS"], lambda ms: len(ms) >= 2)
    got = sorted((c["iccid"], c["trigger"]) for c in cmds)  # partitions: in no set order
    assert got == [(capped, "member_cap"), (other, "pool_over_quota")]
    explained = get(w, f"/cards/{other}/explain?lang=en").json()
    assert explained["reasons"][0]["lifts"]["how"] == "pool_next_cycle"
    assert get(w, "/pools/P2").json()["used_bytes"] == 4200


async def test_bad_pool_events_are_dead_lettered_with_their_reason(
    start_worker: Any, kafka: KafkaIO, names: dict[str, str], pool_topic: str
) -> None:
    start_worker()
    bad = [
        ("P3", pool_event("P3", -1), "greater than or equal to 0"),
        ("P3", pool_event("P3", 2**61), "less than or equal to"),
        ("P3", {**pool_event("P3", 1000), "on_exhausted": "explode"}, "on_exhausted"),
        ("P4", pool_event("P3", 1000), "not the event's pool_id"),
        ("P3", b"{not json", "Invalid JSON"),
    ]
    await kafka.send_many(pool_topic, [(key, value) for key, value, _ in bad])
    letters = await kafka.read(names["USAGE_MONITOR_TOPIC_DLQ"], lambda ms: len(ms) >= len(bad))
    errors = [letter["error"] for letter in letters]
    for _, _, words in bad:
        assert any(words in e for e in errors), (words, errors)


async def _pool_of(c: Any, pool_id: str, quota: int, cards: list[str]) -> None:
    """Define `pool_id` and put `cards` in it, through in-process components `c`."""
    from simwatch_contracts import PoolUpserted

    from ..unit.factories import upsert as unit_upsert

    pool = PoolUpserted.model_validate_json(json.dumps(pool_event(pool_id, quota)))
    await c.store.pool_define(Pool.from_event(pool))
    for card in cards:
        e = unit_upsert(None, iccid=card, expires_at="2099-01-01T00:00:00+08:00")
        plan = e.plan.model_copy(update={"pool_id": pool_id})  # type: ignore[union-attr]
        await c.service.apply_event(e.model_copy(update={"plan": plan}))


async def _used(c: Any, cards: list[str], nbytes: int, cycle: date, tag: str) -> None:
    """`nbytes` counted for each card on 2026-11-20 (one record each, ids `<tag><n>`)."""
    from usage_monitor.ports import IngestRow

    for n, card in enumerate(cards):
        row = IngestRow(f"{tag}{n}", card, "", cycle, nbytes, day="20261120")
        await c.store.ingest(c.store.shard(card), [row])


async def test_a_crossing_seen_by_two_workers_at_once_is_decided_once(
    names: dict[str, str], redis: Any, kafka: KafkaIO
) -> None:
    """Two workers' components settle the same pool at the same moment: one commit wins
    (the pool's version), the other reads again and finds nothing left to decide; each
    member is stopped once. And a fan-out a dead worker left is finished by the clock."""
    from .helpers import Clock, in_process

    clock = Clock(datetime(2026, 11, 20, 4, tzinfo=UTC))
    a, b = in_process(names, clock), in_process(names, clock)
    try:
        cards = [iccid(1960 + i) for i in range(30)]
        await _pool_of(a, "PX", 1000, cards)
        cycle = date(2026, 11, 1)
        await _used(a, cards, 40, cycle, "r")
        touched = [("PX", cycle)]
        results = await asyncio.gather(a.pools.settle(touched), b.pools.settle(touched))
        assert sorted(results) == [0, 1]  # exactly one committed the crossing
        await asyncio.gather(a.pools.idle(), b.pools.idle())
        commands = await kafka.read(
            names["USAGE_MONITOR_TOPIC_COMMANDS"], lambda ms: len(ms) >= len(cards)
        )
        assert sorted(m["iccid"] for m in commands) == sorted(cards)
        assert {m["trigger"] for m in commands} == {"pool_over_quota"}
        alerts = await kafka.read(
            names["USAGE_MONITOR_TOPIC_ALERTS"],
            lambda ms: any(m["type"] == "pool_exhausted" for m in ms),
        )
        assert [m["percent"] for m in alerts if m.get("pool_id") == "PX"] == [50, 80, 100]
        assert await a.store.pool_fanout_requests() == []

        # A worker that died after deciding leaves the request: the clock finishes it.
        record = (await a.store.pool_load(["PX"]))["PX"]
        version = await a.store.pool_commit(record, record.state, [], fan_out=True)
        assert await a.store.pool_fanout_requests() == [("PX", version)]
        assert await b.pools.resume() == 1
        await b.pools.idle()
        assert await a.store.pool_fanout_requests() == []
        await asyncio.sleep(1)
        again = await kafka.read(names["USAGE_MONITOR_TOPIC_COMMANDS"], lambda ms: False, 2)
        assert len(again) == len(cards)  # members evaluated again decide nothing again
    finally:
        await a.close()
        await b.close()


async def test_each_worker_stops_the_members_in_its_own_shards(
    names: dict[str, str], redis: Any, kafka: KafkaIO
) -> None:
    """A pool's stop is spread like the usage stream: the worker that decides it evaluates
    the members in the shards it owns at once, the other worker its own shards' members at
    its next poll, and the request is forgotten only when every shard's part is done. A
    shard nobody owns (mid-rebalance) keeps the request until its new owner polls."""
    from .helpers import Clock, in_process

    clock = Clock(datetime(2026, 11, 20, 4, tzinfo=UTC))
    a, b = in_process(names, clock), in_process(names, clock)
    a.pools.owned = lambda: {0, 1}
    b.pools.owned = lambda: {2}  # shard 3: nobody, for now
    try:
        cards = [iccid(2100 + i) for i in range(40)]
        by_shard: dict[int, list[str]] = {}
        for card in cards:
            by_shard.setdefault(a.store.shard(card), []).append(card)
        assert set(by_shard) == {0, 1, 2, 3}
        await _pool_of(a, "PS", 1000, cards)
        cycle = date(2026, 11, 1)
        await _used(a, cards, 40, cycle, "s")

        async def suspended() -> set[str]:
            return {c for c in cards if (await a.store.load([c]))[c].state.pool_stop is not None}

        assert await a.pools.settle([("PS", cycle)]) == 1
        await a.pools.idle()
        assert await suspended() == set(by_shard[0] + by_shard[1])  # a's part, at once
        (request,) = await a.store.pool_fanout_requests()
        assert await b.pools.resume() == 1  # b's poll: its part
        await b.pools.idle()
        assert await suspended() == set(by_shard[0] + by_shard[1] + by_shard[2])
        assert await a.store.pool_fanout_requests() == [request]
        assert await a.pools.resume() == 1  # a polls: nothing of its own left to do
        await a.pools.idle()
        assert await a.store.pool_fanout_requests() == [request]

        b.pools.owned = lambda: {2, 3}  # shard 3 assigned to b
        assert await b.pools.resume() == 1
        await b.pools.idle()
        assert await suspended() == set(cards)
        assert await a.store.pool_fanout_requests() == []
        await kafka.read(names["USAGE_MONITOR_TOPIC_COMMANDS"], lambda ms: len(ms) >= len(cards))
        await asyncio.sleep(1)  # then nothing more comes
        commands = await kafka.read(names["USAGE_MONITOR_TOPIC_COMMANDS"], lambda ms: False, 2)
        assert sorted(m["iccid"] for m in commands) == sorted(cards)  # each stopped once
    finally:
        await a.close()
        await b.close()


async def test_a_fan_out_with_a_replaced_view_is_asked_for_again(
    names: dict[str, str], redis: Any, kafka: KafkaIO
) -> None:
    """Worker a evaluates members with the pool's "stop" view; before its slice commits,
    the pool's stop ends (quota raised) and worker b's whole fan-out for that starts every
    member and is forgotten. a's late slice then stops members with the replaced view: its
    pass ends by asking for a fan-out again, so the members end started."""
    from dataclasses import replace

    from .helpers import Clock, in_process

    clock = Clock(datetime(2026, 11, 20, 4, tzinfo=UTC))
    a, b = in_process(names, clock), in_process(names, clock)
    try:
        cards = [iccid(2200 + i) for i in range(12)]
        await _pool_of(a, "PV", 10**9, cards)

        async def set_stop(stopping: bool) -> int:
            record = (await a.store.pool_load(["PV"]))["PV"]
            assert record.definition is not None
            cycle = record.definition.cycle(clock())
            state = replace(record.state, cycle=cycle, exhausted=stopping)
            return await a.store.pool_commit(record, state, [], fan_out=True)

        evaluate, raced = a.service.evaluate, []

        async def late_evaluate(iccids: Any, **kw: Any) -> int:
            if not raced:  # the stop ends, and b's fan-out for that completes, meanwhile
                raced.append(await set_stop(False))
                await b.pools.fan_out("PV", raced[0])
            return await evaluate(iccids, **kw)

        a.service.evaluate = late_evaluate  # type: ignore[method-assign]
        stop = await set_stop(True)
        await a.pools.fan_out("PV", stop)
        a.service.evaluate = evaluate  # type: ignore[method-assign]
        snaps = await a.store.load(cards)
        stale = [c for c in cards if snaps[c].state.pool_stop is not None]
        assert stale  # a's late slice stopped members with the replaced view
        requests = await a.store.pool_fanout_requests()
        assert [p for p, _ in requests] == ["PV"] and requests[0][1] > raced[0]  # asked again
        assert await b.pools.resume() == 1
        await b.pools.idle()
        snaps = await a.store.load(cards)
        assert [c for c in cards if snaps[c].state.pool_stop is not None] == []
        assert await a.store.pool_fanout_requests() == []
    finally:
        await a.close()
        await b.close()
