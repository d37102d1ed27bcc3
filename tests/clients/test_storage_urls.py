"""Storage URLs and provider settings, without a server: what each URL means, what is
refused (in one line, with any secret masked), and the obstore settings it becomes.

GCS has no local server here: its URL and configuration are covered by these unit
tests only (docs/storage.md says so)."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest

from synapse_sdk.clients import (
    LocalBackendClient,
    StorageClient,
    StorageConfigError,
    choose_storage,
    open_storage,
    parse_storage,
    redact,
)
from synapse_sdk.errors import ErrorKind


@pytest.mark.parametrize(
    ('given', 'url', 'namespace'),
    [
        ('s3://my-bucket', 's3://my-bucket', 's3://my-bucket'),
        ('s3://my-bucket/a/b/', 's3://my-bucket/a/b', 's3://my-bucket/a/b'),
        (
            's3://b.x-1/p?region=eu-west-1&endpoint=http://127.0.0.1:9000/&path_style=TRUE',
            's3://b.x-1/p?endpoint=http://127.0.0.1:9000&path_style=true&region=eu-west-1',
            's3://b.x-1/p?endpoint=http://127.0.0.1:9000',
        ),
        ('az://container/pre?account=acct', 'az://container/pre?account=acct', None),
        ('gs://bucket/pre?endpoint=https://gcs.example:4443', None, None),
        ('sftp://me@Host.example:2222/srv/data', 'sftp://me@host.example:2222/srv/data', None),
        ('sftp://host/', 'sftp://host/', None),
        ('memory://', 'memory://', None),
        ('memory://t1/x', 'memory://t1/x', None),
        ('file:///tmp/a%20b', 'file:///tmp/a%20b', None),
    ],
)
def test_urls_are_read_into_one_canonical_form(
    given: str, url: str | None, namespace: str | None
) -> None:
    location = parse_storage(given)
    assert location.url == (url or given)
    assert location.namespace == (namespace or location.url)
    assert parse_storage(location.url) == location  # what the journal records reads back


def test_a_folder_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_storage('rel/store').folder == tmp_path / 'rel' / 'store'
    assert parse_storage('rel', base='/srv').folder == Path('/srv/rel')
    assert parse_storage(tmp_path / 'x').url == f'file://{tmp_path}/x'
    assert parse_storage('file://localhost/tmp/s').folder == Path('/tmp/s')
    assert isinstance(open_storage(str(tmp_path / 'x')), LocalBackendClient)


@pytest.mark.parametrize(
    ('given', 'message'),
    [
        ('', 'the storage URL is empty'),
        ('ftp://host/x', "has the scheme 'ftp', which is not one of"),
        ('s3://', 'needs a bucket name after s3://'),
        ('s3://Bad_Bucket', 'needs a bucket name'),
        ('s3://bucket/a//b', 'has an unusable path'),
        ('s3://bucket/a/../b', 'has an unusable path'),
        ('s3://bucket/x#frag', 'has a #fragment'),
        ('s3://bucket?colour=red', "has the option 'colour', which s3:// does not take"),
        ('s3://bucket?region=a&region=b', "gives 'region' twice"),
        ('s3://bucket?endpoint=localhost:9000', "option 'endpoint' must be an http:// or"),
        ('s3://bucket?path_style=maybe', "option 'path_style' must be true or false"),
        ('s3://bucket?max_retries=-1', "option 'max_retries' must be a whole number"),
        ('s3://bucket?retry_timeout=0', "option 'retry_timeout' must be a number of seconds"),
        ('gs://bucket?region=x', "has the option 'region', which gs:// does not take"),
        ('file://server/share', "names the host 'server'"),
        ('file:///x?a=1', 'a folder takes no ?options'),
        ('sftp:///path', 'needs a host'),
        ('sftp://host:99999/p', 'needs a host'),
        ('sftp://host:\u00b2/p', 'needs a host'),  # isdigit() takes it, int() does not
        ('s3://bucket/p?max_retries=\u00b2', "option 'max_retries' must be a whole number"),
        ('memory://bad name', 'a memory store is named by'),
    ],
)
def test_unusable_urls_are_one_line_of_bad_input(given: str, message: str) -> None:
    with pytest.raises(StorageConfigError) as caught:
        parse_storage(given)
    assert message in str(caught.value)
    assert '\n' not in str(caught.value)
    assert caught.value.kind is ErrorKind.BAD_INPUT


@pytest.mark.parametrize(
    ('given', 'secret', 'where'),
    [
        ('s3://AKIAXXXX:s3cr3t@bucket/p', 's3cr3t', 'AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY'),
        ('s3://bucket/p?secret_access_key=s3cr3t', 's3cr3t', 'AWS_PROFILE'),
        ('az://c/p?sig=s3cr3t&sv=2020', 's3cr3t', 'AZURE_STORAGE_SAS_KEY'),
        ('az://c/p?account_key=s3cr3t', 's3cr3t', 'AZURE_STORAGE_ACCOUNT_KEY'),
        ('gs://b/p?token=s3cr3t', 's3cr3t', 'GOOGLE_APPLICATION_CREDENTIALS'),
        ('sftp://me:s3cr3t@host/p', 's3cr3t', 'SYNAPSE_SFTP_PASSWORD'),
        ('sftp://host/p?password=s3cr3t', 's3cr3t', 'SYNAPSE_SFTP_PASSWORD'),
    ],
)
def test_credentials_in_a_url_are_refused_without_repeating_them(
    given: str, secret: str, where: str
) -> None:
    with pytest.raises(StorageConfigError) as caught:
        parse_storage(given)
    message = str(caught.value)
    assert 'never go in a storage URL' in message
    assert where in message  # the standard chain to use instead
    assert secret not in message and '***' in message


def test_an_endpoint_with_credentials_is_refused_without_repeating_them() -> None:
    given = 's3://bucket/p?endpoint=http://user:hunter2@127.0.0.1:9000'
    with pytest.raises(StorageConfigError) as caught:
        parse_storage(given)
    message = str(caught.value)
    assert "option 'endpoint' must be a URL without credentials" in message
    assert 'hunter2' not in message and 'user' not in message and '***@127.0.0.1' in message
    assert 'hunter2' not in redact(given)


def test_redact_masks_passwords_user_info_and_unknown_query_values() -> None:
    assert redact('sftp://me:pw@host/p') == 'sftp://me:***@host/p'
    assert redact('sftp://me@host/p') == 'sftp://me@host/p'
    assert redact('s3://KEY:SECRET@bucket/p') == 's3://***@bucket/p'
    assert redact('s3://b/p?region=eu-west-1&X-Amz-Signature=abc') == (
        's3://b/p?region=eu-west-1&X-Amz-Signature=***'
    )
    assert redact('https://acct.blob.core.windows.net/c?sv=1&sig=abc') == (
        'https://acct.blob.core.windows.net/c?sv=***&sig=***'
    )


def test_the_storage_is_chosen_by_flag_then_environment_then_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv('SYNAPSE_STORAGE', raising=False)
    assert choose_storage(None) is None  # the default folder
    assert choose_storage(None, 'data', plugin_path=tmp_path) == str(tmp_path / 'data')
    assert choose_storage(None, 's3://b/p', plugin_path=tmp_path) == 's3://b/p'
    monkeypatch.setenv('SYNAPSE_STORAGE', 's3://from-env/p')
    assert choose_storage(None, 's3://b/p') == 's3://from-env/p'
    assert choose_storage('s3://flag/p', 's3://b/p') == 's3://flag/p'


# ---------------------------------------------------------------- provider settings


def test_s3_settings_from_the_url_win_over_the_environment() -> None:
    from synapse_sdk.clients._objects import store_config

    env = {'AWS_ENDPOINT_URL': 'http://from-env:9000', 'AWS_ACCESS_KEY_ID': 'x'}
    plain = store_config(parse_storage('s3://bkt/p'), env)
    assert plain.config == {'endpoint': 'http://from-env:9000'}
    assert plain.client_options['allow_http'] is True  # an http:// endpoint (MinIO, moto)
    assert plain.client_options['timeout'] == '6h'  # not obstore's 30 s for a whole download
    assert not plain.boto3_profile
    given = store_config(
        parse_storage(
            's3://bkt/p?endpoint=https://minio.example&region=eu-west-1&path_style=true'
            '&max_retries=3&retry_timeout=20'
        ),
        env,
    )
    assert given.config == {
        'endpoint': 'https://minio.example',
        'region': 'eu-west-1',
        'virtual_hosted_style_request': False,
    }
    assert 'allow_http' not in given.client_options
    assert given.retry_config == {'max_retries': 3, 'retry_timeout': timedelta(seconds=20)}
    assert given.bucket == 'bkt' and given.prefix == 'p'


def test_aws_profiles_are_read_through_boto3_when_named_or_when_nothing_else_is_set(
    tmp_path: Path,
) -> None:
    from synapse_sdk.clients._objects import store_config

    location = parse_storage('s3://bkt')
    credentials = tmp_path / 'credentials'
    absent = {'AWS_SHARED_CREDENTIALS_FILE': str(credentials), 'AWS_CONFIG_FILE': str(credentials)}
    assert store_config(location, {'AWS_PROFILE': 'dev'}).boto3_profile
    assert not store_config(location, absent).boto3_profile  # no file: the object_store chain
    credentials.write_text('[default]\n')
    assert store_config(location, absent).boto3_profile
    assert not store_config(location, {**absent, 'AWS_ACCESS_KEY_ID': 'x'}).boto3_profile
    assert not store_config(location, {**absent, 'AWS_WEB_IDENTITY_TOKEN_FILE': 't'}).boto3_profile


def test_gcs_settings_and_store_are_made_without_a_request() -> None:
    from obstore.store import GCSStore

    from synapse_sdk.clients._objects import build_store, store_config

    location = parse_storage('gs://my-bucket/exports?endpoint=http://127.0.0.1:4443')
    settings = store_config(location, {})
    assert settings.kind == 'gs' and settings.bucket == 'my-bucket'
    assert settings.prefix == 'exports'
    assert settings.config == {'base_url': 'http://127.0.0.1:4443'}  # fake-gcs-server, say
    assert settings.client_options['allow_http'] is True
    from_env = store_config(parse_storage('gs://my-bucket'), {'GOOGLE_BASE_URL': 'https://x'})
    assert from_env.config == {'base_url': 'https://x'}
    store = build_store(settings, location)
    assert isinstance(store, GCSStore) and store.prefix == 'exports'
    client = StorageClient('gs://my-bucket/exports')
    assert client.url == 'gs://my-bucket/exports'
    assert client.get_file.__self__ is client  # made; no request before the first call


def test_azure_settings_take_the_account_and_endpoint() -> None:
    from synapse_sdk.clients._objects import store_config

    settings = store_config(
        parse_storage('az://cont/p?account=acct&endpoint=http://127.0.0.1:10000/acct'), {}
    )
    assert settings.config == {
        'endpoint': 'http://127.0.0.1:10000/acct',
        'account_name': 'acct',
    }
    assert settings.client_options['allow_http'] is True
    from_env = store_config(parse_storage('az://cont'), {'AZURE_STORAGE_ENDPOINT': 'https://e'})
    assert from_env.config == {'endpoint': 'https://e'}
    assert 'allow_http' not in from_env.client_options


@pytest.mark.parametrize(
    ('url', 'extra'),
    [('s3://bkt/p', 's3'), ('az://cnt/p', 'azure'), ('gs://bkt/p', 'gcs'), ('memory://', 's3')],
)
def test_a_url_whose_extra_is_missing_names_the_extra(
    url: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, 'obstore', None)  # as if not installed
    monkeypatch.delitem(sys.modules, 'synapse_sdk.clients._objects', raising=False)
    with pytest.raises(StorageConfigError) as caught:
        open_storage(url)
    assert str(caught.value).endswith(f"pip install 'synapse-sdk[{extra}]'")
    assert 'needs obstore, which is not installed' in str(caught.value)
    assert caught.value.kind is ErrorKind.BAD_INPUT


def test_sftp_without_asyncssh_names_the_sftp_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, 'asyncssh', None)
    monkeypatch.delitem(sys.modules, 'synapse_sdk.clients._sftp', raising=False)
    with pytest.raises(StorageConfigError, match=r"pip install 'synapse-sdk\[sftp\]'$"):
        open_storage('sftp://host/path')


def test_a_runtime_without_a_client_stores_where_synapse_storage_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from synapse_sdk.execution import default_runtime
    from synapse_sdk.runtime import RuntimeContext

    monkeypatch.setenv('SYNAPSE_HOME', str(tmp_path / 'home'))
    monkeypatch.setenv('SYNAPSE_STORAGE', 'memory://env-chosen/x')
    client = RuntimeContext(logger=[], run_id='r1').client
    assert (client.url, client.run_id) == ('memory://env-chosen/x', 'r1')
    with default_runtime('r2', console=False) as ctx:
        assert (ctx.client.url, ctx.client.run_id) == ('memory://env-chosen/x', 'r2')
    with default_runtime('r3', console=False, storage=str(tmp_path / 's')) as ctx:
        assert isinstance(ctx.client, LocalBackendClient)  # given beats the environment
