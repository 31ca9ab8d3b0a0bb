"""Hand-computed checks of the pooled-quota reference model (tests/reference/pool_model.py)."""

from __future__ import annotations

from datetime import date

from tests.reference.pool_model import (
    ALERT_ONLY,
    MANUAL,
    MEMBER_CAP,
    OVER_QUOTA,
    POOL_OVER_QUOTA,
    Calendar,
    PoolWorld,
    local,
    utc,
)

A, B, C = "89860000000000000001", "89860000000000000002", "89860000000000000003"
SH = "Asia/Shanghai"
NOV = date(2026, 11, 1)
DEC = date(2026, 12, 1)


def _world(quota: int = 1000, **pool: object) -> PoolWorld:
    w = PoolWorld()
    w.define_pool(local(SH, 2026, 11, 2), "p1", quota, **pool)  # type: ignore[arg-type]
    w.set_membership(local(SH, 2026, 11, 2, 1), A, "p1")
    w.set_membership(local(SH, 2026, 11, 2, 2), B, "p1")
    return w


def test_one_record_crosses_every_level_and_stops_every_member() -> None:
    w = _world(1000)
    w.count(local(SH, 2026, 11, 3), "r1", A, local(SH, 2026, 11, 3), 700)
    assert w.alerts == [] and w.commands == []
    w.count(local(SH, 2026, 11, 4), "r2", B, local(SH, 2026, 11, 4), 300)  # 700 -> 1000
    assert w.pool_used("p1", NOV) == 1000
    assert w.alerts == [
        ("p1", NOV, "pool_threshold", 80),
        ("p1", NOV, "pool_threshold", 90),
        ("p1", NOV, "pool_exhausted", 100),
    ]
    assert w.reasons(A) == w.reasons(B) == {POOL_OVER_QUOTA}
    assert w.commands == [(A, "suspend", POOL_OVER_QUOTA), (B, "suspend", POOL_OVER_QUOTA)]


def test_levels_at_exact_boundaries_and_once_per_cycle() -> None:
    w = _world(1000, warn_percents=[50, 80])
    w.count(local(SH, 2026, 11, 3), "r1", A, local(SH, 2026, 11, 3), 499)
    assert w.alerts == []
    w.count(local(SH, 2026, 11, 3, 1), "r2", A, local(SH, 2026, 11, 3, 1), 1)  # 500*100 >= 1000*50
    assert w.alerts == [("p1", NOV, "pool_threshold", 50)]
    w.count(local(SH, 2026, 11, 3, 2), "r3", A, local(SH, 2026, 11, 3, 2), 299)  # 799
    assert len(w.alerts) == 1
    w.count(local(SH, 2026, 11, 3, 3), "r4", A, local(SH, 2026, 11, 3, 3), 1)  # 800
    w.count(local(SH, 2026, 11, 3, 4), "r5", A, local(SH, 2026, 11, 3, 4), 150)  # 950
    assert w.alerts[1:] == [("p1", NOV, "pool_threshold", 80)]
    assert w.commands == []
    # the next cycle starts empty and may announce each level again
    w.count(local(SH, 2026, 12, 5), "r6", B, local(SH, 2026, 12, 5), 600)
    assert w.alerts[2:] == [("p1", DEC, "pool_threshold", 50)]


def test_a_redelivered_record_is_counted_once() -> None:
    w = _world(1000)
    assert w.count(local(SH, 2026, 11, 3), "r1", A, local(SH, 2026, 11, 3), 600)
    assert not w.count(local(SH, 2026, 11, 4), "r1", A, local(SH, 2026, 11, 3), 600)
    assert not w.count(local(SH, 2026, 11, 5), "r1", A, local(SH, 2026, 11, 3), 600)
    assert w.pool_used("p1", NOV) == 600
    assert w.card_used(A, NOV) == 600
    assert w.alerts == [] and w.reasons(A) == frozenset()


def test_a_card_moving_pools_mid_cycle_moves_only_its_future_usage() -> None:
    w = _world(1000)
    w.define_pool(local(SH, 2026, 11, 2, 3), "p2", 500)
    w.count(local(SH, 2026, 11, 3), "r1", A, local(SH, 2026, 11, 3), 400)
    w.set_membership(local(SH, 2026, 11, 10), A, "p2")
    # a late record (event time before the move) counted after the move goes to p2
    w.count(local(SH, 2026, 11, 11), "r2", A, local(SH, 2026, 11, 9), 100)
    w.count(local(SH, 2026, 11, 12), "r3", A, local(SH, 2026, 11, 12), 350)
    assert w.pool_used("p1", NOV) == 400
    assert w.pool_used("p2", NOV) == 450
    assert w.alerts == [("p2", NOV, "pool_threshold", 80), ("p2", NOV, "pool_threshold", 90)]
    w.count(local(SH, 2026, 11, 13), "r4", B, local(SH, 2026, 11, 13), 600)  # p1: 1000
    assert w.reasons(B) == {POOL_OVER_QUOTA}
    assert w.reasons(A) == frozenset()  # A left p1 before p1 was exhausted
    w.count(local(SH, 2026, 11, 14), "r5", A, local(SH, 2026, 11, 14), 50)  # p2: 500
    assert w.reasons(A) == {POOL_OVER_QUOTA}
    # leaving the exhausted pool lifts the pool stop for that card only
    w.set_membership(local(SH, 2026, 11, 15), A, None)
    assert w.reasons(A) == frozenset()
    assert w.commands_of(A) == [("suspend", POOL_OVER_QUOTA), ("resume", POOL_OVER_QUOTA)]


def test_a_card_in_no_pool_counts_for_no_pool_and_brings_no_past_usage() -> None:
    w = _world(1000)
    w.set_membership(local(SH, 2026, 11, 3), C, None)
    w.count(local(SH, 2026, 11, 4), "r1", C, local(SH, 2026, 11, 4), 2000)
    assert w.pool_used("p1", NOV) == 0
    w.set_membership(local(SH, 2026, 11, 5), C, "p1")
    assert w.pool_used("p1", NOV) == 0 and w.alerts == []
    w.count(local(SH, 2026, 11, 6), "r2", C, local(SH, 2026, 11, 6), 10)
    assert w.pool_used("p1", NOV) == 10
    # usage of a card with no profile yet is counted, for itself only
    w.count(local(SH, 2026, 11, 7), "r3", "89860000000000000009", local(SH, 2026, 11, 7), 5000)
    assert w.pool_used("p1", NOV) == 10


def test_joining_an_exhausted_pool_suspends_the_newcomer_until_the_next_cycle() -> None:
    w = _world(1000)
    w.count(local(SH, 2026, 11, 3), "r1", A, local(SH, 2026, 11, 3), 1200)
    w.set_membership(local(SH, 2026, 11, 20), C, "p1")
    assert w.reasons(C) == {POOL_OVER_QUOTA}
    w.advance(local(SH, 2026, 11, 30, 23, 59))
    assert w.reasons(C) == {POOL_OVER_QUOTA}
    w.advance(local(SH, 2026, 12, 1))  # 00:00 Shanghai: the pool's next cycle
    assert {w.reasons(i) for i in (A, B, C)} == {frozenset()}
    assert w.commands_of(C) == [("suspend", POOL_OVER_QUOTA), ("resume", POOL_OVER_QUOTA)]
    assert [c[1] for c in w.commands] == ["suspend"] * 3 + ["resume"] * 3


def test_the_pools_next_cycle_lifts_only_pool_over_quota() -> None:
    w = _world(1000)
    w.count(local(SH, 2026, 11, 3), "r1", A, local(SH, 2026, 11, 3), 1000)
    w.manual(local(SH, 2026, 11, 4), B, stop=True)  # already suspended: no command
    assert w.reasons(B) == {POOL_OVER_QUOTA, MANUAL}
    w.advance(local(SH, 2026, 12, 2))
    assert w.reasons(B) == {MANUAL}  # the customer's stop survives the pool's new cycle
    assert w.reasons(A) == frozenset()
    w.manual(local(SH, 2026, 12, 3), B, stop=False)
    assert w.commands_of(B) == [("suspend", POOL_OVER_QUOTA), ("resume", MANUAL)]
    assert w.commands_of(A) == [("suspend", POOL_OVER_QUOTA), ("resume", POOL_OVER_QUOTA)]


def test_a_pool_resume_never_lifts_a_members_own_over_quota() -> None:
    w = _world(1000)
    w.set_membership(local(SH, 2026, 11, 2, 5), A, "p1", own_quota=300)
    w.count(local(SH, 2026, 11, 3), "r1", A, local(SH, 2026, 11, 3), 300)
    assert w.reasons(A) == {OVER_QUOTA}
    w.count(local(SH, 2026, 11, 4), "r2", B, local(SH, 2026, 11, 4), 700)
    assert w.reasons(A) == {OVER_QUOTA, POOL_OVER_QUOTA}
    w.define_pool(local(SH, 2026, 11, 5), "p1", 2000)  # quota raised: the pool stop ends
    assert w.reasons(A) == {OVER_QUOTA}
    assert w.reasons(B) == frozenset()
    assert w.commands_of(A) == [("suspend", OVER_QUOTA)]
    assert w.commands_of(B) == [("suspend", POOL_OVER_QUOTA), ("resume", POOL_OVER_QUOTA)]
    w.advance(local(SH, 2026, 12, 1))  # a member's own cycle is its pool's
    assert w.commands_of(A) == [("suspend", OVER_QUOTA), ("resume", OVER_QUOTA)]


def test_alert_only_alerts_and_suspends_nobody() -> None:
    w = _world(1000, on_exhausted=ALERT_ONLY, warn_percents=[90, 100])
    w.count(local(SH, 2026, 11, 3), "r1", A, local(SH, 2026, 11, 3), 5000)
    assert w.alerts == [("p1", NOV, "pool_threshold", 90), ("p1", NOV, "pool_exhausted", 100)]
    assert w.commands == [] and w.reasons(A) == w.reasons(B) == frozenset()


def test_raising_the_quota_re_arms_the_levels_no_longer_reached() -> None:
    w = _world(1000)
    w.count(local(SH, 2026, 11, 3), "r1", A, local(SH, 2026, 11, 3), 1000)
    assert len(w.alerts) == 3
    w.define_pool(local(SH, 2026, 11, 4), "p1", 1150)  # 1000/1150 = 87 %: 90 and 100 re-armed
    assert len(w.alerts) == 3
    assert w.reasons(A) == frozenset()
    w.define_pool(local(SH, 2026, 11, 5), "p1", 1150)  # the same pool again: nothing new
    w.count(local(SH, 2026, 11, 6), "r2", B, local(SH, 2026, 11, 6), 150)  # 1150
    assert w.alerts[3:] == [("p1", NOV, "pool_threshold", 90), ("p1", NOV, "pool_exhausted", 100)]
    assert w.commands_of(A) == [
        ("suspend", POOL_OVER_QUOTA),
        ("resume", POOL_OVER_QUOTA),
        ("suspend", POOL_OVER_QUOTA),
    ]
    # lowering the quota announces what it reaches at once (80 is still announced)
    w.define_pool(local(SH, 2026, 11, 7), "p1", 100)
    assert len(w.alerts) == 5


def test_member_cap_suspends_that_member_alone_until_its_next_cycle() -> None:
    w = _world(10_000)
    w.set_membership(local(SH, 2026, 11, 2, 5), A, "p1", member_cap=500)
    w.count(local(SH, 2026, 11, 3), "r1", A, local(SH, 2026, 11, 3), 499)
    assert w.reasons(A) == frozenset()
    w.count(local(SH, 2026, 11, 4), "r2", A, local(SH, 2026, 11, 4), 1)
    assert w.reasons(A) == {MEMBER_CAP} and w.reasons(B) == frozenset()
    w.advance(utc(2026, 11, 30, 16))  # 2026-12-01 00:00 Shanghai
    assert w.reasons(A) == frozenset()
    assert w.commands == [(A, "suspend", MEMBER_CAP), (A, "resume", MEMBER_CAP)]


def test_stacked_reasons_resume_only_when_the_last_one_lifts() -> None:
    w = _world(1000)
    w.set_membership(local(SH, 2026, 11, 2, 5), A, "p1", member_cap=100, own_quota=5000)
    w.count(local(SH, 2026, 11, 3), "r1", A, local(SH, 2026, 11, 3), 1000)  # cap + pool at once
    assert w.reasons(A) == {MEMBER_CAP, POOL_OVER_QUOTA}
    assert w.command_options == [
        (A, "suspend", frozenset({MEMBER_CAP, POOL_OVER_QUOTA})),
        (B, "suspend", frozenset({POOL_OVER_QUOTA})),
    ]
    w.manual(local(SH, 2026, 11, 4), A, stop=True)
    w.define_pool(local(SH, 2026, 11, 5), "p1", 3000)
    assert w.reasons(A) == {MEMBER_CAP, MANUAL}
    w.manual(local(SH, 2026, 11, 6), A, stop=False)
    assert w.reasons(A) == {MEMBER_CAP}
    w.set_membership(local(SH, 2026, 11, 7), A, "p1", member_cap=2000, own_quota=5000)
    assert w.commands_of(A) == [("suspend", POOL_OVER_QUOTA), ("resume", MEMBER_CAP)]


def test_a_new_york_pool_counts_in_local_cycles_across_dst() -> None:
    ny = "America/New_York"
    cal = Calendar(1, ny)
    assert cal.start(date(2026, 11, 1)) == utc(2026, 11, 1, 4)  # EDT, UTC-4
    assert cal.start(date(2026, 12, 1)) == utc(2026, 12, 1, 5)  # EST, UTC-5
    w = PoolWorld()
    w.define_pool(utc(2026, 10, 20), "ny", 1000, cycle_day=1, timezone=ny)
    w.set_membership(utc(2026, 10, 20, 1), A, "ny")
    # 2026-11-01 03:30 UTC is still 2026-10-31 23:30 in New York: the October cycle
    w.count(utc(2026, 11, 1, 3, 30), "r1", A, utc(2026, 11, 1, 3, 30), 1000)
    assert w.pool_used("ny", date(2026, 10, 1)) == 1000
    assert w.reasons(A) == {POOL_OVER_QUOTA}
    w.advance(utc(2026, 11, 1, 3, 59))
    assert w.reasons(A) == {POOL_OVER_QUOTA}
    w.advance(utc(2026, 11, 1, 4))
    assert w.reasons(A) == frozenset()
    w.count(utc(2026, 12, 1, 4, 30), "r2", A, utc(2026, 12, 1, 4, 30), 1000)  # 23:30 EST
    assert w.pool_used("ny", date(2026, 11, 1)) == 1000
    assert w.reasons(A) == {POOL_OVER_QUOTA}
    w.advance(utc(2026, 12, 1, 5))
    assert w.reasons(A) == frozenset()


def test_a_lord_howe_pool_with_cycle_day_15() -> None:
    lh = "Australia/Lord_Howe"  # +10:30 standard, +11 in (southern) summer
    w = PoolWorld()
    w.define_pool(utc(2026, 3, 20), "lh", 100, warn_percents=[100], cycle_day=15, timezone=lh)
    w.set_membership(utc(2026, 3, 20), A, "lh")
    # 2026-04-14 13:29 UTC = 2026-04-14 23:59 (+10:30, DST ended on 5 April): March cycle
    w.count(utc(2026, 4, 14, 13, 29), "r1", A, utc(2026, 4, 14, 13, 29), 100)
    assert w.alerts == [("lh", date(2026, 3, 15), "pool_exhausted", 100)]
    w.advance(utc(2026, 4, 14, 13, 30))  # 2026-04-15 00:00 local
    assert w.reasons(A) == frozenset()
    w.count(utc(2026, 4, 20), "r2", A, utc(2026, 4, 20), 100)
    assert w.alerts[1:] == [("lh", date(2026, 4, 15), "pool_exhausted", 100)]


def test_a_pool_with_quota_zero_is_exhausted_as_soon_as_its_cycle_starts() -> None:
    w = PoolWorld()
    w.define_pool(local(SH, 2026, 11, 2), "z", 0, warn_percents=[80])
    assert w.alerts == [("z", NOV, "pool_threshold", 80), ("z", NOV, "pool_exhausted", 100)]
    w.set_membership(local(SH, 2026, 11, 3), A, "z")
    assert w.reasons(A) == {POOL_OVER_QUOTA}
    w.advance(local(SH, 2026, 12, 3))
    assert w.alerts[2:] == [("z", DEC, "pool_threshold", 80), ("z", DEC, "pool_exhausted", 100)]
    assert w.commands_of(A) == [("suspend", POOL_OVER_QUOTA)]
