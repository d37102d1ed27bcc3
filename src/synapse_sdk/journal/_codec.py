"""JSON with a few tagged types, for what the journal must read back exactly."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any

from synapse_sdk.plugins.steps import BaseStepContext
from synapse_sdk.plugins.steps.support import STATE, context_state, state_fields

from ._errors import SnapshotError

_TAG = '__synapse__'
SNAPSHOT = STATE
"""Field metadata key: ``field(..., metadata={'snapshot': False})`` keeps a field out."""


_ENCODER = json.JSONEncoder(separators=(',', ':'), allow_nan=False)


def to_json(value: Any, where: str) -> str:
    if not value and type(value) is dict:  # the common case: nothing to say
        return '{}'
    return _ENCODER.encode(_encode(value, where))


def from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text, object_hook=_decode)


def _encode(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return {_TAG: 'float', 'value': repr(value)}
        return value
    if isinstance(value, list):
        return [_encode(v, f'{where}[{i}]') for i, v in enumerate(value)]
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise SnapshotError(f'{where} has a key {bad[0]!r} that is not a string')
        return {k: _encode(v, f'{where}[{k!r}]') for k, v in value.items()}
    if isinstance(value, tuple):
        return {_TAG: 'tuple', 'value': [_encode(v, where) for v in value]}
    if isinstance(value, set | frozenset):
        return {_TAG: 'set', 'value': sorted((_encode(v, where) for v in value), key=repr)}
    if isinstance(value, PurePath):
        return {_TAG: 'path', 'value': str(value)}
    if isinstance(value, datetime):
        return {_TAG: 'datetime', 'value': value.isoformat()}
    raise SnapshotError(
        f'{where} holds a {type(value).__module__}.{type(value).__qualname__}, which the run '
        'journal cannot save (it keeps None, bool, int, float, str, list, dict, tuple, set, '
        "Path, datetime); keep such a value out with field(..., metadata={'snapshot': False})"
    )


def _decode(obj: dict[str, Any]) -> Any:
    kind = obj.get(_TAG)
    if kind is None:
        return obj
    value = obj['value']
    if kind == 'tuple':
        return tuple(value)
    if kind == 'set':
        return set(value)
    if kind == 'path':
        return Path(value)
    if kind == 'datetime':
        return datetime.fromisoformat(value)
    if kind == 'float':
        return float(value)
    return obj


def snapshot_fields(context: BaseStepContext) -> tuple[str, ...]:
    """The context's own fields a snapshot keeps (not the runtime, not the bookkeeping)."""
    return state_fields(context)


def snapshot(context: BaseStepContext) -> str:
    return snapshot_of(context_state(context), type(context).__name__)


def snapshot_of(state: Mapping[str, Any], context_type: str) -> str:
    """The snapshot of a context's state (as ``StepEnded`` carries it); errors name the type."""
    return to_json(dict(state), context_type)


def restore(context: BaseStepContext, text: str | None) -> None:
    """Put a snapshot's values back on a freshly created context."""
    values = from_json(text) or {}
    known = set(snapshot_fields(context))
    for name, value in values.items():
        if name in known:
            setattr(context, name, value)
