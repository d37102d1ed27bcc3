"""Finding runs: the plugin of each run, list filters, short id prefixes, and pruning old runs."""

from __future__ import annotations

import json
import shutil
import signal
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from synapse_sdk.cli._timespec import parse_duration, parse_moment
from synapse_sdk.execution import run_action
from synapse_sdk.journal import Journal, RunRecord, UnknownRunError
from synapse_sdk.plugins.actions import ActionOrigin
from synapse_sdk.runtime import RuntimeContext

from .conftest import (
    FnStep,
    cli_json,
    connect,
    journal_run_ids,
    make_action,
    make_files,
    one_line_error,
    peek,
    run_cli,
)

OK = make_action(FnStep('a'), FnStep('b'))


def boom(context: object) -> None:
    raise RuntimeError('boom')


FAILS = make_action(FnStep('a'), FnStep('b', execute=boom))


def record(
    journal: Journal,
    run_id: str,
    *,
    plugin: str | None = None,
    action: str = 'export',
    fails: bool = False,
) -> str:
    """A finished in-process run under ``run_id`` (``fails``: rolled back)."""
    origin = ActionOrigin(f'/plugins/{plugin}', action, plugin) if plugin else None
    runtime = RuntimeContext(logger=[], run_id=run_id)
    try:
        run_action(FAILS if fails else OK, {}, runtime, journal=journal, origin=origin)
    except RuntimeError:
        assert fails
    return run_id


def age(journal: Journal, run_id: str, days: float) -> None:
    """Move the run's times ``days`` back (as if it had run then)."""
    moment = (datetime.now(UTC) - timedelta(days=days)).isoformat()
    conn = connect(journal.path)
    try:
        conn.execute(
            'UPDATE runs SET started_at = ?,'
            ' ended_at = CASE WHEN ended_at IS NULL THEN NULL ELSE ? END WHERE id = ?',
            (moment, moment, run_id),
        )
    finally:
        conn.close()


def ids(runs: list[RunRecord]) -> list[str]:
    return [r.id for r in runs]


# --------------------------------------------------------------- the plugin of a run, filters


def test_list_runs_filters_by_plugin_action_status_and_start(journal: Journal) -> None:
    old = record(journal, 'old', plugin='alpha')
    age(journal, old, 10)
    beta = record(journal, 'beta', plugin='beta')
    other = record(journal, 'other', plugin='beta', action='import', fails=True)
    bare = record(journal, 'bare')  # run from Python, no plugin folder

    assert journal.get_run(beta).plugin == 'beta' and journal.get_run(bare).plugin is None
    assert ids(journal.list_runs(plugin='beta')) == [other, beta]
    assert ids(journal.list_runs(action='export')) == [beta, old]  # bare has no action name
    assert ids(journal.list_runs(plugin='beta', action='export')) == [beta]
    assert ids(journal.list_runs(plugin='beta', status='rolled_back')) == [other]
    day_ago = datetime.now(UTC) - timedelta(days=1)
    assert ids(journal.list_runs(since=day_ago)) == [bare, other, beta]
    naive = day_ago.replace(tzinfo=None)  # taken as UTC, as the journal's times
    assert ids(journal.list_runs(since=naive, limit=1)) == [bare]
    local = day_ago.astimezone(timezone(timedelta(hours=9)))  # another offset, same moment
    assert ids(journal.list_runs(since=local)) == [bare, other, beta]
    assert journal.list_runs(plugin='gamma') == []


def test_parse_since_and_older_than() -> None:
    now = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
    assert parse_moment('2h', '--since', now) == datetime(2024, 5, 10, 10, 0, tzinfo=UTC)
    assert parse_moment('7d', '--since', now) == datetime(2024, 5, 3, 12, 0, tzinfo=UTC)
    assert parse_moment('1d12h', '--since', now) == datetime(2024, 5, 9, 0, 0, tzinfo=UTC)
    assert parse_moment('2024-05-01', '--since', now) == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_moment('2024-05-01T08:30+02:00', '--since', now) == datetime(
        2024, 5, 1, 6, 30, tzinfo=UTC
    )
    assert parse_duration('90m') == timedelta(minutes=90)
    assert parse_duration('2w') == timedelta(days=14)
    for bad in ('yesterday', '7', 'd7', '-2h', '7 days', ''):
        with pytest.raises(ValueError, match=f"--older-than takes a duration.*got '{bad}'"):
            parse_moment(bad, '--older-than', now)


def two_plugins(plugin_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The test plugin twice, as plugins ``first`` and ``second``: both have action ``store``."""
    folders = []
    for code in ('first', 'second'):
        folder = tmp_path / code
        shutil.copytree(plugin_dir, folder)
        config = folder / 'config.yaml'
        text = config.read_text(encoding='utf-8').replace(
            'code: journal_test_plugin', f'code: {code}'
        )
        config.write_text(text, encoding='utf-8')
        folders.append(folder)
    return folders[0], folders[1]


def test_runs_list_shows_each_runs_plugin_and_filters(
    home: Path, plugin_dir: Path, tmp_path: Path
) -> None:
    make_files(tmp_path / 'source', 2, seed=1)
    params = json.dumps({'source_path': str(tmp_path / 'source')})
    for folder in two_plugins(plugin_dir, tmp_path):
        done = run_cli(home, 'plugin', 'run', 'store', '--path', folder, '--params', params)
        assert done.returncode == 0, done.stderr

    runs = cli_json(home, 'runs', 'list', '--json')
    assert [(r['plugin'], r['action']) for r in runs] == [('second', 'store'), ('first', 'store')]
    table = run_cli(home, 'runs', 'list')
    assert table.returncode == 0, table.stderr
    lines = [line for line in table.stdout.splitlines() if 'succeeded' in line]
    assert [line.split('│')[4].strip() for line in lines] == ['second', 'first']

    first = cli_json(home, 'runs', 'list', '--plugin', 'first', '--json')
    assert [r['id'] for r in first] == [runs[1]['id']]
    assert len(cli_json(home, 'runs', 'list', '--action', 'store', '--since', '1h', '--json')) == 2
    assert cli_json(home, 'runs', 'list', '--since', '2999-01-01', '--json') == []
    assert cli_json(home, 'runs', 'list', '--action', 'export', '--json') == []
    line = one_line_error(run_cli(home, 'runs', 'list', '--since', 'last week'))
    assert '--since takes a duration back from now' in line and "'last week'" in line


# --------------------------------------------------------------- short run id prefixes


def test_a_unique_prefix_names_its_run_and_an_ambiguous_one_lists_the_candidates(
    journal: Journal,
) -> None:
    for run_id in ('abc123', 'abc456', 'ABC789', 'ab', 'a_1', 'aZ1'):
        record(journal, run_id)

    assert journal.resolve_run_id('abc1') == 'abc123'
    assert journal.resolve_run_id('ABC') == 'ABC789'  # case counts
    assert journal.resolve_run_id('ab') == 'ab'  # a whole id wins over the ids it starts
    assert journal.resolve_run_id('a_') == 'a_1'  # no wildcard: '_' is itself
    with pytest.raises(UnknownRunError) as ambiguous:
        journal.resolve_run_id('abc')
    message = str(ambiguous.value)
    assert message.startswith("run id 'abc' is ambiguous: it starts ")
    assert message.endswith('; give more of the id')
    assert set(message.split('starts ')[1].split(';')[0].split(', ')) == {'abc123', 'abc456'}
    for unknown in ('abd', 'x', ''):
        with pytest.raises(UnknownRunError, match="no run '.*' in the journal"):
            journal.resolve_run_id(unknown)


def test_ambiguous_prefix_lists_at_most_five(journal: Journal) -> None:
    for n in range(7):
        record(journal, f'dup{n}')
    with pytest.raises(UnknownRunError, match=r'it starts dup6, dup5, dup4, dup3, dup2, \.\.\.;'):
        journal.resolve_run_id('dup')


@pytest.fixture
def crashed_run(home: Path, plugin_dir: Path, tmp_path: Path) -> str:
    """A run of the test plugin killed (SIGKILL) in its ``store`` step, after 2 files."""
    make_files(tmp_path / 'source', 4, seed=3)
    params = json.dumps({'source_path': str(tmp_path / 'source')})
    killed = run_cli(
        home, 'plugin', 'run', 'store', '--path', plugin_dir, '--params', params, JT_CRASH_AFTER='2'
    )
    assert killed.returncode == -signal.SIGKILL
    (run_id,) = journal_run_ids(home)
    return run_id


def test_runs_show_rollback_and_resume_take_a_prefix(
    home: Path, journal: Journal, crashed_run: str
) -> None:
    record(journal, crashed_run[:3] + 'zzzzzz')  # shares the first three characters
    prefix = crashed_run[:4]

    shown = cli_json(home, 'runs', 'show', prefix, '--json')
    assert (shown['id'], shown['status']) == (crashed_run, 'crashed')
    line = one_line_error(run_cli(home, 'runs', 'show', crashed_run[:3]))
    assert f"run id '{crashed_run[:3]}' is ambiguous" in line and crashed_run in line
    assert one_line_error(run_cli(home, 'runs', 'rollback', crashed_run[:3])) == line
    assert one_line_error(run_cli(home, 'runs', 'resume', crashed_run[:3])) == line

    rolled = cli_json(home, 'runs', 'rollback', prefix)
    assert (rolled['run_id'], rolled['status']) == (crashed_run, 'rolled_back')
    resumed = cli_json(home, 'runs', 'resume', prefix)
    assert (resumed['run_id'], resumed['success']) == (crashed_run, True)
    assert journal.get_run(crashed_run).status == 'succeeded'
    assert not list((home / 'logs').glob(f'{prefix}.jsonl'))  # logged under the whole id


# --------------------------------------------------------------- prune


def test_prune_removes_old_finished_runs_with_their_steps_and_logs(
    home: Path, journal: Journal, crashed_run: str
) -> None:
    ok = record(journal, 'old-ok', plugin='p')
    undone = record(journal, 'old-undone', plugin='p', fails=True)
    recent = record(journal, 'recent', plugin='p')
    journal.start_run('old-active', entrypoint='x:Y', params={})  # alive: this process
    assert journal.get_run(crashed_run).status == 'crashed'  # noticed (and ended) now
    for run_id in (ok, undone, 'old-active', crashed_run):
        age(journal, run_id, 40)
    logs = home / 'logs'
    logs.mkdir(exist_ok=True)
    for run_id in (ok, undone, recent):
        (logs / f'{run_id}.jsonl').write_text('{}\n', encoding='utf-8')
    items = 'SELECT COUNT(*) FROM rollback_items WHERE run_id = ?'
    assert peek(journal.path, items, (crashed_run,)) == [(2,)]  # what rollback needs

    dry = run_cli(home, 'runs', 'prune', '--older-than', '30d', '--dry-run')
    assert dry.returncode == 0, dry.stderr
    assert [line.split()[:3] for line in dry.stdout.splitlines()[:2]] == [
        ['would', 'remove', ok],
        ['would', 'remove', undone],
    ]
    assert 'would remove 2 run(s) that ended before' in dry.stdout
    assert f'kept 1 run(s) with work left to undo: {crashed_run}' in dry.stdout
    assert len(journal_run_ids(home)) == 5 and (logs / f'{ok}.jsonl').exists()

    pruned = cli_json(home, 'runs', 'prune', '--older-than', '30d', '--json')
    assert (pruned['dry_run'], [r['id'] for r in pruned['removed']]) == (False, [ok, undone])
    assert [r['id'] for r in pruned['kept']] == [crashed_run]
    assert sorted(journal_run_ids(home)) == sorted([recent, 'old-active', crashed_run])
    for table in ('steps', 'rollback_items'):
        left = peek(journal.path, f'SELECT DISTINCT run_id FROM {table}')
        assert {ok, undone}.isdisjoint(row[0] for row in left)
    assert sorted(p.name for p in logs.glob('*.jsonl')) == sorted(
        [f'{recent}.jsonl', f'{crashed_run}.jsonl']
    )

    forced = cli_json(home, 'runs', 'prune', '--older-than', '30d', '--unrecovered', '--json')
    assert ([r['id'] for r in forced['removed']], forced['kept']) == ([crashed_run], [])
    assert sorted(journal_run_ids(home)) == sorted([recent, 'old-active'])  # never an active run
    assert peek(journal.path, items, (crashed_run,)) == [(0,)]
    assert journal.get_run('old-active').status == 'running'


def test_prune_bad_age_is_one_line(home: Path) -> None:
    line = one_line_error(run_cli(home, 'runs', 'prune', '--older-than', 'a month'))
    assert '--older-than takes a duration back from now' in line
    assert not (home / 'runs.db').exists()
