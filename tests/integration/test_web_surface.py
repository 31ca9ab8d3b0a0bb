"""What a deployed usage_monitor serves on its port: the card API behind a bearer token,
`/health` and `/metrics` open, and none of faust's own endpoints (router, tables, graph,
statistics)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from ..conftest import KafkaIO, Worker
from .helpers import iccid, upsert, wait_for

pytestmark = pytest.mark.integration

TOKEN = "tok-0123456789abcdef-surface"


async def test_card_api_needs_the_bearer_token_and_faust_endpoints_are_gone(
    start_worker: Callable[..., Worker], kafka: KafkaIO, names: dict[str, str]
) -> None:
    worker = await asyncio.to_thread(start_worker, USAGE_MONITOR_API_TOKEN=TOKEN)
    card = iccid(9901)
    await kafka.send(names["USAGE_MONITOR_TOPIC_EVENTS"], upsert(card, 1000), key=card)
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def get(path: str, **kw: Any) -> httpx.Response:
        return httpx.get(f"{worker.url}{path}", timeout=5, **kw)

    assert await wait_for(lambda: get(f"/cards/{card}", headers=auth).status_code == 200)
    for path in (
        f"/cards/{card}",
        f"/cards/{card}/explain",
        "/cards/",
        "/pools/p1",
        "/customers/acme",
    ):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            got = get(path, headers=headers)
            assert got.status_code == 401, (path, headers, got.status_code)
            assert got.headers["WWW-Authenticate"].startswith("Bearer")
            assert got.json()["error"] == "unauthorized"
            assert card not in got.text
    assert get(f"/cards/{card}", headers=auth).json()["customer_id"] == "acme"
    assert get(f"/cards/{iccid(9902)}", headers=auth).status_code == 404
    assert get("/health").status_code == 200
    assert "usage_monitor_" in get("/metrics").text
    for path in ("/router/", "/table/", "/graph/", "/assignment/", "/performance/"):
        assert get(path).status_code == 404, path
        assert get(path, headers=auth).status_code == 404, path
