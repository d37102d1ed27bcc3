"""The exception a failed run raises."""

from __future__ import annotations

from .result import StepResult


class StepExecutionError(RuntimeError):
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

    def __init__(
        self, step_name: str, result: StepResult, rollback_errors: list[str], reason: str
    ) -> None:
        super().__init__(step_name, result, rollback_errors)
        self.reason = reason
