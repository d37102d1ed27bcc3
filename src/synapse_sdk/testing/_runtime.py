"""A runtime context that remembers everything, on a fake backend."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from synapse_sdk.runtime import MemoryLogger, RuntimeContext

from ._backend import FakeBackend


class RecordingRuntime(RuntimeContext):
    """``RuntimeContext`` with a :class:`MemoryLogger` (``.memory``) and a
    :class:`FakeBackend` (``.client``) unless another client is given.

    ``run_id`` defaults to ``'test-run'``; ``job_id`` is its deprecated name.
    """

    def __init__(
        self,
        client: Any = None,
        *,
        sleep: Callable[[float], None] | None = None,
        run_id: str | None = None,
        job_id: str | None = None,
    ) -> None:
        if job_id is not None:
            message = 'RecordingRuntime(job_id=...) is now RecordingRuntime(run_id=...)'
            warnings.warn(message, DeprecationWarning, stacklevel=2)
            run_id = run_id or job_id
        self.memory = MemoryLogger()
        super().__init__(
            logger=self.memory,
            client=client if client is not None else FakeBackend(),
            env={},
            run_id=run_id or 'test-run',
            sleep=sleep,
        )
