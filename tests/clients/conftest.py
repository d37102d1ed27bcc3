"""The storage index on each database: ``index_database`` (a test that asks for it runs
once with the index in its root's SQLite file, once in a fresh PostgreSQL database that
``SYNAPSE_DATABASE_URL`` names, as ``synapse --database URL`` would)."""

from __future__ import annotations

import pytest

from synapse_sdk._paths import DATABASE_URL_VARIABLE


@pytest.fixture(params=['sqlite', 'postgresql'])
def index_database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``'sqlite'``, or the URL of the PostgreSQL database the index is in."""
    if request.param == 'sqlite':
        monkeypatch.delenv(DATABASE_URL_VARIABLE, raising=False)
        return 'sqlite'
    url: str = request.getfixturevalue('postgres_db').url
    monkeypatch.setenv(DATABASE_URL_VARIABLE, url)
    return url
