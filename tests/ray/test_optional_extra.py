"""Ray is an optional extra: without it, a clear message instead of a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

WITHOUT_RAY = """
import sys
sys.modules['ray'] = None  # as if the extra were not installed
{body}
"""


def run_without_ray(body: str, *args: str) -> subprocess.CompletedProcess[str]:
    code = WITHOUT_RAY.format(body=body)
    return subprocess.run(
        [sys.executable, '-c', code, *args], capture_output=True, text=True, timeout=60
    )


def test_the_executor_is_importable_from_the_execution_package() -> None:
    from synapse_sdk.execution import RayExecutor
    from synapse_sdk.execution._on_ray import RayExecutor as direct

    assert RayExecutor is direct


def test_importing_the_ray_executor_without_ray_says_how_to_get_it() -> None:
    done = run_without_ray(
        'try:\n'
        '    from synapse_sdk.execution import RayExecutor\n'
        'except ImportError as error:\n'
        '    print(error)\n'
    )
    assert done.returncode == 0, done.stderr
    assert "needs the 'ray' extra: pip install 'synapse-sdk[ray]'" in done.stdout


def test_the_cli_without_ray_is_bad_input_with_one_line(tmp_path: Path) -> None:
    done = run_without_ray(
        'import sys\n'
        "sys.argv = ['synapse'] + sys.argv[1:]\n"
        'from synapse_sdk.cli.main import main\n'
        'main()\n',
        'plugin',
        'run',
        'upload',
        '--mode',
        'ray',
        '--no-journal',
        '--path',
        str(REPO / 'examples' / 'file_upload'),
        '--params',
        '{"source_path": "x"}',
    )
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.strip()
        == "error: running on Ray needs the 'ray' extra: pip install 'synapse-sdk[ray]'"
    )


def test_the_local_mode_does_not_need_ray(tmp_path: Path) -> None:
    source = tmp_path / 'src'
    source.mkdir()
    (source / 'a.txt').write_text('a')
    done = subprocess.run(
        [
            sys.executable,
            '-c',
            WITHOUT_RAY.format(
                body='import sys\n'
                "sys.argv = ['synapse'] + sys.argv[1:]\n"
                'from synapse_sdk.cli.main import main\n'
                'main()\n'
            ),
            'plugin',
            'run',
            'upload',
            '--path',
            str(REPO / 'examples' / 'file_upload'),
            '--params',
            f'{{"source_path": "{source}"}}',
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            'SYNAPSE_HOME': str(tmp_path / 'home'),
            'PATH': '/usr/bin:/bin',
            # kept: a PYTHONPATH that points at the SDK's sources under test
            **{k: v for k, v in os.environ.items() if k == 'PYTHONPATH'},
        },
    )
    assert done.returncode == 0, done.stderr
    assert '"success": true' in done.stdout
