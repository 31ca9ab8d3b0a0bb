"""Deterministic ids: the same alert or transition always gets the same id, so re-publication
after a crash is harmless downstream."""

from __future__ import annotations

import hashlib


def stable_id(prefix: str, *parts: object) -> str:
    """`prefix-` + 32 hex chars of SHA-256 over the parts (an id, not a secret)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}-{digest[:32]}"
