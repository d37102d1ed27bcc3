"""RetryPolicy on its own: validation, which errors earn another attempt, and the delays."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from synapse_sdk.plugins.steps import RetryPolicy


@pytest.mark.parametrize(
    'options',
    [
        {'max_attempts': 0},
        {'max_attempts': -1},
        {'max_attempts': 1.5},
        {'max_attempts': '3'},
        {'max_attempts': None},
        {'initial_delay': -0.1},
        {'initial_delay': math.nan},
        {'initial_delay': math.inf},
        {'initial_delay': '1'},
        {'backoff': -2.0},
        {'backoff': math.nan},
        {'max_delay': -1},
        {'max_delay': math.inf},
        {'jitter': -0.1},
        {'jitter': 1.5},
        {'jitter': math.nan},
        {'retry_on': ConnectionError},  # a class, not a tuple of classes
        {'retry_on': [ConnectionError]},
        {'retry_on': (ConnectionError, 'TimeoutError')},
        {'retry_on': (int,)},
    ],
    ids=lambda options: ', '.join(f'{k}={v!r}' for k, v in options.items()),
)
def test_bad_values_are_rejected(options: dict[str, Any]) -> None:
    name = next(iter(options))
    with pytest.raises(ValueError, match=name):
        RetryPolicy(**options)


def test_boolean_max_attempts_is_rejected() -> None:
    # The registry rejects True as a timeout and as a weight; True is not a count either.
    with pytest.raises(ValueError, match='max_attempts'):
        RetryPolicy(max_attempts=True)


def test_defaults_and_edge_values_are_accepted() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.initial_delay, policy.backoff) == (3, 1.0, 2.0)
    assert (policy.max_delay, policy.jitter, policy.retry_on) == (60.0, 0.1, (Exception,))
    RetryPolicy(max_attempts=1, initial_delay=0, backoff=0, max_delay=0, jitter=0)
    RetryPolicy(jitter=1)
    RetryPolicy(retry_on=())


def test_the_policy_is_frozen() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 5  # type: ignore[misc]


# --------------------------------------------------------------- should_retry


def test_should_retry_counts_the_first_try() -> None:
    policy = RetryPolicy(max_attempts=3)
    error = ConnectionError('reset')
    assert [policy.should_retry(error, attempt) for attempt in (1, 2, 3, 4)] == [
        True,
        True,
        False,
        False,
    ]
    assert not RetryPolicy(max_attempts=1).should_retry(error, 1)


def test_should_retry_filters_on_the_exception_type() -> None:
    policy = RetryPolicy(retry_on=(ConnectionError, TimeoutError))
    assert policy.should_retry(ConnectionResetError(), 1)  # a subclass matches
    assert policy.should_retry(TimeoutError(), 1)
    assert not policy.should_retry(ValueError('bad input'), 1)
    assert not RetryPolicy(retry_on=()).should_retry(ConnectionError(), 1)


def test_should_retry_asks_the_predicate_only_for_matching_types() -> None:
    asked: list[BaseException] = []

    def transient(error: BaseException) -> bool:
        asked.append(error)
        return 'temporarily' in str(error)

    policy = RetryPolicy(max_attempts=5, retry_on=(OSError,), predicate=transient)
    assert policy.should_retry(OSError('temporarily unavailable'), 1)
    assert not policy.should_retry(OSError('permission denied'), 1)
    assert not policy.should_retry(ValueError('temporarily'), 1)
    assert not policy.should_retry(OSError('temporarily unavailable'), 5)  # out of attempts
    assert [str(e) for e in asked] == ['temporarily unavailable', 'permission denied']


def test_a_truthy_predicate_value_counts_as_true() -> None:
    policy = RetryPolicy(predicate=lambda error: 'yes')  # type: ignore[arg-type,return-value]
    assert policy.should_retry(RuntimeError(), 1) is True


# --------------------------------------------------------------- delay


def test_delay_backs_off_exponentially_without_jitter() -> None:
    policy = RetryPolicy(max_attempts=10, initial_delay=0.5, backoff=3.0, max_delay=100, jitter=0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 13.5]


def test_delay_is_capped_at_max_delay() -> None:
    policy = RetryPolicy(max_attempts=10, initial_delay=1.0, backoff=2.0, max_delay=5.0, jitter=0)
    assert [policy.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_constant_and_zero_delays() -> None:
    assert [RetryPolicy(backoff=1.0, jitter=0).delay(n) for n in (1, 2, 3)] == [1.0, 1.0, 1.0]
    assert RetryPolicy(initial_delay=0).delay(3, random.Random(1)) == 0.0
    assert RetryPolicy(backoff=0, jitter=0).delay(2) == 0.0


def test_delay_of_a_late_attempt_is_the_cap_not_an_overflow() -> None:
    # A long-running retry loop: 2.0 ** 1999 overflows a float. The delay is capped anyway.
    policy = RetryPolicy(max_attempts=5000, initial_delay=0.01, max_delay=30.0, jitter=0)
    assert policy.delay(2000) == 30.0


@pytest.mark.parametrize('seed', range(5))
def test_jitter_stays_within_its_bounds(seed: int) -> None:
    policy = RetryPolicy(
        max_attempts=10, initial_delay=2.0, backoff=2.0, max_delay=10.0, jitter=0.25
    )
    rng = random.Random(seed)
    for attempt in range(1, 8):
        base = min(2.0 * 2.0 ** (attempt - 1), 10.0)
        for _ in range(50):
            delay = policy.delay(attempt, rng)
            assert base * 0.75 <= delay <= base * 1.25


def test_jitter_is_reproducible_with_a_seeded_random() -> None:
    policy = RetryPolicy(max_attempts=10, initial_delay=1.0, jitter=0.5)
    first = [policy.delay(n, random.Random(42)) for n in range(1, 6)]
    again = [policy.delay(n, random.Random(42)) for n in range(1, 6)]
    assert first == again
    spread = [policy.delay(1, random.Random(seed)) for seed in range(20)]
    assert len(set(spread)) > 1  # the jitter does move the delay
    assert all(0.5 <= d <= 1.5 for d in spread)


def test_full_jitter_never_goes_negative() -> None:
    policy = RetryPolicy(initial_delay=1.0, jitter=1.0)
    rng = random.Random(3)
    assert all(policy.delay(1, rng) >= 0.0 for _ in range(500))
