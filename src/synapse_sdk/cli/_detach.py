"""``plugin run`` on a Ray cluster: the options that place the run (resources, shared
paths), and ``--detach``, the run submitted as a Ray job. Parsing and printing only."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.text import Text

from synapse_sdk.clients import open_storage
from synapse_sdk.execution import (
    Resources,
    action_resources,
    check_reachable,
    parse_memory,
)
from synapse_sdk.journal import Journal
from synapse_sdk.plugins.actions import ActionOrigin
from synapse_sdk.plugins.loader import Plugin
from synapse_sdk.runtime import JsonLinesLogger, LineLogger

DetachOption = Annotated[
    bool,
    typer.Option(
        '--detach',
        help='With --mode ray: submit the run as a Ray job (--ray-address http://HEAD:8265, the'
        " head's dashboard) and return at once, printing the run id and the Ray job id.",
    ),
]
NumCpusOption = Annotated[
    float | None,
    typer.Option('--num-cpus', help="CPUs the run's Ray actor reserves (default: config.yaml)."),
]
NumGpusOption = Annotated[
    float | None,
    typer.Option('--num-gpus', help="GPUs the run's Ray actor reserves (default: config.yaml)."),
]
MemoryOption = Annotated[
    str | None,
    typer.Option('--memory', help="Memory the run's Ray actor reserves, e.g. 4GiB."),
]
SharedFsOption = Annotated[
    bool,
    typer.Option(
        '--shared-fs',
        help='The journal and storage paths are on a filesystem every Ray node mounts at the'
        ' same path: let a detached or multi-node run use them.',
    ),
]
RunIdOption = Annotated[str | None, typer.Option('--run-id', hidden=True)]
SubmittedFromOption = Annotated[str | None, typer.Option('--submitted-from', hidden=True)]

_RUN_ID = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,63}')


@dataclass(frozen=True)
class Placement:
    """Where and how a run on Ray goes: its actor's resources, whether the user said its
    paths are shared, the run id chosen by a submitter, and (in a detached run's job)
    the plugin folder and directory it was submitted from, which the journal records."""

    resources: Resources
    shared_fs: bool = False
    run_id: str | None = None
    submitted: dict[str, str] | None = None

    def origin(self, plugin: Plugin, action: str) -> ActionOrigin:
        path = self.submitted['path'] if self.submitted else str(plugin.path)
        return ActionOrigin(path, action, plugin.config.code)

    def executor_options(self) -> dict[str, Any]:
        """``RayExecutor``'s: a detached run's driver leaves a run whose worker died
        ``crashed`` (nobody watches it: the user rolls it back or resumes it)."""
        return {
            'resources': self.resources,
            'shared_fs': self.shared_fs,
            'on_worker_loss': 'keep' if self.submitted else 'rollback',
            'cwd': self.submitted['cwd'] if self.submitted else None,
        }


def placement(
    plugin: Plugin,
    action: str,
    mode: str,
    detach: bool,
    num_cpus: float | None,
    num_gpus: float | None,
    memory: str | None,
    shared_fs: bool,
    run_id: str | None,
    submitted_from: str | None,
    journal: bool = True,
) -> Placement:
    """The options checked (bad input: ``BadInput``), with config.yaml's ``resources:``."""
    from .main import BadInput  # main registers this module's options: imported at call time

    if detach and not journal:
        raise BadInput('--detach needs the run journal (it is how a detached run is followed)')

    given: dict[str, object] = {'--detach': detach, '--num-cpus': num_cpus}
    given |= {'--num-gpus': num_gpus, '--memory': memory, '--shared-fs': shared_fs}
    wrong = [name for name, value in given.items() if value not in (None, False)]
    if wrong and mode != 'ray':
        raise BadInput(f'{wrong[0]} goes with --mode ray')
    if run_id is not None and not _RUN_ID.fullmatch(run_id):
        raise BadInput(f'--run-id {run_id!r}: use letters, digits, _ . - (at most 64)')
    try:
        for name, value in (('--num-cpus', num_cpus), ('--num-gpus', num_gpus)):
            if value is not None and value < 0:
                raise ValueError(f'{name}: {value:g} is not a number of 0 or more')
        bytes_ = None if memory is None else parse_memory(memory, '--memory')
    except ValueError as error:
        raise BadInput(str(error)) from error
    asked = Resources(num_cpus, num_gpus, bytes_)
    resources = asked.over(action_resources(plugin, action)) if mode == 'ray' else asked
    return Placement(resources, shared_fs, run_id, _submitted(submitted_from))


def _submitted(text: str | None) -> dict[str, str] | None:
    from .main import BadInput

    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadInput(f'--submitted-from is not JSON: {error}') from error
    if not isinstance(value, dict) or not all(
        isinstance(value.get(k), str) for k in ('path', 'cwd')
    ):
        raise BadInput('--submitted-from must be {"path": PLUGIN_FOLDER, "cwd": DIRECTORY}')
    return {'path': value['path'], 'cwd': value['cwd']}


def submit(
    plugin: Plugin,
    action: str,
    values: dict[str, Any],
    ray_address: str | None,
    log_format: str,
    placing: Placement,
    storage: str | None,
) -> None:
    """``--detach``: refuse what a cluster cannot reach, submit the job, say what it is;
    ``storage``: the run's (a URL or folder; None: the default folder)."""
    from synapse_sdk.execution import job_server_address, submit_detached

    from .main import BadInput, _print_json

    try:
        address = job_server_address(ray_address)
    except ValueError as error:
        raise BadInput(str(error)) from error
    store = Journal()
    store.check()  # read it now: a bad journal is bad input, not a failed submission
    what = 'a detached run'
    client = open_storage(storage)
    check_reachable(store, client, shared_fs=placing.shared_fs, what=what)
    job = submit_detached(
        address,
        plugin,
        action,
        values,
        journal=store,
        run_id=placing.run_id,
        resources=placing.resources,
        shared_fs=placing.shared_fs,
        storage=storage,
    )
    where = store.database.describe()  # a file, or a URL without its password
    shown = job.to_dict()['ray_address']  # without a user:password@
    _announce(log_format, job.run_id, job.job_id, shown, where)
    _print_json({**job.to_dict(), 'journal': where})


def _announce(log_format: str, run_id: str, job_id: str, address: str, where: str) -> None:
    """What was submitted, on stderr in the run's log format."""
    from .main import stderr

    if log_format == 'json':
        data = {'ray_job_id': job_id, 'ray_address': address, 'journal': where}
        JsonLinesLogger(sys.stderr, run_id).log('submitted', data, None, 'info')
        return
    text = (
        f'run {run_id} submitted as Ray job {job_id} at {address} (journal: {where});'
        f' see it with: synapse runs show {run_id}'
    )
    if log_format == 'plain' or not (stderr.is_terminal or stderr.is_jupyter):
        LineLogger(sys.stderr).write('info', text)
    else:
        stderr.print(Text(text, style='dim'), soft_wrap=True)
