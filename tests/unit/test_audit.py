"""The audit trail: a replay names every decision as the live decisions did, and a tampered
or missing decision is reported."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from simwatch_contracts import CardEvent, UsageRecord
from tests.reference import production
from tests.reference.scenario import Scenario, Usage
from tests.reference.strategies import scenarios
from usage_monitor.domain.audit import compare, replay

_SETTINGS = {"max_examples": 300, "deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


def _inputs(scenario: Scenario) -> list[tuple[object, CardEvent | UsageRecord]]:
    out: list[tuple[object, CardEvent | UsageRecord]] = []
    for inp in scenario.inputs:
        item = inp.item
        if isinstance(item, Usage):
            up = item.nbytes // 2
            item = UsageRecord(
                record_id=item.record_id,
                iccid=scenario.iccid,
                event_time=item.event_time,
                bytes_up=up,
                bytes_down=item.nbytes - up,
            )
        out.append((inp.at, item))
    return out


@settings(**_SETTINGS)  # type: ignore[arg-type]
@given(scenarios())
def test_a_replay_reproduces_every_decision_and_reports_a_tampered_one(
    scenario: Scenario,
) -> None:
    if scenario.customer_debt:
        return  # the blacklist is read from the customer's record, not from the card's inputs
    policy = production.policy_of(scenario)
    live = replay(scenario.iccid, _inputs(scenario), scenario.until, policy)  # type: ignore[arg-type]
    effects, _ = production.run(scenario)
    assert len([d for d in live if d.kind == "command"]) == len(
        [e for e in effects if e.kind == "command"]
    )
    again = replay(scenario.iccid, _inputs(scenario), scenario.until, policy)  # type: ignore[arg-type]
    result = compare(live, again)
    assert (result.reproduced, result.differ) == (len(live), 0)
    if live:
        tampered = [live[0].model_copy(update={"type": "cancel"}), *live[1:]]
        bad = compare(tampered, again)
        assert bad.differ == 1 and bad.first == (tampered[0], live[0])
        missing = compare(live[1:], again)
        assert missing.differ == 1 and missing.first == (None, live[0])
