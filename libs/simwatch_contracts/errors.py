"""Turn a pydantic ValidationError into the one-line reason kept in the dead-letter topic."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from .common import PATTERN_MESSAGES


def describe_validation_error(exc: ValidationError, limit: int = 5) -> str:
    """`field.path: message; ...` for the first `limit` errors, never the offending value."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{where}: {_message(err)}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"(+{more} more)")
    return "; ".join(parts)


def _message(err: Mapping[str, Any]) -> str:
    """pydantic's text, except for our own patterns: "String should match pattern '^89...'"
    tells an integrator less than the rule in words."""
    if err["type"] == "string_pattern_mismatch":
        known = PATTERN_MESSAGES.get(str((err.get("ctx") or {}).get("pattern")))
        if known:
            return f"Value error, {known}"
    return str(err["msg"])
