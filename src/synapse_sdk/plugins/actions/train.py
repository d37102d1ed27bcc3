"""Train actions: load data, fit a model, save and upload it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ._base import ActionContext, BaseAction, P


@dataclass(kw_only=True)
class TrainContext(ActionContext[P]):
    """State of a training workflow: the data, the model, where it was saved, its metrics."""

    # in-memory objects: kept out of the run journal's context snapshots
    dataset: Any = field(default=None, metadata={'snapshot': False})
    model: Any = field(default=None, metadata={'snapshot': False})
    model_path: str | None = None
    model_file_id: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


class BaseTrainAction(BaseAction[P]):
    category: ClassVar[str] = 'train'
    context_class: ClassVar[type[ActionContext[Any]] | None] = TrainContext
