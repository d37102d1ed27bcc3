"""A real, small training run as a step workflow: load data, train, save, upload.

A logistic regression is fitted by full-batch gradient descent on a seeded,
generated 2-class data set, using numpy only, so the example runs anywhere in
about a second with no download. The steps follow the spec's train pipeline
(docs/spec/step-orchestration.md, "Train action"): most of the weight sits on
the training loop, and each step that creates something (a file on disk, a
file in the backend) knows how to remove it again if a later step fails.
"""

from __future__ import annotations

import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from synapse_sdk.clients import FileNotFoundInStorageError
from synapse_sdk.plugins import BaseTrainAction
from synapse_sdk.plugins.actions.train import TrainContext
from synapse_sdk.plugins.pipelines.steps import BaseStep, StepRegistry, StepResult

Array = NDArray[np.float64]

LABEL_NOISE = 0.3
"""Std. dev. of the noise added before thresholding: the classes overlap a little (~90% best)."""

VALIDATION_SHARE = 5
"""One sample in this many is held out for validation."""

MODEL_FILE = 'model.npz'


class TrainParams(BaseModel):
    """Params of the train action; unknown keys are refused so a typo is not silently ignored."""

    model_config = ConfigDict(extra='forbid')

    samples: int = Field(2000, ge=10, description='Size of the generated data set.')
    features: int = Field(8, ge=1, description='Number of input features.')
    epochs: int = Field(30, ge=1, description='Gradient descent passes over the training set.')
    learning_rate: float = Field(0.5, gt=0, description='Step size of gradient descent.')
    seed: int = Field(0, ge=0, description='Seed of the data generator: same seed, same run.')
    output_dir: str | None = Field(
        None, description='Where model.npz is written; a fresh temp dir when omitted.'
    )
    fail_at_epoch: int | None = Field(
        None, ge=1, description='Raise at this epoch, to demonstrate the rollback.'
    )

    @model_validator(mode='after')
    def _failure_within_run(self) -> Self:
        # a failure epoch past the end would never fire: the demo would succeed unexpectedly
        if self.fail_at_epoch is not None and self.fail_at_epoch > self.epochs:
            raise ValueError(
                f'fail_at_epoch ({self.fail_at_epoch}) must be <= epochs ({self.epochs})'
            )
        return self


@dataclass(frozen=True)
class Dataset:
    """Train/validation split; labels are 0.0 or 1.0."""

    x_train: Array
    y_train: Array
    x_val: Array
    y_val: Array


@dataclass(frozen=True)
class LogisticModel:
    """Weights and bias of a linear classifier read through the logistic function."""

    weights: Array
    bias: float

    def logits(self, x: Array) -> Array:
        return x @ self.weights + self.bias

    def accuracy(self, x: Array, y: Array) -> float:
        return float(np.mean((self.logits(x) > 0) == (y > 0.5)))


def params_of(context: TrainContext[TrainParams]) -> TrainParams:
    """The params, typed: the action's validated model (``context.params`` is its dict)."""
    return context.params_model


def generate_dataset(samples: int, features: int, seed: int) -> Dataset:
    """Two classes split by a random hyperplane through the origin, with noisy labels."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=features)
    direction /= np.linalg.norm(direction)
    x = rng.normal(size=(samples, features))
    noisy_margin = x @ direction + rng.normal(scale=LABEL_NOISE, size=samples)
    y = (noisy_margin > 0).astype(np.float64)
    n_val = max(1, samples // VALIDATION_SHARE)
    return Dataset(x[n_val:], y[n_val:], x[:n_val], y[:n_val])


def sigmoid(z: Array) -> Array:
    # the tanh form never overflows, unlike 1 / (1 + exp(-z)) for large negative z
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def log_loss(z: Array, y: Array) -> float:
    """Mean binary cross-entropy from logits, computed stably with logaddexp."""
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def require_dataset(context: TrainContext, step: str) -> Dataset:
    if not isinstance(context.dataset, Dataset):
        raise RuntimeError(f'{step} needs the data set: register load_dataset before it')
    return context.dataset


def require_model(context: TrainContext, step: str) -> LogisticModel:
    if not isinstance(context.model, LogisticModel):
        raise RuntimeError(f'{step} needs a trained model: register train_model before it')
    return context.model


def make_dirs(path: Path) -> list[str]:
    """Create ``path`` and its missing parents; return those created, outermost first.

    Rollback removes only these (and only if empty), never a folder the user had.
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    return [str(p) for p in reversed(missing)]


def remove_empty_dirs(created: list[str]) -> None:
    for folder in reversed(created):
        with suppress(OSError):  # not empty (someone else wrote there) or already gone
            Path(folder).rmdir()


class LoadDatasetStep(BaseStep[TrainContext]):
    """Generate the data set and hold out a validation share."""

    @property
    def name(self) -> str:
        return 'load_dataset'

    @property
    def progress_weight(self) -> float:
        return 0.1

    def execute(self, context: TrainContext) -> StepResult:
        params = params_of(context)
        dataset = generate_dataset(params.samples, params.features, params.seed)
        context.dataset = dataset
        return StepResult(
            success=True,
            data={
                'train_samples': len(dataset.y_train),
                'validation_samples': len(dataset.y_val),
                'features': params.features,
                'positive_share': round(float(np.mean(dataset.y_train)), 4),
            },
        )


class TrainModelStep(BaseStep[TrainContext]):
    """Full-batch gradient descent on the log loss, reporting every epoch."""

    @property
    def name(self) -> str:
        return 'train_model'

    @property
    def progress_weight(self) -> float:
        return 0.7

    def execute(self, context: TrainContext) -> StepResult:
        params = params_of(context)
        data = require_dataset(context, self.name)
        n = len(data.y_train)
        weights = np.zeros(data.x_train.shape[1])
        bias = 0.0
        loss = accuracy = 0.0
        model = LogisticModel(weights, bias)
        for epoch in range(1, params.epochs + 1):
            if epoch == params.fail_at_epoch:
                raise RuntimeError(f'simulated failure at epoch {epoch} (fail_at_epoch)')
            error = sigmoid(data.x_train @ weights + bias) - data.y_train
            weights = weights - params.learning_rate * (data.x_train.T @ error) / n
            bias -= params.learning_rate * float(np.mean(error))
            model = LogisticModel(weights, bias)
            loss = log_loss(model.logits(data.x_train), data.y_train)
            if not np.isfinite(loss):
                return StepResult(
                    success=False,
                    error=f'training diverged at epoch {epoch} (loss={loss}); lower learning_rate',
                )
            accuracy = model.accuracy(data.x_train, data.y_train)
            context.set_progress(epoch, params.epochs, 'train')
            context.set_metrics(
                {'epoch': epoch, 'loss': round(loss, 6), 'accuracy': round(accuracy, 6)}, 'train'
            )

        val_accuracy = model.accuracy(data.x_val, data.y_val)
        context.model = model
        context.metrics = {
            'epochs': params.epochs,
            'loss': loss,
            'accuracy': accuracy,
            'val_accuracy': val_accuracy,
        }
        return StepResult(
            success=True,
            data={
                'epochs': params.epochs,
                'final_loss': round(loss, 6),
                'train_accuracy': round(accuracy, 6),
                'val_accuracy': round(val_accuracy, 6),
            },
        )

    def rollback(self, context: TrainContext, result: StepResult) -> None:
        # nothing outside the process was created; drop the model so nobody uses it by mistake
        context.model = None
        context.metrics = {}


class SaveModelStep(BaseStep[TrainContext]):
    """Write the weights to ``output_dir/model.npz`` (a fresh temp dir when none is given)."""

    @property
    def name(self) -> str:
        return 'save_model'

    @property
    def progress_weight(self) -> float:
        return 0.1

    def execute(self, context: TrainContext) -> StepResult:
        params = params_of(context)
        model = require_model(context, self.name)
        if params.output_dir is None:
            folder = Path(tempfile.mkdtemp(prefix='synapse-train-'))
            created = [str(folder)]
        else:
            folder = Path(params.output_dir)
            created = make_dirs(folder)
        path = folder / MODEL_FILE
        # recorded before writing, so a write that fails half-way is still cleaned up
        context.record_rollback(model_path=str(path), created_dirs=created)
        with path.open('wb') as handle:  # a handle: np.savez would append .npz to a str path
            np.savez(handle, weights=model.weights, bias=np.float64(model.bias))
        context.model_path = str(path)
        return StepResult(
            success=True, data={'model_path': str(path), 'bytes': path.stat().st_size}
        )

    def rollback(self, context: TrainContext, result: StepResult) -> None:
        model_path = result.rollback_data.get('model_path')
        if model_path:
            Path(model_path).unlink(missing_ok=True)
        remove_empty_dirs(result.rollback_data.get('created_dirs', []))
        context.model_path = None


class UploadModelStep(BaseStep[TrainContext]):
    """Store the saved model in the backend, so it outlives the local output folder."""

    @property
    def name(self) -> str:
        return 'upload_model'

    @property
    def progress_weight(self) -> float:
        return 0.1

    def execute(self, context: TrainContext) -> StepResult:
        if context.model_path is None:
            return StepResult(
                success=False, error='no saved model to upload: register save_model before it'
            )
        file_id: int = context.client.upload_file(context.model_path)
        context.model_file_id = file_id
        return StepResult(
            success=True,
            data={'file_id': file_id},
            rollback_data={'file_id': file_id},
        )

    def rollback(self, context: TrainContext, result: StepResult) -> None:
        file_id = result.rollback_data.get('file_id')
        if file_id is not None:
            with suppress(FileNotFoundInStorageError):  # already gone is what we want
                context.client.delete_file(file_id)
        context.model_file_id = None


class TrainAction(BaseTrainAction[TrainParams]):
    """Train a logistic regression and publish it as ``model.npz`` in the backend."""

    def setup_steps(self, registry: StepRegistry[TrainContext]) -> None:
        registry.register(LoadDatasetStep())  # 10%: generating data is quick
        registry.register(TrainModelStep())  # 70%: the training loop dominates
        registry.register(SaveModelStep())  # 10%
        registry.register(UploadModelStep())  # 10%
