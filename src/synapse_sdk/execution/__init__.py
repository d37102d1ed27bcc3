"""Running actions: in this process or on Ray; recovering journaled runs.

``RayExecutor`` is loaded on first use, so that Ray stays an optional extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._local import LocalExecutor, default_runtime, new_run_id, run_action
from ._recovery import RecoveryError, RecoveryFailed, load_action_class, resume_run, rollback_run
from ._signals import SIGNAL_EXIT_CODES, SignalState, cancel_on_signals

if TYPE_CHECKING:
    from ._on_ray import RayExecutor

__all__ = [
    'SIGNAL_EXIT_CODES',
    'LocalExecutor',
    'RayExecutor',
    'RecoveryError',
    'RecoveryFailed',
    'SignalState',
    'cancel_on_signals',
    'default_runtime',
    'load_action_class',
    'new_run_id',
    'resume_run',
    'rollback_run',
    'run_action',
]


def __getattr__(name: str) -> Any:
    if name == 'RayExecutor':
        from ._on_ray import RayExecutor

        return RayExecutor
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
