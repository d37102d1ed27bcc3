"""The action: validated params, a runtime context, and either steps or a plain execute()."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar, cast, get_args, get_origin

from pydantic import BaseModel, ValidationError

from synapse_sdk.journal import Journal, JournalListener
from synapse_sdk.journal.codec import SNAPSHOT
from synapse_sdk.plugins.steps import (
    BaseStepContext,
    Orchestrator,
    RunListener,
    StepRegistry,
    StepResult,
)
from synapse_sdk.plugins.steps.result import describe_exception
from synapse_sdk.runtime import RuntimeContext

from .errors import ActionDefinitionError, ParamsValidationError

P = TypeVar('P', bound=BaseModel)


@dataclass(frozen=True)
class ActionOrigin:
    """Where an action came from, so that a journaled run can be rebuilt from a plugin folder."""

    plugin_path: str
    action: str


@dataclass(kw_only=True)
class ActionContext(BaseStepContext):
    """A step context that carries the action's params (as a plain dict).

    The params are input, journaled with the run and given again on recovery:
    they are not part of the context's snapshot (so dates, enums, secrets fit).
    """

    params: dict[str, Any] = field(default_factory=dict, metadata={SNAPSHOT: False})


class BaseAction(Generic[P]):
    """A plugin action.

    The params model comes from the generic argument
    (``class MyAction(BaseUploadAction[MyParams])``) or from ``params_model``.
    An action that registers steps in :meth:`setup_steps` runs them through an
    :class:`Orchestrator`; one that registers none runs :meth:`execute`.
    """

    category: ClassVar[str] = 'generic'
    params_model: ClassVar[type[BaseModel] | None] = None
    context_class: ClassVar[type[ActionContext] | None] = None

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
    def dispatch(
        cls,
        params: P | Mapping[str, Any],
        ctx: RuntimeContext | None = None,
        *,
        listeners: Iterable[RunListener] = (),
        journal: Journal | None = None,
        origin: ActionOrigin | None = None,
    ) -> dict[str, Any]:
        """Validate ``params``, build the action and run it (journaled when given a journal).

        Without ``ctx``, a default runtime is made for the run and closed after it
        (its live display ends, stdout is the caller's again).
        """
        action = cls(params, ctx)
        if ctx is not None:
            return action.run(listeners=listeners, journal=journal, origin=origin)
        with action.ctx:
            return action.run(listeners=listeners, journal=journal, origin=origin)

    @classmethod
    def entrypoint(cls) -> str:
        """``module:QualName``: how the journal finds this class again."""
        return f'{cls.__module__}:{cls.__qualname__}'

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        """Register the workflow's steps; register none to run :meth:`execute` instead."""

    def create_context(self) -> BaseStepContext:
        """The context shared by the steps: ``context_class`` with the runtime and the params."""
        if self.context_class is not None:
            return self.context_class(runtime_ctx=self.ctx, params=self.params.model_dump())
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

    def build_steps(self) -> StepRegistry[Any]:
        """The registry as :meth:`setup_steps` fills it (also used to show the plan)."""
        registry: StepRegistry[Any] = StepRegistry()
        self.setup_steps(registry)
        return registry

    @classmethod
    def plan(cls, params: Mapping[str, Any] | None = None) -> list[tuple[str, float, float]]:
        """``(name, weight, share in percent)`` per step, without running anything.

        Without params (or with params that do not validate yet), the plan is
        built from an unvalidated params model, so it can be shown before
        the params are known.
        """
        try:
            model: Any = cls.validate_params(params or {})
        except ParamsValidationError as invalid:
            if params:
                raise
            assert cls.params_model is not None
            model = cls.params_model.model_construct()
            try:
                steps = cls(model, RuntimeContext(logger=[])).build_steps().get_steps()
            except AttributeError:
                # the plan depends on params that were not given: say which, keep why
                raise invalid from invalid.__cause__
        else:
            steps = cls(model, RuntimeContext(logger=[])).build_steps().get_steps()
        weights = [float(step.progress_weight) for step in steps]
        total = sum(weights)
        shares = [w / total * 100 if total else 100 / len(steps) for w in weights]
        return [(s.name, w, share) for s, w, share in zip(steps, weights, shares, strict=True)]

    def run(
        self,
        *,
        listeners: Iterable[RunListener] = (),
        journal: Journal | None = None,
        origin: ActionOrigin | None = None,
    ) -> dict[str, Any]:
        """Run the action; the result holds the orchestrator's keys and each step's data.

        With a ``journal``, the run is recorded under ``ctx.job_id`` (write-ahead,
        so a crash leaves what is needed for ``synapse runs rollback/resume``).
        """
        extra = list(listeners)
        if journal is not None:
            journal.start_run(
                self.ctx.job_id,
                entrypoint=self.entrypoint(),
                params=self.params.model_dump(mode='json'),
                action=origin.action if origin else None,
                plugin_path=origin.plugin_path if origin else None,
            )
            extra.append(JournalListener(journal, self.ctx.job_id))
        try:
            registry = self.build_steps()
            context = self.create_context() if len(registry) else None
        except BaseException as error:  # before any step: the run ends here, and says why
            self._record_end(journal, error)
            raise
        if context is not None:
            return self.run_steps(registry, context, listeners=extra)
        try:
            result = self.execute()
            if not isinstance(result, dict):
                raise ActionDefinitionError(
                    f'{type(self).__name__}.execute() returned {type(result).__name__}; '
                    "return a dict, the action's result ({} for nothing to report)"
                )
        except BaseException as error:
            self._record_end(journal, error)
            raise
        if journal is not None:
            journal.set_run_status(self.ctx.job_id, 'succeeded')
        return result

    def _record_end(self, journal: Journal | None, error: BaseException) -> None:
        if journal is not None:
            status = 'failed' if isinstance(error, Exception) else 'cancelled'
            journal.set_run_status(self.ctx.job_id, status, describe_exception(error))

    def run_steps(
        self,
        registry: StepRegistry[Any],
        context: BaseStepContext,
        *,
        listeners: Iterable[RunListener] = (),
        completed: Mapping[str, StepResult] | None = None,
    ) -> dict[str, Any]:
        """Run ``registry`` on ``context``, reporting overall progress to the runtime."""
        orchestrator = Orchestrator(
            registry,
            context,
            progress_callback=self._report_progress,
            listeners=[*self.ctx.listeners, *listeners],
            completed=completed,
            cancel_token=self.ctx.cancel_token,
            sleep=self.ctx.sleep,
            timing=True,  # results carry their durations whoever listens
        )
        summary = orchestrator.execute()
        steps = {r.step_name: r.data for r in context.step_results if r.step_name and not r.skipped}
        return {**summary, 'steps': steps}

    def _report_progress(self, current: int, total: int) -> None:
        self.ctx.set_progress(current, total)


def _params_model_from_bases(cls: type) -> type[BaseModel] | None:
    for base in cls.__dict__.get('__orig_bases__', ()):
        origin = get_origin(base)
        if isinstance(origin, type) and issubclass(origin, BaseAction):
            for arg in get_args(base):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    return arg
    return None
