"""Wait until a Kafka-protocol broker answers a metadata request (used by stack.sh)."""

import asyncio
import logging
import sys
import time

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError


async def wait(bootstrap: str, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return True
        except (KafkaError, OSError):  # not up yet: try again until the deadline
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
    return False


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)  # connection-refused noise while the broker boots
    ok = asyncio.run(wait(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 60.0))
    sys.exit(0 if ok else 1)
