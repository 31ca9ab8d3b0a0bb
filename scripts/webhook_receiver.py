"""A local webhook endpoint for `make demo`: verifies every delivery's Standard Webhooks
signature and counts what arrived (GET /stats). Loopback only. The secret comes from
`SIMWATCH_WEBHOOK_SECRET`, not from the command line (which `ps` shows to everyone)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=6068)
    args = parser.parse_args()
    secret = os.environ.get("SIMWATCH_WEBHOOK_SECRET")
    if not secret:
        sys.exit("webhook_receiver: set SIMWATCH_WEBHOOK_SECRET")
    verifier = Webhook(secret)
    stats: Counter[str] = Counter()
    seen: set[str] = set()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload = verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
            stats["bad_signature"] += 1
            return web.Response(status=400)
        msg_id = request.headers["webhook-id"]
        stats["received"] += 1
        stats["duplicates"] += msg_id in seen
        seen.add(msg_id)
        stats[f"type:{payload['type']}"] += 1
        return web.Response(status=204)

    async def report(_: web.Request) -> web.Response:
        return web.Response(text=json.dumps(stats), content_type="application/json")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", report)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
