"""Overall progress: weighted, normalized, increasing, each value once, 100 only at the end."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synapse_sdk.plugins.steps import BaseStepContext, StepExecutionError, StepResult
from synapse_sdk.plugins.steps._progress import EPSILON as _EPSILON

from .conftest import Recorder, RecordingListener, RecordingRuntime, Step, raising, run

Plan = tuple[float, bool, list[tuple[int, int]]]
Action = Callable[[BaseStepContext], StepResult]


class Watch:
    """Runs steps with a recording progress callback, ``recorder``.

    ``look()`` and ``reporting(...)`` make step actions that note in ``seen`` the values
    the callback has had so far: once when the step runs, or after each in-step report.
    """

    def __init__(self, context: BaseStepContext) -> None:
        self.context = context
        self.recorder = Recorder()
        self.seen: list[list[int]] = []

    def _note(self) -> None:
        self.seen.append(list(self.recorder.values))

    def look(self) -> Action:
        """An action that notes the callback values seen so far when the step runs."""

        def action(context: BaseStepContext) -> StepResult:
            self._note()
            return StepResult()

        return action

    def reporting(self, *reports: tuple[float, float]) -> Action:
        """An action that reports in-step progress and notes the values after each report."""

        def action(context: BaseStepContext) -> StepResult:
            for current, total in reports:
                context.set_progress(current, total)
                self._note()
            return StepResult()

        return action

    def run(self, *steps: Step) -> list[int]:
        """Run ``steps`` once; the values the callback got."""
        run(self.context, *steps, callback=self.recorder)
        return self.recorder.values

    def run_plans(self, plans: list[Plan]) -> list[int]:
        """Run one step per ``(weight, skip, in-step reports)`` plan."""
        return self.run(
            *(
                Step(f's{i}', w, skip=skip, action=self.reporting(*reports))
                for i, (w, skip, reports) in enumerate(plans)
            )
        )


@pytest.fixture
def watch(context: BaseStepContext) -> Watch:
    return Watch(context)


# ------------------------------------------------------------------ weights


def test_total_is_always_100(watch: Watch) -> None:
    watch.run(Step('a', 1), Step('b', 2), Step('c', 3))
    assert watch.recorder.calls
    assert {total for _, total in watch.recorder.calls} == {100}


@pytest.mark.parametrize(
    ('weights', 'expected'),
    [
        pytest.param([0.2, 0.6, 0.2], [20, 80, 100], id='weights-give-exact-percentages'),
        pytest.param([1, 3], [25, 100], id='weights-are-normalized'),
        pytest.param([0] * 4, [25, 50, 75, 100], id='all-zero-weights-progress-by-step-count'),
        pytest.param([1e-310] * 2, [50, 100], id='tiny-weights-do-not-break-the-run'),
        pytest.param([1e308] * 2, [50, 100], id='huge-weights-do-not-break-the-run'),
        pytest.param([1] * 1000, list(range(1, 101)), id='many-steps-report-each-percentage-once'),
    ],
)
def test_percentages_reported_for_weights(
    watch: Watch, weights: list[float], expected: list[int]
) -> None:
    watch.run(*(Step(f's{i}', w) for i, w in enumerate(weights)))
    assert watch.recorder.calls == [(value, 100) for value in expected]


def test_normalized_weights_before_the_last_step(watch: Watch) -> None:
    values = watch.run(Step('a', 1), Step('b', 3), Step('c', 4), Step('d', 2, action=watch.look()))
    # a: 1/10, b: 4/10, c: 8/10 done when d starts
    assert watch.seen == [[10, 40, 80]]
    assert values[-1] == 100


def test_skipped_step_counts_as_done(watch: Watch) -> None:
    values = watch.run(Step('a', 1), Step('b', 1, skip=True), Step('c', 1), Step('d', 1))
    assert values == [25, 50, 75, 100]


def test_skipped_step_progress_seen_by_the_next_step(watch: Watch) -> None:
    watch.run(Step('a', 1, skip=True), Step('b', 3, skip=True), Step('c', 4, action=watch.look()))
    assert watch.seen == [[12, 50]]


def test_all_zero_weights_before_the_last_step(watch: Watch) -> None:
    steps = [Step(f's{i}', 0) for i in range(3)]
    values = watch.run(*steps, Step('last', 0, action=watch.look()))
    assert watch.seen == [[25, 50, 75]]
    assert values[-1] == 100


def test_single_step(watch: Watch) -> None:
    values = watch.run(Step('only', 5))
    assert values[-1] == 100
    assert values.count(100) == 1


def test_zero_weight_steps_between_weighted_ones(watch: Watch) -> None:
    values = watch.run(Step('a', 0), Step('b', 1), Step('c', 0), Step('d', 1, action=watch.look()))
    assert watch.seen == [[50]]
    assert values[-1] == 100


# ------------------------------------------------------------------ in-step progress


def test_in_step_progress_advances_by_weight_fraction(watch: Watch) -> None:
    values = watch.run(
        Step('a', 1), Step('b', 2, action=watch.reporting((1, 4), (2, 4), (3, 4))), Step('c', 1)
    )
    # a done: 25; b is half the run: 25 + 50 * i / 4
    assert watch.seen == [[25, 37], [25, 37, 50], [25, 37, 50, 62]]
    assert values[:5] == [25, 37, 50, 62, 75]
    assert values[-1] == 100


def test_in_step_progress_with_category_is_forwarded_and_counted(
    runtime: RecordingRuntime, watch: Watch
) -> None:
    def action(ctx: BaseStepContext) -> StepResult:
        ctx.set_progress(5, 10, 'upload')
        return StepResult()

    values = watch.run(Step('a', 1, action=action), Step('b', 1))
    assert runtime.progress == [(5, 10, 'upload')]
    assert values[:2] == [25, 50]


def test_in_step_progress_never_goes_backwards(watch: Watch) -> None:
    watch.run(Step('a', 1, action=watch.reporting((3, 4), (1, 4), (2, 4), (4, 4))), Step('b', 1))
    assert watch.seen == [[37], [37], [37], [37, 50]]


def test_no_duplicate_values(watch: Watch) -> None:
    reports = [(i, 1000) for i in range(1001)]
    values = watch.run(Step('a', 1, action=watch.reporting(*reports)), Step('b', 1))
    assert len(values) == len(set(values))
    assert values[:50] == list(range(1, 51))


def test_in_step_progress_caps_at_99_until_the_run_ends(watch: Watch) -> None:
    values = watch.run(Step('only', 1, action=watch.reporting((10, 10))))
    assert watch.seen == [[99]]
    assert values == [99, 100]


def test_trailing_zero_weight_step_keeps_100_for_the_end(watch: Watch) -> None:
    values = watch.run(Step('a', 1), Step('b', 0, action=watch.look()))
    assert watch.seen == [[99]]
    assert values == [99, 100]


def test_in_step_progress_of_a_zero_weight_step_does_not_move(watch: Watch) -> None:
    watch.run(Step('a', 1), Step('b', 0, action=watch.reporting((1, 2), (2, 2))), Step('c', 1))
    assert watch.seen == [[50], [50]]


def test_progress_outside_a_step_does_not_move_the_overall_figure(watch: Watch) -> None:
    def skip(ctx: BaseStepContext) -> bool:
        ctx.set_progress(1, 1)
        return False

    watch.run(Step('a', 1, skip=skip), Step('b', 1, action=watch.look()))
    assert watch.seen == [[50]]


def test_failed_run_never_reports_100(watch: Watch) -> None:
    with pytest.raises(StepExecutionError):
        watch.run(Step('a', 1), Step('b', 1), Step('c', 1, action=raising(ValueError('x'))))
    assert watch.recorder.values == [33, 66]


def test_without_callback_progress_still_works(context: BaseStepContext) -> None:
    listener = RecordingListener()
    run(context, Step('a', 1), Step('b', 3), listeners=[listener])
    progress = [e[1] for e in listener.events if e[0] == 'progress']
    assert progress[0] == 25
    assert progress[-1] == 100


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
def test_progress_property(plans: list[Plan]) -> None:
    watch = Watch(BaseStepContext(runtime_ctx=RecordingRuntime()))
    values = watch.run_plans(plans)
    assert all(total == 100 for _, total in watch.recorder.calls)
    assert all(1 <= v <= 100 for v in values)
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    assert values[-1] == 100
    assert 100 not in values[:-1]
    for seen in watch.seen:  # nothing reads 100 while a step is still running
        assert 100 not in seen


# ------------------------------------------------------------------ many steps


def test_many_steps_with_uneven_weights(watch: Watch) -> None:
    # 300 steps: weight 1 then 2 alternately (total 450)
    values = watch.run(*(Step(f's{i}', 1 + i % 2) for i in range(300)))
    done = 0
    expected: list[int] = []
    for i in range(299):
        done += 1 + i % 2
        percent = done * 100 // 450
        if percent > (expected[-1] if expected else 0):
            expected.append(percent)
    assert values == [*expected, 100]


# ------------------------------------------------------------------ property: the exact sequence


def expected_sequence(plans: list[Plan]) -> list[int]:
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
def test_progress_matches_the_step_by_step_formula(plans: list[Plan]) -> None:
    watch = Watch(BaseStepContext(runtime_ctx=RecordingRuntime()))
    assert watch.run_plans(plans) == expected_sequence(plans)
