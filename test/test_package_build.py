"""`colcon build` builds and installs the package like a ROS workspace would."""

import os
from pathlib import Path
import subprocess
import sys


REPO = Path(__file__).resolve().parents[1]


def test_colcon_build_installs_share_files(colcon_install):
    share = colcon_install / 'share' / 'affordance_grounding'
    for relative in ('package.xml', 'launch/node.launch.py', 'config/params.yaml',
                     'config/model_tiny.yaml', 'rviz/affordance.rviz'):
        assert (share / relative).is_file(), relative
    marker = colcon_install / 'share/ament_index/resource_index/packages/affordance_grounding'
    assert marker.is_file()


def test_colcon_build_installs_console_scripts(colcon_install):
    scripts = colcon_install / 'lib' / 'affordance_grounding'
    assert (scripts / 'affordance_predict').is_file()
    assert (scripts / 'affordance_import_official').is_file()
    assert (scripts / 'build_engine').is_file()
    assert (scripts / 'affordance_node').is_file()
    assert (scripts / 'affordance_bag').is_file()


def test_colcon_install_is_importable_and_indexed(colcon_install):
    site = next(colcon_install.glob('lib/python3*/site-packages'))
    code = ('from ament_index_python.packages import get_package_share_directory as share;'
            'import affordance_grounding, os;'
            'print(affordance_grounding.__file__);'
            'print(share("affordance_grounding"))')
    env = dict(os.environ, PYTHONPATH=str(site), AMENT_PREFIX_PATH=str(colcon_install))
    result = subprocess.run([sys.executable, '-c', code], cwd='/', env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    module_file, share_dir = result.stdout.split()
    assert Path(module_file).is_relative_to(site)
    assert Path(share_dir) == colcon_install / 'share' / 'affordance_grounding'


def test_colcon_install_ships_the_action_synonym_table(colcon_install):
    site = next(colcon_install.glob('lib/python3*/site-packages'))
    assert (site / 'affordance_grounding' / 'data' / 'action_synonyms.yaml').is_file()
