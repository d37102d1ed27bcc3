"""A plugin on disk: a folder with ``config.yaml`` naming its actions' entrypoints."""

from __future__ import annotations

import importlib
import os
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from synapse_sdk._paths import UnreadableTextError, read_utf8

from .actions import BaseAction
from .steps import ErrorKind, SynapseError
from .steps.support import describe_exception

__all__ = ['ActionConfig', 'Plugin', 'PluginConfig', 'PluginError', 'code_location']

_NAME = r'[A-Za-z_]\w*'
# module:Class or module.Class; the module is dotted names (no empty part: not 'plugin..A')
_ENTRYPOINT = re.compile(rf'^{_NAME}(?:\.{_NAME})*(?::{_NAME}|\.{_NAME})$')

# Every plugin folder imported from in this process: a module from one of them is
# never what another plugin means by that name.
_PLUGIN_FOLDERS: set[str] = set()


class PluginError(SynapseError):
    """The plugin cannot be used as it is: bad config, unknown action, broken entrypoint."""

    kind = ErrorKind.BAD_INPUT


class ActionConfig(BaseModel):
    model_config = ConfigDict(extra='allow')

    entrypoint: str
    description: str = ''

    @field_validator('entrypoint')
    @classmethod
    def _check_entrypoint(cls, value: str) -> str:
        # the file name where the module name belongs: plugin.py:Act, plugin.py
        module, colon, name = value.partition(':')
        hint = None
        if colon and module.endswith('.py'):
            hint = f'{module[:-3]}:{name}'
        elif not colon and value.endswith('.py'):
            hint = f'{value[:-3]}:ClassName'
        if hint is not None:
            raise ValueError(
                f'{value!r} names a file; name the module, without .py: write {hint!r}'
            )
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
    storage: str | None = None  # where runs store files (a folder or URL; docs/storage.md)

    @field_validator('version', mode='before')
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        # a float or a boolean (1.10 read as 1.1, yes as true) is refused by Plugin.load,
        # which can quote what was written; a whole number is the version it looks like
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


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
            text = read_utf8(config_file, str(config_file))
        except UnreadableTextError as error:
            raise PluginError(str(error)) from error
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise PluginError(f'{config_file} is not valid YAML: {_yaml_problem(error)}') from error
        if not isinstance(raw, dict):
            raise PluginError(f'{config_file} must hold a mapping, got {type(raw).__name__}')
        if isinstance(raw.get('version'), float | bool):
            written = _scalar_text(text, 'version') or str(raw['version'])
            raise PluginError(
                f'{config_file} is invalid: version: YAML reads {written} as '
                f"{raw['version']!r}, not as text: quote it: version: '{written}'"
            )
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
            # Another module of the entrypoint's name (another plugin's): load ours instead.
            for name in [m for m in sys.modules if m == top or m.startswith(top + '.')]:
                del sys.modules[name]
        _forget_other_plugins(folder)
        try:
            return importlib.import_module(module_name)
        except Exception as error:
            message = f"cannot import '{module_name}' from {self.path}: "
            message += describe_exception(error)
            if not isinstance(error, SyntaxError):  # its message names file and line already
                where = code_location(error, self.path)
                if where:
                    message += f' ({where})'
            raise PluginError(message) from error


def code_location(error: BaseException, folder: str | os.PathLike[str]) -> str | None:
    """``'plugin.py, line 12'``: the innermost frame of ``error``'s traceback that runs a
    file inside the plugin ``folder`` (its path relative to the folder), if any."""
    root = Path(folder)
    where = None
    for frame in traceback.extract_tb(error.__traceback__):
        file = Path(frame.filename)
        if file.is_absolute() and file.is_relative_to(root):
            where = f'{file.relative_to(root)}, line {frame.lineno}'
    return where


def _forget_other_plugins(folder: str) -> None:
    """Take the modules of every other plugin folder out of ``sys.modules``.

    Two plugins may each have a ``helpers.py`` (``utils``, ``models``, ...): once one
    of them was imported, the other's ``import helpers`` would get it from the cache.
    Classes already loaded keep the modules they were imported with.
    """
    _PLUGIN_FOLDERS.add(folder)
    others = tuple(f + os.sep for f in _PLUGIN_FOLDERS if f != folder)
    if not others:
        return
    ours = folder + os.sep
    # All decided first, while every package is still there to compute its subpackages' paths.
    doomed = [
        name
        for name, module in list(sys.modules.items())
        if any(f.startswith(others) and not f.startswith(ours) for f in _module_files(module))
    ]
    for name in doomed:
        # With its submodules: one left behind could no longer find its package (a namespace
        # package spanning a plugin's folder and the project's, as a `tests` folder does).
        for sub in [m for m in sys.modules if m == name or m.startswith(name + '.')]:
            del sys.modules[sub]


def _module_files(module: ModuleType | None) -> list[str]:
    """Where a module comes from: its file, or a namespace package's folders."""
    file = getattr(module, '__file__', None)
    if isinstance(file, str):
        return [file]
    path = getattr(module, '__path__', None)
    try:
        return [p for p in path or () if isinstance(p, str)]
    except (TypeError, KeyError):  # KeyError: a namespace package whose parent is gone
        return []


def _scalar_text(text: str, key: str) -> str | None:
    """The top-level ``key``'s value as written in the YAML ``text`` (``1.10``, not 1.1)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == key and isinstance(value_node, yaml.ScalarNode):
                return str(value_node.value)
    return None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """The parser's complaint on one line: what, and where."""
    problem = getattr(error, 'problem', None) or str(error).splitlines()[0]
    mark = getattr(error, 'problem_mark', None)
    if mark is not None:
        return f'{problem} (line {mark.line + 1}, column {mark.column + 1})'
    return ' '.join(str(problem).split())
