"""Where the SDK keeps its local state, and reading the text files users hand it.

One function decides the location so that every component (storage, journals,
caches) moves together when a user or a test points ``SYNAPSE_HOME`` elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from synapse_sdk.plugins.steps import ErrorKind, SynapseError

__all__ = [
    'DATABASE_URL_VARIABLE',
    'UnreadableTextError',
    'database_url',
    'read_utf8',
    'run_log_path',
    'synapse_home',
]


def synapse_home() -> Path:
    """Return the SDK's state directory without creating it.

    Read on every call (not cached) so a changed ``SYNAPSE_HOME`` takes effect
    immediately; an empty value counts as unset rather than meaning the cwd.
    """
    configured = os.environ.get('SYNAPSE_HOME')
    if configured:
        return Path(configured).expanduser()
    return Path('~/.synapse').expanduser()


def run_log_path(run_id: str) -> Path:
    """The JSON-lines log of the run ``run_id`` (written by ``synapse plugin run``)."""
    return (synapse_home() / 'logs' / f'{run_id}.jsonl').absolute()  # the same after a chdir


DATABASE_URL_VARIABLE = 'SYNAPSE_DATABASE_URL'


def database_url() -> str | None:
    """The database for the run journal and the storage index, if not the SQLite files
    under ``SYNAPSE_HOME``: ``SYNAPSE_DATABASE_URL`` (``postgresql://...``); read on
    every call, an empty value counts as unset."""
    return os.environ.get(DATABASE_URL_VARIABLE) or None


class UnreadableTextError(SynapseError, ValueError):
    """A file the user named (a config, a params file) cannot be read as UTF-8 text."""

    kind = ErrorKind.BAD_INPUT


def read_utf8(path: Path, label: str) -> str:
    """The text of ``path``; the error names ``label`` and says what to do."""
    try:
        return path.read_text(encoding='utf-8')
    except UnicodeDecodeError as error:
        raise UnreadableTextError(
            f'{label} is not UTF-8 text (byte {error.object[error.start]:#x} at '
            f'offset {error.start}): save it as UTF-8'
        ) from error
    except OSError as error:
        raise UnreadableTextError(f'cannot read {label}: {error.strerror}') from error
