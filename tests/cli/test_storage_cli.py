"""``--storage`` on the command line, against S3 on moto (127.0.0.1): where runs store,
what the journal records, recovery against the run's storage (also when it is away for
a while), one-line refusals with exit 2, and ``synapse storage gc``."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.services.proxy import Proxy, proxy_to
from tests.services.s3 import S3Server

from synapse_sdk.clients import parse_storage

from .conftest import Cli

PLUGIN = Path(__file__).resolve().parents[1] / 'journal' / 'plugin'


@pytest.fixture
def aws(cli_env: dict[str, str], s3_server: S3Server) -> S3Server:
    """The CLI's environment gets the fixture's AWS_* (this moto, dummy keys)."""
    cli_env.update({k: v for k, v in os.environ.items() if k.startswith('AWS_')})
    return s3_server


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / 'source'
    folder.mkdir()
    for i in range(5):
        (folder / f'f{i}.txt').write_text(f'file {i}')
    return folder


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    """tests/journal/plugin: prepare, store (by key; JT_CRASH_AFTER=N kills it), finalize."""
    return Path(shutil.copytree(PLUGIN, tmp_path / 'plugin'))


@pytest.fixture
def proxy(aws: S3Server) -> Iterator[Proxy]:
    host, port = aws.endpoint_url.removeprefix('http://').split(':')
    with proxy_to(host, int(port)) as running:
        yield running


def keys(server: S3Server, bucket: str) -> list[str]:
    listed = server.client().list_objects_v2(Bucket=bucket)
    return sorted(o['Key'] for o in listed.get('Contents', []))


def run_status(cli: Cli, run_id: str) -> dict[str, object]:
    shown = cli('runs', 'show', run_id, '--json')
    assert shown.returncode == 0, shown.stderr
    record: dict[str, object] = json.loads(shown.stdout)
    return record


def test_plugin_run_stores_in_s3_and_the_journal_records_the_url(
    cli: Cli, aws: S3Server, s3_bucket: str, example: Path, source: Path
) -> None:
    url = f's3://{s3_bucket}/team/uploads'
    params = json.dumps({'source_path': str(source)})
    done = cli('plugin', 'run', 'upload', '--path', example, '--params', params, '--storage', url)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)['run_id']
    stored = keys(aws, s3_bucket)
    assert len(stored) == 5
    assert all(re.fullmatch('team/uploads/blobs/[0-9a-f]{32}', k) for k in stored)
    assert run_status(cli, run_id)['storage'] == url
    assert re.search(rf'storage\s+{re.escape(url)}', cli('runs', 'show', run_id).stdout)
    assert aws.secret_access_key not in done.stdout + done.stderr


def test_the_storage_comes_from_the_environment_or_the_plugins_config(
    cli: Cli,
    cli_env: dict[str, str],
    aws: S3Server,
    example: Path,
    source: Path,
    tmp_path: Path,
) -> None:
    from_env, from_config = aws.create_bucket(), aws.create_bucket()
    params = json.dumps({'source_path': str(source)})
    cli_env['SYNAPSE_STORAGE'] = f's3://{from_env}/x'
    assert cli('plugin', 'run', 'upload', '--path', example, '--params', params).returncode == 0
    assert len(keys(aws, from_env)) == 5

    del cli_env['SYNAPSE_STORAGE']
    plugin = Path(shutil.copytree(example, tmp_path / 'configured'))
    config = plugin / 'config.yaml'
    config.write_text(config.read_text() + f'storage: s3://{from_config}/y\n')
    assert cli('plugin', 'run', 'upload', '--path', plugin, '--params', params).returncode == 0
    assert len(keys(aws, from_config)) == 5
    assert len(keys(aws, from_env)) == 5


@pytest.mark.parametrize(
    ('storage', 'expected'),
    [
        (
            's3://missing-bucket-zz/x',
            "storage s3://missing-bucket-zz/x: the bucket 'missing-bucket-zz' does not exist",
        ),
        ('ftp://host/x', "has the scheme 'ftp', which is not one of"),
        ('s3://AKIA:sup3rsecret@bucket/x', 'credentials never go in a storage URL'),
        ('s3://bucket/x?secret_access_key=sup3rsecret', 'holds a credential'),
    ],
)
def test_a_storage_that_cannot_work_is_one_line_and_exit_2_before_anything_runs(
    cli: Cli, aws: S3Server, example: Path, source: Path, storage: str, expected: str
) -> None:
    params = json.dumps({'source_path': str(source)})
    done = cli(
        'plugin', 'run', 'upload', '--path', example, '--params', params, '--storage', storage
    )
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert done.stderr.count('\n') == 1  # one line
    assert 'sup3rsecret' not in done.stderr + done.stdout
    assert json.loads(cli('runs', 'list', '--json').stdout) == []  # nothing ran


def crash_a_run(cli: Cli, cli_env: dict[str, str], plugin: Path, source: Path, url: str) -> str:
    """A run of the journal test plugin killed (SIGKILL) after storing three files."""
    cli_env['JT_CRASH_AFTER'] = '3'
    params = json.dumps({'source_path': str(source)})
    killed = cli('plugin', 'run', 'store', '--path', plugin, '--params', params, '--storage', url)
    del cli_env['JT_CRASH_AFTER']
    assert killed.returncode == -9, killed.stderr
    (record,) = json.loads(cli('runs', 'list', '--json').stdout)
    assert record['status'] == 'crashed'
    assert record['storage'] == url
    return str(record['id'])


def test_rollback_against_an_unreachable_storage_is_rollback_failed_and_can_be_retried(
    cli: Cli,
    cli_env: dict[str, str],
    aws: S3Server,
    s3_bucket: str,
    proxy: Proxy,
    plugin: Path,
    source: Path,
) -> None:
    aws.client().put_object(Bucket=s3_bucket, Key='team/keep-me.txt', Body=b'not ours')
    url = f's3://{s3_bucket}/team?endpoint={proxy.url}&max_retries=1'
    run_id = crash_a_run(cli, cli_env, plugin, source, url)
    assert len(keys(aws, s3_bucket)) == 4

    proxy.down()
    failed = cli('runs', 'rollback', run_id)  # the run's storage, from the journal
    assert failed.returncode == 1, failed.stderr
    report = json.loads(failed.stdout)
    assert report['status'] == 'rollback_failed'
    assert 'failed after retries' in report['errors'][0]
    assert run_status(cli, run_id)['status'] == 'rollback_failed'

    proxy.up()
    again = cli('runs', 'rollback', run_id)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)['status'] == 'rolled_back'
    assert keys(aws, s3_bucket) == ['team/keep-me.txt']  # exactly what it held before


def test_resume_stores_every_file_once_in_the_runs_storage(
    cli: Cli, cli_env: dict[str, str], aws: S3Server, s3_bucket: str, plugin: Path, source: Path
) -> None:
    url = f's3://{s3_bucket}/team'
    run_id = crash_a_run(cli, cli_env, plugin, source, url)
    resumed = cli('runs', 'resume', run_id)
    assert resumed.returncode == 0, resumed.stderr
    stored = keys(aws, s3_bucket)
    assert len(stored) == 5 and all(re.fullmatch('team/blobs/[0-9a-f]{32}', k) for k in stored)
    contents = sorted(
        aws.client().get_object(Bucket=s3_bucket, Key=k)['Body'].read() for k in stored
    )
    assert contents == sorted(p.read_bytes() for p in source.iterdir())


def test_recovery_with_a_storage_that_will_not_work_is_exit_2_and_leaves_the_run(
    cli: Cli, cli_env: dict[str, str], aws: S3Server, s3_bucket: str, plugin: Path, source: Path
) -> None:
    """Another storage than the run's is refused (its file ids mean other files there); the
    run's own, gone, is one line too; either way the run is left as it was."""
    url = f's3://{s3_bucket}/team'
    run_id = crash_a_run(cli, cli_env, plugin, source, url)
    other = cli('runs', 'rollback', run_id, '--storage', 's3://missing-bucket-zz/team')
    assert other.returncode == 2, other.stderr
    assert f'it ran on the storage {url}, but this one is s3://missing-bucket-zz/team' in (
        other.stderr.replace('\n', ' ')
    )
    assert run_status(cli, run_id)['status'] == 'crashed'  # untouched
    assert len(keys(aws, s3_bucket)) == 3

    s3 = aws.client()
    for key in keys(aws, s3_bucket):
        s3.delete_object(Bucket=s3_bucket, Key=key)
    s3.delete_bucket(Bucket=s3_bucket)
    gone = cli('runs', 'rollback', run_id, '--storage', url + '?max_retries=1')  # the same one
    assert gone.returncode == 2, gone.stderr
    assert f"the bucket '{s3_bucket}' does not exist" in gone.stderr
    assert run_status(cli, run_id)['status'] == 'crashed'


def test_storage_gc_on_the_default_folder_is_a_dry_run_by_default(cli: Cli, home: Path) -> None:
    orphan = home / 'storage' / 'blobs' / ('a' * 32)
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b'left by a killed upload')
    listed = cli('storage', 'gc', '--older-than', '0')
    assert listed.returncode == 0, listed.stderr
    assert 'blobs/' + 'a' * 32 in listed.stdout
    assert 'dry run: rerun with --delete to remove them' in listed.stderr
    assert orphan.exists()
    assert cli('storage', 'gc', '--older-than', '0', '--delete').returncode == 0
    assert not orphan.exists()
    bad = cli('storage', 'gc', '--older-than', 'soon')
    assert bad.returncode == 2 and '--older-than' in bad.stderr


def test_the_readmes_s3_line_runs_as_written(
    cli: Cli, aws: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """The README's quick start plugin, and its `--storage s3://` command (our bucket)."""
    import shlex

    from tests.test_readme import fenced, plugin_folder

    workdir = tmp_path / 'cwd'  # where `cli` runs the command
    plugin_folder(workdir)
    (workdir / 'a.txt').write_text('hello', encoding='utf-8')
    [line] = [line for line in fenced('bash')[1].splitlines() if '--storage s3://' in line]
    command = shlex.split(line.replace('my-bucket', s3_bucket), comments=True)
    done = cli(*command[1:])
    assert done.returncode == 0, done.stderr
    [stored] = keys(aws, s3_bucket)
    assert re.fullmatch('uploads/blobs/[0-9a-f]{32}', stored)


def test_the_example_uploads_to_azure_and_sftp_by_storage(
    cli: Cli,
    cli_env: dict[str, str],
    azurite_server: object,
    sftp_server: object,
    example: Path,
    source: Path,
) -> None:
    from tests.clients.conftest import azure_environment, sftp_url
    from tests.services.azurite import AzuriteServer
    from tests.services.sftp import SFTPServer

    assert isinstance(azurite_server, AzuriteServer) and isinstance(sftp_server, SFTPServer)
    cli_env.update(azure_environment(azurite_server))
    container = azurite_server.create_container()
    (sftp_server.root / 'example').mkdir(exist_ok=True)
    params = json.dumps({'source_path': str(source)})
    for url in (f'az://{container}/up', sftp_url(sftp_server, 'example')):
        done = cli(
            'plugin', 'run', 'upload', '--path', example, '--params', params, '--storage', url
        )
        assert done.returncode == 0, done.stderr
        recorded = run_status(cli, json.loads(done.stdout)['run_id'])['storage']
        assert recorded == parse_storage(url).url  # its options in their canonical order
    blobs = azurite_server.service_client().get_container_client(container).list_blobs()
    assert len([b for b in blobs if b.name.startswith('up/blobs/')]) == 5
    assert len([p for p in (sftp_server.root / 'example' / 'blobs').rglob('*') if p.is_file()]) == 5
    assert azurite_server.account_key not in done.stdout + done.stderr
