"""`make bench` (`python -m bench`): every figure measured in one run on this machine, and
stated as ratios measured in the same run (machines here differ about 3x in absolute speed):
one and two workers against the counting script's own ceiling, latency at half the measured
capacity, Redis CPU per record against a pipelined SET.

BENCH_QUICK=1 keeps the run under three minutes on a slower machine (2 min 46 s here)
(smaller fleet and windows, the usage path only; `bench time:` says how long it took);
BENCH_SECTIONS=decisions,boundary,notifier,durability,pools adds those sections to it.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import os
import platform
import sys
import time

from redis.asyncio import Redis

from usage_monitor.adapters.redis_store import DEFAULT_DEDUPE_BUCKETS

from . import ceilings, latency, memory, redis_cost, throughput
from .dataset import QUOTA, Mix, iccid, profile, records, utc_now
from .procs import REDIS_URL, Names, create_topics, drop_topics, flush_bench_db, produce

QUICK = os.environ.get("BENCH_QUICK") == "1"
CARDS = 10_000 if QUICK else 20_000
RECORDS = 200_000 if QUICK else 1_000_000
PROBES = 400 if QUICK else 1000
"""Probes per latency run: with 100, p99 was the second-slowest probe, and runs of the same
code read 216-1006 ms; 400 over 8 s (one every 20 ms) make it the fifth-slowest."""
W1_SHARE = 3 if QUICK else 1
W2_SHARE = 4 if QUICK else 2
LOAD_S = 8 if QUICK else 20
MEMORY_CARDS = 20_000 if QUICK else 100_000
# Sections measured after the usage path, each a module with `run(quick) -> lines` that also
# runs alone (`python -m bench.boundary`). The full run has them all; the quick run keeps to
# the usage path (under three minutes on a slower machine) unless BENCH_SECTIONS names some.
ALL_SECTIONS = ("decisions", "boundary", "notifier", "durability", "pools")
_CHOSEN = os.environ.get("BENCH_SECTIONS")
SECTIONS = tuple(_CHOSEN.split(",")) if _CHOSEN else (() if QUICK else ALL_SECTIONS)
SAT_RATE = 100_000
SAT_S = 2 if QUICK else LOAD_S
"""Saturation shows the queue growing; a slower machine's generator offers at most ~50 000
records/s, so 8 s of 100 000/s took it 16 s to offer, and as long again to drain."""
NAIVE_S = 4 if QUICK else 20
"""The naive design's rate is steady within a second (one round trip a record): 8 s of it
was 5 % of a quick run on a slower machine, for a figure the summary no longer shows."""


def say(line: str) -> None:
    print(line, flush=True)


def main() -> int:
    asyncio.run(flush_bench_db())
    asyncio.run(drop_topics())
    try:
        return _run()
    finally:
        if os.environ.get("BENCH_KEEP") != "1":  # BENCH_KEEP=1 leaves the data to inspect
            asyncio.run(flush_bench_db())
            asyncio.run(drop_topics())


def _run() -> int:
    started = time.monotonic()
    names = Names()
    now = utc_now()
    topics = {k: f"{names.usage}.{k}" for k in ("w1", "w2", "lat", "sat", "idle")}
    asyncio.run(
        create_topics([*topics.values(), names.events, names.commands, names.alerts, names.dlq])
    )
    cards = [iccid(i) for i in range(CARDS)]
    probes = [iccid(900_000 + i) for i in range(2 * PROBES)]
    profiles = [(c.encode(), _json(profile(c, now))) for c in cards]
    profiles += [(c.encode(), _json(profile(c, now, quota=1000))) for c in probes]
    asyncio.run(produce(names.events, profiles))
    say(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; kafka={os.environ.get('KAFKA_IMPL', 'apache')}"
    )
    say(
        f"fleet: {CARDS:,} cards, {W1_SHARE * RECORDS:,} records for one worker and "
        f"{W2_SHARE * RECORDS:,} for two (5 % duplicates, heavy users crossing quota, 0.2 % "
        f"late){' [quick]' if QUICK else ''}"
    )

    # Each run gets enough records for a few seconds at ~120 000/s: one worker drained the
    # quick run's 200 000 in under two seconds, so its start-up weighed on the rate. Two
    # workers get more: the first to join the group drains alone until the second joins.
    data = {
        k: records(Mix(CARDS, RECORDS * m, seed=n), now, f"{names.tag}{k}")
        for n, (k, m) in enumerate((("w1", W1_SHARE), ("w2", W2_SHARE)))
    }
    # Two workers' records are produced once both have joined (`throughput.run_joined`).
    asyncio.run(produce(topics["w1"], data["w1"]))
    gc.freeze()  # the generated records live to the end: keep GC pauses out of the timings

    # Every run starts from fresh cards: one worker applies the profiles once, and each run
    # gets a copy (`throughput.clone_cards`), not its own ~11 000 card events to apply.
    base = _run_names(names, "base")
    applied_at = time.monotonic()
    throughput.apply_profiles(base, f"{names.prefix}-base", CARDS + 2 * PROBES, topics["idle"])
    applied_s = time.monotonic() - applied_at
    say(
        f"profiles: {CARDS + 2 * PROBES:,} card events applied by one worker in {applied_s:.1f} s "
        f"({(CARDS + 2 * PROBES) / applied_s:,.0f}/s with its start); each run gets a copy"
    )

    results: dict[str, float] = {}
    results["getmany"] = asyncio.run(
        ceilings.getmany_rate(topics["w1"], W1_SHARE * RECORDS, f"{names.prefix}-raw")
    )
    # Over the first `RECORDS` (6 s here at ~34 000/s): all of a quick run's 600 000 took
    # another 20 s of a slower machine for the same figure.
    results["script"] = asyncio.run(
        ceilings.script_rate(names, [v for _, v in data["w1"][:RECORDS]])
    )
    say(
        f"ceilings: aiokafka getmany {results['getmany']:,.0f} records/s; "
        f"ingest.lua driven directly {results['script']:,.0f} records/s"
    )

    ceiling = results["script"]
    results["one"] = _workers(names, base, "w1", 1, topics, W1_SHARE * RECORDS)
    results["naive"] = throughput.naive_rate(names, topics["w1"], cards, QUOTA, NAIVE_S)
    say(
        f"throughput: 1 worker {results['one']:,.0f} records/s "
        f"({results['one'] / ceiling:.0%} of the script's ceiling); naive design "
        f"{results['naive']:,.0f} records/s on the same records "
        f"({results['one'] / results['naive']:.1f}x)"
    )
    results["two"] = _workers(names, base, "w2", 2, topics, W2_SHARE * RECORDS, data["w2"])
    say(
        f"scale-out: 2 workers {results['two']:,.0f} records/s "
        f"({results['two'] / ceiling:.0%} of the ceiling; {results['two'] / results['one']:.2f}x "
        "one worker: on two shared cores the script is the bound)"
    )

    half = int(results["one"] / 2)
    p50, p99 = _latency(names, base, topics, data["w2"], probes[:PROBES], half, "lat")
    say(
        f"latency at half capacity ({half:,}/s offered): record -> suspend p50 "
        f"{p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms ({PROBES} probes over {LOAD_S} s)"
    )
    s50, s99 = _latency(names, base, topics, data["w2"], probes[PROBES:], SAT_RATE, "sat", SAT_S)
    say(
        f"latency at saturation ({SAT_RATE:,}/s offered for {SAT_S} s): p50 "
        f"{s50 * 1000:.0f} ms, p99 {s99 * 1000:.0f} ms"
    )

    mem = asyncio.run(memory.per_card(MEMORY_CARDS))
    per_card, per_id = mem.card, mem.record_id
    say(
        f"redis memory: {per_card:.0f} B per card (profile, state, one cycle's counter); "
        f"{per_id:.1f} B per remembered record id with {mem.buckets} buckets, as "
        f"docs/operations.md sizes them for {MEMORY_CARDS * 4:,} ids a day "
        f"({mem.record_id_default:.1f} B with the default {DEFAULT_DEDUPE_BUCKETS}, "
        "sized for ~65 000 cards)"
    )
    whole = asyncio.run(memory.footprint(MEMORY_CARDS))
    say(
        f"redis footprint: {whole:.0f} B per card on average with its due time and decision "
        "history (2 % of the cards suspended over quota, five decisions each)"
    )
    us_record, us_set = asyncio.run(redis_cost.cost([v for _, v in data["w1"][:RECORDS]]))
    say(
        f"redis cpu: {us_record:.2f} us per counted record, {us_set:.2f} us per pipelined SET "
        f"({us_record / us_set:.1f}x), private server, same run"
    )
    for section in SECTIONS:  # each prints its own lines; the summary stays the last line
        for line in importlib.import_module(f"bench.{section}").run(QUICK):
            say(line)
    say(f"bench time: {time.monotonic() - started:.0f} s{' [quick]' if QUICK else ''}")
    say(
        f"bench: {results['one']:,.0f} records/s ({results['one'] / ceiling:.0%} of ceiling "
        f"{ceiling:,.0f}/s), 2 workers {results['two'] / ceiling:.0%} of ceiling, "
        f"p99 {p99 * 1000:.0f} ms at {half:,}/s (half capacity), {per_card:.0f} B/card, "
        f"{per_id:.0f} B/record id, redis {us_record:.1f} us/record "
        f"({us_record / us_set:.1f}x SET)"
    )
    return 0


async def _aof_rewrites() -> int:
    """AOF rewrites the bench's Redis has started so far (counted by the server)."""
    redis = Redis.from_url(REDIS_URL)
    try:
        info = await redis.info("persistence")
    finally:
        await redis.aclose()
    return int(info.get("aof_rewrites", 0)) + int(info.get("aof_rewrite_in_progress", 0))


def _json(doc: object) -> bytes:
    return json.dumps(doc).encode()


def _run_names(names: Names, key: str) -> Names:
    """One run's names: its own Redis prefix (app id), and for the latency runs their own
    commands topic (each listens for its own probes' suspends)."""
    run = Names.__new__(Names)
    run.__dict__.update(names.__dict__, prefix=f"{names.prefix}-{key}")
    if key in ("lat", "sat"):
        run.commands = f"{names.commands}.{key}"
    return run


def _cards_for(names: Names, base: Names, key: str) -> tuple[Names, str]:
    """A run's names and app id, its cards copied from those `base` applied."""
    app = f"{names.prefix}-{key}"
    run = _run_names(names, key)
    asyncio.run(throughput.clone_cards(base, run, app))
    return run, app


def _workers(
    names: Names,
    base: Names,
    key: str,
    n: int,
    topics: dict[str, str],
    total: int,
    later: list[tuple[bytes, bytes]] | None = None,
) -> float:
    """`n` workers on the records of `topics[key]`, or on `later` produced once all joined."""
    run, app = _cards_for(names, base, key)
    if later is None:
        return throughput.run_workers(run, app, n, topics[key], total)
    return throughput.run_joined(run, app, n, topics[key], later)


def _latency(
    names: Names,
    base: Names,
    topics: dict[str, str],
    background: list[tuple[bytes, bytes]],
    probes: list[str],
    rate: int,
    key: str,
    seconds: int = LOAD_S,
) -> tuple[float, float]:
    run, app = _cards_for(names, base, key)
    workers = throughput.start_workers(run, app, 1, topics[key])
    try:
        asyncio.run(throughput.joined(f"{app}-usage", 1))
        time.sleep(0.5)  # positioned (its first fetch) before the first probe
        rewrites = asyncio.run(_aof_rewrites())
        lat = latency.latencies(
            asyncio.run(
                latency.probe_timeline(topics[key], run.commands, background, probes, rate, seconds)
            )
        )
        rewrites = asyncio.run(_aof_rewrites()) - rewrites
    finally:
        for w in workers:
            w.stop()
    if len(lat) < len(probes):
        say(f"  ({len(probes) - len(lat)} of {len(probes)} probes got no command in time)")
    if rewrites:
        # A rewrite forks Redis and writes its whole dataset, on the cores the run shares.
        say(f"  (Redis rewrote its AOF {rewrites} time(s) during these probes)")
    return latency.percentile(lat, 50), latency.percentile(lat, 99)


if __name__ == "__main__":
    sys.exit(main())
