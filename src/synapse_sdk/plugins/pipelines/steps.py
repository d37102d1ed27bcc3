"""The step framework core under the spec's import path (the same objects, not copies)."""

from synapse_sdk.plugins.steps import *  # noqa: F403
from synapse_sdk.plugins.steps import __all__ as __all__
