"""What a run on a cluster takes with it, without a cluster: resources from config.yaml and
options, requirements, the job's command line and environment, the refusal of state only
this machine sees, and how a worker is told where the journal is."""

from __future__ import annotations

import json
import shlex
import textwrap
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.errors import ErrorKind, PluginError, SharedStateRequiredError
from synapse_sdk.execution import (
    Resources,
    action_resources,
    check_reachable,
    job_server_address,
    parse_memory,
    plugin_requirements,
    secrets_from_environment,
)
from synapse_sdk.execution._detach import (
    job_entrypoint,
    job_environment,
    job_runtime_env,
    split_secrets,
)
from synapse_sdk.execution._on_ray import FROM_ENV, _open_journal, journal_ref
from synapse_sdk.journal import Journal, JournalError
from synapse_sdk.plugins.loader import Plugin


def plugin(tmp_path: Path, action_extra: str = '', top_extra: str = '') -> Plugin:
    folder = tmp_path / 'p'
    folder.mkdir(parents=True, exist_ok=True)
    config = f"""\
        name: P
        code: p
        version: 0.1.0
        category: upload
        {top_extra}
        actions:
          run:
            entrypoint: p:Action
            {action_extra}
        """
    (folder / 'config.yaml').write_text(textwrap.dedent(config), encoding='utf-8')
    return Plugin.load(folder)


@pytest.mark.parametrize(
    ('text', 'expected'),
    [('4GiB', 4 * 1024**3), ('512M', 512 * 1000**2), ('1.5gi', int(1.5 * 1024**3)), (1000, 1000)],
)
def test_memory_amounts(text: Any, expected: int) -> None:
    assert parse_memory(text, '--memory') == expected


@pytest.mark.parametrize('text', ['lots', '4XB', '0', '-1G', True])
def test_what_is_not_an_amount_of_memory_names_the_option(text: Any) -> None:
    with pytest.raises(ValueError, match='--memory'):
        parse_memory(text, '--memory')


def test_config_resources_with_options_over_them(tmp_path: Path) -> None:
    found = action_resources(
        plugin(tmp_path, 'resources: {num_cpus: 2, memory: 1GiB, gpu_node: 1}'), 'run'
    )
    assert found == Resources(2.0, None, 1024**3, {'gpu_node': 1.0})
    merged = Resources(num_cpus=0.5).over(found)
    assert merged.actor_options() == {
        'num_cpus': 0.5,
        'memory': 1024**3,
        'resources': {'gpu_node': 1.0},
    }
    assert merged.to_options() == ['--num-cpus', '0.5', '--memory', str(1024**3)]
    assert action_resources(plugin(tmp_path), 'run') == Resources()


@pytest.mark.parametrize(
    'resources', ['resources: 4', 'resources: {num_cpus: many}', 'resources: {gpu_node: -1}']
)
def test_bad_config_resources_name_the_setting(tmp_path: Path, resources: str) -> None:
    with pytest.raises(PluginError, match=r'actions\.run\.resources'):
        action_resources(plugin(tmp_path, resources), 'run')


def test_requirements_from_the_file_and_the_config(tmp_path: Path) -> None:
    found = plugin(tmp_path, top_extra="requirements: ['tqdm>=4']")
    (found.path / 'requirements.txt').write_text('numpy>=1.26  # arrays\n\n# none\nrich\n')
    assert plugin_requirements(found) == ['numpy>=1.26', 'rich', 'tqdm>=4']
    assert plugin_requirements(plugin(tmp_path / 'other')) == []
    with pytest.raises(PluginError, match='requirements must be a list'):
        plugin_requirements(plugin(tmp_path / 'bad', top_extra='requirements: numpy'))
    # what submit_job hands Ray: the requirements as the job's pip, the folder its working_dir
    env = job_runtime_env(found.path, {'A': '1'}, plugin_requirements(found))
    assert env['pip'] == ['numpy>=1.26', 'rich', 'tqdm>=4']
    assert env['working_dir'] == str(found.path.resolve()) and env['env_vars'] == {'A': '1'}
    assert 'pip' not in job_runtime_env(found.path, {}, [])


def test_the_job_command_line_carries_the_run_but_no_setting_of_this_shell(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = 'postgresql://u:s3cret@127.0.0.1:5432/db'
    monkeypatch.setenv('SYNAPSE_DATABASE_URL', url)
    monkeypatch.setenv('SYNAPSE_HOME', str(tmp_path / 'home'))
    line = job_entrypoint(
        'run',
        {'name': "it's"},
        'abc123',
        resources=Resources(num_gpus=1),
        shared_fs=False,
        submitted_from={'path': '/p', 'cwd': '/c'},
    )
    args = shlex.split(line)
    assert args[:7] == ['python', '-m', 'synapse_sdk.cli', 'plugin', 'run', 'run', '--path']
    assert json.loads(args[args.index('--params') + 1]) == {'name': "it's"}
    assert args[args.index('--run-id') + 1] == 'abc123'
    assert args[args.index('--num-gpus') + 1] == '1'
    assert 's3cret' not in line and '--shared-fs' not in args
    env = job_environment(shared_fs=False)
    assert env['SYNAPSE_DATABASE_URL'] == url and 'SYNAPSE_HOME' not in env
    assert job_environment(shared_fs=True)['SYNAPSE_HOME'] == str(tmp_path / 'home')
    monkeypatch.setenv('AWS_ENDPOINT_URL', 'http://127.0.0.1:9000')
    monkeypatch.setenv('AZURE_STORAGE_ACCOUNT_KEY', 'k')
    on_s3 = job_environment(shared_fs=False, storage='s3://bucket/runs')
    assert on_s3['SYNAPSE_STORAGE'] == 's3://bucket/runs'
    assert on_s3['AWS_ENDPOINT_URL'] == 'http://127.0.0.1:9000'  # what its client reads
    assert 'AZURE_STORAGE_ACCOUNT_KEY' not in on_s3
    assert 'AWS_ENDPOINT_URL' not in env  # no object storage, none of its settings


def test_the_job_server_address_is_an_http_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv('RAY_API_SERVER_ADDRESS', raising=False)
    monkeypatch.setenv('RAY_ADDRESS', '10.0.0.5:6379')  # a GCS address: not the job server
    assert job_server_address('http://head:8265/') == 'http://head:8265'
    with pytest.raises(ValueError, match='--ray-address http://HEAD:8265'):
        job_server_address('10.0.0.5:6379')
    with pytest.raises(ValueError, match=r'\$RAY_ADDRESS'):
        job_server_address(None)
    monkeypatch.setenv('RAY_API_SERVER_ADDRESS', 'http://head:8265')
    assert job_server_address(None) == 'http://head:8265'


def test_state_only_this_machine_sees_is_refused_in_one_line(tmp_path: Path) -> None:
    journal = Journal(tmp_path / 'runs.db')
    client = LocalBackendClient(tmp_path / 'storage')
    with pytest.raises(SharedStateRequiredError) as caught:
        check_reachable(journal, client, shared_fs=False, what='a detached run')
    message = str(caught.value)
    assert '\n' not in message and caught.value.kind is ErrorKind.BAD_INPUT
    assert message.startswith('a detached run needs a journal and a storage')
    assert str(tmp_path / 'runs.db') in message and 'SYNAPSE_DATABASE_URL' in message
    assert str(tmp_path / 'storage') in message and '--storage' in message
    assert '--shared-fs' in message
    check_reachable(journal, client, shared_fs=True, what='a detached run')  # said shared


def test_a_worker_opens_a_database_journal_from_its_environment(
    postgres_db: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    journal = Journal(postgres_db.url, lease_seconds=7)
    ref, env = journal_ref(journal)
    assert ref == (FROM_ENV, 7.0)  # the actor's argument: no URL, no password
    assert env == {'SYNAPSE_DATABASE_URL': postgres_db.url}  # its runtime_env's env_vars
    monkeypatch.setenv('SYNAPSE_DATABASE_URL', postgres_db.url)
    opened = _open_journal(ref)
    assert opened.path is None and opened.lease_seconds == 7.0
    monkeypatch.delenv('SYNAPSE_DATABASE_URL')
    with pytest.raises(JournalError, match='no SYNAPSE_DATABASE_URL'):
        _open_journal(ref)  # never the SQLite file under SYNAPSE_HOME instead
    sqlite = Journal(tmp_path / 'runs.db')
    assert journal_ref(sqlite) == ((str(tmp_path / 'runs.db'), sqlite.lease_seconds), {})


SECRET_ACTION = """
from pydantic import BaseModel, SecretStr
from synapse_sdk.plugins import BaseAction


class Params(BaseModel):
    name: str
    token: SecretStr


class Action(BaseAction[Params]):
    def execute(self) -> dict:
        return {'token': self.params.token.get_secret_value()}
"""


def test_secret_params_leave_the_command_line_for_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = plugin(tmp_path)
    (found.path / 'p.py').write_text(SECRET_ACTION, encoding='utf-8')
    action = found.load_action('run')
    plain, secrets = split_secrets(action, {'name': 'x', 'token': 'hunter2'})
    assert plain == {'name': 'x'} and secrets == {'token': 'hunter2'}
    monkeypatch.setenv('SYNAPSE_RUN_SECRETS', json.dumps(secrets))
    assert secrets_from_environment(plain) == {'name': 'x', 'token': 'hunter2'}
    monkeypatch.setenv('SYNAPSE_RUN_SECRETS', '[1]')
    with pytest.raises(ValueError, match='not a JSON object'):
        secrets_from_environment(plain)


def test_a_memory_store_is_refused_and_object_storage_is_not(tmp_path: Path) -> None:
    from synapse_sdk.clients import open_storage

    journal = Journal(tmp_path / 'runs.db')
    with pytest.raises(SharedStateRequiredError, match='its storage is the memory store memory:'):
        check_reachable(journal, open_storage('memory://x'), shared_fs=False, what='a run')
    with pytest.raises(SharedStateRequiredError) as caught:
        check_reachable(journal, open_storage('s3://bucket/p'), shared_fs=False, what='a run')
    assert 'SQLite file' in str(caught.value) and 'its storage' not in str(caught.value)
