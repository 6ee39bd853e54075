"""launch/node.launch.py against the installed package: executable, params file, arguments.

launch and launch_ros are not installable here, so the launch file is imported with small
recording stand-ins for their classes and its ``launch_setup`` runs for real; what it asks
for is then checked against what colcon installs and what the node subscribes to. Where
launch_ros is importable, the real launch description is built as well.
"""

import importlib.util
import os
from pathlib import Path
import signal
import subprocess
import sys
import time
import types

from affordance_grounding.ros.params import NodeConfig
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / 'launch' / 'node.launch.py'
INTERFACE_ARGUMENTS = ('namespace', 'params_file', 'image_topic', 'camera_info_topic',
                       'depth_topic', 'action_topic', 'roi_source', 'detections_topic',
                       'roi_topic', 'backend', 'model_path', 'device',
                       'enable_3d', 'image_transport', 'cameras', 'rviz', 'use_sim_time',
                       'fastdds_profile', 'log_level')
PROFILE_VARS = ('FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE')


class Recorder:
    """Stands in for a launch action class: remembers its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class FakeLaunchConfiguration:
    values = {}

    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return self.values[self.name]


def load_launch_module(monkeypatch, share_dir: Path):
    modules = {
        'launch': types.ModuleType('launch'),
        'launch.actions': types.ModuleType('launch.actions'),
        'launch.substitutions': types.ModuleType('launch.substitutions'),
        'launch_ros': types.ModuleType('launch_ros'),
        'launch_ros.actions': types.ModuleType('launch_ros.actions'),
    }
    modules['launch'].LaunchDescription = Recorder
    modules['launch.actions'].DeclareLaunchArgument = Recorder
    modules['launch.actions'].OpaqueFunction = Recorder
    modules['launch.substitutions'].LaunchConfiguration = FakeLaunchConfiguration
    modules['launch_ros.actions'].LifecycleNode = Recorder
    modules['launch_ros.actions'].Node = Recorder
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location('node_launch', share_dir / 'node.launch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, 'get_package_share_directory',
                        lambda package: str(share_dir.parent))
    return module


@pytest.fixture
def launch_module(monkeypatch, colcon_install):
    for name in PROFILE_VARS:
        monkeypatch.delenv(name, raising=False)
    return load_launch_module(monkeypatch, colcon_install / 'share' / 'affordance_grounding'
                              / 'launch')


def run_setup(module, **overrides):
    FakeLaunchConfiguration.values = dict(
        {name: default for name, default, _ in module.LAUNCH_ARGUMENTS}, **overrides)
    return module.launch_setup(context=None)


def test_launch_declares_the_interface_arguments(launch_module):
    description = launch_module.generate_launch_description()
    declared = [action.args[0] for action in description.args[0][:-1]]
    assert tuple(declared) == INTERFACE_ARGUMENTS
    assert description.args[0][-1].kwargs['function'] is launch_module.launch_setup


def test_launch_starts_the_installed_executable_with_the_installed_params(
        launch_module, colcon_install):
    node, = run_setup(launch_module)
    kwargs = node.kwargs
    assert (kwargs['package'], kwargs['executable']) == ('affordance_grounding', 'affordance_node')
    assert (colcon_install / 'lib' / 'affordance_grounding' / 'affordance_node').is_file()
    assert kwargs['name'] == 'affordance_grounding' and kwargs['namespace'] == 'affordance'
    params_file, overrides = kwargs['parameters']
    assert Path(params_file) == colcon_install / 'share/affordance_grounding/config/params.yaml'
    shipped = yaml.safe_load(Path(params_file).read_text())['/**']['ros__parameters']
    fields = set(NodeConfig.__dataclass_fields__)
    assert set(shipped) == fields
    assert overrides == {}  # nothing given: the params file decides everything
    profile = colcon_install / 'share/affordance_grounding/config/fastdds_large_images.xml'
    assert profile.is_file()
    assert kwargs['additional_env'] == dict.fromkeys(PROFILE_VARS, str(profile))
    assert dict(kwargs['remappings']) == {
        'image': '/camera/color/image_raw', 'camera_info': '/camera/color/camera_info',
        'depth': '/camera/aligned_depth_to_color/image_raw', 'action': '/affordance/action',
        'detections': 'detections', 'roi': 'roi'}
    assert kwargs['arguments'] == ['--ros-args', '--log-level', 'info']


def test_launch_arguments_reach_the_node_and_rviz(launch_module, colcon_install):
    node, rviz = run_setup(launch_module, model_path='/models/a.onnx', enable_3d='true',
                           rviz='true', image_topic='/cam/image', namespace='robot1',
                           params_file='/etc/my_params.yaml', log_level='debug',
                           backend='onnxruntime', device='cpu', use_sim_time='True',
                           image_transport='compressed')
    assert node.kwargs['parameters'][0] == '/etc/my_params.yaml'
    assert node.kwargs['parameters'][1] == {
        'model_path': '/models/a.onnx', 'enable_3d': True, 'backend': 'onnxruntime',
        'device': 'cpu', 'use_sim_time': True, 'image_transport': 'compressed'}
    assert set(node.kwargs['parameters'][1]) <= set(NodeConfig.__dataclass_fields__) | {
        'use_sim_time'}
    assert dict(node.kwargs['remappings'])['image'] == '/cam/image'
    assert node.kwargs['namespace'] == 'robot1'
    assert node.kwargs['arguments'][-1] == 'debug'
    config = Path(rviz.kwargs['arguments'][1])
    assert config == colcon_install / 'share/affordance_grounding/rviz/affordance.rviz'
    assert config.is_file()


def test_arguments_not_given_leave_the_params_file_alone(launch_module, tmp_path):
    """A user's params file with enable_3d: true keeps it (the launch used to force false)."""
    params = tmp_path / 'mine.yaml'
    params.write_text('/**:\n  ros__parameters:\n    enable_3d: true\n    device: cpu\n')
    node, = run_setup(launch_module, params_file=str(params), enable_3d='false')
    assert node.kwargs['parameters'] == [str(params), {'enable_3d': False}]
    node, = run_setup(launch_module, params_file=str(params))
    assert node.kwargs['parameters'] == [str(params), {}]


def test_cameras_argument_becomes_a_string_array(launch_module):
    node, = run_setup(launch_module, cameras='head, wrist')
    assert node.kwargs['parameters'][1] == {'cameras': ['head', 'wrist']}


def test_a_boolean_argument_must_be_true_or_false(launch_module):
    with pytest.raises(ValueError, match='enable_3d:=yes must be true or false'):
        run_setup(launch_module, enable_3d='yes')


def test_fastdds_profile_argument(launch_module, monkeypatch):
    node, = run_setup(launch_module, fastdds_profile='none')
    assert node.kwargs['additional_env'] == dict.fromkeys(PROFILE_VARS, '')
    node, = run_setup(launch_module, fastdds_profile='/etc/robot_fastdds.xml')
    assert node.kwargs['additional_env'] == dict.fromkeys(PROFILE_VARS, '/etc/robot_fastdds.xml')
    monkeypatch.setenv('FASTRTPS_DEFAULT_PROFILES_FILE', '/etc/robot_wide.xml')
    node, = run_setup(launch_module)  # the robot's own profile wins over the shipped one
    assert node.kwargs['additional_env'] == {}


@pytest.mark.ros
def test_installed_executable_starts_with_a_params_file(colcon_install, tmp_path):
    """The console script the launch file names really runs (no model: stays unconfigured)."""
    site = next(colcon_install.glob('lib/python3*/site-packages'))
    env = dict(os.environ, PYTHONPATH=f'{site}{os.pathsep}{REPO}',
               AMENT_PREFIX_PATH=str(colcon_install),
               ROS_DOMAIN_ID=str(30 + os.getpid() % 200),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    script = colcon_install / 'lib' / 'affordance_grounding' / 'affordance_node'
    params = colcon_install / 'share/affordance_grounding/config/params.yaml'
    log_path = tmp_path / 'node.log'
    with open(log_path, 'w') as log:
        process = subprocess.Popen(
            [sys.executable, str(script), '--ros-args', '--params-file', str(params), '-p',
             'device:=cpu'], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60.0
        while 'stays unconfigured' not in log_path.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    output = log_path.read_text()
    assert 'model_path is empty' in output, output
    assert 'stays unconfigured' in output


def test_real_launch_description_builds_where_launch_ros_exists():
    pytest.importorskip('launch_ros')
    spec = importlib.util.spec_from_file_location('node_launch_real', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = [entity.name for entity in description.entities if hasattr(entity, 'name')]
    assert tuple(names) == INTERFACE_ARGUMENTS
