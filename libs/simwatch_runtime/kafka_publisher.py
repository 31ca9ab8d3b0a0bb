"""Publishing to Kafka with acks=all and idempotence; `publish` returns once every message
is acknowledged, in order per partition."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer


class KafkaPublisher:
    """Starts its producer on first use, so it works whichever service calls it first."""

    def __init__(self, bootstrap_servers: str, client_id: str, *, idempotence: bool = True) -> None:
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._idempotence = idempotence
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    client_id=self._client_id,
                    acks="all",
                    enable_idempotence=self._idempotence,
                    linger_ms=2,
                    max_batch_size=256 * 1024,
                    request_timeout_ms=15_000,
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()  # release its connections before the next attempt
                    raise
                self._producer = producer
            return self._producer

    async def publish(self, messages: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        """Send (topic, key, value) messages and wait for all acknowledgements."""
        if not messages:
            return
        producer = await self._started()
        futures = [await producer.send(t, value=v, key=k) for t, k, v in messages]
        await asyncio.gather(*futures)

    async def close(self) -> None:
        async with self._lock:
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None
