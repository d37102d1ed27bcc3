"""A run's log lines in the journal (``log_lines``): bounded per run, written in batches,
all of them in before the run's end is; read back where the log file is not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.execution import JournalLogLines, run_action
from synapse_sdk.journal import KEEP_LOG_LINES, SCHEMA_VERSION, Journal, LogLineBuffer
from synapse_sdk.journal import _schema as journal_schema
from synapse_sdk.observe import follow_journal
from synapse_sdk.plugins.steps import RunEnded, RunEvent, RunListener
from synapse_sdk.runtime import MemoryLogger, RuntimeContext

from .conftest import (
    FnStep,
    journal_run_ids,
    make_action,
    make_files,
    peek,
    run_cli,
)

pytestmark = pytest.mark.both_databases


def test_only_the_newest_lines_are_kept_and_the_dropped_counted(journal: Journal) -> None:
    journal.start_run('r', entrypoint='tests:x', params={})
    lines = JournalLogLines(journal, 'r', LogLineBuffer('r', keep=50))
    for i in range(120):
        lines.log('n', {'i': i}, None, 'warning' if i % 2 else 'info')
        if i % 25 == 24:
            lines.flush()
    lines.flush()

    page = journal.log_lines('r')
    assert [line.seq for line in page.lines] == list(range(71, 121))
    assert page.dropped == 70 and page.last_seq == 120
    first = page.lines[0]
    assert (first.level, first.step, first.message) == ('info', None, 'n {"i": 70}')
    assert first.record['data'] == {'i': 70} and first.record['run_id'] == 'r'
    assert peek(journal, 'SELECT COUNT(*) FROM log_lines WHERE run_id = ?', ('r',)) == [(50,)]

    later = journal.log_lines('r', after_seq=100, limit=5)  # paging on from a seq
    assert [line.seq for line in later.lines] == [101, 102, 103, 104, 105]
    assert later.last_seq == 105 and later.dropped == 70
    assert journal.log_lines('r', after_seq=120) == ([], 70, 120)
    assert journal.log_lines('unknown') == ([], 0, 0)


def test_a_runs_lines_are_all_in_before_its_end_is(journal: Journal) -> None:
    """Lifecycle lines and context.log lines, in order; when the journal first says the run
    ended, the run_end line is already there; the default bound holds."""
    seen_at_end: list[list[str]] = []

    def chatty(context: Any) -> None:
        for i in range(KEEP_LOG_LINES + 100):
            context.log('tick', {'i': i}, level='debug')

    class AtTheEnd(RunListener):  # before the JournalListener records the end
        listens_to = (RunEnded,)

        def on_event(self, event: RunEvent) -> None:
            run_id = event.run_id or ''
            lines = journal.log_lines(run_id).lines
            kinds = [line.record.get('type', '') for line in lines]
            seen_at_end.append([kind for kind in kinds if kind != 'progress'][-2:])
            seen_at_end.append([str(journal.get_run(run_id).active)])

    action = make_action(FnStep('first'), FnStep('chatty', execute=chatty))
    runtime = RuntimeContext(logger=MemoryLogger())
    run_action(action, {}, runtime, journal=journal, listeners=[AtTheEnd()])

    assert seen_at_end == [['step_end', 'run_end'], ['True']]  # the lines, then the end
    page = journal.log_lines(runtime.run_id)
    assert len(page.lines) == KEEP_LOG_LINES
    assert page.dropped >= 1 + 2 + 2 + (KEEP_LOG_LINES + 100) + 1 - KEEP_LOG_LINES
    assert page.dropped + len(page.lines) == page.last_seq
    assert page.lines[-1].message == 'run succeeded'
    ticks = [line.record['data']['i'] for line in page.lines if line.record.get('event') == 'tick']
    assert ticks[-1] == KEEP_LOG_LINES + 99 and ticks == list(range(ticks[0], ticks[-1] + 1))
    chatty_end = [line for line in page.lines if line.record.get('type') == 'step_end'][-1]
    assert (chatty_end.step, chatty_end.level) == ('chatty', 'info')
    assert chatty_end.message.startswith("step 'chatty' succeeded in ")
    tick = next(line for line in page.lines if line.record.get('event') == 'tick')
    assert (tick.level, tick.step) == ('debug', 'chatty')  # the step running then


def test_progress_lines_of_a_batch_are_folded_into_the_latest(journal: Journal) -> None:
    journal.start_run('p', entrypoint='tests:x', params={})
    lines = JournalLogLines(journal, 'p')
    for i in range(1, 101):
        lines.progress(i, 100, 'upload')
        lines.progress(i, 200, 'overall')
    lines.log('done', {}, None, 'info')
    lines.flush()
    page = journal.log_lines('p')
    shown = [(line.record.get('category'), line.message) for line in page.lines]
    assert shown == [('upload', 'progress upload 100%'), ('overall', 'progress overall 50%'),
                     (None, 'done')]  # fmt: skip
    assert page.dropped == 0


def test_lines_never_flushed_are_capped_and_counted_as_dropped(journal: Journal) -> None:
    journal.start_run('c', entrypoint='tests:x', params={})
    buffer = LogLineBuffer('c', keep=10)
    lines = JournalLogLines(journal, 'c', buffer)
    for i in range(95):  # the journal was away: nothing flushed meanwhile
        lines.log('n', {'i': i}, None, 'info')
    lines.flush()
    page = journal.log_lines('c')
    assert [line.record['data']['i'] for line in page.lines] == list(range(85, 95))
    assert page.dropped == 85 and page.last_seq == 95


def test_following_from_the_journal_yields_each_line_once_until_the_end(
    journal: Journal,
) -> None:
    journal.start_run('f', entrypoint='tests:x', params={})
    lines = JournalLogLines(journal, 'f')
    polls = iter([True, True, True, False])
    written = iter(range(3))

    def running() -> bool:  # the run writes a line between polls, then ends
        i = next(written, None)
        if i is not None:
            lines.log('n', {'i': i}, None, 'info')
            lines.flush()
        return next(polls)

    seen = [r['data']['i'] for r in follow_journal(journal, 'f', running, interval=0.01)]
    assert seen == [0, 1, 2]


def test_a_resumed_run_numbers_its_lines_on(journal: Journal) -> None:
    journal.start_run('q', entrypoint='tests:x', params={})
    first = JournalLogLines(journal, 'q')
    first.log('one', {}, None, 'info')
    first.flush()
    second = JournalLogLines(journal, 'q')  # another process, later
    second.log('two', {}, None, 'info')
    second.flush()
    assert [(line.seq, line.message) for line in journal.log_lines('q').lines] == [
        (1, 'one'),
        (2, 'two'),
    ]


def test_runs_logs_and_show_read_the_journal_without_the_log_file(
    home: Path, tmp_path: Path, plugin_dir: Path
) -> None:
    """The run's log file is on another machine (here: deleted): the journal's lines."""
    make_files(tmp_path / 'source', 3, seed=7)
    params = json.dumps({'source_path': str(tmp_path / 'source')})
    ran = run_cli(
        home, 'plugin', 'run', 'store', '--path', plugin_dir, '--params', params, JT_SLOW='0'
    )
    assert ran.returncode == 0, ran.stderr
    (run_id,) = journal_run_ids(home)
    from_file = run_cli(home, 'runs', 'logs', run_id)
    (home / 'logs' / f'{run_id}.jsonl').unlink()

    from_journal = run_cli(home, 'runs', 'logs', run_id)

    assert from_journal.returncode == 0, from_journal.stderr
    assert 'its last lines from the journal' in from_journal.stderr

    def untimed(text: str) -> list[str]:  # a log() line's time is each logger's own now
        return [line[24:] for line in text.splitlines()]

    assert untimed(from_journal.stdout) == untimed(from_file.stdout)  # the same lines
    assert "step 'store' succeeded" in from_journal.stdout
    assert from_journal.stdout.count('stored {"file": ') == 3
    shown = run_cli(home, 'runs', 'show', run_id)
    assert 'the journal (' in shown.stdout and 'is not on this machine' in shown.stdout


# --------------------------------------------------------------- from schema version 2


def version_2(tables: str, *added: str) -> str:
    """The tables as schema 2 had them: no cancel request, no Ray job, no log lines, no
    plugin and action indexes (``added``: the blocks of SQL schema 3 added)."""
    v2 = tables
    for block in added:
        v2 = v2.replace(block, '')
    for column in ('cancel_requested_at', 'cancel_requested_by', 'ray_job_id  ', 'ray_address '):
        v2 = v2.replace(f',\n    {column} TEXT COLLATE "C"', '').replace(
            f',\n    {column} TEXT', ''
        )
    assert 'cancel_requested' not in v2 and 'log_lines' not in v2 and 'ray_' not in v2
    assert 'runs_by_plugin' not in v2
    return v2


def test_a_version_2_journal_is_migrated_and_keeps_its_runs(
    journal_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as pretend:
        pretend.setattr(journal_schema, 'SCHEMA_VERSION', 2)
        pretend.setattr(
            journal_schema,
            'TABLES',
            version_2(
                journal_schema.TABLES,
                journal_schema.SQLITE_LOG_LINES,
                journal_schema.SQLITE_RUN_FILTERS,
            ),
        )
        pretend.setattr(
            journal_schema,
            'POSTGRES_TABLES',
            version_2(
                journal_schema.POSTGRES_TABLES,
                journal_schema.POSTGRES_LOG_LINES,
                journal_schema.POSTGRES_RUN_FILTERS,
            ),
        )
        old = Journal(journal_database)
        old.start_run('v2-run', entrypoint='tests:x', params={'a': 1}, lease_owner='h:1 since x #a')
        old.set_run_status('v2-run', 'succeeded')
        old.start_run('v2-running', entrypoint='tests:x', params={}, lease_owner='h:1 since x #b')
        assert old.database.version() == 2
        old.close()

    journal = Journal(journal_database)
    try:
        run = journal.get_run('v2-run')
        assert (run.status, run.params, run.cancel_requested_at) == ('succeeded', {'a': 1}, None)
        assert journal.database.version() == SCHEMA_VERSION == 3
        assert journal.log_lines('v2-run') == ([], 0, 0)
        asked = journal.request_cancel('v2-running', by='a test')
        assert asked.cancel_requested_by == 'a test'
        journal.start_run(
            'v3-detached', entrypoint='tests:x', params={}, status='submitted',
            ray_job=('synapse-v3-detached', 'http://head:8265'),
        )  # fmt: skip
        detached = journal.get_run('v3-detached')
        assert (detached.ray_job_id, detached.ray_address) == (
            'synapse-v3-detached',
            'http://head:8265',
        )
        lines = JournalLogLines(journal, 'v2-run')
        lines.log('after the migration', {}, None, 'info')
        lines.flush()
        assert [line.message for line in journal.log_lines('v2-run').lines] == [
            'after the migration'
        ]
    finally:
        journal.close()
