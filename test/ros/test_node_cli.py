"""``affordance_node`` arguments: --help prints usage without ROS; bad ones are one line."""

from affordance_grounding.ros import main as node_main
import pytest

pytestmark = pytest.mark.ros


@pytest.fixture
def no_rclpy_init(monkeypatch):
    """Fail the test if rclpy would be initialised (no node may start)."""
    def refuse(*args, **kwargs):
        raise AssertionError('rclpy.init was called')
    monkeypatch.setattr(node_main.rclpy, 'init', refuse)


@pytest.mark.parametrize('argv', [
    ['affordance_node', '--help'],
    ['affordance_node', '-h'],
    ['affordance_node', '--ros-args', '-p', 'device:=cpu', '--', '--help'],
])
def test_help_prints_usage_and_starts_nothing(capsys, no_rclpy_init, argv):
    assert node_main.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith('usage: affordance_node')
    for fragment in ("'affordance_grounding'", 'ros2 launch affordance_grounding node.launch.py',
                     '--params-file config/params.yaml', 'docs/ros_interface.md'):
        assert fragment in out, fragment


def test_unknown_argument_is_one_error_line(capsys, no_rclpy_init):
    assert node_main.main(['affordance_node', 'bogus']) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown argument 'bogus'") and err.count('\n') == 1


def test_bad_ros_arguments_are_one_error_line(capsys, tmp_path):
    missing = tmp_path / 'missing.yaml'
    argv = ['affordance_node', '--ros-args', '--params-file', str(missing)]
    assert node_main.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: bad ROS arguments') and str(missing) in err


@pytest.mark.parametrize('args, own', [
    (['--ros-args', '-r', '__ns:=/a', '-p', 'x:=1'], []),
    (['--ros-args', '-p', 'x:=1', '--', 'extra', '--ros-args', '--log-level', 'debug'],
     ['extra']),
    (['--help', '--ros-args', '--params-file', 'f.yaml'], ['--help']),
])
def test_arguments_outside_ros_args(args, own):
    assert node_main.arguments_outside_ros_args(args) == own
