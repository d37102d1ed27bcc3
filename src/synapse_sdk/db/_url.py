"""Which database a location means: a path is an SQLite file, a URL names a server."""

from __future__ import annotations

import os
import re

from ._base import Database, Schema
from ._postgres import SCHEMES, PostgresDatabase, is_postgres_url
from ._sqlite import SQLiteDatabase

__all__ = ['is_url', 'open_database']

_URL = re.compile(r'[A-Za-z][A-Za-z0-9+.-]*://')


def is_url(location: str | os.PathLike[str]) -> bool:
    return isinstance(location, str) and _URL.match(location) is not None


def open_database(
    location: str | os.PathLike[str],
    schema: Schema,
    *,
    durable: bool = False,
    remedy: str | None = None,
    require_url: bool = False,
) -> Database:
    """``postgresql://user:password@host:port/db`` -> PostgreSQL; a path -> an SQLite file
    (``durable``: an fsync per commit). Another URL scheme, or with ``require_url`` (the
    location came from ``SYNAPSE_DATABASE_URL``) no URL at all, is refused in one line
    (the schema's ``unavailable_error``); nothing is connected to yet."""
    if is_postgres_url(location) or (require_url and not is_url(location)):
        assert isinstance(location, str)
        if remedy is None:
            return PostgresDatabase(location, schema)
        return PostgresDatabase(location, schema, remedy=remedy)
    if is_url(location):
        assert isinstance(location, str)
        scheme = location.partition('://')[0]
        error = schema.unavailable_error or schema.unusable_error
        raise error(
            f'database URL scheme {scheme!r} is not supported: the {schema.name} lives in'
            f' PostgreSQL ({SCHEMES[0]}://user:password@host:port/database) or in an'
            ' SQLite file (a path)'
        )
    if remedy is None:
        return SQLiteDatabase(location, schema, durable=durable)
    return SQLiteDatabase(location, schema, durable=durable, remedy=remedy)
