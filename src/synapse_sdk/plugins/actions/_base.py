"""The action: validated params, a runtime context, and either steps or a plain execute().

Who calls what: plugin authors implement :meth:`BaseAction.setup_steps`,
:meth:`~BaseAction.create_context` and, for plain mode,
:meth:`~BaseAction.execute`; users call :meth:`~BaseAction.dispatch` (and
:meth:`~BaseAction.describe_steps`); the execution layer (the executors and
recovery) calls :meth:`~BaseAction.prepare_run`. This layer knows
nothing of the run journal: journaled runs go through ``synapse_sdk.execution``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar, cast, get_args, get_origin

from pydantic import BaseModel, ValidationError

from synapse_sdk.plugins.steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    RunListener,
    StepRegistry,
    StepResult,
)
from synapse_sdk.runtime import ResultRecorder, RuntimeContext

from ._errors import ActionDefinitionError, ParamsValidationError

P = TypeVar('P', bound=BaseModel)


@dataclass(frozen=True)
class ActionOrigin:
    """Where an action came from, so that a journaled run can be rebuilt from a plugin folder."""

    plugin_path: str
    action: str
    plugin: str | None = None  # the plugin's code (config.yaml), for the journal's listings


@dataclass(kw_only=True)
class ActionContext(BaseStepContext, Generic[P]):
    """A step context that carries the action's params: ``params`` as a plain dict (the
    spec's ``context.params.get(...)``), ``params_model`` as the validated model, typed
    (``ActionContext[MyParams]``), so that no step validates the params again.

    ``params_model`` is set by the action's run (:meth:`BaseAction.prepare_run`) on any
    ``ActionContext``, whoever made it; a context made by hand with only a model gets
    ``params`` from it. The params are input, journaled with the run and given again
    on recovery: neither is part of the context's snapshot (so dates, enums, secrets fit).
    """

    # 'snapshot': the documented field-metadata key of the journal's snapshots, spelled
    # out so that this layer need not import the journal
    params: dict[str, Any] = field(default_factory=dict, metadata={'snapshot': False})
    # None only on a context made by hand without it: a run always sets it
    params_model: P = field(
        default=cast(Any, None), repr=False, compare=False, metadata={'snapshot': False}
    )

    def __post_init__(self) -> None:
        if not self.params and self.params_model is not None:
            self.params = self.params_model.model_dump()


@dataclass(frozen=True)
class PreparedRun:
    """One run of an action, set up: its steps and their context (``None``: plain mode).

    Made by :meth:`BaseAction.prepare_run` so that the execution layer can act
    between the action's setup code and its run (start the journal's record,
    restore a snapshot, check the steps against a journaled run).
    """

    action: BaseAction[Any]
    registry: StepRegistry[Any]
    context: BaseStepContext | None

    @property
    def plain(self) -> bool:
        """No steps registered: the run is the action's :meth:`BaseAction.execute`."""
        return self.context is None

    @property
    def steps(self) -> list[BaseStep[Any]]:
        return self.registry.get_steps()

    def run(
        self,
        *,
        listeners: Iterable[RunListener] = (),
        completed: Mapping[str, StepResult] | None = None,
    ) -> dict[str, Any]:
        """Run it: the run's result (``RunResult.to_dict()``, each step's data under
        ``steps``), or in plain mode the dict ``execute()`` returned.

        ``listeners`` join the runtime's loggers; ``completed`` are results of steps
        a journaled run finished before (resume), reported as reused.
        """
        if self.context is None:
            return self._execute()
        ctx = self.action.ctx
        recorder = ResultRecorder()
        orchestrator = Orchestrator(
            self.registry,
            self.context,
            progress_callback=ctx.set_progress,
            listeners=[*ctx.listeners, *listeners, recorder],
            completed=completed,
            cancel_token=ctx.cancel_token,
            sleep=ctx.sleep,
            timing=True,  # results carry their durations whoever listens
        )
        orchestrator.execute()
        results = self.context.step_results
        steps = {r.step_name: r.data for r in results if r.step_name and not r.skipped}
        return recorder.result(ctx.run_id, steps=steps).to_dict()

    def _execute(self) -> dict[str, Any]:
        result = self.action.execute()
        if not isinstance(result, dict):
            raise ActionDefinitionError(
                f'{type(self.action).__name__}.execute() returned {type(result).__name__}; '
                "return a dict, the action's result ({} for nothing to report)"
            )
        return result


class BaseAction(Generic[P]):
    """A plugin action.

    The params model comes from the generic argument
    (``class MyAction(BaseUploadAction[MyParams])``) or from ``params_model``.
    An action that registers steps in :meth:`setup_steps` runs them through an
    :class:`Orchestrator`; one that registers none runs :meth:`execute`.
    """

    category: ClassVar[str] = 'generic'
    params_model: ClassVar[type[BaseModel] | None] = None
    context_class: ClassVar[type[ActionContext[Any]] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if 'params_model' not in cls.__dict__:
            model = _params_model_from_bases(cls)
            if model is not None:
                cls.params_model = model

    def __init__(self, params: P | Mapping[str, Any], ctx: RuntimeContext | None = None) -> None:
        self.params: P = self.validate_params(params)
        self.ctx: RuntimeContext = ctx if ctx is not None else RuntimeContext()

    @classmethod
    def validate_params(cls, params: P | Mapping[str, Any]) -> P:
        """The params as the action's model; every offending field is named on error."""
        model = cls.params_model
        if model is None:
            raise ActionDefinitionError(
                f'{cls.__name__} has no params model: declare it as the generic argument '
                f'(class {cls.__name__}(Base...Action[MyParams])) or set params_model'
            )
        if isinstance(params, model):
            return params
        if not isinstance(params, Mapping):
            raise ParamsValidationError(
                cls.__name__, [('(params)', f'expected a mapping, got {type(params).__name__}')]
            )
        try:
            return cast(P, model.model_validate(dict(params)))
        except ValidationError as error:
            raise ParamsValidationError.from_pydantic(cls.__name__, error) from error

    @classmethod
    def entrypoint(cls) -> str:
        """``module:QualName``: how the journal finds this class again."""
        return f'{cls.__module__}:{cls.__qualname__}'

    # --- for plugin authors: override these ---------------------------------------

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        """Register the workflow's steps; register none to run :meth:`execute` instead."""

    def create_context(self) -> BaseStepContext:
        """The context shared by the steps: ``context_class`` with the runtime and the params."""
        if self.context_class is not None:
            return self.context_class(
                runtime_ctx=self.ctx, params=self.params.model_dump(), params_model=self.params
            )
        raise ActionDefinitionError(
            f'{type(self).__name__} registers steps but has no create_context(); '
            'override it or derive from BaseUploadAction, BaseTrainAction or BaseExportAction'
        )

    def execute(self) -> dict[str, Any]:
        """Plain mode: the whole action in one method, for work too small for steps."""
        raise ActionDefinitionError(
            f'{type(self).__name__} has nothing to run: register steps in setup_steps() '
            'or override execute()'
        )

    # --- for users ----------------------------------------------------------------

    @classmethod
    def dispatch(
        cls,
        params: P | Mapping[str, Any],
        ctx: RuntimeContext | None = None,
        *,
        listeners: Iterable[RunListener] = (),
    ) -> dict[str, Any]:
        """Validate ``params``, build the action and run it in this process; its result
        (``RunResult.to_dict()``, as ``synapse plugin run`` prints it; in plain mode, the
        dict ``execute()`` returned, which the command prints under ``output``).

        Without ``ctx``, a default runtime is made for the run and closed after it
        (its live display ends, stdout is the caller's again). Not journaled:
        ``synapse_sdk.execution.run_action`` runs an action with a journal. A failed
        run raises (``StepExecutionError``, after its rollback).
        """
        action = cls(params, ctx)
        if ctx is not None:
            return action.prepare_run().run(listeners=listeners)
        with action.ctx:
            return action.prepare_run().run(listeners=listeners)

    @classmethod
    def describe_steps(
        cls, params: Mapping[str, Any] | None = None
    ) -> list[tuple[str, float, float]]:
        """``(name, weight, share in percent)`` per step, without running anything.

        Without params (or with params that do not validate yet), the steps are
        set up on an unvalidated params model, so they can be shown before the
        params are known. ``synapse_sdk.plugins.actions.preview_steps``
        says more: retry, timeout, rollback, and which steps the params skip.
        """
        _, steps, _ = cls.set_up_for_description(params)
        shares = weight_shares([float(step.progress_weight) for step in steps])
        return [(s.name, w, share) for s, (w, share) in zip(steps, shares, strict=True)]

    @classmethod
    def set_up_for_description(
        cls, params: Mapping[str, Any] | None = None
    ) -> tuple[BaseAction[P], list[BaseStep[Any]], bool]:
        """The action on ``params`` and its steps, set up (``setup_steps()``), not run.

        The flag says whether the params validated: none given and invalid, the
        action holds an unvalidated model (``model_construct()``).
        """
        try:
            model: Any = cls.validate_params(params or {})
        except ParamsValidationError as invalid:
            if params:
                raise
            assert cls.params_model is not None
            unvalidated: Any = cls.params_model.model_construct()
            action = cls(unvalidated, RuntimeContext(logger=[]))
            try:
                return action, action._registry().get_steps(), False
            except AttributeError:
                # the steps depend on params that were not given: say which, keep why
                raise invalid from invalid.__cause__
        action = cls(model, RuntimeContext(logger=[]))
        return action, action._registry().get_steps(), True

    @classmethod
    def plan(cls, params: Mapping[str, Any] | None = None) -> list[tuple[str, float, float]]:
        """Deprecated name of :meth:`describe_steps` ("plan" is the registry's run plan)."""
        warnings.warn(
            f'{cls.__name__}.plan() is now {cls.__name__}.describe_steps()',
            DeprecationWarning,
            stacklevel=2,
        )
        return cls.describe_steps(params)

    # --- for the execution layer (executors, recovery): not for plugin code ---------

    def prepare_run(self) -> PreparedRun:
        """Run the setup code: :meth:`setup_steps`, then :meth:`create_context` if it
        registered steps. The run itself is :meth:`PreparedRun.run`."""
        registry = self._registry()
        context = self.context_for_run() if len(registry) else None
        return PreparedRun(self, registry, context)

    def context_for_run(self) -> BaseStepContext:
        """:meth:`create_context`, with the params model on it (``context.params_model``)."""
        context = self.create_context()
        if isinstance(context, ActionContext) and context.params_model is None:
            context.params_model = self.params  # a create_context() of the plugin's own
        return context

    def _registry(self) -> StepRegistry[Any]:
        registry: StepRegistry[Any] = StepRegistry()
        self.setup_steps(registry)
        return registry


def _params_model_from_bases(cls: type) -> type[BaseModel] | None:
    for base in cls.__dict__.get('__orig_bases__', ()):
        origin = get_origin(base)
        if isinstance(origin, type) and issubclass(origin, BaseAction):
            for arg in get_args(base):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    return arg
    return None


def weight_shares(weights: list[float]) -> list[tuple[float, float]]:
    """``(weight, share in percent)`` per step; all weights zero: equal shares."""
    total = sum(weights)
    return [(w, w / total * 100 if total else 100 / len(weights)) for w in weights]
