"""The domain's `replace` is `dataclasses.replace` for its frozen, slotted classes: same
result for any subset of fields, same refusal of unknown names."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usage_monitor.domain.card import CardState, Profile
from usage_monitor.domain.copying import replace
from usage_monitor.domain.pools import PoolState

from .test_codec import profiles, states

FIELDS = [f.name for f in dataclasses.fields(CardState)]


@given(states, states, st.sets(st.sampled_from(FIELDS)))
def test_same_as_dataclasses_replace(a: CardState, b: CardState, names: set[str]) -> None:
    changes = {n: getattr(b, n) for n in names}
    copied = replace(a, **changes)
    assert copied == dataclasses.replace(a, **changes)
    assert type(copied) is CardState
    assert all(getattr(copied, n) is getattr(b, n) for n in names)
    assert all(getattr(copied, n) is getattr(a, n) for n in set(FIELDS) - names)


@given(profiles, st.integers(1, 28))
def test_other_domain_classes(profile: Profile, day: int) -> None:
    assert replace(profile, cycle_day=day) == dataclasses.replace(profile, cycle_day=day)
    pool = PoolState(exhausted=False)
    assert replace(pool, exhausted=True) == PoolState(exhausted=True)


def test_unknown_fields_and_unsupported_classes_are_refused() -> None:
    with pytest.raises(TypeError, match="no field"):
        replace(CardState("8986"), balanse=3)

    @dataclasses.dataclass(frozen=True)
    class Checked:
        x: int

        def __post_init__(self) -> None:
            assert self.x >= 0

    with pytest.raises(TypeError, match=r"dataclasses\.replace"):
        replace(Checked(1), x=2)
    hashable: Any = replace(CardState("8986"), balance=1)
    assert hash(hashable) == hash(CardState("8986", balance=1))
