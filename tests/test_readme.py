"""The README's quick start runs as written."""

from __future__ import annotations

import re
from pathlib import Path

from synapse_sdk.clients import LocalBackendClient
from synapse_sdk.testing import RecordingRuntime, assert_progress_monotonic

README = Path(__file__).resolve().parents[1] / 'README.md'


def quick_start() -> str:
    text = README.read_text(encoding='utf-8')
    return re.findall(r'```python\n(.*?)```', text, re.S)[0]


def test_the_quick_start_uploads_and_rolls_back(tmp_path: Path) -> None:
    namespace: dict[str, object] = {'__name__': 'quick_start'}
    exec(compile(quick_start(), str(README), 'exec', dont_inherit=True), namespace)
    action = namespace['MyUpload']
    files = []
    for name in ('a.txt', 'b.txt'):
        (tmp_path / name).write_text(name)
        files.append(str(tmp_path / name))
    client = LocalBackendClient(tmp_path / 'store')
    runtime = RecordingRuntime(client)
    result = action.dispatch({'paths': files}, runtime)  # type: ignore[attr-defined]
    assert result['steps'] == {'upload': {'count': 2}}
    assert sorted(f['name'] for f in client.list_files()) == ['a.txt', 'b.txt']
    assert_progress_monotonic(runtime.memory)

    # a missing file fails the step halfway: what it uploaded is deleted again
    failing = RecordingRuntime(client)
    try:
        action.dispatch({'paths': [files[0], str(tmp_path / 'missing.txt')]}, failing)  # type: ignore[attr-defined]
    except RuntimeError as error:
        assert "Step 'upload' failed: SourceFileError" in str(error)
    else:
        raise AssertionError('the upload of a missing file should fail')
    assert len(client.list_files()) == 2
