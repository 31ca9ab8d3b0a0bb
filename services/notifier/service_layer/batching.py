"""Coalesces concurrent calls into batch calls: every item submitted while the previous batch
call is in flight goes into the next one, so batches grow with the load and add no delay."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """`submit(item)` answers with `call([..., item, ...])`'s result for that item; `call`
    takes at most `max_items` at once and answers one result per item, in order."""

    def __init__(self, call: Callable[[Sequence[T]], Awaitable[list[R]]], max_items: int) -> None:
        self.call = call
        self.max_items = max_items
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.max_items]
                del self._pending[: self.max_items]
                try:
                    results = await self.call([item for item, _ in batch])
                except Exception as exc:  # each submitter gets the batch's error as its own
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():  # its submitter may have been cancelled
                        future.set_result(result)
        finally:
            self._task = None
