"""The root of the SDK's exceptions, and the exceptions a failed run raises.

The root lives here, in the lowest layer, so every layer's errors can derive
from it; ``synapse_sdk.errors`` draws the whole tree (docs/errors.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import ClassVar

from ._result import StepResult


class ErrorKind(StrEnum):
    """What an error means to whoever ran the SDK; the CLI turns each into its exit code."""

    BAD_INPUT = 'bad_input'
    """The input is at fault (command line, params, plugin, journal, run id): fix it and retry."""
    FAILED = 'failed'
    """Something ran and failed (a run is rolled back first)."""
    CANCELLED = 'cancelled'
    """The run was asked to stop (Ctrl-C, SIGTERM, ``cancel()``) and was rolled back."""


class SynapseError(Exception):
    """Root of every exception the SDK raises on purpose: ``except SynapseError`` catches them all.

    Each subclass also keeps the built-in base its callers rely on (a failed
    run is a ``RuntimeError``, bad params a ``ValueError``); ``kind`` says
    what the error means, so that a front end (the CLI) need not list classes.
    """

    kind: ClassVar[ErrorKind] = ErrorKind.FAILED


class StepExecutionError(SynapseError, RuntimeError):
    """``Step '<name>' failed: <error>``, raised after the rollback has run.

    A ``RuntimeError`` as the spec promises; the original exception (if the
    step raised) is its ``__cause__``, and each rollback failure is both in
    ``rollback_errors`` and attached as a note. ``rolled_back`` names the steps
    whose ``rollback()`` undid their work, newest first (None: not known, for an
    error rebuilt from a report); a note says what was undone.
    """

    def __init__(
        self,
        step_name: str,
        result: StepResult,
        rollback_errors: list[str],
        rolled_back: Sequence[str] | None = None,
    ) -> None:
        super().__init__(f"Step '{step_name}' failed: {result.error}")
        self.step_name = step_name
        self.result = result
        self.rollback_errors = list(rollback_errors)
        self.rolled_back = None if rolled_back is None else list(rolled_back)
        if self.rollback_errors:
            self.add_note(
                f'Rollback ran, but {len(self.rollback_errors)} part(s) could not be undone '
                '(listed below): check and clean those up before running again.'
            )
            for message in self.rollback_errors:
                self.add_note(message)
        note = _undone_note(self.rolled_back, bool(self.rollback_errors))
        if note:
            self.add_note(note)


def _undone_note(rolled_back: list[str] | None, failed: bool) -> str | None:
    """What the rollback undid, in one sentence, when known."""
    if rolled_back is None:
        return None if failed else 'Rollback completed.'
    if rolled_back:
        return f'Rolled back: {", ".join(rolled_back)} (newest first).'
    if failed:
        return None
    return 'Nothing to roll back: no step that ran has a rollback().'


class RunCancelledError(StepExecutionError):
    """The run was cancelled (``reason``: e.g. ``'SIGINT'``); it was rolled back like a failure."""

    kind = ErrorKind.CANCELLED

    def __init__(
        self,
        step_name: str,
        result: StepResult,
        rollback_errors: list[str],
        reason: str,
        rolled_back: Sequence[str] | None = None,
    ) -> None:
        super().__init__(step_name, result, rollback_errors, rolled_back)
        self.reason = reason
