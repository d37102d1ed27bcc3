"""The testing kit's FakeBackend takes the storage client's batch and progress calls, so a
step written against ``context.client.upload_files`` runs in a plugin author's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from synapse_sdk.testing import FakeBackend


def test_upload_files_announces_each_key_before_its_upload(tmp_path: Path) -> None:
    sources = []
    for i in range(3):
        sources.append(tmp_path / f'f{i}.txt')
        sources[-1].write_text('x' * (i + 1))
    fake = FakeBackend()
    seen: list[str] = []
    progress: list[tuple[int, int]] = []

    def announce(key: str) -> None:
        assert fake.find_file(key) is None
        seen.append(key)

    ids = fake.upload_files(
        sources, keys=['a', 'b', 'c'], announce=announce, progress=lambda *p: progress.append(p)
    )
    assert seen == ['a', 'b', 'c'] and progress == [(1, 3), (2, 3), (3, 3)]
    assert [fake.find_file(k) for k in 'abc'] == ids
    assert fake.upload_files(sources, keys=['a', 'b', 'c']) == ids
    bytes_seen: list[tuple[int, int]] = []
    fake.upload_file(sources[2], progress=lambda *p: bytes_seen.append(p))
    assert bytes_seen == [(3, 3)]
    with pytest.raises(ValueError, match='3 paths but 1 keys'):
        fake.upload_files(sources, keys=['a'])
