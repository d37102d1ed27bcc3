"""Detached runs: a run submitted as a Ray job (the Job Submission API), which outlives the
``synapse`` command that submitted it.

The job's entrypoint is ``python -m synapse_sdk.cli plugin run ... --mode ray`` in
the plugin folder (the job's ``working_dir``), a foreground run inside the cluster
under the run id the submitter chose and printed. What it must not show (the
database URL with its password) travels in the job's environment
(``runtime_env['env_vars']``), never on its command line or in its metadata.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

try:
    from ray.job_submission import JobSubmissionClient
except ImportError as error:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "detached runs need the 'ray' extra: pip install 'synapse-sdk[ray]'"
    ) from error

from synapse_sdk._paths import DATABASE_URL_VARIABLE, synapse_home
from synapse_sdk.journal import Journal
from synapse_sdk.plugins.actions import BaseAction
from synapse_sdk.plugins.loader import Plugin
from synapse_sdk.plugins.steps.support import describe_exception

from ._errors import RayUnavailableError
from ._local import new_run_id
from ._placement import SECRETS_VARIABLE, Resources, plugin_requirements
from ._recovery import _secret_fields

__all__ = [
    'SECRETS_VARIABLE',
    'DetachedJob',
    'job_entrypoint',
    'job_environment',
    'job_server_address',
    'split_secrets',
    'submit_detached',
    'submit_job',
]


SERVER_VARIABLES = ('RAY_API_SERVER_ADDRESS', 'RAY_ADDRESS')
"""Where Ray's job client looks for the job server; an explicit address wins here."""

PASSED_ON = (DATABASE_URL_VARIABLE, 'SYNAPSE_LEASE_SECONDS', 'SYNAPSE_STORAGE')
"""Settings of this shell the run needs inside the cluster (in the job's environment)."""

EXCLUDES = ['__pycache__', '.git', '*.pyc']

JOB_COMMAND = 'python -m synapse_sdk.cli plugin run'
"""What the job runs: ``python`` on the cluster's PATH must have synapse-sdk (this version)."""


@dataclass(frozen=True)
class DetachedJob:
    """A run submitted as a Ray job: its run id, the job's id and the job server's URL."""

    run_id: str
    job_id: str
    address: str

    def to_dict(self) -> dict[str, Any]:
        return {
            'status': 'submitted',
            'run_id': self.run_id,
            'ray_job_id': self.job_id,
            'ray_address': shown_address(self.address),  # a user:password@ masked
        }


def job_id_of(run_id: str) -> str:
    """The Ray job id of a detached run (chosen before submitting, journaled with it)."""
    return f'synapse-{run_id}'


def without_credentials(address: str) -> str:
    """``address`` without a ``user:password@`` part: what the journal may keep."""
    parts = urlsplit(address)
    if '@' not in parts.netloc:
        return address
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition('@')[2]))


def job_server_address(address: str | None) -> str:
    """The job server's URL (the head's dashboard, ``http://HEAD:8265``): ``address``,
    else ``$RAY_API_SERVER_ADDRESS`` / ``$RAY_ADDRESS`` when they hold one; ``ValueError``
    for anything else (a detached run is submitted over HTTP, not to Ray's GCS port)."""
    for candidate in (address, *(os.environ.get(v) for v in SERVER_VARIABLES)):
        if candidate:
            if candidate.startswith(('http://', 'https://')):
                return candidate.rstrip('/')
            if address is not None:
                break
    shown = address or ' / '.join(f'${v}' for v in SERVER_VARIABLES)
    raise ValueError(
        f'a detached run is submitted to the Ray job server, not to {shown}: give the'
        " address of the head's dashboard, e.g. --ray-address http://HEAD:8265 (`ray start"
        ' --head` prints it as the address for `ray job submit`)'
    )


def split_secrets(
    action: type[BaseAction[Any]], params: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The params for the job's command line, and its secrets (``SecretStr`` fields),
    which go in its environment instead (``SECRETS_VARIABLE``)."""
    hidden = set(_secret_fields(action))
    plain = {k: v for k, v in params.items() if k not in hidden}
    return plain, {k: v for k, v in params.items() if k in hidden}


STORAGE_ENVIRONMENT = {
    's3': ('AWS_',),
    'az': ('AZURE_',),
    'gs': ('GOOGLE_',),
    'sftp': ('SYNAPSE_SFTP_',),
}
"""Per storage scheme, the variables its client reads (endpoint, region, credentials)."""


def job_environment(*, shared_fs: bool, storage: str | None = None) -> dict[str, str]:
    """The settings of this shell that the run needs inside the cluster: the database,
    the storage (``storage``, else ``SYNAPSE_STORAGE``) and what its client reads here
    (an object store's endpoint and credentials); with ``shared_fs``, ``SYNAPSE_HOME``
    too (its journal and storage are on the shared path)."""
    env = {name: os.environ[name] for name in PASSED_ON if os.environ.get(name)}
    if storage:
        env['SYNAPSE_STORAGE'] = storage
    scheme = env.get('SYNAPSE_STORAGE', '').partition('://')[0]
    prefixes = STORAGE_ENVIRONMENT.get(scheme, ())
    env |= {k: v for k, v in os.environ.items() if prefixes and k.startswith(prefixes)}
    if shared_fs:
        env['SYNAPSE_HOME'] = str(synapse_home().absolute())
    env['PYTHONUNBUFFERED'] = '1'  # the job's log shows the run as it goes
    return env


def job_entrypoint(
    action: str,
    params: Mapping[str, Any],
    run_id: str,
    *,
    resources: Resources,
    shared_fs: bool,
    submitted_from: Mapping[str, str],
) -> str:
    """The command the job runs: a foreground ``plugin run`` in the plugin folder, with
    the run id chosen here and where it was submitted from (recovery acts there)."""
    args = [*JOB_COMMAND.split(), action, '--path', '.']
    args += ['--params', json.dumps(dict(params)), '--mode', 'ray', '--log-format', 'plain']
    args += ['--run-id', run_id, '--submitted-from', json.dumps(dict(submitted_from))]
    args += resources.to_options()
    if shared_fs:
        args.append('--shared-fs')
    return shlex.join(args)


@contextmanager
def _explicit(address: str) -> Iterator[None]:
    """Ray's job client prefers the environment's address to the one it is given."""
    saved = {name: os.environ.pop(name) for name in SERVER_VARIABLES if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


_USERINFO = re.compile(r'(?<=://)[^/@\s]*@')


def shown_address(text: str) -> str:
    """``text`` for a message or the journal: any URL's ``user:password@`` is ``***@``."""
    return _USERINFO.sub('***@', text)


def _first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (which may repeat the address), masked."""
    text = str(error).strip()
    return shown_address(text.splitlines()[0]) if text else type(error).__name__


def job_client(address: str) -> JobSubmissionClient:
    """A client of the job server at ``address``; ``RayUnavailableError`` in one line."""
    try:
        with _explicit(address):
            return JobSubmissionClient(address)
    except Exception as error:
        raise RayUnavailableError(
            f'cannot reach the Ray job server at {shown_address(address)}: {_first_line(error)};'
            ' check the address (the'
            " head's dashboard, http://HEAD:8265) and that the head runs it (ray[default])"
        ) from error


def job_runtime_env(
    plugin_path: str | os.PathLike[str], env: dict[str, str], requirements: Sequence[str] = ()
) -> dict[str, Any]:
    """The job's ``runtime_env``, as ``submit_job`` hands it to Ray: the plugin folder as the
    ``working_dir``, its requirements as ``pip``, the run's settings in ``env_vars``."""
    runtime_env: dict[str, Any] = {
        'working_dir': str(Path(plugin_path).resolve()),
        'excludes': EXCLUDES,
        'env_vars': env,
    }
    if requirements:
        runtime_env['pip'] = list(requirements)
    return runtime_env


def submit_job(
    address: str,
    *,
    plugin_path: str | os.PathLike[str],
    entrypoint: str,
    run_id: str,
    env: dict[str, str],
    requirements: Sequence[str] = (),
    metadata: Mapping[str, str] | None = None,
) -> DetachedJob:
    """Submit the run as a Ray job whose ``working_dir`` is the plugin folder and whose
    ``pip`` is its requirements; returns at once (the job's id is ``synapse-RUN_ID``)."""
    client = job_client(address)
    runtime_env = job_runtime_env(plugin_path, env, requirements)
    try:
        job_id = client.submit_job(
            entrypoint=entrypoint,
            runtime_env=runtime_env,
            submission_id=job_id_of(run_id),
            metadata=dict(metadata or {}),
        )
    except Exception as error:
        raise RayUnavailableError(
            f'the Ray job server at {shown_address(address)} did not take run {run_id}: '
            f'{_first_line(error)}'
        ) from error
    return DetachedJob(run_id, str(job_id), address)


def submit_detached(
    address: str,
    plugin: Plugin,
    action: str,
    params: Mapping[str, Any],
    *,
    journal: Journal,
    run_id: str | None = None,
    resources: Resources | None = None,
    shared_fs: bool = False,
    storage: str | None = None,
) -> DetachedJob:
    """Submit ``action`` of ``plugin`` on ``params`` as a Ray job at the job server
    ``address``; returns at once. The run is journaled ``submitted`` first (under
    ``run_id``, default a new one), recorded as submitted from this machine's plugin
    folder and directory (recovery from here acts there); a submission that fails is
    journaled ``failed`` with why. Secret params travel in the job's environment, and so
    do the database URL and ``storage`` (a URL; default ``SYNAPSE_STORAGE``).
    A journal or storage only this machine sees is the caller's to refuse
    (:func:`check_reachable`)."""
    action_cls = plugin.load_action(action)
    values = action_cls.validate_params(params).model_dump(mode='json')
    run_id = run_id or new_run_id()
    plain, secrets = split_secrets(action_cls, params)
    env = job_environment(shared_fs=shared_fs, storage=storage)
    if secrets:
        env[SECRETS_VARIABLE] = json.dumps(secrets)
    here = {'path': str(plugin.path), 'cwd': os.getcwd()}
    journal.start_run(
        run_id,
        entrypoint=action_cls.entrypoint(),
        params=values,
        action=action,
        plugin_path=here['path'],
        cwd=here['cwd'],
        plugin=plugin.config.code,
        status='submitted',
        ray_job=(job_id_of(run_id), without_credentials(address)),
    )
    resources = resources or Resources()
    line = job_entrypoint(
        action, plain, run_id, resources=resources, shared_fs=shared_fs, submitted_from=here
    )
    try:
        return submit_job(
            address,
            plugin_path=plugin.path,
            entrypoint=line,
            run_id=run_id,
            env=env,
            requirements=plugin_requirements(plugin),
            metadata={'synapse_run_id': run_id, 'plugin': plugin.config.code, 'action': action},
        )
    except BaseException as error:
        status = 'failed' if isinstance(error, Exception) else 'cancelled'
        journal.set_run_status(run_id, status, describe_exception(error))
        raise
