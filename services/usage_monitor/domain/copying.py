"""`replace` for the domain's frozen, slotted dataclasses, without `dataclasses.replace`'s
per-call cost.

`dataclasses.replace` walks `fields()` and re-runs `__init__` on every call: about 10 µs for
the 20 fields of a `CardState`, and a card's decision makes six of them, a third of the
domain's time for a pool stop or a rollover. Copying the slots directly gives the same
object (these classes have no `__post_init__` and no `InitVar`; checked on first use) in a
fraction of it. Unknown field names still raise, like `dataclasses.replace`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")

_COPIERS: dict[type, Callable[[Any, dict[str, Any]], Any]] = {}


def _copier(cls: type) -> Callable[[Any, dict[str, Any]], Any]:
    """A function copying every field of a `cls` then setting `changes`, written out field
    by field (generated once per class: a loop with `getattr` cost twice as much)."""
    fs = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or any(not f.init for f in fs):
        raise TypeError(f"{cls.__name__}: use dataclasses.replace (post-init or non-init fields)")
    names = [f.name for f in fs]
    lines = ["def copy(obj, changes):", "    new = new_(cls)"]
    lines += [f"    set_(new, {n!r}, obj.{n})" for n in names]
    lines += [
        "    for name, value in changes.items():",
        "        if name not in allowed:",
        "            raise TypeError(f'{cls.__name__} has no field {name}')",
        "        set_(new, name, value)",
        "    return new",
    ]
    scope: dict[str, Any] = {
        "cls": cls,
        "new_": object.__new__,
        "set_": object.__setattr__,
        "allowed": frozenset(names),
    }
    exec("\n".join(lines), scope)
    return _COPIERS.setdefault(cls, scope["copy"])


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of the dataclass instance `obj` with `changes` applied (see module doc)."""
    cls = type(obj)
    copy = _COPIERS.get(cls) or _copier(cls)
    return cast(T, copy(obj, changes))
