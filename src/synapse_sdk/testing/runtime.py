"""A runtime context that remembers everything, on a fake backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from synapse_sdk.runtime import MemoryLogger, RuntimeContext

from .backend import FakeBackend


class RecordingRuntime(RuntimeContext):
    """``RuntimeContext`` with a :class:`MemoryLogger` (``.memory``) and a
    :class:`FakeBackend` (``.client``) unless another client is given."""

    def __init__(
        self,
        client: Any = None,
        *,
        sleep: Callable[[float], None] | None = None,
        job_id: str | None = None,
    ) -> None:
        self.memory = MemoryLogger()
        super().__init__(
            logger=self.memory,
            client=client if client is not None else FakeBackend(),
            env={},
            job_id=job_id or 'test-run',
            sleep=sleep,
        )
