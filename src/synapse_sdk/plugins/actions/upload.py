"""Upload actions: move files into the backend, undoing what was stored if a step fails."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ._base import ActionContext, BaseAction, P


@dataclass(kw_only=True)
class UploadContext(ActionContext[P]):
    """State of an upload workflow (the spec's fields); ``client`` is the runtime's."""

    files_to_upload: list[str] = field(default_factory=list)
    uploaded_files: list[dict[str, Any]] = field(default_factory=list)
    total_bytes: int = 0


class BaseUploadAction(BaseAction[P]):
    category: ClassVar[str] = 'upload'
    context_class: ClassVar[type[ActionContext[Any]] | None] = UploadContext
