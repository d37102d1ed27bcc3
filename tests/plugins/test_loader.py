"""``Plugin.load`` and ``load_action``: what a broken plugin folder is told, and isolation."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from synapse_sdk.plugins.loader import Plugin, PluginError
from synapse_sdk.testing import RecordingRuntime

HEAD = 'name: Test Plugin\ncode: test_plugin\nversion: 0.1.0\ncategory: upload\n'

PLAIN_PLUGIN = """\
from pydantic import BaseModel

from synapse_sdk.plugins import BaseUploadAction


class Params(BaseModel):
    n: int = 1


class Act(BaseUploadAction[Params]):
    def execute(self):
        return {'n': self.params.n}
"""


@pytest.fixture(autouse=True)
def _isolated_synapse_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('SYNAPSE_HOME', str(tmp_path / 'synapse_home'))


@pytest.fixture
def clean_imports(tmp_path: Path) -> Iterator[None]:
    """Plugin loading puts folders on sys.path and modules in sys.modules: take ours out."""
    path = list(sys.path)
    yield
    sys.path[:] = path
    root = str(tmp_path)
    for name, module in list(sys.modules.items()):
        if str(getattr(module, '__file__', None) or '').startswith(root):
            del sys.modules[name]


def write_plugin(
    folder: Path, files: dict[str, str], actions: str = '  run:\n    entrypoint: plugin:Act\n'
) -> Path:
    folder.mkdir(parents=True)
    (folder / 'config.yaml').write_text(HEAD + 'actions:\n' + actions, encoding='utf-8')
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding='utf-8')
    return folder


# -- config.yaml ------------------------------------------------------------------------


def test_config_yaml_that_is_not_utf8_is_a_plugin_error(tmp_path: Path) -> None:
    """A config.yaml saved as Latin-1 (an accented plugin name): which file, why, what to do."""
    folder = write_plugin(tmp_path / 'plug', {'plugin.py': PLAIN_PLUGIN})
    (folder / 'config.yaml').write_bytes(
        (
            HEAD.replace('Test Plugin', 'Caf\xe9')
            + 'actions:\n  run:\n    entrypoint: plugin:Act\n'
        ).encode('latin-1')
    )
    with pytest.raises(PluginError) as caught:
        Plugin.load(folder)
    assert str(caught.value) == (
        f'{folder}/config.yaml is not UTF-8 text (byte 0xe9 at offset 9): save it as UTF-8'
    )


@pytest.mark.parametrize(('written', 'read'), [('1.10', '1.1'), ('2.0', '2.0'), ('yes', 'True')])
def test_a_float_looking_version_is_not_silently_changed(
    tmp_path: Path, written: str, read: str
) -> None:
    """``version: 1.10`` is the YAML number 1.1: refused, with the quoting that keeps it."""
    folder = write_plugin(tmp_path / 'plug', {'plugin.py': PLAIN_PLUGIN})
    text = (folder / 'config.yaml').read_text(encoding='utf-8')
    (folder / 'config.yaml').write_text(text.replace('0.1.0', written), encoding='utf-8')
    with pytest.raises(PluginError) as caught:
        Plugin.load(folder)
    assert str(caught.value) == (
        f'{folder}/config.yaml is invalid: version: YAML reads {written} as {read}, '
        f"not as text: quote it: version: '{written}'"
    )


@pytest.mark.parametrize('version', ['0.1.0', "'1.10'", '3'])
def test_versions_that_are_text_or_whole_numbers_load(tmp_path: Path, version: str) -> None:
    folder = write_plugin(tmp_path / 'plug', {'plugin.py': PLAIN_PLUGIN})
    text = (folder / 'config.yaml').read_text(encoding='utf-8')
    (folder / 'config.yaml').write_text(text.replace('0.1.0', version), encoding='utf-8')
    assert Plugin.load(folder).config.version == version.strip("'")


# -- entrypoints ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('entrypoint', 'hint'),
    [('plugin.py:Act', 'plugin:Act'), ('plugin.py', 'plugin:ClassName')],
)
def test_entrypoint_written_with_the_file_name_says_what_to_write(
    tmp_path: Path, clean_imports: None, entrypoint: str, hint: str
) -> None:
    """``entrypoint: plugin.py:Act`` (the file name: a common slip) says to write plugin:Act."""
    folder = write_plugin(
        tmp_path / 'plug', {'plugin.py': PLAIN_PLUGIN}, f'  run:\n    entrypoint: {entrypoint}\n'
    )
    with pytest.raises(PluginError) as caught:
        Plugin.load(folder).load_action('run')
    assert str(caught.value) == (
        f'{folder}/config.yaml is invalid: actions.run.entrypoint: Value error, '
        f"'{entrypoint}' names a file; name the module, without .py: write '{hint}'"
    )


@pytest.mark.parametrize('entrypoint', ['plugin..Act', '.plugin:Act', 'plugin.:Act', 'plugin:'])
def test_entrypoint_with_an_empty_name_is_invalid(tmp_path: Path, entrypoint: str) -> None:
    folder = write_plugin(
        tmp_path / 'plug', {'plugin.py': PLAIN_PLUGIN}, f"  run:\n    entrypoint: '{entrypoint}'\n"
    )
    with pytest.raises(PluginError) as caught:
        Plugin.load(folder)
    assert str(caught.value) == (
        f'{folder}/config.yaml is invalid: actions.run.entrypoint: Value error, '
        f"expected 'module:Class' or 'module.Class', got '{entrypoint}'"
    )


@pytest.mark.parametrize('entrypoint', ['plugin:Act', 'plugin.Act', 'pkg.plugin:Act'])
def test_entrypoint_forms_that_load(tmp_path: Path, clean_imports: None, entrypoint: str) -> None:
    folder = write_plugin(
        tmp_path / 'plug',
        {'plugin.py': PLAIN_PLUGIN, 'pkg/__init__.py': '', 'pkg/plugin.py': PLAIN_PLUGIN},
        f'  run:\n    entrypoint: {entrypoint}\n',
    )
    assert Plugin.load(folder).load_action('run').__name__ == 'Act'


# -- importing the plugin's code --------------------------------------------------------


def test_import_error_in_plugin_code_says_where(tmp_path: Path, clean_imports: None) -> None:
    """An error raised while the plugin module runs names the file and line to fix."""
    code = PLAIN_PLUGIN + '\n\nLIMIT = undefined_setting + 1\n'
    folder = write_plugin(tmp_path / 'plug', {'plugin.py': code})
    line = code.splitlines().index('LIMIT = undefined_setting + 1') + 1
    with pytest.raises(PluginError) as caught:
        Plugin.load(folder).load_action('run')
    assert str(caught.value) == (
        f"cannot import 'plugin' from {folder}: NameError: name 'undefined_setting' is not "
        f'defined (plugin.py, line {line})'
    )


def test_import_error_in_a_helper_module_names_the_helper(
    tmp_path: Path, clean_imports: None
) -> None:
    """The innermost frame inside the plugin folder: the helper, not the import of it."""
    folder = write_plugin(
        tmp_path / 'plug',
        {
            'plugin.py': 'from lib import settings\n' + PLAIN_PLUGIN,
            'lib/__init__.py': '',
            'lib/settings.py': 'import os\n\nROOT = os.environ["NO_SUCH_SETTING_ANYWHERE"]\n',
        },
    )
    with pytest.raises(PluginError) as caught:
        Plugin.load(folder).load_action('run')
    assert str(caught.value) == (
        f"cannot import 'plugin' from {folder}: KeyError: 'NO_SUCH_SETTING_ANYWHERE' "
        '(lib/settings.py, line 3)'
    )


HELPER_USER = PLAIN_PLUGIN.replace('from synapse_sdk', 'import helpers\nfrom synapse_sdk').replace(
    "return {'n': self.params.n}", "return {'who': helpers.WHO}"
)


def test_plugins_do_not_share_their_helper_modules(tmp_path: Path, clean_imports: None) -> None:
    """Two plugins that both ``import helpers`` (utils, models, ...) in one process (a test
    session, a reused worker): each runs its own, in whichever order they are loaded."""
    for name in ('alpha', 'beta'):
        write_plugin(tmp_path / name, {'plugin.py': HELPER_USER, 'helpers.py': f'WHO = {name!r}\n'})
    who = []
    for name in ('alpha', 'beta', 'alpha'):
        action = Plugin.load(tmp_path / name).load_action('run')
        who.append(action.dispatch({}, RecordingRuntime())['who'])
    assert who == ['alpha', 'beta', 'alpha']


def test_plugins_do_not_share_their_helper_packages(tmp_path: Path, clean_imports: None) -> None:
    code = HELPER_USER.replace('import helpers', 'from lib import helpers')
    for name in ('alpha', 'beta'):
        write_plugin(
            tmp_path / name,
            {'plugin.py': code, 'lib/__init__.py': '', 'lib/helpers.py': f'WHO = {name!r}\n'},
        )
    alpha = Plugin.load(tmp_path / 'alpha').load_action('run')
    beta = Plugin.load(tmp_path / 'beta').load_action('run')
    assert beta.dispatch({}, RecordingRuntime())['who'] == 'beta'
    # a class loaded before keeps the modules it was imported with
    assert alpha.dispatch({}, RecordingRuntime())['who'] == 'alpha'


# -- isolation and where errors are (checked by hand first) ---------------------------


def test_two_plugins_with_the_same_module_name_get_their_own_classes(
    tmp_path: Path, clean_imports: None
) -> None:
    for name in ('one', 'two'):
        code = PLAIN_PLUGIN.replace("return {'n': self.params.n}", f'return {{"who": {name!r}}}')
        write_plugin(tmp_path / name, {'plugin.py': code})
    results = [
        Plugin.load(tmp_path / name).load_action('run').dispatch({}, RecordingRuntime())
        for name in ('one', 'two', 'one')
    ]
    assert [r['who'] for r in results] == ['one', 'two', 'one']


def test_syntax_error_in_a_helper_module_names_its_file_and_line(
    tmp_path: Path, clean_imports: None
) -> None:
    code = PLAIN_PLUGIN.replace('from synapse_sdk', 'import helpers\nfrom synapse_sdk')
    folder = write_plugin(tmp_path / 'plug', {'plugin.py': code, 'helpers.py': 'X = 1\ndef f(:\n'})
    with pytest.raises(PluginError) as caught:
        Plugin.load(folder).load_action('run')
    message = str(caught.value)
    assert message.startswith(f"cannot import 'plugin' from {folder}: SyntaxError: ")
    assert '(helpers.py, line 2)' in message


def test_a_namespace_package_that_reaches_into_a_plugin_folder_does_not_break_loading(
    tmp_path: Path, clean_imports: None
) -> None:
    """A package without __init__.py (a project's ``tests``) spans every sys.path entry with
    a folder of its name, a loaded plugin's ``tests`` folder too. Loading the next plugin
    drops it from sys.modules: its subpackage must go with it, or reading the subpackage's
    path raises KeyError in every later load."""
    project = tmp_path / 'project'
    (project / 'shared_ns' / 'inner').mkdir(parents=True)
    (project / 'shared_ns' / 'inner' / 'mod.py').write_text('WHERE = "project"\n')
    for name in ('one', 'two'):
        write_plugin(tmp_path / name, {'plugin.py': PLAIN_PLUGIN, 'shared_ns/x.py': ''})
    sys.path.insert(0, str(project))
    try:
        import shared_ns.inner.mod  # noqa: F401 - namespace packages 'shared_ns', '.inner'

        Plugin.load(tmp_path / 'one').load_action('run')  # shared_ns now spans one/shared_ns
        for name in ('two', 'one'):
            action = Plugin.load(tmp_path / name).load_action('run')
            assert action.dispatch({}, RecordingRuntime()) == {'n': 1}
        from shared_ns.inner import mod

        assert mod.WHERE == 'project'
        del sys.modules['shared_ns']  # dropped by someone else, its subpackage left behind
        for name in ('two', 'one'):
            assert Plugin.load(tmp_path / name).load_action('run').__name__ == 'Act'
    finally:
        for name in [n for n in sys.modules if n.split('.')[0] == 'shared_ns']:
            del sys.modules[name]
