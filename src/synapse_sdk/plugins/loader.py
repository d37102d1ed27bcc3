"""A plugin on disk: a folder with ``config.yaml`` naming its actions' entrypoints."""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .actions import BaseAction

_ENTRYPOINT = re.compile(r'^[A-Za-z_][\w.]*([:.])[A-Za-z_]\w*$')


class PluginError(Exception):
    """The plugin cannot be used as it is: bad config, unknown action, broken entrypoint."""


class ActionConfig(BaseModel):
    model_config = ConfigDict(extra='allow')

    entrypoint: str
    description: str = ''

    @field_validator('entrypoint')
    @classmethod
    def _check_entrypoint(cls, value: str) -> str:
        if not _ENTRYPOINT.match(value):
            raise ValueError(f"expected 'module:Class' or 'module.Class', got {value!r}")
        return value

    def split(self) -> tuple[str, str]:
        """``(module, class name)`` from either entrypoint form."""
        if ':' in self.entrypoint:
            module, name = self.entrypoint.split(':', 1)
        else:
            module, _, name = self.entrypoint.rpartition('.')
        return module, name


class PluginConfig(BaseModel):
    """The upstream ``config.yaml`` format."""

    model_config = ConfigDict(extra='allow')

    name: str
    code: str
    version: str
    category: str
    description: str = ''
    actions: dict[str, ActionConfig] = Field(min_length=1)

    @field_validator('version', mode='before')
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value


class Plugin:
    """A loaded plugin folder."""

    def __init__(self, path: Path, config: PluginConfig) -> None:
        self.path = path
        self.config = config

    @classmethod
    def load(cls, path: str | os.PathLike[str] = '.') -> Plugin:
        root = Path(path).resolve()
        config_file = root / 'config.yaml'
        if not config_file.is_file():
            raise PluginError(f'no config.yaml in {root}: pass the plugin folder with --path')
        try:
            raw = yaml.safe_load(config_file.read_text(encoding='utf-8'))
        except yaml.YAMLError as error:
            raise PluginError(f'{config_file} is not valid YAML: {_yaml_problem(error)}') from error
        if not isinstance(raw, dict):
            raise PluginError(f'{config_file} must hold a mapping, got {type(raw).__name__}')
        try:
            config = PluginConfig.model_validate(raw)
        except ValidationError as error:
            problems = '; '.join(
                f'{".".join(str(p) for p in e["loc"])}: {e["msg"]}' for e in error.errors()
            )
            raise PluginError(f'{config_file} is invalid: {problems}') from error
        return cls(root, config)

    def action_config(self, action: str) -> ActionConfig:
        try:
            return self.config.actions[action]
        except KeyError:
            known = ', '.join(sorted(self.config.actions))
            raise PluginError(
                f"plugin '{self.config.code}' has no action '{action}'; its actions: {known}"
            ) from None

    def load_action(self, action: str) -> type[BaseAction[Any]]:
        """Import the action's class from the plugin folder."""
        module_name, class_name = self.action_config(action).split()
        module = self._import(module_name)
        target = getattr(module, class_name, None)
        if target is None:
            raise PluginError(f"entrypoint of '{action}': {module_name} has no {class_name}")
        if not (isinstance(target, type) and issubclass(target, BaseAction)):
            raise PluginError(
                f"entrypoint of '{action}': {module_name}.{class_name} is not a BaseAction subclass"
            )
        return target

    def _import(self, module_name: str) -> Any:
        folder = str(self.path)
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)  # ours first, even if another plugin was loaded since
        top = module_name.split('.')[0]
        cached_file = getattr(sys.modules.get(top), '__file__', None)
        if cached_file and not Path(cached_file).resolve().is_relative_to(self.path):
            # Another plugin's module of the same name: load ours instead.
            for name in [m for m in sys.modules if m == top or m.startswith(top + '.')]:
                del sys.modules[name]
        try:
            return importlib.import_module(module_name)
        except Exception as error:
            raise PluginError(
                f"cannot import '{module_name}' from {self.path}: {type(error).__name__}: {error}"
            ) from error


def _yaml_problem(error: yaml.YAMLError) -> str:
    """The parser's complaint on one line: what, and where."""
    problem = getattr(error, 'problem', None) or str(error).splitlines()[0]
    mark = getattr(error, 'problem_mark', None)
    if mark is not None:
        return f'{problem} (line {mark.line + 1}, column {mark.column + 1})'
    return ' '.join(str(problem).split())
