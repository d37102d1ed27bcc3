"""Fixtures that start real services on 127.0.0.1 (registered for all tests by tests/conftest.py).

Each one skips its tests on a machine without the service and fails them in CI
(docs/testing.md, "Tests against real services").
"""

from __future__ import annotations

from .azurite import azurite_server
from .chromium import chromium, chromium_page
from .postgres import postgres_db, postgres_server
from .s3 import s3_bucket, s3_server
from .sftp import sftp_server

__all__ = [
    'azurite_server',
    'chromium',
    'chromium_page',
    'postgres_db',
    'postgres_server',
    's3_bucket',
    's3_server',
    'sftp_server',
]
