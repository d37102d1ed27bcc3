"""Plugin authoring API: ``from synapse_sdk.plugins import BaseUploadAction, RuntimeContext``.

The names are loaded on first use, so importing the standard-library-only
steps core (``synapse_sdk.plugins.pipelines.steps``) does not pull in
pydantic or rich.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synapse_sdk.plugins.actions import (
        BaseAction,
        BaseExportAction,
        BaseTrainAction,
        BaseUploadAction,
    )
    from synapse_sdk.runtime import RuntimeContext

_LAZY = {
    'BaseAction': 'synapse_sdk.plugins.actions',
    'BaseUploadAction': 'synapse_sdk.plugins.actions',
    'BaseTrainAction': 'synapse_sdk.plugins.actions',
    'BaseExportAction': 'synapse_sdk.plugins.actions',
    'RuntimeContext': 'synapse_sdk.runtime',
}

__all__ = [
    'BaseAction',
    'BaseExportAction',
    'BaseTrainAction',
    'BaseUploadAction',
    'RuntimeContext',
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
