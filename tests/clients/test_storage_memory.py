"""Large files stream in constant memory: a file larger than the memory budget (300 MiB)
is uploaded to S3 (moto, 127.0.0.1) and downloaded again by a process that never holds
it. (The benchmark and docs/benchmarks.md: a 2 GiB file peaks at about 120 MiB.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.services.s3 import S3Server

SRC = Path(__file__).resolve().parents[2] / 'src'
BUDGET_MIB = 300
SIZE = 320 * 1024 * 1024

MEASURED = r"""
import json, sys
from pathlib import Path
from synapse_sdk.clients import open_storage

def peak():
    status = Path('/proc/self/status').read_text()
    return int(status.split('VmHWM:')[1].split()[0]) // 1024

def reset():
    Path('/proc/self/clear_refs').write_text('5')  # VmHWM starts again from now

client = open_storage(sys.argv[1])
reset()
file_id = client.upload_file(sys.argv[2], key='big')
up = peak()
reset()
back = client.download_file(file_id, sys.argv[2] + '.back')
print(json.dumps({'upload': up, 'download': peak(), 'size': back.stat().st_size}))
"""


def test_a_file_larger_than_the_memory_budget_streams_both_ways(
    s3_bucket: str, s3_server: S3Server, tmp_path: Path
) -> None:
    source = tmp_path / 'big.bin'
    with source.open('wb') as out:  # not sparse: every part is read and hashed
        for _ in range(SIZE // (32 * 1024 * 1024)):
            out.write(os.urandom(32 * 1024 * 1024))
    env = {**os.environ, 'PYTHONPATH': str(SRC), 'SYNAPSE_HOME': str(tmp_path / 'home')}
    done = subprocess.run(
        [sys.executable, '-c', MEASURED, f's3://{s3_bucket}/big', str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures['size'] == SIZE
    assert figures['upload'] < BUDGET_MIB, figures
    assert figures['download'] < BUDGET_MIB, figures
    s3_server.client().delete_objects(
        Bucket=s3_bucket,
        Delete={'Objects': [{'Key': o['Key']} for o in s3_server.client().list_objects_v2(
            Bucket=s3_bucket)['Contents']]},
    )  # fmt: skip
