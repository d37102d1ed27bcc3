"""The loggers: MemoryLogger, JsonLinesLogger and ConsoleLogger, alone and in a real run."""

from __future__ import annotations

import io
import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from rich.console import Console

from synapse_sdk.plugins import BaseUploadAction
from synapse_sdk.plugins.actions.upload import UploadContext
from synapse_sdk.plugins.pipelines.steps import BaseStep, StepRegistry, StepResult
from synapse_sdk.plugins.steps import (
    BaseStepContext,
    RetryPolicy,
    RollbackEnded,
    RunCancelledError,
    RunEvent,
    RunListener,
    StepEnded,
    StepInfo,
    StepStarted,
)
from synapse_sdk.runtime import ConsoleLogger, JsonLinesLogger, MemoryLogger, RuntimeContext
from synapse_sdk.testing import (
    FakeClock,
    FaultyStep,
    FunctionStep,
    RecordingRuntime,
    run_workflow,
)

ANSI = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')


class NoParams(BaseModel):
    pass


class Step(BaseStep[UploadContext]):
    def __init__(
        self,
        name: str,
        *,
        fail: str | None = None,
        skip: bool = False,
        rollback_error: str | None = None,
        work: Any = None,
    ) -> None:
        self._name = name
        self.fail = fail
        self.skip = skip
        self.rollback_error = rollback_error
        self.work = work

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return 1.0

    def can_skip(self, context: UploadContext) -> bool:
        return self.skip

    def execute(self, context: UploadContext) -> StepResult:
        if self.work is not None:
            self.work(context)
        if self.fail is not None:
            raise ValueError(self.fail)
        return StepResult(data={'name': self._name})

    def rollback(self, context: UploadContext, result: StepResult) -> None:
        if self.rollback_error is not None:
            raise RuntimeError(self.rollback_error)


def failing_action() -> type[BaseUploadAction[NoParams]]:
    """'prepare' succeeds (and cannot be undone), 'optional' is skipped, 'store' fails."""

    def work(context: UploadContext) -> None:
        context.log('stored', {'n': 2})
        context.set_metrics({'files': 2}, 'upload')

    class Act(BaseUploadAction[NoParams]):
        def setup_steps(self, registry: StepRegistry[UploadContext]) -> None:
            registry.register(Step('prepare', rollback_error='cannot undo'))
            registry.register(Step('optional', skip=True))
            registry.register(Step('store', fail='bad', work=work))

    return Act


def ok_action() -> type[BaseUploadAction[NoParams]]:
    def work(context: UploadContext) -> None:
        context.set_progress(1, 2, 'files')
        context.set_progress(2, 2, 'files')

    class Act(BaseUploadAction[NoParams]):
        def setup_steps(self, registry: StepRegistry[UploadContext]) -> None:
            registry.register(Step('one', work=work))
            registry.register(Step('two'))

    return Act


def read_lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding='utf-8')
    assert text.endswith('\n')
    return [json.loads(line) for line in text.splitlines()]


def strip_common(
    records: list[dict[str, Any]], run_id: str | None, durations: list[Any] | None = None
) -> list[dict[str, Any]]:
    """Check and drop ``ts``/``run_id`` (and step durations) so the rest compares exactly."""
    out = []
    for record in records:
        record = dict(record)
        stamp = datetime.fromisoformat(record.pop('ts'))
        assert stamp.utcoffset() is not None
        assert record.pop('run_id') == run_id
        if record['type'] == 'step_end':
            duration = record.pop('duration_seconds')
            if durations is not None:
                durations.append(duration)
        out.append(record)
    return out


# -- MemoryLogger ---------------------------------------------------------------------


def test_memory_logger_records_a_failed_run() -> None:
    logger = MemoryLogger()
    ctx = RuntimeContext(logger=logger)
    with pytest.raises(RuntimeError):
        failing_action().dispatch({}, ctx)
    assert logger.lifecycle == [
        ('run_start', None),
        ('step_start', 'prepare'),
        ('step_end', 'prepare'),
        ('step_skip', 'optional'),
        ('step_start', 'store'),
        ('step_failed', 'store'),
        ('rollback_start', 'store'),
        ('rollback_end', 'store'),
        ('rollback_start', 'prepare'),
        ('rollback_failed', 'prepare'),
        ('run_end', 'failed'),
    ]
    assert logger.event_names() == ['stored']
    assert logger.metric_updates == [({'files': 2}, 'upload')]
    overall = logger.progress_of('overall')
    assert overall and overall[-1] < 100


def test_memory_logger_records_a_successful_run() -> None:
    logger = MemoryLogger()
    ok_action().dispatch({}, RuntimeContext(logger=logger))
    assert logger.progress_of('files') == [50.0, 100.0]
    assert logger.progress_of('overall')[-1] == 100.0
    assert logger.lifecycle[-1] == ('run_end', 'succeeded')
    assert logger.closed is False


# -- JsonLinesLogger --------------------------------------------------------------------


def test_jsonl_events_and_metrics(tmp_path: Path) -> None:
    path = tmp_path / 'deep' / 'dir' / 'run.jsonl'
    logger = JsonLinesLogger(path, run_id='r1')
    assert not path.exists()  # opened on first write
    ctx = RuntimeContext(logger=logger)
    ctx.log('hello', {'n': 1, 'where': Path('/a/b')}, 'f.txt', level='warning')
    ctx.log('bare')
    ctx.set_metrics({'loss': 0.25, 'epoch': 3}, 'train')
    ctx.close()
    assert strip_common(read_lines(path), 'r1') == [
        {
            'type': 'event',
            'event': 'hello',
            'level': 'warning',
            'data': {'n': 1, 'where': '/a/b'},
            'file': 'f.txt',
        },
        {'type': 'event', 'event': 'bare', 'level': 'info', 'data': {}},
        {'type': 'metrics', 'category': 'train', 'value': {'loss': 0.25, 'epoch': 3}},
    ]


def test_jsonl_progress_only_when_the_whole_percent_changes(tmp_path: Path) -> None:
    path = tmp_path / 'run.jsonl'
    logger = JsonLinesLogger(path)
    ctx = RuntimeContext(logger=logger)
    for i in range(1001):
        ctx.set_progress(i, 1000, 'upload')
    ctx.set_progress(0, 4, 'other')
    ctx.set_progress(0, 8, 'other')  # still 0%
    ctx.set_progress(1, 4)  # overall
    ctx.close()
    records = strip_common(read_lines(path), None)
    upload = [r for r in records if r['category'] == 'upload']
    assert [r['percent'] for r in upload] == list(range(101))
    assert upload[1] == {
        'type': 'progress',
        'category': 'upload',
        'current': 10,
        'total': 1000,
        'percent': 1,
    }
    assert [r for r in records if r['category'] != 'upload'] == [
        {'type': 'progress', 'category': 'other', 'current': 0, 'total': 4, 'percent': 0},
        {'type': 'progress', 'category': 'overall', 'current': 1, 'total': 4, 'percent': 25},
    ]


def test_jsonl_step_lifecycle_of_a_failed_run(tmp_path: Path) -> None:
    path = tmp_path / 'run.jsonl'
    ctx = RuntimeContext(logger=JsonLinesLogger(path, run_id='r2'))
    with pytest.raises(RuntimeError):
        failing_action().dispatch({}, ctx)
    ctx.close()
    durations: list[Any] = []
    records = strip_common(read_lines(path), 'r2', durations)
    plan = [
        {'step': name, 'index': i, 'weight': 1.0, 'can_rollback': True}
        for i, name in enumerate(['prepare', 'optional', 'store'])
    ]
    assert [r for r in records if r['type'] != 'progress'] == [
        {'type': 'run_start', 'steps': plan},
        {'type': 'step_start', 'step': 'prepare', 'index': 0},
        {'type': 'step_end', 'step': 'prepare', 'success': True, 'error': None},
        {'type': 'step_skip', 'step': 'optional', 'reason': None},
        {'type': 'step_start', 'step': 'store', 'index': 2},
        {'type': 'event', 'event': 'stored', 'level': 'info', 'data': {'n': 2}},
        {'type': 'metrics', 'category': 'upload', 'value': {'files': 2}},
        {'type': 'step_end', 'step': 'store', 'success': False, 'error': 'ValueError: bad'},
        {'type': 'rollback_start', 'step': 'store'},
        {'type': 'rollback', 'step': 'store', 'error': None},
        {'type': 'rollback_start', 'step': 'prepare'},
        {'type': 'rollback', 'step': 'prepare', 'error': 'cannot undo'},
        {
            'type': 'run_end',
            'success': False,
            'failed_step': 'store',
            'rollback_errors': ["rollback of step 'prepare' failed: RuntimeError: cannot undo"],
            'cancelled': False,
            'error': 'ValueError: bad',
        },
    ]
    overall = [r['percent'] for r in records if r['type'] == 'progress']
    assert overall == [33, 66]
    # both steps were timed: the one that succeeded and the one that raised
    assert all(isinstance(d, float) and d >= 0 for d in durations)
    assert len(durations) == 2


def test_jsonl_run_end_of_a_successful_run(tmp_path: Path) -> None:
    path = tmp_path / 'run.jsonl'
    ctx = RuntimeContext(logger=JsonLinesLogger(path, run_id='ok'))
    ok_action().dispatch({}, ctx)
    ctx.close()
    durations: list[Any] = []
    records = strip_common(read_lines(path), 'ok', durations)
    assert len(durations) == 2
    assert all(isinstance(d, float) and d >= 0 for d in durations)
    assert records[-1] == {
        'type': 'run_end',
        'success': True,
        'failed_step': None,
        'rollback_errors': [],
        'cancelled': False,
        'error': None,
    }
    files = [r['percent'] for r in records if r['type'] == 'progress' and r['category'] == 'files']
    assert files == [50, 100]
    overall = [
        r['percent'] for r in records if r['type'] == 'progress' and r['category'] == 'overall'
    ]
    assert overall[-1] == 100


def test_jsonl_appends_and_two_loggers_share_a_file(tmp_path: Path) -> None:
    path = tmp_path / 'shared.jsonl'
    path.write_text(json.dumps({'type': 'old'}) + '\n', encoding='utf-8')
    first = JsonLinesLogger(path, run_id='a')
    second = JsonLinesLogger(path, run_id='b')
    first.log('one', {}, None, 'info')
    second.log('two', {}, None, 'info')
    first.log('three', {}, None, 'info')
    first.close()
    second.close()
    first.log('four', {}, None, 'info')  # reopens after close, still appending
    first.close()
    records = read_lines(path)
    assert records[0] == {'type': 'old'}
    assert [(r['run_id'], r['event']) for r in records[1:]] == [
        ('a', 'one'),
        ('b', 'two'),
        ('a', 'three'),
        ('a', 'four'),
    ]


def test_jsonl_close_without_writing_creates_nothing(tmp_path: Path) -> None:
    logger = JsonLinesLogger(tmp_path / 'never.jsonl')
    logger.close()
    logger.close()
    assert not (tmp_path / 'never.jsonl').exists()


# -- ConsoleLogger ----------------------------------------------------------------------


def make_console() -> tuple[Console, io.StringIO]:
    """A console that is not a terminal (as stderr redirected to a file): plain lines."""
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=120), buffer


def make_terminal(width: int = 120) -> tuple[Console, io.StringIO]:
    """A console that is a terminal, without colours: live bars."""
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=width, color_system=None), buffer


def screen(buffer: io.StringIO) -> list[str]:
    """Every line a terminal console wrote (each redraw of the bars included), without
    the control sequences."""
    return [line.rstrip() for line in ANSI.sub('', buffer.getvalue()).splitlines()]


def lines(buffer: io.StringIO) -> list[str]:
    return [line.rstrip() for line in buffer.getvalue().splitlines()]


def test_console_event_lines() -> None:
    console, buffer = make_console()
    ctx = RuntimeContext(logger=ConsoleLogger(console))
    ctx.log('hello', {'n': 1})
    ctx.log('bare')
    ctx.log('with_file', {'a': 'b'}, 'data/x.csv', level='warning')
    ctx.log('oops', {'code': 7}, level='error')
    ctx.close()
    assert lines(buffer) == [
        "INFO    hello {'n': 1}",
        'INFO    bare',
        "WARNING with_file {'a': 'b'} (data/x.csv)",
        "ERROR   oops {'code': 7}",
    ]
    assert '\x1b' not in buffer.getvalue()


def test_console_long_event_data_is_shortened() -> None:
    console, buffer = make_console()
    ConsoleLogger(console).log('big', {'k': 'a' * 1000}, None, 'info')
    text = buffer.getvalue().replace('\n', '')
    assert 'a' * 1000 not in text
    assert text.endswith('...')
    assert len(text) == len('INFO    big ') + 300


def test_console_prints_markup_in_event_data_literally() -> None:
    console, buffer = make_console()
    logger = ConsoleLogger(console)
    logger.log('ev', {'x': '[bold]hi[/bold]'}, None, 'info')
    logger.log('[red]name[/red]', {}, '[/x].txt', 'warning')
    logger.log('closing', {'y': '[/x]'}, None, 'error')
    assert lines(buffer) == [
        "INFO    ev {'x': '[bold]hi[/bold]'}",
        'WARNING [red]name[/red] ([/x].txt)',
        "ERROR   closing {'y': '[/x]'}",
    ]


def test_console_event_name_ending_in_backslash() -> None:
    console, buffer = make_console()
    ConsoleLogger(console).log('dir\\', {}, None, 'warning')
    assert lines(buffer) == ['WARNING dir\\']


def test_console_metrics_line() -> None:
    console, buffer = make_console()
    ConsoleLogger(console).metrics({'loss': 0.123456, 'epoch': 3, 'name': 'm'}, 'train')
    assert lines(buffer) == ['INFO    metrics [train] loss=0.1235 epoch=3 name=m']


def test_console_metrics_category_with_markup_is_printed_literally() -> None:
    console, buffer = make_console()
    logger = ConsoleLogger(console)
    logger.metrics({'a': 1}, '[/x]')
    logger.metrics({'b': '[bold]2[/bold]'}, 'val')
    logger.metrics({'c': 3}, '/x')  # with the brackets around it, this reads as a closing tag
    assert lines(buffer) == [
        'INFO    metrics [[/x]] a=1',
        'INFO    metrics [val] b=[bold]2[/bold]',
        'INFO    metrics [/x] c=3',
    ]


def test_console_step_lines_of_a_failed_run() -> None:
    console, buffer = make_console()
    ctx = RuntimeContext(logger=ConsoleLogger(console))
    with pytest.raises(RuntimeError):
        failing_action().dispatch({}, ctx)
    ctx.close()
    out = lines(buffer)
    assert out[0] == 'INFO    run 3 steps: prepare, optional, store'
    assert out[1] == 'INFO    > prepare'
    assert out[2].startswith('INFO    ok prepare (') and out[2].endswith('s)')
    # (the metrics line has tests of its own)
    assert [line for line in out[3:] if 'metrics' not in line] == [
        'INFO    skipped optional',
        'INFO    > store',
        "INFO    stored {'n': 2}",
        'ERROR   failed store: ValueError: bad',
        'WARNING rolling back store',
        'WARNING rolling back prepare',
        'ERROR   rollback of prepare failed: cannot undo',
        'ERROR   run failed at store; rolled back: store; 1 rollback error (see above)',
    ]


def ended(info: StepInfo, result: StepResult) -> StepEnded:
    return StepEnded('r1', 0.0, info, result, {}, 'BaseStepContext')


def test_console_step_names_with_markup_are_literal() -> None:
    console, buffer = make_console()
    logger = ConsoleLogger(console)
    info = StepInfo(0, '[b]x[/b]', 1.0)
    logger.on_event(StepStarted('r1', 0.0, info))
    logger.on_event(ended(info, StepResult(duration_seconds=1.5)))
    logger.on_event(ended(info, StepResult(success=False, error='[/oops]')))
    logger.on_event(RollbackEnded('r1', 0.0, info, ValueError('[/z]')))
    assert lines(buffer) == [
        'INFO    > [b]x[/b]',
        'INFO    ok [b]x[/b] (1.50s)',
        'ERROR   failed [b]x[/b]: [/oops]',
        'ERROR   rollback of [b]x[/b] failed: [/z]',
    ]


def test_console_progress_bar_shows_the_final_value_on_close() -> None:
    console, buffer = make_terminal()
    ctx = RuntimeContext(logger=ConsoleLogger(console, min_interval=10))
    ctx.set_progress(1, 10, 'upload')
    ctx.set_progress(5, 10, 'upload')
    ctx.set_progress(2, 4)
    ctx.close()
    out = screen(buffer)
    upload = [line for line in out if line.startswith('upload')]
    overall = [line for line in out if line.startswith('overall')]
    assert ' 50% ' in upload[-1] and '5/10' in upload[-1]
    assert ' 50% ' in overall[-1]


@pytest.fixture
def draws(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float, float]]:
    calls: list[tuple[str, float, float]] = []

    def draw(self: ConsoleLogger, category: str, current: float, total: float) -> None:
        calls.append((category, current, total))

    monkeypatch.setattr(ConsoleLogger, '_draw', draw)
    return calls


def test_console_throttles_progress(draws: list[tuple[str, float, float]]) -> None:
    console, _ = make_terminal()
    logger = ConsoleLogger(console, min_interval=10)
    for i in range(10_000):
        logger.progress(i, 20_000, 'upload')
    assert 1 <= len(draws) <= 3
    assert draws[0] == ('upload', 0, 20_000)
    logger.close()
    assert draws[-1] == ('upload', 9_999, 20_000)
    assert len(draws) <= 4


def test_console_draws_completion_at_once(draws: list[tuple[str, float, float]]) -> None:
    console, _ = make_terminal()
    logger = ConsoleLogger(console, min_interval=10)
    logger.progress(1, 100, 'a')
    logger.progress(2, 100, 'a')
    logger.progress(100, 100, 'a')
    assert draws == [('a', 1, 100), ('a', 100, 100)]
    logger.close()
    assert draws == [('a', 1, 100), ('a', 100, 100)]  # nothing left pending


def test_console_draws_the_last_value_of_every_category_on_close(
    draws: list[tuple[str, float, float]],
) -> None:
    console, _ = make_terminal()
    logger = ConsoleLogger(console, min_interval=10)
    for i in range(500):
        logger.progress(i, 1000, 'a')
        logger.progress(i * 2, 2000, 'b')
    logger.close()
    last = {}
    for category, current, total in draws:
        last[category] = (current, total)
    assert last == {'a': (499, 1000), 'b': (998, 2000)}
    # one redraw right away (it shows 'a', the only value reported yet), then the
    # bars are redrawn at most once per min_interval: the final value of each on close
    assert draws[0] == ('a', 0, 1000)
    assert sorted(draws[1:]) == [('a', 499, 1000), ('b', 998, 2000)]


def test_console_flushes_pending_progress_at_step_end(
    draws: list[tuple[str, float, float]],
) -> None:
    console, buffer = make_terminal()
    logger = ConsoleLogger(console, min_interval=10)
    logger.progress(0, 10, 'files')
    logger.progress(7, 10, 'files')
    assert draws == [('files', 0, 10)]
    logger.on_event(ended(StepInfo(0, 's', 1.0), StepResult(duration_seconds=0.25)))
    assert draws == [('files', 0, 10), ('files', 7, 10)]
    assert screen(buffer)[-1] == 'ok s (0.25s)'


def test_console_run_draws_every_category_to_its_end(
    draws: list[tuple[str, float, float]],
) -> None:
    console, _ = make_terminal()
    ctx = RuntimeContext(logger=ConsoleLogger(console, min_interval=10))
    ok_action().dispatch({}, ctx)
    ctx.close()
    last = {}
    for category, current, total in draws:
        last[category] = current / total
    assert last == {'files': 1.0, 'overall': 1.0}


def test_console_shows_the_overall_progress_reached_at_a_step_end_during_the_next_step() -> None:
    """The overall figure reported just after a step's end (bars drawn less than
    ``min_interval`` ago, so it is kept pending) is drawn when the next step starts: a step
    that reports no progress of its own does not run with the bar stuck behind."""
    buffer = io.StringIO()
    logger = ConsoleLogger(
        Console(file=buffer, force_terminal=True, width=100, color_system=None), min_interval=0.1
    )
    runtime = RecordingRuntime()
    runtime.loggers.append(logger)
    shown: list[str] = []

    def discover(context: BaseStepContext) -> None:
        context.set_progress(1, 4, 'files')  # draws the bars now

    def long_step(context: BaseStepContext) -> None:
        text = ANSI.sub('', buffer.getvalue())
        shown.extend(re.findall(r'overall\s+\S*\s*(\d+)%', text))

    try:
        run = run_workflow(
            [
                FunctionStep('discover', execute=discover),
                FunctionStep('fit', execute=long_step),
                FunctionStep('save'),
            ],
            runtime=runtime,
        )
    finally:
        logger.close()
    assert run.succeeded, run.error
    assert run.progress == [8, 33, 66, 100]
    assert shown and shown[-1] == '33', f'overall bar while fit runs: {shown}'


def test_console_draws_pending_progress_at_step_start(
    draws: list[tuple[str, float, float]],
) -> None:
    console, buffer = make_terminal()
    logger = ConsoleLogger(console, min_interval=10)
    logger.progress(1, 10, 'overall')
    logger.progress(4, 10, 'overall')  # throttled: pending
    assert draws == [('overall', 1, 10)]
    logger.on_event(StepStarted('r1', 0.0, StepInfo(1, 'next', 1.0)))
    assert draws == [('overall', 1, 10), ('overall', 4, 10)]
    assert screen(buffer)[-1] == '> next'


def run_logged(
    tmp_path: Path, steps: list[Any], listeners: Any = None
) -> tuple[Any, list[dict[str, Any]], str]:
    """Run ``steps`` with a JSON-lines and a console logger; (run, JSON records, console)."""
    path = tmp_path / 'run.jsonl'
    clock = FakeClock()
    runtime = RecordingRuntime(sleep=clock.sleep)
    buffer = io.StringIO()
    runtime.loggers += [
        JsonLinesLogger(path, 'r1'),
        ConsoleLogger(Console(file=buffer, width=200)),
    ]
    run = run_workflow(steps, runtime=runtime, listeners=listeners(runtime) if listeners else ())
    runtime.close()
    records = [json.loads(line) for line in path.read_text(encoding='utf-8').splitlines()]
    return run, records, buffer.getvalue()


def test_a_retried_step_leaves_a_trace_in_the_logs(tmp_path: Path) -> None:
    """A step that failed twice with ConnectionError and succeeded on its third attempt:
    the console, the JSON-lines record and the MemoryLogger all say it was retried, and why."""
    flaky = FaultyStep(
        FunctionStep('upload', retry=RetryPolicy(max_attempts=3, jitter=0)),
        fail_on_attempts=(1, 2),
    )
    run, records, console = run_logged(tmp_path, [flaky])
    assert run.succeeded, run.error
    assert run.context.step_results[0].attempts == 3
    assert 'ConnectionError' in console, console
    traces = [
        r
        for r in records
        if r.get('step') == 'upload' and r['type'] != 'step_end' and 'ConnectionError' in str(r)
    ]
    assert traces, records
    # what each logger writes exactly
    retries = [line for line in console.splitlines() if line.startswith('WARNING retry ')]
    assert len(retries) == 2
    assert retries[0].startswith('WARNING retry upload (attempt 1 failed: ConnectionError: ')
    assert retries[0].endswith('; next in 1.0s)')
    assert retries[1].endswith('; next in 2.0s)')
    steps = [
        {k: v for k, v in r.items() if k not in ('ts', 'run_id', 'error')}
        for r in records
        if r['type'] == 'step_retry'
    ]
    assert steps == [
        {'type': 'step_retry', 'step': 'upload', 'attempt': 1, 'delay': 1.0},
        {'type': 'step_retry', 'step': 'upload', 'attempt': 2, 'delay': 2.0},
    ]
    assert all(r['error'].startswith('ConnectionError: ') for r in records if 'attempt' in r)
    assert run.runtime.memory.lifecycle == [
        ('run_start', None),
        ('step_start', 'upload'),
        ('step_retry', 'upload'),
        ('step_retry', 'upload'),
        ('step_end', 'upload'),
        ('run_end', 'succeeded'),
    ]


def test_jsonl_run_end_of_a_cancelled_run_says_why(tmp_path: Path) -> None:
    """A run cancelled between two steps: its ``run_end`` record says it was cancelled, and why."""

    class CancelAfterA(RunListener):
        def __init__(self, runtime: RecordingRuntime) -> None:
            self.runtime = runtime

        def on_event(self, event: RunEvent) -> None:
            if isinstance(event, StepEnded) and event.step.name == 'a':
                self.runtime.cancel('user pressed Ctrl-C')

    run, records, _ = run_logged(
        tmp_path, [FunctionStep('a'), FunctionStep('b')], lambda rt: [CancelAfterA(rt)]
    )
    assert isinstance(run.error, RunCancelledError)
    run_end = records[-1]
    assert run_end['type'] == 'run_end'
    assert 'user pressed Ctrl-C' in json.dumps(run_end), run_end
    assert run_end['cancelled'] is True
    assert run_end['success'] is False
    assert 'user pressed Ctrl-C' in run_end['error']


def test_jsonl_lines_are_strict_json_even_for_nan_metrics(tmp_path: Path) -> None:
    """A diverged training's loss=nan (grad_norm=inf) is written as null, not as a bare
    ``NaN``/``Infinity`` that jq, JavaScript and most log pipelines reject."""

    def diverge(context: BaseStepContext) -> None:
        context.set_metrics({'loss': math.nan, 'grad_norm': math.inf, 'epoch': 3}, 'train')

    path = tmp_path / 'run.jsonl'
    runtime = RecordingRuntime()
    runtime.loggers.append(JsonLinesLogger(path, 'r1'))
    run = run_workflow([FunctionStep('fit', execute=diverge)], runtime=runtime)
    runtime.close()
    assert run.succeeded, run.error

    def refuse(name: str) -> Any:
        raise ValueError(f'not JSON: {name}')

    records = [
        json.loads(line, parse_constant=refuse)
        for line in path.read_text(encoding='utf-8').splitlines()
    ]
    [metrics] = [r for r in records if r['type'] == 'metrics']
    assert metrics['value'] == {'loss': None, 'grad_norm': None, 'epoch': 3}


def test_jsonl_non_finite_floats_anywhere_in_a_record_become_null(tmp_path: Path) -> None:
    path = tmp_path / 'run.jsonl'
    logger = JsonLinesLogger(path)
    data = {'nested': {'xs': [1.5, -math.inf, (math.nan, 2)]}, math.inf: 'key', 'p': Path('/a')}
    logger.log('odd', data, None, 'info')
    logger.log('fine', {'x': 0.5}, None, 'info')
    logger.close()

    def refuse(name: str) -> Any:
        raise ValueError(f'not JSON: {name}')

    odd, fine = [
        json.loads(line, parse_constant=refuse)
        for line in path.read_text(encoding='utf-8').splitlines()
    ]
    assert odd['data'] == {'nested': {'xs': [1.5, None, [None, 2]]}, 'inf': 'key', 'p': '/a'}
    assert fine['data'] == {'x': 0.5}
    xs = data['nested']['xs']  # the caller's data is left as it was
    assert xs[1] == -math.inf and math.isnan(xs[2][0])
