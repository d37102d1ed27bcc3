"""Overall progress: weighted, normalized, increasing, each value once, 100 only at the end."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synapse_sdk.plugins.steps import BaseStepContext, StepExecutionError, StepResult
from synapse_sdk.plugins.steps.progress import EPSILON as _EPSILON

from .conftest import Recorder, RecordingListener, RecordingRuntime, Step, raising, run


def reporting(
    recorder: Recorder, reports: Sequence[tuple[float, float]], snapshots: list[Any]
) -> Callable[[BaseStepContext], StepResult]:
    """An action that reports in-step progress and snapshots the callback after each report."""

    def action(context: BaseStepContext) -> StepResult:
        for current, total in reports:
            context.set_progress(current, total)
            snapshots.append(list(recorder.values))
        return StepResult()

    return action


def snapshot(recorder: Recorder, snapshots: list[Any]) -> Callable[[BaseStepContext], StepResult]:
    """An action that snapshots the callback values seen so far when the step runs."""

    def action(context: BaseStepContext) -> StepResult:
        snapshots.append(list(recorder.values))
        return StepResult()

    return action


# ------------------------------------------------------------------ weights


def test_total_is_always_100(context: BaseStepContext, recorder: Recorder) -> None:
    run(context, Step('a', 1), Step('b', 2), Step('c', 3), callback=recorder)
    assert recorder.calls
    assert {total for _, total in recorder.calls} == {100}


def test_weights_give_exact_percentages(context: BaseStepContext, recorder: Recorder) -> None:
    run(context, Step('a', 0.2), Step('b', 0.6), Step('c', 0.2), callback=recorder)
    assert recorder.calls == [(20, 100), (80, 100), (100, 100)]


def test_weights_are_normalized(context: BaseStepContext, recorder: Recorder) -> None:
    run(context, Step('a', 1), Step('b', 3), callback=recorder)
    assert recorder.values == [25, 100]


def test_normalized_weights_before_the_last_step(
    context: BaseStepContext, recorder: Recorder
) -> None:
    snapshots: list[Any] = []
    run(
        context,
        Step('a', 1),
        Step('b', 3),
        Step('c', 4),
        Step('d', 2, action=snapshot(recorder, snapshots)),
        callback=recorder,
    )
    # a: 1/10, b: 4/10, c: 8/10 done when d starts
    assert snapshots == [[10, 40, 80]]
    assert recorder.values[-1] == 100


def test_skipped_step_counts_as_done(context: BaseStepContext, recorder: Recorder) -> None:
    run(
        context,
        Step('a', 1),
        Step('b', 1, skip=True),
        Step('c', 1),
        Step('d', 1),
        callback=recorder,
    )
    assert recorder.values == [25, 50, 75, 100]


def test_skipped_step_progress_seen_by_the_next_step(
    context: BaseStepContext, recorder: Recorder
) -> None:
    snapshots: list[Any] = []
    run(
        context,
        Step('a', 1, skip=True),
        Step('b', 3, skip=True),
        Step('c', 4, action=snapshot(recorder, snapshots)),
        callback=recorder,
    )
    assert snapshots == [[12, 50]]


def test_all_zero_weights_progress_by_step_count(
    context: BaseStepContext, recorder: Recorder
) -> None:
    run(context, *(Step(f's{i}', 0) for i in range(4)), callback=recorder)
    assert recorder.values == [25, 50, 75, 100]


def test_all_zero_weights_before_the_last_step(
    context: BaseStepContext, recorder: Recorder
) -> None:
    snapshots: list[Any] = []
    steps = [Step(f's{i}', 0) for i in range(3)]
    last = Step('last', 0, action=snapshot(recorder, snapshots))
    run(context, *steps, last, callback=recorder)
    assert snapshots == [[25, 50, 75]]
    assert recorder.values[-1] == 100


def test_single_step(context: BaseStepContext, recorder: Recorder) -> None:
    run(context, Step('only', 5), callback=recorder)
    assert recorder.values[-1] == 100
    assert recorder.values.count(100) == 1


def test_zero_weight_steps_between_weighted_ones(
    context: BaseStepContext, recorder: Recorder
) -> None:
    snapshots: list[Any] = []
    run(
        context,
        Step('a', 0),
        Step('b', 1),
        Step('c', 0),
        Step('d', 1, action=snapshot(recorder, snapshots)),
        callback=recorder,
    )
    assert snapshots == [[50]]
    assert recorder.values[-1] == 100


# ------------------------------------------------------------------ in-step progress


def test_in_step_progress_advances_by_weight_fraction(
    context: BaseStepContext, recorder: Recorder
) -> None:
    snapshots: list[Any] = []
    run(
        context,
        Step('a', 1),
        Step('b', 2, action=reporting(recorder, [(1, 4), (2, 4), (3, 4)], snapshots)),
        Step('c', 1),
        callback=recorder,
    )
    # a done: 25; b is half the run: 25 + 50 * i / 4
    assert snapshots == [[25, 37], [25, 37, 50], [25, 37, 50, 62]]
    assert recorder.values[:5] == [25, 37, 50, 62, 75]
    assert recorder.values[-1] == 100


def test_in_step_progress_with_category_is_forwarded_and_counted(
    runtime: RecordingRuntime, context: BaseStepContext, recorder: Recorder
) -> None:
    def action(ctx: BaseStepContext) -> StepResult:
        ctx.set_progress(5, 10, 'upload')
        return StepResult()

    run(context, Step('a', 1, action=action), Step('b', 1), callback=recorder)
    assert runtime.progress == [(5, 10, 'upload')]
    assert recorder.values[:2] == [25, 50]


def test_in_step_progress_never_goes_backwards(
    context: BaseStepContext, recorder: Recorder
) -> None:
    snapshots: list[Any] = []
    run(
        context,
        Step('a', 1, action=reporting(recorder, [(3, 4), (1, 4), (2, 4), (4, 4)], snapshots)),
        Step('b', 1),
        callback=recorder,
    )
    assert snapshots == [[37], [37], [37], [37, 50]]


def test_no_duplicate_values(context: BaseStepContext, recorder: Recorder) -> None:
    reports = [(i, 1000) for i in range(1001)]
    snapshots: list[Any] = []
    run(
        context,
        Step('a', 1, action=reporting(recorder, reports, snapshots)),
        Step('b', 1),
        callback=recorder,
    )
    values = recorder.values
    assert len(values) == len(set(values))
    assert values[:50] == list(range(1, 51))


def test_in_step_progress_caps_at_99_until_the_run_ends(
    context: BaseStepContext, recorder: Recorder
) -> None:
    snapshots: list[Any] = []
    run(
        context,
        Step('only', 1, action=reporting(recorder, [(10, 10)], snapshots)),
        callback=recorder,
    )
    assert snapshots == [[99]]
    assert recorder.values == [99, 100]


def test_trailing_zero_weight_step_keeps_100_for_the_end(
    context: BaseStepContext, recorder: Recorder
) -> None:
    snapshots: list[Any] = []
    run(
        context,
        Step('a', 1),
        Step('b', 0, action=snapshot(recorder, snapshots)),
        callback=recorder,
    )
    assert snapshots == [[99]]
    assert recorder.values == [99, 100]


def test_in_step_progress_of_a_zero_weight_step_does_not_move(
    context: BaseStepContext, recorder: Recorder
) -> None:
    snapshots: list[Any] = []
    run(
        context,
        Step('a', 1),
        Step('b', 0, action=reporting(recorder, [(1, 2), (2, 2)], snapshots)),
        Step('c', 1),
        callback=recorder,
    )
    assert snapshots == [[50], [50]]


def test_progress_outside_a_step_does_not_move_the_overall_figure(
    context: BaseStepContext, recorder: Recorder
) -> None:
    def skip(ctx: BaseStepContext) -> bool:
        ctx.set_progress(1, 1)
        return False

    snapshots: list[Any] = []
    run(
        context,
        Step('a', 1, skip=skip),
        Step('b', 1, action=snapshot(recorder, snapshots)),
        callback=recorder,
    )
    assert snapshots == [[50]]


def test_failed_run_never_reports_100(context: BaseStepContext, recorder: Recorder) -> None:
    with pytest.raises(StepExecutionError):
        run(
            context,
            Step('a', 1),
            Step('b', 1),
            Step('c', 1, action=raising(ValueError('x'))),
            callback=recorder,
        )
    assert recorder.values == [33, 66]


def test_without_callback_progress_still_works(context: BaseStepContext) -> None:
    listener = RecordingListener()
    run(context, Step('a', 1), Step('b', 3), listeners=[listener])
    progress = [e[1] for e in listener.events if e[0] == 'progress']
    assert progress[0] == 25
    assert progress[-1] == 100


# ------------------------------------------------------------------ extreme but valid weights


def test_tiny_weights_do_not_break_the_run(context: BaseStepContext, recorder: Recorder) -> None:
    run(context, Step('a', 1e-310), Step('b', 1e-310), callback=recorder)
    assert recorder.values == [50, 100]


def test_huge_weights_do_not_break_the_run(context: BaseStepContext, recorder: Recorder) -> None:
    run(context, Step('a', 1e308), Step('b', 1e308), callback=recorder)
    assert recorder.values == [50, 100]


# ------------------------------------------------------------------ property


weight = st.one_of(
    st.just(0.0),
    st.integers(min_value=0, max_value=1000),
    st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False),
)
report = st.integers(min_value=1, max_value=50).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
)
step_plan = st.tuples(weight, st.booleans(), st.lists(report, max_size=6))


@settings(max_examples=150, deadline=None)
@given(plans=st.lists(step_plan, min_size=1, max_size=8))
def test_progress_property(plans: list[tuple[float, bool, list[tuple[int, int]]]]) -> None:
    recorder = Recorder()
    context = BaseStepContext(runtime_ctx=RecordingRuntime())
    inside: list[list[int]] = []
    steps = [
        Step(
            f's{i}',
            w,
            skip=skip,
            action=reporting(recorder, reports, inside),
        )
        for i, (w, skip, reports) in enumerate(plans)
    ]
    run(context, *steps, callback=recorder)
    values = recorder.values
    assert all(total == 100 for _, total in recorder.calls)
    assert all(1 <= v <= 100 for v in values)
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    assert values[-1] == 100
    assert 100 not in values[:-1]
    for snapshot in inside:  # nothing reads 100 while a step is still running
        assert 100 not in snapshot


# ------------------------------------------------------------------ many steps


def test_many_steps_report_each_percentage_once(
    context: BaseStepContext, recorder: Recorder
) -> None:
    run(context, *(Step(f's{i}', 1) for i in range(1000)), callback=recorder)
    assert recorder.values == list(range(1, 101))


def test_many_steps_with_uneven_weights(context: BaseStepContext, recorder: Recorder) -> None:
    # 300 steps: weight 1 then 2 alternately (total 450)
    steps = [Step(f's{i}', 1 + i % 2) for i in range(300)]
    run(context, *steps, callback=recorder)
    done = 0
    expected: list[int] = []
    for i in range(299):
        done += 1 + i % 2
        percent = done * 100 // 450
        if percent > (expected[-1] if expected else 0):
            expected.append(percent)
    assert recorder.values == [*expected, 100]


# ------------------------------------------------------------------ property: the exact sequence


def expected_sequence(plans: list[tuple[float, bool, list[tuple[int, int]]]]) -> list[int]:
    """What a step-by-step running total reports (the documented formula)."""
    weights = [float(w) for w, _, _ in plans]
    total = math.fsum(weights)
    if total <= 0:
        weights = [1.0] * len(weights)
        total = float(len(weights))
    scale = 100.0 / total
    values: list[int] = []
    last = 0
    done = 0.0

    def report(figure: float) -> None:
        nonlocal last
        percent = min(int(figure * scale + _EPSILON), 99)
        if percent > last:
            values.append(percent)
            last = percent

    for index, (weight, (_, skip, reports)) in enumerate(zip(weights, plans, strict=True)):
        if not skip:
            for current, n in reports:
                report(done + weight * (current / n))
        done += weight
        if index < len(plans) - 1:
            report(done)
    values.append(100)
    return values


@settings(max_examples=150, deadline=None)
@given(plans=st.lists(step_plan, min_size=1, max_size=12))
def test_progress_matches_the_step_by_step_formula(
    plans: list[tuple[float, bool, list[tuple[int, int]]]],
) -> None:
    recorder = Recorder()
    context = BaseStepContext(runtime_ctx=RecordingRuntime())
    steps = [
        Step(f's{i}', w, skip=skip, action=reporting(recorder, reports, []))
        for i, (w, skip, reports) in enumerate(plans)
    ]
    run(context, *steps, callback=recorder)
    assert recorder.values == expected_sequence(plans)
