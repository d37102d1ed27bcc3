"""Fault injection: SIGKILL the example upload anywhere, then roll back or resume; exact.

Each trial gets a fresh ``SYNAPSE_HOME`` holding three unrelated files, a
source folder of 300 small files, and starts

    synapse plugin run upload --path examples/file_upload --params {...}

as a subprocess, which is killed with SIGKILL at a point drawn from a
seeded ``random.Random(1234)``: after a random time within the measured
duration of an uninterrupted run (so it may land before the run started or
in any step), as soon as the run is journaled, right after
``discover_files`` succeeded, in the middle of the upload once a random
number of upload keys is journaled, or right after ``upload_files``
succeeded. Then half of the trials run ``synapse runs rollback RUN_ID``
(the storage folder must hold byte for byte what it held before: the three
unrelated files, no temp file, no blob that no index row refers to) and the
other half ``synapse runs resume RUN_ID`` (every source file stored exactly
once, by name and checksum, plus the three, and nothing else in the folder).
A trial whose process finished before the kill is checked for consistency
too, and one to be rolled back is then undone with ``--finished``. The
kills must cover the run: at least 15 in the middle of a run, 5 inside the
upload with part of the files stored, one where no step was running; when
timing made the 20 drawn trials miss one of these, extra trials aimed at it
are run (and checked) until it is covered. Two trials
run at a time, each in its own home (where each kill landed is observed from
the journal, not assumed, so this only shortens the wall time).
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synapse_sdk.journal import Journal

from .conftest import (
    EXAMPLE,
    SYNAPSE,
    assert_storage_holds_only_indexed_files,
    journal_run_ids,
    make_files,
    peek_steps,
    pre_store,
    run_cli,
    storage_snapshot,
    stored,
    subprocess_env,
)

SEED = 1234
TRIALS = 20
FILES = 300
MIN_MID_RUN_KILLS = 15
PARALLEL = 2
# how a kill point is chosen, drawn with these weights
MODES = {'timer': 4, 'journaled': 2, 'discovered': 2, 'items': 10, 'uploaded': 2}


@dataclass
class Trial:
    number: int
    mode: str
    arg: float
    recovery: str
    seed: int
    outcome: str = ''
    at_kill: dict[str, str] = field(default_factory=dict)
    leftovers: int = 0  # files the killed run left in the storage

    def __str__(self) -> str:
        return (
            f'trial {self.number}: kill {self.mode}({self.arg:g}) -> {self.outcome} '
            f'steps={self.at_kill} leftovers={self.leftovers}, then {self.recovery}'
        )


def start_upload(home: Path, source: Path, workdir: Path) -> subprocess.Popen[bytes]:
    # stdout/stderr go to files: a full pipe must never block the child
    log = workdir / 'run.log'
    with log.open('wb') as out:
        return subprocess.Popen(
            [
                SYNAPSE,
                'plugin',
                'run',
                'upload',
                '--path',
                str(EXAMPLE),
                '--params',
                json.dumps({'source_path': str(source)}),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=subprocess_env(home),
        )


def step_status(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute('SELECT status FROM steps WHERE name = ?', (name,)).fetchone()
    return None if row is None else str(row[0])


def reached(conn: sqlite3.Connection, mode: str, arg: float) -> bool:
    if mode == 'journaled':
        return bool(conn.execute('SELECT count(*) FROM runs').fetchone()[0])
    if mode == 'discovered':
        return step_status(conn, 'discover_files') == 'succeeded'
    if mode == 'items':
        return bool(conn.execute('SELECT count(*) FROM rollback_items').fetchone()[0] >= arg)
    if mode == 'uploaded':
        return step_status(conn, 'upload_files') == 'succeeded'
    raise AssertionError(mode)


def kill_at(proc: subprocess.Popen[bytes], db: Path, mode: str, arg: float) -> None:
    """Poll until the trial's kill point, then SIGKILL (unless the run already ended)."""
    started = time.monotonic()
    conn: sqlite3.Connection | None = None
    try:
        while proc.poll() is None and time.monotonic() - started < 60:
            if mode == 'timer':
                if time.monotonic() - started >= arg:
                    break
            else:
                if conn is None and db.exists():
                    conn = sqlite3.connect(db, timeout=30.0, isolation_level=None)
                if conn is not None:
                    try:
                        if reached(conn, mode, arg):
                            break
                    except sqlite3.OperationalError:
                        pass  # the tables are not created yet
            time.sleep(0.0005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    finally:
        if conn is not None:
            conn.close()
    proc.wait(timeout=60)


def calibrate(workdir: Path) -> float:
    """Seconds an uninterrupted run takes (process start to exit), with PARALLEL runs at
    once as in the trials; checks that each of them is exact."""

    def one(folder: Path) -> float:
        home = folder / 'home'
        source = make_files(folder / 'source', FILES, seed=SEED)
        before = pre_store(home, folder)
        began = time.monotonic()
        proc = start_upload(home, folder / 'source', folder)
        assert proc.wait(timeout=120) == 0, (folder / 'run.log').read_text()
        elapsed = time.monotonic() - began
        check_all_stored_once(home, before, source)
        return elapsed

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return max(pool.map(one, [workdir / str(i) for i in range(PARALLEL)]))


def check_all_stored_once(
    home: Path, before: list[tuple[int, str, str]], source: dict[str, str]
) -> None:
    now = stored(home)
    assert now[: len(before)] == before, 'the unrelated files were changed'
    added = Counter((name, checksum) for _, name, checksum in now[len(before) :])
    missing = Counter(source.items()) - added
    extra = added - Counter(source.items())
    assert not missing and not extra, f'missing {len(missing)}, extra {len(extra)}: {extra}'


def run_status(home: Path, run_id: str) -> str:
    journal = Journal(home / 'runs.db')
    try:
        return journal.get_run(run_id).status
    finally:
        journal.close()


def run_trial(trial: Trial, workdir: Path) -> None:
    home = workdir / 'home'
    source_dir = workdir / 'source'
    source = make_files(source_dir, FILES, seed=trial.seed)
    before = pre_store(home, workdir)
    folder_before = storage_snapshot(home)

    proc = start_upload(home, source_dir, workdir)
    kill_at(proc, home / 'runs.db', trial.mode, trial.arg)
    log = (workdir / 'run.log').read_text(errors='replace')
    ids = journal_run_ids(home)
    trial.leftovers = len(stored(home)) - len(before)

    # finished: exited, or killed after the run was committed as succeeded (while the
    # process printed its result or shut down)
    if proc.returncode == 0 or (len(ids) == 1 and run_status(home, ids[0]) == 'succeeded'):
        trial.outcome = 'finished'
        (run_id,) = ids
        status = run_status(home, run_id)
        assert status == 'succeeded', f'finished, but the run is {status}'
        check_all_stored_once(home, before, source)
        refused = run_cli(home, 'runs', trial.recovery, run_id)  # nothing to recover
        assert refused.returncode == 2, f'{trial.recovery} of a succeeded run: {refused.stderr}'
        check_all_stored_once(home, before, source)
        assert_storage_holds_only_indexed_files(home)
        if trial.recovery == 'rollback':  # undo the finished run: exact too
            undone = run_cli(home, 'runs', 'rollback', run_id, '--finished')
            assert undone.returncode == 0, f'rollback --finished: {undone.stderr.strip()}'
            assert storage_snapshot(home) == folder_before, 'rollback --finished left files'
        return
    assert proc.returncode == -signal.SIGKILL, (trial, proc.returncode, log)
    if not ids:
        trial.outcome = 'before the run'
        assert storage_snapshot(home) == folder_before, (
            'killed before the run, yet the storage changed'
        )
        return

    trial.outcome = 'mid-run'
    (run_id,) = ids
    steps = peek_steps(home / 'runs.db', run_id)
    trial.at_kill = {name: row['status'] for name, row in steps.items()}
    status = run_status(home, run_id)
    assert status == 'crashed', f'killed mid-run, but the run is {status}'

    done = run_cli(home, 'runs', trial.recovery, run_id)
    assert done.returncode == 0, f'{trial.recovery} exited {done.returncode}: {done.stderr.strip()}'
    report: dict[str, Any] = json.loads(done.stdout)
    if trial.recovery == 'rollback':
        assert stored(home) == before, f'rollback left {stored(home)[len(before) :]}'
        after = storage_snapshot(home)
        left = sorted(set(after.items()) - set(folder_before.items()))
        assert after == folder_before, f'rollback left in the storage folder: {left}'
        assert report['errors'] == [], report
        status = run_status(home, run_id)
        assert status == 'rolled_back', f'rolled back, but the run is {status}'
    else:
        assert report['success'] is True, report
        check_all_stored_once(home, before, source)
        assert_storage_holds_only_indexed_files(home)
        status = run_status(home, run_id)
        assert status == 'succeeded', f'resumed, but the run is {status}'


def test_sigkill_anywhere_then_rollback_or_resume_is_exact(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    full = calibrate(tmp_path / 'calibration')
    trials = draw_trials(rng, full, TRIALS, FILES)
    run_trials(
        trials,
        lambda trial: run_trial(trial, tmp_path / f'trial{trial.number:02d}'),
        rng,
        _missing_coverage,
        MAX_EXTRA_TRIALS,
    )


def draw_trials(rng: random.Random, full: float, count: int, files: int) -> list[Trial]:
    """``count`` kill points drawn by ``rng`` (a run takes ``full`` seconds, uploads
    ``files`` files), half of them recovered by rollback, half by resume."""
    recoveries = ['rollback', 'resume'] * (count // 2)
    rng.shuffle(recoveries)
    modes = rng.choices(list(MODES), weights=list(MODES.values()), k=count)
    trials = []
    for number, (mode, recovery) in enumerate(zip(modes, recoveries, strict=True)):
        arg: float = 0
        if mode == 'timer':
            arg = round(rng.uniform(0.0, full), 3)
        elif mode == 'items':
            arg = rng.randint(1, files - 1)
        trials.append(Trial(number, mode, arg, recovery, seed=rng.randrange(2**32)))
    return trials


def run_trials(
    trials: list[Trial],
    run_one: Callable[[Trial], None],
    rng: random.Random,
    missing: Callable[[list[Trial]], tuple[str, float] | None],
    max_extra: int,
) -> None:
    """Run the trials (PARALLEL at once, each in its own home: the kill points are
    observed, not assumed, so the parallelism only shortens the wall time), every one
    to its end; then assert that none failed and that they covered what ``missing`` asks.

    Where a kill lands depends on timing (a loaded machine is slower to notice a kill
    point): when the drawn trials missed a kind of place, more trials aimed at it are
    run, each checked like the others, rather than the coverage left to luck."""

    def attempt(trial: Trial) -> str | None:
        try:
            run_one(trial)
        except Exception as error:  # keep going: every trial is evidence
            first = (str(error).splitlines() or [''])[0]
            return f'{trial}\n    {type(error).__name__}: {first}'
        return None

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        failures = [f for f in pool.map(attempt, trials) if f is not None]
    count = len(trials)
    while not failures and len(trials) - count < max_extra:
        wanted = missing(trials)
        if wanted is None:
            break
        recovery = ('rollback', 'resume')[(len(trials) - count) % 2]
        trial = Trial(len(trials), *wanted, recovery, seed=rng.randrange(2**32))
        trials.append(trial)
        failure = attempt(trial)
        if failure is not None:
            failures.append(failure)

    summary = '\n'.join(map(str, trials))
    assert not failures, (
        f'{len(failures)} of {len(trials)} trials failed:\n'
        + '\n'.join(failures)
        + f'\nall trials:\n{summary}'
    )
    assert missing(trials) is None, f'{Counter(t.outcome for t in trials)}\n{summary}'


MAX_EXTRA_TRIALS = 12


def _missing_coverage(trials: list[Trial]) -> tuple[str, float] | None:
    """A kill point that would add what the trials so far lack, or None when they have it all.

    Wanted: at least 15 real kills in the middle of a run; at least 5 inside the upload
    with part of the files stored; at least one where no step was running (between steps,
    or at the very start); both recoveries among the mid-run kills.
    """
    mid_run = [t for t in trials if t.outcome == 'mid-run']
    in_upload = [t for t in mid_run if t.at_kill.get('upload_files') == 'started']
    if len([t for t in in_upload if 0 < t.leftovers < FILES]) < 5 or len(mid_run) < (
        MIN_MID_RUN_KILLS
    ):
        return 'items', FILES // 2
    if not [t for t in mid_run if 'started' not in t.at_kill.values()]:
        return 'journaled', 0
    if {t.recovery for t in mid_run} != {'rollback', 'resume'}:
        return 'items', FILES // 3
    return None
