"""Signature-verifying webhook endpoints for `bench.notifier`, in a process of their own:
`python -m bench.webhook_endpoint N` (the secret comes from `BENCH_WEBHOOK_SECRET`) listens on
N + 2 free loopback ports and prints them as one JSON line, `{"control", "slow", "ports"}`.
Each of the N `ports` verifies every delivery with the `standardwebhooks` library and answers
204 (400 for a bad signature); `slow` never answers in time (it sleeps a minute). `control`
serves `GET /stats` (counts) and `GET /times` (each verified webhook-id with its arrival
time, epoch seconds)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError


async def serve(healthy: int) -> None:
    verifier = Webhook(os.environ["BENCH_WEBHOOK_SECRET"])
    arrivals: dict[str, float] = {}
    stats = {"verified": 0, "bad_signature": 0, "duplicates": 0, "slow": 0}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
            stats["bad_signature"] += 1
            return web.Response(status=400)
        msg_id = request.headers["webhook-id"]
        stats["verified"] += 1
        if msg_id in arrivals:
            stats["duplicates"] += 1
        else:
            arrivals[msg_id] = time.time()
        return web.Response(status=204)

    async def hang(request: web.Request) -> web.Response:
        stats["slow"] += 1
        await asyncio.sleep(60)
        return web.Response(status=204)

    async def report(_: web.Request) -> web.Response:
        return web.json_response(stats)

    async def times(_: web.Request) -> web.Response:
        return web.Response(text=json.dumps(arrivals), content_type="application/json")

    runners = []
    bound: list[int] = []
    for routes in [
        [web.get("/stats", report), web.get("/times", times)],
        [web.post("/{tail:.*}", hang)],
        *([web.post("/{tail:.*}", hook)] for _ in range(healthy)),
    ]:
        app = web.Application()
        app.add_routes(routes)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()  # the kernel picks: no race
        runners.append(runner)
        bound.append(runner.addresses[0][1])
    ports = {"control": bound[0], "slow": bound[1], "ports": bound[2:]}
    print(json.dumps(ports), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
