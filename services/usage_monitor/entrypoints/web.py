"""The worker's web views: the card and customer API (behind ``api_auth``), health, metrics."""

from __future__ import annotations

from typing import Any

import faust
from prometheus_client import generate_latest
from pydantic import TypeAdapter, ValidationError

from simwatch_contracts.common import Iccid
from simwatch_runtime.preflight import redis_status

from ..bootstrap import Components
from ..service_layer.explaining import UnknownLanguageError, explain_card
from ..service_layer.status import card_status, customer_status, pool_status
from .usage_consumer import UsageConsumer

_ICCID: TypeAdapter[str] = TypeAdapter(Iccid)
PROMETHEUS_TEXT = "text/plain; version=0.0.4"


def add_routes(app: faust.App, c: Components, consumer: UsageConsumer) -> None:
    _add_pool_routes(app, c)

    @app.page("/cards/{iccid}")
    async def card(self: Any, request: Any, iccid: str) -> Any:
        try:
            iccid = _ICCID.validate_python(iccid)
        except ValidationError:
            return self.json({"error": "malformed ICCID"}, status=400)
        snap = (await c.store.load([iccid]))[iccid]
        view = card_status(snap, c.service.clock(), c.service.policy)
        if view is None:
            return self.json({"error": "unknown card", "iccid": iccid}, status=404)
        return self.json(view)

    @app.page("/cards/{iccid}/explain")
    async def card_explain(self: Any, request: Any, iccid: str) -> Any:
        try:
            iccid = _ICCID.validate_python(iccid)
        except ValidationError:
            return self.json({"error": "malformed ICCID"}, status=400)
        lang = request.query.get("lang")
        try:
            body = await explain_card(c.store, iccid, c.service.clock(), c.service.policy, lang)
        except UnknownLanguageError as exc:
            return self.json({"error": str(exc)}, status=400)
        if body is None:
            return self.json({"error": "unknown card", "iccid": iccid}, status=404)
        return self.json(body)

    @app.page("/customers/{customer_id}")
    async def customer(self: Any, request: Any, customer_id: str) -> Any:
        if not 1 <= len(customer_id) <= 128:
            return self.json({"error": "malformed customer id"}, status=400)
        return self.json(customer_status(customer_id, await c.store.customer_view(customer_id)))

    @app.page("/health")
    async def health(self: Any, request: Any) -> Any:
        checks: dict[str, str] = {"usage_consumer": "ok" if consumer.running else "down"}
        checks["redis"] = await redis_status(c.redis)
        ok = all(v == "ok" for v in checks.values())
        return self.json(
            {"status": "ok" if ok else "degraded", **checks}, status=200 if ok else 503
        )

    @app.page("/metrics")
    async def metrics(self: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type; Prometheus reads the text format as UTF-8.
        return self.bytes(generate_latest(c.registry), content_type=PROMETHEUS_TEXT)


def _add_pool_routes(app: faust.App, c: Components) -> None:
    @app.page("/pools/{pool_id}")
    async def pool(self: Any, request: Any, pool_id: str) -> Any:
        if not 1 <= len(pool_id) <= 128 or not pool_id.isprintable() or " " in pool_id:
            return self.json({"error": "malformed pool id"}, status=400)
        view = await pool_status(c.store, pool_id, c.service.clock())
        if view is None:
            return self.json({"error": "unknown pool", "pool_id": pool_id}, status=404)
        return self.json(view)
