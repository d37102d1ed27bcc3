"""Synapse SDK: plugin actions as ordered, weighted, rollback-able steps.

``SynapseError``, the root of every exception the SDK raises (the tree:
``synapse_sdk.errors``), is loaded on first use: ``import synapse_sdk`` alone
stays as cheap as reading ``__version__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synapse_sdk.plugins.steps._errors import SynapseError

__version__ = '0.1.0'

__all__ = ['SynapseError', '__version__']


def __getattr__(name: str) -> Any:
    if name == 'SynapseError':
        from synapse_sdk.plugins.steps._errors import SynapseError

        globals()[name] = SynapseError
        return SynapseError
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
