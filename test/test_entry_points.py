"""The console scripts of setup.py resolve, and ``make setup`` puts them into the venv."""

import ast
import importlib
from pathlib import Path
import re
import sys

import pytest

REPO = Path(__file__).resolve().parents[1]
README_SCRIPTS = ('affordance_predict', 'build_engine', 'affordance_import_official',
                  'affordance_node', 'affordance_bag')


def console_scripts():
    """``{name: 'module:function'}`` from setup.py, read without running it."""
    tree = ast.parse((REPO / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == 'console_scripts':
                    entries = [element.value for element in value.elts]
                    return dict(tuple(part.strip() for part in entry.split('=', 1))
                                for entry in entries)
    raise AssertionError('setup.py declares no console_scripts')


def test_every_console_script_resolves_to_a_main_function():
    scripts = console_scripts()
    assert set(README_SCRIPTS) <= set(scripts)
    for name, target in scripts.items():
        module_name, function_name = target.split(':')
        assert function_name == 'main', name
        assert callable(getattr(importlib.import_module(module_name), function_name)), name


def test_every_script_the_readme_runs_is_a_console_script():
    text = (REPO / 'README.md').read_text()
    blocks = re.findall(r'```bash\n(.*?)```', text, flags=re.S)
    commands = {line.split()[0] for block in blocks for line in block.splitlines()
                if line.strip() and not line.startswith((' ', '#'))}
    named = {command for command in commands if re.fullmatch(r'affordance_\w+|build_engine',
                                                             command)}
    assert named and named <= set(console_scripts())


@pytest.mark.skipif(not (Path(sys.prefix) / '.entry-points').exists(),
                    reason='this venv was not made by `make setup`')
def test_make_setup_installed_the_console_scripts():
    scripts = Path(sys.prefix) / 'bin'
    missing = [name for name in console_scripts() if not (scripts / name).is_file()]
    assert not missing, f'make setup did not install {missing} into {scripts}'
