"""Who hears a run's lifecycle events: loggers, the run journal, the Ray relay.

They subclass :class:`RunListener` and are passed as
``Orchestrator(..., listeners=[...])``; the core never imports them. Each
gets the events (:mod:`.events`) of the kinds it ``listens_to`` through its one
method, ``on_event``, and tells them apart, typically with ``match``.

Order of events for a run of steps ``a, b`` where ``b`` fails::

    RunStarted
    StepStarted(a)  [RollbackData(a) ...]  [StepProgress(a), Progress ...]  StepEnded(a)
    StepStarted(b)  ...  StepEnded(b, failed result)
    RollbackStarted(b)  RollbackEnded(b)
    RollbackStarted(a)  RollbackEnded(a)
    RunEnded(summary.success=False)

A skipped step gets ``StepSkipped`` instead of start/end; a step whose
result was carried over from an earlier run (resume) gets ``StepReused``;
a failed attempt that will be retried gets ``StepRetrying`` once that
attempt's own rollback has run (without rollback events).

Errors raised by a listener: in ``StepStarted``, ``StepEnded``, ``StepSkipped``,
``StepReused``, ``RollbackData``, ``StepProgress``, ``Progress`` and
``StepRetrying`` they count as the running step's failure (a journal that
cannot record a step must not let the run go on unrecorded); in rollback and
run-end events (and a failed step's ``StepEnded``) they are collected into
``context.errors`` and never stop the remaining rollbacks.
"""

from __future__ import annotations

from typing import ClassVar

from ._events import RunEvent


class RunListener:
    """Receives a run's lifecycle events; override :meth:`on_event`.

    ``listens_to`` names the kinds of event the listener takes (subclasses included);
    all, by default. Naming only those it handles spares the run making the others
    for it: a step that reports progress per item sends a ``StepProgress`` (and often
    a ``Progress``) per item, which only a listener asking for them costs. A run works
    out once per kind which listeners take it.
    """

    listens_to: ClassVar[tuple[type[RunEvent], ...]] = (RunEvent,)

    def on_event(self, event: RunEvent) -> None:
        """One event of the run (see :mod:`.events`); the default ignores it."""
