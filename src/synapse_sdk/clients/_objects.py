"""S3, Azure Blob, GCS and in-memory stores, through obstore (Rust ``object_store``).

Chosen by measurement (docs/benchmarks.md): fewer requests' worth of client
CPU per object, streaming multipart uploads in constant memory, create-only
puts, and retries with backoff for 5xx, throttling and dropped connections.

Uploads: a file that fits in one part is one create-only ``PUT``, verified by
its ETag (S3 and GCS return the MD5 of a single-part body); a larger one is a
multipart upload streamed from the file (aborted, so invisible, if it fails),
verified by a ``HEAD`` of its size. Credentials come from each provider's
standard chain (environment, profile files through boto3, instance metadata);
messages name the storage by its URL, which never holds one.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import obstore as obs
from obstore.exceptions import AlreadyExistsError, PermissionDeniedError, UnauthenticatedError
from obstore.store import AzureStore, GCSStore, MemoryStore, S3Store

from synapse_sdk.clients._blobs import BLOB_DIR, Digest, ObjectInfo, Reader, Writable, write_all
from synapse_sdk.clients._errors import (
    ClientError,
    StorageAccessError,
    StorageConfigError,
    StorageIntegrityError,
    StorageUnavailableError,
)
from synapse_sdk.clients._urls import credentials_hint

if TYPE_CHECKING:
    from obstore.store import ObjectStore

    from synapse_sdk.clients._urls import StorageLocation

PART_SIZE = 8 * 1024 * 1024  # multipart part size; a file up to this size is one PUT
PART_CONCURRENCY = 8  # parts of one file in flight: at most 64 MiB of it in memory
PUT_RETRY_DELAYS = (0.2, 1.0, None)  # a PUT that obstore did not try again: twice more
UNREACHABLE_FOR_S = 10.0  # after retries gave up, later calls fail at once for this long
# obstore's default cuts any request after 30 s, a streamed download of a large file too:
# a stalled connection is detected by the read timeout instead
CLIENT_OPTIONS = {'timeout': '6h', 'read_timeout': '120s', 'connect_timeout': '10s'}

_MEMORY_STORES: dict[str, MemoryStore] = {}  # memory://name -> its store, in this process
_MEMORY_LOCK = threading.Lock()


@dataclass(frozen=True)
class StoreConfig:
    """What the obstore store is built from (no request is made to work it out)."""

    kind: str  # 's3', 'az', 'gs', 'memory'
    bucket: str
    prefix: str | None
    config: dict[str, Any] = field(default_factory=dict)
    client_options: dict[str, Any] = field(default_factory=dict)
    retry_config: dict[str, Any] = field(default_factory=dict)
    boto3_profile: bool = False  # credentials from AWS profile files, through boto3


_ENDPOINT_ENV = {
    's3': ('AWS_ENDPOINT_URL_S3', 'AWS_ENDPOINT_URL', 'AWS_ENDPOINT'),
    'az': ('AZURE_STORAGE_ENDPOINT', 'AZURE_ENDPOINT'),
    'gs': ('GOOGLE_BASE_URL',),
}
_ENDPOINT_KEY = {'s3': 'endpoint', 'az': 'endpoint', 'gs': 'base_url'}


def store_config(location: StorageLocation, env: Mapping[str, str] | None = None) -> StoreConfig:
    """The obstore settings for ``location``: the URL's options first, then the
    environment (AWS_ENDPOINT_URL, AWS_REGION, ...), as each provider reads it."""
    env = os.environ if env is None else env
    scheme = location.scheme
    config: dict[str, Any] = {}
    endpoint = location.option('endpoint')
    if endpoint is None:
        endpoint = next((env[n] for n in _ENDPOINT_ENV.get(scheme, ()) if env.get(n)), None)
    if endpoint is not None:
        config[_ENDPOINT_KEY[scheme]] = endpoint
    if location.option('region') is not None:
        config['region'] = location.option('region')
    if location.option('path_style') is not None:
        config['virtual_hosted_style_request'] = location.option('path_style') == 'false'
    if location.option('account') is not None:
        config['account_name'] = location.option('account')
    retry: dict[str, Any] = {}
    if location.option('max_retries') is not None:
        retry['max_retries'] = int(location.option('max_retries') or 0)
    if location.option('retry_timeout') is not None:
        retry['retry_timeout'] = timedelta(seconds=float(location.option('retry_timeout') or 0))
    options: dict[str, Any] = dict(CLIENT_OPTIONS)
    if endpoint and endpoint.startswith('http://'):
        options['allow_http'] = True
    return StoreConfig(
        kind=scheme,
        bucket=location.netloc,
        prefix=location.prefix or None,
        config=config,
        client_options=options,
        retry_config=retry,
        boto3_profile=scheme == 's3' and _wants_profile(env),
    )


def _wants_profile(env: Mapping[str, str]) -> bool:
    """AWS profile files are read by boto3 (object_store does not): used when a profile is
    named, or when no other source of credentials is configured and the files exist."""
    if env.get('AWS_PROFILE'):
        return True
    others = ('AWS_ACCESS_KEY_ID', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_CONTAINER_CREDENTIALS_')
    if any(name.startswith(others) for name in env):
        return False
    home = os.path.expanduser('~/.aws')
    files = (
        env.get('AWS_SHARED_CREDENTIALS_FILE', os.path.join(home, 'credentials')),
        env.get('AWS_CONFIG_FILE', os.path.join(home, 'config')),
    )
    return any(os.path.isfile(path) for path in files)


def build_store(settings: StoreConfig, location: StorageLocation) -> ObjectStore:
    if settings.kind == 'memory':
        with _MEMORY_LOCK:
            return _MEMORY_STORES.setdefault(settings.bucket, MemoryStore())
    common: dict[str, Any] = {
        'prefix': settings.prefix,
        'config': settings.config,
        'client_options': settings.client_options or None,
        'retry_config': settings.retry_config or None,
    }
    if settings.kind == 's3':
        provider = _boto3_provider(location) if settings.boto3_profile else None
        config = {'checksum_algorithm': 'sha256', **settings.config}
        return S3Store(
            settings.bucket, credential_provider=provider, **{**common, 'config': config}
        )
    if settings.kind == 'az':
        return AzureStore(settings.bucket, **common)
    return GCSStore(settings.bucket, **common)


def _boto3_provider(location: StorageLocation) -> Any:
    try:
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError as error:
        raise StorageConfigError(
            f'storage {location.url}: AWS profile files (AWS_PROFILE, ~/.aws) are read through '
            'boto3, which is not installed: pip install boto3 (or set AWS_ACCESS_KEY_ID and '
            'AWS_SECRET_ACCESS_KEY)'
        ) from error
    try:
        return Boto3CredentialProvider()
    except Exception as error:  # botocore: no such profile, unreadable files, no credentials
        raise StorageAccessError(
            f'storage {location.url}: no AWS credentials from the profile files '
            f'({type(error).__name__}); check AWS_PROFILE and ~/.aws/credentials'
        ) from None


class ObjectStoreBlobs:
    """A ``BlobStore`` over an obstore store, built lazily in each process."""

    def __init__(self, location: StorageLocation) -> None:
        self.location = location
        self.settings = store_config(location)
        self._store: ObjectStore | None = None
        self._pid = 0
        self._down: tuple[float, str] | None = None  # (until, why): unreachable just now
        # memory stores have no prefix of their own: names are prefixed here
        memory = location.scheme == 'memory' and location.prefix
        self._base = f'{location.prefix}/' if memory else ''

    def __getstate__(self) -> dict[str, Any]:
        return {'location': self.location}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state['location'])  # type: ignore[misc]

    @property
    def store(self) -> ObjectStore:
        if self._store is None or self._pid != os.getpid():
            try:
                self._store = build_store(self.settings, self.location)
            except (ValueError, TypeError, obs.exceptions.BaseError) as error:
                raise StorageConfigError(
                    f'storage {self.location.url} cannot be set up: {_first_line(error)}'
                ) from None
            self._pid = os.getpid()
        return self._store

    # ------------------------------------------------------------------ the interface

    def put(self, name: str, source: Reader) -> Digest:
        first = source.read(PART_SIZE)
        second = source.read(PART_SIZE) if len(first) == PART_SIZE else b''
        if not second:  # one part: a create-only PUT, whose ETag is the body's MD5 on S3
            checked = self._put_once(name, first, source)
        else:  # parts checked by S3 itself (x-amz-checksum-sha256), then the size here
            with self._errors('uploading', name):
                obs.put(
                    self.store,
                    self._base + name,
                    _parts(first, second, source),
                    chunk_size=PART_SIZE,
                    max_concurrency=PART_CONCURRENCY,
                )
        digest = source.digest
        if second:
            self._verify_size(name, digest.size)
        elif not checked:  # an ETag that is not an MD5 (Azure, SSE-KMS): read it back
            self._verify_content(name, digest)
        return digest

    def _put_once(self, name: str, body: bytes, source: Reader) -> bool:
        """A create-only PUT; whether its ETag proved the content (else it is read back).

        obstore does not send a PUT again once its request went out (it may have been
        stored); a create-only PUT of a fresh name may be: a second try either stores it or
        finds the first try's object, whose content then says whose it is."""
        md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
        with self._errors('uploading', name):
            for delay in PUT_RETRY_DELAYS:
                try:
                    result = obs.put(self.store, self._base + name, body, mode='create')
                    break
                except AlreadyExistsError:
                    if self.get(name, _Discard()) != source.digest:
                        raise  # not ours (names are fresh uuids: someone wrote it by hand)
                    return True
                except obs.exceptions.GenericError as error:
                    if delay is None or not _not_retried(error):
                        raise
                    time.sleep(delay)
        return (result.get('e_tag') or '').strip('"') == md5

    def get(self, name: str, out: Writable) -> Digest:
        with self._errors('downloading', name, missing_ok=True):
            result = obs.get(self.store, self._base + name)
            return write_all(result.stream(min_chunk_size=PART_SIZE), out)

    def head(self, name: str) -> ObjectInfo | None:
        try:
            with self._errors('reading the size of', name, missing_ok=True):
                meta = obs.head(self.store, self._base + name)
        except FileNotFoundError:
            return None
        return ObjectInfo(name, int(meta['size']), meta['last_modified'])

    def delete(self, name: str) -> None:
        try:
            with self._errors('deleting', name, missing_ok=True):
                obs.delete(self.store, self._base + name)
        except FileNotFoundError:
            pass  # gone already (Azure says so; S3 does not)

    def discard_temp(self, name: str) -> list[str]:
        """Nothing: a put is one request, or a multipart upload that is invisible until
        it completes (aborted when it fails; one cut off by a kill is left to the
        bucket's lifecycle rule, see docs/storage.md)."""
        return []

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        start = len(self._base)
        with self._errors('listing', prefix):
            for chunk in obs.list(self.store, self._base + prefix, chunk_size=1000):
                for meta in chunk:
                    name = meta['path'][start:]
                    yield ObjectInfo(name, int(meta['size']), meta['last_modified'])

    def locate(self, name: str) -> str:
        loc = self.location
        base = f'{loc.scheme}://{loc.netloc}/'
        return base + (f'{loc.prefix}/' if loc.prefix else '') + name

    def check(self) -> None:
        with self._errors('listing', BLOB_DIR):
            next(iter(obs.list(self.store, self._base + BLOB_DIR, chunk_size=1)), None)

    # ------------------------------------------------------------------ internals

    def _verify_size(self, name: str, size: int) -> None:
        info = self.head(name)
        if info is None or info.size != size:
            found = 'no object' if info is None else f'{info.size} bytes'
            self._damaged(name, f'{size} bytes sent, {found} stored')

    def _verify_content(self, name: str, sent: Digest) -> None:
        stored = self.get(name, _Discard())
        if stored != sent:
            self._damaged(
                name,
                f'sent {sent.size} bytes sha256={sent.sha256}, stored {stored.size} bytes'
                f' sha256={stored.sha256}',
            )

    def _damaged(self, name: str, what: str) -> None:
        self.delete(name)
        raise StorageUnavailableError(
            f'storage {self.location.url}: the upload of {name} was stored damaged ({what}); '
            'it was removed and nothing was indexed: try again'
        )

    def _errors(self, doing: str, name: str, *, missing_ok: bool = False) -> _Translate:
        return _Translate(self, doing, name, missing_ok)


class _Translate:
    """Turns obstore's errors into the SDK's, one line naming the storage; remembers a
    storage that was unreachable after retries, so the calls right after fail at once."""

    def __init__(self, blobs: ObjectStoreBlobs, doing: str, name: str, missing_ok: bool) -> None:
        self.blobs, self.doing, self.name, self.missing_ok = blobs, doing, name, missing_ok

    def __enter__(self) -> None:
        down = self.blobs._down
        if down is not None and time.monotonic() < down[0]:
            raise StorageUnavailableError(f'{down[1]} (not tried again so soon)')

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        if not isinstance(error, Exception) or isinstance(error, ClientError):
            return  # no error, an interrupt, or the source's own (SourceFileError)
        if isinstance(error, FileNotFoundError) and self.missing_ok and not _no_bucket(error):
            return  # the caller decides what a missing object means
        if not isinstance(error, obs.exceptions.BaseError | OSError | ValueError):
            return
        translated = translate(error, self.blobs.location, f'{self.doing} {self.name}')
        if isinstance(translated, StorageUnavailableError):
            self.blobs._down = (time.monotonic() + UNREACHABLE_FOR_S, str(translated))
        raise translated from scrubbed(error)


class _Discard:
    """A download's output that keeps nothing (the content is only hashed)."""

    def write(self, chunk: bytes) -> int:
        return len(chunk)


def _parts(first: bytes, second: bytes, source: Reader) -> Iterator[bytes]:
    yield first
    yield second
    yield from source.chunks(PART_SIZE)


_CODE = re.compile(r'<Code>(\w+)</Code>')
_STATUS = re.compile(r'status code: (\d{3})')
_NO_BUCKET = ('NoSuchBucket', 'ContainerNotFound')
_DENIED = ('AccessDenied', 'AuthorizationFailure', 'AuthorizationPermissionMismatch', 'Forbidden')
_BAD_CREDENTIALS = (
    'InvalidAccessKeyId',
    'SignatureDoesNotMatch',
    'AuthenticationFailed',
    'InvalidAuthenticationInfo',
    'ExpiredToken',
    'InvalidToken',
)
_WRONG_REGION = ('PermanentRedirect', 'AuthorizationHeaderMalformed', 'IllegalLocationConstraint')


def _not_retried(error: BaseException) -> bool:
    """obstore gave up at once (a request that was sent, then cut off), not after retries,
    and not because the server refused it (4xx)."""
    text = str(error)
    return not re.search(r'after \d+ retries', text) and not _STATUS_4XX.search(text)


_STATUS_4XX = re.compile(r'status code: 4\d\d')


def _no_bucket(error: BaseException) -> bool:
    return any(code in str(error) for code in _NO_BUCKET)


def translate(error: BaseException, location: StorageLocation, doing: str) -> ClientError:
    """One line for ``error``: which storage, what happened, what to do (no secret)."""
    text = str(error)
    found = _CODE.search(text)
    code = found.group(1) if found else ''
    status_found = _STATUS.search(text)
    status = int(status_found.group(1)) if status_found else 0
    where = f'storage {location.url}'
    hint = credentials_hint(location.scheme)
    what = 'container' if location.scheme == 'az' else 'bucket'
    if isinstance(error, AlreadyExistsError):  # create-only: names are uuids, so not ours
        return StorageIntegrityError(
            f'{where}: {doing}: an object is there already, which no upload of this SDK made; '
            'it was left as it is and nothing was indexed'
        )
    if code in _NO_BUCKET:
        return StorageAccessError(
            f"{where}: the {what} '{location.netloc}' does not exist ({code}); create it, "
            'or name an existing one in the storage URL'
        )
    if isinstance(error, PermissionDeniedError) or code in _DENIED:
        return StorageAccessError(
            f'{where}: access denied while {doing} ({code or status or "permission denied"}); '
            f'use credentials allowed to read, write, list and delete there ({hint})'
        )
    if isinstance(error, UnauthenticatedError) or code in _BAD_CREDENTIALS:
        return StorageAccessError(
            f'{where}: the credentials were refused ({code or "unauthenticated"}); check {hint}'
        )
    if '169.254.169.254' in text or ('credential' in text.lower() and status != 503):
        return StorageAccessError(f'{where}: no credentials were found; set {hint}')
    if 'dns error' in text:
        return StorageAccessError(
            f"{where}: the endpoint's host name does not resolve; fix the endpoint "
            "(?endpoint=, or the provider's endpoint variable, e.g. AWS_ENDPOINT_URL)"
        )
    if code in _WRONG_REGION or status == 301:
        return StorageAccessError(
            f'{where}: the {what} is in another region ({code or "redirect"}); add '
            '?region=REGION to the storage URL (or set AWS_REGION)'
        )
    if 400 <= status < 500 and status not in (408, 429):
        return StorageAccessError(
            f'{where}: {doing} was refused (HTTP {status}{" " + code if code else ""}); check '
            'the storage URL, its endpoint and the credentials'
        )
    return StorageUnavailableError(
        f'{where}: {doing} failed after retries ({_reason(text, status, code)}); check the '
        'endpoint and the network, then try again'
    )


def _reason(text: str, status: int, code: str) -> str:
    lowered = text.lower()
    if status:
        return f'HTTP {status}{" " + code if code else ""}'
    for needle, reason in (
        ('connection refused', 'connection refused'),
        ('connection reset', 'connection reset'),
        ('timed out', 'timed out'),
        ('operation timed out', 'timed out'),
        ('error sending request', 'cannot connect'),
    ):
        if needle in lowered:
            return reason
    return _first_line(text)[:120]


_QUERY = re.compile(r'(https?://[^\s?"\']+)\?[^\s"\']*')


def scrubbed(error: BaseException) -> BaseException:
    """A copy of a provider error for ``__cause__``, with the query strings of the URLs in
    its message removed (a pre-signed or SAS URL carries a signature there)."""
    text = _QUERY.sub(r'\1?...', str(error))
    try:
        return type(error)(text)
    except Exception:
        return RuntimeError(text)


def _first_line(error: BaseException | str) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
