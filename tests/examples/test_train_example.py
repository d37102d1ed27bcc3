"""The train example: a real (small) numpy training run, its metrics, progress and rollback."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.plugins.actions import BaseAction, ParamsValidationError, TrainContext
from synapse_sdk.plugins.pipelines.steps import BaseStep, StepRegistry, StepResult
from synapse_sdk.runtime import MemoryLogger, RuntimeContext

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / 'examples' / 'train'


@pytest.fixture
def train_action(load_example: Any) -> type[BaseAction[Any]]:
    return load_example('train', 'train')


def train_metrics(logger: MemoryLogger) -> list[dict[str, Any]]:
    return [value for value, category in logger.metric_updates if category == 'train']


def test_trains_a_useful_model_saves_and_uploads_it(
    train_action: type[BaseAction[Any]],
    runtime: RuntimeContext,
    memory_logger: MemoryLogger,
    client: LocalBackendClient,
    tmp_path: Path,
) -> None:
    out = tmp_path / 'out'
    result = train_action.dispatch({'output_dir': str(out)}, runtime)

    assert result['success'] is True
    assert result['steps_executed'] == 4
    trained = result['steps']['train_model']
    assert trained['epochs'] == 30
    assert trained['val_accuracy'] > 0.8
    assert trained['final_loss'] < np.log(2)  # better than predicting 0.5 everywhere

    model_path = out / 'model.npz'
    assert result['steps']['save_model']['model_path'] == str(model_path)
    file_id = result['steps']['upload_model']['file_id']
    stored = client.get_file(file_id)
    assert stored['name'] == 'model.npz'
    assert stored['checksum'] == hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert [f['id'] for f in client.list_files()] == [file_id]

    # the saved weights are the model: they reproduce the reported validation accuracy
    module = sys.modules[train_action.__module__]
    data = module.generate_dataset(2000, 8, 0)
    with np.load(model_path) as saved:
        model = module.LogisticModel(saved['weights'], float(saved['bias']))
    assert model.accuracy(data.x_val, data.y_val) == pytest.approx(trained['val_accuracy'])

    metrics = train_metrics(memory_logger)
    assert [m['epoch'] for m in metrics] == list(range(1, 31))
    assert all({'epoch', 'loss', 'accuracy'} <= m.keys() for m in metrics)
    assert metrics[-1]['loss'] < metrics[0]['loss']

    train_progress = memory_logger.progress_of('train')
    assert len(train_progress) == 30
    assert train_progress == sorted(train_progress)
    assert train_progress[-1] == 100.0
    overall = memory_logger.progress_of('overall')
    assert overall == sorted(overall)
    assert overall[-1] == 100.0
    assert memory_logger.lifecycle[-1] == ('run_end', 'succeeded')


def test_without_output_dir_the_model_goes_to_a_fresh_temp_dir(
    train_action: type[BaseAction[Any]],
    runtime: RuntimeContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    temp_root = tmp_path / 'tmp'
    temp_root.mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(temp_root))

    result = train_action.dispatch({'epochs': 3, 'samples': 200}, runtime)

    model_path = Path(result['steps']['save_model']['model_path'])
    assert model_path.name == 'model.npz'
    assert model_path.parent.parent == temp_root
    assert model_path.is_file()


def test_a_failure_during_training_rolls_back_and_uploads_nothing(
    train_action: type[BaseAction[Any]],
    runtime: RuntimeContext,
    memory_logger: MemoryLogger,
    client: LocalBackendClient,
    tmp_path: Path,
) -> None:
    out = tmp_path / 'out'
    with pytest.raises(
        RuntimeError,
        match=r"^Step 'train_model' failed: RuntimeError: simulated failure at epoch 3",
    ):
        train_action.dispatch({'output_dir': str(out), 'fail_at_epoch': 3}, runtime)

    assert client.list_files() == []
    assert not out.exists()
    assert [m['epoch'] for m in train_metrics(memory_logger)] == [1, 2]
    rollbacks = [name for event, name in memory_logger.lifecycle if event == 'rollback_start']
    assert rollbacks == ['train_model', 'load_dataset']
    assert memory_logger.progress_of('overall')[-1] < 100


class PublishStep(BaseStep[TrainContext]):
    """A step after the upload that fails, so save and upload must both be undone."""

    @property
    def name(self) -> str:
        return 'publish'

    @property
    def progress_weight(self) -> float:
        return 0.1

    def execute(self, context: TrainContext) -> StepResult:
        assert context.model_file_id is not None
        return StepResult(success=False, error='model registry unavailable')


@pytest.mark.parametrize('output_dir_exists', [False, True])
def test_a_failure_after_the_upload_deletes_the_stored_and_the_saved_model(
    train_action: type[BaseAction[Any]],
    runtime: RuntimeContext,
    client: LocalBackendClient,
    tmp_path: Path,
    output_dir_exists: bool,
) -> None:
    class TrainAndPublish(train_action):  # type: ignore[misc,valid-type]
        def setup_steps(self, registry: StepRegistry[TrainContext]) -> None:
            super().setup_steps(registry)
            registry.register(PublishStep())

    out = tmp_path / 'nested' / 'out'
    if output_dir_exists:
        out.mkdir(parents=True)
        (out / 'keep.txt').write_text('not ours')

    with pytest.raises(RuntimeError, match=r"^Step 'publish' failed: model registry unavailable"):
        TrainAndPublish.dispatch({'output_dir': str(out), 'epochs': 2}, runtime)

    assert client.list_files() == []
    if output_dir_exists:  # the user's folder and file stay, only model.npz goes
        assert sorted(p.name for p in out.iterdir()) == ['keep.txt']
    else:  # every folder the run created is removed again
        assert not (tmp_path / 'nested').exists()


@pytest.mark.parametrize(
    ('params', 'fields'),
    [
        ({'epochs': 0, 'learning_rate': -1}, {'epochs', 'learning_rate'}),
        ({'samples': 5, 'features': 0}, {'samples', 'features'}),
        ({'epoch': 5}, {'epoch'}),
        ({'epochs': 3, 'fail_at_epoch': 4}, {'(params)'}),
    ],
)
def test_invalid_params_are_refused_before_anything_runs(
    train_action: type[BaseAction[Any]],
    runtime: RuntimeContext,
    memory_logger: MemoryLogger,
    client: LocalBackendClient,
    params: dict[str, Any],
    fields: set[str],
) -> None:
    with pytest.raises(ParamsValidationError) as raised:
        train_action.dispatch(params, runtime)

    assert {where for where, _ in raised.value.problems} == fields
    for field in fields:
        assert field in str(raised.value)
    assert memory_logger.lifecycle == []
    assert client.list_files() == []


def test_the_cli_runs_the_example(run_cli: Any, synapse_home: Path, tmp_path: Path) -> None:
    out = tmp_path / 'cli-out'
    params = json.dumps({'output_dir': str(out), 'epochs': 5})

    proc = run_cli('plugin', 'run', 'train', '--path', str(EXAMPLE_DIR), '--params', params)

    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result['success'] is True
    assert result['steps']['train_model']['val_accuracy'] > 0.8
    assert (out / 'model.npz').is_file()
    file_id = result['steps']['upload_model']['file_id']
    assert LocalBackendClient(synapse_home / 'storage').get_file(file_id)['name'] == 'model.npz'
