"""Record -> `suspend` latency of one worker at an offered rate of your choosing, outside the
full bench: `python -m bench.latency_at 30000 [probes]`. It compares two commits at the same
load (the full bench offers half of what the worker it measured can count, so a faster
worker is measured under more load). Needs the stack (`scripts/stack.sh up`); writes only
to the bench's Redis DB and its own topics."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from . import latency, throughput
from .dataset import Mix, iccid, profile, records, utc_now
from .procs import Names, create_topics, produce

CARDS = 10_000
SECONDS = 8


def main(rate: int, n_probes: int) -> str:
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
        lat = asyncio.run(
            latency.probe_latencies(usage, names.commands, background, probes, rate, SECONDS)
        )
    finally:
        worker.stop()
    p = latency.percentile
    return (
        f"latency at {rate:,}/s offered: record -> suspend p50 {p(lat, 50) * 1000:.0f} ms, "
        f"p90 {p(lat, 90) * 1000:.0f} ms, p99 {p(lat, 99) * 1000:.0f} ms "
        f"({len(lat)} of {n_probes} probes over {SECONDS} s)"
    )


if __name__ == "__main__":
    print(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 400))
