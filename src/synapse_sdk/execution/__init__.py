"""Running actions: in this process or on Ray; recovering journaled runs.

``RayExecutor`` is loaded on first use, so that Ray stays an optional extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synapse_sdk.journal import RunAlreadyEndedError  # what cancel_run raises

from ._cancel import cancel_run, end_kind, stopped_by_sigterm, wait_for_end
from ._errors import RayUnavailableError, SharedStateRequiredError
from ._journal_log import JournalLogLines
from ._local import LOG_FORMATS, LocalExecutor, default_runtime, display, new_run_id, run_action
from ._placement import (
    Resources,
    action_resources,
    check_reachable,
    parse_memory,
    plugin_requirements,
    secrets_from_environment,
)
from ._recovery import RecoveryError, RecoveryFailed, load_action_class, resume_run, rollback_run
from ._signals import SIGNAL_EXIT_CODES, SignalState, cancel_on_signals
from ._submitted import SubmittedRunCheck

if TYPE_CHECKING:
    from ._detach import (
        DetachedJob,
        job_server_address,
        submit_detached,
    )
    from ._on_ray import RayExecutor, RayMapBackend, check_ray_address

__all__ = [
    'LOG_FORMATS',
    'SIGNAL_EXIT_CODES',
    'DetachedJob',
    'JournalLogLines',
    'LocalExecutor',
    'RayExecutor',
    'RayMapBackend',
    'RayUnavailableError',
    'RecoveryError',
    'RecoveryFailed',
    'Resources',
    'RunAlreadyEndedError',
    'SharedStateRequiredError',
    'SignalState',
    'SubmittedRunCheck',
    'action_resources',
    'cancel_on_signals',
    'cancel_run',
    'check_ray_address',
    'check_reachable',
    'default_runtime',
    'display',
    'end_kind',
    'job_server_address',
    'load_action_class',
    'new_run_id',
    'parse_memory',
    'plugin_requirements',
    'resume_run',
    'rollback_run',
    'run_action',
    'secrets_from_environment',
    'stopped_by_sigterm',
    'submit_detached',
    'wait_for_end',
]


_ON_RAY = {'RayExecutor', 'RayMapBackend', 'check_ray_address'}
_DETACH = {'DetachedJob', 'job_server_address', 'submit_detached'}


def __getattr__(name: str) -> Any:
    if name in _ON_RAY:  # Ray is an optional extra: loaded on first use
        from . import _on_ray

        return getattr(_on_ray, name)
    if name in _DETACH:
        from . import _detach

        return getattr(_detach, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
