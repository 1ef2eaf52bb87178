from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rasd.sdc.results import Result, combine
from rasd.sdc.settings import SdcSettings
from rasd.sdc.verdicts import PastAccusation, Verdict, decide, should_escalate, should_rerun

S = SdcSettings()
P, F, I = Result.PASS, Result.FAIL, Result.INCONCLUSIVE


def test_decide_table() -> None:
    assert decide([F, F, P], S) is Verdict.CONFIRMED
    assert decide([P, P, P], S) is Verdict.CLEARED
    assert decide([F, P, P, P], S) is Verdict.INCONCLUSIVE
    assert decide([P, P, I], S) is Verdict.INCONCLUSIVE
    assert decide([], S) is Verdict.INCONCLUSIVE


@given(st.sampled_from([P, F, I]))
def test_never_cleared_or_confirmed_on_one_result(r: Result) -> None:
    assert decide([r], S) is Verdict.INCONCLUSIVE


def test_a_lone_failure_asks_for_a_rerun() -> None:
    assert should_rerun([P, F, P], S)
    assert not should_rerun([F, F], S)
    assert not should_rerun([P, P, P], S)


def test_repeated_unreproduced_accusations_escalate_within_the_window() -> None:
    now = 1_000_000.0
    day = 86400.0
    two = [PastAccusation(now - day, "cleared"), PastAccusation(now - 2 * day, "inconclusive")]
    assert should_escalate(two, now, S)  # third accusation, threshold 3
    assert not should_escalate(two[:1], now, S)
    old = [PastAccusation(now - 30 * day, "cleared"), PastAccusation(now - 40 * day, "cleared")]
    assert not should_escalate(old, now, S)
    confirmed = [PastAccusation(now - day, "confirmed"), PastAccusation(now - day, "confirmed")]
    assert not should_escalate(confirmed, now, S)


def test_combine_prefers_fail_then_inconclusive() -> None:
    assert combine([P, I, F]) is F
    assert combine([P, I]) is I
    assert combine([P, P]) is P
    assert combine([]) is I


def test_settings_refuse_single_result_decisions() -> None:
    bad = SdcSettings(confirm_min_failures=1, clear_min_passes=1, deep_power_limits_watts=(500.0,))
    problems = " ".join(bad.validate())
    assert "confirm_min_failures" in problems and "clear_min_passes" in problems
    assert "enforce_power" in problems
    assert SdcSettings().validate() == []
