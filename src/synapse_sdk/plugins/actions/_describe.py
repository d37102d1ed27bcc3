"""What an action takes and what it would do, without running it.

``synapse plugin info`` shows :func:`describe_params`; ``synapse plugin
steps`` shows :func:`preview_steps`. Nothing here executes a step: only the
action's setup code (``setup_steps()``, ``create_context()``) and, to say
which steps the params skip, each step's ``can_skip()``, all user code, whose
errors are reported rather than raised.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import types
from collections.abc import Awaitable, Mapping
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from synapse_sdk.plugins.steps import BaseStep, BaseStepContext, RetryPolicy, StepWrapper
from synapse_sdk.plugins.steps.support import describe_exception

from ._base import BaseAction, weight_shares
from ._errors import ActionDefinitionError


@dataclass(frozen=True)
class ParamInfo:
    """One field of an action's params model, as a user writes it in ``--params``."""

    name: str  # the key in the params JSON (the field's alias, if it has one)
    type: str
    required: bool
    default: Any  # as JSON; None when required or made by a factory
    default_factory: str | None  # the name of what makes the default ('list'), if anything
    description: str | None

    def default_text(self) -> str:
        """The default as ``--params`` would spell it: JSON, ``list()``, or ``required``."""
        if self.required:
            return 'required'
        if self.default_factory is not None:
            return f'{self.default_factory}()'
        return json.dumps(self.default, default=str)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StepPreview:
    """One step as a run would meet it: its policies, whether it can be undone, and
    whether the given params skip it (``skip`` None: not known, ``skip_note`` says why)."""

    index: int
    name: str
    weight: float
    share: float  # percent of the run's progress
    retry: RetryPolicy | None
    timeout: float | None
    can_rollback: bool  # the step defines rollback()
    resumable: bool
    skip: bool | None
    skip_note: str  # 'runs', 'skipped', 'unknown (raises ...)' or 'not evaluated: ...'

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data['retry'] = retry_as_dict(self.retry)
        return data


def describe_params(action: type[BaseAction[Any]]) -> list[ParamInfo]:
    """Every field of the action's params model, in declaration order."""
    model = action.params_model
    if model is None:
        raise ActionDefinitionError(
            f'{action.__name__} has no params model: declare it as the generic argument '
            f'(class {action.__name__}(Base...Action[MyParams])) or set params_model'
        )
    return [_param(name, info) for name, info in model.model_fields.items()]


def params_json_schema(action: type[BaseAction[Any]]) -> dict[str, Any] | None:
    """The params model's JSON schema; None for a model pydantic cannot express so."""
    model = action.params_model
    try:
        return None if model is None else model.model_json_schema()
    except Exception:  # a field of an arbitrary type: the field list still describes it
        return None


def _param(name: str, info: FieldInfo) -> ParamInfo:
    key = info.alias if isinstance(info.alias, str) else name
    required = info.is_required()
    default: Any = None
    factory = None
    if info.default_factory is not None:
        factory = str(getattr(info.default_factory, '__name__', 'a factory'))
    elif not required and info.default is not PydanticUndefined:
        try:
            default = to_jsonable_python(info.default)
        except Exception:  # a value with no JSON form: as Python shows it
            default = repr(info.default)
    kind = type_name(info.annotation)
    return ParamInfo(key, kind, required, default, factory, info.description)


def type_name(annotation: Any) -> str:
    """A type as it is written in Python: ``list[str]``, ``str | None``, ``Literal['a']``."""
    if annotation is None or annotation is type(None):
        return 'None'
    if annotation is Ellipsis:
        return '...'
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return type_name(args[0])
    if origin is Literal:
        return f'Literal[{", ".join(repr(a) for a in args)}]'
    if origin is Union or origin is types.UnionType:
        return ' | '.join(type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, '__name__', None) or str(origin).removeprefix('typing.')
        return f'{name}[{", ".join(type_name(a) for a in args)}]' if args else name
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).removeprefix('typing.')


def preview_steps(
    action: type[BaseAction[Any]], params: Mapping[str, Any] | None = None
) -> list[StepPreview]:
    """The steps of ``action`` on ``params``, set up but not run.

    Which steps are skipped is each step's ``can_skip()`` on the context the run
    would start with: a condition that reads what earlier steps produce may
    decide otherwise during the run. Params that do not validate (none given)
    leave it unevaluated; a ``can_skip()`` that raises is 'unknown (raises ...)'.
    Raises what setting up the steps raises (bad params, a broken ``setup_steps()``).
    """
    instance, steps, validated = action.set_up_for_description(params)
    verdicts: list[tuple[bool | None, str]]
    if not validated:
        note = 'not evaluated: the params do not validate (give --params)'
        verdicts = [(None, note)] * len(steps)
    else:
        try:
            context = instance.context_for_run()
        except Exception as error:
            note = f'unknown (create_context() raises {describe_exception(error)})'
            verdicts = [(None, note)] * len(steps)
        else:
            verdicts = [_would_skip(step, context) for step in steps]
    shares = weight_shares([float(step.progress_weight) for step in steps])
    return [
        StepPreview(
            index=index,
            name=step.name,
            weight=weight,
            share=share,
            retry=step.retry,
            timeout=step.timeout,
            can_rollback=can_roll_back(step),
            resumable=step.resumable,
            skip=skip,
            skip_note=note,
        )
        for index, (step, (weight, share), (skip, note)) in enumerate(
            zip(steps, shares, verdicts, strict=True)
        )
    ]


def _would_skip(step: BaseStep[Any], context: BaseStepContext) -> tuple[bool | None, str]:
    """``can_skip()``'s answer (awaited if async), or what it raised."""
    context.current_step = step.name
    try:
        answer: Any = step.can_skip(context)
        if inspect.isawaitable(answer):
            answer = asyncio.run(_awaited(answer))
    except Exception as error:
        return None, f'unknown (raises {describe_exception(error)})'
    finally:
        context.current_step = None
    return (True, 'skipped') if answer else (False, 'runs')


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


def can_roll_back(step: BaseStep[Any]) -> bool:
    """Whether the step (through any wrappers) defines a ``rollback()`` of its own."""
    inner = step.unwrap() if isinstance(step, StepWrapper) else step
    return type(inner).rollback is not BaseStep.rollback


def retry_as_dict(policy: RetryPolicy | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {
        'max_attempts': policy.max_attempts,
        'initial_delay': policy.initial_delay,
        'backoff': policy.backoff,
        'max_delay': policy.max_delay,
        'jitter': policy.jitter,
        'retry_on': [t.__name__ for t in policy.retry_on],
        'predicate': policy.predicate is not None,
    }


def retry_text(policy: RetryPolicy | None) -> str:
    """``3 attempts, 1s x2 on ConnectionError``; ``-`` for none."""
    if policy is None or policy.max_attempts == 1:
        return '-'
    text = f'{policy.max_attempts} attempts, {policy.initial_delay:g}s x{policy.backoff:g}'
    if policy.retry_on != (Exception,):
        text += ' on ' + ', '.join(t.__name__ for t in policy.retry_on)
    return text + (' if predicate' if policy.predicate is not None else '')
