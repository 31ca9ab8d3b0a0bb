"""Record -> `suspend` latency of one worker at an offered rate of your choosing, outside the
full bench: `python -m bench.latency_at 30000 [probes]`. It compares two commits at the same
load (the full bench offers half of what the worker it measured can count, so a faster
worker is measured under more load). It prints the probes' p50 and maximum for each second
of the run: where the slow ones were (the workload's decision storm is at 40-50 % of it).
Needs the stack (`scripts/stack.sh up`); writes only to the bench's Redis DB and its own
topics, and empties both at its start and end, as the full bench does."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from . import latency, throughput
from .dataset import Mix, iccid, profile, records, utc_now
from .procs import Names, create_topics, drop_topics, flush_bench_db, produce

CARDS = 10_000
SECONDS = 8


def main(rate: int, n_probes: int) -> str:
    """Starts and ends, as the full bench does, with the bench's Redis DB emptied and its
    topics deleted (a broker holding thousands of earlier runs' partitions answers slower)."""
    asyncio.run(flush_bench_db())
    asyncio.run(drop_topics())
    try:
        return _measure(rate, n_probes)
    finally:
        asyncio.run(flush_bench_db())
        asyncio.run(drop_topics())


def _measure(rate: int, n_probes: int) -> str:
    names, now = Names(), utc_now()
    usage, idle = f"{names.usage}.at", f"{names.usage}.idle"
    asyncio.run(create_topics([usage, idle, names.events, names.commands, names.alerts, names.dlq]))
    cards = [iccid(i) for i in range(CARDS)]
    probes = [iccid(900_000 + i) for i in range(n_probes)]
    docs = [(c, profile(c, now)) for c in cards] + [(c, profile(c, now, 1000)) for c in probes]
    asyncio.run(produce(names.events, [(c.encode(), json.dumps(d).encode()) for c, d in docs]))
    background = records(Mix(CARDS, max(rate * SECONDS, 100_000), seed=1), now, names.tag)
    app = f"{names.prefix}-at"
    throughput.apply_profiles(names, app, CARDS + n_probes, idle)
    worker = throughput.start_workers(names, app, 1, usage)[0]
    try:
        time.sleep(2)  # joined and positioned
        timeline = asyncio.run(
            latency.probe_timeline(usage, names.commands, background, probes, rate, SECONDS)
        )
    finally:
        worker.stop()
    lat, p = latency.latencies(timeline), latency.percentile
    for second in range(SECONDS):
        here = [x for t, x in timeline if second <= t < second + 1]
        print(
            f"  probes sent in second {second}: p50 {p(here, 50) * 1000:.0f} ms, "
            f"max {max(here, default=float('nan')) * 1000:.0f} ms ({len(here)})"
        )
    return (
        f"latency at {rate:,}/s offered: record -> suspend p50 {p(lat, 50) * 1000:.0f} ms, "
        f"p90 {p(lat, 90) * 1000:.0f} ms, p99 {p(lat, 99) * 1000:.0f} ms "
        f"({len(lat)} of {n_probes} probes over {SECONDS} s)"
    )


if __name__ == "__main__":
    print(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 400))
