"""Lua scripts are package data (``<package>/lua/*.lua``), read once at start-up and
registered on the client, which loads them by SHA and reloads them after a NOSCRIPT."""

from __future__ import annotations

from importlib import resources

from redis.commands.core import AsyncScript

from .redis_client import AnyRedis


def source(package: str, name: str) -> str:
    """The text of `name` in `package`'s ``lua`` folder (works from a wheel too)."""
    return resources.files(package).joinpath("lua", name).read_text(encoding="utf-8")


def register(redis: AnyRedis, package: str, name: str) -> AsyncScript:
    """`name` registered on `redis`: call it with ``keys=`` and ``args=``."""
    return redis.register_script(source(package, name))
