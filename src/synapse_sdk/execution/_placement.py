"""What a run on a Ray cluster takes with it: its resources, its requirements, and a journal
and a storage every node reaches (else it is refused before it starts)."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from synapse_sdk._paths import DATABASE_URL_VARIABLE
from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.journal import Journal
from synapse_sdk.plugins.loader import Plugin, PluginError

from ._errors import SharedStateRequiredError

__all__ = [
    'SECRETS_VARIABLE',
    'Resources',
    'action_resources',
    'check_reachable',
    'parse_memory',
    'plugin_requirements',
    'secrets_from_environment',
]

SECRETS_VARIABLE = 'SYNAPSE_RUN_SECRETS'
"""The job's environment variable holding a detached run's secret params (JSON), which
stay off its command line; its ``plugin run`` takes them back into the params."""

_UNITS = {
    '': 1,
    'b': 1,
    'k': 1000,
    'kb': 1000,
    'ki': 1024,
    'kib': 1024,
    'm': 1000**2,
    'mb': 1000**2,
    'mi': 1024**2,
    'mib': 1024**2,
    'g': 1000**3,
    'gb': 1000**3,
    'gi': 1024**3,
    'gib': 1024**3,
    't': 1000**4,
    'tb': 1000**4,
    'ti': 1024**4,
    'tib': 1024**4,
}
_MEMORY = re.compile(r'\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*')
_NAMED = ('num_cpus', 'num_gpus', 'memory')


@dataclass(frozen=True)
class Resources:
    """What the run's Ray actor asks the cluster for; None: Ray's default (1 CPU to
    schedule, no GPU, no memory reservation). ``custom``: Ray's custom resources,
    e.g. ``{'gpu_node': 1}`` to land on the nodes started with that resource."""

    num_cpus: float | None = None
    num_gpus: float | None = None
    memory: int | None = None  # bytes
    custom: dict[str, float] = field(default_factory=dict)

    def over(self, base: Resources) -> Resources:
        """These resources where set, ``base``'s elsewhere (options over config.yaml)."""
        return Resources(
            self.num_cpus if self.num_cpus is not None else base.num_cpus,
            self.num_gpus if self.num_gpus is not None else base.num_gpus,
            self.memory if self.memory is not None else base.memory,
            {**base.custom, **self.custom},
        )

    def actor_options(self) -> dict[str, Any]:
        """The keyword arguments of ``ActorClass.options()`` these resources mean."""
        options: dict[str, Any] = {}
        for name in _NAMED:
            value = getattr(self, name)
            if value is not None:
                options[name] = value
        if self.custom:
            options['resources'] = dict(self.custom)
        return options

    def to_options(self) -> list[str]:
        """These resources as ``synapse plugin run`` options (custom ones excepted: those
        come from config.yaml, which travels with the plugin folder)."""
        flags: list[str] = []
        for name in _NAMED:
            value = getattr(self, name)
            if value is not None:
                text = str(value) if name == 'memory' else f'{value:g}'
                flags += [f'--{name.replace("_", "-")}', text]
        return flags


def parse_memory(value: Any, where: str) -> int:
    """Bytes from ``4GiB``, ``512M``, ``2g`` or a number of bytes; ``where`` names the
    option or setting in the error."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number, unit = float(value), ''
    else:
        found = _MEMORY.fullmatch(str(value))
        if found is None or found[2].lower() not in _UNITS:
            raise ValueError(
                f'{where}: {value!r} is not an amount of memory; write e.g. 4GiB, 512MiB or'
                ' a number of bytes'
            )
        number, unit = float(found[1]), found[2].lower()
    total = number * _UNITS[unit]
    if not math.isfinite(total) or total <= 0:
        raise ValueError(f'{where}: {value!r} is not an amount of memory above 0')
    return int(total)


def _amount(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f'{where}: {value!r} is not a number of 0 or more')
    return float(value)


def action_resources(plugin: Plugin, action: str) -> Resources:
    """The ``resources:`` of ``action`` in config.yaml (``num_cpus``, ``num_gpus``,
    ``memory``; any other name is a custom Ray resource); ``PluginError`` naming the
    setting when one is not a number."""
    config = plugin.config.actions[action]
    raw = (config.model_extra or {}).get('resources')
    if raw is None:
        return Resources()
    where = f'{plugin.path / "config.yaml"}: actions.{action}.resources'
    if not isinstance(raw, dict):
        raise PluginError(f'{where} must be a mapping such as {{num_cpus: 2, num_gpus: 1}}')
    try:
        named: dict[str, Any] = {
            name: (parse_memory if name == 'memory' else _amount)(raw[name], f'{where}.{name}')
            for name in _NAMED
            if name in raw
        }
        custom = {str(k): _amount(v, f'{where}.{k}') for k, v in raw.items() if k not in _NAMED}
    except ValueError as error:
        raise PluginError(str(error)) from error
    return Resources(custom=custom, **named)


def plugin_requirements(plugin: Plugin) -> list[str]:
    """What the plugin needs installed (pip requirement lines): its ``requirements.txt``,
    then ``requirements:`` of config.yaml (a list of lines)."""
    lines: list[str] = []
    listed = plugin.path / 'requirements.txt'
    if listed.is_file():
        for line in listed.read_text(encoding='utf-8').splitlines():
            line = line.split('#', 1)[0].strip()
            if line:
                lines.append(line)
    raw = (plugin.config.model_extra or {}).get('requirements')
    if raw is not None:
        if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
            raise PluginError(
                f'{plugin.path / "config.yaml"}: requirements must be a list of pip requirement'
                " lines, such as ['numpy>=1.26']"
            )
        lines += [r.strip() for r in raw if r.strip()]
    return lines


def is_local_storage(client: Any) -> bool:
    """The storage is a folder of this machine (its URL a ``file:`` one) or this
    process's memory (``memory:``)."""
    if isinstance(client, LocalBackendClient):
        return True
    url = getattr(client, 'url', None)
    return isinstance(url, str) and url.startswith(('file:', 'memory:'))


def check_reachable(journal: Journal, client: Any, *, shared_fs: bool, what: str) -> None:
    """Refuse, in one line, a run that leaves this machine (``what``: 'a detached run',
    'a run on a Ray cluster of 3 nodes') with the embedded SQLite journal or a local
    storage folder, unless the user says the paths are shared (``shared_fs``)."""
    if shared_fs:
        return
    problems = []
    if journal.path is not None:
        problems.append(
            f'its journal is the SQLite file {journal.path}: set {DATABASE_URL_VARIABLE}'
            ' (or --database postgresql://...)'
        )
    if is_local_storage(client):
        where = getattr(client, 'root', None) or getattr(client, 'url', '')
        kind = 'the memory store' if str(where).startswith('memory:') else 'the local folder'
        problems.append(f'its storage is {kind} {where}: give --storage (e.g. s3://bucket/prefix)')
    if problems:
        raise SharedStateRequiredError(
            f'{what} needs a journal and a storage that every node reaches; '
            + '; '.join(problems)
            + '; or add --shared-fs if those paths are on a filesystem every node mounts at'
            ' the same path'
        )


def secrets_from_environment(params: dict[str, Any]) -> dict[str, Any]:
    """In a detached run's job: ``params`` with the secrets its environment carries."""
    text = os.environ.get(SECRETS_VARIABLE)
    if not text:
        return params
    try:
        secrets = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f'{SECRETS_VARIABLE} is not JSON: {error.msg}') from None
    if not isinstance(secrets, dict):
        raise ValueError(f'{SECRETS_VARIABLE} is not a JSON object')
    return {**params, **secrets}
