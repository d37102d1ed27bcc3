"""Retry policy: a small frozen value a step declares, as in ``retry = RetryPolicy(...)``."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, how soon and on what a failing step is tried again.

    ``max_attempts`` counts the first try (1 = no retry). The delay before
    attempt ``n + 1`` is ``initial_delay * backoff ** (n - 1)``, capped at
    ``max_delay``, then spread by ``jitter`` (0.1 = up to 10% either way).
    An exception is retried when it is an instance of ``retry_on`` and
    ``predicate(exc)`` (if given) is true. Only exceptions are retried: a
    step that *returns* ``success=False`` has decided it failed.
    """

    max_attempts: int = 3
    initial_delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.1
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    predicate: Callable[[BaseException], bool] | None = None

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ValueError(f'max_attempts must be an int >= 1, got {self.max_attempts!r}')
        for name in ('initial_delay', 'backoff', 'max_delay', 'jitter'):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f'{name} must be a finite number >= 0, got {value!r}')
        if self.jitter > 1:
            raise ValueError(f'jitter must be within 0..1, got {self.jitter!r}')
        if not isinstance(self.retry_on, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in self.retry_on
        ):
            raise ValueError('retry_on must be a tuple of exception types')

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """True if ``error`` on ``attempt`` (1-based) earns another attempt."""
        if attempt >= self.max_attempts or not isinstance(error, self.retry_on):
            return False
        return self.predicate is None or bool(self.predicate(error))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed ``attempt`` (1-based)."""
        try:
            base = min(self.initial_delay * self.backoff ** (attempt - 1), self.max_delay)
        except OverflowError:  # a late attempt of a steep backoff: the cap
            base = self.max_delay
        if self.jitter and base:
            spread = (rng or random).uniform(-self.jitter, self.jitter)
            base = max(0.0, base * (1 + spread))
        return base
