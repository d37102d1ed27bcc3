"""Running actions: in this process or on Ray; recovering journaled runs.

``RayExecutor`` is loaded on first use, so that Ray stays an optional extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .local import LocalExecutor, default_runtime, new_run_id, run_action
from .recovery import RecoveryError, RecoveryFailed, load_action_class, resume_run, rollback_run

if TYPE_CHECKING:
    from .on_ray import RayExecutor

__all__ = [
    'LocalExecutor',
    'RayExecutor',
    'RecoveryError',
    'RecoveryFailed',
    'default_runtime',
    'load_action_class',
    'new_run_id',
    'resume_run',
    'rollback_run',
    'run_action',
]


def __getattr__(name: str) -> Any:
    if name == 'RayExecutor':
        from .on_ray import RayExecutor

        return RayExecutor
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
