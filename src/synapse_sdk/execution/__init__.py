"""Running actions: in this process (and, later, on Ray)."""

from .local import LocalExecutor, default_runtime, new_run_id

__all__ = ['LocalExecutor', 'default_runtime', 'new_run_id']
