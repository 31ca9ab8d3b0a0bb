"""The production lifecycle against an independent reference model of ../shared/domain.md
(tests/reference/model.py: a slow, obvious simulation written from the rules, not from the
production code). Random one-card scenarios (tests/reference/strategies.py) must decide the
same commands, alerts and charges at the same instants, and end in the same state.

CI runs `SIMWATCH_REFERENCE_EXAMPLES` examples (default 8000: about a minute on a fast
machine, three and a half on a slower one, so it has a 15-minute timeout of its own); `-m deep`
runs the deep profile (30 000) for releases: `make test-deep`. Under CI (`CI=true`) the
examples are the same every run (derandomized): a red build names a change, never luck;
every other run, and the deep one, explores anew (it found two real disagreements in
round 2's second session, each now a regression test).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

from tests.reference import model, production
from tests.reference.scenario import Effect, Scenario
from tests.reference.strategies import scenarios

EXAMPLES = int(os.environ.get("SIMWATCH_REFERENCE_EXAMPLES", "8000"))
DEEP = int(os.environ.get("SIMWATCH_REFERENCE_DEEP_EXAMPLES", "30000"))
_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow],
    "report_multiple_bugs": False,
}
_CI = {"derandomize": os.environ.get("CI") == "true"}


def _diff(ours: list[Effect], ref: list[Effect]) -> str:
    only_ours = [e for e in ours if e not in ref]
    only_ref = [e for e in ref if e not in ours]
    lines = ["production only:", *map(repr, only_ours), "reference only:", *map(repr, only_ref)]
    return "\n".join(lines)


def check(scenario: Scenario) -> None:
    ours, state = production.run(scenario)
    ref = model.run(scenario)
    assert ours == ref, _diff(ours, ref)
    end = model.final_state(scenario)
    ending = (state.status.value, sorted(r.value for r in state.reasons))
    assert ending == (end["status"], end["reasons"]), f"{ending} != {end}"


@pytest.mark.timeout(900)  # 8000 examples: ~1 min on a fast machine, over 3 min on a slower one
@settings(max_examples=EXAMPLES, **_SETTINGS, **_CI)  # type: ignore[arg-type]
@given(scenarios())
def test_production_decides_what_the_reference_decides(scenario: Scenario) -> None:
    check(scenario)


@pytest.mark.deep
@pytest.mark.timeout(3600)  # 30 000 examples outlast the suite's 180 s per test
@settings(max_examples=DEEP, **_SETTINGS)  # type: ignore[arg-type]
@given(scenarios(max_inputs=40))
def test_deep_production_decides_what_the_reference_decides(scenario: Scenario) -> None:
    check(scenario)
