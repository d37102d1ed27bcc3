"""The root of the SDK's exceptions, and the exceptions a failed run raises.

The root lives here, in the lowest layer, so every layer's errors can derive
from it; ``synapse_sdk.errors`` draws the whole tree (docs/errors.md).
"""

from __future__ import annotations

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
    ``rollback_errors`` and attached as a note.
    """

    def __init__(self, step_name: str, result: StepResult, rollback_errors: list[str]) -> None:
        super().__init__(f"Step '{step_name}' failed: {result.error}")
        self.step_name = step_name
        self.result = result
        self.rollback_errors = list(rollback_errors)
        if self.rollback_errors:
            self.add_note(
                f'Rollback ran, but {len(self.rollback_errors)} part(s) could not be undone '
                '(listed below): check and clean those up before running again.'
            )
            for message in self.rollback_errors:
                self.add_note(message)
        else:
            self.add_note('Rollback completed: the finished steps were undone in reverse order.')


class RunCancelledError(StepExecutionError):
    """The run was cancelled (``reason``: e.g. ``'SIGINT'``); it was rolled back like a failure."""

    kind = ErrorKind.CANCELLED

    def __init__(
        self, step_name: str, result: StepResult, rollback_errors: list[str], reason: str
    ) -> None:
        super().__init__(step_name, result, rollback_errors)
        self.reason = reason
