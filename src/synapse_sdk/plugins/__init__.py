"""Plugin authoring API: ``from synapse_sdk.plugins import BaseUploadAction, RuntimeContext``.

The names are loaded on first use, so importing the standard-library-only
steps core (``synapse_sdk.plugins.pipelines.steps``) does not pull in
pydantic or rich. The same way, the ``'ray'`` backend of ``context.map`` is
registered here by module path and imported on its first use: every import of
the steps core passes through this package, so the name alone selects it,
whatever the plugin imported (the core itself names no upper layer).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from synapse_sdk.plugins.steps import register_backend

register_backend('ray', 'synapse_sdk.execution:RayMapBackend')

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
