"""The provisioning simulator's pure decisions: the outcome draw, the network-state
transitions, idempotent re-publications, observations with drift; and its settings."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from pydantic import ValidationError

from provisioning_sim.__main__ import main
from provisioning_sim.network import NetworkView, Outcome, Rates, draw
from provisioning_sim.settings import Settings
from provisioning_sim.simulator import Counters
from simwatch_contracts import CardCommand, CommandType, NetworkState, ResultStatus

CARD = "89860400000000000001"


def command(kind: str, command_id: str, iccid: str = CARD, attempt: int = 1) -> CardCommand:
    return CardCommand.model_validate(
        {
            "command_id": command_id,
            "type": kind,
            "iccid": iccid,
            "trigger": "manual",
            "reasons": ["manual"] if kind == "suspend" else [],
            "cycle": "2026-11-01",
            "issued_at": "2026-11-25T10:00:01+08:00",
            "attempt": attempt,
        },
        strict=False,
    )


# --- the outcome draw ---------------------------------------------------------------------


def test_the_draw_follows_the_rates() -> None:
    rates = Rates(drop=0.1, fail=0.2, reject=0.05, duplicate=0.1)
    rng = random.Random(7)
    draws = [draw(rng, rates, 0.5, 5.0) for _ in range(20_000)]
    share = {k: v / len(draws) for k, v in Counter(d.outcome for d in draws).items()}
    assert share[Outcome.DROP] == pytest.approx(0.1, abs=0.01)
    assert share[Outcome.FAIL] == pytest.approx(0.2, abs=0.01)
    assert share[Outcome.REJECT] == pytest.approx(0.05, abs=0.01)
    assert share[Outcome.APPLY] == pytest.approx(0.65, abs=0.015)
    answered = [d for d in draws if d.outcome is not Outcome.DROP]
    assert sum(d.duplicate for d in answered) / len(answered) == pytest.approx(0.1, abs=0.01)
    assert not any(d.duplicate for d in draws if d.outcome is Outcome.DROP)
    assert all(0.5 <= d.delay_s <= 5.0 for d in draws)


def test_the_same_seed_draws_the_same_sequence() -> None:
    rates = Rates(drop=0.3, fail=0.3, reject=0.1, duplicate=0.5)
    a, b = random.Random(42), random.Random(42)
    assert [draw(a, rates, 0, 1) for _ in range(500)] == [draw(b, rates, 0, 1) for _ in range(500)]
    c = random.Random(43)
    assert [draw(c, rates, 0, 1) for _ in range(500)] != [
        draw(random.Random(42), rates, 0, 1) for _ in range(500)
    ]


@pytest.mark.parametrize(
    ("rates", "expected"),
    [
        (Rates(), Outcome.APPLY),
        (Rates(drop=1.0), Outcome.DROP),
        (Rates(fail=1.0), Outcome.FAIL),
        (Rates(reject=1.0), Outcome.REJECT),
    ],
)
def test_a_rate_of_one_is_certain(rates: Rates, expected: Outcome) -> None:
    rng = random.Random(1)
    assert {draw(rng, rates, 0.2, 2.0).outcome for _ in range(200)} == {expected}


@pytest.mark.parametrize(
    "kwargs", [{"drop": 0.6, "fail": 0.5}, {"fail": -0.1}, {"duplicate": 1.5}, {"reject": 2.0}]
)
def test_impossible_rates_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="rate"):
        Rates(**kwargs)


# --- transitions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "after"),
    [
        ("suspend", NetworkState.SUSPENDED),
        ("resume", NetworkState.ACTIVE),
        ("cancel", NetworkState.CANCELLED),
    ],
)
def test_an_applied_command_sets_the_network_state(kind: str, after: NetworkState) -> None:
    view = NetworkView({CARD: NetworkState.SUSPENDED if kind == "resume" else NetworkState.ACTIVE})
    answer = view.answer(command(kind, "c1"), Outcome.APPLY)
    assert answer is not None
    assert (answer.status, answer.network_state, answer.changed) == (
        ResultStatus.APPLIED,
        after,
        True,
    )
    assert answer.detail.startswith("HLR ok")
    assert view.state(CARD) is after


def test_an_unknown_card_is_active_on_the_network() -> None:
    view = NetworkView()
    assert view.state(CARD) is NetworkState.ACTIVE
    answer = view.answer(command("resume", "r1"), Outcome.APPLY)
    assert answer is not None and answer.network_state is NetworkState.ACTIVE
    assert not answer.changed and "already" in answer.detail
    assert CARD in view.states  # known from now on: it is observed


@pytest.mark.parametrize("kind", list(CommandType))
def test_a_cancelled_card_stays_cancelled(kind: CommandType) -> None:
    view = NetworkView({CARD: NetworkState.CANCELLED})
    answer = view.answer(command(kind, f"x-{kind}"), Outcome.APPLY)
    assert answer is not None
    assert (answer.status, answer.network_state) == (ResultStatus.APPLIED, NetworkState.CANCELLED)
    assert not answer.changed
    assert view.state(CARD) is NetworkState.CANCELLED


@pytest.mark.parametrize(
    ("outcome", "status"),
    [(Outcome.FAIL, ResultStatus.FAILED), (Outcome.REJECT, ResultStatus.REJECTED)],
)
def test_failures_and_rejections_leave_the_card_as_it_was(
    outcome: Outcome, status: ResultStatus
) -> None:
    view = NetworkView()
    answer = view.answer(command("suspend", "s1"), outcome)
    assert answer is not None
    assert (answer.status, answer.network_state) == (status, NetworkState.ACTIVE)
    assert view.state(CARD) is NetworkState.ACTIVE
    assert "s1" not in view.applied_ids


def test_a_dropped_command_has_no_answer() -> None:
    view = NetworkView()
    assert view.answer(command("suspend", "s1"), Outcome.DROP) is None
    assert view.state(CARD) is NetworkState.ACTIVE


# --- re-publications ------------------------------------------------------------------------


def test_a_retry_after_a_failure_is_applied() -> None:
    view = NetworkView()
    view.answer(command("suspend", "s1"), Outcome.FAIL)
    answer = view.answer(command("suspend", "s1", attempt=2), Outcome.APPLY)
    assert answer is not None and answer.changed
    assert view.state(CARD) is NetworkState.SUSPENDED


def test_an_applied_command_id_is_answered_again_without_changing_state() -> None:
    view = NetworkView()
    view.answer(command("suspend", "s1"), Outcome.APPLY)
    view.answer(command("resume", "r1"), Outcome.APPLY)
    again = view.answer(command("suspend", "s1", attempt=2), Outcome.APPLY)
    assert again is not None
    assert (again.status, again.network_state, again.changed) == (
        ResultStatus.APPLIED,
        NetworkState.ACTIVE,
        False,
    )
    assert "already applied" in again.detail
    assert view.state(CARD) is NetworkState.ACTIVE


# --- observations ---------------------------------------------------------------------------


def cards(n: int) -> list[str]:
    return [f"898604{i:014d}" for i in range(n)]


def test_observations_are_bounded_and_go_round_every_card() -> None:
    view = NetworkView(dict.fromkeys(cards(5), NetworkState.ACTIVE))
    rng = random.Random(1)
    rounds = [[o.iccid for o in view.observe(rng, 0.0, 2)] for _ in range(3)]
    assert [len(r) for r in rounds] == [2, 2, 2]
    assert {i for r in rounds for i in r} == set(cards(5))
    assert NetworkView().observe(rng, 0.0, 10) == []


def test_drift_reactivates_suspended_cards_only() -> None:
    states = [NetworkState.SUSPENDED, NetworkState.CANCELLED, NetworkState.ACTIVE]
    view = NetworkView(dict(zip(cards(3), states, strict=True)))
    seen = {o.iccid: o for o in view.observe(random.Random(1), 1.0, 10)}
    suspended, cancelled, active = cards(3)
    assert seen[suspended].drifted and seen[suspended].network_state is NetworkState.ACTIVE
    assert view.state(suspended) is NetworkState.ACTIVE  # silently, on the network itself
    assert (seen[cancelled].network_state, seen[cancelled].drifted) == ("cancelled", False)
    assert (seen[active].network_state, seen[active].drifted) == ("active", False)


def test_without_drift_the_observation_is_the_network_state() -> None:
    view = NetworkView(dict.fromkeys(cards(50), NetworkState.SUSPENDED))
    observed = view.observe(random.Random(1), 0.0, 100)
    assert {o.network_state for o in observed} == {NetworkState.SUSPENDED}
    assert not any(o.drifted for o in observed)


def test_a_drift_rate_drifts_about_that_share() -> None:
    view = NetworkView(dict.fromkeys(cards(2000), NetworkState.SUSPENDED))
    drifted = sum(o.drifted for o in view.observe(random.Random(3), 0.1, 2000))
    assert 150 <= drifted <= 250


# --- settings and the command line ----------------------------------------------------------


def test_topics_come_from_the_simulator_or_usage_monitor_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USAGE_MONITOR_TOPIC_COMMANDS", "um.card.commands")
    monkeypatch.setenv("USAGE_MONITOR_TOPIC_COMMAND_RESULTS", "um.card.command_results")
    monkeypatch.setenv("USAGE_MONITOR_TOPIC_EVENTS", "um.card.events")
    monkeypatch.setenv("PROVISIONING_SIM_TOPIC_EVENTS", "sim.card.events")
    monkeypatch.setenv("PROVISIONING_SIM_FAIL_RATE", "0.25")
    s = Settings()
    assert (s.topic_commands, s.topic_results, s.topic_events) == (
        "um.card.commands",
        "um.card.command_results",
        "sim.card.events",
    )
    assert s.fail_rate == 0.25
    assert Settings(topic_commands="flag.commands").topic_commands == "flag.commands"


def test_default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COMMANDS", "COMMAND_RESULTS", "EVENTS"):
        monkeypatch.delenv(f"USAGE_MONITOR_TOPIC_{name}", raising=False)
    s = Settings()
    assert (s.topic_commands, s.topic_results, s.topic_events) == (
        "card.commands",
        "card.command_results",
        "card.events",
    )
    assert (s.delay_min_s, s.delay_max_s, s.observe_interval_s, s.observe_max) == (
        0.2,
        2.0,
        30.0,
        1000,
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"drop_rate": 0.6, "fail_rate": 0.6}, {"delay_min_s": 3.0, "delay_max_s": 1.0}],
)
def test_inconsistent_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        Settings(**kwargs)  # type: ignore[arg-type]


def test_an_invalid_flag_value_ends_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--fail-rate", "0.7", "--reject-rate", "0.7"]) == 2
    assert "invalid setting" in capsys.readouterr().err
    assert main(["--drift-rate", "1.5"]) == 2
    assert "PROVISIONING_SIM_DRIFT_RATE" in capsys.readouterr().err


def test_the_summary_is_one_line_of_counts() -> None:
    line = Counters(seen=3, applied=2, dropped=1).line(pending=0)
    assert line.startswith("provisioning-sim: seen=3 ")
    for part in ("applied=2", "failed=0", "rejected=0", "dropped=1", "duplicated=0"):
        assert part in line
    assert "observations=0" in line and "drifts=0" in line and "\n" not in line
