"""How far an earlier revision's lifecycle was from the reference model: the domain package of
REV (``git archive``) driven over random scenarios like the production harness drives the
current one, commands and alerts compared (earlier revisions decided no charges), and the
first disagreement of each scenario classified.

    .venv/bin/python -m tests.reference.against_revision fe58531 3000

Used once to measure where the domain stood before the reference existed; kept so the
figure can be measured again.
"""

from __future__ import annotations

import collections
import importlib
import io
import subprocess
import sys
import tarfile
import tempfile
from datetime import UTC
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings

from simwatch_contracts import AlertType

from . import model
from .scenario import Effect, Scenario, Usage
from .strategies import scenarios

ROOT = Path(__file__).resolve().parents[2]


def load_domain(rev: str) -> Any:
    """REV's ``usage_monitor/domain`` as an importable package ``rev_domain``."""
    path = "services/usage_monitor/domain"
    raw = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, path], capture_output=True, check=True
    ).stdout
    target = Path(tempfile.mkdtemp(prefix="rev-domain-"))
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        tar.extractall(target, filter="data")
    (target / path).rename(target / "rev_domain")
    sys.path.insert(0, str(target))
    return importlib.import_module("rev_domain.lifecycle"), importlib.import_module(
        "rev_domain.card"
    )


def _effects(d: Any) -> list[Effect]:
    out = []
    for c in d.commands:
        detail = (c.trigger.value, *sorted(r.value for r in c.reasons))
        out.append(Effect(c.issued_at.astimezone(UTC), "command", c.type.value, detail))
    for a in d.alerts:
        if a.type in (AlertType.USAGE_THRESHOLD, AlertType.QUOTA_EXHAUSTED):
            detail = (a.percent,)
        elif a.type is AlertType.EXPIRY_UPCOMING:
            detail = (a.days_left,)
        elif a.type is AlertType.BALANCE_INSUFFICIENT:
            detail = (a.amount_due,)
        else:
            detail = (a.trigger.value, *sorted(r.value for r in a.reasons or ()))
        out.append(Effect(a.occurred_at.astimezone(UTC), "alert", a.type.value, detail))
    return out


def run_revision(lifecycle: Any, card: Any, sc: Scenario) -> list[Effect]:
    from rev_domain.cycles import cycle_of  # type: ignore[import-not-found]

    state, usage, out, due = card.CardState(sc.iccid), {}, [], None

    def take(d: Any) -> None:
        nonlocal state, due
        state, due = d.state, d.due
        out.extend(_effects(d))

    def tick(limit: Any) -> None:
        for _ in range(5000):
            if due is None or due > limit:
                return
            take(lifecycle.evaluate(state, usage, due))

    for inp in sc.inputs:
        tick(inp.at)
        if isinstance(inp.item, Usage):
            p = state.profile
            tz, day = (p.timezone, p.cycle_day) if p else (sc.policy.default_timezone, 1)
            cycle = cycle_of(inp.item.event_time, tz, day)
            usage[cycle] = usage.get(cycle, 0) + inp.item.nbytes
            take(lifecycle.evaluate(state, usage, inp.at))
        else:
            take(lifecycle.apply_event(state, inp.item, usage, inp.at))
    tick(sc.until)
    return sorted(out)


def main(rev: str, examples: int) -> None:
    lifecycle, card = load_domain(rev)
    classes: collections.Counter[str] = collections.Counter()
    seen = [0, 0]

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(scenarios())
    def compare(sc: Scenario) -> None:
        if sc.customer_debt:
            return  # the blacklist did not exist then
        seen[0] += 1
        ref = [e for e in model.run(sc) if e.kind != "charge"]
        try:
            theirs = run_revision(lifecycle, card, sc)
        except Exception as exc:  # a crash is a disagreement too: classify it
            seen[1] += 1
            classes[f"crash: {type(exc).__name__}: {str(exc)[:60]}"] += 1
            return
        if theirs != ref:
            seen[1] += 1
            diff = [e for e in theirs if e not in ref] + [e for e in ref if e not in theirs]
            first = min(diff)
            side = "revision only" if first in theirs else "reference only"
            classes[f"{side}: {first.kind} {first.what} {first.detail[:1]}"] += 1

    compare()
    print(f"{rev}: {seen[1]} of {seen[0]} scenarios disagree with the reference")
    for name, n in classes.most_common(25):
        print(f"  {n:5d}  {name}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000)
