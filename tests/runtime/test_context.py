"""RuntimeContext: defaults, validation, fan-out to several loggers."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.runtime import (
    ConsoleLogger,
    JsonLinesLogger,
    Logger,
    MemoryLogger,
    RuntimeContext,
)
from synapse_sdk.runtime.loggers import LoggedEvent


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / 'home'
    monkeypatch.setenv('SYNAPSE_HOME', str(path))
    return path


def test_no_arguments_gives_working_defaults(home: Path) -> None:
    ctx = RuntimeContext()
    assert len(ctx.loggers) == 1
    assert isinstance(ctx.loggers[0], ConsoleLogger)
    assert ctx.listeners == ctx.loggers
    assert re.fullmatch(r'[0-9a-f]{12}', ctx.run_id)
    assert RuntimeContext(logger=[]).run_id != ctx.run_id
    ctx.close()


def test_env_is_a_copy_of_the_process_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv('SYNAPSE_TEST_VAR', 'one')
    ctx = RuntimeContext(logger=[])
    assert ctx.env == dict(os.environ)
    assert ctx.env['SYNAPSE_TEST_VAR'] == 'one'
    assert type(ctx.env) is dict
    ctx.env['SYNAPSE_TEST_VAR'] = 'changed'
    assert os.environ['SYNAPSE_TEST_VAR'] == 'one'
    monkeypatch.setenv('SYNAPSE_TEST_VAR', 'two')
    assert ctx.env['SYNAPSE_TEST_VAR'] == 'changed'


def test_given_env_and_run_id_are_kept() -> None:
    source = {'A': '1'}
    ctx = RuntimeContext(logger=[], env=source, run_id='run-7')
    assert ctx.env == {'A': '1'}
    source['A'] = '2'
    assert ctx.env == {'A': '1'}
    assert ctx.run_id == 'run-7'


def test_job_id_is_a_deprecated_name_of_run_id() -> None:
    with pytest.warns(DeprecationWarning, match=r'RuntimeContext\(run_id=\.\.\.\)') as caught:
        ctx = RuntimeContext(logger=[], job_id='old-7')
    assert caught[0].filename == __file__  # the warning points at the caller
    assert ctx.run_id == 'old-7'
    with pytest.warns(DeprecationWarning, match='RuntimeContext.job_id is now run_id'):
        assert ctx.job_id == 'old-7'
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match='disagree'):
        RuntimeContext(logger=[], run_id='a', job_id='b')
    assert RuntimeContext([], None, None, 'positional').run_id == 'positional'


def test_client_is_a_lazy_local_backend_under_synapse_home(home: Path) -> None:
    ctx = RuntimeContext(logger=[])
    assert not home.exists()  # nothing created before the client is used
    client = ctx.client
    assert isinstance(client, LocalBackendClient)
    assert client.root == home / 'storage'
    assert ctx.client is client
    assert not home.exists()  # the client itself creates its root on first use
    assert client.list_files() == []
    assert (home / 'storage').is_dir()


def test_client_follows_synapse_home_at_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv('SYNAPSE_HOME', str(tmp_path / 'first'))
    ctx = RuntimeContext(logger=[])
    monkeypatch.setenv('SYNAPSE_HOME', str(tmp_path / 'second'))
    assert ctx.client.root == tmp_path / 'second' / 'storage'


def test_given_client_is_used() -> None:
    client = object()
    assert RuntimeContext(logger=[], client=client).client is client


def test_logger_argument_forms() -> None:
    one = MemoryLogger()
    two = MemoryLogger()
    assert RuntimeContext(logger=one).loggers == [one]
    assert RuntimeContext(logger=[one, two]).loggers == [one, two]
    assert RuntimeContext(logger=(one,)).loggers == [one]
    assert RuntimeContext(logger=[]).loggers == []


@pytest.mark.parametrize('bad', [[object()], [MemoryLogger(), 'console']])
def test_non_logger_is_a_type_error(bad: list[Any]) -> None:
    with pytest.raises(TypeError, match='logger must be a Logger or a sequence of Loggers'):
        RuntimeContext(logger=bad)


@pytest.mark.parametrize('level', ['debug', 'info', 'warning', 'error'])
def test_log_levels(level: str) -> None:
    logger = MemoryLogger()
    RuntimeContext(logger=logger).log('ev', {'a': 1}, 'x.txt', level=level)
    assert logger.events == [LoggedEvent('ev', {'a': 1}, 'x.txt', level)]


@pytest.mark.parametrize('level', ['INFO', 'critical', 'warn', ''])
def test_bad_log_level_is_a_value_error(level: str) -> None:
    logger = MemoryLogger()
    with pytest.raises(ValueError, match='log level must be one of'):
        RuntimeContext(logger=logger).log('ev', level=level)
    assert logger.events == []


def test_log_defaults() -> None:
    logger = MemoryLogger()
    RuntimeContext(logger=logger).log('bare')
    assert logger.events == [LoggedEvent('bare', {}, None, 'info')]


@pytest.mark.parametrize(
    ('current', 'total', 'message'),
    [
        (1, 0, 'total must be > 0, got 0'),
        (0, -5, 'total must be > 0, got -5'),
        (0, math.nan, 'total must be > 0, got nan'),
        (-1, 10, 'current must be within 0..10, got -1'),
        (11, 10, 'current must be within 0..10, got 11'),
        (math.nan, 10, 'current must be within 0..10, got nan'),
    ],
)
def test_set_progress_rejects_bad_figures(current: float, total: float, message: str) -> None:
    logger = MemoryLogger()
    with pytest.raises(ValueError, match=re.escape(message)):
        RuntimeContext(logger=logger).set_progress(current, total, 'x')
    assert logger.progress_updates == []


def test_set_progress_without_category_is_overall() -> None:
    logger = MemoryLogger()
    ctx = RuntimeContext(logger=logger)
    ctx.set_progress(3, 10)
    ctx.set_progress(0, 10)
    ctx.set_progress(10, 10, 'upload')
    assert logger.progress_updates == [(3, 10, 'overall'), (0, 10, 'overall'), (10, 10, 'upload')]
    assert logger.progress_of('overall') == [30.0, 0.0]
    assert logger.progress_of('upload') == [100.0]
    assert logger.progress_of('missing') == []


@pytest.mark.parametrize('value', [[('a', 1)], 'loss=1', None, 3.0])
def test_set_metrics_needs_a_dict(value: Any) -> None:
    logger = MemoryLogger()
    with pytest.raises(TypeError, match='set_metrics: value must be a dict'):
        RuntimeContext(logger=logger).set_metrics(value, 'train')
    assert logger.metric_updates == []


def test_every_logger_gets_the_same_events() -> None:
    loggers = [MemoryLogger(), MemoryLogger(), MemoryLogger()]
    ctx = RuntimeContext(logger=loggers)
    ctx.log('start', {'n': 1}, level='debug')
    ctx.set_progress(1, 2, 'cat')
    ctx.set_metrics({'loss': 0.5}, 'train')
    ctx.close()
    for logger in loggers:
        assert logger.events == [LoggedEvent('start', {'n': 1}, None, 'debug')]
        assert logger.progress_updates == [(1, 2, 'cat')]
        assert logger.metric_updates == [({'loss': 0.5}, 'train')]
        assert logger.closed is True


def test_context_manager_closes_the_loggers() -> None:
    logger = MemoryLogger()
    with RuntimeContext(logger=logger) as ctx:
        assert isinstance(ctx, RuntimeContext)
        assert logger.closed is False
    assert logger.closed is True


def test_context_manager_closes_on_error() -> None:
    logger = MemoryLogger()
    with pytest.raises(KeyError), RuntimeContext(logger=logger):
        raise KeyError('x')
    assert logger.closed is True


def test_base_logger_is_a_no_op() -> None:
    logger = Logger()
    ctx = RuntimeContext(logger=logger)
    ctx.log('a', {'b': 1})
    ctx.set_progress(1, 1)
    ctx.set_metrics({}, 'c')
    ctx.close()


def test_memory_logger_keeps_copies() -> None:
    logger = MemoryLogger()
    ctx = RuntimeContext(logger=logger)
    data = {'n': 1}
    metrics = {'loss': 1.0}
    ctx.log('ev', data)
    ctx.set_metrics(metrics, 'train')
    data['n'] = 2
    metrics['loss'] = 2.0
    assert logger.events[0].data == {'n': 1}
    assert logger.metric_updates == [({'loss': 1.0}, 'train')]
    assert logger.event_names() == ['ev']


@pytest.mark.parametrize('data', ['a.txt', ['a.txt', 'b.txt'], 7])
def test_log_data_that_is_not_a_dict_is_refused_the_same_way_by_every_logger(
    tmp_path: Path, data: Any
) -> None:
    """``context.log('uploaded', 'a.txt')`` fails the same way whatever the logger (the
    MemoryLogger of the testing kit used to fail where the JSON-lines one accepted it)."""
    production = RuntimeContext(logger=[JsonLinesLogger(tmp_path / 'log.jsonl')])
    with pytest.raises(TypeError, match='dict'):
        production.log('uploaded', data)
    testing = RuntimeContext(logger=[MemoryLogger()])
    with pytest.raises(TypeError, match='dict'):
        testing.log('uploaded', data)
    with pytest.raises(
        TypeError, match=rf"log\('uploaded'\): data must be a dict .*{type(data).__name__}"
    ):
        testing.log('uploaded', data)
    assert testing.loggers[0].events == []  # type: ignore[attr-defined]
    assert not (tmp_path / 'log.jsonl').exists()


def test_close_closes_every_logger_even_when_one_fails() -> None:
    """A logger whose close() raises does not leave the others open; the first error is
    raised once all are closed."""

    class Broken(Logger):
        def close(self) -> None:
            raise OSError('disk gone')

    memory = MemoryLogger()
    runtime = RuntimeContext(logger=[Broken(), memory])
    with pytest.raises(OSError, match='disk gone'):
        runtime.close()
    assert memory.closed


def test_close_raises_the_first_error_and_notes_the_others() -> None:
    class Broken(Logger):
        def __init__(self, message: str) -> None:
            self.message = message

        def close(self) -> None:
            raise OSError(self.message)

    memory = MemoryLogger()
    runtime = RuntimeContext(logger=[Broken('first'), memory, Broken('second')])
    with pytest.raises(OSError, match='first') as caught:
        runtime.close()
    assert memory.closed
    assert caught.value.__notes__ == ['closing Broken failed too: OSError: second']
