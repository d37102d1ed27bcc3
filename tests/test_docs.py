"""What docs/actions.md and docs/testing.md show runs, and what they say is so."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from synapse_sdk.plugins.scaffold import create_plugin

DOCS = Path(__file__).resolve().parents[1] / 'docs'
SYNAPSE = Path(sys.executable).parent / 'synapse'


def recipe(title: str) -> str:
    """The code block of the ``**title.**`` paragraph of docs/testing.md's recipes."""
    section = (DOCS / 'testing.md').read_text(encoding='utf-8').split('## Recipes', 1)[1]
    after = section.split(f'**{title}.**', 1)[1].split('\n**', 1)[0]
    [block] = re.findall(r'```python\n(.*?)```', after, re.S)
    return block


RECIPES = ['Timeouts', 'The run journal', "The plugin's own action"]


def test_every_recipe_with_code_is_run_here() -> None:
    section = (DOCS / 'testing.md').read_text(encoding='utf-8').split('## Recipes', 1)[1]
    assert len(re.findall(r'```python\n', section)) == len(RECIPES)


@pytest.mark.parametrize('title', RECIPES)
def test_a_recipe_runs_as_written(
    title: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each recipe is a test module of its own: its imports included, its tests pass."""
    plugin = create_plugin(tmp_path, 'my_upload', 'upload')
    module = plugin / 'tests' / 'test_my_upload.py'  # where a plugin's own test lives
    namespace: dict[str, object] = {'__name__': 'recipe', '__file__': str(module)}
    monkeypatch.setattr(sys, 'path', list(sys.path))  # the loader puts the plugin folder first
    try:
        exec(compile(recipe(title), f'docs/testing.md: {title}', 'exec'), namespace)
        tests = [value for name, value in namespace.items() if name.startswith('test_')]
        assert tests, f'the recipe {title!r} defines no test'
        for test in tests:
            assert callable(test)
            wanted = inspect.signature(test).parameters
            test(**{name: tmp_path for name in wanted if name == 'tmp_path'})
    finally:
        sys.modules.pop('plugin', None)  # the scaffold's module, imported from tmp_path


def test_plugin_run_writes_the_log_file_docs_actions_names(tmp_path: Path) -> None:
    """docs/actions.md: every event in `$SYNAPSE_HOME/logs/RUN_ID.jsonl`, journal or not."""
    actions = (DOCS / 'actions.md').read_text(encoding='utf-8')
    named = re.search(r'`\$SYNAPSE_HOME/(logs/RUN_ID\.jsonl)`', actions)
    assert named, 'docs/actions.md does not name the run log file'
    plugin = create_plugin(tmp_path, 'logged', 'upload')
    home = tmp_path / 'home'
    env = {**os.environ, 'SYNAPSE_HOME': str(home), 'PYTHONDONTWRITEBYTECODE': '1'}

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        command = [str(SYNAPSE), 'plugin', 'run', 'upload', '--path', str(plugin), *extra]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    journaled = run('--params', '{"items": 2}')
    assert journaled.returncode == 0, journaled.stderr
    run_id = json.loads(journaled.stdout)['run_id']
    log = home / named.group(1).replace('RUN_ID', run_id)
    events = [json.loads(line) for line in log.read_text(encoding='utf-8').splitlines()]
    assert {event['run_id'] for event in events} == {run_id}
    assert [e['step'] for e in events if e['type'] == 'step_end'] == ['prepare', 'process']
    assert events[-1]['type'] == 'run_end'

    unjournaled = run('--no-journal')
    assert unjournaled.returncode == 0, unjournaled.stderr
    assert len(list(log.parent.glob('*.jsonl'))) == 2  # a log file without a journal too
