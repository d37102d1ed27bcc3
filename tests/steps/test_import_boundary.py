"""The step core imports nothing outside the standard library, under both import paths."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import synapse_sdk.plugins.pipelines.steps as pipelines_steps
import synapse_sdk.plugins.steps as core_steps

PROBE = textwrap.dedent(
    """
    import importlib
    import json
    import sys

    before = set(sys.modules)
    spec_path = importlib.import_module('synapse_sdk.plugins.pipelines.steps')
    new = sorted(set(sys.modules) - before)

    core = sys.modules['synapse_sdk.plugins.steps']
    foreign = sorted(
        name
        for name in new
        if name.partition('.')[0] not in sys.stdlib_module_names
        and name.partition('.')[0] != 'synapse_sdk'
    )
    public = list(core.__all__)
    same = {name: getattr(core, name) is getattr(spec_path, name) for name in public}
    print(json.dumps({
        'new': new,
        'foreign': foreign,
        'public': public,
        'spec_all': list(spec_path.__all__),
        'same': same,
    }))
    """
)


def probe() -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, '-c', PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


def test_only_stdlib_and_synapse_sdk_get_imported() -> None:
    report = probe()
    assert report['foreign'] == []
    new = report['new']
    assert isinstance(new, list)
    assert 'synapse_sdk.plugins.steps' in new  # the probe really saw the import
    assert 'synapse_sdk.plugins.pipelines.steps' in new
    for heavy in ('pydantic', 'rich', 'yaml', 'typer', 'ray', 'numpy', 'click'):
        assert heavy not in new


def test_both_paths_export_the_same_objects() -> None:
    report = probe()
    public = report['public']
    assert isinstance(public, list)
    assert report['spec_all'] == public
    assert report['same'] == {name: True for name in public}


def test_public_names_are_the_same_objects_in_process() -> None:
    assert pipelines_steps.__all__ == core_steps.__all__
    assert len(core_steps.__all__) >= 10
    for name in core_steps.__all__:
        assert getattr(pipelines_steps, name) is getattr(core_steps, name), name


def test_public_api_covers_the_spec_names() -> None:
    expected = {
        'BaseStep',
        'BaseStepContext',
        'LoggingStep',
        'Orchestrator',
        'StepRegistry',
        'StepResult',
        'TimingStep',
        'ValidationStep',
        'StepExecutionError',
        'RunListener',
    }
    assert expected <= set(core_steps.__all__)
    assert issubclass(core_steps.StepExecutionError, RuntimeError)
