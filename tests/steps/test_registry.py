"""StepRegistry: ordering, lookup, and the checks made when a step is added."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import pytest

from synapse_sdk.plugins.steps import (
    BaseStepContext,
    Orchestrator,
    RetryPolicy,
    StepExecutionError,
    StepRegistry,
    StepResult,
)

from .conftest import RecordingRuntime, Step, make_registry, raising


def names(registry: StepRegistry[Any]) -> list[str]:
    return [step.name for step in registry]


# ------------------------------------------------------------------ ordering


def test_empty_registry() -> None:
    registry: StepRegistry[Any] = StepRegistry()
    assert len(registry) == 0
    assert registry.get_steps() == []
    assert list(registry) == []
    assert registry.total_weight == 0.0


def test_register_appends_in_order() -> None:
    a, b, c = Step('a'), Step('b'), Step('c')
    registry = make_registry(a, b, c)
    steps = registry.get_steps()
    assert len(steps) == 3
    assert steps[0] is a
    assert steps[1] is b
    assert steps[2] is c
    assert registry.names == ['a', 'b', 'c']


def test_get_steps_returns_a_copy() -> None:
    registry = make_registry(Step('a'), Step('b'))
    steps = registry.get_steps()
    steps.append(Step('c'))
    steps.reverse()
    assert names(registry) == ['a', 'b']
    assert len(registry) == 2
    assert registry.get_steps() is not registry.get_steps()


def test_len() -> None:
    registry = make_registry(Step('a'), Step('b'), Step('c'))
    assert len(registry) == 3
    registry.unregister('b')
    assert len(registry) == 2


def test_iteration_yields_steps_in_order() -> None:
    a, b = Step('a'), Step('b')
    registry = make_registry(a, b)
    assert [step for step in registry] == [a, b]
    assert names(registry) == ['a', 'b']


def test_iteration_survives_changes_during_iteration() -> None:
    registry = make_registry(Step('a'), Step('b'))
    seen = []
    for step in registry:
        seen.append(step.name)
        if step.name == 'a':
            registry.register(Step('c'))
    assert seen == ['a', 'b']
    assert names(registry) == ['a', 'b', 'c']


def test_contains_by_name_and_by_step() -> None:
    a = Step('a')
    registry = make_registry(a, Step('b'))
    assert 'a' in registry
    assert 'b' in registry
    assert 'z' not in registry
    assert a in registry
    assert Step('a') not in registry  # a different object with the same name
    assert Step('z') not in registry
    assert 42 not in registry
    assert None not in registry


def test_contains_after_unregister() -> None:
    a = Step('a')
    registry = make_registry(a)
    registry.unregister('a')
    assert 'a' not in registry
    assert a not in registry


def test_total_weight() -> None:
    registry = make_registry(Step('a', 0.2), Step('b', 0.6), Step('c', 0.2))
    assert registry.total_weight == 1.0
    registry.register(Step('d', 3))
    assert registry.total_weight == 4.0


def test_total_weight_is_exactly_summed() -> None:
    registry = make_registry(*(Step(f's{i}', 0.1) for i in range(10)))
    assert registry.total_weight == 1.0  # plain sum() would give 0.9999999999999999


def test_unregister_removes_and_frees_the_name() -> None:
    registry = make_registry(Step('a'), Step('b'), Step('c'))
    registry.unregister('b')
    assert names(registry) == ['a', 'c']
    assert 'b' not in registry
    replacement = Step('b')
    registry.register(replacement)
    assert names(registry) == ['a', 'c', 'b']
    assert registry.get_steps()[2] is replacement


def test_insert_before() -> None:
    registry = make_registry(Step('a'), Step('b'))
    registry.insert_before('b', Step('x'))
    registry.insert_before('a', Step('first'))
    assert names(registry) == ['first', 'a', 'x', 'b']


def test_insert_after() -> None:
    registry = make_registry(Step('a'), Step('b'))
    registry.insert_after('a', Step('x'))
    registry.insert_after('b', Step('last'))
    assert names(registry) == ['a', 'x', 'b', 'last']


def test_inserted_step_can_be_found_and_removed() -> None:
    registry = make_registry(Step('a'))
    x = Step('x')
    registry.insert_after('a', x)
    assert 'x' in registry
    assert x in registry
    registry.unregister('x')
    assert names(registry) == ['a']


# ------------------------------------------------------------------ duplicate / unknown names


def test_duplicate_name_is_rejected() -> None:
    registry = make_registry(Step('upload'))
    with pytest.raises(ValueError, match="a step named 'upload' is already registered"):
        registry.register(Step('upload'))
    assert len(registry) == 1


@pytest.mark.parametrize('method', ['insert_before', 'insert_after'])
def test_duplicate_name_is_rejected_on_insert(method: str) -> None:
    registry = make_registry(Step('a'), Step('b'))
    with pytest.raises(ValueError, match="'b'"):
        getattr(registry, method)('a', Step('b'))
    assert names(registry) == ['a', 'b']


def test_same_step_object_cannot_be_registered_twice() -> None:
    a = Step('a')
    registry = make_registry(a)
    with pytest.raises(ValueError, match="'a'"):
        registry.register(a)
    assert len(registry) == 1


@pytest.mark.parametrize('method', ['insert_before', 'insert_after'])
def test_insert_relative_to_unknown_name(method: str) -> None:
    registry = make_registry(Step('a'), Step('b'))
    with pytest.raises(ValueError) as info:
        getattr(registry, method)('nope', Step('x'))
    message = str(info.value)
    assert "'nope'" in message
    assert "'a'" in message
    assert "'b'" in message
    assert names(registry) == ['a', 'b']
    assert 'x' not in registry


def test_unregister_unknown_name() -> None:
    registry = make_registry(Step('extract'), Step('upload'))
    with pytest.raises(ValueError) as info:
        registry.unregister('nope')
    assert str(info.value) == (
        "no step named 'nope' in the registry; registered steps: 'extract', 'upload'"
    )
    assert names(registry) == ['extract', 'upload']


def test_unregister_twice() -> None:
    registry = make_registry(Step('a'), Step('b'))
    registry.unregister('a')
    with pytest.raises(ValueError, match="'a'"):
        registry.unregister('a')
    assert names(registry) == ['b']


def test_unknown_name_in_empty_registry() -> None:
    registry: StepRegistry[Any] = StepRegistry()
    with pytest.raises(ValueError, match="'nope'"):
        registry.unregister('nope')
    with pytest.raises(ValueError, match="'nope'"):
        registry.insert_before('nope', Step('x'))
    assert len(registry) == 0


# ------------------------------------------------------------------ weights


@pytest.mark.parametrize('weight', [-1, -0.001, -math.inf, math.inf, math.nan])
def test_bad_weight_is_rejected_at_registration(weight: float) -> None:
    registry: StepRegistry[Any] = StepRegistry()
    with pytest.raises(ValueError, match="'bad_step'"):
        registry.register(Step('bad_step', weight))
    assert len(registry) == 0
    assert 'bad_step' not in registry


@pytest.mark.parametrize('method', ['insert_before', 'insert_after'])
@pytest.mark.parametrize('weight', [-1, math.nan, math.inf])
def test_bad_weight_is_rejected_on_insert(method: str, weight: float) -> None:
    registry = make_registry(Step('a'))
    with pytest.raises(ValueError, match="'bad_step'"):
        getattr(registry, method)('a', Step('bad_step', weight))
    assert names(registry) == ['a']


@pytest.mark.parametrize('weight', ['1', None, [1], True, 1j])
def test_non_number_weight_is_rejected(weight: Any) -> None:
    registry: StepRegistry[Any] = StepRegistry()
    with pytest.raises(ValueError, match="'bad_step'.*must be a number"):
        registry.register(Step('bad_step', weight))
    assert len(registry) == 0


@pytest.mark.parametrize('weight', [0, 0.0, 1, 2.5, Fraction(1, 3), 10**6])
def test_good_weights_are_accepted(weight: Any) -> None:
    registry = make_registry(Step('s', weight))
    assert registry.total_weight == float(weight)


# ------------------------------------------------------------------ bad steps / names


class NotAStep:
    """Looks like a step but is not a BaseStep."""

    name = 'duck'
    progress_weight = 1.0

    def execute(self, context: Any) -> StepResult:
        return StepResult()


@pytest.mark.parametrize('obj', [NotAStep(), 'upload', None, 42, Step])
def test_non_step_is_rejected_with_type_error(obj: Any) -> None:
    registry: StepRegistry[Any] = StepRegistry()
    with pytest.raises(TypeError):
        registry.register(obj)
    assert len(registry) == 0


@pytest.mark.parametrize('method', ['insert_before', 'insert_after'])
def test_non_step_is_rejected_on_insert(method: str) -> None:
    registry = make_registry(Step('a'))
    with pytest.raises(TypeError):
        getattr(registry, method)('a', NotAStep())
    assert names(registry) == ['a']


def test_empty_name_is_rejected() -> None:
    registry: StepRegistry[Any] = StepRegistry()
    with pytest.raises(ValueError):
        registry.register(Step(''))
    assert len(registry) == 0
    assert '' not in registry


@pytest.mark.parametrize('bad_name', [None, 5, b'bytes'])
def test_non_string_name_is_rejected(bad_name: Any) -> None:
    registry: StepRegistry[Any] = StepRegistry()
    with pytest.raises((TypeError, ValueError)):
        registry.register(Step(bad_name))
    assert len(registry) == 0


# ------------------------------------------------------------ what a run reads


def _executed(registry: StepRegistry[Any], journal: list[str]) -> list[str]:
    journal.clear()
    Orchestrator(registry, BaseStepContext(runtime_ctx=RecordingRuntime())).execute()
    return [e.split(':')[1] for e in journal if e.startswith('execute:')]


def test_each_run_sees_the_registry_as_it_is_now() -> None:
    journal: list[str] = []
    registry = make_registry(Step('a', journal=journal), Step('c', journal=journal))
    assert _executed(registry, journal) == ['a', 'c']
    registry.insert_after('a', Step('b', journal=journal))
    assert _executed(registry, journal) == ['a', 'b', 'c']
    registry.unregister('a')
    assert _executed(registry, journal) == ['b', 'c']
    registry.insert_before('b', Step('z', journal=journal))
    registry.register(Step('d', journal=journal))
    assert _executed(registry, journal) == ['z', 'b', 'c', 'd']


def test_progress_follows_the_registry_after_a_change() -> None:
    registry = make_registry(Step('a', 1), Step('b', 1))
    seen: list[int] = []

    def callback(current: int, total: int) -> None:
        seen.append(current)

    context = BaseStepContext(runtime_ctx=RecordingRuntime())
    Orchestrator(registry, context, callback).execute()
    assert seen == [50, 100]
    registry.register(Step('c', 2))
    seen.clear()
    Orchestrator(registry, BaseStepContext(runtime_ctx=RecordingRuntime()), callback).execute()
    assert seen == [25, 50, 100]


def test_retry_and_timeout_are_read_at_registration() -> None:
    step = Step('a', action=raising(ConnectionError('down')))
    registry = make_registry(step)
    step.retry = RetryPolicy(max_attempts=5, initial_delay=0)  # too late: already registered
    with pytest.raises(StepExecutionError):
        Orchestrator(registry, BaseStepContext(runtime_ctx=RecordingRuntime())).execute()
    assert step.journal.count('execute:a') == 1
