"""An S3 server for tests: moto's ``ThreadedMotoServer``, a real HTTP S3 API on 127.0.0.1.

While it runs, the session's environment points every AWS client at it
(``AWS_ENDPOINT_URL``), with dummy credentials, no shared config or credentials
file of the developer's, and no instance-metadata look-ups: nothing reaches AWS.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ._common import LOOPBACK, require_module

REGION = 'us-east-1'


@dataclass(frozen=True)
class S3Server:
    """The endpoint and the (dummy) credentials; the secret stays out of ``repr``."""

    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str = field(repr=False)

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        boto3 = require_module('boto3', 'boto3')
        return boto3.client(
            's3',
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def create_bucket(self, name: str | None = None) -> str:
        """A new, empty bucket (a fresh name unless given)."""
        name = name or f'test-{secrets.token_hex(6)}'
        self.client().create_bucket(Bucket=name)
        return name


def aws_environment(endpoint_url: str, key_id: str, secret: str, home: Path) -> dict[str, str]:
    """What every AWS client of the session sees: this server, these keys, no metadata calls."""
    return {
        'AWS_ENDPOINT_URL': endpoint_url,
        'AWS_ACCESS_KEY_ID': key_id,
        'AWS_SECRET_ACCESS_KEY': secret,
        'AWS_DEFAULT_REGION': REGION,
        'AWS_REGION': REGION,
        'AWS_EC2_METADATA_DISABLED': 'true',
        'AWS_CONFIG_FILE': str(home / 'config'),  # absent files: no profile of the developer's
        'AWS_SHARED_CREDENTIALS_FILE': str(home / 'credentials'),
    }


@pytest.fixture(scope='session')
def s3_server() -> Iterator[S3Server]:
    """moto on 127.0.0.1 for the session; AWS_* point at it until the session ends."""
    require_module('boto3', 'boto3')
    moto_server = require_module('moto.server', 'moto[server]')
    server = moto_server.ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f'http://{host}:{port}'
        s3 = S3Server(endpoint, REGION, 'synapse-test', secrets.token_urlsafe(24))
        with (
            tempfile.TemporaryDirectory(prefix='synapse-aws-') as home,
            pytest.MonkeyPatch.context() as patch,
        ):
            for name in ('AWS_PROFILE', 'AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN'):
                patch.delenv(name, raising=False)
            env = aws_environment(endpoint, s3.access_key_id, s3.secret_access_key, Path(home))
            for name, value in env.items():
                patch.setenv(name, value)
            yield s3
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh, empty bucket for one test."""
    return s3_server.create_bucket()
