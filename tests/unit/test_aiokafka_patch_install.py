"""`aiokafka_patch` is installed with the services' event loop, once."""

from __future__ import annotations

from aiokafka.conn import AIOKafkaConnection

from simwatch_runtime import aiokafka_patch
from simwatch_runtime.process import new_event_loop


def test_the_event_loop_comes_with_the_patch_installed_once() -> None:
    new_event_loop().close()
    send, sasl = AIOKafkaConnection.send, AIOKafkaConnection._send_sasl_token
    assert getattr(send, "_simwatch_closed_transport", False)
    assert getattr(sasl, "_simwatch_closed_transport", False)
    aiokafka_patch.install()
    assert AIOKafkaConnection.send is send and AIOKafkaConnection._send_sasl_token is sasl
