"""Running actions: in this process, and recovering journaled runs."""

from .local import LocalExecutor, default_runtime, new_run_id
from .recovery import RecoveryError, RecoveryFailed, load_action_class, resume_run, rollback_run

__all__ = [
    'LocalExecutor',
    'RecoveryError',
    'RecoveryFailed',
    'default_runtime',
    'load_action_class',
    'new_run_id',
    'resume_run',
    'rollback_run',
]
