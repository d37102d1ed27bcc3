"""The action layer: params, runtime context, and steps or a plain execute()."""

from ._base import ActionContext, ActionOrigin, BaseAction, PreparedRun
from ._describe import (
    StepPreview,
    describe_params,
    params_json_schema,
    preview_steps,
    retry_text,
)
from ._errors import ActionDefinitionError, ActionError, ParamsValidationError
from .export import BaseExportAction, ExportContext
from .train import BaseTrainAction, TrainContext
from .upload import BaseUploadAction, UploadContext

__all__ = [
    'ActionContext',
    'ActionDefinitionError',
    'ActionError',
    'ActionOrigin',
    'BaseAction',
    'BaseExportAction',
    'BaseTrainAction',
    'BaseUploadAction',
    'ExportContext',
    'ParamsValidationError',
    'PreparedRun',
    'StepPreview',
    'TrainContext',
    'UploadContext',
    'describe_params',
    'params_json_schema',
    'preview_steps',
    'retry_text',
]
