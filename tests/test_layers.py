"""Each layer imports only the layers below it (docs/architecture.md)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'src' / 'synapse_sdk'

# module prefix -> layer; the longest matching prefix wins
LAYERS = {
    'synapse_sdk': 0,
    'synapse_sdk.plugins.steps': 1,
    'synapse_sdk.plugins.pipelines': 1,
    'synapse_sdk.db': 1,
    'synapse_sdk._paths': 2,
    'synapse_sdk.runtime': 2,
    'synapse_sdk.clients': 2,
    'synapse_sdk.plugins': 3,
    'synapse_sdk.journal': 2,
    'synapse_sdk.otel': 2,  # OpenTelemetry traces: a listener (the runtime's Logger)
    'synapse_sdk.execution': 4,
    'synapse_sdk.observe': 4,  # reads the journal and the run's log; draws them
    'synapse_sdk.testing': 5,
    'synapse_sdk.cli': 5,
    'synapse_sdk.ui': 5,  # synapse ui: the journal as a web page (Starlette); buttons run the CLI
    'synapse_sdk.errors': 5,  # names every layer's errors (loads the upper ones lazily)
}

# Re-export points that name upper layers, but only lazily (on first attribute
# access): synapse_sdk (SynapseError), synapse_sdk.plugins (the spec's import
# point: actions, the runtime). test_lazy_reexports_load_nothing_above checks it.
LAZY_REEXPORTS = {'synapse_sdk', 'synapse_sdk.plugins'}


def layer_of(module: str) -> int:
    matches = [p for p in LAYERS if module == p or module.startswith(p + '.')]
    return LAYERS[max(matches, key=len)]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def imported_modules(source: str, here: str, is_package: bool = False) -> list[str]:
    tree = ast.parse(source)
    package = here if is_package else here.rpartition('.')[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[: len(base) - (node.level - 1)]
                found.append('.'.join([*base, node.module] if node.module else base))
            elif node.module:
                found.append(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.startswith('synapse_sdk.') and ' ' not in node.value:
                found.append(node.value)  # lazy imports by name (importlib)
    return [m for m in found if m == 'synapse_sdk' or m.startswith('synapse_sdk.')]


SOURCES = sorted(PACKAGE.rglob('*.py'))


@pytest.mark.parametrize('path', SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_downwards(path: Path) -> None:
    here = module_name(path)
    if here in LAZY_REEXPORTS:
        return  # names upper layers only lazily: see test_lazy_reexports_load_nothing_above
    source = path.read_text(encoding='utf-8')
    imports = imported_modules(source, here, path.name == '__init__.py')
    upward = [m for m in imports if layer_of(m) > layer_of(here)]
    assert upward == [], f'{here} (layer {layer_of(here)}) imports upward: {upward}'


def test_the_check_sees_upward_imports() -> None:
    here = 'synapse_sdk.plugins.steps._orchestrator'
    source = 'from synapse_sdk.runtime import RuntimeContext\nfrom ..actions import base\n'
    imports = imported_modules(source, here)
    assert imports == ['synapse_sdk.runtime', 'synapse_sdk.plugins.actions']
    assert all(layer_of(m) > layer_of(here) for m in imports)


def loaded_by(module: str) -> list[str]:
    """The modules a fresh interpreter holds after importing ``module``."""
    probe = f'import json, sys, {module}; print(json.dumps(sorted(sys.modules)))'
    done = subprocess.run(
        [sys.executable, '-c', probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize(
    ('module', 'highest'),
    [
        ('synapse_sdk', 0),  # SynapseError comes with its first use
        ('synapse_sdk.plugins', 1),  # the actions and the runtime too
        ('synapse_sdk.errors', 1),  # the steps core's errors now, the others on first use
    ],
)
def test_lazy_reexports_load_nothing_above(module: str, highest: int) -> None:
    loaded = loaded_by(module)
    assert module in loaded
    ours = [m for m in loaded if m.partition('.')[0] == 'synapse_sdk' and m != module]
    ours = [m for m in ours if m not in LAZY_REEXPORTS]  # parents of what they import
    assert [m for m in ours if layer_of(m) > highest] == []
    assert [m for m in ('pydantic', 'rich', 'yaml', 'typer', 'ray') if m in loaded] == []


ACTIONS_LAYER = [p for p in SOURCES if layer_of(module_name(p)) == 3]


@pytest.mark.parametrize('path', ACTIONS_LAYER, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_actions_layer_does_not_know_the_journal(path: Path) -> None:
    """Journaling is the execution layer's: it attaches the journal as a listener."""
    here = module_name(path)
    source = path.read_text(encoding='utf-8')
    imports = imported_modules(source, here, path.name == '__init__.py')
    assert [m for m in imports if layer_of(m) == 2 and m.startswith('synapse_sdk.journal')] == []


def test_the_actions_layer_is_checked() -> None:
    names = {module_name(p) for p in ACTIONS_LAYER}
    assert {'synapse_sdk.plugins.actions._base', 'synapse_sdk.plugins.loader'} <= names


# the one place that names every layer's errors, and the package root, may reach
# into private modules; shared internals at the root (synapse_sdk._paths) are for all
PRIVATE_HUBS = {'synapse_sdk', 'synapse_sdk.errors'}


def private_reach(module: str, here: str, is_package: bool) -> bool:
    """``module`` is a ``_private`` module of a package other than ``here``'s own."""
    package = here if is_package else here.rpartition('.')[0]
    parts = module.split('.')
    for i, part in enumerate(parts):
        if part.startswith('_') and not part.startswith('__'):
            owner = '.'.join(parts[:i])
            return owner not in (package, 'synapse_sdk')
    return False


@pytest.mark.parametrize('path', SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_other_packages_use_the_public_names(path: Path) -> None:
    """Private modules are reached through their package's ``__init__`` (pinned in
    tests/test_exports.py), so a module's insides can change without breaking others."""
    here = module_name(path)
    if here in PRIVATE_HUBS:
        return
    is_package = path.name == '__init__.py'
    imports = imported_modules(path.read_text(encoding='utf-8'), here, is_package)
    assert [m for m in imports if private_reach(m, here, is_package)] == []


def test_the_private_check_sees_a_reach() -> None:
    assert private_reach('synapse_sdk.journal._store', 'synapse_sdk.cli.main', False)
    assert not private_reach('synapse_sdk.journal._store', 'synapse_sdk.journal._listener', False)
    assert not private_reach('synapse_sdk._paths', 'synapse_sdk.cli.main', False)
    assert not private_reach('synapse_sdk.journal', 'synapse_sdk.cli.main', False)
