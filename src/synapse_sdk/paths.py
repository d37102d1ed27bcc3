"""Where the SDK keeps its local state.

One function decides the location so that every component (storage, journals,
caches) moves together when a user or a test points ``SYNAPSE_HOME`` elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ['synapse_home']


def synapse_home() -> Path:
    """Return the SDK's state directory without creating it.

    Read on every call (not cached) so a changed ``SYNAPSE_HOME`` takes effect
    immediately; an empty value counts as unset rather than meaning the cwd.
    """
    configured = os.environ.get('SYNAPSE_HOME')
    if configured:
        return Path(configured).expanduser()
    return Path('~/.synapse').expanduser()
