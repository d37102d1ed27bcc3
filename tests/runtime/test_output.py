"""Honest output: the console after a failure, plain lines when stderr is not a terminal,
levels, counts and time left, and the run's result in one shape (ResultRecorder)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from synapse_sdk.plugins.steps import (
    BaseStepContext,
    LoggingStep,
    Orchestrator,
    RunCancelledError,
    StepExecutionError,
    StepRegistry,
    StepResult,
)
from synapse_sdk.runtime import (
    ConsoleLogger,
    JsonLinesLogger,
    LineLogger,
    ResultRecorder,
    RollbackOutcome,
    RunResult,
)
from synapse_sdk.testing import FunctionStep, RecordingRuntime, run_workflow

ANSI = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')
LINE = re.compile(r'^(DEBUG  |INFO   |WARNING|ERROR  ) \S')


def terminal(width: int = 120) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=width, color_system=None), buffer


def redirected(width: int = 80) -> tuple[Console, io.StringIO]:
    """A console writing to a file, as stderr does when redirected (rich wraps at 80)."""
    buffer = io.StringIO()
    return Console(file=buffer, width=width), buffer


def screen(buffer: io.StringIO) -> list[str]:
    return [line.rstrip() for line in ANSI.sub('', buffer.getvalue()).splitlines()]


def last(lines: list[str], start: str) -> str:
    """The last line that starts with ``start`` (the bars' final state)."""
    found = [line for line in lines if line.startswith(start)]
    assert found, lines
    return found[-1]


def counting(category: str | None, total: int, upto: int | None = None) -> Any:
    def execute(context: BaseStepContext) -> None:
        for i in range(1, (upto or total) + 1):
            context.set_progress(i, total, category)

    return execute


def refuse(context: BaseStepContext) -> None:
    context.set_progress(3, 10)  # part of the way, then the failure
    raise ConnectionError('checksum service unreachable')


def export_run(console: Console, *, failing: bool = True) -> Any:
    """discover (no rollback), compress (skipped, with a reason), upload (rollback), verify."""
    runtime = RecordingRuntime()
    runtime.loggers.append(ConsoleLogger(console, min_interval=0))
    steps = [
        FunctionStep('discover', execute=counting(None, 20)),
        FunctionStep('compress', skip=lambda context: 'already compressed'),
        FunctionStep('upload', execute=counting('upload', 40), rollback=lambda c, r: None),
        FunctionStep('verify', execute=refuse if failing else None),
    ]
    run = run_workflow(steps, runtime=runtime)
    runtime.close()
    return run


# -- the console after a failure ----------------------------------------------------------


def test_the_bars_after_a_failure_show_what_happened() -> None:
    """The overall bar ends 'failed' where it stopped (not a bare 82% as if still going),
    the failed step's bar 'failed', the undone step's bar 'rolled back'; the bar of a step
    without a rollback stays as it ended."""
    console, buffer = terminal()
    run = export_run(console)
    assert isinstance(run.error, StepExecutionError)
    out = screen(buffer)
    overall = last(out, 'overall')
    assert overall.endswith('failed') and ' 82% ' in overall, overall  # 75 + 25 x 3/10
    assert last(out, 'verify').endswith('failed'), out
    assert ' 3/10 ' in last(out, 'verify')
    assert last(out, 'upload').endswith('rolled back')
    assert ' 40/40 ' in last(out, 'upload')
    discover = last(out, 'discover')
    assert 'rolled back' not in discover and 'failed' not in discover


def test_only_steps_with_a_rollback_are_said_to_be_rolled_back() -> None:
    console, buffer = redirected()
    export_run(console)
    out = lines(buffer)
    assert [line for line in out if 'rolling back' in line] == ['WARNING rolling back upload']
    assert out[-1] == 'ERROR   run failed at verify; rolled back: upload'


def test_a_first_step_failure_says_nothing_was_rolled_back() -> None:
    console, buffer = redirected()
    runtime = RecordingRuntime()
    runtime.loggers.append(ConsoleLogger(console))
    run = run_workflow(
        [FunctionStep('discover', execute=refuse), FunctionStep('upload', rollback=print)],
        runtime=runtime,
    )
    runtime.close()
    assert run.error is not None
    assert 'Rollback completed' not in '\n'.join(run.error.__notes__)
    out = lines(buffer)
    assert not [line for line in out if 'rolling back' in line]
    assert out[-1] == 'ERROR   run failed at discover; nothing to roll back'


def test_a_cancelled_run_ends_its_overall_bar_cancelled() -> None:
    console, buffer = terminal()
    runtime = RecordingRuntime()
    runtime.loggers.append(ConsoleLogger(console, min_interval=0))

    def cancel(context: BaseStepContext) -> None:
        context.set_progress(1, 2, 'work')
        runtime.cancel('SIGINT')
        context.raise_if_cancelled()

    run = run_workflow([FunctionStep('a'), FunctionStep('work', execute=cancel)], runtime=runtime)
    runtime.close()
    assert isinstance(run.error, RunCancelledError)
    out = screen(buffer)
    assert last(out, 'overall').endswith('cancelled')
    assert last(out, 'work').endswith(' 1/2 cancelled')
    assert 'run cancelled at work; nothing to roll back' in out


def test_a_successful_run_ends_at_100_with_its_time_and_a_summary() -> None:
    console, buffer = terminal()
    run = export_run(console, failing=False)
    assert run.succeeded
    out = screen(buffer)
    assert re.search(r' 100% +\d:\d\d:\d\d$', last(out, 'overall')), out
    assert 'done: 3 executed, 1 skipped' in out


def test_a_skipped_step_shows_its_reason() -> None:
    console, buffer = redirected()
    export_run(console)
    assert 'INFO    skipped compress (already compressed)' in lines(buffer)


def test_a_long_step_shows_its_count_and_the_time_left() -> None:
    """While a step reports its items, its bar shows ``done/total`` and ``eta``."""
    console, buffer = terminal()
    runtime = RecordingRuntime()
    runtime.loggers.append(ConsoleLogger(console, min_interval=0))
    seen: list[str] = []

    def work(context: BaseStepContext) -> None:
        for i in range(1, 41):
            context.set_progress(i, 100, 'files')
        seen.append(last(screen(buffer), 'files'))

    run = run_workflow([FunctionStep('work', execute=work)], runtime=runtime)
    runtime.close()
    assert run.succeeded
    assert re.search(r' 40% +40/100 +eta (\d:\d\d:\d\d|-:--:--)$', seen[0]), seen


# -- plain lines when the console is not a terminal -------------------------------------------


def lines(buffer: io.StringIO) -> list[str]:
    return buffer.getvalue().splitlines()


def test_a_redirected_console_writes_one_line_per_event_with_its_level() -> None:
    """rich would wrap a long message at 80 columns and show no level: each event is one
    line here, however long, a line break in it written as ``\\n``."""
    console, buffer = redirected(width=80)
    logger = ConsoleLogger(console)
    message = '1 validation error for AnnFile\n  label\n    Field required ' + 'x' * 120
    logger.log('bad_annotation', {'error': message}, 'ann/0001.json', 'error')
    logger.log('slow_disk', {'mb_s': 3}, None, 'warning')
    out = lines(buffer)
    assert len(out) == 2
    assert out[0].startswith("ERROR   bad_annotation {'error': '1 validation error for AnnFile")
    assert out[0].endswith("x'} (ann/0001.json)") and len(out[0]) > 80
    assert '\\n  label\\n' in out[0]
    assert out[1] == "WARNING slow_disk {'mb_s': 3}"
    assert '\x1b' not in buffer.getvalue()


def test_a_line_break_in_a_message_stays_on_its_line() -> None:
    buffer = io.StringIO()
    logger = LineLogger(buffer)
    logger.write('error', 'first\nsecond\rthird')
    assert lines(buffer) == ['ERROR   first\\nsecond\\rthird']


def test_every_line_of_a_redirected_run_has_a_level() -> None:
    console, buffer = redirected()
    export_run(console)
    out = lines(buffer)
    assert out and all(LINE.match(line) for line in out), out


def test_plain_progress_is_a_line_per_tenth_with_the_count_and_the_time_left() -> None:
    buffer = io.StringIO()
    logger = LineLogger(buffer, quiet_for=0)
    for i in range(1, 101):
        logger.progress(i, 100, 'files')
        logger.progress(i, 100, 'overall')  # told by the step lines, not here
    out = lines(buffer)
    assert [line.split(' eta ')[0] for line in out] == [
        f'INFO    files {p}% ({p}/100)' for p in range(10, 101, 10)
    ]
    assert all(re.search(r' eta \d:\d\d:\d\d$', line) for line in out[:-1])


def test_plain_progress_of_a_quick_step_is_left_out() -> None:
    buffer = io.StringIO()
    logger = LineLogger(buffer)  # quiet for the first 2 s of a step
    for i in range(1, 101):
        logger.progress(i, 100, 'files')
    assert lines(buffer) == []


@pytest.mark.parametrize('make', [ConsoleLogger, LineLogger])
def test_an_unknown_level_is_refused(make: Any) -> None:
    with pytest.raises(ValueError, match="log level must be one of .* got 'loud'"):
        make(level='loud')


def test_debug_events_are_shown_at_level_debug_only() -> None:
    for level, expected in (
        ('info', ['INFO    shown']),
        ('debug', ['DEBUG   detail', 'INFO    shown']),
    ):
        buffer = io.StringIO()
        logger = LineLogger(buffer, level=level)
        logger.log('detail', {}, None, 'debug')
        logger.log('shown', {}, None, 'info')
        assert lines(buffer) == expected


def test_logging_step_adds_no_line_on_the_console_but_stays_in_the_log_file(
    tmp_path: Path,
) -> None:
    """One line per event: the console's ``> upload`` and ``ok upload``, not LoggingStep's
    ``step_start {...}`` too; the JSON-lines log keeps those, at level debug."""
    console, buffer = redirected()
    runtime = RecordingRuntime()
    runtime.loggers += [ConsoleLogger(console), JsonLinesLogger(tmp_path / 'run.jsonl')]
    run = run_workflow([LoggingStep(FunctionStep('upload'))], runtime=runtime)
    runtime.close()
    assert run.succeeded
    out = lines(buffer)
    assert [line for line in out if line.startswith('INFO    > ')] == ['INFO    > upload']
    assert not [line for line in out if 'step_start' in line or 'step_end' in line]
    records = [json.loads(line) for line in (tmp_path / 'run.jsonl').read_text().splitlines()]
    logged = [(r['event'], r['level']) for r in records if r['type'] == 'event']
    assert logged == [('step_start', 'debug'), ('step_end', 'debug')]


def test_json_lines_to_a_stream_leave_the_stream_open() -> None:
    stream = io.StringIO()
    logger = JsonLinesLogger(stream, run_id='r1')
    logger.log('hello', {'n': 1}, None, 'warning')
    logger.close()
    logger.log('again', {}, None, 'info')
    records = [json.loads(line) for line in lines(stream)]
    assert [(r['event'], r['level'], r['run_id']) for r in records] == [
        ('hello', 'warning', 'r1'),
        ('again', 'info', 'r1'),
    ]
    assert logger.path is None


# -- the run's result, in one shape -------------------------------------------------------------

KEYS = [
    'success',
    'status',
    'run_id',
    'error',
    'failed_step',
    'steps_total',
    'steps_executed',
    'steps_skipped',
    'steps_reused',
    'executed',
    'skipped',
    'reused',
    'rollback',
    'steps',
    'output',
]


def recorded(
    *steps: Any, completed: dict[str, StepResult] | None = None
) -> tuple[ResultRecorder, BaseException | None]:
    recorder = ResultRecorder()
    registry: StepRegistry[Any] = StepRegistry()
    for step in steps:
        registry.register(step)
    context = BaseStepContext(runtime_ctx=RecordingRuntime(run_id='r1'))
    try:
        Orchestrator(registry, context, listeners=[recorder], completed=completed).execute()
    except BaseException as error:
        return recorder, error
    return recorder, None


def test_a_successful_result() -> None:
    recorder, error = recorded(
        FunctionStep('a', skip=lambda c: 'nothing to do'),
        FunctionStep('b'),
        FunctionStep('c'),
        completed={'b': StepResult(data={'n': 1})},
    )
    assert error is None
    result = recorder.result('r1', steps={'c': {'done': True}}).to_dict()
    assert list(result) == KEYS
    assert result == {
        'success': True,
        'status': 'succeeded',
        'run_id': 'r1',
        'error': None,
        'failed_step': None,
        'steps_total': 3,
        'steps_executed': 1,
        'steps_skipped': 1,
        'steps_reused': 1,
        'executed': ['c'],
        'skipped': {'a': 'nothing to do'},
        'reused': ['b'],
        'rollback': None,
        'steps': {'c': {'done': True}},
        'output': None,
    }


def test_a_failed_result_says_where_why_and_what_was_undone() -> None:
    def stubborn(context: Any, result: StepResult) -> None:
        raise OSError('disk gone')

    recorder, error = recorded(
        FunctionStep('prepare'),
        FunctionStep('store', rollback=lambda c, r: None),
        FunctionStep('index', rollback=stubborn),
        FunctionStep('verify', execute=refuse),
    )
    result = recorder.result('r1', error=error)
    assert result.success is False and result.status == 'failed'
    assert result.failed_step == 'verify'
    assert result.error == 'ConnectionError: checksum service unreachable'
    assert result.executed == ('prepare', 'store', 'index')
    assert result.rollback == RollbackOutcome(
        'rollback_failed', ('store',), ("rollback of step 'index' failed: OSError: disk gone",)
    )
    assert result.steps == {}
    assert list(result.to_dict()) == KEYS


def test_a_cancelled_result() -> None:
    runtime = RecordingRuntime()

    def cancel(context: BaseStepContext) -> None:
        runtime.cancel('SIGTERM')
        context.raise_if_cancelled()

    recorder = ResultRecorder()
    runtime.loggers.append(recorder)
    run = run_workflow([FunctionStep('work', execute=cancel)], runtime=runtime)
    result = recorder.result(runtime.run_id, error=run.error)
    assert result.status == 'cancelled' and result.failed_step == 'work'
    assert result.rollback == RollbackOutcome('rolled_back')


def test_a_run_that_never_started_is_reported_from_its_error() -> None:
    result = ResultRecorder().result('r1', error=ValueError('bad setup'))
    assert result == RunResult(False, 'failed', 'r1', error='ValueError: bad setup')
    stopped = ResultRecorder().result('r1', error=KeyboardInterrupt())
    assert stopped.status == 'cancelled'


def test_a_plain_mode_result_carries_what_execute_returned() -> None:
    recorder = ResultRecorder()
    result = recorder.returned({'rows': 3}, 'r1')
    assert list(result) == KEYS
    assert result['output'] == {'rows': 3} and result['success'] is True
    assert result['run_id'] == 'r1' and result['steps_total'] == 0
