"""A slow upload for the web view's tests: progress that moves, metrics, log lines, rollback.

``UI_CRASH_AFTER=N`` (environment, so a resume does not crash again): the upload
step kills its own process with SIGKILL after storing N files.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, SecretStr

from synapse_sdk.plugins.actions import ActionContext, BaseAction
from synapse_sdk.plugins.steps import BaseStep, StepRegistry, StepResult


class Params(BaseModel):
    source_path: str
    delay: float = 0.0
    api_key: SecretStr | None = None


@dataclass(kw_only=True)
class Ctx(ActionContext):
    files: list[Path] = field(default_factory=list)


class Prepare(BaseStep[Ctx]):
    name = 'prepare'
    progress_weight = 1.0

    def execute(self, context: Ctx) -> StepResult:
        context.files = sorted(p for p in Path(context.params['source_path']).iterdir())
        context.log('files_listed', {'count': len(context.files)})
        return StepResult(data={'count': len(context.files)})


class Upload(BaseStep[Ctx]):
    name = 'upload'
    progress_weight = 8.0

    def execute(self, context: Ctx) -> StepResult:
        run_id = context.runtime_ctx.run_id  # type: ignore[attr-defined]
        crash_after = os.environ.get('UI_CRASH_AFTER')
        total = len(context.files)
        for i, path in enumerate(context.files):
            if crash_after is not None and i == int(crash_after):
                os.kill(os.getpid(), signal.SIGKILL)
            key = f'{run_id}:{path.name}'
            context.append_rollback('keys', key)
            context.client.upload_file(path, key=key)
            context.set_metrics({'uploaded': i + 1, 'rate': round(1.0 / (i + 1), 3)}, 'upload')
            context.log('uploaded', {'file': path.name})
            context.set_progress(i + 1, total)
            time.sleep(float(context.params.get('delay') or 0.0))
        return StepResult(data={'stored': total})

    def rollback(self, context: Ctx, result: StepResult) -> None:
        for key in result.rollback_data.get('keys', []):
            found = context.client.find_file(key)
            if found is not None:
                context.client.delete_file(found)


class Finalize(BaseStep[Ctx]):
    name = 'finalize'
    progress_weight = 1.0

    def execute(self, context: Ctx) -> StepResult:
        return StepResult(data={'done': True})


class SlowUpload(BaseAction[Params]):
    context_class: ClassVar[Any] = Ctx

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(Prepare())
        registry.register(Upload())
        registry.register(Finalize())
