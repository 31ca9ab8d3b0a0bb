"""The card lifecycle as pure, synchronous Python: state in, new state and effects out.

Nothing here performs I/O or imports faust, redis, aiokafka or prometheus_client.
"""
