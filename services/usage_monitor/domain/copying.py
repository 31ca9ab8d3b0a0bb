"""`replace` for the domain's frozen, slotted dataclasses, without `dataclasses.replace`'s
per-call cost.

`dataclasses.replace` walks `fields()` and re-runs `__init__` on every call: about 10 µs for
the 20 fields of a `CardState`, and a card's decision makes six of them, a third of the
domain's time for a pool stop or a rollover. Copying the slots directly gives the same
object (these classes have no `__post_init__` and no `InitVar`; checked on first use) in a
fraction of it. Unknown field names still raise, like `dataclasses.replace`."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

_FIELDS: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}
_set = object.__setattr__


def _fields_of(cls: type) -> tuple[tuple[str, ...], frozenset[str]]:
    fs = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or any(not f.init for f in fs):
        raise TypeError(f"{cls.__name__}: use dataclasses.replace (post-init or non-init fields)")
    names = tuple(f.name for f in fs)
    return _FIELDS.setdefault(cls, (names, frozenset(names)))


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of the dataclass instance `obj` with `changes` applied (see module doc)."""
    cls = type(obj)
    known = _FIELDS.get(cls) or _fields_of(cls)
    names, allowed = known
    if not allowed.issuperset(changes):
        unknown = sorted(set(changes) - allowed)
        raise TypeError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    new = object.__new__(cls)
    for name in names:
        _set(new, name, changes[name] if name in changes else getattr(obj, name))
    return new
