"""Small functions: none in src/ is longer than 60 lines (issue #10's bar for a readable SDK)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'src' / 'synapse_sdk'
LIMIT = 60


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding='utf-8'))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            if length > LIMIT:
                found.append(f'{node.name} ({length} lines, line {node.lineno})')
    return found


@pytest.mark.parametrize(
    'path', sorted(PACKAGE.rglob('*.py')), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_no_function_is_longer_than_the_limit(path: Path) -> None:
    assert long_functions(path) == []


def test_the_check_sees_a_long_function(tmp_path: Path) -> None:
    body = '\n'.join(f'    x{i} = {i}' for i in range(LIMIT))
    (tmp_path / 'long.py').write_text(f'def long():\n{body}\n', encoding='utf-8')
    assert long_functions(tmp_path / 'long.py') == [f'long ({LIMIT + 1} lines, line 1)']
