"""docs/storage.md's step example runs as written, against a real storage client."""

from __future__ import annotations

import re
import secrets
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from synapse_sdk.clients import open_storage
from synapse_sdk.plugins.steps import BaseStep, Orchestrator, StepRegistry, StepResult
from synapse_sdk.runtime import MemoryLogger, RuntimeContext

DOCS = Path(__file__).resolve().parents[2] / 'docs' / 'storage.md'


def example(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The doc's one code block, run as a module of its own."""
    [block] = re.findall(r'```python\n(.*?)```', DOCS.read_text(encoding='utf-8'), re.S)
    module = types.ModuleType('storage_doc')
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look it up
    exec(compile(block, 'docs/storage.md', 'exec'), module.__dict__)
    return module.__dict__


class Fails(BaseStep[Any]):
    name, progress_weight = 'after', 1.0

    def execute(self, context: Any) -> StepResult:
        raise RuntimeError('a later step failed')


@pytest.mark.parametrize('kind', ['folder', 'memory'])
def test_the_upload_steps_of_docs_storage_store_report_and_roll_back(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = example(monkeypatch)
    files = []
    for i in range(20):
        files.append(tmp_path / 'src' / f'f{i:02d}.bin')
        files[-1].parent.mkdir(exist_ok=True)
        files[-1].write_bytes(bytes([i]) * (1000 + i))
    url = str(tmp_path / 'storage') if kind == 'folder' else f'memory://{secrets.token_hex(4)}'
    client = open_storage(url).for_run('doc-run')
    logger = MemoryLogger()
    runtime = RuntimeContext(logger=logger, client=client, run_id='doc-run')

    big = tmp_path / 'big.bin'
    big.write_bytes(b'x' * (3 * 1024 * 1024))
    one: StepRegistry[Any] = StepRegistry()
    one.register(code['UploadOne']())
    Orchestrator(one, code['UploadContext'](runtime_ctx=runtime, files=[big])).execute()
    steps = {c for _, _, c in logger.progress_updates}
    assert 'upload_one' in steps  # byte progress of the one file
    client.delete_file(client.find_file('doc-run:big.bin'))

    registry: StepRegistry[Any] = StepRegistry()
    registry.register(code['UploadMany']())
    context = code['UploadContext'](runtime_ctx=runtime, files=files)
    result = Orchestrator(registry, context).execute()
    assert result['success'] is True
    assert sorted(f['name'] for f in client.list_files()) == [p.name for p in files]

    registry.register(Fails())
    context = code['UploadContext'](runtime_ctx=runtime, files=files)
    with pytest.raises(RuntimeError, match="Step 'after' failed"):
        Orchestrator(registry, context).execute()
    assert client.list_files() == []  # rolled back by key
