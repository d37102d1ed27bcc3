"""Storage URLs: where a client keeps its blobs, written without credentials.

``/a/folder`` or ``file:///a/folder`` (the default: ``$SYNAPSE_HOME/storage``),
``s3://bucket/prefix``, ``az://container/prefix``, ``gs://bucket/prefix``,
``sftp://user@host:port/path`` and ``memory://name`` (one process, for tests).
Options that are not secrets go in the query (``?endpoint=...&region=...``);
credentials never do: they come from each provider's standard chain, so a URL
can be printed, logged and journaled as it is. A URL that holds one is refused
(and shown with the secret masked, :func:`redact`).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from synapse_sdk.clients._errors import StorageConfigError

__all__ = ['SCHEMES', 'StorageLocation', 'choose_storage', 'parse_storage', 'redact']

# scheme -> the extra (pip install 'synapse-sdk[EXTRA]') its client library comes with
SCHEMES: dict[str, str | None] = {
    'file': None,
    's3': 's3',
    'az': 'azure',
    'gs': 'gcs',
    'sftp': 'sftp',
    'memory': 's3',
}
_RETRIES = ('max_retries', 'retry_timeout')
# scheme -> the query options it takes (none of them a secret)
OPTIONS: dict[str, tuple[str, ...]] = {
    'file': (),
    'memory': (),
    's3': ('endpoint', 'region', 'path_style', *_RETRIES),
    'az': ('account', 'endpoint', *_RETRIES),
    'gs': ('endpoint', *_RETRIES),
    'sftp': ('known_hosts', 'identity'),
}
# options that tell two stores with the same bucket name apart
_IDENTITY_OPTIONS = ('account', 'endpoint')
_CREDENTIALS = {
    's3': 'AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or instance credentials',
    'az': 'AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_KEY, AZURE_CLIENT_SECRET, or a'
    ' managed identity',
    'gs': 'GOOGLE_APPLICATION_CREDENTIALS or GOOGLE_SERVICE_ACCOUNT',
    'sftp': 'an SSH key (~/.ssh, ssh-agent, ?identity=PATH) or SYNAPSE_SFTP_PASSWORD',
    'memory': 'none',
    'file': 'none',
}
_BUCKET = re.compile(r'[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]')
_SEGMENT = re.compile(r'[A-Za-z0-9._~+=@-]+')
_HOST = re.compile(r'[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]')
_MEMORY_NAME = re.compile(r'[A-Za-z0-9._-]*')


def credentials_hint(scheme: str) -> str:
    """Where the credentials of ``scheme`` come from, for messages."""
    return _CREDENTIALS[scheme]


@dataclass(frozen=True)
class StorageLocation:
    """A parsed storage URL. ``url`` is its canonical form: what the journal records."""

    scheme: str
    netloc: str  # bucket, container, host[:port] or memory name; '' for a folder
    prefix: str  # within the bucket, no leading or trailing '/'; a folder's absolute path
    options: tuple[tuple[str, str], ...] = ()
    user: str | None = None  # sftp only

    @property
    def is_local(self) -> bool:
        return self.scheme == 'file'

    @property
    def extra(self) -> str | None:
        return SCHEMES[self.scheme]

    def option(self, name: str) -> str | None:
        return dict(self.options).get(name)

    @property
    def url(self) -> str:
        """The URL with every option (none is a secret): enough to open the store again."""
        return self._unsplit(self.options)

    @property
    def namespace(self) -> str:
        """How an index shared by several stores tells this one's files apart."""
        kept = tuple((k, v) for k, v in self.options if k in _IDENTITY_OPTIONS)
        return self._unsplit(kept)

    @property
    def folder(self) -> Path:
        """A local store's folder."""
        if not self.is_local:
            raise ValueError(f'{self.url} is not a local folder')
        return Path(self.prefix)

    def _unsplit(self, options: tuple[tuple[str, str], ...]) -> str:
        if self.is_local:
            return 'file://' + quote(self.prefix, safe='/', errors='surrogateescape')
        netloc = f'{self.user}@{self.netloc}' if self.user else self.netloc
        path = '/' + self.prefix if self.prefix else ''
        if self.scheme == 'sftp':
            path = '/' + self.prefix
        query = urlencode(options, safe=':/')
        return f'{self.scheme}://{netloc}{path}' + (f'?{query}' if query else '')

    def __str__(self) -> str:
        return self.url


def parse_storage(
    value: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None
) -> StorageLocation:
    """Read a storage URL or folder path; a relative folder is taken from ``base`` (default:
    the current directory). Raises :class:`StorageConfigError` for anything unusable."""
    if not isinstance(value, str):
        return _folder(os.fspath(value), base)
    text = value.strip()
    if not text:
        raise StorageConfigError('the storage URL is empty; give a folder path or a URL')
    if '://' not in text:
        return _folder(text, base)
    try:
        parts = urlsplit(text)
    except ValueError as error:
        raise StorageConfigError(f'storage URL {redact(text)} cannot be read ({error})') from error
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise StorageConfigError(
            f"storage URL {redact(text)} has the scheme '{scheme}', which is not one of: "
            'a folder path, file://, s3://, az://, gs://, sftp://, memory://'
        )
    if parts.fragment:
        raise StorageConfigError(f'storage URL {redact(text)} has a #fragment; remove it')
    if scheme == 'file':
        return _file_url(text, parts.netloc, parts.path, parts.query)
    options = _options(text, scheme, parts.query)
    if scheme == 'sftp':
        return _sftp(text, parts.netloc, parts.path, options)
    if scheme == 'memory':
        return _memory(text, parts.netloc, parts.path)
    return _bucket_url(text, scheme, parts.netloc, parts.path, options)


def _folder(path: str, base: str | os.PathLike[str] | None) -> StorageLocation:
    chosen = Path(path).expanduser()
    if not chosen.is_absolute():
        chosen = Path(base if base is not None else os.getcwd()) / chosen
    return StorageLocation('file', '', os.path.abspath(chosen))


def _file_url(text: str, netloc: str, path: str, query: str) -> StorageLocation:
    if netloc not in ('', 'localhost'):
        raise StorageConfigError(
            f"storage URL {redact(text)} names the host '{netloc}'; a file:// URL is a folder "
            'on this machine: file:///absolute/path'
        )
    if query:
        raise StorageConfigError(f'storage URL {redact(text)}: a folder takes no ?options')
    folder = unquote(path, errors='surrogateescape')
    if not folder.startswith('/'):
        raise StorageConfigError(
            f'storage URL {redact(text)} needs an absolute path: file:///absolute/path'
        )
    return StorageLocation('file', '', os.path.abspath(folder))


def _options(text: str, scheme: str, query: str) -> tuple[tuple[str, str], ...]:
    allowed = OPTIONS[scheme]
    seen: dict[str, str] = {}
    for name, raw in parse_qsl(query, keep_blank_values=True):
        if name not in allowed:
            if _looks_secret(name):
                raise StorageConfigError(
                    f'storage URL {redact(text)} holds a credential ({name}); credentials '
                    f'never go in a storage URL: use {credentials_hint(scheme)}'
                )
            known = ', '.join(allowed) or 'none'
            raise StorageConfigError(
                f"storage URL {redact(text)} has the option '{name}', which {scheme}:// "
                f'does not take; its options: {known}'
            )
        if name in seen:
            raise StorageConfigError(f"storage URL {redact(text)} gives '{name}' twice")
        seen[name] = _option_value(text, name, raw)
    return tuple(sorted(seen.items()))


def _option_value(text: str, name: str, raw: str) -> str:
    value = raw.strip()
    problem = None
    if name == 'endpoint':
        ends = urlsplit(value) if '://' in value else None
        if ends is None or ends.scheme not in ('http', 'https') or not ends.hostname:
            problem = 'an http:// or https:// URL'
        elif ends.username or ends.password or ends.query:
            problem = 'a URL without credentials or ?query'
        value = value.rstrip('/')
    elif name == 'path_style':
        value = value.lower()
        if value not in ('true', 'false'):
            problem = 'true or false'
    elif name == 'max_retries':
        if not (re.fullmatch(r'[0-9]{1,3}', value) and int(value) <= 100):
            problem = 'a whole number from 0 to 100'
    elif name == 'retry_timeout':
        problem = None if _seconds(value) else 'a number of seconds (up to 3600)'
    elif name in ('region', 'account'):
        if not re.fullmatch(r'[a-z0-9-]{1,63}', value):
            problem = 'lower-case letters, digits and dashes'
    elif not value:  # known_hosts, identity: file paths
        problem = 'a file path'
    if problem is not None:
        raise StorageConfigError(
            f"storage URL {redact(text)}: option '{name}' must be {problem}, "
            f'got {_without_userinfo(raw)!r}'
        )
    return value


def _seconds(value: str) -> bool:
    try:
        seconds = float(value)
    except ValueError:
        return False
    return math.isfinite(seconds) and 0 < seconds <= 3600


def _prefix(text: str, path: str) -> str:
    segments = [s for s in path.split('/')]
    inner = segments[1:-1] if len(segments) > 2 else []
    body = [s for s in segments if s]
    if '' in inner or any(s in ('.', '..') or not _SEGMENT.fullmatch(s) for s in body):
        raise StorageConfigError(
            f'storage URL {redact(text)} has an unusable path {path!r}: use names of letters, '
            'digits and ._~+=@- separated by single slashes'
        )
    return '/'.join(body)


def _no_credentials(text: str, scheme: str, netloc: str) -> None:
    if '@' in netloc and (scheme != 'sftp' or ':' in netloc.rsplit('@', 1)[0]):
        raise StorageConfigError(
            f'storage URL {redact(text)} holds credentials; credentials never go in a storage '
            f'URL: use {credentials_hint(scheme)}'
        )


def _bucket_url(
    text: str, scheme: str, netloc: str, path: str, options: tuple[tuple[str, str], ...]
) -> StorageLocation:
    _no_credentials(text, scheme, netloc)
    what = 'container' if scheme == 'az' else 'bucket'
    if not _BUCKET.fullmatch(netloc) or '..' in netloc:
        raise StorageConfigError(
            f'storage URL {redact(text)} needs a {what} name after {scheme}:// (3-63 lower-case '
            f"letters, digits, '.', '-'), got {netloc!r}"
        )
    return StorageLocation(scheme, netloc, _prefix(text, path), options)


def _sftp(
    text: str, netloc: str, path: str, options: tuple[tuple[str, str], ...]
) -> StorageLocation:
    _no_credentials(text, 'sftp', netloc)
    user, _, hostport = netloc.rpartition('@')
    host, port = hostport, ''
    if not host.endswith(']') and ':' in host:
        host, _, port = host.rpartition(':')
    if not _HOST.fullmatch(host) or (port and not port_ok(port)):
        raise StorageConfigError(
            f'storage URL {redact(text)} needs a host (and optionally :port): '
            'sftp://user@host:22/absolute/path'
        )
    if user and not re.fullmatch(r'[A-Za-z0-9._-]+', user):
        raise StorageConfigError(f'storage URL {redact(text)} has an unusable user name')
    return StorageLocation(
        'sftp', hostport.lower(), _prefix(text, path or '/'), options, user or None
    )


def port_ok(port: str) -> bool:
    """ASCII digits for 1..65535 (``isdigit`` takes superscripts too, which ``int`` refuses)."""
    return re.fullmatch(r'[0-9]{1,5}', port) is not None and 0 < int(port) < 65536


def _memory(text: str, netloc: str, path: str) -> StorageLocation:
    if not _MEMORY_NAME.fullmatch(netloc):
        raise StorageConfigError(
            f'storage URL {redact(text)}: a memory store is named by letters, digits and ._-'
        )
    return StorageLocation('memory', netloc, _prefix(text, path))


_SECRET_WORDS = ('secret', 'key', 'token', 'password', 'passwd', 'pwd', 'sig', 'credential', 'sas')


def _looks_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _without_userinfo(value: str) -> str:
    """An option's value for a message: a URL's ``user:password@`` (an endpoint given with
    credentials, which is refused) becomes ``***@``."""
    return re.sub(r'(?<=://)[^/@]*@', '***@', value)


def redact(url: str) -> str:
    """``url`` for messages: a password or any user info of a bucket URL, and every query
    value that is not a known option, replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return '<a storage URL that cannot be read>'
    netloc = parts.netloc
    if '@' in netloc:
        userinfo, _, host = netloc.rpartition('@')
        if parts.scheme.lower() == 'sftp' and ':' not in userinfo:
            netloc = f'{userinfo}@{host}'
        elif parts.scheme.lower() == 'sftp':
            netloc = f'{userinfo.split(":", 1)[0]}:***@{host}'
        else:
            netloc = f'***@{host}'
    known = {name for names in OPTIONS.values() for name in names}
    pairs = [
        (name, _without_userinfo(value) if name in known and not _looks_secret(name) else '***')
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    query = urlencode(pairs, safe='*/:') if pairs else ('***' if parts.query else '')
    return urlunsplit((parts.scheme, netloc, parts.path, query, ''))


def choose_storage(
    given: str | None,
    configured: str | None = None,
    *,
    plugin_path: str | os.PathLike[str] | None = None,
) -> str | None:
    """Which storage a run uses: ``--storage``, else ``SYNAPSE_STORAGE``, else the plugin's
    ``config.yaml`` ``storage:`` (a relative folder there is in the plugin folder), else
    None: the default folder, ``$SYNAPSE_HOME/storage``."""
    if given:
        return given
    from_env = os.environ.get('SYNAPSE_STORAGE', '').strip()
    if from_env:
        return from_env
    if configured:
        if '://' not in configured and plugin_path is not None:
            return os.path.abspath(Path(plugin_path) / Path(configured).expanduser())
        return configured
    return None
