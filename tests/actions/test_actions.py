"""The action layer: params models, dispatch, step mode, plain mode, contexts, describe_steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel, Field

from synapse_sdk.plugins import (
    BaseAction,
    BaseExportAction,
    BaseTrainAction,
    BaseUploadAction,
    RuntimeContext,
)
from synapse_sdk.plugins.actions import (
    ActionContext,
    ActionDefinitionError,
    ActionError,
    ParamsValidationError,
)
from synapse_sdk.plugins.actions.export import ExportContext
from synapse_sdk.plugins.actions.train import TrainContext
from synapse_sdk.plugins.actions.upload import UploadContext
from synapse_sdk.plugins.pipelines.steps import (
    BaseStep,
    BaseStepContext,
    RunEvent,
    RunListener,
    StepRegistry,
    StepResult,
    StepStarted,
)
from synapse_sdk.runtime import MemoryLogger


class Params(BaseModel):
    count: int = Field(ge=0)
    name: str


class Options(BaseModel):
    level: int = Field(default=1, le=5)


class NestedParams(BaseModel):
    options: Options = Field(default_factory=Options)
    tag: str = 'x'


class OtherParams(BaseModel):
    flag: bool = False


class Step(BaseStep[Any]):
    """A step whose behaviour is a callable; every call is written to ``journal``."""

    def __init__(
        self,
        name: str,
        weight: float,
        journal: list[str],
        run: Callable[[Any], StepResult] | None = None,
    ) -> None:
        self._name = name
        self._weight = weight
        self.journal = journal
        self.run = run

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return self._weight

    def execute(self, context: Any) -> StepResult:
        self.journal.append(f'execute:{self._name}')
        if self.run is not None:
            return self.run(context)
        return StepResult(data={'step': self._name})

    def rollback(self, context: Any, result: StepResult) -> None:
        self.journal.append(f'rollback:{self._name}')


def memory_ctx() -> tuple[RuntimeContext, MemoryLogger]:
    logger = MemoryLogger()
    return RuntimeContext(logger=logger, client=object(), run_id='run-1'), logger


# -- imports --------------------------------------------------------------------------


def test_public_names_are_the_action_layer_classes() -> None:
    from synapse_sdk import plugins
    from synapse_sdk.plugins import actions
    from synapse_sdk.runtime import RuntimeContext as RuntimeFromRuntime

    assert plugins.BaseAction is actions.BaseAction
    assert plugins.BaseUploadAction is actions.BaseUploadAction
    assert plugins.BaseTrainAction is actions.BaseTrainAction
    assert plugins.BaseExportAction is actions.BaseExportAction
    assert plugins.RuntimeContext is RuntimeFromRuntime
    assert sorted(plugins.__all__) == [
        'BaseAction',
        'BaseExportAction',
        'BaseTrainAction',
        'BaseUploadAction',
        'RuntimeContext',
    ]


def test_unknown_name_on_plugins_package_is_an_attribute_error() -> None:
    from synapse_sdk import plugins

    with pytest.raises(AttributeError, match='NoSuchThing'):
        plugins.NoSuchThing  # noqa: B018


@pytest.mark.parametrize(
    ('base', 'context_cls', 'category'),
    [
        (BaseUploadAction, UploadContext, 'upload'),
        (BaseTrainAction, TrainContext, 'train'),
        (BaseExportAction, ExportContext, 'export'),
    ],
)
def test_category_bases_name_their_context(
    base: type[BaseAction[Any]], context_cls: type, category: str
) -> None:
    assert base.category == category
    assert base.context_class is context_cls
    assert issubclass(base, BaseAction)
    assert issubclass(context_cls, ActionContext)
    assert issubclass(context_cls, BaseStepContext)


def test_error_classes() -> None:
    assert issubclass(ParamsValidationError, ActionError)
    assert issubclass(ParamsValidationError, ValueError)
    assert issubclass(ActionDefinitionError, ActionError)
    assert issubclass(ActionDefinitionError, TypeError)


# -- params model -----------------------------------------------------------------------


def test_params_model_from_generic_argument() -> None:
    class Act(BaseUploadAction[Params]):
        pass

    assert Act.params_model is Params
    action = Act({'count': 3, 'name': 'a'}, RuntimeContext(logger=[]))
    assert isinstance(action.params, Params)
    assert action.params.count == 3
    assert action.params.name == 'a'


def test_params_model_from_class_attribute() -> None:
    class Act(BaseTrainAction):  # type: ignore[type-arg]
        params_model = Params

        def execute(self) -> dict[str, Any]:
            return {'count': self.params.count}

    assert Act.params_model is Params
    assert Act.dispatch({'count': 7, 'name': 'n'}, RuntimeContext(logger=[])) == {'count': 7}


def test_params_model_on_generic_base_action() -> None:
    class Act(BaseAction[Params]):
        def execute(self) -> dict[str, Any]:
            return {'name': self.params.name}

    assert Act.params_model is Params
    assert Act.category == 'generic'
    assert Act.dispatch({'count': 0, 'name': 'z'}, RuntimeContext(logger=[])) == {'name': 'z'}


def test_subclass_of_subclass_inherits_params_model() -> None:
    class Parent(BaseUploadAction[Params]):
        pass

    class Child(Parent):
        pass

    class GrandChild(Child):
        pass

    assert Child.params_model is Params
    assert GrandChild.params_model is Params
    assert GrandChild({'count': 1, 'name': 'g'}, RuntimeContext(logger=[])).params.name == 'g'


def test_explicit_params_model_overrides_the_generic_argument() -> None:
    class Parent(BaseUploadAction[Params]):
        pass

    class Child(Parent):
        params_model = OtherParams

    assert Parent.params_model is Params
    assert Child.params_model is OtherParams


def test_grandchild_inherits_the_nearest_params_model() -> None:
    """A class below one that set ``params_model`` must inherit that model.

    The model must not be re-read from the generic argument of a more distant
    ancestor (``__orig_bases__`` is found by attribute lookup up the MRO).
    """

    class Parent(BaseUploadAction[Params]):
        pass

    class Child(Parent):
        params_model = OtherParams

    class GrandChild(Child):
        pass

    assert GrandChild.params_model is OtherParams


def test_intermediate_generic_class_passes_the_argument_through() -> None:
    from typing import TypeVar

    T = TypeVar('T', bound=BaseModel)

    class Middle(BaseExportAction[T]):
        pass

    class Leaf(Middle[Params]):
        pass

    assert Middle.params_model is None
    assert Leaf.params_model is Params


def test_no_params_model_is_a_definition_error() -> None:
    class Act(BaseUploadAction):  # type: ignore[type-arg]
        pass

    assert Act.params_model is None
    with pytest.raises(ActionDefinitionError, match='Act has no params model'):
        Act.dispatch({}, RuntimeContext(logger=[]))
    with pytest.raises(ActionDefinitionError, match='Act has no params model'):
        Act.validate_params({'a': 1})
    with pytest.raises(ActionDefinitionError):
        Act.describe_steps()


# -- validation -------------------------------------------------------------------------


class ParamsAction(BaseUploadAction[Params]):
    def execute(self) -> dict[str, Any]:
        return {'got': self.params.model_dump()}


def test_dispatch_validates_params() -> None:
    result = ParamsAction.dispatch({'count': '4', 'name': 'n'}, RuntimeContext(logger=[]))
    assert result == {'got': {'count': 4, 'name': 'n'}}


def test_model_instance_is_used_as_is() -> None:
    params = Params(count=2, name='m')
    action = ParamsAction(params, RuntimeContext(logger=[]))
    assert action.params is params
    assert ParamsAction.validate_params(params) is params


def test_one_bad_field_is_named_with_the_reason() -> None:
    with pytest.raises(ParamsValidationError) as info:
        ParamsAction.dispatch({'count': -1, 'name': 'n'}, RuntimeContext(logger=[]))
    error = info.value
    assert error.action == 'ParamsAction'
    assert error.problems == [('count', 'Input should be greater than or equal to 0 (got -1)')]
    assert str(error) == (
        'invalid params for ParamsAction: count: Input should be greater than or equal to 0 '
        '(got -1)'
    )


def test_two_bad_fields_are_both_named() -> None:
    with pytest.raises(ParamsValidationError) as info:
        ParamsAction.dispatch({'count': -1, 'name': 5}, RuntimeContext(logger=[]))
    assert info.value.problems == [
        ('count', 'Input should be greater than or equal to 0 (got -1)'),
        ('name', 'Input should be a valid string (got 5)'),
    ]
    message = str(info.value)
    assert message == (
        'invalid params for ParamsAction: '
        'count: Input should be greater than or equal to 0 (got -1); '
        'name: Input should be a valid string (got 5)'
    )


def test_missing_fields_are_named_without_an_input() -> None:
    with pytest.raises(ParamsValidationError) as info:
        ParamsAction.validate_params({})
    assert info.value.problems == [('count', 'Field required'), ('name', 'Field required')]


def test_nested_field_is_named_by_its_dotted_path() -> None:
    class Act(BaseExportAction[NestedParams]):
        pass

    with pytest.raises(ParamsValidationError) as info:
        Act.validate_params({'options': {'level': 9}})
    assert info.value.problems == [
        ('options.level', 'Input should be less than or equal to 5 (got 9)')
    ]


@pytest.mark.parametrize(
    ('params', 'type_name'),
    [([1, 2], 'list'), ('count=1', 'str'), (None, 'NoneType'), (3, 'int')],
)
def test_non_mapping_params_are_rejected(params: Any, type_name: str) -> None:
    with pytest.raises(ParamsValidationError) as info:
        ParamsAction.dispatch(params, RuntimeContext(logger=[]))
    assert info.value.problems == [('(params)', f'expected a mapping, got {type_name}')]
    assert str(info.value) == (
        f'invalid params for ParamsAction: (params): expected a mapping, got {type_name}'
    )


def test_params_of_another_model_are_validated_as_a_mapping_would_not_be() -> None:
    with pytest.raises(ParamsValidationError) as info:
        ParamsAction.validate_params(OtherParams())  # type: ignore[arg-type]
    assert info.value.problems == [('(params)', 'expected a mapping, got OtherParams')]


# -- step mode --------------------------------------------------------------------------


def three_step_action(journal: list[str], seen: list[Any] | None = None) -> type:
    def halfway(context: Any) -> StepResult:
        if seen is not None:
            seen.append(context)
        context.set_progress(1, 2)
        return StepResult(data={'half': True})

    class Act(BaseUploadAction[Params]):
        def setup_steps(self, registry: StepRegistry[UploadContext]) -> None:
            registry.register(Step('first', 0.2, journal))
            registry.register(Step('second', 0.6, journal, halfway))
            registry.register(Step('third', 0.2, journal))

    return Act


def test_step_mode_runs_every_step_and_collects_their_data() -> None:
    journal: list[str] = []
    ctx, logger = memory_ctx()
    result = three_step_action(journal).dispatch({'count': 1, 'name': 'a'}, ctx)
    assert journal == ['execute:first', 'execute:second', 'execute:third']
    assert result['success'] is True
    assert result['steps_executed'] == 3
    assert result['steps_total'] == 3
    assert result['steps'] == {
        'first': {'step': 'first'},
        'second': {'half': True},
        'third': {'step': 'third'},
    }
    assert logger.lifecycle == [
        ('run_start', None),
        ('step_start', 'first'),
        ('step_end', 'first'),
        ('step_start', 'second'),
        ('step_end', 'second'),
        ('step_start', 'third'),
        ('step_end', 'third'),
        ('run_end', 'succeeded'),
    ]


def test_step_results_carry_durations_without_any_logger() -> None:
    seen: list[Any] = []
    three_step_action([], seen).dispatch({'count': 1, 'name': 'a'}, RuntimeContext(logger=[]))
    [context] = seen
    assert [r.step_name for r in context.step_results] == ['first', 'second', 'third']
    for result in context.step_results:
        assert isinstance(result.duration_seconds, float) and result.duration_seconds >= 0


def test_overall_progress_reaches_the_runtime_and_ends_at_100() -> None:
    ctx, logger = memory_ctx()
    three_step_action([]).dispatch({'count': 1, 'name': 'a'}, ctx)
    overall = logger.progress_of('overall')
    assert overall[-1] == 100.0
    assert overall == sorted(set(overall))  # only ever increasing, each value once
    # after 'first', halfway through 'second', after 'second', after 'third'
    assert overall == [20.0, 50.0, 80.0, 100.0]
    assert all(total == 100 for _, total, cat in logger.progress_updates if cat == 'overall')
    # the step's own progress is shown under the step's name
    assert logger.progress_of('second') == [50.0]


def test_step_mode_result_leaves_out_skipped_steps() -> None:
    journal: list[str] = []

    class Skipped(Step):
        def can_skip(self, context: Any) -> bool:
            return True

    class Act(BaseUploadAction[Params]):
        def setup_steps(self, registry: StepRegistry[UploadContext]) -> None:
            registry.register(Step('a', 1, journal))
            registry.register(Skipped('b', 1, journal))

    result = Act.dispatch({'count': 1, 'name': 'a'}, memory_ctx()[0])
    assert journal == ['execute:a']
    assert result['steps'] == {'a': {'step': 'a'}}
    assert result['steps_executed'] == 1
    assert result['steps_skipped'] == 1
    assert result['steps_total'] == 2


def test_dispatch_passes_extra_listeners() -> None:
    seen: list[str] = []

    class Listener(RunListener):
        def on_event(self, event: RunEvent) -> None:
            if isinstance(event, StepStarted):
                seen.append(event.step.name)

    ctx, _ = memory_ctx()
    three_step_action([]).dispatch({'count': 1, 'name': 'a'}, ctx, listeners=[Listener()])
    assert seen == ['first', 'second', 'third']


def test_failing_step_raises_runtime_error_and_rolls_back() -> None:
    journal: list[str] = []

    def boom(context: Any) -> StepResult:
        raise OSError('disk full')

    class Act(BaseUploadAction[Params]):
        def setup_steps(self, registry: StepRegistry[UploadContext]) -> None:
            registry.register(Step('a', 1, journal))
            registry.register(Step('b', 1, journal))
            registry.register(Step('c', 1, journal, boom))
            registry.register(Step('d', 1, journal))

    ctx, logger = memory_ctx()
    with pytest.raises(RuntimeError) as info:
        Act.dispatch({'count': 1, 'name': 'a'}, ctx)
    assert str(info.value) == "Step 'c' failed: OSError: disk full"
    assert isinstance(info.value.__cause__, OSError)
    assert journal == [
        'execute:a',
        'execute:b',
        'execute:c',
        'rollback:c',
        'rollback:b',
        'rollback:a',
    ]
    assert logger.lifecycle[-1] == ('run_end', 'failed')
    assert ('step_failed', 'c') in logger.lifecycle
    assert 100.0 not in logger.progress_of('overall')


def test_step_returning_failure_raises_with_its_error() -> None:
    journal: list[str] = []

    class Act(BaseTrainAction[Params]):
        def setup_steps(self, registry: StepRegistry[TrainContext]) -> None:
            registry.register(Step('load', 1, journal))
            registry.register(
                Step('fit', 1, journal, lambda c: StepResult(success=False, error='diverged'))
            )

    with pytest.raises(RuntimeError) as info:
        Act.dispatch({'count': 1, 'name': 'a'}, memory_ctx()[0])
    assert str(info.value) == "Step 'fit' failed: diverged"
    assert journal == ['execute:load', 'execute:fit', 'rollback:fit', 'rollback:load']


def test_step_mode_ignores_an_overridden_execute() -> None:
    class Act(BaseUploadAction[Params]):
        def setup_steps(self, registry: StepRegistry[UploadContext]) -> None:
            registry.register(Step('only', 1, []))

        def execute(self) -> dict[str, Any]:
            raise AssertionError('execute() must not run in step mode')

    result = Act.dispatch({'count': 1, 'name': 'a'}, memory_ctx()[0])
    assert result['steps'] == {'only': {'step': 'only'}}


# -- prepare_run: the execution layer's way in --------------------------------------------


def test_prepare_run_sets_up_steps_and_context_without_running_them() -> None:
    journal: list[str] = []
    ctx, logger = memory_ctx()
    prepared = three_step_action(journal)({'count': 1, 'name': 'a'}, ctx).prepare_run()
    assert not prepared.plain
    assert [s.name for s in prepared.steps] == ['first', 'second', 'third']
    assert isinstance(prepared.context, UploadContext) and prepared.context.runtime_ctx is ctx
    assert journal == [] and logger.lifecycle == []
    done = StepResult(data={'step': 'first'}, step_name='first')
    result = prepared.run(completed={'first': done})  # as a resume passes finished steps
    assert journal == ['execute:second', 'execute:third']
    assert result['steps_reused'] == 1 and list(result['steps']) == ['second', 'third']


def test_prepare_run_of_a_plain_action_has_no_context_and_runs_execute() -> None:
    class Act(BaseTrainAction[Params]):
        def execute(self) -> dict[str, Any]:
            return {'n': self.params.count}

    prepared = Act({'count': 2, 'name': 'p'}, memory_ctx()[0]).prepare_run()
    assert prepared.plain and prepared.context is None and prepared.steps == []
    assert prepared.run() == {'n': 2}


# -- plain mode -------------------------------------------------------------------------


def test_plain_mode_calls_execute() -> None:
    calls: list[tuple[Params, RuntimeContext]] = []

    class Act(BaseTrainAction[Params]):
        def execute(self) -> dict[str, Any]:
            calls.append((self.params, self.ctx))
            self.ctx.log('did', {'n': self.params.count})
            return {'done': self.params.count}

    ctx, logger = memory_ctx()
    assert Act.dispatch({'count': 5, 'name': 'p'}, ctx) == {'done': 5}
    assert len(calls) == 1
    assert calls[0][0] == Params(count=5, name='p')
    assert calls[0][1] is ctx
    assert logger.event_names() == ['did']
    assert logger.lifecycle == []  # no orchestrator ran


def test_setup_steps_registering_nothing_falls_back_to_execute() -> None:
    class Act(BaseExportAction[Params]):
        def setup_steps(self, registry: StepRegistry[ExportContext]) -> None:
            pass

        def execute(self) -> dict[str, Any]:
            return {'plain': True}

    assert Act.dispatch({'count': 1, 'name': 'a'}, memory_ctx()[0]) == {'plain': True}


def test_neither_steps_nor_execute_is_a_definition_error() -> None:
    class Act(BaseUploadAction[Params]):
        pass

    with pytest.raises(ActionDefinitionError, match='Act has nothing to run'):
        Act.dispatch({'count': 1, 'name': 'a'}, memory_ctx()[0])


def test_generic_action_with_steps_needs_create_context() -> None:
    class Act(BaseAction[Params]):
        def setup_steps(self, registry: StepRegistry[Any]) -> None:
            registry.register(Step('a', 1, []))

    with pytest.raises(ActionDefinitionError, match='Act registers steps but has no create_c'):
        Act.dispatch({'count': 1, 'name': 'a'}, memory_ctx()[0])


def test_custom_create_context_is_used() -> None:
    from dataclasses import dataclass

    seen: list[Any] = []

    @dataclass(kw_only=True)
    class MyContext(BaseStepContext):
        label: str

    class Act(BaseAction[Params]):
        def setup_steps(self, registry: StepRegistry[Any]) -> None:
            registry.register(Step('a', 1, [], lambda c: seen.append(c) or StepResult()))

        def create_context(self) -> MyContext:
            return MyContext(runtime_ctx=self.ctx, label=self.params.name)

    ctx, _ = memory_ctx()
    Act.dispatch({'count': 1, 'name': 'lbl'}, ctx)
    assert type(seen[0]) is MyContext
    assert seen[0].label == 'lbl'
    assert seen[0].runtime_ctx is ctx


# -- default contexts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ('base', 'context_cls'),
    [
        (BaseUploadAction, UploadContext),
        (BaseTrainAction, TrainContext),
        (BaseExportAction, ExportContext),
    ],
)
def test_setup_steps_only_gets_a_default_context_of_the_right_type(
    base: type[BaseAction[Any]], context_cls: type
) -> None:
    seen: list[Any] = []

    def capture(context: Any) -> StepResult:
        seen.append(context)
        return StepResult(data={'params': dict(context.params)})

    class Act(base[NestedParams]):  # type: ignore[misc, valid-type]
        def setup_steps(self, registry: StepRegistry[Any]) -> None:
            registry.register(Step('fetch', 1, [], capture))

    ctx, _ = memory_ctx()
    result = Act.dispatch({'options': {'level': 3}}, ctx)
    assert len(seen) == 1
    context = seen[0]
    assert type(context) is context_cls
    assert context.runtime_ctx is ctx
    assert context.params == {'options': {'level': 3}, 'tag': 'x'}
    assert isinstance(context.params, dict)
    assert result['steps'] == {'fetch': {'params': {'options': {'level': 3}, 'tag': 'x'}}}


def test_default_context_is_fresh_for_each_run() -> None:
    seen: list[Any] = []

    class Act(BaseExportAction[Params]):
        def setup_steps(self, registry: StepRegistry[ExportContext]) -> None:
            registry.register(Step('w', 1, [], lambda c: seen.append(c) or StepResult()))

    ctx, _ = memory_ctx()
    action = Act({'count': 1, 'name': 'a'}, ctx)
    action.prepare_run().run()
    action.prepare_run().run()
    assert seen[0] is not seen[1]
    assert len(seen[1].step_results) == 1


def test_upload_context_fields() -> None:
    client = object()
    ctx = RuntimeContext(logger=[], client=client)
    context = UploadContext(runtime_ctx=ctx)
    assert context.params == {}
    assert context.files_to_upload == []
    assert context.uploaded_files == []
    assert context.total_bytes == 0
    assert context.client is client
    assert context.client is ctx.client
    assert context.step_results == []
    assert context.errors == []
    other = UploadContext(runtime_ctx=ctx, params={'a': 1}, total_bytes=5)
    assert other.params == {'a': 1}
    assert other.total_bytes == 5
    assert other.files_to_upload is not context.files_to_upload


def test_train_and_export_context_fields() -> None:
    ctx = RuntimeContext(logger=[], client='c')
    train = TrainContext(runtime_ctx=ctx)
    assert (train.dataset, train.model, train.model_path, train.model_file_id) == (
        None,
        None,
        None,
        None,
    )
    assert train.metrics == {}
    assert train.params == {}
    assert train.client == 'c'
    export = ExportContext(runtime_ctx=ctx)
    assert export.results == []
    assert export.output_path is None
    assert export.written_files == []
    assert (export.exported_count, export.failed_count) == (0, 0)


def test_context_helpers_reach_the_runtime() -> None:
    ctx, logger = memory_ctx()
    context = UploadContext(runtime_ctx=ctx)
    context.log('ev', {'a': 1}, 'f.txt')
    context.set_progress(1, 4, 'upload')
    context.set_metrics({'n': 1}, 'upload')
    assert [(e.event, e.data, e.file, e.level) for e in logger.events] == [
        ('ev', {'a': 1}, 'f.txt', 'info')
    ]
    assert logger.progress_updates == [(1, 4, 'upload')]
    assert logger.metric_updates == [({'n': 1}, 'upload')]


def test_action_without_ctx_gets_a_default_runtime() -> None:
    action = ParamsAction({'count': 1, 'name': 'a'})
    assert isinstance(action.ctx, RuntimeContext)
    action.ctx.close()


# -- describe_steps ---------------------------------------------------------------


class ThreeSteps(BaseUploadAction[Params]):
    def setup_steps(self, registry: StepRegistry[UploadContext]) -> None:
        registry.register(Step('discover', 0.1, []))
        registry.register(Step('upload', 0.8, []))
        registry.register(Step('finalize', 0.1, []))


def test_describe_steps_gives_names_weights_and_shares() -> None:
    rows = ThreeSteps.describe_steps({'count': 1, 'name': 'a'})
    assert [(n, w) for n, w, _ in rows] == [('discover', 0.1), ('upload', 0.8), ('finalize', 0.1)]
    assert [share for _, _, share in rows] == pytest.approx([10.0, 80.0, 10.0])


def test_describe_steps_works_without_params_for_a_model_with_required_fields() -> None:
    rows = ThreeSteps.describe_steps()
    assert [n for n, _, _ in rows] == ['discover', 'upload', 'finalize']
    assert [s for _, _, s in rows] == pytest.approx([10.0, 80.0, 10.0])
    assert ThreeSteps.describe_steps({}) == rows


def test_describe_steps_with_bad_params_raises() -> None:
    with pytest.raises(ParamsValidationError) as info:
        ThreeSteps.describe_steps({'count': -1})
    assert [where for where, _ in info.value.problems] == ['count', 'name']


def test_describe_steps_runs_nothing_and_logs_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    journal: list[str] = []

    class Act(BaseTrainAction[Params]):
        def setup_steps(self, registry: StepRegistry[TrainContext]) -> None:
            registry.register(Step('a', 1, journal))

    assert Act.describe_steps() == [('a', 1.0, 100.0)]
    assert journal == []
    assert capsys.readouterr() == ('', '')


def test_describe_steps_normalises_weights_and_handles_zero_weights() -> None:
    class Uneven(BaseExportAction[OtherParams]):
        def setup_steps(self, registry: StepRegistry[ExportContext]) -> None:
            registry.register(Step('a', 1, []))
            registry.register(Step('b', 3, []))

    class Zero(BaseExportAction[OtherParams]):
        def setup_steps(self, registry: StepRegistry[ExportContext]) -> None:
            registry.register(Step('a', 0, []))
            registry.register(Step('b', 0, []))

    assert Uneven.describe_steps() == [('a', 1.0, 25.0), ('b', 3.0, 75.0)]
    assert Zero.describe_steps() == [('a', 0.0, 50.0), ('b', 0.0, 50.0)]


def test_describe_steps_of_a_plain_action_is_empty() -> None:
    assert ParamsAction.describe_steps() == []


def test_plan_is_a_deprecated_name_of_describe_steps() -> None:
    """The docs once promised ``Action.plan()``; "plan" is now the registry's run plan only."""
    with pytest.warns(DeprecationWarning, match=r'ThreeSteps.plan\(\) is now ThreeSteps.describe_'):
        rows = ThreeSteps.plan({'count': 1, 'name': 'a'})
    assert rows == ThreeSteps.describe_steps({'count': 1, 'name': 'a'})


def test_describe_steps_without_params_when_setup_steps_reads_a_required_field() -> None:
    """Without params the plan may not be buildable, but it must say why in params terms.

    ``describe_steps()`` builds the action from ``model_construct()`` when no params are
    given; a ``setup_steps`` that reads a required field then gets a bare
    AttributeError (and ``synapse plugin steps`` a traceback) instead of a
    ParamsValidationError naming the missing field.
    """

    class Flags(BaseModel):
        compress: bool

    class Act(BaseUploadAction[Flags]):
        def setup_steps(self, registry: StepRegistry[UploadContext]) -> None:
            if self.params.compress:
                registry.register(Step('compress', 1, []))
            registry.register(Step('upload', 1, []))

    assert [n for n, _, _ in Act.describe_steps({'compress': True})] == ['compress', 'upload']
    with pytest.raises(ParamsValidationError) as info:
        Act.describe_steps()
    assert info.value.problems == [('compress', 'Field required')]
