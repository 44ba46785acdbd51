"""The outbox's retry arithmetic: full-jitter backoff, Retry-After, the retry count and window, and
the clock that says when the first retry window ends."""
import random

import pytest

from webhooks.retry_timing import RETRY_AFTER_MAX_S, RetryPolicy, WindowClock


def policy(**kw):
    args = dict(retries=None, retry_window_s=None, backoff_base_s=2.0, backoff_max_s=300.0)
    args.update(kw)
    return RetryPolicy(**args)


def test_a_policy_needs_a_count_or_a_window():
    with pytest.raises(ValueError):
        policy()


def test_backoff_is_full_jitter_under_a_doubling_cap():
    p = policy(retries=100)
    random.seed(7)
    for attempts, cap in ((1, 2.0), (2, 4.0), (3, 8.0), (9, 300.0), (60, 300.0)):
        delays = [p.next_attempt({'attempts': attempts}, 1000.0, None) - 1000.0 for _ in range(400)]
        assert all(0.0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8 and min(delays) < cap * 0.2   # spread over the whole range


def test_retry_after_raises_the_delay_up_to_an_hour():
    p = policy(retries=5, backoff_base_s=0.01, backoff_max_s=0.01)
    assert p.next_attempt({'attempts': 1}, 0.0, 30.0) == 30.0
    assert p.next_attempt({'attempts': 1}, 0.0, 10 * RETRY_AFTER_MAX_S) == RETRY_AFTER_MAX_S


def test_the_count_ends_retries():
    p = policy(retries=2)
    assert p.max_attempts == 3
    assert p.next_attempt({'attempts': 2}, 0.0, None) is not None
    assert p.next_attempt({'attempts': 3}, 0.0, None) is None
    assert policy(retry_window_s=60).max_attempts == 0


def test_the_window_ends_retries_with_a_last_attempt_at_its_end():
    p = policy(retry_window_s=60.0, backoff_base_s=1000.0, backoff_max_s=1000.0)
    random.seed(1)
    at = [p.next_attempt({'attempts': 4, 'window_start': 100.0}, 150.0, None) for _ in range(50)]
    assert all(150.0 <= t <= 160.0 for t in at) and 160.0 in at
    assert p.next_attempt({'attempts': 4, 'window_start': 100.0}, 160.0, None) is None
    assert p.next_attempt({'attempts': 1, 'window_start': 100.0}, 100.0, 3600.0) == 160.0


def test_the_window_clock_keeps_the_first_end():
    clock = WindowClock(60.0)
    assert clock.at is None and not clock.ended(1e12)
    clock.started(100.0)
    clock.started(50.0)
    clock.started(200.0)
    assert clock.at == 110.0 and not clock.ended(109.9) and clock.ended(110.0)
    clock.reset(None)
    assert clock.at is None
    clock.reset(300.0)
    assert clock.at == 360.0


def test_without_a_window_the_clock_never_runs():
    clock = WindowClock(None)
    clock.started(1.0)
    assert clock.at is None and not clock.ended(1e12)
