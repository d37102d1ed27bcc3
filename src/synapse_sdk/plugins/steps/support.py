"""What the SDK's other layers use from the steps core, exported on purpose.

Not part of the step API plugin authors write against (that is the package's
``__all__``); the runtime, journal and execution layers import these from
here, never from the core's private modules.
"""

from ._context import STATE, check_progress, context_state, run_id_of, state_fields
from ._events import RELAYED
from ._fanout import backend_named, windowed
from ._result import describe_exception

__all__ = [
    'RELAYED',
    'STATE',
    'backend_named',
    'check_progress',
    'context_state',
    'describe_exception',
    'run_id_of',
    'state_fields',
    'windowed',
]
