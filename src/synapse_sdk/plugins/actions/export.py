"""Export actions: fetch stored results, process them, write them out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ._base import ActionContext, BaseAction, P


@dataclass(kw_only=True)
class ExportContext(ActionContext[P]):
    """State of an export workflow: what was fetched, where it goes, how many made it."""

    results: list[dict[str, Any]] = field(default_factory=list)
    output_path: str | None = None
    written_files: list[str] = field(default_factory=list)
    exported_count: int = 0
    failed_count: int = 0


class BaseExportAction(BaseAction[P]):
    category: ClassVar[str] = 'export'
    context_class: ClassVar[type[ActionContext[Any]] | None] = ExportContext
