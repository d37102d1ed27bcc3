"""The buttons: each runs ``synapse runs cancel|rollback|resume RUN_ID`` as a child process.

Why a child process and not ``rollback_run`` in a worker thread: the command is
the one definition of what the button does (the same checks, the same claim
on the run, the same messages and exit codes); recovery changes the working
directory (``chdir`` is process-wide, the server's too) and imports the
plugin's code, which has no business inside the web server; and a resumed run
is a full run, with its own lease, log and signals, that goes on (and shows
live on the page) even if the server is stopped. The child gets the server's
environment, so the same ``SYNAPSE_HOME`` and database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from synapse_sdk._paths import synapse_home

VERBS = ('cancel', 'rollback', 'resume')


@dataclass
class Job:
    """One button press: the command it runs, its process and where its output goes."""

    run_id: str
    verb: str
    command: list[str]
    process: subprocess.Popen[bytes]
    output: Path
    started: float

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def message(self) -> str:
        """The command's ``error:`` line, else its last line (nothing while it runs)."""
        if self.running:
            return ''
        try:
            lines = self.output.read_text(encoding='utf-8', errors='replace').splitlines()
        except OSError:
            return ''
        errors = [line for line in lines if line.startswith('error:')]
        shown = errors or [line for line in lines if line.strip()]
        return shown[-1][:500] if shown else ''

    def to_dict(self) -> dict[str, object]:
        code = self.process.poll()
        return {
            'verb': self.verb,
            'command': ' '.join(['synapse', *self.command[3:]]),
            'running': code is None,
            'exit_code': code,
            'message': self.message(),
        }


class Jobs:
    """The button presses of this server, the latest per run; one at a time per run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, Job] = {}

    def latest(self, run_id: str) -> Job | None:
        with self._lock:
            return self._latest.get(run_id)

    def start(self, run_id: str, verb: str, *, finished: bool = False) -> Job:
        """Start ``synapse runs VERB RUN_ID``; a ``RuntimeError`` if one runs for it already."""
        if verb not in VERBS:
            raise ValueError(f'unknown action {verb!r}; one of: {", ".join(VERBS)}')
        command = [sys.executable, '-m', 'synapse_sdk.cli', 'runs', verb, run_id]
        if finished:
            command.append('--finished')
        with self._lock:
            current = self._latest.get(run_id)
            if current is not None and current.running:
                raise RuntimeError(
                    f'`{current.to_dict()["command"]}` is still at work on run {run_id};'
                    ' wait for it to end'
                )
            folder = synapse_home() / 'ui'
            folder.mkdir(parents=True, exist_ok=True)
            output = folder / f'{run_id}-{verb}-{int(time.time() * 1000)}.out'
            with output.open('wb') as sink:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    env=dict(os.environ),
                    start_new_session=True,  # a resume goes on if the server is stopped
                )
            job = Job(run_id, verb, command, process, output, time.time())
            self._latest[run_id] = job
            return job
